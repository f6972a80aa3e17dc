"""From an empty engine to a healthy app behind Caddy, with the real engine, PostgreSQL, Caddy and
golang-migrate."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bad_configs import CATALOGUE, BadConfig, write
from tests.e2e.conftest import AppUnderTest, engine_snapshot, git, run_shipyard
from tests.e2e.docker_cli import docker, docker_inspect
from tests.e2e.postgres import psql


def test_first_deploy_serves_health_through_caddy(app: AppUnderTest) -> None:
    commit = git(app.dir, "rev-parse", "HEAD")
    assert not [n for n in engine_snapshot()["containers"] if n.startswith(app.name)]

    result = app.shipyard("deploy", "development")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"http://localhost:{app.http_port}"
    for phase in ("validate", "build", "infrastructure", "migrate", "health", "switch", "verify"):
        assert f" {phase} " in result.stderr
    health = httpx.get(app.url("/health"), timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy"
    assert body["git_commit"] == commit
    assert body["slot"] == "blue"
    assert set(body["checks"]) == {
        "database",
        "migrations",
        "job_queue",
        "jsonld_contexts",
        "http_endpoint",
    }
    version = httpx.get(app.url("/version"), timeout=10).json()
    assert version["git_commit"] == commit
    assert version["version"] == f"0.0.0+{commit[:7]}"
    assert httpx.get(app.url("/metrics"), timeout=10).status_code == 404  # not public

    extensions = psql(app.database, "SELECT extname FROM pg_extension ORDER BY 1;")
    assert {"postgis", "vector", "pg_trgm", "pgcrypto"} <= set(extensions.split())
    assert psql(app.database, "SELECT version, dirty FROM schema_migrations;") == "2|f"

    status = app.status()
    assert status["version"] == f"0.0.0+{commit[:7]}"
    assert status["commit"] == commit
    assert status["slot"] == "blue"
    assert status["health"] == "healthy"
    assert status["deployed_by"]
    assert status["deployed_at"]
    assert status["drift"] is None

    projects = docker("compose", "ls", "--all", "--format", "json")
    assert f"{app.name}-development-infra" in projects
    assert f"{app.name}-development-blue" in projects

    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", app.live_image())
    assert commit in labels
    assert "org.opencontainers.image.created" in labels


def test_same_commit_deploys_again_into_the_other_slot(app: AppUnderTest) -> None:
    assert app.shipyard("deploy", "development").returncode == 0
    again = app.shipyard("deploy", "development", "--no-watch")
    assert again.returncode == 0, again.stderr
    assert httpx.get(app.url("/health"), timeout=10).json()["slot"] == "green"
    state = docker_inspect(f"{app.name}-development-blue", "{{.State.Status}}")
    assert state == "exited"  # stopped, kept for rollback
    history = app.shipyard("history", "development", "--json")
    assert history.returncode == 0
    assert history.stdout.count('"result": "succeeded"') == 2


def test_dirty_tree_is_refused_unless_allowed(app: AppUnderTest) -> None:
    """`check` refuses a dirty tree as deploy does (the same check, exit 3, nothing changed);
    the env file, untracked and here not even ignored, is never a change to the tree."""
    (app.dir / ".gitignore").write_text("bin/\n", encoding="utf-8")
    git(app.dir, "commit", "-q", "-m", "env files no longer ignored", "--", ".gitignore")
    assert app.shipyard("check", "development").returncode == 0
    (app.dir / "README.md").write_text("changed\n", encoding="utf-8")
    before = engine_snapshot(app.name)
    checked = app.shipyard("check", "development")
    refused = app.shipyard("deploy", "development")
    for result in (checked, refused):
        assert result.returncode == 3, result.stderr
        assert f"uncommitted changes in {app.dir}: README.md — commit them" in result.stderr
        assert "add .env.development to .gitignore" in result.stderr
    assert engine_snapshot(app.name) == before
    assert app.shipyard("check", "development", "--allow-dirty").returncode == 0
    allowed = app.shipyard("deploy", "development", "--allow-dirty")
    assert allowed.returncode == 0, allowed.stderr
    assert httpx.get(app.url("/version"), timeout=10).json()["version"].endswith(".dirty")


def test_a_taken_proxy_port_is_named_and_nothing_changes(app: AppUnderTest) -> None:
    """Another process listens on the proxy's port: check and deploy name the port and the
    process (this test, by its pid) and exit 3 before the engine is touched; once the port is
    free again the same commit deploys."""
    before = engine_snapshot(app.name)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", app.http_port))  # the proxy binds 0.0.0.0: they conflict
        squatter.listen()
        holder = f"port {app.http_port} on local is already in use by"
        for command in ("check", "deploy"):
            refused = app.shipyard(command, "development")
            text = " ".join(refused.stderr.split())
            assert refused.returncode == 3, refused.stderr
            assert f"proxy.http_port: {holder}" in text, refused.stderr
            assert f"(pid {os.getpid()})" in text, refused.stderr
            assert "address already in use" not in text
        assert engine_snapshot(app.name) == before
        assert not list(app.state_dir.rglob("history.jsonl"))  # no deploy was recorded
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    assert httpx.get(app.url("/health"), timeout=10).status_code == 200


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_bad_config_changes_nothing_on_the_engine(
    tmp_path: Path, docker_engine: None, case: BadConfig
) -> None:
    write(tmp_path, case)
    before = engine_snapshot("shop")  # the catalogue's app
    for command in ("deploy", "check"):
        result = run_shipyard(tmp_path, None, command, case.environment, timeout=120)
        assert result.returncode == 3, result.stderr
        assert case.expected in result.stderr
        assert "Traceback" not in result.stderr
    assert engine_snapshot("shop") == before


def test_every_health_check_kind_gates_a_deploy(app: AppUnderTest) -> None:
    def checks(document: Any) -> None:
        document["health"]["checks"] = [
            {"kind": "http", "path": "/readyz", "json_fields": {"status": ["ready"]}},
            {"kind": "tcp"},
            {"kind": "postgres", "query": "SELECT count(*) >= 0 FROM events"},
            {"kind": "command", "argv": ["/app/server", "healthcheck"]},
        ]

    app.edit(checks)
    app.commit("all check kinds")
    result = app.shipyard("deploy", "development")
    assert result.returncode == 0, result.stderr

    def failing(document: Any) -> None:
        document["health"]["checks"][2]["query"] = "SELECT count(*) > 1000000 FROM events"
        document["health"]["start_timeout"] = "3s"

    app.edit(failing)
    app.commit("postgres check cannot pass")
    refused = app.shipyard("deploy", "development")
    assert refused.returncode == 6
    assert "postgres: query returned 'f'" in refused.stderr


def _stack_state(app: AppUnderTest) -> list[Path]:
    """What shipyard keeps on the host for the app, its deployment logs aside."""
    state = Path(app.state_dir)
    files = state.rglob("*") if state.exists() else iter(())
    return sorted(p for p in files if p.is_file() and "logs" not in p.relative_to(state).parts)


def test_deploy_and_plan_refuse_what_check_refuses_and_change_nothing(app: AppUnderTest) -> None:
    """A world-readable env file, then one tracked by git: `check` fails, and `deploy` and `plan`
    run the same checks and stop with exit 3 before touching the engine."""
    env_file = app.dir / ".env.development"
    env_file.chmod(0o644)
    before = engine_snapshot(app.name)
    for command in ("check", "deploy", "plan"):
        refused = app.shipyard(command, "development")
        assert refused.returncode == 3, refused.stderr
        assert f"{env_file}: world-readable (mode 0o644)" in refused.stderr, refused.stderr
    assert engine_snapshot(app.name) == before
    assert _stack_state(app) == []

    env_file.chmod(0o600)
    git(app.dir, "add", "--force", ".env.development")
    app.commit("an env file committed by mistake")
    for command in ("check", "deploy"):
        refused = app.shipyard(command, "development")
        assert refused.returncode == 3, refused.stderr
        assert f"{env_file}: tracked by git" in refused.stderr, refused.stderr
    assert engine_snapshot(app.name) == before
    assert _stack_state(app) == []


def test_a_migrations_directory_that_does_not_exist_refuses_the_deploy(app: AppUnderTest) -> None:
    """Not "no migrations" and an app started on an empty schema: exit 3, nothing changed."""

    def moved(document: Any) -> None:
        document["database"]["migrations"]["path"] = "db/migrations"

    app.edit(moved)
    app.commit("the config names a migrations directory that is not there")
    before = engine_snapshot(app.name)
    refused = app.shipyard("deploy", "development")
    assert refused.returncode == 3, refused.stderr
    assert (
        f"database.migrations.path: directory {app.dir / 'db' / 'migrations'} does not exist"
        in refused.stderr
    )
    assert "no migrations" not in refused.stderr
    assert engine_snapshot(app.name) == before
    assert _stack_state(app) == []


def test_a_failed_first_deploy_says_what_it_left_and_how_to_remove_it(app: AppUnderTest) -> None:
    def never_healthy(document: Any) -> None:
        document["health"]["checks"] = [{"kind": "postgres", "query": "SELECT false"}]
        document["health"]["start_timeout"] = "3s"

    app.edit(never_healthy)
    app.commit("a health check that cannot pass")
    failed = app.shipyard("deploy", "development")
    assert failed.returncode == 6, failed.stderr
    assert "previous version kept serving" not in failed.stderr
    prefix = f"{app.name}-development"
    for left in (f"database container {prefix}-db", f"network {prefix}", f"volume {prefix}-pgdata"):
        assert left in failed.stderr, failed.stderr
    assert "`shipyard destroy development --yes` removes them" in failed.stderr

    assert app.shipyard("destroy", "development", "--yes", "--volumes").returncode == 0
    after = engine_snapshot(app.name)
    assert (after["containers"], after["networks"], after["volumes"]) == ([], [], [])


# An image whose process returns at once, as a server run without its subcommand does.
RETURNS_AT_ONCE = """\
FROM shipyard-local/debian:trixie
EXPOSE 8080
CMD ["sh", "-c", "echo 'usage: server serve'; exit 0"]
"""
# An image Docker itself finds unhealthy: `compose up --wait` fails, so the start phase does.
NEVER_HEALTHY = """\
FROM shipyard-local/debian:trixie
EXPOSE 8080
HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["false"]
CMD ["sh", "-c", "echo 'up, never healthy'; exec sleep infinity"]
"""


def test_a_first_deploy_failing_at_migrate_or_start_never_claims_a_previous_version(
    app: AppUnderTest,
) -> None:
    """Nothing served before a first deploy, wherever it fails (migrate, start, the health
    gate); a container whose process returned is reported as such, with its log, never as
    "running, exit code 0"."""
    planned = app.shipyard("plan", "development")
    assert planned.returncode == 0, planned.stderr
    assert "(empty database, no migrations applied)" in planned.stderr
    assert "schema at None" not in planned.stderr
    assert "3 passing round(s) of http /health within" in planned.stderr

    migrations = app.dir / "migrations"
    (migrations / "000003_broken.up.sql").write_text("ALTER TABLE nope ADD COLUMN x int;\n")
    (migrations / "000003_broken.down.sql").write_text("SELECT 1;\n")
    app.commit("a migration that fails")
    failed = app.shipyard("deploy", "development")
    assert failed.returncode == 6, failed.stderr
    assert "phase 'migrate'" in failed.stderr
    assert "previous version" not in failed.stderr, failed.stderr
    assert "nothing served before this first deploy" in failed.stderr

    for name in ("000003_broken.up.sql", "000003_broken.down.sql"):
        (migrations / name).unlink()
    app.edit(lambda document: document.update({"build": {"kind": "dockerfile"}}))
    (app.dir / "Dockerfile").write_text(RETURNS_AT_ONCE, encoding="utf-8")
    app.commit("an image whose process returns at once")
    failed = app.shipyard("deploy", "development")
    assert failed.returncode == 6, failed.stderr
    assert "phase 'start'" in failed.stderr or "phase 'health'" in failed.stderr, failed.stderr
    assert "exited with code 0: its server process ended" in failed.stderr, failed.stderr
    assert "usage: server serve" in failed.stderr  # its log
    assert "exit code 0)" not in failed.stderr
    assert "previous version" not in failed.stderr, failed.stderr
    assert "nothing served before this first deploy" in failed.stderr

    (app.dir / "Dockerfile").write_text(NEVER_HEALTHY, encoding="utf-8")
    app.commit("an image Docker finds unhealthy")
    failed = app.shipyard("deploy", "development")
    assert failed.returncode == 6, failed.stderr
    assert "phase 'start'" in failed.stderr, failed.stderr
    assert "up, never healthy" in failed.stderr  # its log
    assert "previous version" not in failed.stderr, failed.stderr
    assert "nothing served before this first deploy" in failed.stderr


def test_a_redeploy_never_restarts_the_database(app: AppUnderTest) -> None:
    """The database container is created once: a later deploy leaves it running as it is (its
    env file unchanged, so Compose does not recreate it under the live version)."""
    assert app.shipyard("deploy", "development").returncode == 0
    database = f"{app.name}-development-db"

    def started() -> str:
        return docker_inspect(database, "{{.Id}} {{.State.StartedAt}}")

    before = started()
    app.commit("another version")
    again = app.shipyard("deploy", "development", "--no-watch")
    assert again.returncode == 0, again.stderr
    assert started() == before
