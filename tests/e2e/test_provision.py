"""`shipyard provision` of a fresh host: a container that starts as bare Debian with only sshd.

The container is unprivileged; it gets CAP_NET_ADMIN only, so the firewall it is given applies to
its own network namespace (never this machine's). systemd is not its PID 1: docker.service can be
installed and enabled there but not started, and provision reports exactly that step as failed.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AppUnderTest
from tests.e2e.sshd import keygen

IMAGE = "shipyard-local/sshd:trixie"


@dataclass
class FreshHost:
    name: str
    port: int
    address: str  # on the docker bridge
    known_hosts: Path
    client_key: Path

    def sh(self, script: str, check: bool = True) -> str:
        return subprocess.run(
            ["docker", "exec", self.name, "sh", "-c", script],
            capture_output=True,
            text=True,
            check=check,
        ).stdout.strip()


def _inspect(name: str, template: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", template, name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def fresh_host(tmp_path: Path, docker_engine: None) -> Iterator[FreshHost]:
    keys = tmp_path / "fresh-keys"
    keys.mkdir()
    host_key, client_key = keys / "host_ed25519", keys / "client_ed25519"
    keygen(host_key, "fresh-host")
    keygen(client_key, "operator")
    name = f"sy-fresh-{secrets.token_hex(3)}"
    subprocess.run(
        [
            "docker", "run", "--detach", "--name", name,
            "--cap-add", "NET_ADMIN",
            "--publish", "127.0.0.1::22",
            "--volume", f"{host_key}:/etc/ssh/ssh_host_ed25519_key:ro",
            "--volume", f"{client_key.with_suffix('.pub')}:/root/.ssh/authorized_keys:ro",
            IMAGE,
        ],
        capture_output=True,
        check=True,
    )  # fmt: skip
    try:
        port = int(_inspect(name, '{{(index (index .NetworkSettings.Ports "22/tcp") 0).HostPort}}'))
        address = _inspect(name, "{{.NetworkSettings.IPAddress}}")
        deadline = time.monotonic() + 30
        while True:  # sshd answers with its banner once it is up
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    if conn.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the fresh host's sshd never answered"
            time.sleep(0.1)
        public = host_key.with_suffix(".pub").read_text().split()
        known_hosts = keys / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
        yield FreshHost(name, port, address, known_hosts, client_key)
    finally:
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False
        )


def _provision(app: AppUnderTest, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    result = app.shipyard("provision", "development", "--json", *args, timeout=1800)
    steps = {}
    for line in result.stdout.splitlines():
        entry = json.loads(line)
        steps[entry["step"]] = entry
    return result.returncode, steps, result.stderr


def _reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_provision_sets_up_a_fresh_host_and_changes_nothing_the_second_time(
    fresh_host: FreshHost, app: AppUnderTest
) -> None:
    def change(document: Any) -> None:
        document["environments"]["development"]["target"] = (
            f"ssh://root@127.0.0.1:{fresh_host.port}"
        )
        document.setdefault("providers", {})["ssh"] = {
            "known_hosts": str(fresh_host.known_hosts),
            "identity_file": str(fresh_host.client_key),
        }
        document["deploy"].pop("state_dir", None)  # the default on a server: /var/lib/shipyard

    app.edit(change)
    host = fresh_host
    # Before: a bare host, and a second sshd on 2222 to prove the firewall drops other ports.
    assert host.sh("command -v docker || echo none") == "none"
    host.sh("/usr/sbin/sshd -p 2222")
    assert _reachable(host.address, 2222)

    code, first, stderr = _provision(app)
    assert code == 8, stderr  # one step cannot succeed in a container: see below
    statuses = {step: entry["status"] for step, entry in first.items()}
    assert statuses == {
        "os": "unchanged",
        "packages": "changed",
        "docker-service": "failed",
        "tools": "unchanged",
        "docker-logs": "changed",
        "journald": "changed",
        "deploy-user": "changed",
        "state-dirs": "changed",
        "firewall": "changed",
        "image-prune": "changed",
    }, first
    assert "systemd is not running" in first["docker-service"]["detail"]
    assert "Debian GNU/Linux 13" in first["os"]["detail"]

    # Docker engine + Compose v2 installed, the service enabled for boot.
    assert host.sh("dpkg-query -W -f '${db:Status-Abbrev}' docker.io docker-compose") == "ii ii"
    assert host.sh("systemctl is-enabled docker.service") == "enabled"
    assert host.sh("docker compose version --short").startswith("2.")
    # A deploy user in the docker group, with the operator's key, and no sudo.
    assert "docker" in host.sh("id -nG deploy").split()
    assert "sudo" not in host.sh("id -nG deploy").split()
    assert host.sh("grep -rs deploy /etc/sudoers /etc/sudoers.d || true") == ""
    assert host.sh("stat -c '%U %a' /home/deploy/.ssh/authorized_keys") == "deploy 600"
    # State and snapshot directories with tight modes.
    assert host.sh("stat -c '%U:%G %a' /var/lib/shipyard") == "deploy:deploy 750"
    assert host.sh("stat -c '%U:%G %a' /var/lib/shipyard/snapshots") == "deploy:deploy 700"
    # The firewall: loaded, and only SSH/HTTP/HTTPS get through.
    rules = host.sh("nft list table inet shipyard_filter")
    assert "policy drop" in rules and "22, 80, 443" in rules
    assert host.sh("systemctl is-enabled shipyard-firewall.service") == "enabled"
    assert _reachable(host.address, 22)
    assert not _reachable(host.address, 2222), "a port outside 22/80/443 is still open"
    # Log limits and the image prune timer.
    daemon = json.loads(host.sh("cat /etc/docker/daemon.json"))
    assert daemon["log-opts"] == {"max-file": "5", "max-size": "10m"}
    assert "SystemMaxUse=500M" in host.sh("cat /etc/systemd/journald.conf.d/shipyard.conf")
    assert host.sh("systemctl is-enabled shipyard-image-prune.timer") == "enabled"
    prune = host.sh("cat /etc/systemd/system/shipyard-image-prune.service")
    assert "--filter label!=org.shipyard.app" in prune

    code, second, stderr = _provision(app)
    assert code == 8, stderr
    assert {
        step: e["status"] for step, e in second.items() if step != "docker-service"
    } == dict.fromkeys([s for s in first if s != "docker-service"], "unchanged"), second
    assert second["docker-service"]["status"] == "failed"

    # A sudoer instead of root: the same steps through `sudo -n`, still nothing to change.
    host.sh(
        "apt-get install -y -q --no-install-recommends sudo >/dev/null && "
        "useradd --create-home --shell /bin/sh ops && usermod -p '*' ops && "
        "echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops && "
        "install -d -o ops -m 700 /home/ops/.ssh && "
        "install -o ops -m 600 /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys"
    )
    code, as_sudoer, stderr = _provision(app, "--user", "ops", "--sudo", "--deploy-user", "deploy")
    assert code == 8, stderr
    assert {s: e["status"] for s, e in as_sudoer.items() if s != "docker-service"} == dict.fromkeys(
        [s for s in first if s != "docker-service"], "unchanged"
    ), as_sudoer
    refused = app.shipyard("provision", "development", "--user", "ops")
    assert refused.returncode == 8
    assert "provision needs root" in refused.stderr and "--sudo" in refused.stderr
