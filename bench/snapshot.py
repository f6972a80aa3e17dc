"""Benchmark: snapshots and a migration on 1 million events. Not a test.

1. Deploys the reference app and seeds 1M realistic events server-side (generate_series): title,
   description, starts_at, a PostGIS point, a vector(8), created_at.
2. Times shipyard's snapshot (pg_dump -Fc streamed to the host, sha256, pg_restore --list, metadata)
   against a raw `docker exec … pg_dump -Fc > file` of the same database, alternating, and a
   directory-format parallel dump (`pg_dump -Fd -j 2`, inside the container).
3. Times a deploy whose migrations add a column and build an index CONCURRENTLY on the 1M rows
   (SC-006) while a bounded load loop calls the app's API through the proxy.

    .venv/bin/python bench/snapshot.py [--rows 1000000] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tests.e2e.postgres import psql

from bench.first_deploy import deploy_json, free_port, prepare_app, run
from shipyard.session import open_session

SEED = """
INSERT INTO events (title, description, starts_at, location, embedding, created_at)
SELECT 'Event ' || g || ' ' || substr(md5(g::text), 1, 10),
       'Community gathering number ' || g || ': ' || repeat(md5((g * 7)::text), 3),
       timestamptz '2026-01-01' + (g % 50000) * interval '17 minutes',
       ST_SetSRID(ST_MakePoint(-79.6 + random() * 0.5, 43.5 + random() * 0.3), 4326),
       ARRAY[random(), random(), random(), random(), random(), random(), random(), random()]::real[]::vector,
       now() - (g % 1000) * interval '1 day'
FROM generate_series(1, {rows}) g;
ANALYZE events;
"""


def raw_dump(container: str, target: Path, compress: str | None = None) -> float:
    """``docker exec … pg_dump -Fc > file``, with pg_dump's default compression unless told."""
    options = [f"--compress={compress}"] if compress else []
    started = time.perf_counter()
    with target.open("wb") as handle:
        subprocess.run(
            [
                "docker",
                "exec",
                container,
                "pg_dump",
                "-Fc",
                *options,
                "-U",
                "events",
                "-d",
                "events",
            ],
            stdout=handle,
            check=True,
        )
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def parallel_dump(container: str, compress: str) -> float:
    started = time.perf_counter()
    run("docker", "exec", container, "pg_dump", "-Fd", "-j", "2", f"--compress={compress}", "-U", "events", "-d", "events",
        "-f", "/tmp/bench-dir-dump")  # fmt: skip
    elapsed = time.perf_counter() - started
    run("docker", "exec", container, "rm", "-rf", "/tmp/bench-dir-dump")
    return elapsed


class Load:
    """GET the API through the proxy until stopped (at most ``limit`` requests)."""

    def __init__(self, url: str, limit: int = 50_000) -> None:
        self.url, self.limit = url, limit
        self.ok, self.failed = 0, []  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and self.ok + len(self.failed) < self.limit:
                try:
                    response = client.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(response.status_code)
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))
                time.sleep(0.02)


def main() -> None:  # noqa: PLR0915 — one linear script
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "shipyard"]
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        work = Path(tmp)
        name, port = f"b{secrets.token_hex(3)}", free_port()
        app = prepare_app(work, name, port)
        container = f"{name}-development-db"
        try:
            run(*cli, "deploy", "development", cwd=app)
            started = time.perf_counter()
            psql(container, SEED.format(rows=args.rows))
            size = psql(container, "SELECT pg_size_pretty(pg_database_size('events'));")
            print(f"seeded {args.rows} events in {time.perf_counter() - started:.1f}s ({size})")

            session = open_session(app / "shipyard.yml", "development")
            operations = session.provider.database(session.ctx)
            compression = session.config.database.snapshots.compression  # type: ignore[union-attr]
            scratch = Path(operations.store.directory) / "raw.dump"
            ours, same, raw = [], [], []
            for index in range(args.runs):
                raw.append(raw_dump(container, scratch))
                same.append(raw_dump(container, scratch, compression))
                began = time.perf_counter()
                snapshot = operations.create(reason="bench")
                ours.append(time.perf_counter() - began)
                print(
                    f"run {index + 1}: shipyard snapshot {ours[-1]:.2f}s "
                    f"({snapshot.size / 2**20:.0f} MiB {compression}, dump + sha256 + verify); "
                    f"raw pg_dump -Fc --compress={compression} {same[-1]:.2f}s; "
                    f"raw pg_dump -Fc (default gzip) {raw[-1]:.2f}s"
                )
            a, s, b = (statistics.median(x) for x in (ours, same, raw))
            print(
                f"median: shipyard {a:.2f}s; raw same compression {s:.2f}s (ratio {a / s:.2f}); "
                f"raw default -Fc {b:.2f}s (ratio {a / b:.2f})"
            )
            for method, baseline in (("gzip", b), (compression, s)):
                directory = parallel_dump(container, method)
                print(
                    f"pg_dump -Fd -j 2 --compress={method} (inside the container): "
                    f"{directory:.2f}s vs -Fc {baseline:.2f}s"
                )

            migrations = app / "migrations"
            (migrations / "000003_add_venue.up.sql").write_text(
                "ALTER TABLE events ADD COLUMN venue text;\n"
            )
            (migrations / "000003_add_venue.down.sql").write_text(
                "ALTER TABLE events DROP COLUMN venue;\n"
            )
            (migrations / "000004_index_venue.up.sql").write_text(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS events_venue_starts_at "
                "ON events (venue, starts_at);\n"
            )
            (migrations / "000004_index_venue.down.sql").write_text(
                "DROP INDEX CONCURRENTLY IF EXISTS events_venue_starts_at;\n"
            )
            git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@shipyard.invalid"]
            run("git", "add", "-A", cwd=app)
            run(*git, "commit", "-q", "-m", "venue", cwd=app)
            load = Load(f"http://127.0.0.1:{port}/api/v1/events")
            load.thread.start()
            started = time.perf_counter()
            result = deploy_json(app)
            elapsed = time.perf_counter() - started
            load.stop.set()
            load.thread.join()
            phases = {
                e["phase"]: e.get("duration_s", 0)
                for e in map(json.loads, result.stdout.splitlines())
                if e.get("kind") == "phase.finished"
            }
            print(
                f"deploy with ADD COLUMN + CREATE INDEX CONCURRENTLY on {args.rows} rows: "
                f"exit {result.returncode} in {elapsed:.1f}s "
                f"(snapshot {phases.get('snapshot', 0):.1f}s, migrate {phases.get('migrate', 0):.1f}s); "
                f"load: {load.ok} ok, {len(load.failed)} failed {load.failed[:3]}"
            )
            schema = psql(container, "SELECT version, dirty FROM schema_migrations")
            print(f"schema: {schema}")
            print(f"machine: {os.cpu_count()} cores")
        finally:
            run(*cli, "destroy", "development", "--yes", "--volumes", "--snapshots", cwd=app)


if __name__ == "__main__":
    main()
