"""The database password on the real engine: an env file whose password the database was not
created with stops a deploy before any slot starts, and `shipyard db rotate-password` gives the
database the new one under load without a failed request."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.e2e.conftest import AppUnderTest, container_env, engine_snapshot
from tests.e2e.docker_cli import docker
from tests.e2e.load import Load

HEALTH_TIMEOUT = "300s"  # a deploy waiting for the health gate would take this long


def _configure(app: AppUnderTest) -> None:
    def change(document: Any) -> None:
        document["health"]["start_timeout"] = HEALTH_TIMEOUT
        document["deploy"]["watch"] = "2s"
        document["deploy"]["min_requests"] = 5

    app.edit(change)


def _set_password(app: AppUnderTest, password: str) -> None:
    env_file = app.dir / f".env.{app.environment}"
    text = re.sub(
        r"^POSTGRES_PASSWORD=.*$",
        f"POSTGRES_PASSWORD={password}",
        env_file.read_text(encoding="utf-8"),
        flags=re.M,
    )
    env_file.write_text(text, encoding="utf-8")


def _inspect(container: str) -> str:
    return docker("container", "inspect", container)


def _url_password(app: AppUnderTest) -> str:
    """The password in the DATABASE_URL of the container that serves."""
    url = container_env(_inspect(f"{app.name}-{app.environment}-live"))["DATABASE_URL"]
    return unquote(urlsplit(url).password or "")


def test_a_changed_password_is_refused_at_once_and_rotated_without_a_failed_request(
    app: AppUnderTest,
) -> None:
    _configure(app)
    first = app.commit("first")
    assert app.shipyard("deploy", app.environment).returncode == 0
    second = app.commit("second")
    assert app.shipyard("deploy", app.environment).returncode == 0
    old_password = _url_password(app)
    database = json.loads(_inspect(f"{app.name}-{app.environment}-db"))[0]["Id"]
    engine_before, status_before = engine_snapshot(app.name), app.status()

    # A regenerated env file: the deploy stops in its infrastructure phase, long before the
    # health timeout, and nothing changes.
    new_password = f"pw-{secrets.token_hex(12)}"
    _set_password(app, new_password)
    started = time.monotonic()
    refused = app.shipyard("deploy", app.environment)
    took = time.monotonic() - started
    assert refused.returncode == 6, refused.stderr
    assert "deploy failed in phase 'infrastructure'" in refused.stderr
    assert "the database refuses the password of role 'events'" in refused.stderr
    assert "'POSTGRES_PASSWORD' (database.password_env)" in refused.stderr
    assert "created with another password" in refused.stderr
    assert "shipyard db rotate-password development" in refused.stderr
    assert new_password not in refused.stderr
    assert took < 120, f"the deploy took {took:.0f}s: it waited for the health gate"
    assert not re.search(r"^. start ", refused.stderr, re.M), refused.stderr
    assert app.served() == second
    assert engine_snapshot(app.name) == engine_before
    assert json.loads(_inspect(f"{app.name}-{app.environment}-db"))[0]["Id"] == database
    status = app.status()
    assert (status["slot"], status["release_id"]) == (
        status_before["slot"],
        status_before["release_id"],
    )
    assert not status["drift"] and not status["problems"] and not status["interrupted"]
    assert (app.history()[0]["result"], app.history()[0]["phase"]) == ("failed", "infrastructure")

    # The rotation, under load through the proxy (the app's / and its /health, which queries
    # the database with the old slot's pool until the switch).
    with Load(app.url("/")) as load, Load(app.url("/health")) as health:
        deadline = time.monotonic() + 30
        while health.result.requests < 50 and time.monotonic() < deadline:
            time.sleep(0.1)  # the pools are warm before the password changes
        rotated = app.shipyard("db", "rotate-password", app.environment)
    assert rotated.returncode == 0, rotated.stderr
    assert load.result.requests > 50 and health.result.requests > 50
    assert load.result.failures == [], load.result.failures[:5]
    assert health.result.failures == [], health.result.failures[:5]
    assert app.served() == second
    assert _url_password(app) == new_password != old_password
    after = app.status()
    assert after["slot"] != status_before["slot"]
    assert after["release_id"] == status_before["release_id"]  # the same release, renewed
    assert not after["drift"] and not after["problems"]
    entry = app.history()[0]
    assert (entry["action"], entry["result"]) == ("rotate-password", "succeeded")
    assert new_password not in rotated.stderr
    logs = subprocess.run(
        ["docker", "logs", f"{app.name}-{app.environment}-db"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert new_password not in logs.stdout + logs.stderr

    # The older retained release got the new URL too: a rollback to it logs in. Then a deploy.
    back = app.shipyard("rollback", app.environment)
    assert back.returncode == 0, back.stderr
    assert app.served() == first
    assert _url_password(app) == new_password
    third = app.commit("third")
    deployed = app.shipyard("deploy", app.environment)
    assert deployed.returncode == 0, deployed.stderr
    assert app.served() == third


def test_rotating_to_the_password_the_database_has_only_redeploys(app: AppUnderTest) -> None:
    """Run again after a rotation that was cut short once the password had changed: no
    ALTER ROLE, and the live release comes back with the URL it needs."""
    _configure(app)
    app.commit("first")
    assert app.shipyard("deploy", app.environment).returncode == 0
    rotated = app.shipyard("db", "rotate-password", app.environment)
    assert rotated.returncode == 0, rotated.stderr
    assert "logs in with the env file's password already" in rotated.stderr
    assert app.history()[0]["action"] == "rotate-password"
