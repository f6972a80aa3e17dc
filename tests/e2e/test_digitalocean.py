"""The reference app's shipyard.yml with a do:// target: `shipyard provision` creates the Droplet
through DigitalOcean's API, trusts the host key it gave it, provisions it over SSH; `shipyard
deploy` then deploys to it as to any ssh:// host; `destroy --volumes --snapshots` deletes it.

DigitalOcean cannot be reached from here. Its API is the stand-in of ``tests/do_standin.py``;
the Droplet is a fresh server container (shipyard-local/vps:trixie: Debian, systemd, OpenSSH,
nothing else), and what cloud-init does on a new Droplet with the request's ``user_data`` and
SSH keys (install the host key shipyard generated, authorize the operator's key, start sshd) a
thread here does to that container when the stand-in receives the request.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.postgres import ExternalPostgres, external_postgres
from tests.e2e.providers import cloud_init, on_do


def test_provision_creates_the_droplet_and_the_example_deploys_to_it(
    tmp_path: Path, docker_engine: None
) -> None:
    app = f"o{secrets.token_hex(3)}"
    with on_do(tmp_path, app) as world:
        standin, droplet, key = world.standin, world.droplet, world.key
        # Before a Droplet exists, a deploy says where one comes from, and changes nothing.
        early = world.shipyard("deploy", "production")
        assert early.returncode != 0
        assert (
            "no Droplet tagged" in early.stderr and "shipyard provision production" in early.stderr
        )
        assert not [r for r in standin.requests if r.method != "GET"]

        with cloud_init(standin, droplet):
            provisioned = world.shipyard("provision", "production", "--json", timeout=1800)
        assert provisioned.returncode == 0, provisioned.stderr + provisioned.stdout
        steps = {e["step"]: e for e in map(json.loads, provisioned.stdout.splitlines())}
        # The cloud's part first, said like the host's steps; then the host's, all on the Droplet.
        assert steps["cloud"]["status"] == "changed"
        assert "droplet: create (s-1vcpu-2gb, debian-12-x64, ams3" in steps["cloud"]["detail"]
        assert steps["packages"]["status"] == "changed"

        # What was asked of DigitalOcean: the operator's key imported, one Droplet of the
        # settings' image, size and region with that key and the environment's tag, a firewall
        # admitting 22, 80 and 443 only to what carries the tag.
        [created] = [
            r.body for r in standin.requests if (r.method, r.path) == ("POST", "/v2/droplets")
        ]
        tag = f"shipyard:{app}:production"
        assert (created["image"], created["size"], created["region"]) == (
            "debian-12-x64",
            "s-1vcpu-2gb",
            "ams3",
        )
        [imported] = standin.keys.values()
        assert imported["public_key"].split()[1] == key.with_suffix(".pub").read_text().split()[1]
        assert created["ssh_keys"] == [imported["fingerprint"]]
        assert tag in created["tags"]
        [firewall] = standin.firewalls.values()
        assert sorted(r["ports"] for r in firewall["inbound_rules"]) == ["22", "443", "80"]
        assert firewall["tags"] == [tag]
        # The first connection was verified with the key user_data carried; then provision
        # replaced it with one made on the Droplet, which is the one trusted now, by the
        # Droplet's name.
        known = (tmp_path / "home" / ".ssh" / "known_hosts").read_text().split()
        presented = droplet.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()
        assert known == [f"shipyard-{app}-production", *presented[:2]]
        assert presented[1] not in created["user_data"]
        assert steps["host-key"]["status"] == "changed"
        assert droplet.sh("command -v docker") != ""  # provisioned

        # The same command as for every other target.
        deployed = world.shipyard("deploy", "production", "--no-watch", timeout=1200)
        assert deployed.returncode == 0, deployed.stderr
        version = httpx.get(f"http://{droplet.address}/version", timeout=10).json()
        assert version["git_commit"] == world.head()
        # A second provision finds everything in place: nothing more is created.
        posts = len([r for r in standin.requests if r.method == "POST"])
        again = world.shipyard("provision", "production", "--json", timeout=1800)
        assert again.returncode == 0, again.stderr
        steps = {e["step"]: e for e in map(json.loads, again.stdout.splitlines())}
        assert steps["cloud"]["status"] == "unchanged"
        assert "host-key" not in steps
        assert len([r for r in standin.requests if r.method == "POST"]) == posts

        # destroy keeps the Droplet while its disk holds something to keep; with --volumes
        # --snapshots it goes, with its firewall.
        kept = world.shipyard("destroy", "production", "--yes")
        assert kept.returncode == 0, kept.stderr
        assert standin.droplets and standin.firewalls
        gone = world.shipyard("destroy", "production", "--yes", "--volumes", "--snapshots")
        assert gone.returncode == 0, gone.stderr
        assert not standin.droplets and not standin.firewalls
        assert standin.keys  # the account's key stays


@dataclass
class _ClusterServer:
    """The stand-in's clusters on a PostgreSQL container the Droplet's containers reach."""

    postgres: ExternalPostgres
    port: int = 5432

    @property
    def host(self) -> str:
        return self.postgres.address

    @property
    def private_host(self) -> str:
        return self.postgres.address

    def sql(self, statements: str, *, database: str = "postgres") -> str:
        return self.postgres.sql(statements, database=database)


def test_a_managed_postgresql_cluster_holds_the_database(
    tmp_path: Path, docker_engine: None
) -> None:
    """``providers.digitalocean.database: {}``: provision creates the cluster (asked first, it
    takes minutes) with the database and a trusted source for the environment's tag; the
    deploy migrates it behind a snapshot taken on the Droplet, and the app reaches it over
    TLS with the cluster's credentials, which no file in the project holds; no database runs
    on the Droplet; destroy --volumes --snapshots deletes the cluster."""
    app = f"m{secrets.token_hex(3)}"
    with (
        external_postgres(tls=True) as postgres,
        on_do(tmp_path, app, database_server=_ClusterServer(postgres),
              settings={"database": {}}) as world,
    ):  # fmt: skip
        standin, droplet = world.standin, world.droplet
        # No database password in the env file: DigitalOcean keeps the cluster's.
        env_file = world.where / ".env.production"
        env_file.write_text(
            "".join(line + "\n" for line in env_file.read_text().splitlines()
                    if not line.startswith("POSTGRES_PASSWORD="))
        )  # fmt: skip
        planned = world.shipyard("plan", "production")
        assert planned.returncode != 0  # no Droplet yet
        with cloud_init(standin, droplet):
            provisioned = world.shipyard("provision", "production", "--json", timeout=1800)
        assert provisioned.returncode == 0, provisioned.stderr + provisioned.stdout
        steps = {e["step"]: e for e in map(json.loads, provisioned.stdout.splitlines())}
        detail = steps["cloud"]["detail"]
        assert detail.index("database cluster: create") < detail.index("droplet: create")
        assert detail.index("droplet: create") < detail.index("database: create")
        [cluster] = standin.clusters.values()
        tag = f"shipyard:{app}:production"
        assert (cluster["name"], cluster["engine"], cluster["version"]) == (
            f"shipyard-{app}-production", "pg", "17",
        )  # fmt: skip
        assert cluster["tags"] == [tag] and "events" in cluster["db_names"]
        created = [
            r.body for r in standin.requests if (r.method, r.path) == ("POST", "/v2/databases")
        ]
        assert created[0]["rules"] == [{"type": "tag", "value": tag}]

        deployed = world.shipyard("deploy", "production", "--no-watch", timeout=1200)
        assert deployed.returncode == 0, deployed.stderr
        assert world.served() == world.head()
        # The schema is in the cluster's database, migrated; nothing runs a database on the
        # Droplet; the snapshot before the migrations is on the Droplet's disk.
        version = postgres.sql("SELECT version, dirty FROM schema_migrations;", database="events")
        assert version.endswith("|f")
        names = droplet.sh("docker ps --format '{{.Names}}'").split()
        assert f"{app}-production-db" not in names and f"{app}-production-dbclient" in names
        listed = world.shipyard("snapshot", "list", "production", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [s["reason"] for s in json.loads(listed.stdout)] == ["pre-migrate"]
        # The app's connection is TLS: the server says so of the app's own sessions.
        assert (
            postgres.sql(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                "WHERE a.datname = 'events' AND a.usename = 'doadmin';"
            )
            == "t"
        )
        # The cluster's password is in no file of the project, nor in any output.
        password = cluster["connection"]["password"]
        for path in world.where.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                assert password not in path.read_text(errors="replace"), path
        assert password not in deployed.stderr + deployed.stdout

        # A second provision finds everything in place.
        posts = len([r for r in standin.requests if r.method in ("POST", "PUT")])
        again = world.shipyard("provision", "production", "--json", timeout=1800)
        assert again.returncode == 0, again.stderr
        assert len([r for r in standin.requests if r.method in ("POST", "PUT")]) == posts

        # destroy keeps the cluster, and says so, until asked for everything.
        kept = world.shipyard("destroy", "production", "--yes")
        assert kept.returncode == 0, kept.stderr
        assert f"database cluster shipyard-{app}-production" in kept.stdout + kept.stderr
        assert standin.clusters and standin.droplets
        gone = world.shipyard("destroy", "production", "--yes", "--volumes", "--snapshots")
        assert gone.returncode == 0, gone.stderr
        assert not standin.clusters and not standin.droplets
