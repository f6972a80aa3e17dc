"""Snapshots on the real engine: create, verify, restore-test and restore with PostGIS and pgvector
data, through the CLI."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import AppUnderTest
from tests.e2e.postgres import psql

SEED = """
INSERT INTO events (title, description, starts_at, location, embedding)
SELECT 'event ' || g, 'about ' || g, now() + g * interval '1 hour',
       ST_SetSRID(ST_MakePoint(-79.4 + g / 1000.0, 43.6 + g / 1000.0), 4326),
       ARRAY[g, g / 2.0, 0.5, -1, 1e-3, 2, 3, g % 7]::real[]::vector
FROM generate_series(1, 500) g;
INSERT INTO jobs (kind, payload) SELECT 'geocode', jsonb_build_object('n', g) FROM generate_series(1, 50) g;
"""

FINGERPRINT = """
SELECT count(*) || ':' || md5(string_agg(
    title || '|' || description || '|' || encode(ST_AsEWKB(location), 'hex') || '|' || embedding::text,
    ',' ORDER BY title))
FROM events;
"""


@pytest.fixture(params=["local", "ssh"])
def either_app(request: pytest.FixtureRequest) -> AppUnderTest:
    """The app on the local engine, or on an ssh:// target (dumps stream through the SSH host)."""
    name = "app" if request.param == "local" else "remote_app"
    app: AppUnderTest = request.getfixturevalue(name)
    return app


def test_snapshot_restore_round_trip_keeps_geometries_and_vectors(
    either_app: AppUnderTest,
) -> None:
    app = either_app
    assert app.shipyard("deploy", "development").returncode == 0
    psql(app.database, SEED)
    before = psql(app.database, FINGERPRINT)
    assert before.startswith("500:")

    created = app.shipyard("snapshot", "create", "development", "--json")
    assert created.returncode == 0, created.stderr
    snapshot = json.loads(created.stdout)
    dump = Path(snapshot["path"])
    assert dump.name == f"{snapshot['name']}.dump"
    assert snapshot["name"].startswith("events_")
    assert dump.parent == app.state_dir / app.name / "development" / "snapshots"
    assert stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == snapshot["sha256"]
    assert snapshot["size"] == dump.stat().st_size
    metadata = json.loads(dump.with_suffix(".json").read_text())
    for key in ("app", "environment", "version", "commit", "deployment_id", "reason", "duration_s"):
        assert metadata[key] not in (None, ""), key
    assert metadata["app"] == app.name
    assert metadata["toc_entries"] > 0

    # Writes after the snapshot: deleted rows, a moved point, a changed vector, a new table.
    psql(
        app.database,
        "DELETE FROM events WHERE title LIKE 'event 1%';"
        "UPDATE events SET location = ST_SetSRID(ST_MakePoint(0, 0), 4326),"
        " embedding = '[0,0,0,0,0,0,0,0]' WHERE title = 'event 2';"
        "TRUNCATE jobs;",
    )
    assert psql(app.database, FINGERPRINT) != before

    restored = app.shipyard("snapshot", "restore", "development", snapshot["name"], "--yes")
    assert restored.returncode == 0, restored.stderr
    assert psql(app.database, FINGERPRINT) == before
    assert psql(app.database, "SELECT count(*) FROM jobs;") == "50"
    assert psql(app.database, "SELECT version, dirty FROM schema_migrations;") == "2|f"
    assert httpx.get(app.url("/health"), timeout=10).json()["status"] == "healthy"

    listed = json.loads(app.shipyard("snapshot", "list", "development", "--json").stdout)
    reasons = [s["reason"] for s in listed]
    assert reasons[0].startswith("pre-restore of ")  # the safety snapshot, newest first
    assert "manual" in reasons

    verified = app.shipyard(
        "snapshot", "verify", "development", snapshot["name"], "--restore-test", "--json"
    )
    assert verified.returncode == 0, verified.stderr
    tables = json.loads(verified.stdout)["restore_test"]["tables"]
    assert tables["public.events"] == [500, 500]
    assert tables["public.jobs"] == [50, 50]
    assert "restore_test" not in psql(
        app.database, "SELECT string_agg(datname, ',') FROM pg_database;"
    )


def test_verify_detects_a_corrupted_snapshot(app: AppUnderTest) -> None:
    assert app.shipyard("deploy", "development").returncode == 0
    created = app.shipyard("snapshot", "create", "development", "--json")
    snapshot = json.loads(created.stdout)
    dump = Path(snapshot["path"])
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    result = app.shipyard("snapshot", "verify", "development", snapshot["name"])

    assert result.returncode == 8
    assert "corrupt" in result.stderr
    restore = app.shipyard("snapshot", "restore", "development", snapshot["name"], "--yes")
    assert restore.returncode == 8
    assert "corrupt" in restore.stderr


def test_destroy_keeps_snapshots_a_later_deploy_finds_and_prunes(app: AppUnderTest) -> None:
    """Snapshots are backups: `destroy`, even with --volumes, keeps them where they are and says
    where; the next deploy of the environment lists them and its retention prunes them; only
    --snapshots deletes them, after a confirmation that names how many and their size."""
    assert app.shipyard("deploy", "development").returncode == 0  # a pre-migrate snapshot
    assert app.shipyard("snapshot", "create", "development").returncode == 0
    directory = app.state_dir / app.name / "development" / "snapshots"
    before = sorted(p.name for p in directory.iterdir())
    assert len(before) == 4  # two dumps and their metadata

    destroyed = app.shipyard("destroy", "development", "--yes", "--volumes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "kept 2 snapshot(s), " in destroyed.stderr
    assert f"in local:{directory}" in destroyed.stderr, destroyed.stderr
    assert sorted(p.name for p in directory.iterdir()) == before
    assert sorted(p.name for p in directory.parent.iterdir()) == ["snapshots"]  # state gone
    listed = app.shipyard("snapshot", "list", "development", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 2

    def prune_all_but_the_newest(document: Any) -> None:
        document["database"]["snapshots"] = {"retention_days": 0, "keep_min": 1}

    app.edit(prune_all_but_the_newest)
    app.commit("keep one snapshot")
    deployed = app.shipyard("deploy", "development")  # a fresh database: migrations pending
    assert deployed.returncode == 0, deployed.stderr
    assert "pruned 2 old snapshot(s)" in deployed.stderr, deployed.stderr
    [left] = json.loads(app.shipyard("snapshot", "list", "development", "--json").stdout)
    assert left["reason"] == "pre-migrate"

    asked = app.shipyard("destroy", "development", "--snapshots", input="n\n")
    assert asked.returncode == 2, asked.stderr
    size = f"{left['size']} B" if left["size"] < 1024 else "KiB"
    assert "and delete its snapshots (1 snapshot(s), " in asked.stdout + asked.stderr
    assert size in asked.stdout + asked.stderr
    assert (directory / f"{left['name']}.dump").exists()

    removed = app.shipyard("destroy", "development", "--yes", "--snapshots", "--volumes")
    assert removed.returncode == 0, removed.stderr
    assert "deleting the snapshots of development: 1 snapshot(s)" in removed.stderr
    assert "removed 1 snapshot(s), " in removed.stderr
    assert not directory.parent.exists() or not any(directory.parent.iterdir())
