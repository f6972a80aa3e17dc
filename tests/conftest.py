"""Shared fixtures. Tests that need Docker skip locally without an engine, and fail when CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest


def _engine_error() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    result = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        return f"no Docker engine: {result.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine. Without one: fail under CI, skip elsewhere."""
    problem = _engine_error()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and Docker is required: {problem}")
    pytest.skip(problem)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "docker_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


# Threads shipyard starts in the process it runs in: the lock's heartbeat and the notifiers' workers.
_OWN_THREADS = ("shipyard-lock", "notify-")


@pytest.fixture(autouse=True)
def _no_shipyard_thread_outlives_its_test() -> Iterator[None]:
    """A lock left held keeps beating, and a notifier's worker keeps retrying, into the tests
    after it: against a stand-in that is gone, with the retries' random jitter drawn from the
    global ``random`` that property tests watch. Each test ends what it started."""
    before = set(threading.enumerate())
    yield
    started = [
        t for t in threading.enumerate() if t not in before and t.name.startswith(_OWN_THREADS)
    ]
    deadline = time.monotonic() + 10
    for thread in started:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    left = [t.name for t in started if t.is_alive()]
    if left:
        pytest.fail(f"the test left shipyard's threads running: {', '.join(left)}")
