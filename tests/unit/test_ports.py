"""A proxy port another process or container holds is found, and named, before anything changes."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest

from shipyard import cli
from shipyard import session as library
from shipyard.config import Config, load_config
from shipyard.deploy import _checks
from shipyard.docker import Docker, EngineAPI
from shipyard.errors import HostUnreachable, PortInUse
from shipyard.hosts import (
    CommandResult,
    Listener,
    addresses_overlap,
    parse_proc_net_tcp,
    parse_ss,
)
from shipyard.providers import taken_ports
from shipyard.providers.docker import DockerSteps
from shipyard.providers.docker._stack import to_yaml
from tests.bad_configs import VALID, BadConfig, clean_tree, write
from tests.fakes import FakeHost
from tests.unit.pipeline_harness import operation_context

DATA = Path(__file__).parent / "data"
ANY = "0.0.0.0"  # noqa: S104 — the address that stands for every IPv4 address

# `ss -l -t -n -p` on a host where a Python process listens on the proxy's port (18080 in VALID).
SS_PYTHON_ON_18080 = (
    "State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess\n"
    "LISTEN 0      4096       127.0.0.1:33375      0.0.0.0:*    "
    'users:(("docker-proxy",pid=25984,fd=4))\n'
    'LISTEN 0      128          0.0.0.0:18080      0.0.0.0:*    users:(("python3",pid=4242,fd=3))\n'
)


def _container(name: str, *bindings: tuple[str, int], status: str = "running") -> dict[str, Any]:
    """A container as `docker container inspect` describes it, publishing ``bindings``."""
    return {
        "Id": f"id-{name}",
        "Name": f"/{name}",
        "State": {"Status": status},
        "Config": {"Labels": {}},
        "NetworkSettings": {
            "Ports": {"80/tcp": [{"HostIp": ip, "HostPort": str(port)} for ip, port in bindings]}
        },
    }


def _host_ports(container: dict[str, Any]) -> set[str]:
    ports = container["NetworkSettings"]["Ports"].values()
    return {binding["HostPort"] for bindings in ports for binding in bindings or []}


class _Server(FakeHost):
    """A Docker host whose listening sockets and containers the test sets: ``ss`` answers with
    ``ss`` (``None``: not installed, ``missing``: how it fails then), ``/proc/net/tcp`` with
    ``proc_tcp``, and `docker ps` / `docker container inspect` with ``containers``."""

    def __init__(
        self,
        *,
        ss: str | None = "",
        proc_tcp: str | None = None,
        containers: tuple[dict[str, Any], ...] = (),
        missing: str = "exit 127",
    ) -> None:
        super().__init__(respond=self._answer)
        self.ss = ss
        self.missing = missing
        self.containers = list(containers)
        if proc_tcp is not None:
            self.files["/proc/net/tcp"] = (proc_tcp.encode(), 0o444)

    @property
    def name(self) -> str:
        return "server"

    def _answer(self, argv: list[str]) -> CommandResult | None:
        if argv[0] == "ss" and self.ss is None:
            if self.missing == "raise":  # LocalHost: the executable is not found
                raise HostUnreachable("on local: 'ss' is not installed")
            return CommandResult(tuple(argv), 127, "", "sh: 1: ss: not found")
        if argv[:3] == ["docker", "container", "inspect"]:
            found = [c for c in self.containers if {c["Id"], c["Name"][1:]} & set(argv[3:])]
            if not found:
                return CommandResult(tuple(argv), 1, "[]\n", "Error: No such container")
            return CommandResult(tuple(argv), 0, json.dumps(found), "")
        if argv[:2] == ["docker", "ps"]:  # the engine's `publish` filter: host ports
            published = {a.removeprefix("publish=") for a in argv if a.startswith("publish=")}
            running = [
                c
                for c in self.containers
                if c["State"]["Status"] == "running"
                and (not published or published & _host_ports(c))
            ]
            return CommandResult(tuple(argv), 0, "".join(f"{c['Id']}\n" for c in running), "")
        answers = {
            ("ss",): self.ss,
            ("docker", "version"): json.dumps({"Version": "27.3.1", "Arch": "amd64"}),
            ("docker", "compose", "version"): "2.29.0\n",
        }
        for prefix, stdout in answers.items():
            if tuple(argv[: len(prefix)]) == prefix and stdout is not None:
                return CommandResult(tuple(argv), 0, stdout, "")
        return None

    def changes(self) -> list[list[str]]:
        """Every command that is not a read."""
        reads = (
            ["ss"],
            ["docker", "version"],
            ["docker", "compose", "version"],
            ["docker", "ps"],
            ["docker", "context", "inspect"],
        )
        return [
            c
            for c in self.commands
            if not any(c[: len(r)] == r for r in reads)
            and c[:3] != ["docker", "container", "inspect"]
        ]


def _config(tmp_path: Path, yaml: str = VALID) -> Config:
    write(tmp_path, BadConfig("ok", yaml, "", ""))
    return load_config(tmp_path / "shipyard.yml", "development", process_env={})


def _steps(config: Config, host: _Server) -> DockerSteps:
    root = PurePosixPath("/var/lib/shipyard/shop/development")
    return DockerSteps(operation_context(config, host, root=root, local=host), host)


# -- reading what listens -------------------------------------------------------------------------
def test_ss_output_names_each_listening_socket_and_its_processes() -> None:
    found = parse_ss((DATA / "ss-ltnp.txt").read_text())
    assert len(found) == 11
    assert Listener(ANY, 18801, ("python3 (pid 17702)",)) in found
    assert Listener("127.0.0.1", 18802, ("python3 (pid 17702)",)) in found
    assert Listener("::1", 18805, ("python3 (pid 17702)",)) in found
    assert Listener("::", 18803, ("python3 (pid 17702)",)) in found  # IPv6 only
    assert Listener("*", 18804, ("python3 (pid 17702)",)) in found  # IPv4 and IPv6
    assert Listener(ANY, 2024, ()) in found  # a process ss cannot see
    assert Listener("127.0.0.53", 53, ("systemd-resolve (pid 512)",)) in found
    assert Listener(ANY, 80, ("nginx (pid 1201)", "nginx (pid 1200)")) in found


def test_the_kernels_tables_give_the_listening_addresses_without_processes() -> None:
    v4 = parse_proc_net_tcp((DATA / "proc-net-tcp.txt").read_text(), ipv6=False)
    assert Listener(ANY, 18801) in v4
    assert Listener("127.0.0.1", 18802) in v4
    assert Listener(ANY, 2024) in v4
    assert len(v4) == 6  # the connections in TIME_WAIT are not listening
    v6 = parse_proc_net_tcp((DATA / "proc-net-tcp6.txt").read_text(), ipv6=True)
    # The table does not say which socket on [::] is IPv6 only: both count as every address.
    assert set(v6) == {Listener("::1", 18805), Listener("*", 18803), Listener("*", 18804)}


@pytest.mark.parametrize(
    ("bind", "listening", "overlap"),
    [
        (ANY, ANY, True),
        (ANY, "127.0.0.1", True),
        ("127.0.0.1", ANY, True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "10.0.0.5", False),
        (ANY, "::", False),  # an IPv6-only socket
        (ANY, "*", True),  # a dual-stack one takes IPv4 too
        (ANY, "::1", False),
        (ANY, "::ffff:127.0.0.1", True),
        ("::", "::1", True),
        ("::", "127.0.0.1", False),
        (ANY, "", True),  # Docker's empty host IP: every address
    ],
)
def test_addresses_overlap_when_one_covers_the_other(
    bind: str, listening: str, overlap: bool
) -> None:
    assert addresses_overlap(bind, listening) is overlap
    assert addresses_overlap(listening, bind) is overlap


# -- naming the holder ----------------------------------------------------------------------------
def test_a_process_on_the_proxy_port_is_named_with_its_pid(tmp_path: Path) -> None:
    host = _Server(ss=SS_PYTHON_ON_18080)
    assert taken_ports(_config(tmp_path), Docker(host)) == [
        "proxy.http_port: port 18080 on server is already in use by python3 (pid 4242)"
    ]
    assert ["ss", "-l", "-t", "-n", "-p"] in host.commands
    assert host.changes() == []


def test_another_container_on_the_proxy_port_is_named(tmp_path: Path) -> None:
    other = _container("blog-production-proxy", (ANY, 18080), ("::", 18080))
    host = _Server(containers=(other,))
    assert taken_ports(_config(tmp_path), Docker(host)) == [
        "proxy.http_port: port 18080 on server is already in use by container blog-production-proxy"
    ]
    assert not any(c[0] == "ss" for c in host.commands)  # Docker explained it
    # Only the containers publishing the proxy's port are listed, then inspected.
    [listing] = [c for c in host.commands if c[:2] == ["docker", "ps"]]
    assert listing[-2:] == ["--filter", "publish=18080"]


def test_a_container_removed_between_ps_and_inspect_is_left_out(tmp_path: Path) -> None:
    class Racing(_Server):
        def _answer(self, argv: list[str]) -> CommandResult | None:
            if argv[:2] == ["docker", "ps"]:
                return CommandResult(tuple(argv), 0, "id-gone\nid-blog-proxy\n", "")
            answer = super()._answer(argv)
            if answer is not None and argv[:3] == ["docker", "container", "inspect"]:
                return replace(answer, returncode=1, stderr="Error: No such container: id-gone")
            return answer

    host = Racing(containers=(_container("blog-proxy", (ANY, 18080)),))
    assert taken_ports(_config(tmp_path), Docker(host)) == [
        "proxy.http_port: port 18080 on server is already in use by container blog-proxy"
    ]


def test_the_environments_own_proxy_may_hold_its_port(tmp_path: Path) -> None:
    own = _container("shop-development-proxy", (ANY, 18080))
    ss = SS_PYTHON_ON_18080.replace('"python3",pid=4242', '"docker-proxy",pid=777')
    host = _Server(ss=ss, containers=(own,))
    assert taken_ports(_config(tmp_path), Docker(host)) == []
    # While Compose recreates it, the old container runs on under a temporary name.
    renamed = _container("3f2a_shop-development-proxy", (ANY, 18080))
    renamed["Config"]["Labels"] = {
        "com.docker.compose.project": "shop-development-infra",
        "com.docker.compose.service": "proxy",
    }
    assert taken_ports(_config(tmp_path), Docker(_Server(ss=ss, containers=(renamed,)))) == []


def test_stopped_containers_and_other_ports_and_addresses_hold_nothing(tmp_path: Path) -> None:
    host = _Server(
        ss='LISTEN 0 128 10.0.0.5:18080 0.0.0.0:* users:(("nc",pid=9,fd=3))\n',
        containers=(
            _container("old-proxy", (ANY, 18080), status="exited"),
            _container("api", (ANY, 18081)),
            _container("local-only", ("10.0.0.6", 18080)),
        ),
    )
    local = VALID.replace("  http_port: 18080\n", "  http_port: 18080\n  bind: 10.0.0.7\n")
    assert taken_ports(_config(tmp_path, local), Docker(host)) == []
    assert taken_ports(
        _config(tmp_path, VALID), Docker(host)
    ) == [  # 0.0.0.0 covers 10.0.0.5 and .6
        "proxy.http_port: port 18080 on server is already in use by container local-only"
    ]


def test_the_https_port_is_checked_when_the_proxy_has_domains(tmp_path: Path) -> None:
    ss = 'LISTEN 0 511 *:8443 *:* users:(("nginx",pid=1201,fd=6),("nginx",pid=1200,fd=6))\n'
    https = VALID.replace(
        "  http_port: 18080\n",
        "  http_port: 18080\n  https_port: 8443\n  domains: [shop.example]\n",
    )
    assert taken_ports(_config(tmp_path, VALID), Docker(_Server(ss=ss))) == []
    assert taken_ports(_config(tmp_path, https), Docker(_Server(ss=ss))) == [
        "proxy.https_port: port 8443 on server is already in use by nginx (pid 1201), "
        "nginx (pid 1200)"
    ]


@pytest.mark.parametrize("missing", ["exit 127", "raise"])
def test_without_ss_the_kernels_table_still_finds_the_port(tmp_path: Path, missing: str) -> None:
    """A remote host without iproute2 answers 127; on this machine the executable is not found."""
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 00000000:46A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
    )
    host = _Server(ss=None, proc_tcp=table, missing=missing)
    assert taken_ports(_config(tmp_path), Docker(host)) == [
        "proxy.http_port: port 18080 on server is already in use by a process shipyard cannot "
        "see (`sudo ss -ltnp 'sport = :18080'` on the host names it)"
    ]
    assert (
        taken_ports(_config(tmp_path), Docker(_Server(ss=None, missing=missing))) == []
    )  # no /proc


# -- refusing before anything changes ---------------------------------------------------------------
def test_validate_refuses_a_taken_port_before_the_lock(tmp_path: Path) -> None:
    host = _Server(ss=SS_PYTHON_ON_18080)
    with pytest.raises(PortInUse) as refused:
        _steps(_config(tmp_path), host).preflight()
    assert refused.value.message == (
        "proxy.http_port: port 18080 on server is already in use by python3 (pid 4242)"
    )
    assert refused.value.hint is not None and "another one in shipyard.yml" in refused.value.hint
    assert host.changes() == []
    assert host.files == {}


def test_infrastructure_refuses_a_port_taken_since_validate_before_writing_anything(
    tmp_path: Path,
) -> None:
    host = _Server()
    steps = _steps(_config(tmp_path), host)
    steps.preflight()  # free then
    host.ss = SS_PYTHON_ON_18080
    with pytest.raises(PortInUse) as refused:
        steps.ensure_infrastructure()
    assert "port 18080 on server is already in use by python3 (pid 4242)" in refused.value.message
    assert host.changes() == []  # no compose file written, no container created
    assert host.files == {}


def test_a_stopped_proxy_is_not_started_on_a_port_taken_meanwhile(tmp_path: Path) -> None:
    stopped = _container("shop-development-proxy", status="exited")
    host = _Server(ss=SS_PYTHON_ON_18080, containers=(stopped,))
    with pytest.raises(Exception, match=r"the proxy cannot start: proxy.http_port: port 18080"):
        _steps(_config(tmp_path), host)._ensure_proxy()
    assert host.changes() == []


def test_on_this_machines_engine_compose_is_asked_only_when_the_infrastructure_changes(
    tmp_path: Path,
) -> None:
    """A redeploy whose infrastructure is as last verified runs no Compose command on this
    machine's engine (a new version's container is created over its socket), so validate does
    not ask Compose's version; it does when the definition changed, and always on a remote host."""
    config = _config(tmp_path)

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"Version": "27.3.1", "Arch": "amd64", "Os": "linux"})
        return httpx.Response(200, json=[])  # no container publishes the proxy's port

    def preflight(host: _Server, *, local: bool) -> str:
        steps = _steps(config, host)
        if local:
            steps.docker.api = EngineAPI(
                "/x.sock", host.name, transport=httpx.MockTransport(engine)
            )
        return steps.preflight()

    def asked(host: _Server) -> bool:
        return ["docker", "compose", "version", "--short"] in host.commands

    remote = _Server()
    assert "compose 2.29.0" in preflight(remote, local=False) and asked(remote)
    never_verified = _Server()
    assert "compose 2.29.0" in preflight(never_verified, local=True) and asked(never_verified)

    verified = _Server()
    steps = _steps(config, verified)
    steps.docker.api = EngineAPI("/x.sock", "server", transport=httpx.MockTransport(engine))
    definition = hashlib.sha256(to_yaml(steps._infra()).encode()).hexdigest()
    record = json.dumps({"definition": definition}).encode()
    verified.files[str(steps.layout.infra_verified)] = (record, 0o600)
    found = preflight(verified, local=True)
    assert (
        found
        == "docker 27.3.1 reachable on server (compose not needed: the infrastructure is as last verified)"
    )
    assert not asked(verified)

    changed = _Server()
    other = json.dumps({"definition": "0" * 64}).encode()
    changed.files[str(steps.layout.infra_verified)] = (other, 0o600)
    assert "compose 2.29.0" in preflight(changed, local=True) and asked(changed)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(_checks, "_tool_problems", lambda _config, _local, **_: [])  # this PATH
    project = tmp_path / "project"
    project.mkdir()
    (project / "migrations").mkdir()
    write(project, BadConfig("ok", VALID, "", ""))
    clean_tree(project)
    return project / "shipyard.yml"


@pytest.mark.parametrize("command", ["check", "deploy"])
def test_check_and_deploy_exit_3_naming_the_port_and_its_holder(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    host = _Server(ss=SS_PYTHON_ON_18080)
    monkeypatch.setattr(library, "connect", lambda _config: host)
    monkeypatch.setattr(sys, "argv", ["shipyard", command, "development", "-c", str(cli_env)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.INVALID_CONFIG
    stderr = " ".join(capsys.readouterr().err.split())
    assert "proxy.http_port: port 18080 on server is already in use by python3 (pid 4242)" in stderr
    assert host.changes() == []
    assert not any(path.endswith("/lock") for path in host.files)  # never took the lock


def test_check_passes_when_only_the_environments_proxy_holds_its_port(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = _Server(containers=(_container("shop-development-proxy", (ANY, 18080)),))
    monkeypatch.setattr(library, "connect", lambda _config: host)
    monkeypatch.setattr(sys, "argv", ["shipyard", "check", "development", "-c", str(cli_env)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.OK
    assert "no other process or container holds port 18080 on server" in capsys.readouterr().err
