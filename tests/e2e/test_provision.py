"""`shipyard provision` of a fresh host, which then takes a deploy.

The fresh host is a container started from shipyard-local/vps:trixie (Debian 13) or
shipyard-local/vps:noble (Ubuntu 24.04), booting systemd as PID 1 with only OpenSSH's server
(on Ubuntu socket-activated, as the distribution ships it). `provision` installs the
distribution's Docker engine in it, and that engine runs the deployed stack. The container is
not privileged (this machine refuses --privileged); it gets every capability but
CAP_SYS_RESOURCE, no seccomp or AppArmor profile, a writable /proc/sys (the inner engine sets
per-network-namespace sysctls), a private cgroup namespace, and volumes for /var/lib/docker and
/var/lib/containerd (a server's disk: image layers cannot sit on the container's own overlay).
Its firewall applies to its own network namespace, never this machine's.
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

import httpx
import pytest

from shipyard.delivery import deliver
from shipyard.hosts import LocalHost, SSHHost, SSHSettings
from shipyard.secrets import Masker
from tests.e2e.conftest import AppUnderTest, container_env
from tests.e2e.docker_cli import docker, docker_inspect
from tests.e2e.engine import inspect_image_id
from tests.e2e.load import Load
from tests.e2e.sshd import Sshd, keygen


@dataclass(frozen=True)
class System:
    image: str
    pretty_name: str  # in the os step's detail
    docker_packages: tuple[str, ...]  # the distribution's engine and Compose v2 plugin


SYSTEMS = [
    pytest.param(
        System("shipyard-local/vps:trixie", "Debian GNU/Linux 13", ("docker.io", "docker-compose")),
        id="debian-13",
    ),
    pytest.param(
        System("shipyard-local/vps:noble", "Ubuntu 24.04", ("docker.io", "docker-compose-v2")),
        id="ubuntu-24.04",
    ),
]


@dataclass
class FreshHost:
    system: System
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


@pytest.fixture(params=SYSTEMS)
def fresh_host(
    request: pytest.FixtureRequest, tmp_path: Path, docker_engine: None
) -> Iterator[FreshHost]:
    system: System = request.param
    keys = tmp_path / "fresh-keys"
    keys.mkdir()
    host_key, client_key = keys / "host_ed25519", keys / "client_ed25519"
    keygen(host_key, "fresh-host")
    keygen(client_key, "operator")
    name = f"sy-fresh-{secrets.token_hex(3)}"
    subprocess.run(
        [
            "docker", "run", "--detach", "--name", name, "--hostname", "fresh-host",
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined",
            "--cgroupns", "private",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--volume", "/var/lib/docker", "--volume", "/var/lib/containerd",
            "--publish", "127.0.0.1::22",
            "--volume", f"{host_key}:/etc/ssh/ssh_host_ed25519_key:ro",
            "--volume", f"{client_key.with_suffix('.pub')}:/root/.ssh/authorized_keys:ro",
            system.image,
        ],
        capture_output=True,
        check=True,
    )  # fmt: skip
    try:
        port = int(
            docker_inspect(name, '{{(index (index .NetworkSettings.Ports "22/tcp") 0).HostPort}}')
        )
        address = docker_inspect(name, "{{.NetworkSettings.IPAddress}}")
        deadline = time.monotonic() + 120
        while True:  # sshd answers with its banner once it is up
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    if conn.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the fresh host's sshd never answered"
            time.sleep(0.1)
        booted = subprocess.run(
            ["docker", "exec", name, "timeout", "300", "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        assert booted in ("running", "degraded"), f"the fresh host did not boot: {booted!r}"
        public = host_key.with_suffix(".pub").read_text().split()
        known_hosts = keys / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
        yield FreshHost(system, name, port, address, known_hosts, client_key)
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


def _until_reachable(address: str, port: int, seconds: float = 120) -> None:
    """Wait until something accepts connections on ``address:port`` (a server just started may
    not listen yet: `sshd` returns before its daemon has bound its port)."""
    deadline = time.monotonic() + seconds
    while not _reachable(address, port):
        assert time.monotonic() < deadline, f"nothing answered on {address}:{port} in {seconds:g}s"
        time.sleep(0.2)


def _short_watch(document: Any) -> None:
    document["deploy"]["watch"] = "2s"
    document["deploy"]["min_requests"] = 5


def test_provision_sets_up_a_fresh_host_that_then_takes_a_deploy(
    fresh_host: FreshHost, app: AppUnderTest, sshd: Sshd
) -> None:
    def as_root(document: Any) -> None:
        document["environments"]["development"]["target"] = (
            f"ssh://root@127.0.0.1:{fresh_host.port}"
        )
        document.setdefault("providers", {})["ssh"] = {
            "known_hosts": str(fresh_host.known_hosts),
            "identity_file": str(fresh_host.client_key),
        }
        document["deploy"].pop("state_dir", None)  # the default on a server: /var/lib/shipyard

    app.edit(as_root)
    host = fresh_host
    # Before: a bare server, and a second sshd on 2222 to prove the firewall drops other ports.
    assert host.sh("command -v docker || echo none") == "none"
    assert host.sh("cat /proc/1/comm") == "systemd"
    host.sh("/usr/sbin/sshd -p 2222")
    _until_reachable(host.address, 2222)

    code, first, stderr = _provision(app)
    assert code == 0, (stderr, first)
    statuses = {step: entry["status"] for step, entry in first.items()}
    # Installing the distribution's docker.io enables and starts docker.service on a systemd host, so the
    # service step finds it running; every step after the checks changes something.
    assert statuses == {
        "os": "unchanged",
        "packages": "changed",
        "docker-service": "unchanged",
        "tools": "unchanged",
        "docker-daemon": "changed",
        "journald": "changed",
        "deploy-user": "changed",
        "state-dirs": "changed",
        "firewall": "changed",
        "image-prune": "changed",
    }, first
    assert host.system.pretty_name in first["os"]["detail"]
    assert "systemd running" in first["os"]["detail"]
    assert "live-restore on; docker restarted" in first["docker-daemon"]["detail"]

    # Docker engine + Compose v2 installed and running, the service enabled for boot.
    packages = " ".join(host.system.docker_packages)
    assert host.sh(f"dpkg-query -W -f '${{db:Status-Abbrev}}' {packages}") == "ii ii"
    assert host.sh("systemctl is-enabled docker.service") == "enabled"
    assert host.sh("systemctl is-active docker.service") == "active"
    assert host.sh("docker compose version --short").startswith("2.")
    # A deploy user in the docker group, with the operator's key, and no sudo.
    assert "docker" in host.sh("id -nG deploy").split()
    assert "sudo" not in host.sh("id -nG deploy").split()
    assert host.sh("grep -rs deploy /etc/sudoers /etc/sudoers.d || true") == ""
    assert host.sh("stat -c '%U:%G %a' /home/deploy/.ssh") == "deploy:deploy 700"
    assert host.sh("stat -c '%U:%G %a' /home/deploy/.ssh/authorized_keys") == "deploy:deploy 600"
    operator_key = fresh_host.client_key.with_suffix(".pub").read_text().split()[1]
    deploy_keys = host.sh("cat /home/deploy/.ssh/authorized_keys").splitlines()
    assert [line.split()[1] for line in deploy_keys] == [operator_key], deploy_keys
    # State and snapshot directories with tight modes.
    assert host.sh("stat -c '%U:%G %a' /var/lib/shipyard") == "deploy:deploy 750"
    assert host.sh("stat -c '%U:%G %a' /var/lib/shipyard/snapshots") == "deploy:deploy 700"
    # The firewall: loaded, enabled for boot, and only SSH/HTTP/HTTPS get through.
    rules = host.sh("nft list table inet shipyard_filter")
    assert "policy drop" in rules and "22, 80, 443" in rules
    assert host.sh("systemctl is-enabled shipyard-firewall.service") == "enabled"
    _until_reachable(host.address, 22)  # through the firewall
    assert not _reachable(host.address, 2222), "a port outside 22/80/443 is still open"
    # Log limits and live-restore, applied by the running engine, and the image prune timer.
    daemon = json.loads(host.sh("cat /etc/docker/daemon.json"))
    assert daemon["log-opts"] == {"max-file": "5", "max-size": "10m"}
    assert daemon["live-restore"] is True
    assert host.sh("docker info --format '{{.LoggingDriver}}'") == "json-file"
    assert host.sh("docker info --format '{{.LiveRestoreEnabled}}'") == "true"
    assert "SystemMaxUse=500M" in host.sh("cat /etc/systemd/journald.conf.d/shipyard.conf")
    assert host.sh("systemctl is-enabled shipyard-image-prune.timer") == "enabled"
    assert host.sh("systemctl is-active shipyard-image-prune.timer") == "active"
    prune = host.sh("cat /etc/systemd/system/shipyard-image-prune.service")
    assert "--filter label!=org.shipyard.app" in prune

    code, second, stderr = _provision(app)
    assert code == 0, stderr
    assert {step: e["status"] for step, e in second.items()} == dict.fromkeys(first, "unchanged"), (
        second
    )

    # A sudoer instead of root: the same steps through `sudo -n`, still nothing to change.
    host.sh(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends sudo "
        ">/dev/null && "
        "useradd --create-home --shell /bin/sh ops && usermod -p '*' ops && "
        "echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops && "
        "install -d -o ops -m 700 /home/ops/.ssh && "
        "install -o ops -m 600 /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys"
    )
    code, as_sudoer, stderr = _provision(app, "--user", "ops", "--sudo", "--deploy-user", "deploy")
    assert code == 0, stderr
    assert {s: e["status"] for s, e in as_sudoer.items()} == dict.fromkeys(first, "unchanged"), (
        as_sudoer
    )
    refused = app.shipyard("provision", "development", "--user", "ops")
    assert refused.returncode == 8
    assert "provision needs root" in refused.stderr and "--sudo" in refused.stderr

    # The provisioned server takes a deploy as the deploy user: the app image and the images
    # beside it (database, proxy, golang-migrate) travel from this engine, as the server has
    # no registry; the proxy answers on port 80 through the firewall.
    def as_deploy_user(document: Any) -> None:
        document["environments"]["development"]["target"] = (
            f"ssh://deploy@127.0.0.1:{fresh_host.port}"
        )
        document["proxy"]["http_port"] = 80
        _short_watch(document)

    app.edit(as_deploy_user)
    # The distribution's Compose (2.26 on Debian 13) must read the env files back exactly,
    # awkward values included.
    expected_env = app.use_awkward_env()
    first_commit = app.commit("version 1")
    deployed = app.shipyard("deploy", "development", timeout=1200)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stderr.count("docker save | docker load over ssh") == 5, (
        deployed.stderr
    )  # app, proxy, guard, database, migrate
    url = f"http://{host.address}"
    version = httpx.get(f"{url}/version", timeout=10).json()
    assert version["git_commit"] == first_commit
    app_containers = host.sh(
        f"docker ps --filter label=org.shipyard.app={app.name} --format '{{{{.Names}}}}'"
    ).split()
    assert f"{app.name}-development-live" in app_containers, app_containers
    live_env = container_env(host.sh(f"docker inspect {app.name}-development-live"))
    for key, value in expected_env.items():
        assert live_env.get(key) == value, key
    assert host.sh(f"stat -c '%U %a' /var/lib/shipyard/{app.name}/development") == "deploy 700"

    # With the app running, an engine whose live-restore was turned off gets it back from a
    # provision by a reload (SIGHUP), not a restart: the containers keep running.
    live = f"{app.name}-development-live"
    started = host.sh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {live}")
    host.sh(
        'sed -i \'s/"live-restore": true/"live-restore": false/\' /etc/docker/daemon.json && '
        "systemctl reload docker.service"
    )
    deadline = time.monotonic() + 120
    while host.sh("docker info --format '{{.LiveRestoreEnabled}}'") != "false":
        assert time.monotonic() < deadline, "dockerd never reread daemon.json"
        time.sleep(0.2)
    code, reprovisioned, stderr = _provision(app, "--user", "root")
    assert code == 0, (stderr, reprovisioned)
    step = reprovisioned["docker-daemon"]
    assert (step["status"], step["detail"]) == (
        "changed",
        "json-file, 10m x 5; live-restore on; docker reloaded",
    ), step
    assert host.sh("docker info --format '{{.LiveRestoreEnabled}}'") == "true"
    assert host.sh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {live}") == started
    assert httpx.get(f"{url}/version", timeout=10).json()["git_commit"] == first_commit

    second_commit = app.commit("version 2")
    with Load(f"{url}/") as load:
        again = app.shipyard("deploy", "development", timeout=1200)
    assert again.returncode == 0, again.stderr
    # Only the new app image travels; the others are on the server now.
    assert again.stderr.count("docker save | docker load over ssh") == 1, again.stderr
    assert load.result.requests > 20
    assert load.result.failures == [], load.result.failures[:5]
    assert httpx.get(f"{url}/version", timeout=10).json()["git_commit"] == second_commit
    [status] = json.loads(app.shipyard("status", "development", "--json").stdout)
    assert status["health"] == "healthy" and status["drift"] is None, status

    # Two independent nodes (FR-023): the server and this machine behind its own sshd, each with
    # its own proxy and database. One deploy goes node by node; status shows each; --node picks
    # one; destroy removes both.
    known_hosts = fresh_host.known_hosts.parent / "known_hosts.both"
    known_hosts.write_text(fresh_host.known_hosts.read_text() + sshd.known_hosts.read_text())
    with (sshd.dir / "authorized_keys").open("a") as keys:
        keys.write(fresh_host.client_key.with_suffix(".pub").read_text())
    server_node = f"ssh://deploy@127.0.0.1:{fresh_host.port}"

    def two_nodes(document: Any) -> None:
        document["environments"]["development"]["targets"] = [sshd.target]
        document["providers"]["ssh"]["known_hosts"] = str(known_hosts)
        document["proxy"]["http_port"] = app.http_port

    app.edit(two_nodes)
    third_commit = app.commit("version 3 on two nodes")
    both = app.shipyard("deploy", "development", timeout=1200)
    assert both.returncode == 0, both.stderr
    for port in (fresh_host.port, sshd.port):
        assert f"to development on 127.0.0.1:{port} in" in both.stderr, both.stderr
    for base in (f"http://{host.address}:{app.http_port}", app.url()):
        assert httpx.get(f"{base}/version", timeout=10).json()["git_commit"] == third_commit
    assert (
        host.sh(f"docker inspect -f '{{{{.State.Running}}}}' {app.name}-development-db") == "true"
    )
    here = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", f"{app.name}-development-db"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert here.stdout.strip() == "true", "this machine's node has its own database"
    statuses = json.loads(app.shipyard("status", "development", "--json").stdout)
    assert {entry["node"]: entry["health"] for entry in statuses} == {
        server_node: "healthy",
        sshd.target: "healthy",
    }, statuses
    assert {entry["version"] for entry in statuses} == {f"0.0.0+{third_commit[:7]}"}
    on_server = json.loads(app.shipyard("history", "development", "--json").stdout)
    on_here = json.loads(
        app.shipyard("history", "development", "--json", "--node", sshd.target).stdout
    )
    assert (len(on_server), len(on_here)) == (3, 1)
    unknown = app.shipyard("history", "development", "--node", "ssh://root@nowhere")
    assert unknown.returncode == 2 and sshd.target in unknown.stderr

    destroyed = app.shipyard("destroy", "development", "--yes", "--volumes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert host.sh(f"docker ps -aq --filter label=org.shipyard.app={app.name}") == ""
    left = docker("ps", "-aq", "--filter", f"label=org.shipyard.app={app.name}").strip()
    assert left == ""


@pytest.mark.parametrize("fresh_host", [SYSTEMS[1]], indirect=True)
def test_delivery_to_an_engine_on_the_containerd_image_store(fresh_host: FreshHost) -> None:
    """Ubuntu 24.04's Docker 29 installed by hand (not provisioned) keeps images in containerd,
    where a delivered image gets another ID: delivery recognises it by its fingerprint."""
    host = fresh_host
    host.sh(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
        "apt-get install -y -q --no-install-recommends docker.io >/dev/null"
    )
    assert "io.containerd.snapshotter" in host.sh("docker info --format '{{json .DriverStatus}}'")
    ssh = SSHHost(
        f"ssh://root@127.0.0.1:{host.port}",
        SSHSettings(known_hosts=host.known_hosts, identity_file=host.client_key),
        Masker(),
    )
    tag = "shipyard-local/migrate:4"
    image_id = inspect_image_id(tag)
    assert image_id is not None, tag
    try:
        first = deliver(tag, image_id, LocalHost(), ssh)
        assert first.method == "stream" and first.bytes > 0
        assert host.sh(f"docker image inspect --format '{{{{.Id}}}}' {tag}") != image_id
        assert host.sh(f"docker run --rm {tag} -version 2>&1") == "v4.18.3"
        again = deliver(tag, image_id, LocalHost(), ssh)
        assert again.method == "present"
    finally:
        ssh.close()
