"""SQL against a deployed environment's database container, for tests and benchmarks."""

from __future__ import annotations

import subprocess


def psql(container: str, sql: str, *, user: str = "events", database: str | None = None) -> str:
    """Run ``sql`` (on stdin, stopping at the first error) with psql in a database container as
    ``user``; its unaligned, tuples-only output."""
    return subprocess.run(
        ["docker", "exec", "-i", container, "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
         "-U", user, "-d", database or user],
        input=sql,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
