"""End-to-end fixtures: a copy of the reference app in its own git repository, deployed under a
unique app name and a port reserved for the test (``tests.e2e.ports``), torn down afterwards."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from shipyard.secrets import read_env_file
from tests.e2e.docker_cli import docker_inspect, remove_found
from tests.e2e.ports import release_ports, reserve_port
from tests.e2e.sshd import Sshd, start_sshd
from tests.example_app import EXAMPLE, ROOT, copy_example, git

__all__ = ["EXAMPLE", "git"]  # re-exported: tests and benches import them from here


@pytest.fixture(autouse=True)
def _reserved_ports() -> Iterator[None]:
    """The ports a test reserved go back once it and its fixtures are done (an autouse fixture
    is set up first, so it is torn down last: after the app and servers that bound them)."""
    yield
    release_ports()


def engine_snapshot(app: str | None = None) -> dict[str, list[str]]:
    """Containers, networks, volumes and images on the engine, for "nothing changed" assertions.

    With ``app``, only what shipyard would name after it (``<app>-…``, ``<app>:…``), so tests
    running at the same time on the engine cannot disturb the comparison.
    """

    def lines(*argv: str) -> list[str]:
        out = subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout
        return sorted(n for n in out.split() if app is None or n.startswith((f"{app}-", f"{app}:")))

    return {
        "containers": lines("ps", "--all", "--format", "{{.Names}}"),
        "networks": lines("network", "ls", "--format", "{{.Name}}"),
        "volumes": lines("volume", "ls", "--format", "{{.Name}}"),
        "images": lines("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"),
    }


def network_subnets() -> dict[str, list[str]]:
    """Every network on the engine, by name, with its subnets."""
    ids = subprocess.run(
        ["docker", "network", "ls", "--quiet"], capture_output=True, text=True, check=True
    ).stdout.split()
    inspect = subprocess.run(
        ["docker", "network", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    return {
        n["Name"]: [c["Subnet"] for c in (n.get("IPAM") or {}).get("Config") or []]
        for n in json.loads(inspect)
    }


def free_subnet() -> str:
    """A /24 in 10.200.0.0/13 that no network on the engine overlaps (picked at random, so tests
    running at the same time rarely pick the same one)."""
    taken = [
        ipaddress.ip_network(s, strict=False)
        for subnets in network_subnets().values()
        for s in subnets
    ]
    candidates = [f"10.{second}.{third}.0/24" for second in range(200, 208) for third in range(256)]
    random.shuffle(candidates)
    for candidate in map(ipaddress.ip_network, candidates):
        if not any(c.version == 4 and c.overlaps(candidate) for c in taken):
            return str(candidate)
    raise AssertionError("no free /24 in 10.200.0.0/13")


def container_id(name: str) -> str:
    return docker_inspect(name, "{{.Id}}")


def run_shipyard(
    cwd: Path,
    env: dict[str, str] | None,
    *args: str,
    check: bool = False,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``shipyard ARGS`` in ``cwd`` with ``env`` (None: this process's), its output captured;
    ``input``: what is typed at its prompts (none: stdin is empty)."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env=env,
        input=input,
    )


def isolated_env(home: Path) -> dict[str, str]:
    """The environment of a shipyard run that keeps its local state under ``home`` (a test's own
    directory) and selects the locally built images, for a config that names its images as
    ``${SHIPYARD_POSTGRES_IMAGE:-…}`` (the Togather example, what `shipyard init` writes). Go
    keeps the machine's module and build caches, read before ``HOME`` moves, so a rerun does not
    rebuild an app's dependencies."""
    caches = subprocess.run(
        ["go", "env", "GOCACHE", "GOMODCACHE", "GOPATH"], capture_output=True, text=True, check=True
    ).stdout.split()
    return {
        **os.environ,
        **dict(zip(("GOCACHE", "GOMODCACHE", "GOPATH"), caches, strict=True)),
        "HOME": str(home),
        "SHIPYARD_POSTGRES_IMAGE": "shipyard-local/postgres:17",
        "SHIPYARD_MIGRATE_IMAGE": "shipyard-local/migrate:4",
        "SHIPYARD_CADDY_IMAGE": "shipyard-local/caddy:2",
        "SHIPYARD_DOCKER_CLI_IMAGE": "shipyard-local/docker-cli:26",
    }


def togather_tarball() -> Path:
    """The Togather server's source (test data): $SHIPYARD_TOGATHER_TARBALL, or
    ../shared/fixtures next to the clone, or /work/shared/fixtures. Missing: a failure under CI."""
    given = os.environ.get("SHIPYARD_TOGATHER_TARBALL")
    candidates = [Path(given)] if given else []
    for base in (ROOT.parent / "shared" / "fixtures", Path("/work/shared/fixtures")):
        candidates += sorted(base.glob("togather-server-*.tar.gz"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    message = "the Togather source tarball (../shared/fixtures/togather-server-*.tar.gz) is missing"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class AppUnderTest:
    """A copy of the reference app, deployable with the real CLI."""

    dir: Path
    name: str
    http_port: int
    state_dir: Path
    environment: str = "development"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.dir / "shipyard.yml"

    def shipyard(
        self, *args: str, check: bool = False, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``input``: what is typed at shipyard's prompts (none: stdin is empty)."""
        env = {**os.environ, **self.extra_env}
        return run_shipyard(self.dir, env, *args, check=check, timeout=timeout, input=input)

    def edit(self, change: Any) -> None:
        """Apply ``change(document)`` to shipyard.yml."""
        yaml = YAML()
        document = yaml.load(self.config)
        change(document)
        with self.config.open("w") as handle:
            yaml.dump(document, handle)

    def commit(self, message: str) -> str:
        git(self.dir, "add", "-A")
        git(self.dir, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.dir, "rev-parse", "HEAD")

    def running_app_containers(self) -> list[str]:
        """Names of the app's running app containers (slots; not db, proxy, guard), sorted."""
        out = subprocess.run(
            [
                "docker", "ps", "--format", "{{.Names}}",
                "--filter", f"label=org.shipyard.app={self.name}",
                "--filter", "label=org.shipyard.role=app",
            ],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return sorted(out.split())

    @property
    def database(self) -> str:
        """The development environment's database container."""
        return f"{self.name}-development-db"

    def live_image(self) -> str:
        """The image (tag) the environment's live container runs."""
        return docker_inspect(f"{self.name}-{self.environment}-live", "{{.Config.Image}}")

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def use_awkward_env(self) -> dict[str, str]:
        """Rewrite the env file with values a shell or Compose would mangle (quotes, ``$``,
        backslashes, ``#``, ``=``); the database password is one of them. Returns every value as
        shipyard reads the file, for comparison with what the containers got."""
        awkward = {
            "POSTGRES_PASSWORD": f"p@ss:w/rd?{secrets.token_hex(4)}$HOME'q\"d\\#h%41",
            "JWT_SECRET": secrets.token_hex(32),
            "AWKWARD_DOLLARS": "$USER ${HOME} $$ ${X:-y} $(id)",
            "AWKWARD_QUOTES": "it's \"quoted\" 'twice'",
            "AWKWARD_BACKSLASH_END": "ends in a backslash\\",
            "AWKWARD_HASH": "value # not a comment",
            "AWKWARD_SPACES": "  padded  ",
            "AWKWARD_EQUALS": "a=b=c",
            "AWKWARD_EMPTY": "",
        }

        def quoted(value: str) -> str:  # python-dotenv's single-quoted form
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

        env_file = self.dir / f".env.{self.environment}"
        env_file.write_text("".join(f"{k}={quoted(v)}\n" for k, v in awkward.items()))
        env_file.chmod(0o600)
        read = read_env_file(env_file)
        assert read == awkward, read
        return read

    def served(self, path: str = "/version", key: str = "git_commit") -> str:
        """``key`` of the JSON the app answers at ``path`` through the proxy."""
        value: str = httpx.get(self.url(path), timeout=10).json()[key]
        return value

    def history(self) -> list[dict[str, Any]]:
        """The environment's deploy history, newest first (``history --json``)."""
        result = self.shipyard("history", self.environment, "--json")
        assert result.returncode == 0, result.stderr
        entries: list[dict[str, Any]] = json.loads(result.stdout)
        return entries

    def status(self) -> dict[str, Any]:
        """The record of the environment's one node (``status --json`` lists every node)."""
        result = self.shipyard("status", self.environment, "--json")
        assert result.returncode in (0, 8), result.stderr
        data: dict[str, Any]
        [data] = json.loads(result.stdout)
        return data


def container_env(inspect: str) -> dict[str, str]:
    """The environment of a container, from ``docker inspect`` output."""
    env: list[str] = json.loads(inspect)[0]["Config"]["Env"]
    return dict(item.split("=", 1) for item in env)


def remove_everything(name: str) -> None:
    """Every container, network, volume and build of app ``name`` removed from the engine (the
    base images its builds used stay)."""
    remove_found(
        ["ps", "--all", "--quiet", "--filter", f"label=org.shipyard.app={name}"],
        ["rm", "--force", "--volumes"],
    )
    remove_found(["network", "ls", "--quiet", "--filter", f"name={name}-"], ["network", "rm"])
    remove_found(
        ["volume", "ls", "--quiet", "--filter", f"name={name}-"], ["volume", "rm", "--force"]
    )
    remove_found(
        ["image", "ls", "--quiet", "--filter", f"reference={name}"], ["image", "rm", "--force"]
    )


@pytest.fixture
def app(tmp_path: Path, docker_engine: None) -> Iterator[AppUnderTest]:
    name = f"t{secrets.token_hex(3)}"
    state_dir = tmp_path / "state"
    under_test = AppUnderTest(
        dir=tmp_path / "app", name=name, http_port=reserve_port(), state_dir=state_dir
    )

    def settings(document: dict[str, Any]) -> None:
        document["proxy"]["http_port"] = under_test.http_port
        document["deploy"]["state_dir"] = str(state_dir)
        document["health"]["interval"] = "250ms"
        document["environments"]["development"]["deploy"]["allow_dirty"] = False

    copy_example(under_test.dir, name, settings)
    try:
        yield under_test
    finally:
        under_test.shipyard("destroy", under_test.environment, "--yes", "--volumes")
        remove_everything(name)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """Debian's OpenSSH server on 127.0.0.1:<reserved port>, root login with a generated test key."""
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def remote_app(sshd: Sshd, app: AppUnderTest) -> AppUnderTest:
    """The reference app with its environment on an ssh:// target (this machine's own sshd)."""

    def change(document: Any) -> None:
        document["environments"]["development"]["target"] = sshd.target
        document.setdefault("providers", {})["ssh"] = sshd.settings()

    app.edit(change)
    app.commit("deploy over ssh")
    return app


NTFY_IMAGE = "shipyard-local/ntfy:2"


@dataclass(frozen=True)
class Ntfy:
    url: str  # published on the loopback
    token: str
    container: str

    def messages(self, topic: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/{topic}/json",
            params={"poll": "1"},
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]


@pytest.fixture
def ntfy(docker_engine: None) -> Iterator[Ntfy]:
    """A real ntfy server on a free loopback port; anonymous access denied, one token user."""
    found = subprocess.run(
        ["docker", "image", "inspect", NTFY_IMAGE], capture_output=True, check=False
    )
    if found.returncode:
        pytest.fail(f"{NTFY_IMAGE} is missing: run `bash scripts/images.sh ntfy`")
    name = f"shipyard-test-ntfy-{secrets.token_hex(4)}"
    port = reserve_port()
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{port}:80",
            "-e",
            "NTFY_AUTH_FILE=/var/lib/ntfy/auth.db",
            "-e",
            "NTFY_AUTH_DEFAULT_ACCESS=deny-all",
            NTFY_IMAGE,
            "serve",
        ],
        check=True,
        capture_output=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return bool(httpx.get(f"{url}/v1/health", timeout=2).json().get("healthy"))
            except (httpx.HTTPError, ValueError):
                return False

        deadline = time.monotonic() + 60
        while not healthy():
            if time.monotonic() > deadline:
                pytest.fail("ntfy did not become healthy within 60s")
            time.sleep(0.2)
        subprocess.run(
            [
                "docker",
                "exec",
                "-e",
                f"NTFY_PASSWORD=pw-{secrets.token_hex(8)}",
                name,
                "ntfy",
                "user",
                "add",
                "--role=admin",
                "ops",
            ],
            check=True,
            capture_output=True,
        )
        created = subprocess.run(
            ["docker", "exec", name, "ntfy", "token", "add", "ops"],
            check=True,
            capture_output=True,
            text=True,
        )
        token = next(w for w in (created.stdout + created.stderr).split() if w.startswith("tk_"))
        yield Ntfy(url=url, token=token, container=name)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
