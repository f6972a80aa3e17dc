"""Snapshot retention (properties, with hypothesis), names, and the parsers of tool output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from shipyard.config import DatabaseSection
from shipyard.database import (
    Endpoint,
    SnapshotAge,
    migration_url,
    parse_copy_counts,
    parse_migrate_failure,
    parse_toc_count,
    plan_retention,
    snapshot_name,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

ages = st.lists(
    st.builds(
        SnapshotAge,
        name=st.text("abcdef0123456789", min_size=4, max_size=12),
        created_at=st.integers(0, 60 * 24 * 30).map(lambda m: NOW - timedelta(minutes=m)),
        deployment_id=st.none() | st.sampled_from(["d1", "d2", "d3"]),
    ),
    max_size=40,
    unique_by=lambda s: s.name,
)
settings = st.fixed_dictionaries(
    {
        "retention_days": st.floats(0, 40, allow_nan=False),
        "keep_min": st.integers(1, 10),
        "protected": st.sets(st.sampled_from(["d1", "d2", "d3", "nosuch"])),
    }
)


@given(ages, settings)
def test_retention_never_deletes_the_newest_n(snapshots: list[SnapshotAge], opts: dict) -> None:  # type: ignore[type-arg]
    plan = plan_retention(snapshots, now=NOW, **opts)
    newest = sorted(snapshots, key=lambda s: (s.created_at, s.name), reverse=True)
    assert not {s.name for s in newest[: opts["keep_min"]]} & set(plan.delete)
    assert set(plan.keep) | set(plan.delete) == {s.name for s in snapshots}
    assert not set(plan.keep) & set(plan.delete)


@given(ages, settings)
def test_retention_keeps_protected_and_young_snapshots(
    snapshots: list[SnapshotAge], opts: dict
) -> None:  # type: ignore[type-arg]
    plan = plan_retention(snapshots, now=NOW, **opts)
    cutoff = NOW - timedelta(days=opts["retention_days"])
    for snapshot in snapshots:
        if snapshot.name in plan.delete:
            assert snapshot.created_at < cutoff
            assert snapshot.deployment_id not in opts["protected"]


@given(ages, settings)
def test_retention_is_idempotent(snapshots: list[SnapshotAge], opts: dict) -> None:  # type: ignore[type-arg]
    first = plan_retention(snapshots, now=NOW, **opts)
    remaining = [s for s in snapshots if s.name not in first.delete]
    second = plan_retention(remaining, now=NOW, **opts)
    assert second.delete == ()
    assert set(second.keep) == set(first.keep)


def test_retention_defaults_keep_a_week_and_three() -> None:
    snapshots = [SnapshotAge(f"s{d:02d}", NOW - timedelta(days=d)) for d in range(0, 20, 2)]
    plan = plan_retention(snapshots, now=NOW, retention_days=7, keep_min=3)
    assert plan.delete == ("s08", "s10", "s12", "s14", "s16", "s18")
    old = [SnapshotAge(f"o{d}", NOW - timedelta(days=30 + d)) for d in range(5)]
    assert plan_retention(old, now=NOW, retention_days=7, keep_min=3).keep == ("o0", "o1", "o2")


def test_snapshot_name() -> None:
    when = datetime(2026, 11, 27, 1, 2, 3, tzinfo=UTC)
    assert snapshot_name("events", when, "04533B9753b7de0") == "events_20261127T010203Z_04533b9"


def test_parse_toc_count_and_copy_counts() -> None:
    assert parse_toc_count(";\n; Archive created at x\n;     TOC Entries: 16\n") == 16
    assert parse_copy_counts("public.events|500\npublic.jobs|50\nnoise\n") == {
        "public.events": 500,
        "public.jobs": 50,
    }


def test_migration_url_has_timeouts_and_no_password() -> None:
    section = DatabaseSection.model_validate(
        {
            "name": "events",
            "user": "events",
            "migrations": {"statement_timeout": "2m", "lock_timeout": "5s"},
        }
    )
    url = migration_url(section, Endpoint("app-db"))
    assert url.startswith("postgres://events@app-db:5432/events?sslmode=disable&options=")
    assert unquote(url.split("options=")[1]) == "-c statement_timeout=120000 -c lock_timeout=5000"
    assert ":" not in url.split("//")[1].split("@")[0]


def test_parse_migrate_failure_finds_line_and_statement() -> None:
    sql = "ALTER TABLE events ADD COLUMN venue text;\nUPDATE events\n  SET venue = nope;\n"
    output = (
        'error: migration failed: column "nope" does not exist in line 2: '
        + sql
        + ' (details: pq: column "nope" does not exist)\n'
    )
    error, line, statement = parse_migrate_failure(output, sql)
    assert error == 'pq: column "nope" does not exist'
    assert line == 2
    assert statement == "UPDATE events\n  SET venue = nope"
