"""`shipyard migrations lint` gates CI on what is pending on the environment's real database:
nothing unsafe pending is exit 0 even when the history holds findings (`--all`)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import Any

from tests.e2e.conftest import AppUnderTest, togather_tarball
from tests.e2e.test_database_migrations import add_migration

TOGATHER_MIGRATIONS = "togather-server/internal/storage/postgres/migrations"


def test_lint_gates_on_what_the_environments_database_has_not_applied(app: AppUnderTest) -> None:
    before = app.shipyard("migrations", "lint", "development")
    assert before.returncode == 0, before.stderr
    assert "0 finding(s) in 2 migration(s)" in before.stderr
    assert "its database is empty, no migrations applied" in before.stderr

    assert app.shipyard("deploy", "development").returncode == 0
    applied = app.shipyard("migrations", "lint", "development")
    assert applied.returncode == 0, applied.stderr
    assert "0 finding(s) in no migration" in applied.stderr
    assert "its database is at version 2" in applied.stderr

    add_migration(
        app,
        "000003_event_job",
        "ALTER TABLE events ADD COLUMN job_id bigint REFERENCES jobs (id);\n",
    )
    pending = app.shipyard("migrations", "lint", "development")
    assert pending.returncode == 8, pending.stderr
    assert "000003_event_job.up.sql:1: add-column-foreign-key" in pending.stdout
    assert "1 finding(s) in 1 migration(s)" in pending.stderr
    # offline, from the version the environment is known to be at
    assert app.shipyard("migrations", "lint", "development", "--since", "3").returncode == 0
    assert app.shipyard("migrations", "lint", "development", "--since", "2").returncode == 8


def test_togathers_migrations_applied_lint_clean_while_their_history_has_findings(
    app: AppUnderTest,
) -> None:
    """Togather's own migration set (commit 1e6e0af7), applied by a deploy: nothing is pending,
    so the gate passes; the history still shows what was unsafe in it, the REFERENCES and UNIQUE
    on added columns included."""
    with tarfile.open(togather_tarball()) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(TOGATHER_MIGRATIONS + "/")]
        archive.extractall(app.dir / "togather", members=members, filter="data")
    shutil.rmtree(app.dir / "migrations")
    shutil.move(app.dir / "togather" / TOGATHER_MIGRATIONS, app.dir / "migrations")
    shutil.rmtree(app.dir / "togather")

    def healthz_only(document: Any) -> None:  # the reference app's /health wants its own schema
        document["health"]["checks"] = [{"kind": "http", "path": "/healthz"}]

    app.edit(healthz_only)
    app.commit("Togather's migrations")
    history = app.shipyard("migrations", "lint", "development", "--all")
    assert history.returncode == 8, history.stderr
    assert "000026_unified_dedup.up.sql:13: add-column-foreign-key" in history.stdout
    assert "000028_developer_self_service.up.sql:49: add-column-foreign-key" in history.stdout
    assert "000045_event_series_external_key.up.sql:5: add-column-unique" in history.stdout
    files = sorted(Path(app.dir / "migrations").glob("*.up.sql"))
    assert f"in {len(files)} migration(s)" in history.stderr

    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    gate = app.shipyard("migrations", "lint", "development")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    last = int(files[-1].name.split("_", 1)[0])
    assert f"its database is at version {last}" in gate.stderr
    assert gate.stdout == ""
