"""The http health check on httpx's MockTransport: what passes, and which failures are the
app's own answer (they count toward health.unhealthy_grace) rather than silence."""

from __future__ import annotations

import httpx

from shipyard.config import HealthSection, HttpCheck
from shipyard.docker import Docker
from shipyard.health import CheckResult, Target, build_checks
from tests.fakes import FakeHost


def _target(handle: object) -> Target:
    return Target(
        base_url="http://127.0.0.1:18080",
        port=8080,
        container="shop-development-blue",
        docker=Docker(FakeHost()),
        transport=httpx.MockTransport(handle),  # type: ignore[arg-type]
    )


def _check() -> object:
    section = HealthSection(
        checks=[
            HttpCheck(kind="http", path="/health", json_fields={"status": ["healthy", "degraded"]})
        ]
    )
    return build_checks(section)[0]


def test_an_accepted_status_and_body_pass() -> None:
    seen: list[str] = []

    def healthy(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"status": "degraded", "checks": {}})

    result = _check().run(_target(healthy), 5)  # type: ignore[attr-defined]
    assert (result.ok, result.answered) == (True, True)
    assert seen == ["http://127.0.0.1:18080/health"]


def _answered(status: int, body: dict[str, str]) -> CheckResult:
    """The check's result when the app answers ``status`` with the JSON ``body``."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return _check().run(_target(answer), 5)  # type: ignore[attr-defined,no-any-return]


def test_an_unhealthy_answer_is_an_answer() -> None:
    result = _answered(503, {"status": "unhealthy"})
    assert (result.ok, result.answered) == (False, True)
    assert "GET /health → 503" in result.detail


def test_a_body_field_not_accepted_fails_naming_it() -> None:
    result = _answered(200, {"status": "starting"})
    assert (result.ok, result.answered) == (False, True)
    assert "status='starting', expected one of ['healthy', 'degraded']" in result.detail


def test_no_answer_is_silence_not_a_verdict() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = _check().run(_target(refused), 5)  # type: ignore[attr-defined]
    assert (result.ok, result.answered) == (False, False)
    assert "ConnectError" in result.detail
