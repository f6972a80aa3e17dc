"""Maintenance mode on the real engine and Caddy: turned on and off under load without failing a
request in flight, its page (HTML or JSON) with Retry-After, the health paths and allowed
networks still reaching the app, kept through a redeploy; ``deploy --maintenance`` around a slow
migration, and a killed one repaired."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import httpx

from tests.e2e.conftest import AppUnderTest
from tests.e2e.crash import kill_at_phase, local_logs, start, wait_for_phase
from tests.e2e.load import Load


class MaintenanceLoad(Load):
    """``Load`` for which the maintenance page (503 with Retry-After) is an answer, not a
    failure: a connection error, a 502/504 or a 503 without Retry-After still is."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.statuses: Counter[int] = Counter()

    def _record(
        self, client: int, response: httpx.Response | None, failure: str | None, retried: bool
    ) -> bool:
        if response is not None and failure is None:
            with self._lock:
                self.statuses[response.status_code] += 1
            if response.status_code == 503 and response.headers.get("Retry-After"):
                with self._lock:
                    self.result.requests += 1
                    return self.result.requests < self.max_requests
        return super()._record(client, response, failure, retried)


def _settings(app: AppUnderTest) -> None:
    def change(document: Any) -> None:
        document["deploy"].update({"watch": "1s", "min_requests": 5})

    app.edit(change)
    app.commit("a short watch")


def _wait_for(condition: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})")


def _status_code(app: AppUnderTest, path: str = "/") -> int:
    return httpx.get(app.url(path), timeout=10).status_code


def _gateway(app: AppUnderTest) -> str:
    """The address the proxy sees a client on this machine come from (through the port
    published on the loopback): the gateway of the environment's network."""
    return subprocess.run(
        [
            "docker", "network", "inspect", f"{app.name}-{app.environment}",
            "--format", "{{(index .IPAM.Config 0).Gateway}}",
        ],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _add_migration(app: AppUnderTest, version: int, sql: str) -> str:
    (app.dir / "migrations" / f"{version:06d}_maint_{version}.up.sql").write_text(sql)
    (app.dir / "migrations" / f"{version:06d}_maint_{version}.down.sql").write_text(
        f"DROP TABLE IF EXISTS maint_{version};\n"
    )
    return app.commit(f"migration {version}")


def test_maintenance_on_and_off_under_load_fails_no_request(app: AppUnderTest) -> None:
    _settings(app)
    assert app.shipyard("deploy", app.environment).returncode == 0
    assert app.status()["maintenance"] == {"on": False}

    with MaintenanceLoad(app.url("/")) as load:
        _wait_for(lambda: load.statuses[200] > 20, "requests served before maintenance")
        on = app.shipyard(
            "maintenance", "on", app.environment,
            "--message", "Back at <b>noon</b> {soon}", "--retry-after", "42", "--json",
        )  # fmt: skip
        assert on.returncode == 0, on.stderr
        [record] = json.loads(on.stdout)
        assert record["on"] is True and record["retry_after"] == 42, record
        assert record["summary"] == "maintenance on", record  # no config was loaded

        # New requests get the page at once (the flag is written when the command returns).
        page = httpx.get(app.url("/api/v1/events"), headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 503
        assert page.headers["Retry-After"] == "42"
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Back at &lt;b&gt;noon&lt;/b&gt; {soon}" in page.text
        as_json = httpx.get(app.url("/"), headers={"Accept": "application/json"}, timeout=10)
        assert as_json.status_code == 503
        assert as_json.headers["Retry-After"] == "42"
        assert as_json.json() == {"status": "maintenance", "message": "Back at <b>noon</b> {soon}"}
        # The health and verify paths still reach the app; /metrics stays blocked.
        health = httpx.get(app.url("/health"), timeout=10)
        assert health.status_code == 200 and health.json()["status"] in ("healthy", "degraded")
        assert _status_code(app, "/version") == 200
        assert _status_code(app, "/metrics") == 404

        status = app.status()
        assert status["maintenance"]["on"] is True, status
        assert status["maintenance"]["message"] == "Back at <b>noon</b> {soon}"
        assert status["maintenance"]["since"] and status["maintenance"]["by"]
        assert status["health"] == "healthy" and status["drift"] is None, status
        human = app.shipyard("status", app.environment)
        assert "ON since" in " ".join(human.stderr.split()), human.stderr

        # A redeploy (its switch renders the proxy's config from the state) keeps it on; the
        # page's 503s are not the new version's errors in the watch.
        app.commit("a redeploy during maintenance")
        redeployed = app.shipyard("deploy", app.environment)
        assert redeployed.returncode == 0, redeployed.stderr
        kept = httpx.get(app.url("/"), timeout=10)
        assert (kept.status_code, kept.headers["Retry-After"]) == (503, "42")
        assert app.status()["maintenance"]["on"] is True

        off = app.shipyard("maintenance", "off", app.environment, "--json")
        assert off.returncode == 0, off.stderr
        assert json.loads(off.stdout)[0] == {
            "node": "local",
            "on": False,
            "summary": "maintenance off",
        }
        assert _status_code(app) == 200
        served_after = load.statuses[200]
        _wait_for(lambda: load.statuses[200] > served_after + 20, "requests served after it")

    assert load.result.failures == [], load.result.failures[:10]
    assert load.statuses[503] > 20, load.statuses
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert app.status()["maintenance"] == {"on": False}

    # This machine's address as the proxy sees it passes (a change of the allowed networks
    # loads the proxy's config, so it is not under load here).
    network = f"{_gateway(app)}/32"
    allowed = app.shipyard("maintenance", "on", app.environment, "--allow", network, "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)[0]["allow"] == [network]
    assert _status_code(app) == 200
    assert app.status()["maintenance"]["allow"] == [network]
    others = app.shipyard("maintenance", "on", app.environment, "--allow", "192.0.2.0/24")
    assert others.returncode == 0, others.stderr
    assert _status_code(app) == 503
    assert app.shipyard("maintenance", "off", app.environment).returncode == 0
    assert _status_code(app) == 200


def test_deploy_with_maintenance_wraps_the_migration_and_a_killed_one_is_repaired(
    app: AppUnderTest,
) -> None:
    _settings(app)
    assert app.shipyard("deploy", app.environment).returncode == 0

    # A migration that cannot run online: the deploy says --maintenance is the way.
    _add_migration(app, 3, "CREATE INDEX maint_3 ON events (title);\n")
    hinted = app.shipyard("deploy", app.environment)
    assert hinted.returncode == 0, hinted.stderr
    said = " ".join(hinted.stderr.split())
    assert "cannot run online" in said and "--maintenance" in said, hinted.stderr

    # A slow one under --maintenance: the proxy answers 503 while it runs, and no request fails.
    commit = _add_migration(app, 4, "SELECT pg_sleep(3);\nCREATE TABLE maint_4 (id integer);\n")
    earlier = local_logs(app)
    with MaintenanceLoad(app.url("/")) as load:
        process = start(app, "deploy", app.environment, "--maintenance")
        log = wait_for_phase(app, earlier, "migrate", process)
        during = httpx.get(app.url("/"), headers={"Accept": "application/json"}, timeout=10)
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        assert _status_code(app) == 200
    assert during.status_code == 503 and during.json()["status"] == "maintenance"
    assert load.result.failures == [], load.result.failures[:10]
    assert load.statuses[503] > 0 and load.statuses[200] > 0, load.statuses
    assert app.served() == commit
    assert app.status()["maintenance"] == {"on": False}
    kinds = [json.loads(line).get("kind") for line in log.read_text().splitlines()]
    assert kinds.index("maintenance.on") < kinds.index("maintenance.off"), kinds

    # Killed while migrating: maintenance stays on until the repair turns it off.
    _add_migration(app, 5, "SELECT pg_sleep(2);\nCREATE TABLE maint_5 (id integer);\n")
    victim = kill_at_phase(app, "migrate", "deploy", app.environment, "--maintenance")
    assert victim.process.returncode == -signal.SIGKILL, victim.stderr
    assert _status_code(app) == 503
    left = app.status()["maintenance"]
    assert left["on"] is True and left["deployment"] == victim.deployment_id, left
    repaired = app.shipyard("repair", app.environment)
    assert repaired.returncode == 0, repaired.stderr
    assert "maintenance mode off" in " ".join(repaired.stderr.split()), repaired.stderr
    assert _status_code(app) == 200
    assert app.status()["maintenance"] == {"on": False}
    assert app.served() == commit  # the killed deploy was undone
