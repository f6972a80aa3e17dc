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
from pathlib import Path

import httpx

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
