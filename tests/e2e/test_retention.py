"""What deploys leave on the host and on this machine stays bounded: images, env files, migration
copies and logs of failed and dropped releases are removed; history lines are kept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import AppUnderTest

KEEP_RELEASES = 2
KEEP_LOGS = 5


def _images(app: AppUnderTest) -> list[str]:
    out = subprocess.run(
        ["docker", "image", "ls", app.name, "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(out.split())


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_twenty_deploys_with_failures_between_leave_bounded_files_and_images(
    app: AppUnderTest,
) -> None:
    def settings(document: Any) -> None:
        document["deploy"].update(
            {"watch": "1s", "keep_releases": KEEP_RELEASES, "keep_logs": KEEP_LOGS}
        )

    app.edit(settings)
    outcomes = []
    for n in range(20):
        failing = n % 2 == 1

        def change(document: Any, failing: bool = failing) -> None:
            env = document["app"]["env"]
            if failing:
                env["TEST_FAIL_STARTUP"] = "1"
            else:
                env.pop("TEST_FAIL_STARTUP", None)

        app.edit(change)
        app.commit(f"deploy {n}{' (fails at start)' if failing else ''}")
        result = app.shipyard("deploy", app.environment)
        outcomes.append(result.returncode)
        assert result.returncode == (6 if failing else 0), result.stderr
    assert outcomes.count(0) == 10

    state = app.state_dir / app.name / app.environment
    images = _images(app)
    assert len(images) <= KEEP_RELEASES, images  # failed releases' images removed at once
    assert len(_files(state / "releases")) <= KEEP_RELEASES, _files(state / "releases")
    assert len(_files(state / "migrations")) <= KEEP_RELEASES, _files(state / "migrations")
    assert len(_files(state / "logs")) <= KEEP_LOGS, _files(state / "logs")
    local = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    local_logs = local / "shipyard" / "logs" / app.name / app.environment
    assert len(_files(local_logs)) <= KEEP_LOGS, _files(local_logs)
    leftovers = [p for p in state.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers
    history = app.shipyard("history", app.environment, "--json")
    assert history.stdout.count('"deployment_id"') == 20  # every line kept (a year of them)
