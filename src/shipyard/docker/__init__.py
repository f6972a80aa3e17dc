"""Typed calls to the docker CLI and ``docker compose`` (v2) on a ``Host``.

No other part builds docker argv. Output parsing lives in pure functions (``parse_*``), tested
with golden files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from shipyard.docker._engine import NO_ENGINE_HINT, EngineAPI, local_socket
from shipyard.errors import CommandFailed, HostUnreachable, ShipyardError
from shipyard.hosts import CommandResult, Host, LocalHost
from shipyard.waiting import wait_until

__all__ = [
    "MIN_COMPOSE",
    "MIN_DOCKER",
    "ContainerInfo",
    "Docker",
    "EngineAPI",
    "EngineInfo",
    "ImageInfo",
    "image_fingerprint",
    "normalise_architecture",
    "parse_container",
    "parse_exit_codes",
    "parse_image",
    "parse_network_subnets",
    "version_problems",
]

# What a host needs: the oldest versions shipyard is tested with (Compose 2.26: Debian 13's).
MIN_DOCKER = (20, 10)
MIN_COMPOSE = (2, 26)
EVENTS_LAG_S = 3.0  # longest wait for a die event behind a restart (Docker.exit_codes)


def parse_network_subnets(inspect: str) -> dict[str, list[str]]:
    """``docker network inspect`` output → each network's name and its IPAM subnets (IPv4 and
    IPv6 as Docker writes them; none for ``host`` and ``none``)."""
    found: dict[str, list[str]] = {}
    for network in json.loads(inspect or "[]") or []:
        configs = (network.get("IPAM") or {}).get("Config") or []
        found[str(network.get("Name", ""))] = [
            str(c["Subnet"]) for c in configs if isinstance(c, dict) and c.get("Subnet")
        ]
    return found


def version_problems(docker: str, compose: str | None) -> list[str]:
    """What is older than shipyard needs among a host's Docker and Compose versions (as the
    tools print them; an empty or unreadable one counts as too old; ``compose=None``: not
    checked)."""
    problems = []
    checked = [("Docker", docker, MIN_DOCKER, "found")]
    if compose is not None:
        checked.append(("Docker Compose", compose, MIN_COMPOSE, "is too old"))
    for name, found, needed, verb in checked:
        numbers = tuple(int(x) for x in re.findall(r"\d+", found)[:2])
        if len(numbers) < 2 or numbers < needed:  # noqa: PLR2004 — major and minor
            problems.append(
                f"{name} {found or 'none'} {verb}; {'.'.join(map(str, needed))} or newer is needed"
            )
    return problems


_NO_ENGINE = (
    "Cannot connect to the Docker daemon",
    "Is the docker daemon running",
    "error during connect",
)


# `docker info` and `uname -m` name architectures as the kernel does; images, `docker version` and
# Go as GOARCH does. Images are described with the second.
_ARCHITECTURES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armhf": "arm",
    "i386": "386",
    "i686": "386",
}


def normalise_architecture(name: str) -> str:
    """``amd64``/``arm64``/… (GOARCH, as images name it) for any way engines spell it."""
    lowered = name.strip().lower()
    return _ARCHITECTURES.get(lowered, lowered)


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    architecture: str  # normalised: amd64, arm64, ...
    compose_version: str | None  # None: not installed (or not asked, ``info(compose=False)``)
    os: str = "linux"

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}"


@dataclass(frozen=True)
class ContainerInfo:
    """The parts of ``docker inspect`` a deploy uses."""

    id: str
    name: str
    image_id: str
    status: str  # created, running, exited, ...
    health: str | None  # starting, healthy, unhealthy, or None without a healthcheck
    exit_code: int
    labels: Mapping[str, str]
    ports: Mapping[int, int] = field(default_factory=dict)  # container port → host port (tcp)
    addresses: Mapping[str, str] = field(default_factory=dict)  # network → IPv4 address
    # Every TCP port it publishes on the host, with the host address: ("0.0.0.0", 8080).
    bindings: tuple[tuple[str, int], ...] = ()
    restart_count: int = 0  # times its restart policy started it again
    created: str = ""  # RFC 3339

    @property
    def exit_code_known(self) -> bool:
        """Whether ``exit_code`` is its last process's: Docker resets it to 0 on every start,
        so a running container's (even one restarted after a crash) says nothing."""
        return self.status in ("exited", "restarting", "dead")

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: Mapping[str, str]
    created: str
    fingerprint: str = ""  # the same on every engine (see ``image_fingerprint``)
    os: str = ""  # as the image's config says; empty when it does not
    architecture: str = ""  # normalised: amd64, arm64, ...
    healthcheck: bool = False  # the image defines a HEALTHCHECK (Docker then reports health)

    @property
    def platform(self) -> str:
        return f"{self.os or '?'}/{self.architecture or '?'}"

    def runs_on(self, engine: EngineInfo) -> bool:
        """Whether ``engine`` can run this image natively (an image that does not say its
        platform is assumed to)."""
        return (not self.os or self.os == engine.os) and (
            not self.architecture or self.architecture == engine.architecture
        )


def parse_container(document: Mapping[str, Any]) -> ContainerInfo:
    """One element of ``docker inspect --type container`` output."""
    state = document.get("State") or {}
    config = document.get("Config") or {}
    ports: dict[int, int] = {}
    published: list[tuple[str, int]] = []
    for key, bindings in ((document.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        if proto != "tcp":
            continue
        for binding in bindings or []:
            if binding.get("HostPort"):
                ports.setdefault(int(port), int(binding["HostPort"]))
                published.append((str(binding.get("HostIp") or ""), int(binding["HostPort"])))
    health = (state.get("Health") or {}).get("Status")
    networks = (document.get("NetworkSettings") or {}).get("Networks") or {}
    addresses = {name: net["IPAddress"] for name, net in networks.items() if net.get("IPAddress")}
    return ContainerInfo(
        id=document["Id"],
        name=str(document.get("Name", "")).lstrip("/"),
        image_id=document.get("Image", ""),
        status=state.get("Status", "unknown"),
        health=health,
        exit_code=int(state.get("ExitCode", 0)),
        labels=dict(config.get("Labels") or {}),
        ports=ports,
        addresses=addresses,
        bindings=tuple(published),
        restart_count=int(document.get("RestartCount") or 0),
        created=str(document.get("Created") or ""),
    )


def parse_exit_codes(output: str) -> list[int]:
    """Exit codes in ``docker events --format '{{json .}}'`` output of ``die`` events, in order."""
    codes = []
    for line in output.splitlines():
        try:
            event = json.loads(line)
            codes.append(int(event["Actor"]["Attributes"]["exitCode"]))
        except (ValueError, KeyError, TypeError):
            continue
    return codes


def parse_image(document: Mapping[str, Any]) -> ImageInfo:
    """One element of ``docker image inspect`` output."""
    config = document.get("Config") or {}
    return ImageInfo(
        id=document["Id"],
        labels=dict(config.get("Labels") or {}),
        created=document.get("Created", ""),
        fingerprint=image_fingerprint(document),
        os=str(document.get("Os") or ""),
        architecture=normalise_architecture(str(document.get("Architecture") or "")),
        healthcheck=(config.get("Healthcheck") or {}).get("Test") not in (None, [], ["NONE"]),
    )


_RUNTIME_CONFIG = (
    "Env", "Entrypoint", "Cmd", "Labels", "WorkingDir", "User", "ExposedPorts", "Volumes",
    "StopSignal", "Healthcheck",
)  # fmt: skip


def image_fingerprint(document: Mapping[str, Any]) -> str:
    """What an image is, whatever engine holds it: its layers (diff IDs), creation time and the
    config a container runs with.

    The image ID is not that: the classic store's ID is the config's digest, the containerd
    image store's (Docker 29's default) the manifest's, so an image copied with ``docker save |
    docker load`` (or through a registry) changes ID between the two. Empty config fields are
    left out, as the stores spell them differently."""
    config = document.get("Config") or {}
    identity = {
        "layers": (document.get("RootFS") or {}).get("Layers") or [],
        "created": document.get("Created", ""),
        "platform": [document.get("Os", ""), document.get("Architecture", "")],
        "config": {key: config[key] for key in _RUNTIME_CONFIG if config.get(key)},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _task_options(
    network: str | None,
    env_file: PurePosixPath | None,
    mounts: Sequence[tuple[PurePosixPath, str]],
    labels: Mapping[str, str] | None,
) -> list[str]:
    """``docker run`` options of a one-off task (mounts read-only)."""
    args = []
    if network:
        args += ["--network", network]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    for source, target in mounts:
        args += ["--volume", f"{source}:{target}:ro"]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    return args


class Docker:
    """The docker CLI on one host.

    ``config``: a CLI configuration directory (``docker --config``) in place of the user's
    ``~/.docker``, where ``docker login`` keeps credentials; ``endpoint``: the engine to talk
    to (``DOCKER_HOST``), for when that directory lacks the user's current context.
    """

    def __init__(
        self, host: Host, *, config: str | None = None, endpoint: str | None = None
    ) -> None:
        self.host = host
        self.config = config
        self.endpoint = endpoint
        # Reads (inspect, list) of the engine on this machine go over its socket; see
        # ``shipyard.docker._engine``. Elsewhere (SSH, TCP, another context): the CLI.
        socket = local_socket(endpoint) if isinstance(host, LocalHost) else None
        self.api = EngineAPI(socket, host.name) if socket else None

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["docker", *(["--config", self.config] if self.config else []), *argv]

    def _env(self, env: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if self.endpoint is None:
            return env
        return {**(env or {}), "DOCKER_HOST": self.endpoint}

    # -- plumbing --------------------------------------------------------------------------------
    def _run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        with self._engine_reached():
            return self.host.run(
                self._argv(argv), check=check, timeout=timeout, stdin=stdin, env=self._env(env)
            )

    @contextmanager
    def _engine_reached(self) -> Iterator[None]:
        """A command that failed because no engine answers raises ``HostUnreachable``."""
        try:
            yield
        except CommandFailed as exc:
            if any(marker in exc.stderr for marker in _NO_ENGINE):
                raise HostUnreachable(
                    f"on {self.host.name}: the Docker engine is not reachable",
                    hint=NO_ENGINE_HINT,
                ) from exc
            raise

    # -- engine ------------------------------------------------------------------------------------
    def info(self, *, compose: bool = True) -> EngineInfo:
        """The engine's version, architecture and OS, and Compose's version: asked at once (each
        is a docker CLI start and a round trip to the host; a local engine's own version is read
        over its socket: ``GET /version`` answers what ``docker version`` prints as ``Server``).
        ``compose=False``: Compose is not asked (``compose_version`` is ``None``)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compose-version") as pool:
            asked = pool.submit(self.compose_version) if compose else None
            if self.api is not None:
                server = self.api.get("/version") or {}
            else:
                result = self._run(["version", "--format", "{{json .Server}}"], timeout=30)
                server = json.loads(result.stdout or "null") or {}
            compose_version = asked.result() if asked is not None else None
        return EngineInfo(
            server_version=str(server.get("Version", "unknown")),
            architecture=normalise_architecture(str(server.get("Arch") or "amd64")),
            compose_version=compose_version,
            os=str(server.get("Os") or "linux"),
        )

    def compose_version(self) -> str | None:
        """Compose's version (``docker compose version --short``); ``None``: not installed."""
        result = self._run(["compose", "version", "--short"], check=False, timeout=30)
        return result.stdout.strip() if result.ok else None

    def socket_path(self) -> str | None:
        """The path of the Unix socket the CLI reaches the engine through (its current context,
        ``DOCKER_HOST`` included), or ``None`` when the engine is reached otherwise (TCP, SSH)."""
        if self.api is not None:  # the socket the CLI would use, found without asking it
            return self.api.socket
        result = self._run(
            ["context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
            check=False,
            timeout=30,
        )
        endpoint = result.stdout.strip()
        if not result.ok or not endpoint.startswith("unix://"):
            return None
        return endpoint.removeprefix("unix://")

    def endpoint_of_current_context(self) -> str | None:
        """The engine address of the user's current context when it is not ``default`` (Docker
        Desktop, colima, ...), which another ``--config`` directory would not know; ``None``
        when the default context (``DOCKER_HOST`` or the standard socket) applies anyway."""
        result = self._run(
            ["context", "inspect", "--format", "{{.Name}} {{.Endpoints.docker.Host}}"],
            check=False,
            timeout=30,
        )
        name, _, endpoint = result.stdout.strip().partition(" ")
        if not result.ok or name in ("", "default") or not endpoint:
            return None
        return endpoint

    # -- images --------------------------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo | None:
        if self.api is not None:
            document = self.api.image(ref)
            return parse_image(document) if document is not None else None
        result = self._run(["image", "inspect", ref], check=False, timeout=60)
        if not result.ok:
            return None
        return parse_image(json.loads(result.stdout)[0])

    def build(
        self,
        context: str,
        *,
        tag: str,
        dockerfile: str | None = None,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        target: str | None = None,
        timeout: float = 1800,
    ) -> CommandResult:
        argv = ["build", "--tag", tag]
        if dockerfile:
            argv += ["--file", dockerfile]
        if target:
            argv += ["--target", target]
        # Build args pass by name: values travel in the environment, never in argv.
        for key in build_args or {}:
            argv += ["--build-arg", key]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        argv.append(context)
        return self._run(argv, timeout=timeout, env=dict(build_args or {}))

    def missing_paths(self, image: str, paths: Sequence[str]) -> list[str]:
        """Which of ``paths`` do not exist in ``image`` (works for images without a shell)."""
        if not paths:
            return []
        created = self._run(["create", image], timeout=120).stdout.strip()
        try:
            return [
                path
                for path in paths
                if not self._run(["cp", f"{created}:{path}", "-"], check=False, timeout=300).ok
            ]
        finally:
            self._run(["rm", "--force", created], check=False, timeout=120)

    def remove_image(self, ref: str) -> CommandResult:
        """Remove an image; an image still used by a container stays (docker refuses)."""
        return self._run(["image", "rm", ref], check=False, timeout=120)

    def images(self, labels: Mapping[str, str]) -> list[str]:
        """IDs of the images carrying all ``labels``, newest first."""
        argv = ["image", "ls", "--quiet", "--no-trunc"]
        for key, value in labels.items():
            argv += ["--filter", f"label={key}={value}"]
        found = self._run(argv, timeout=60).stdout.split()
        return list(dict.fromkeys(found))  # an image with several tags is listed once per tag

    def tag(self, source: str, target: str) -> None:
        self._run(["tag", source, target], timeout=60)

    @staticmethod
    def save_argv(ref: str) -> list[str]:
        """``docker save`` of one image to stdout (streamed by ``delivery``)."""
        return ["docker", "save", ref]

    @staticmethod
    def load_argv() -> list[str]:
        """``docker load`` from stdin."""
        return ["docker", "load", "--quiet"]

    def login(self, registry: str, username: str, password: str) -> None:
        """``docker login`` with the password on stdin, never in argv."""
        self._run(
            ["login", "--username", username, "--password-stdin", registry],
            stdin=password,
            timeout=120,
        )

    def untag(self, ref: str) -> None:
        """Remove the name ``ref`` (the image stays while other names point at it)."""
        self._run(["image", "rm", ref], check=False, timeout=120)

    def push(self, ref: str) -> None:
        self._run(["push", "--quiet", ref], timeout=1800)

    def pull(self, ref: str) -> None:
        self._run(["pull", "--quiet", ref], timeout=1800)

    # -- containers ---------------------------------------------------------------------------------
    def container(self, name: str) -> ContainerInfo | None:
        if self.api is not None:
            return next(iter(self._inspect([name])), None)
        result = self._run(["container", "inspect", name], check=False, timeout=60)
        if not result.ok:
            if "No such container" in result.stderr or "no such container" in result.stderr.lower():
                return None
            raise CommandFailed(self.host.name, result.argv, result.returncode, result.stderr)
        return parse_container(json.loads(result.stdout)[0])

    def containers_named(self, names: Sequence[str]) -> dict[str, ContainerInfo | None]:
        """Each of ``names`` inspected in one call (``None``: no such container)."""
        found: dict[str, ContainerInfo | None] = dict.fromkeys(names)
        for info in self._inspect(names):
            if info.name in found:
                found[info.name] = info
        return found

    def running(self, *, publishing: Sequence[int] = ()) -> list[ContainerInfo]:
        """Every running container, inspected (one that stops meanwhile is left out); with
        ``publishing``, only those that publish one of these host ports (the engine filters:
        ``docker ps --filter publish=PORT``)."""
        filters = {"publish": [str(port) for port in publishing]} if publishing else {}
        if self.api is not None:
            ids = [str(c["Id"]) for c in self.api.listed(filters, all=False)]
        else:
            argv = ["ps", "--quiet", "--no-trunc"]
            argv += [
                arg
                for port in filters.get("publish", [])
                for arg in ("--filter", f"publish={port}")
            ]
            ids = self._run(argv, timeout=60).stdout.split()
        return [info for info in self._inspect(ids) if info.running]

    def _inspect(self, containers: Sequence[str]) -> list[ContainerInfo]:
        """``containers`` (names or IDs) inspected in one call; one that does not exist (or was
        removed meanwhile: inspect exits 1 after printing the others) is left out."""
        if not containers:
            return []
        if self.api is not None:
            return list(map(parse_container, self.api.containers(containers)))
        result = self._run(["container", "inspect", *containers], check=False, timeout=60)
        try:
            documents = json.loads(result.stdout or "[]")
        except json.JSONDecodeError as exc:
            raise CommandFailed(
                self.host.name, result.argv, result.returncode, result.stderr
            ) from exc
        if not result.ok and "no such container" not in result.stderr.lower():
            raise CommandFailed(self.host.name, result.argv, result.returncode, result.stderr)
        return list(map(parse_container, documents))

    def containers(self, labels: Mapping[str, str]) -> list[str]:
        """Names of containers (running or not) carrying all ``labels``."""
        return self._names({"label": [f"{key}={value}" for key, value in labels.items()]})

    def containers_using(self, image: str) -> list[str]:
        """Names of containers (running or not) created from ``image`` or an image built on it."""
        return self._names({"ancestor": [image]})

    def _names(self, filters: Mapping[str, list[str]]) -> list[str]:
        """Names of the containers (running or not) matching ``docker ps`` ``filters``."""
        if self.api is not None:
            listed = self.api.listed({k: v for k, v in filters.items() if v}, all=True)
            return sorted(str(c["Names"][0]).lstrip("/") for c in listed if c.get("Names"))
        argv = ["ps", "--all", "--format", "{{.Names}}"]
        for key, values in filters.items():
            argv += [arg for value in values for arg in ("--filter", f"{key}={value}")]
        return sorted(line for line in self._run(argv, timeout=60).stdout.splitlines() if line)

    def exec(
        self,
        container: str,
        argv: Sequence[str],
        *,
        stdin: str | bytes | None = None,
        user: str | None = None,
        check: bool = True,
        timeout: float | None = 300,
    ) -> CommandResult:
        args = ["exec"]
        if stdin is not None:
            args.append("--interactive")
        if user:
            args += ["--user", user]
        if self.api is not None and isinstance(self.host, LocalHost):
            data = stdin.encode() if isinstance(stdin, str) else stdin
            shown = self.host.runner.shown(self._argv([*args, container, *argv]))
            return self._api_exec(
                container, argv, shown, stdin=data, user=user, check=check, timeout=timeout
            )
        return self._run([*args, container, *argv], stdin=stdin, check=check, timeout=timeout)

    def _api_exec(
        self,
        container: str,
        argv: Sequence[str],
        shown: Sequence[str],
        *,
        stdin: bytes | None,
        user: str | None,
        check: bool,
        timeout: float | None,
    ) -> CommandResult:
        """``exec`` over the local engine's API, answered as the CLI's would be: outputs masked,
        the engine refusing (no such container, not running) exit 1 with its message, as
        ``docker exec`` prints it, and no end within ``timeout`` an error whatever ``check``."""
        assert self.api is not None and isinstance(self.host, LocalHost)  # noqa: S101
        runner, masker = self.host.runner, self.host.masker
        try:
            done = self.api.exec(container, argv, stdin=stdin, user=user, timeout=timeout)
        except CommandFailed as exc:
            stderr = f"Error response from daemon: {masker(exc.stderr)}\n"
            return runner.result(shown, 1, "", stderr, check=check)
        except TimeoutError as exc:
            raise runner.timed_out(shown, timeout) from exc
        stdout, stderr = (
            masker(out.decode(errors="replace")) for out in (done.stdout, done.stderr)
        )
        return runner.result(shown, done.returncode, stdout, stderr, check=check)

    def exec_streaming(
        self,
        container: str,
        argv: Sequence[str],
        *,
        stdin_path: PurePosixPath | None = None,
        stdout_path: PurePosixPath | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """``docker exec`` with stdin from / stdout to files on the host (dumps, restores).

        ``env`` names variables set inside the container; values must not be secrets (they
        appear in argv).
        """
        args = ["exec"]
        if stdin_path is not None:
            args.append("--interactive")
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        with self._engine_reached():
            return self.host.run_streaming(
                self._argv([*args, container, *argv]),
                stdin_path=stdin_path,
                stdout_path=stdout_path,
                check=check,
                timeout=timeout,
            )

    def run_oneoff(
        self,
        image: str,
        argv: Sequence[str],
        *,
        network: str | None = None,
        env_file: PurePosixPath | None = None,
        mounts: Sequence[tuple[PurePosixPath, str]] = (),
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        entrypoint: str | None = None,
    ) -> CommandResult:
        """``docker run --rm`` of a one-off task. Mounts are read-only (host path, container path)."""
        args = ["run", "--rm"]
        if entrypoint is not None:
            args += ["--entrypoint", entrypoint]
        if name:
            args += ["--name", name]
        args += _task_options(network, env_file, mounts, labels)
        return self._run([*args, image, *argv], check=check, timeout=timeout)

    def run_detached(
        self,
        image: str,
        argv: Sequence[str],
        *,
        name: str,
        network: str | None = None,
        env_file: PurePosixPath | None = None,
        mounts: Sequence[tuple[PurePosixPath, str]] = (),
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """``docker run --detach`` of a one-off task that is kept after it exits, so its exit
        code and log can be read even by a later process (``wait``, ``logs``, then ``remove``).
        Mounts are read-only (host path, container path). Returns the container's ID."""
        args = [
            "run",
            "--detach",
            "--name",
            name,
            *_task_options(network, env_file, mounts, labels),
        ]
        return self._run([*args, image, *argv], timeout=600).stdout.strip()

    def wait(self, container: str, *, timeout: float | None) -> int:
        """Wait for ``container`` to exit; returns its exit code (``CommandFailed`` on timeout)."""
        result = self._run(["wait", container], timeout=timeout)
        return int(result.stdout.strip().splitlines()[-1])

    def container_image(self, container: str) -> str:
        """The image reference ``container`` was created from."""
        result = self._run(["container", "inspect", "--format", "{{.Config.Image}}", container])
        return result.stdout.strip()

    def labelled(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all ``labels``, inspected (one that is
        removed meanwhile is left out)."""
        return self._inspect(self.containers(labels))

    def logs(
        self, container: str, *, tail: int = 50, since: str | None = None, timestamps: bool = False
    ) -> str:
        argv = ["logs", "--tail", str(tail)]
        if since:
            argv += ["--since", since]
        if timestamps:
            argv.append("--timestamps")
        result = self._run([*argv, container], check=False, timeout=60)
        return (result.stdout + result.stderr).strip()

    def exit_codes(self, container: ContainerInfo) -> list[int]:
        """Exit codes of the container's processes that ended since it was created, oldest
        first (its ``die`` events: the engine keeps recent ones). A container its restart
        policy started again has died at least once: its events are read again for up to
        ``EVENTS_LAG_S`` until that ``die`` shows (on a busy engine it can lag the restart)."""

        def read() -> list[int]:
            result = self._run(
                [
                    "events", "--since", container.created or "10m", "--until", "0s",
                    "--filter", f"container={container.id}", "--filter", "event=die",
                    "--format", "{{json .}}",
                ],
                check=False,
                timeout=30,
            )  # fmt: skip
            return parse_exit_codes(result.stdout) if result.ok else []

        if not container.restart_count:
            return read()
        return wait_until(read, timeout=EVENTS_LAG_S, interval=0.2) or []

    def create_and_start(
        self,
        name: str,
        body: Mapping[str, Any],
        *,
        replacing: str | None = None,
        healthy_within: float | None = None,
    ) -> None:
        """Over the local engine's API (``api``): remove ``replacing`` (a stopped container),
        create ``name`` from the create ``body`` and start it, as ``docker compose up
        --force-recreate`` does for one service; with ``healthy_within``, then wait that long
        for its image's HEALTHCHECK to call it healthy, as ``--wait`` does (``ShipyardError``
        when it says unhealthy, the container stops, or the time runs out)."""
        if self.api is None:
            raise ShipyardError(f"on {self.host.name}: no local engine socket to create {name} on")
        api = self.api
        if replacing is not None:
            api.send("DELETE", f"/containers/{quote(replacing, safe='')}", {"force": "1", "v": "1"})
        created = api.send("POST", "/containers/create", {"name": name}, body=body, absent=False)
        if not isinstance(created, dict) or not created.get("Id"):
            raise ShipyardError(f"on {self.host.name}: the engine created {name} but named no ID")
        api.send("POST", f"/containers/{created['Id']}/start", absent=False)
        if healthy_within is None:
            return

        def health() -> str | None:
            info = self.container(name)
            if info is None or not info.running:
                raise ShipyardError(f"container {name} stopped before its HEALTHCHECK passed")
            if info.health == "unhealthy":
                raise ShipyardError(f"container {name} is unhealthy (its image's HEALTHCHECK)")
            return info.health

        if (
            wait_until(health, timeout=healthy_within, interval=0.25, done=lambda h: h == "healthy")
            is None
        ):
            raise ShipyardError(
                f"container {name} was not healthy within {healthy_within:g}s "
                "(its image's HEALTHCHECK)"
            )

    def rename(self, container: str, name: str) -> None:
        """Over the local engine's API when there is one (a switch is three renames in a row:
        about 15 ms each less than the CLI's process), else ``docker rename``."""
        if self.api is not None:
            path = f"/containers/{quote(container, safe='')}/rename"
            self.api.send("POST", path, {"name": name}, absent=False)
            return
        self._run(["rename", container, name], timeout=60)

    def start(self, container: str) -> None:
        """Over the local engine's API when there is one (a rollback's kept container, a
        switch-back's old version), else ``docker start``; a running one is left as it is."""
        if self.api is not None:
            self.api.send("POST", f"/containers/{quote(container, safe='')}/start", absent=False)
            return
        self._run(["start", container], timeout=120)

    def stop(self, container: str, *, timeout: float) -> None:
        """Stop ``container``: SIGTERM (or its image's stop signal), SIGKILL after ``timeout``
        seconds. Over the local engine's API when there is one (retire stops the old version
        right after its drain: the CLI's process start is saved), else ``docker stop``; a
        stopped one is left as it is."""
        seconds = str(round(timeout))
        if self.api is not None:
            path = f"/containers/{quote(container, safe='')}/stop"
            self.api.send("POST", path, {"t": seconds}, absent=False, timeout=timeout + 60)
            return
        self._run(["stop", "--time", seconds, container], timeout=timeout + 60)

    def remove(self, container: str) -> None:
        self._run(["rm", "--force", "--volumes", container], check=False, timeout=120)

    def kill(self, container: str, *, signal: str = "SIGTERM") -> None:
        self._run(["kill", "--signal", signal, container], check=False, timeout=60)

    # -- compose ---------------------------------------------------------------------------------------
    def compose(
        self, project: str, file: PurePosixPath, args: Sequence[str], *, timeout: float | None = 600
    ) -> CommandResult:
        return self._run(
            ["compose", "--project-name", project, "--file", str(file), *args], timeout=timeout
        )

    def compose_up(
        self,
        project: str,
        file: PurePosixPath,
        *,
        services: Sequence[str] = (),
        wait_timeout: float | None = None,
        force_recreate: bool = False,
    ) -> CommandResult:
        args = ["up", "--detach", "--remove-orphans"]
        if force_recreate:
            args.append("--force-recreate")
        if wait_timeout is not None:
            args += ["--wait", "--wait-timeout", str(max(1, round(wait_timeout)))]
        return self.compose(project, file, [*args, *services], timeout=(wait_timeout or 0) + 600)

    def compose_config_hash(self, project: str, file: PurePosixPath, service: str) -> str:
        """The hash Compose labels ``service``'s container with (``com.docker.compose.config-hash``)
        for the definition in ``file``: when they differ, ``up`` recreates the container."""
        result = self.compose(project, file, ["config", "--hash", service], timeout=60)
        fields = result.stdout.split()
        return fields[1] if len(fields) > 1 else ""

    def compose_down(
        self, project: str, *, volumes: bool = False, timeout: float = 600
    ) -> CommandResult:
        args = ["compose", "--project-name", project, "down", "--remove-orphans"]
        if volumes:
            args.append("--volumes")
        return self._run(args, timeout=timeout)

    def compose_projects(self) -> list[str]:
        result = self._run(["compose", "ls", "--all", "--format", "json"], timeout=60)
        return sorted(str(p["Name"]) for p in json.loads(result.stdout or "[]"))

    # -- networks and volumes ---------------------------------------------------------------------
    def networks(self) -> list[str]:
        return sorted(
            self._run(["network", "ls", "--format", "{{.Name}}"], timeout=60).stdout.split()
        )

    def network_subnets(self) -> dict[str, list[str]]:
        """Every network on the engine → its subnets (``parse_network_subnets``)."""
        ids = self._run(["network", "ls", "--quiet"], timeout=60).stdout.split()
        if not ids:
            return {}
        return parse_network_subnets(self._run(["network", "inspect", *ids], timeout=60).stdout)

    def create_network(self, name: str, *, subnet: str, labels: Mapping[str, str]) -> None:
        """A bridge network with ``subnet`` (Docker picks the gateway in it)."""
        argv = ["network", "create", "--driver", "bridge", "--subnet", subnet]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        self._run([*argv, name], timeout=60)

    def remove_network(self, name: str) -> CommandResult:
        return self._run(["network", "rm", name], check=False, timeout=60)

    def volumes(self) -> list[str]:
        return sorted(
            self._run(["volume", "ls", "--format", "{{.Name}}"], timeout=60).stdout.split()
        )
