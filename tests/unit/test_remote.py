"""SSH argv, several-node rollouts, provision files, and the config keys for remote targets."""

from __future__ import annotations

import configparser
import io
import json
import os
import shlex
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard.build import Image, VersionInfo
from shipyard.config import RegistrySection, load_config
from shipyard.delivery import DeliveryError, deliver
from shipyard.deploy import Interrupted, across_nodes, rollout_error
from shipyard.docker import Docker, normalise_architecture, parse_image
from shipyard.errors import (
    CommandFailed,
    ConfigError,
    DeployFailed,
    HostUnreachable,
    RollbackFailed,
    ShipyardError,
)
from shipyard.hosts import (
    CommandResult,
    LocalHost,
    SSHHost,
    SSHSettings,
    SudoHost,
    parse_ssh_target,
)
from shipyard.providers.docker import DockerSteps
from shipyard.provision import ProvisionOptions, provision
from shipyard.provision import _files as files
from shipyard.secrets import EnvFileBackend
from tests.bad_configs import ENV_FILE, VALID, BadConfig, write
from tests.fakes import FakeHost
from tests.unit.pipeline_harness import operation_context


def test_ssh_target_parsing() -> None:
    target = parse_ssh_target("ssh://deploy@example.com:2222")
    assert (target.user, target.host, target.port) == ("deploy", "example.com", 2222)
    assert target.known_hosts_name == "[example.com]:2222"
    assert parse_ssh_target("ssh://example.com").known_hosts_name == "example.com"
    with pytest.raises(ShipyardError):
        parse_ssh_target("http://example.com")


def test_ssh_argv_is_strict_and_multiplexed() -> None:
    host = SSHHost(
        "ssh://deploy@example.com:2222",
        SSHSettings(
            known_hosts=Path("/k/known_hosts"),
            identity_file=Path("/k/id"),
            options=("ProxyJump=bastion",),
        ),
    )
    try:
        argv = host.ssh_argv("--", "example.com")
        joined = " ".join(argv)
        assert "StrictHostKeyChecking=yes" in joined
        assert "BatchMode=yes" in joined
        assert "UserKnownHostsFile=/k/known_hosts" in joined
        assert "ControlPath=" in joined and "shipyard-ssh-" in joined
        assert argv[argv.index("-p") + 1] == "2222"
        assert argv[argv.index("-l") + 1] == "deploy"
        assert argv[argv.index("-i") + 1] == "/k/id"
        assert "ProxyJump=bastion" in argv
        control = Path(joined.split("ControlPath=")[1].split()[0]).parent
        assert control.stat().st_mode & 0o777 == 0o700
    finally:
        host.close()
    assert not control.exists(), "the private socket directory is removed at close"


def test_remote_command_is_joined_once_and_quoted() -> None:
    host = SSHHost("ssh://h")
    command = host._remote(["echo", "a b", "$HOME", "it's"], cwd="/srv/x y", env_prefix="")
    assert command == "cd '/srv/x y' && exec " + shlex.join(["echo", "a b", "$HOME", "it's"])
    # With an env file the directory change comes after reading it, before the command.
    with_env = host._remote(["true"], cwd="/srv", env_prefix="set -a; . f; ")
    assert with_env == "set -a; . f; cd /srv && exec true"
    host.close()


def test_ssh_port_is_passed_only_when_the_target_names_one() -> None:
    """Without a port in the URL, a Port in the operator's ~/.ssh/config applies."""
    plain, explicit = SSHHost("ssh://deploy@web1"), SSHHost("ssh://deploy@web1:22")
    try:
        assert "-p" not in plain.ssh_argv()
        assert explicit.ssh_argv()[explicit.ssh_argv().index("-p") + 1] == "22"
    finally:
        plain.close()
        explicit.close()


def test_rollout_stops_at_the_first_failure() -> None:
    started: list[str] = []

    def action(node: str) -> str:
        started.append(node)
        # One at a time runs on this thread, where signal handlers work.
        assert threading.current_thread() is threading.main_thread()
        if node == "b":
            raise HostUnreachable("cannot reach b: Connection refused")
        return f"done {node}"

    outcomes = across_nodes(["a", "b", "c"], action, parallelism=1)
    assert started == ["a", "b"]
    assert [(o.node, o.ok, o.started) for o in outcomes] == [
        ("a", True, True),
        ("b", False, True),
        ("c", False, False),
    ]
    error = rollout_error(outcomes, "deploy")
    assert isinstance(error, HostUnreachable)  # same type: same exit code
    assert "stopped at node b" in error.message
    assert "done on: a" in error.message and "not started on: c" in error.message


def test_rollout_reports_every_failed_node_and_the_most_severe_error() -> None:
    def action(node: str) -> str:
        if node == "a":
            raise DeployFailed("health", "a never became healthy")
        if node == "b":
            raise RollbackFailed("switching back failed on b")
        return node

    outcomes = across_nodes(["a", "b", "c"], action, parallelism=2)
    error = rollout_error(outcomes, "deploy")
    assert isinstance(error, RollbackFailed)  # exit 7: a person must act
    assert "stopped at node b" in error.message
    assert "also failed on a" in error.message and "a never became healthy" in error.message
    assert "not started on: c" in error.message


def test_rollout_runs_nodes_in_parallel_up_to_the_limit() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(2, timeout=10)

    def action(node: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if node in {"a", "b"}:
            gate.wait()  # a and b must be in flight together
        with lock:
            running -= 1
        return node

    outcomes = across_nodes(["a", "b", "c", "d"], action, parallelism=2)
    assert all(o.ok for o in outcomes)
    assert peak == 2
    assert rollout_error(outcomes, "deploy") is None


def test_firewall_allows_only_ssh_http_https() -> None:
    rules = files.firewall_rules([22, 80, 443, 22])
    assert "policy drop" in rules
    assert "tcp dport { 22, 80, 443 } accept" in rules
    assert "flush ruleset" not in rules  # Docker's own tables are left alone
    assert "delete table inet shipyard_filter" in rules  # reloads replace, never duplicate
    assert "meta l4proto { icmp, ipv6-icmp } accept" in rules  # IPv6 neighbour discovery
    # DHCPv6 replies come from a link-local server to the solicit's multicast: not "related".
    assert "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept" in rules


def test_firewall_unit_loads_before_the_network_without_an_ordering_cycle() -> None:
    """Ordered as Debian's nftables.service: default dependencies would order it after
    sysinit.target, which cloud-init hosts order after network-pre.target (a cycle)."""
    unit = configparser.ConfigParser(strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(files.firewall_unit())
    section = unit["Unit"]
    assert section["DefaultDependencies"] == "no"
    assert section["Wants"].split() == ["network-pre.target"]
    assert set(section["Before"].split()) == {"network-pre.target", "shutdown.target"}
    assert section["Conflicts"].split() == ["shutdown.target"]
    assert "After" not in section


def test_docker_daemon_json_keeps_other_settings() -> None:
    existing = {"storage-driver": "overlay2", "live-restore": False}
    merged = json.loads(files.docker_daemon(existing, "10m", 5, live_restore=True))
    assert merged == {
        "storage-driver": "overlay2",
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "5"},
    }
    kept = json.loads(files.docker_daemon(existing, "10m", 5, live_restore=False))
    assert kept["live-restore"] is False  # not provision's to set: left as it was
    assert "live-restore" not in json.loads(files.docker_daemon({}, "10m", 5, live_restore=False))


def test_prune_spares_shipyard_releases() -> None:
    service = files.prune_service("168h")
    assert "--filter label!=org.shipyard.app" in service
    assert "--filter until=168h" in service


def _config(tmp_path: Path, yaml: str, env_file: str = ENV_FILE) -> Path:
    return write(tmp_path, BadConfig("x", yaml, "", "", env_file=env_file))


def test_targets_and_ssh_settings_load(tmp_path: Path) -> None:
    yaml = (
        VALID.replace(
            "  development:\n    target: local",
            "  development:\n    target: ssh://root@a.example\n    targets: [ssh://root@b.example:2222]",
        )
        + "providers:\n  ssh:\n    known_hosts: keys/known_hosts\n    options: [ProxyJump=bastion]\n"
    )
    config = load_config(_config(tmp_path, yaml), "development", process_env={})
    assert config.environment.nodes == ("ssh://root@a.example", "ssh://root@b.example:2222")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("providers:\n  ssh:\n    options: [StrictHostKeyChecking=no]\n", "cannot be overridden"),
        ("providers:\n  ssh:\n    known_host: x\n", "unknown key"),
        (
            "deploy:\n  registry:\n    url: registry.example/acme\n    username: ci\n    password_env: REGISTRY_PASSWORD\n",
            "REGISTRY_PASSWORD is not set",
        ),
    ],
)
def test_bad_remote_settings_are_config_errors(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, VALID + extra), "development", process_env={})
    assert expected in str(caught.value)


def test_targets_must_be_ssh(tmp_path: Path) -> None:
    yaml = VALID.replace(
        "  development:\n    target: local",
        "  development:\n    target: local\n    targets: [local]",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, yaml), "development", process_env={})
    assert "ssh://" in str(caught.value)


def test_registry_password_is_masked(tmp_path: Path) -> None:
    extra = "deploy:\n  registry:\n    url: registry.example\n    username: ci\n    password_env: REGISTRY_PASSWORD\n"
    config = load_config(
        _config(tmp_path, VALID + extra, ENV_FILE + "REGISTRY_PASSWORD=hunter2-registry\n"),
        "development",
        process_env={},
    )
    assert "hunter2-registry" not in config.masker("login with hunter2-registry")


class _RecordingHost(FakeHost):
    """A FakeHost that also keeps each command's stdin and environment, answers `docker image
    inspect`, `docker version` and `mktemp -d`, and fails `docker login` when told to."""

    def __init__(
        self,
        name: str,
        images: dict[str, str],
        *,
        architecture: str = "amd64",
        foreign: Mapping[str, str] | None = None,
        context: str = "default unix:///var/run/docker.sock",
        login_fails: bool = False,
    ) -> None:
        super().__init__(respond=self._answer)
        self._name = name
        self.images = images  # ref → image ID
        self.architecture = architecture  # of the engine, and of the images it has
        self.foreign = dict(foreign or {})  # ref → architecture, for images of another one
        self.context = context  # `docker context inspect`: name and endpoint
        self.login_fails = login_fails
        self.made: list[str] = []  # by `mktemp -d`

    @property
    def name(self) -> str:
        return self._name

    def _answer(self, argv: list[str]) -> CommandResult | None:
        if argv == ["mktemp", "-d"]:
            directory = f"/tmp/tmp.{self._name}{len(self.made)}"
            self.made.append(directory)
            self.files[directory] = (b"", 0o700)
            return CommandResult(tuple(argv), 0, directory + "\n", "")
        if argv[:2] == ["docker", "--config"]:
            argv = ["docker", *argv[3:]]
        if argv[:2] == ["docker", "login"] and self.login_fails:
            raise CommandFailed(self._name, argv, 1, "unauthorized: incorrect username or password")
        if argv[:3] == ["docker", "context", "inspect"]:
            return CommandResult(tuple(argv), 0, self.context + "\n", "")
        if argv[:2] == ["docker", "version"]:
            server = {"Version": "27.3.1", "Arch": self.architecture, "Os": "linux"}
            return CommandResult(tuple(argv), 0, json.dumps(server), "")
        if argv[:3] == ["docker", "image", "inspect"]:
            image = self.images.get(argv[3])
            if image is None:
                return CommandResult(tuple(argv), 1, "", "No such image")
            document = [
                {
                    "Id": image,
                    "Config": {"Labels": {}},
                    "Created": "",
                    "RootFS": {"Layers": [image]},
                    "Os": "linux",
                    "Architecture": self.foreign.get(argv[3], self.architecture),
                }
            ]
            return CommandResult(tuple(argv), 0, json.dumps(document), "")
        if argv[:2] == ["docker", "pull"]:
            self.images[argv[-1]] = "sha256:abc"
        if argv[:2] == ["docker", "tag"]:
            self.images[argv[-1]] = self.images[argv[-2]]
        if argv[:3] == ["docker", "image", "rm"]:
            self.images.pop(argv[-1], None)
        return None


_REGISTRY = RegistrySection(url="registry.example/acme", username="ci", password_env="REG_PASSWORD")
_REGISTRY_SECRETS = EnvFileBackend({"REG_PASSWORD": "hunter2-registry"})
_REF = "registry.example/acme/shop:1.0.0"


def _operator(**kwargs: Any) -> _RecordingHost:
    return _RecordingHost(
        "operator", {"shop:1.0.0": "sha256:abc", "sha256:abc": "sha256:abc"}, **kwargs
    )


def test_registry_delivery_keeps_the_password_out_of_argv_and_off_disk() -> None:
    """The login, push and pull use a private configuration directory on each side (`mktemp
    -d`, 0700), removed afterwards: the credentials do not stay in ~/.docker/config.json."""
    local, remote = _operator(), _RecordingHost("server", {})
    done = deliver(
        "shop:1.0.0", "sha256:abc", local, remote, registry=_REGISTRY, secrets=_REGISTRY_SECRETS
    )
    assert done.method == "registry"
    for host, verb in ((local, "push"), (remote, "pull")):
        assert all("hunter2-registry" not in " ".join(c) for c in host.commands)
        made = host.commands.index(["mktemp", "-d"])
        [directory] = host.made
        login = next(i for i, c in enumerate(host.commands) if "login" in c)
        assert host.commands[login][:5] == ["docker", "--config", directory, "login", "--username"]
        assert "--password-stdin" in host.commands[login]
        assert host.stdins[login] == "hunter2-registry"
        moved = host.commands.index(["docker", "--config", directory, verb, "--quiet", _REF])
        removed = host.commands.index(["rm", "-rf", directory])
        assert made < login < moved < removed
        assert directory not in host.files
        assert all(env is None or "DOCKER_HOST" not in env for env in host.envs)
    assert remote.images["shop:1.0.0"] == "sha256:abc"  # tagged as the compose files expect


def test_registry_login_directories_are_removed_when_a_login_fails() -> None:
    local, remote = _operator(), _RecordingHost("server", {}, login_fails=True)
    with pytest.raises(DeliveryError) as refused:
        deliver(
            "shop:1.0.0", "sha256:abc", local, remote, registry=_REGISTRY, secrets=_REGISTRY_SECRETS
        )
    assert "docker login to registry.example as ci failed on server" in refused.value.message
    for host in (local, remote):
        assert len(host.made) == 1
        assert [c for c in host.commands if c[:2] == ["rm", "-rf"]] == [["rm", "-rf", *host.made]]
        assert host.made[0] not in host.files
    assert not any("push" in c for c in local.commands)


def test_registry_login_keeps_the_operators_docker_context() -> None:
    """The private directory has no contexts: the engine of the operator's current context
    (Docker Desktop, colima) is named with DOCKER_HOST instead."""
    socket = "unix:///Users/me/.docker/run/docker.sock"
    local = _operator(context=f"desktop-linux {socket}")
    deliver(
        "shop:1.0.0",
        "sha256:abc",
        local,
        _RecordingHost("server", {}),
        registry=_REGISTRY,
        secrets=_REGISTRY_SECRETS,
    )
    push = next(i for i, c in enumerate(local.commands) if "push" in c)
    assert local.envs[push] == {"DOCKER_HOST": socket}


def test_registry_without_a_username_uses_the_default_configuration() -> None:
    local, remote = _operator(), _RecordingHost("server", {})
    anonymous = RegistrySection(url="registry.example/acme")
    assert deliver("shop:1.0.0", "sha256:abc", local, remote, registry=anonymous).method == (
        "registry"
    )
    assert ["docker", "push", "--quiet", _REF] in local.commands
    assert ["docker", "pull", "--quiet", _REF] in remote.commands
    for host in (local, remote):
        assert not any("--config" in c or c[0] == "mktemp" or "login" in c for c in host.commands)


def test_delivery_is_skipped_when_the_host_has_the_image() -> None:
    local = _RecordingHost("operator", {"shop:1.0.0": "sha256:abc", "sha256:abc": "sha256:abc"})
    remote = _RecordingHost("server", {"sha256:abc": "sha256:abc", "shop:1.0.0": "sha256:abc"})
    done = deliver("shop:1.0.0", "sha256:abc", local, remote)
    assert done.method == "present"
    assert not any(c[:2] in (["docker", "load"], ["docker", "push"]) for c in remote.commands)
    assert all(c[:3] == ["docker", "image", "inspect"] for c in local.commands)


DATA = Path(__file__).parent / "data"


def test_an_image_keeps_its_fingerprint_across_image_stores() -> None:
    """The same image (golang-migrate) as Docker 20.10's classic store and Docker 29's containerd
    store describe it after `docker save | docker load`: other IDs, one fingerprint."""
    classic = json.loads((DATA / "image-inspect-classic-store.json").read_text())[0]
    containerd = json.loads((DATA / "image-inspect-containerd-store.json").read_text())[0]
    assert classic["Id"] != containerd["Id"]
    assert parse_image(classic).fingerprint == parse_image(containerd).fingerprint
    other_layer = {**containerd, "RootFS": {"Type": "layers", "Layers": ["sha256:" + "0" * 64]}}
    assert parse_image(other_layer).fingerprint != parse_image(classic).fingerprint
    relabelled = {**classic, "Config": {**classic["Config"], "Labels": {"x": "y"}}}
    assert parse_image(relabelled).fingerprint != parse_image(classic).fingerprint


def test_ssh_targets_connect_through_ssh_and_keep_state_in_var_lib(tmp_path: Path) -> None:
    from shipyard.session import connect, state_root  # noqa: PLC0415

    yaml = VALID.replace(
        "  development:\n    target: local", "  development:\n    target: ssh://deploy@a.example"
    )
    config = load_config(_config(tmp_path, yaml), "development", process_env={})
    host = connect(config)
    try:
        assert isinstance(host, SSHHost)
        assert host.target.user == "deploy"
        assert state_root(config, host) == PurePosixPath("/var/lib/shipyard/shop/development")
    finally:
        host.close()


def test_debian_12_gets_dockers_apt_repository_after_a_first_update() -> None:
    """A fresh Debian 12 host has no package lists: update, install curl, add Docker's
    repository (its Compose v2 is the only one for Debian 12), update again, install."""

    def respond(argv: list[str]) -> CommandResult | None:
        def ok(out: str) -> CommandResult:
            return CommandResult(tuple(argv), 0, out, "")

        if argv == ["id", "-u"]:
            return ok("0")
        if argv == ["dpkg", "--print-architecture"]:
            return ok("amd64")
        if argv[:2] == ["sh", "-c"] and "VERSION_CODENAME" in argv[2]:
            return ok("bookworm")
        if argv[0] == "dpkg-query":
            return CommandResult(tuple(argv), 1, "", "no packages found")
        return None

    host = FakeHost(respond=respond)
    host.files["/etc/os-release"] = (
        b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
        0o644,
    )
    steps = provision(host, ProvisionOptions())
    assert [(s.step, s.status) for s in steps][:2] == [("os", "unchanged"), ("packages", "changed")]
    apt = [
        " ".join(c[2:4]) if c[0] == "env" else " ".join(c[:2])
        for c in host.commands
        if c[:1] == ["curl"] or (c[0] == "env" and c[2] == "apt-get")
    ]
    assert apt == [
        "apt-get update",
        "apt-get install",  # curl and CA certificates
        "curl -fsSL",
        "apt-get update",
        "apt-get install",  # Docker's engine and Compose plugin, nftables
    ], apt
    sources = host.files["/etc/apt/sources.list.d/docker.sources"][0]
    assert b"Suites: bookworm" in sources and b"download.docker.com/linux/debian" in sources
    install = [c for c in host.commands if c[0] == "env" and c[3] == "install"][-1]
    assert "docker-compose-plugin" in install and "docker-ce" in install


def test_nodes_deployed_in_parallel_share_one_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard import build  # noqa: PLC0415

    config = load_config(_config(tmp_path, VALID), "development", process_env={})
    version = build.VersionInfo("1.0.0", "a" * 40, "2026-01-01T00:00:00Z", dirty=False)
    calls: list[str] = []

    def slow_build(*args: Any, **kwargs: Any) -> build.Image:
        calls.append(threading.current_thread().name)
        time.sleep(0.2)  # both nodes ask while the first build runs
        return build.Image(tag=args[3], id="sha256:built", version=version)

    monkeypatch.setattr(build, "_build", slow_build)
    monkeypatch.setattr(build, "_BUILT", {})
    images: list[build.Image] = []
    threads = [
        threading.Thread(
            target=lambda: images.append(build.build_image(config, FakeHost(), version))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert {i.id for i in images} == {"sha256:built"}
    assert sorted(i.reused for i in images) == [False, True]


def test_architectures_are_named_as_images_name_them() -> None:
    """`docker info` and `uname -m` say x86_64/aarch64, images and `docker version` amd64/arm64."""
    assert [normalise_architecture(a) for a in ("x86_64", "aarch64", "amd64", "arm64")] == [
        "amd64",
        "arm64",
        "amd64",
        "arm64",
    ]
    engine = Docker(_RecordingHost("server", {}, architecture="x86_64")).info()
    assert (engine.architecture, engine.platform) == ("amd64", "linux/amd64")
    golden = json.loads((DATA / "image-inspect-containerd-store.json").read_text())[0]
    image = parse_image(golden)
    assert (image.os, image.architecture, image.runs_on(engine)) == ("linux", "amd64", True)
    arm = parse_image({**golden, "Architecture": "aarch64"})
    assert (arm.platform, arm.runs_on(engine)) == ("linux/arm64", False)


def _steps(tmp_path: Path, local: _RecordingHost, remote: _RecordingHost) -> DockerSteps:
    config = load_config(_config(tmp_path, VALID), "development", process_env={})
    root = PurePosixPath("/var/lib/shipyard/shop/development")
    return DockerSteps(operation_context(config, remote, root=root, local=local), remote)


_IMAGE = Image(tag="shop:1.0.0", id="sha256:abc", version=VersionInfo("1.0.0", "f" * 40, "", False))


def test_an_app_image_for_another_architecture_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    """An arm64 laptop deploying to an amd64 server: the image would not start there."""
    local = _operator(architecture="arm64")
    remote = _RecordingHost("server", {}, architecture="x86_64")
    with pytest.raises(DeliveryError) as refused:
        _steps(tmp_path, local, remote).deliver(_IMAGE)
    message = refused.value.message
    assert "shop:1.0.0 is built for linux/arm64" in message and "runs linux/amd64" in message
    assert "exec format error" in message
    assert refused.value.hint is not None and "linux/amd64" in refused.value.hint
    sent = ("load", "pull", "tag", "login")
    assert not any(verb in c for c in remote.commands for verb in sent)
    assert not any(verb in c for c in local.commands for verb in ("save", "push", "tag"))


def test_support_images_for_another_architecture_are_left_for_the_host_to_pull(
    tmp_path: Path,
) -> None:
    local = _RecordingHost(
        "operator",
        {
            "shop:1.0.0": "sha256:abc",
            "sha256:abc": "sha256:abc",
            "caddy:2": "sha256:cad",
            "shipyard-local/postgres:17": "sha256:pg",
        },
        foreign={"caddy:2": "arm64", "shipyard-local/postgres:17": "arm64"},
    )
    remote = _RecordingHost("server", {"shop:1.0.0": "sha256:abc"})
    summary = _steps(tmp_path, local, remote).deliver(_IMAGE)
    assert summary == (
        "shop:1.0.0: the host already has this image; "
        "caddy:2: pulled by server (linux/amd64; this machine's copy is linux/arm64); "
        "docker:27-cli: pulled by server; "
        "shipyard-local/postgres:17: pulled by server (linux/amd64; this machine's copy is "
        "linux/arm64); "
        "migrate/migrate:v4.18.3: pulled by server"  # not on this machine
    )
    assert not any("load" in c for c in remote.commands)


def test_a_signal_during_a_parallel_rollout_lets_running_nodes_finish_and_starts_no_more() -> None:
    started: list[str] = []
    finished: list[str] = []
    b_running, signalled = threading.Event(), threading.Event()

    def action(node: str) -> str:
        started.append(node)
        if node == "b":  # a and b both deploying when the signal comes
            b_running.set()
            assert signalled.wait(10)
        if node == "a":
            assert b_running.wait(10)
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread
            signalled.set()
            time.sleep(0.3)  # still deploying when the signal lands
        finished.append(node)
        return node

    with pytest.raises(Interrupted) as stopped:
        across_nodes(["a", "b", "c"], action, parallelism=2)
    assert sorted(started) == ["a", "b"] and sorted(finished) == ["a", "b"]
    assert "interrupted by SIGTERM" in stopped.value.message
    assert "done on: a, b" in stopped.value.message and "not started on: c" in stopped.value.message


_UBUNTU = b'PRETTY_NAME="Ubuntu 24.04.2 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'
_INSTALLED = {
    ("id", "-u"): "0",
    ("docker", "version", "--format", "{{.Client.Version}}"): "27.5.1",
    ("docker", "compose", "version", "--short"): "2.33.0",
}


class _Server(FakeHost):
    """An Ubuntu 24.04 server with Docker installed and running, as provision sees it (as root):
    users with their homes, and each path's owner, group and mode."""

    def __init__(self, *, running: str = "", swarm: str = "inactive") -> None:
        super().__init__(respond=self._answer)
        self.running = running  # what `docker ps --quiet` prints
        self.swarm = swarm  # the engine's Swarm.LocalNodeState
        self.live_restore = False  # the running engine's, from daemon.json when it last read it
        self.reloads_take = True  # whether dockerd takes daemon.json on SIGHUP
        self.homes = {"root": "/root"}
        self.meta: dict[str, tuple[str, str, int]] = {}  # path → (owner, group, mode)
        self.files["/etc/os-release"] = (_UBUNTU, 0o644)

    def add_user(self, user: str, keys: bytes | None = None) -> None:
        self.homes[user] = "/root" if user == "root" else f"/home/{user}"
        if keys is not None:
            path = f"{self.homes[user]}/.ssh/authorized_keys"
            self.files[path] = (keys, 0o600)
            self.meta[path] = (user, user, 0o600)
            self.meta[f"{self.homes[user]}/.ssh"] = (user, user, 0o700)

    def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
        super().put(path, data, mode=mode)
        self.meta.setdefault(str(path.parent), ("root", "root", 0o700))  # umask 077
        self.meta[str(path)] = ("root", "root", mode)

    def _answer(self, argv: list[str]) -> CommandResult | None:
        fixed = _INSTALLED.get(tuple(argv))
        if fixed is not None:
            return _ok(argv, fixed)
        match argv:
            case ["dpkg-query", "-W", "-f", _, *packages]:
                return _ok(argv, "\n".join(f"{p} ii" for p in packages))
            case ["systemctl", "is-active" | "is-enabled" as question, _]:
                return _ok(argv, "active" if question == "is-active" else "enabled")
        return self._engine(argv) or self._users(argv) or self._paths(argv)

    def _engine(self, argv: list[str]) -> CommandResult | None:
        match argv:
            case ["docker", "ps", "--quiet"]:
                return _ok(argv, self.running)
            case ["docker", "info", "--format", template]:
                return _ok(
                    argv,
                    template.replace("{{.Swarm.LocalNodeState}}", self.swarm).replace(
                        "{{.LiveRestoreEnabled}}", str(self.live_restore).lower()
                    ),
                )
            case ["systemctl", "restart" | "reload" as verb, "docker.service"]:
                if verb == "restart" or self.reloads_take:
                    daemon = json.loads(self.files.get(files.DAEMON_JSON, (b"{}", 0))[0])
                    self.live_restore = daemon.get("live-restore", False)
        return None

    def _users(self, argv: list[str]) -> CommandResult | None:
        match argv:
            case ["id", "-u", user]:
                return _ok(argv, "1000") if user in self.homes else _failed(argv)
            case ["id", "-nG", user]:
                return _ok(argv, f"{user} docker")
            case ["getent", "passwd", user] if user in self.homes:
                return _ok(argv, f"{user}:x:1000:1000::{self.homes[user]}:/bin/bash\n")
            case ["getent", "passwd", _]:
                return _failed(argv)
            case ["useradd", *_, user]:
                self.homes[user] = f"/home/{user}"
        return None

    def _paths(self, argv: list[str]) -> CommandResult | None:
        match argv:
            case ["stat", "-c", fmt, *paths] if all(p in self.meta for p in paths):
                shown = [
                    fmt.replace("%U", u)
                    .replace("%G", g)
                    .replace("%a", f"{m:o}")
                    .replace("%F", "regular file" if p in self.files else "directory")
                    for p, (u, g, m) in ((p, self.meta[p]) for p in paths)
                ]
                return _ok(argv, "\n".join(shown))
            case ["stat", *_]:
                return _failed(argv)
            case ["chown", owner, *paths]:
                user, _, group = owner.partition(":")
                for path in paths:
                    self.meta[path] = (user, group, self.meta[path][2])
            case ["chmod", mode, *paths]:
                for path in paths:
                    self.meta[path] = (*self.meta[path][:2], int(mode, 8))
        return None


def _ok(argv: list[str], out: str = "") -> CommandResult:
    return CommandResult(tuple(argv), 0, out, "")


def _failed(argv: list[str]) -> CommandResult:
    return CommandResult(tuple(argv), 1, "", "failed")


def _provisioned(host: FakeHost, options: ProvisionOptions | None = None) -> dict[str, Any]:
    return {s.step: s for s in provision(host, options or ProvisionOptions())}


_RESTART = ["systemctl", "restart", "docker.service"]
_RELOAD = ["systemctl", "reload", "docker.service"]


def test_docker_daemon_never_restarts_an_engine_with_running_containers() -> None:
    """Log rotation waits for the next restart; live-restore is applied by a reload (SIGHUP), which
    leaves the containers running."""
    busy = _Server(running="3f2a9c1d0b7e\n")
    busy.files[files.DAEMON_JSON] = (b'{"storage-driver": "overlay2"}', 0o644)
    first = _provisioned(busy)["docker-daemon"]
    assert first.status == "changed"
    assert "applies at the next restart of docker.service" in first.detail, first.detail
    assert "live-restore on; docker reloaded" in first.detail, first.detail
    assert _RESTART not in busy.commands
    assert busy.commands.count(_RELOAD) == 1
    assert busy.live_restore
    written = json.loads(busy.files[files.DAEMON_JSON][0])
    assert written == {
        "storage-driver": "overlay2",
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "5"},
    }
    again = _provisioned(busy)["docker-daemon"]
    assert (again.status, again.detail) == ("unchanged", "json-file, 10m x 5; live-restore on")
    assert _RESTART not in busy.commands
    assert busy.commands.count(_RELOAD) == 1

    idle = _Server(running="")
    done = _provisioned(idle)["docker-daemon"]
    assert (done.status, done.detail.endswith("docker restarted")) == ("changed", True)
    assert _RESTART in idle.commands and _RELOAD not in idle.commands
    assert idle.live_restore
    assert _provisioned(idle)["docker-daemon"].status == "unchanged"


def test_live_restore_alone_is_applied_by_a_reload_even_on_an_idle_engine() -> None:
    host = _Server(running="")
    rotation = files.docker_daemon({}, "10m", 5, live_restore=False)
    host.files[files.DAEMON_JSON] = (rotation.encode(), 0o644)
    step = _provisioned(host)["docker-daemon"]
    assert (step.status, step.detail) == (
        "changed",
        "json-file, 10m x 5; live-restore on; docker reloaded",
    )
    assert _RELOAD in host.commands and _RESTART not in host.commands
    assert json.loads(host.files[files.DAEMON_JSON][0])["live-restore"] is True


def test_an_engine_that_lost_live_restore_is_reloaded_again() -> None:
    """daemon.json already asks for live-restore, but the running engine does not have it."""
    host = _Server(running="3f2a9c1d0b7e\n")
    content = files.docker_daemon({}, "10m", 5, live_restore=True)
    host.files[files.DAEMON_JSON] = (content.encode(), 0o644)
    step = _provisioned(host)["docker-daemon"]
    assert (step.status, step.detail.endswith("docker reloaded")) == ("changed", True)
    assert host.files[files.DAEMON_JSON][0] == content.encode()  # not rewritten
    assert host.live_restore


def test_a_reload_that_does_not_take_fails_the_step() -> None:
    host = _Server(running="3f2a9c1d0b7e\n")
    host.reloads_take = False
    options = ProvisionOptions(docker_reload_timeout=0, poll_interval=0)
    step = _provisioned(host, options)["docker-daemon"]
    assert step.status == "failed"
    assert "still reports live-restore off" in step.detail, step.detail
    assert json.loads(host.files[files.DAEMON_JSON][0])["live-restore"] is True


@pytest.mark.parametrize("state", ["active", "locked"])
def test_an_engine_in_swarm_mode_gets_no_live_restore(state: str) -> None:
    host = _Server(running="3f2a9c1d0b7e\n", swarm=state)
    step = _provisioned(host)["docker-daemon"]
    assert step.status == "changed"
    assert f"live-restore skipped: Docker does not support it in swarm mode ({state})" in (
        step.detail
    ), step.detail
    assert "live-restore" not in json.loads(host.files[files.DAEMON_JSON][0])
    assert _RELOAD not in host.commands and _RESTART not in host.commands
    again = _provisioned(host)["docker-daemon"]
    assert again.status == "unchanged"
    assert "live-restore skipped" in again.detail
    assert _RELOAD not in host.commands


_KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
_KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
_KEY_C = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCCCC"
# Root's authorized_keys as cloud-init writes it on Ubuntu's cloud images.
_CLOUD_ROOT_KEYS = (
    "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the "
    'user \\"ubuntu\\" rather than the user \\"root\\".\';echo;sleep 10;exit 142" '
    f"{_KEY_A} operator@laptop\n"
)


def test_authorized_keys_adds_login_keys_only_and_keeps_what_is_there() -> None:
    offered = (
        _CLOUD_ROOT_KEYS
        + f"# a comment\n\n{_KEY_B} ci@builder\n"
        + f'from="10.0.0.0/8,192.168.0.1",Command="x" {_KEY_C} forced\n'
        + f'from="10.0.0.1",no-pty {_KEY_C} restricted\n'
    ).encode()
    content, added = files.authorized_keys(None, offered)
    assert added == 2
    assert content == f'{_KEY_B} ci@builder\nfrom="10.0.0.1",no-pty {_KEY_C} restricted\n'.encode()

    own = f"# deploy's own\n{_KEY_B} other-comment".encode()  # no final newline
    content, added = files.authorized_keys(own, offered)
    assert (added, content) == (1, own + f'\nfrom="10.0.0.1",no-pty {_KEY_C} restricted\n'.encode())
    assert files.authorized_keys(content, offered) == (content, 0)


def test_deploy_user_gets_the_connecting_users_login_keys_owned_by_it() -> None:
    host = _Server()
    host.add_user("root", (_CLOUD_ROOT_KEYS + f"{_KEY_B} operator\n").encode())
    step = _provisioned(host)["deploy-user"]
    assert step.status == "changed", step.detail
    assert host.files["/home/deploy/.ssh/authorized_keys"][0] == f"{_KEY_B} operator\n".encode()
    assert host.meta["/home/deploy/.ssh/authorized_keys"] == ("deploy", "deploy", 0o600)
    assert host.meta["/home/deploy/.ssh"] == ("deploy", "deploy", 0o700)
    assert _provisioned(host)["deploy-user"].status == "unchanged"


def test_a_sudoers_keys_are_added_to_the_deploy_users_own() -> None:
    host = _Server()
    host.add_user("root", _CLOUD_ROOT_KEYS.encode())
    host.add_user("ops", f"{_KEY_B} operator\n".encode())
    host.add_user("deploy", f"{_KEY_C} ci\n".encode())
    host.meta["/home/deploy/.ssh/authorized_keys"] = ("root", "root", 0o600)  # sshd refuses it
    options = ProvisionOptions(deploy_user="deploy", connected_as="ops")
    step = _provisioned(host, options)["deploy-user"]
    assert (step.status, step.detail) == ("changed", "1 authorized key(s) of ops added"), step
    keys = host.files["/home/deploy/.ssh/authorized_keys"][0]
    assert keys == f"{_KEY_C} ci\n{_KEY_B} operator\n".encode()
    assert host.meta["/home/deploy/.ssh/authorized_keys"] == ("deploy", "deploy", 0o600)
    assert host.files["/home/ops/.ssh/authorized_keys"][0] == f"{_KEY_B} operator\n".encode()

    host.meta["/home/deploy/.ssh/authorized_keys"] = ("root", "root", 0o644)
    fixed = _provisioned(host, options)["deploy-user"]
    assert fixed.status == "changed" and "set to deploy:deploy 0600" in fixed.detail, fixed
    assert host.meta["/home/deploy/.ssh/authorized_keys"] == ("deploy", "deploy", 0o600)
    assert _provisioned(host, options)["deploy-user"].status == "unchanged"


def test_the_connecting_users_own_keys_are_never_touched() -> None:
    """`provision --user ubuntu --sudo` on a cloud image: the deploy user defaults to ubuntu,
    whose keys are the ones provision came in with; root's only refuse logins."""
    host = _Server()
    host.add_user("root", _CLOUD_ROOT_KEYS.encode())
    host.add_user("ubuntu", f"{_KEY_A} operator@laptop\n".encode())
    host.meta["/home/ubuntu/.ssh/authorized_keys"] = ("ubuntu", "ubuntu", 0o644)
    step = _provisioned(host, ProvisionOptions(deploy_user="ubuntu", connected_as="ubuntu"))
    assert step["deploy-user"].status == "unchanged", step["deploy-user"]
    assert "left as they are" in step["deploy-user"].detail
    assert host.files["/home/ubuntu/.ssh/authorized_keys"] == (
        f"{_KEY_A} operator@laptop\n".encode(),
        0o600,
    )
    assert host.meta["/home/ubuntu/.ssh/authorized_keys"] == ("ubuntu", "ubuntu", 0o644)
    assert not any("/home/ubuntu/.ssh" in " ".join(c) for c in host.commands)


def test_no_login_key_for_the_deploy_user_fails_the_step() -> None:
    host = _Server()
    host.add_user("root", _CLOUD_ROOT_KEYS.encode())
    step = _provisioned(host)["deploy-user"]
    assert step.status == "failed"
    assert "no login key" in step.detail and "forced command" in step.detail
    assert "/home/deploy/.ssh/authorized_keys" not in host.files


def test_sudo_keeps_the_environment_names_in_argv_and_values_out_of_it() -> None:
    inner = FakeHost()
    host = SudoHost(inner)
    host.run(["pg_dump", "shop"], env={"PGPASSWORD": "hunter2-db", "PGUSER": "shop"})
    host.run(["id", "-u"])
    assert inner.commands == [
        ["sudo", "-n", "--preserve-env=PGPASSWORD,PGUSER", "--", "pg_dump", "shop"],
        ["sudo", "-n", "--", "id", "-u"],
    ]
    assert inner.envs == [{"PGPASSWORD": "hunter2-db", "PGUSER": "shop"}, None]


class _LocalSudo(LocalHost):
    """This machine, where `sudo -n --` is dropped: SudoHost's scripts run for real."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[list[str]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        assert list(argv[:2]) == ["sudo", "-n"]
        self.commands.append(list(argv))
        return super().run(argv[list(argv).index("--") + 1 :], **kwargs)


def test_sudo_host_moves_files_with_the_shared_scripts(tmp_path: Path) -> None:
    host = SudoHost(_LocalSudo())
    target = PurePosixPath(tmp_path / "new" / "dir" / "file")
    host.put(target, b"\x00binary\nand text", mode=0o640)
    assert Path(target).read_bytes() == b"\x00binary\nand text"
    assert Path(target).stat().st_mode & 0o777 == 0o640
    assert Path(target).parent.stat().st_mode & 0o777 == 0o700
    assert host.get(target) == b"\x00binary\nand text"
    assert host.get(PurePosixPath(tmp_path / "missing")) is None

    source, destination = tmp_path / "source", tmp_path / "destination"
    source.mkdir()
    destination.mkdir()
    (source / "Caddyfile").write_text("new")
    (source / "compose.yml").write_text("services: {}\n")
    (destination / "Caddyfile").write_text("old")
    (destination / "stale.yml").write_text("from an earlier release")
    host.put_tree(source, PurePosixPath(destination))
    assert {p.name: p.read_text() for p in destination.iterdir()} == {
        "Caddyfile": "new",
        "compose.yml": "services: {}\n",
    }


def test_streams_move_between_pipes_and_other_files_alike() -> None:
    from shipyard.hosts._runner import _moved  # noqa: PLC0415

    data = os.urandom(3 * 1024 * 1024 + 17)
    copied = io.BytesIO()
    assert sum(_moved(io.BytesIO(data), copied)) == len(data)  # no pipes: read and write
    assert copied.getvalue() == data

    source_r, source_w = os.pipe()
    sink_r, sink_w = os.pipe()
    received = bytearray()

    def write() -> None:
        with os.fdopen(source_w, "wb") as out:
            out.write(data)

    def read() -> None:
        with os.fdopen(sink_r, "rb") as inp:
            received.extend(inp.read())

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    with os.fdopen(source_r, "rb") as source, os.fdopen(sink_w, "wb") as sink:
        assert sum(_moved(source, sink)) == len(data)  # pipe to pipe: spliced
    for thread in threads:
        thread.join(timeout=10)
    assert bytes(received) == data


class _HostWithProxy(_RecordingHost):
    """A server whose proxy container runs (``docker container inspect`` of it answers)."""

    def _answer(self, argv: list[str]) -> CommandResult | None:
        if argv[:3] == ["docker", "container", "inspect"] and argv[-1].endswith("-proxy"):
            document = [{"Id": "p1", "Name": f"/{argv[-1]}", "State": {"Status": "running"}}]
            return CommandResult(tuple(argv), 0, json.dumps(document), "")
        if argv[:3] == ["docker", "container", "inspect"]:
            return CommandResult(tuple(argv), 1, "", "Error: No such container")
        return super()._answer(argv)


def test_a_changed_proxy_definition_is_said_before_the_proxy_is_recreated(tmp_path: Path) -> None:
    from shipyard.providers.docker._stack import to_yaml  # noqa: PLC0415

    remote = _HostWithProxy("server", {})
    steps = _steps(tmp_path, _operator(), remote)
    assert not steps.proxy_definition_changed()  # nothing written on the host yet
    current = steps._infra()
    remote.put(steps.layout.infra_compose, to_yaml(current).encode())
    assert not steps.proxy_definition_changed()
    older = json.loads(json.dumps(current))
    del older["services"]["proxy"]["dns_opt"]  # as a proxy created by an earlier version
    remote.put(steps.layout.infra_compose, to_yaml(older).encode())
    assert steps.proxy_definition_changed()
