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
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.do_standin import DoStandIn, do_standin
from tests.e2e.conftest import isolated_env, run_shipyard
from tests.e2e.docker_cli import docker_inspect
from tests.e2e.sshd import keygen
from tests.example_app import copy_example, git


class Droplet:
    """A fresh server container standing in for the Droplet the API creates."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.address = docker_inspect(name, "{{.NetworkSettings.IPAddress}}")
        self.applied = threading.Event()

    def sh(self, script: str, stdin: str | None = None) -> str:
        return subprocess.run(
            ["docker", "exec", "-i", self.name, "sh", "-c", script],
            input=stdin, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    def cloud_init(self, body: dict[str, Any], keys: list[str]) -> None:
        """What cloud-init does with a Droplet request: the host key of ``user_data``'s
        ``ssh_keys`` installed (the image's removed), ``keys`` authorized for root, sshd on."""
        config = YAML(typ="safe").load(body["user_data"])
        assert config["ssh_deletekeys"] is True
        host_keys = config["ssh_keys"]
        subprocess.run(
            ["docker", "exec", self.name, "timeout", "300", "systemctl", "is-system-running",
             "--wait"], capture_output=True, check=False,
        )  # fmt: skip
        self.sh(
            "cat > /etc/ssh/ssh_host_ed25519_key && chmod 600 /etc/ssh/ssh_host_ed25519_key",
            host_keys["ed25519_private"],
        )
        self.sh("cat > /etc/ssh/ssh_host_ed25519_key.pub", host_keys["ed25519_public"] + "\n")
        self.sh("cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
                "\n".join(keys) + "\n")  # fmt: skip
        # sshd failed to start without a host key until now, as on a Droplet before cloud-init.
        self.sh("systemctl reset-failed ssh.service; systemctl restart ssh.service")
        self.applied.set()


@pytest.fixture
def droplet(docker_engine: None) -> Iterator[Droplet]:
    name = f"sy-droplet-{secrets.token_hex(3)}"
    subprocess.run(
        [
            "docker", "run", "--detach", "--name", name, "--hostname", "droplet",
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined", "--cgroupns", "private",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--volume", "/var/lib/docker", "--volume", "/var/lib/containerd",
            "shipyard-local/vps:trixie",
        ],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        yield Droplet(name)
    finally:
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False
        )


def _cloud_init(
    standin: DoStandIn, droplet: Droplet, stop: threading.Event, failed: list[BaseException]
) -> None:
    """Apply the first Droplet request the stand-in receives to the container (what went
    wrong kept in ``failed``, for the test to say)."""
    try:
        _apply_first(standin, droplet, stop)
    except BaseException as exc:  # noqa: BLE001 — reported by the test
        failed.append(exc)


def _apply_first(standin: DoStandIn, droplet: Droplet, stop: threading.Event) -> None:
    while not stop.is_set():
        created = [r for r in standin.requests if r.method == "POST" and r.path == "/v2/droplets"]
        if created:
            body = created[0].body
            fingerprints = set(body["ssh_keys"])
            keys = [
                k["public_key"] for k in standin.keys.values() if k["fingerprint"] in fingerprints
            ]
            droplet.cloud_init(body, keys)
            return
        time.sleep(0.1)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An ssh-agent holding the operator's key (``~/.ssh/id_ed25519`` of the test's home)."""
    home_ssh = tmp_path / "home" / ".ssh"
    home_ssh.mkdir(parents=True)
    key = home_ssh / "id_ed25519"
    keygen(key, "operator")
    socket_path = tmp_path / "agent.sock"
    started = subprocess.run(
        ["ssh-agent", "-a", str(socket_path), "-s"], capture_output=True, text=True, check=True
    ).stdout
    pid = started.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0]
    try:
        subprocess.run(["ssh-add", "-q", str(key)], env={"SSH_AUTH_SOCK": str(socket_path)},
                       capture_output=True, check=True)  # fmt: skip
        yield key, str(socket_path)
    finally:
        subprocess.run(["kill", pid], capture_output=True, check=False)


@pytest.fixture
def local_images() -> Iterator[list[str]]:
    """The apps whose images the test builds here: removed from this engine afterwards."""
    apps: list[str] = []
    yield apps
    for app in apps:
        for image in subprocess.run(
            ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", app],
            capture_output=True, text=True, check=False,
        ).stdout.split():  # fmt: skip
            subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)


def _on_digitalocean(document: dict[str, Any]) -> None:
    """The reference app's shipyard.yml as it is, its production target changed to a Droplet."""
    document["environments"]["production"]["target"] = "do://ams3"


def test_provision_creates_the_droplet_and_the_example_deploys_to_it(
    tmp_path: Path, droplet: Droplet, agent: tuple[Path, str], local_images: list[str]
) -> None:
    key, agent_socket = agent
    app = f"o{secrets.token_hex(3)}"
    local_images.append(app)
    with do_standin(address=droplet.address) as standin:
        where = copy_example(tmp_path / "app", app, _on_digitalocean)
        env_file = where / ".env.production"
        env_file.write_text(
            f"JWT_SECRET={secrets.token_hex(32)}\nPOSTGRES_PASSWORD=pw-{secrets.token_hex(12)}\n"
            f"GRAFANA_ADMIN_PASSWORD={secrets.token_hex(16)}\n"
        )
        env_file.chmod(0o600)
        env = {
            **isolated_env(tmp_path / "home"),
            "DIGITALOCEAN_TOKEN": standin.token,
            "SHIPYARD_DO_API_URL": standin.url,
            "SSH_AUTH_SOCK": agent_socket,
        }
        # Before a Droplet exists, a deploy says where one comes from, and changes nothing.
        early = run_shipyard(where, env, "deploy", "production")
        assert early.returncode != 0
        assert (
            "no Droplet tagged" in early.stderr and "shipyard provision production" in early.stderr
        )
        assert not [r for r in standin.requests if r.method != "GET"]

        stop = threading.Event()
        failed: list[BaseException] = []
        init = threading.Thread(
            target=_cloud_init, args=(standin, droplet, stop, failed), daemon=True
        )
        init.start()
        try:
            provisioned = run_shipyard(
                where, env, "provision", "production", "--json", timeout=1800
            )
        finally:
            stop.set()
            init.join(timeout=30)
        assert not failed, repr(failed)
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
        deployed = run_shipyard(where, env, "deploy", "production", "--no-watch", timeout=1200)
        assert deployed.returncode == 0, deployed.stderr
        version = httpx.get(f"http://{droplet.address}/version", timeout=10).json()
        assert version["git_commit"] == git(where, "rev-parse", "HEAD")
        # A second provision finds everything in place: nothing more is created.
        posts = len([r for r in standin.requests if r.method == "POST"])
        again = run_shipyard(where, env, "provision", "production", "--json", timeout=1800)
        assert again.returncode == 0, again.stderr
        steps = {e["step"]: e for e in map(json.loads, again.stdout.splitlines())}
        assert steps["cloud"]["status"] == "unchanged"
        assert "host-key" not in steps
        assert len([r for r in standin.requests if r.method == "POST"]) == posts

        # destroy keeps the Droplet while its disk holds something to keep; with --volumes
        # --snapshots it goes, with its firewall.
        kept = run_shipyard(where, env, "destroy", "production", "--yes")
        assert kept.returncode == 0, kept.stderr
        assert standin.droplets and standin.firewalls
        gone = run_shipyard(
            where, env, "destroy", "production", "--yes", "--volumes", "--snapshots"
        )
        assert gone.returncode == 0, gone.stderr
        assert not standin.droplets and not standin.firewalls
        assert standin.keys  # the account's key stays
