"""A deploy killed at any moment leaves the site serving, and the next command repairs what it
left: real engine, PostgreSQL, Caddy and golang-migrate, under load from loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from shipyard.deploy._pipeline import DEPLOY, Runs
from tests.e2e.conftest import AppUnderTest, container_id
from tests.e2e.crash import (
    LiveWatch,
    kill_at_phase,
    kill_before_command,
    kill_before_request,
    local_logs,
    start,
    wait_for_phase,
)
from tests.e2e.docker_cli import docker_inspect
from tests.e2e.load import Load

# Every phase of a deploy that has a migration pending, as the pipeline declares them: not the
# checks before the lock, hooks (none are set), CI (not required), the stop mode's retire or
# the maintenance phases (no --maintenance here; test_maintenance.py kills one of those).
PHASES = [
    spec.name
    for spec in DEPLOY.phases
    if spec.name != "validate"
    and spec.runs is not Runs.AFTERWARDS
    and spec.when not in {"hooks", "deploy.require_ci", "deploy.old_version: stop", "--maintenance"}
]
# Changes shipyard makes over the local engine's API (kill points for ``kill_before_request``).
RENAME = "POST /containers/*/rename"
START = "POST /containers/*/start"
STOP = "POST /containers/*/stop"


def _settings(app: AppUnderTest, **deploy: Any) -> None:
    def change(document: Any) -> None:
        document["deploy"].update({"watch": "1s", "min_requests": 5, **deploy})

    app.edit(change)


def _add_migration(app: AppUnderTest, version: int, sql: str) -> str:
    (app.dir / "migrations" / f"{version:06d}_step_{version}.up.sql").write_text(sql)
    (app.dir / "migrations" / f"{version:06d}_step_{version}.down.sql").write_text(
        f"DROP TABLE IF EXISTS crash_{version};\n"
    )
    return app.commit(f"migration {version}")


def _answers_to(container: str) -> set[str]:
    """The names ``container`` answers to on its networks: its own and its aliases."""
    networks = json.loads(docker_inspect(container, "{{json .NetworkSettings.Networks}}"))
    return {container} | {a for n in networks.values() for a in n.get("Aliases") or []}


def _assert_one_version_serves(app: AppUnderTest, commit: str) -> None:
    assert app.served() == commit
    assert app.running_app_containers() == [f"{app.name}-{app.environment}-live"]
    status = app.shipyard("status", app.environment, "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    [data] = json.loads(status.stdout)
    assert data["interrupted"] is None and data["problems"] == [] and data["drift"] is None


def test_deploy_killed_at_every_phase_never_takes_the_site_down(
    app: AppUnderTest, tmp_path: Path
) -> None:
    _settings(app)
    app.commit("settings")
    assert app.shipyard("deploy", app.environment).returncode == 0
    version = 2
    kills: list[tuple[str, Any]] = [("phase", phase) for phase in PHASES]
    # Between the renames of the switch: the old container gave the live name up for the
    # switching name and the candidate has not taken it yet (the old one serves alone); then the
    # candidate carries the live name and the old one still the switching name.
    kills += [("rename", 2), ("rename", 3)]  # the engine's API makes the renames
    with Load(app.url("/")) as load, LiveWatch(app) as watch:
        for kind, where in kills:
            version += 1
            commit = _add_migration(
                app, version, f"CREATE TABLE crash_{version} (id integer PRIMARY KEY);\n"
            )
            if kind == "phase":
                victim = kill_at_phase(app, where, "deploy", app.environment)
            else:
                victim = kill_before_request(
                    app, tmp_path, RENAME, where, "deploy", app.environment
                )
            assert victim.process.returncode == -signal.SIGKILL, (kind, where, victim.stderr)
            # The next deploy at once: the killed holder's lock is taken over (it is gone), the
            # interrupted deploy finished or undone, then this one goes live.
            after = app.shipyard("deploy", app.environment, "--wait", "5m")
            assert after.returncode == 0, (kind, where, after.stderr)
            _assert_one_version_serves(app, commit)
            if where != "lock" and victim.deployment_id is not None:
                entry = next(e for e in app.history() if e["deployment_id"] == victim.deployment_id)
                assert entry["result"] == "interrupted", (kind, where, entry)
    assert load.result.requests > 500
    assert load.result.failures == [], load.result.failures[:10]
    assert watch.samples > 100
    assert watch.empty == [], f"{len(watch.empty)} samples with no live container"


def _old_slot_kept_stopped(app: AppUnderTest) -> None:
    """With `deploy.old_version: stop`: the slot that is not live holds a stopped container."""
    live_slot = app.status()["slot"]
    other = "green" if live_slot == "blue" else "blue"
    name = f"{app.name}-{app.environment}-{other}"
    assert docker_inspect(name, "{{.State.Status}}", check=False) == "exited", name


def test_with_old_version_stop_a_deploy_killed_after_the_switch_never_takes_the_site_down(
    app: AppUnderTest, tmp_path: Path
) -> None:
    """`deploy.old_version: stop` stops the old version before the watch: a deploy killed from
    the switch on (while the old version drains, just before it is stopped, while it is
    stopped during the watch) is undone by the next deploy, which starts the old version
    again, health-gates it and switches back before going on; the site serves throughout."""
    _settings(app, old_version="stop", watch="4s")
    app.commit("stop the old version after the switch")
    assert app.shipyard("deploy", app.environment).returncode == 0
    kills: list[tuple[str, Any]] = [
        ("phase", phase) for phase in ("switch", "verify", "retire", "watch", "record")
    ]
    kills.append(("request", STOP))  # drained, just before the old version is stopped
    with Load(app.url("/")) as load, LiveWatch(app) as watch:
        for kind, where in kills:
            commit = app.commit(f"killed at {where}")
            if kind == "phase":
                victim = kill_at_phase(app, where, "deploy", app.environment)
            else:
                victim = kill_before_request(app, tmp_path, where, 1, "deploy", app.environment)
            assert victim.process.returncode == -signal.SIGKILL, (kind, where, victim.stderr)
            after = app.shipyard("deploy", app.environment, "--wait", "5m")
            assert after.returncode == 0, (kind, where, after.stderr)
            _assert_one_version_serves(app, commit)
            _old_slot_kept_stopped(app)
            assert victim.deployment_id is not None
            entry = next(e for e in app.history() if e["deployment_id"] == victim.deployment_id)
            assert entry["result"] == "interrupted", (kind, where, entry)
    assert load.result.requests > 300
    assert load.result.failures == [], load.result.failures[:10]
    assert watch.empty == [], f"{len(watch.empty)} samples with no live container"


def test_with_old_version_stop_a_deploy_killed_while_switching_back_is_undone_by_repair(
    app: AppUnderTest, tmp_path: Path
) -> None:
    """Killed just before the stopped old version is started again for a switch-back (the new
    one failed its watch): the new version keeps serving alone until `shipyard repair` starts
    the old one, health-gates it, switches back and removes the new one."""
    _settings(app, old_version="stop")
    good = app.commit("good")
    assert app.shipyard("deploy", app.environment).returncode == 0

    def decays(document: Any) -> None:
        document["app"]["env"]["TEST_UNHEALTHY_AFTER"] = "4s"
        document["deploy"]["watch"] = "60s"

    app.edit(decays)
    app.commit("decays")
    # /version keeps answering in the failing version (only / and /api/* fail on purpose).
    with Load(app.url("/version")) as load, LiveWatch(app) as watch:
        # The first start is the new version's (created and started); the second, the old one's.
        kill_before_request(app, tmp_path, START, 2, "deploy", app.environment)
        assert app.running_app_containers() == [f"{app.name}-{app.environment}-live"]
        status = app.shipyard("status", app.environment, "--json")
        assert status.returncode == 8, status.stderr
        assert "undoes it" in json.loads(status.stdout)[0]["interrupted"]
        repaired = app.shipyard("repair", app.environment)
        assert repaired.returncode == 0, repaired.stderr
        assert "undone" in repaired.stderr
    assert load.result.failures == [], load.result.failures[:10]
    assert watch.empty == []
    _assert_one_version_serves(app, good)


def test_a_half_done_switch_is_finished_by_repair_and_status_says_so(
    app: AppUnderTest, tmp_path: Path
) -> None:
    _settings(app)
    first = app.commit("first")
    assert app.shipyard("deploy", app.environment).returncode == 0
    app.commit("second")
    with Load(app.url("/")) as load, LiveWatch(app) as watch:
        kill_before_request(app, tmp_path, RENAME, 2, "deploy", app.environment)
        status = app.shipyard("status", app.environment, "--json")
        assert status.returncode == 8, status.stderr
        [data] = json.loads(status.stdout)
        assert "stopped at step 'switch'" in data["interrupted"]
        assert "undoes it" in data["interrupted"]
        switching = f"{app.name}-{app.environment}-switching"
        assert any(f"sends requests to {switching}" in p for p in data["problems"]), data
        # The candidate runs beside the old version and answers to no name the proxy looks up,
        # so no lookup (not even one made while a rename is under way) can find it.
        routed = {upstream.rsplit(":", 1)[0] for upstream in data["proxy_upstreams"]}
        assert routed == {f"{app.name}-{app.environment}-live", switching}, data
        [candidate] = [c for c in app.running_app_containers() if c != switching]
        assert not routed & _answers_to(candidate)
        plan = app.shipyard("plan", app.environment)
        assert "undo the interrupted deploy" in plan.stderr, plan.stderr
        repaired = app.shipyard("repair", app.environment)
        assert repaired.returncode == 0, repaired.stderr
        assert "undone" in repaired.stderr
    assert load.result.failures == [], load.result.failures[:10]
    assert watch.empty == []
    # Cut short between its renames, the switch left the old version serving alone: the
    # candidate never answered a request.
    assert set(load.result.versions) == {f"0.0.0+{first[:7]}"}, load.result.version_counts
    _assert_one_version_serves(app, first)
    assert [e["action"] for e in app.history()[:2]] == ["repair", "deploy"]
    assert app.history()[1]["result"] == "interrupted"


def test_a_paused_deploy_loses_its_lock_and_touches_nothing(app: AppUnderTest) -> None:
    _settings(app, lock_ttl="3s")
    app.commit("short lock")
    assert app.shipyard("deploy", app.environment).returncode == 0

    def slow(document: Any) -> None:
        document["app"]["env"]["TEST_STARTUP_DELAY"] = "3s"

    app.edit(slow)
    app.commit("slow to start")
    earlier = local_logs(app)
    paused = start(app, "deploy", app.environment)
    try:
        wait_for_phase(app, earlier, "health", paused)
        paused.send_signal(signal.SIGSTOP)
        app.edit(lambda d: d["app"]["env"].pop("TEST_STARTUP_DELAY"))
        second = app.commit("the second deploy")
        other = app.shipyard("deploy", app.environment, "--wait", "2m")
        assert other.returncode == 0, other.stderr
        live_id = container_id(f"{app.name}-{app.environment}-live")
    finally:
        paused.send_signal(signal.SIGCONT)
    _, err = paused.communicate(timeout=300)
    assert paused.returncode == 4, err
    assert "lost the lock" in err
    assert container_id(f"{app.name}-{app.environment}-live") == live_id
    _assert_one_version_serves(app, second)


def test_killed_after_a_failed_migration_the_next_deploy_resets_the_dirty_flag(
    app: AppUnderTest, tmp_path: Path
) -> None:
    _settings(app)
    app.commit("settings")
    assert app.shipyard("deploy", app.environment).returncode == 0
    # One transaction (no explicit BEGIN): it fails at its last statement and nothing remains.
    _add_migration(app, 3, "CREATE TABLE crash_3 (id integer);\nSELECT 1 / 0;\n")
    kill_before_command(app, tmp_path, "logs *-migrate-*", 1, "deploy", app.environment)
    database = f"{app.name}-{app.environment}-db"
    assert _schema(database) == "3|t"  # golang-migrate left it dirty; shipyard was gone
    kept = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label=org.shipyard.app={app.name}",
         "--filter", "label=org.shipyard.role=migrate"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(kept) == 1, "the migrate container is kept until its result is read"
    status = app.shipyard("status", app.environment, "--json")
    assert status.returncode == 8
    [data] = json.loads(status.stdout)
    assert "stopped at step 'migrate'" in data["interrupted"]
    assert any("schema is dirty at version 3" in p for p in data["problems"]), data["problems"]

    fixed = _add_migration(app, 3, "CREATE TABLE crash_3 (id integer PRIMARY KEY);\n")
    health: list[int] = []
    unhealthy: list[dict[str, Any]] = []  # the migrations check of each non-200 answer, in order
    with Load(app.url("/")) as load:
        process = start(app, "deploy", app.environment)
        while process.poll() is None:
            answer = httpx.get(app.url("/health"), timeout=10)
            health.append(answer.status_code)
            if answer.status_code != 200:
                unhealthy.append(_migrations_check(answer))
            time.sleep(0.1)
        _out, err = process.communicate()
    assert process.returncode == 0, err
    assert "dirty flag was reset to version 2" in err
    assert _schema(database) == "3|f"
    assert load.result.failures == [], load.result.failures[:5]
    # Unhealthy until the repair (the first phases): the schema dirty at version 3. Healthy from
    # then on, but for the instant golang-migrate itself marks version 3 dirty while it applies
    # the fixed migration (the old version reads the flag): no other cause of a failing health.
    assert health and health[-5:] == [200] * 5
    first_ok = health.index(200)
    later = unhealthy[first_ok:]  # every answer before the first 200 is in `unhealthy`, in order
    assert all(c.get("details") == {"version": 3, "dirty": True} for c in later), (health, later)
    _assert_one_version_serves(app, fixed)


def _migrations_check(answer: httpx.Response) -> dict[str, Any]:
    """The migrations check of a /health answer (empty when it has none)."""
    try:
        checks = answer.json().get("checks") or {}
    except ValueError:
        return {}
    found: dict[str, Any] = checks.get("migrations") or {}
    return found


def test_a_live_container_stopped_outside_shipyard_is_started_again(app: AppUnderTest) -> None:
    _settings(app)
    commit = app.commit("settings")
    assert app.shipyard("deploy", app.environment).returncode == 0
    live = f"{app.name}-{app.environment}-live"
    started = docker_inspect(live, "{{.State.StartedAt}}", check=False)
    # The guard starts it again on its own.
    subprocess.run(["docker", "kill", live], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while (
        docker_inspect(live, "{{.State.Running}} {{.State.StartedAt}}", check=False)
        in (
            "",
            f"true {started}",
        )
        or docker_inspect(live, "{{.State.Running}}", check=False) != "true"
    ):
        assert time.monotonic() < deadline, "the guard did not start the live container again"
        time.sleep(0.2)
    guard_log = subprocess.run(
        ["docker", "logs", f"{app.name}-{app.environment}-guard"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"guard: {live} stopped and shipyard did not stop it" in guard_log.stdout
    _until_status_ok(app)
    _assert_one_version_serves(app, commit)

    # Without the guard, status says so (exit 8) and repair starts it.
    subprocess.run(["docker", "stop", f"{app.name}-{app.environment}-guard"], check=True)
    subprocess.run(["docker", "kill", live], check=True, capture_output=True)
    status = app.shipyard("status", app.environment, "--json")
    assert status.returncode == 8
    problems = json.loads(status.stdout)[0]["problems"]
    assert any("no container serves" in p for p in problems), problems
    repaired = app.shipyard("repair", app.environment)
    assert repaired.returncode == 0, repaired.stderr
    assert "stopped outside shipyard" in repaired.stderr
    _until_status_ok(app)
    _assert_one_version_serves(app, commit)


def _until_status_ok(app: AppUnderTest, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while app.shipyard("status", app.environment).returncode != 0:
        assert time.monotonic() < deadline, app.shipyard("status", app.environment).stderr
        time.sleep(0.5)


def _schema(database: str) -> str:
    return subprocess.run(
        ["docker", "exec", database, "psql", "-At", "-U", "events", "-d", "events", "-c",
         "SELECT version, dirty FROM schema_migrations"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
