"""The real Togather server (its source at a fixed commit, unmodified) deployed with
``examples/togather/shipyard.yml`` as users get it: only an env file of generated secrets, and
environment variables that select the locally built images, a port and a subnet.

The River CLI's module is not served by the Go module proxy reachable here, so ``RIVER_CLI``
points the example's ``build.tools.river`` at ``tests/e2e/togather/river``: a stand-in that runs
River's own migrator (``rivermigrate``, the code the CLI calls) at the version Togather uses and
reads the connection the way the CLI does (``--database-url`` or libpq's ``PG*`` variables).

The Go build caches (module and build cache) are the machine's own, so a rerun does not rebuild
Togather's dependencies.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    free_subnet,
    git,
    isolated_env,
    remove_everything,
    run_shipyard,
    togather_tarball,
)
from tests.e2e.load import Load
from tests.e2e.ports import reserve_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "togather"
RIVER_STANDIN = Path(__file__).resolve().parent / "togather" / "river"
APP = "togather"
ENVIRONMENT = "local"
PREFIX = f"{APP}-{ENVIRONMENT}"
RATE_LIMIT = 600  # requests per client and minute (Togather's RATE_LIMIT_PUBLIC)


@dataclass
class Togather:
    dir: Path
    env: dict[str, str]
    port: int

    def shipyard(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return run_shipyard(self.dir, self.env, *args, timeout=timeout)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def psql(self, query: str) -> str:
        return subprocess.run(
            ["docker", "exec", f"{PREFIX}-db", "psql", "-U", APP, "-d", APP, "-tAc", query],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def running_app_containers(self) -> list[str]:
        """Names of the environment's running app containers (slots; not db, proxy, guard)."""
        names = subprocess.run(
            [
                "docker",
                "ps",
                "--filter",
                f"label=org.shipyard.app={APP}",
                "--filter",
                f"label=org.shipyard.environment={ENVIRONMENT}",
                "--format",
                "{{.Names}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return sorted(n for n in names if n.endswith(("-live", "-blue", "-green")))


@pytest.fixture
def togather(tmp_path: Path, docker_engine: None) -> Iterator[Togather]:
    remove_everything(APP)
    work = tmp_path / "src"
    (tmp_path / "unpacked").mkdir()
    # GNU tar, as a user unpacks it (the tree has symlinks to absolute paths: agent files).
    subprocess.run(
        ["tar", "-xzf", str(togather_tarball()), "-C", str(tmp_path / "unpacked")], check=True
    )
    (top,) = (tmp_path / "unpacked").iterdir()
    shutil.move(top, work)
    shutil.copy(EXAMPLE / "shipyard.yml", work / "shipyard.yml")
    if not (work / ".git").exists():
        git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Togather at 1e6e0af7, with shipyard.yml")
    # Untracked, as the operator's is (Togather's .gitignore does not name it): shipyard
    # never counts it as a change to the tree.
    env_file = work / f".env.{ENVIRONMENT}"
    env_file.write_text(
        "\n".join(
            [
                "TOGATHER_DOMAIN=localhost:8080",
                f"POSTGRES_PASSWORD={secrets.token_hex(16)}",
                f"JWT_SECRET={secrets.token_hex(32)}",
                f"CSRF_KEY={secrets.token_hex(32)}",
                "CORS_ALLOWED_ORIGINS=http://localhost:8080",
                "ADMIN_USERNAME=admin",
                f"ADMIN_PASSWORD={secrets.token_urlsafe(24)}",
                "ADMIN_EMAIL=admin@togather.invalid",
                f"RATE_LIMIT_PUBLIC={RATE_LIMIT}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    env_file.chmod(0o600)
    home = tmp_path / "home"
    home.mkdir()
    port = reserve_port()
    env = {
        **isolated_env(home),
        "TOGATHER_HTTP_PORT": str(port),
        "TOGATHER_SUBNET": free_subnet(),
        "RIVER_CLI": str(RIVER_STANDIN),
    }
    under_test = Togather(dir=work, env=env, port=port)
    try:
        yield under_test
    finally:
        under_test.shipyard(
            "destroy", ENVIRONMENT, "--yes", "--volumes", "--snapshots", timeout=600
        )
        remove_everything(APP)


def _health(togather: Togather) -> dict[str, object]:
    response = httpx.get(togather.url("/health"), timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _from_another_client(togather: Togather, path: str) -> int:
    """The status of GET ``path`` sent to the proxy from a container on the environment's
    network: a client with another address than the test's loopback connections."""
    script = (
        f"exec 3<>/dev/tcp/{PREFIX}-proxy/80 && "
        f"printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3"
    )
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            PREFIX,  # the environment's network
            "--entrypoint",
            "bash",
            "shipyard-local/docker-cli:26",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return int(out.split()[1])


def _use_up_the_limit(togather: Togather) -> bool:
    """Whether requests from loopback, sent faster than the bucket refills (several clients at
    once: one at a time on a busy machine can be slower than the refill), get a 429 within a
    bounded number of requests and a deadline."""
    deadline = time.monotonic() + 90
    limited = threading.Event()
    budget = iter(range(RATE_LIMIT * 20))

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while (
                not limited.is_set()
                and time.monotonic() < deadline
                and next(budget, None) is not None
            ):
                if http.get(togather.url("/version")).status_code == 429:
                    limited.set()

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(client) for _ in range(8)]:
            future.result()
    return limited.is_set()


def _one_version_runs(togather: Togather) -> None:
    running = togather.running_app_containers()
    assert running == [f"{PREFIX}-live"], running


def test_togather_deploys_from_the_example_and_redeploys_and_rolls_back_under_load(
    togather: Togather,
) -> None:
    first = togather.shipyard("deploy", ENVIRONMENT)
    assert first.returncode == 0, first.stdout + first.stderr
    commit = git(togather.dir, "rev-parse", "HEAD")

    # Healthy through the proxy, every one of Togather's own checks passing.
    health = _health(togather)
    assert health["status"] == "healthy", health
    checks = health["checks"]
    assert isinstance(checks, dict)
    assert {"database", "migrations", "job_queue", "jsonld_contexts"} <= set(checks), checks
    assert {name: c["status"] for name, c in checks.items()} == dict.fromkeys(checks, "pass")
    version = httpx.get(togather.url("/version"), timeout=10).json()
    assert version["git_commit"] == commit
    status = togather.shipyard("status", ENVIRONMENT, "--json")
    assert status.returncode == 0, status.stdout + status.stderr

    # The scratch image has no /usr/share/zoneinfo: Go's embedded database answers instead.
    log = subprocess.run(
        ["docker", "logs", f"{PREFIX}-live"], capture_output=True, text=True, check=True
    )
    assert "invalid DefaultTimezone" not in log.stdout + log.stderr

    # Its migrations and River's applied; the scraper's sources synced.
    assert togather.psql("SELECT version || ' ' || dirty FROM schema_migrations") == "49 false"
    assert togather.psql("SELECT max(version) FROM river_migration") == "6"
    assert int(togather.psql("SELECT count(*) FROM scraper_sources")) > 0
    _one_version_runs(togather)

    # A redeploy, then a rollback, under load through the proxy (paced below the per-client
    # limit: any 429 would be the proxy's address sharing one bucket): no failed request.
    git(togather.dir, "commit", "-q", "--allow-empty", "-m", "next")
    second = git(togather.dir, "rev-parse", "HEAD")
    with Load(togather.url("/version"), clients=2, pace=0.5) as load:
        redeploy = togather.shipyard("deploy", ENVIRONMENT)
    assert redeploy.returncode == 0, redeploy.stdout + redeploy.stderr
    assert load.result.failures == [], load.result.failures[:5]
    assert load.result.requests > 20
    assert httpx.get(togather.url("/version"), timeout=10).json()["git_commit"] == second
    _one_version_runs(togather)

    with Load(togather.url("/version"), clients=2, pace=0.5) as load:
        rollback = togather.shipyard("rollback", ENVIRONMENT)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert load.result.failures == [], load.result.failures[:5]
    assert httpx.get(togather.url("/version"), timeout=10).json()["git_commit"] == commit
    assert _health(togather)["status"] == "healthy"
    _one_version_runs(togather)

    # Each client has its own bucket: the proxy passes the client's address and the app trusts
    # it from the proxy's subnet. One client using up its limit does not limit another.
    assert _use_up_the_limit(togather), "the loopback client was never limited"
    assert _from_another_client(togather, "/version") == 200
