"""Fast redeploys and rollbacks on the real engine: the unchanged infrastructure is not set up
again (but anything changed or stopped is), the new version is reported live before the watch,
``--no-watch`` and a rollback's shorter watch, and each operation's profile."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.e2e.conftest import AppUnderTest
from tests.e2e.docker_cli import docker, docker_inspect


def _events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The ``--json`` events of a command."""
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _deploy(app: AppUnderTest, *args: str) -> list[dict[str, Any]]:
    result = app.shipyard("deploy", "development", "--json", *args)
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    return _events(result)


def _finished(events: list[dict[str, Any]], phase: str) -> dict[str, Any]:
    return next(e for e in events if e["kind"] == "phase.finished" and e.get("phase") == phase)


def test_an_unchanged_infrastructure_is_not_set_up_again_but_a_change_or_a_stop_is(
    app: AppUnderTest,
) -> None:
    database = f"{app.name}-development-db"
    first = _deploy(app, "--no-watch")
    assert "database ready" in _finished(first, "infrastructure")["message"]
    before = docker_inspect(database, "{{.Id}} {{.State.StartedAt}}")

    # The same definition, the same containers: only the cheap checks run.
    again = _deploy(app, "--no-watch")
    summary = _finished(again, "infrastructure")["message"]
    assert "unchanged since" in summary, summary
    assert "postgis" in summary and "vector" in summary  # the extensions were read
    assert "password is the env file's" in summary
    assert "no readiness wait, extension creation or login container" in summary
    assert docker_inspect(database, "{{.Id}} {{.State.StartedAt}}") == before
    # The plan took the schema's state from the same read: as the first deploy left it.
    migrated = _finished(first, "migrate")["message"]
    assert migrated.startswith("schema at version "), migrated
    plan = _finished(again, "plan")["message"]
    assert plan == f"{migrated}; no pending migrations", plan

    # A stopped database is started and checked in full again.
    subprocess.run(["docker", "stop", database], capture_output=True, check=True)
    restarted = _deploy(app, "--no-watch")
    summary = _finished(restarted, "infrastructure")["message"]
    assert "unchanged since" not in summary and "database ready" in summary, summary
    assert docker_inspect(database, "{{.State.Status}}") == "running"

    # A new extension is created: the cheap check finds it missing.
    def add_extension(document: Any) -> None:
        document["database"]["extensions"].append("hstore")

    app.edit(add_extension)
    app.commit("hstore")
    extended = _deploy(app, "--no-watch")
    summary = _finished(extended, "infrastructure")["message"]
    assert "unchanged since" not in summary and "hstore" in summary, summary

    # A changed definition (no guard any more) is applied in full.
    def no_guard(document: Any) -> None:
        document["deploy"]["guard_image"] = None

    app.edit(no_guard)
    app.commit("no guard")
    changed = _deploy(app, "--no-watch")
    summary = _finished(changed, "infrastructure")["message"]
    assert "unchanged since" not in summary and "database ready" in summary, summary
    guards = docker(
        "ps", "--all", "--quiet", "--filter", f"name={app.name}-development-guard"
    ).split()
    assert guards == []
    # ... and then remembered again.
    assert "unchanged since" in _finished(_deploy(app, "--no-watch"), "infrastructure")["message"]


def test_a_password_changed_in_the_env_file_is_still_refused_before_any_slot_starts(
    app: AppUnderTest,
) -> None:
    _deploy(app, "--no-watch")
    _deploy(app, "--no-watch")  # the infrastructure's record is in place
    env_file = app.dir / ".env.development"
    lines = env_file.read_text().splitlines()
    env_file.write_text(
        "\n".join(
            "POSTGRES_PASSWORD=changed" if line.startswith("POSTGRES_PASSWORD=") else line
            for line in lines
        )
        + "\n"
    )
    refused = app.shipyard("deploy", "development", "--no-watch")
    assert refused.returncode == 6, refused.stderr
    assert "refuses the password" in refused.stderr
    assert "no slot was started" in refused.stderr


def test_live_is_reported_before_the_watch_and_no_watch_retires_the_old_version(
    app: AppUnderTest,
) -> None:
    def short_watch(document: Any) -> None:
        document["deploy"]["watch"] = "2s"
        document["deploy"]["min_requests"] = 5

    app.edit(short_watch)
    app.commit("short watch")
    _deploy(app)
    watched = _deploy(app)
    kinds = [(e["kind"], e.get("phase")) for e in watched]
    live = kinds.index(("deploy.live", None))
    assert (
        kinds.index(("phase.finished", "verify")) < live < kinds.index(("phase.started", "watch"))
    )
    event = watched[live]
    assert event["data"]["watch_s"] == 2 and event["data"]["slot"] == "green"
    assert watched[-1]["kind"] == "operation.profile"
    phases = [p["phase"] for p in watched[-1]["data"]["phases"]]
    assert phases[-4:] == ["verify", "watch", "retire", "record"]
    assert watched[-1]["data"]["live_s"] <= watched[-1]["data"]["total_s"]

    # The line a person reads, before the watch's own.
    result = app.shipyard("deploy", "development")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    live_line = next(i for i, line in enumerate(lines) if "● live" in line)
    watch_line = next(i for i, line in enumerate(lines) if line.startswith("✓ watch"))
    assert live_line < watch_line
    assert "watching it for 2s" in lines[live_line]

    # --no-watch: returns once verified, the new version serving and the old one retired.
    commit = app.commit("unwatched")
    unwatched = _deploy(app, "--no-watch")
    skipped = next(e for e in unwatched if e["kind"] == "phase.skipped" and e["phase"] == "watch")
    assert skipped["message"] == "--no-watch"
    assert "retire" in [p["phase"] for p in unwatched[-1]["data"]["phases"]]
    assert app.served() == commit
    live_slot = docker_inspect(
        f"{app.name}-development-live", '{{index .Config.Labels "org.shipyard.slot"}}'
    )
    old = "green" if live_slot == "blue" else "blue"
    assert docker_inspect(f"{app.name}-development-{old}", "{{.State.Status}}") == "exited"


def test_a_rollback_watches_for_the_shorter_rollback_watch(app: AppUnderTest) -> None:
    _deploy(app, "--no-watch")
    app.commit("second")
    _deploy(app, "--no-watch")
    back = app.shipyard("rollback", "development", "--json")
    assert back.returncode == 0, back.stderr
    events = _events(back)
    assert "healthy for 10s" in _finished(events, "watch")["message"]  # deploy.rollback_watch
    live = next(e for e in events if e["kind"] == "deploy.live")
    assert live["data"]["watch_s"] == 10
    assert events[-1]["kind"] == "operation.profile"
