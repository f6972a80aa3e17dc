"""Shared fixtures. Tests that need Docker skip locally without an engine, and fail when CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess

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
