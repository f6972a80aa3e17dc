"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli_harness import Project, project


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The valid project of ``cli_harness.project``: commands run in it reach a recording host
    and a scripted provider."""
    return project(tmp_path, monkeypatch)
