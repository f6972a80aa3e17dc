"""Migrations on the real engine: a failing migration changes nothing the app sees, one runner at a
time, a full snapshot disk refuses the deploy, lint can block, release commands run."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest

from shipyard.database import Database, MigrationError
from shipyard.providers.docker import DockerSteps
from shipyard.session import open_session
from tests.e2e.conftest import AppUnderTest, git
from tests.e2e.postgres import psql


@dataclass
class LoadLoop:
    """Bounded requests through the proxy on 127.0.0.1 while something else happens."""

    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set() and self.ok + len(self.failures) < 20_000:
                try:
                    response = client.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)


@contextmanager
def load(url: str) -> Iterator[LoadLoop]:
    loop = LoadLoop(url)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.stop.set()
        thread.join(timeout=30)


def add_migration(app: AppUnderTest, name: str, sql: str) -> None:
    (app.dir / "migrations" / f"{name}.up.sql").write_text(sql, encoding="utf-8")
    (app.dir / "migrations" / f"{name}.down.sql").write_text("SELECT 1;\n", encoding="utf-8")


def _columns_named(app: AppUnderTest, column: str) -> str:
    """How many columns of table events are named ``column``, as psql prints it ("0" or "1")."""
    return psql(
        app.database,
        f"SELECT count(*) FROM information_schema.columns WHERE table_name = 'events' AND column_name = '{column}';",  # noqa: S608 — the tests' own names
    )


def _deploy_fails_in(app: AppUnderTest, phase: str) -> subprocess.CompletedProcess[str]:
    """A deploy, which must fail (exit 6) in ``phase``."""
    result = app.shipyard("deploy", "development")
    assert result.returncode == 6
    assert f"phase '{phase}'" in result.stderr
    return result


BAD = """-- adds a column, then fails: the whole file must roll back
ALTER TABLE events ADD COLUMN venue text;
INSERT INTO events (title, starts_at)
VALUES ('x', now());
UPDATE events SET venue = no_such_column;
"""


def test_failing_migration_keeps_previous_schema_and_app_serving(app: AppUnderTest) -> None:
    assert app.shipyard("deploy", "development").returncode == 0
    first = git(app.dir, "rev-parse", "HEAD")
    add_migration(app, "000003_add_venue", BAD)
    app.commit("add venue (broken)")

    # The app's API, as users call it. (/health says 503 while golang-migrate holds the dirty flag,
    # which it sets around every migration file; the API itself keeps answering.)
    with load(app.url("/api/v1/events")) as loop:
        result = app.shipyard("deploy", "development")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and loop.ok == 0:
            time.sleep(0.05)

    assert result.returncode == 6, result.stderr
    assert "phase 'migrate'" in result.stderr
    assert "000003_add_venue.up.sql" in result.stderr
    assert "no_such_column" in result.stderr
    snapshots = json.loads(app.shipyard("snapshot", "list", "development", "--json").stdout)
    pre_migrate = [s for s in snapshots if s["reason"] == "pre-migrate"]
    assert pre_migrate[0]["name"] in result.stderr  # the message names the snapshot
    assert psql(app.database, "SELECT version, dirty FROM schema_migrations;") == "2|f"
    assert _columns_named(app, "venue") == "0"
    assert psql(app.database, "SELECT count(*) FROM events WHERE title = 'x';") == "0"
    assert loop.failures == []
    assert loop.ok > 10
    assert httpx.get(app.url("/version"), timeout=5).json()["git_commit"] == first
    assert app.status()["slot"] == "blue"

    # A schema left dirty (here by hand) is refused before anything changes, with recovery steps.
    psql(app.database, "UPDATE schema_migrations SET dirty = true;")
    again = _deploy_fails_in(app, "plan")
    assert "dirty at version 2 (000002_create_jobs.up.sql)" in again.stderr
    assert "migrate force 2" in again.stderr


def test_concurrent_migration_runners_apply_exactly_once(app: AppUnderTest) -> None:
    assert app.shipyard("deploy", "development").returncode == 0
    psql(app.database, "CREATE TABLE applied (at timestamptz DEFAULT clock_timestamp());")
    add_migration(app, "000003_slow", "INSERT INTO applied DEFAULT VALUES;\nSELECT pg_sleep(3);\n")
    session = open_session(app.config, "development")
    assert session.config.database is not None
    outcomes: list[str] = []

    def runner(index: int) -> None:
        # Two deploys of their own (each runs its own golang-migrate container).
        steps = DockerSteps(replace(session.ctx, deployment_id=f"runner{index}"), session.host)
        database = Database(steps.docker, steps.names.database, session.config.database)  # type: ignore[arg-type]
        # Each runner copies the migrations to a directory of its own, as two deploys of
        # different releases would (one directory shared by two copies races on its files).
        release = replace(session.ctx.store.releases()[-1], id=f"runner{index}")
        try:
            steps._apply_migrations(
                database,
                session.config.database,  # type: ignore[arg-type]
                app.dir / "migrations",
                release,
            )
            outcomes.append("ok")
        except MigrationError as exc:
            outcomes.append(f"error: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - recorded so the assertion below names it
            outcomes.append(f"unexpected: {exc!r}")

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert psql(app.database, "SELECT count(*) FROM applied;") == "1"
    assert psql(app.database, "SELECT version, dirty FROM schema_migrations;") == "3|f"
    assert len(outcomes) == 2, outcomes
    # The second runner waited on golang-migrate's advisory lock, then found nothing to apply
    # (or, past the lock timeout, failed saying so).
    assert all(o == "ok" or "lock" in o for o in outcomes), outcomes


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_snapshot_disk_refuses_deploy_before_migrating(
    app: AppUnderTest, tiny_disk: Path
) -> None:
    assert app.shipyard("deploy", "development").returncode == 0
    psql(
        app.database,
        "INSERT INTO events (title, description, starts_at) SELECT md5(g::text), repeat(md5(g::text), 20), now() FROM generate_series(1, 5000) g;",
    )
    app.edit(lambda d: d["database"].update({"snapshots": {"dir": str(tiny_disk)}}))
    add_migration(app, "000003_add_venue", "ALTER TABLE events ADD COLUMN venue text;\n")
    app.commit("add venue")

    result = _deploy_fails_in(app, "snapshot")

    assert "no space left on device" in result.stderr
    phases = [line.split()[1] for line in result.stderr.splitlines() if line[:2] in ("✓ ", "✗ ")]
    assert "snapshot" in phases and "migrate" not in phases  # the migrate phase never started
    assert psql(app.database, "SELECT version, dirty FROM schema_migrations;") == "2|f"
    assert list(tiny_disk.iterdir()) == []  # the partial dump was removed


def test_lint_block_refuses_deploy_before_any_schema_change(app: AppUnderTest) -> None:
    assert app.shipyard("deploy", "development").returncode == 0
    app.edit(
        lambda d: d["database"].update(
            {"migrations": {**d["database"]["migrations"], "lint": "block"}}
        )
    )
    add_migration(app, "000003_drop_description", "ALTER TABLE events DROP COLUMN description;\n")
    app.commit("drop description")

    result = _deploy_fails_in(app, "plan")

    assert "000003_drop_description.up.sql:1: drop-column" in result.stderr
    assert psql(app.database, "SELECT version, dirty FROM schema_migrations;") == "2|f"
    assert _columns_named(app, "description") == "1"
    assert "snapshot" not in [e.split()[0] for e in result.stderr.splitlines() if e.startswith("✓")]
    lint = app.shipyard("migrations", "lint", "--path", "migrations")
    assert lint.returncode == 8
    assert "drop-column" in lint.stdout


def test_release_commands_run_in_the_new_image_and_a_failure_aborts(app: AppUnderTest) -> None:
    app.edit(lambda d: d["database"].update({"release_commands": [["/app/server", "--help"]]}))
    app.commit("release command")
    assert app.shipyard("deploy", "development").returncode == 0, "a passing release command"

    app.edit(
        lambda d: d["database"].update({"release_commands": [["/app/server", "no-such-command"]]})
    )
    app.commit("broken release command")
    result = app.shipyard("deploy", "development")

    assert result.returncode == 6
    assert "release command `/app/server no-such-command` failed" in result.stderr
    assert app.status()["slot"] == "blue"
