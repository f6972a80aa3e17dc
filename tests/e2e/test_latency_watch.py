"""The watch after a switch compares the new version's p95 latency through the proxy with the
previous version's, on the real engine and Caddy: a version made slower (the reference app's
TEST_LATENCY switch) is switched back when ``deploy.on_latency_regression: switch_back``, is
reported with both figures in a ``health.degraded`` event when it only warns, and ``shipyard
watch`` shows the regression later."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.e2e.conftest import AppUnderTest, git
from tests.e2e.test_monitoring_stack import Traffic


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]


def _served(app: AppUnderTest, count: int) -> None:
    """Until the proxy has passed ``count`` more requests (the previous version's sample)."""
    deadline = time.monotonic() + 60
    start = app.served()  # the live commit, and the proxy answers
    seen = 0
    while seen < count and time.monotonic() < deadline:
        httpx.get(app.url("/"), timeout=10)
        seen += 1
    assert seen >= count and app.served() == start


def test_a_slower_version_is_switched_back_or_reported_with_both_p95s(app: AppUnderTest) -> None:
    def settings(document: Any) -> None:
        document["deploy"].update({"min_requests": 20, "on_latency_regression": "switch_back"})

    app.edit(settings)
    fast = app.commit("latency is compared after each switch")
    assert app.shipyard("deploy", "development").returncode == 0
    _served(app, 60)

    def slower(document: Any) -> None:
        document["app"].setdefault("env", {})["TEST_LATENCY"] = "100ms"

    app.edit(slower)
    app.commit("a version 100 ms slower")
    traffic = Traffic(app.url("/"), app.url("/api/v1/events"))
    try:
        refused = app.shipyard("deploy", "development", "--watch-for", "60s", "--json")
        assert refused.returncode != 0, refused.stderr
        degraded = [e for e in _events(refused.stdout) if e["kind"] == "health.degraded"]
        assert degraded, refused.stdout[-3000:]
        assert "p95 latency" in degraded[0]["error"]
        assert "more than 50% slower (deploy.on_latency_regression)" in degraded[0]["error"]
        assert [e for e in _events(refused.stdout) if e["kind"] == "deploy.rolled_back"]
        assert app.served() == fast  # the previous version serves again

        # Warning only: the slower version stays, with both figures in the event.
        def warn(document: Any) -> None:
            document["deploy"]["on_latency_regression"] = "warn"

        app.edit(warn)
        slow = app.commit("warn only")
        kept = app.shipyard("deploy", "development", "--watch-for", "15s", "--json")
        assert kept.returncode == 0, kept.stderr
        [event] = [e for e in _events(kept.stdout) if e["kind"] == "health.degraded"]
        figures = event["data"]
        assert figures["p95_s"] > 1.5 * figures["previous_p95_s"] > 0, figures
        assert figures["previous_version"].endswith(fast[:7]), figures
        assert app.served() == slow

        watched = app.shipyard("watch", "development", "--for", "3s", "--json")
        assert watched.returncode == 1, watched.stderr  # a regression
        summary = json.loads(watched.stdout)
        assert summary["regression"] is True
        assert summary["p95_s"] >= 0.1 > summary["previous_p95_s"], summary
        assert summary["checks_passed"] >= 1 and summary["checks_failed"] == 0
        assert git(app.dir, "rev-parse", "HEAD") == slow
    finally:
        traffic.close()
