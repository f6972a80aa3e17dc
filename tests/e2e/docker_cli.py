"""The docker CLI against this machine's engine, as the end-to-end tests and the benches call it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def docker(*args: str, check: bool = True, timeout: float | None = None) -> str:
    """The stdout of ``docker args`` (a failure raises, unless ``check`` is false)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    ).stdout


def docker_inspect(name: str, template: str, *, check: bool = True) -> str:
    """``docker inspect --format template name``, stripped (with ``check`` false, an object that
    does not exist gives "")."""
    return docker("inspect", "--format", template, name, check=check).strip()


def remove_found(listing: Sequence[str], removal: Sequence[str]) -> None:
    """A clean-up: ``docker removal…`` of what ``docker listing…`` prints (IDs or names), if it
    prints anything; neither command's failure is raised."""
    found = docker(*listing, check=False).split()
    if found:
        subprocess.run(
            ["docker", *removal, *dict.fromkeys(found)], capture_output=True, check=False
        )
