"""What deploys leave on the host and on this machine stays bounded: images, env files, migration
copies and logs of failed and dropped releases are removed; history lines are kept."""

from __future__ import annotations

import json
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


def test_the_release_a_rollback_brings_back_is_kept_however_old(app: AppUnderTest) -> None:
    """keep_releases 2: deploy A → deploy B → rollback (A) → deploy C. A is the oldest by deploy
    order but served until C came in: `plan` says B is the one forgotten, the deploy keeps A
    (its env file too), and a rollback brings A back."""

    def settings(document: Any) -> None:
        document["deploy"].update({"watch": "1s", "rollback_watch": "1s", "keep_releases": 2})

    app.edit(settings)
    versions = {}
    for name in ("A", "B"):
        versions[name] = f"0.0.0+{app.commit(f'version {name}')[:7]}"
        deployed = app.shipyard("deploy", app.environment)
        assert deployed.returncode == 0, deployed.stderr
    back = app.shipyard("rollback", app.environment)
    assert back.returncode == 0, back.stderr
    assert app.served("/", "version") == versions["A"]

    versions["C"] = f"0.0.0+{app.commit('version C')[:7]}"
    planned = app.shipyard("plan", app.environment, "--json")
    assert planned.returncode == 0, planned.stderr
    forgets = [
        s["action"]
        for s in json.loads(planned.stdout)
        if s["phase"] == "record" and s["action"].startswith("forget release")
    ]
    assert len(forgets) == 1 and forgets[0].startswith(f"forget release {versions['B']} "), forgets
    deployed = app.shipyard("deploy", app.environment)
    assert deployed.returncode == 0, deployed.stderr

    state = app.state_dir / app.name / app.environment
    assert len(_files(state / "releases")) == 2, _files(state / "releases")
    again = app.shipyard("rollback", app.environment)
    assert again.returncode == 0, again.stderr
    assert app.served("/", "version") == versions["A"]
