"""The CI gate (deploy.require_ci) against GitHub's API contract, on httpx's MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shipyard.config import GitHubSection
from shipyard.deploy._ci import require_ci
from shipyard.errors import CiNotPassed, ExitCode

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GITHUB = GitHubSection(repository="acme/shop")


def _github(
    statuses: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    *,
    seen: list[httpx.Request] | None = None,
    code: int = 200,
) -> httpx.MockTransport:
    """GitHub's two endpoints for one commit: the combined status and the check runs."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if code != 200:
            return httpx.Response(code, json={"message": "Not Found"})
        path = request.url.path
        if path == f"/repos/acme/shop/commits/{COMMIT}/status":
            state = "success" if all(s["state"] == "success" for s in statuses) else "failure"
            return httpx.Response(200, json={"state": state, "statuses": statuses})
        if path == f"/repos/acme/shop/commits/{COMMIT}/check-runs":
            return httpx.Response(200, json={"total_count": len(runs), "check_runs": runs})
        return httpx.Response(404, json={"message": "Not Found"})

    return httpx.MockTransport(handle)


def _run(name: str, conclusion: str | None, status: str = "completed") -> dict[str, Any]:
    return {"name": name, "status": status, "conclusion": conclusion}


def test_passing_statuses_and_check_runs_pass_and_the_token_is_sent() -> None:
    seen: list[httpx.Request] = []
    transport = _github(
        [{"context": "ci/build", "state": "success"}],
        [_run("test", "success"), _run("lint", "skipped"), _run("docs", "neutral")],
        seen=seen,
    )
    summary = require_ci(GITHUB, "ghp-token-value", COMMIT, transport=transport)
    assert summary == "4 check(s) passed for 0123456"
    assert {r.headers["Authorization"] for r in seen} == {"Bearer ghp-token-value"}
    assert all(r.headers["Accept"] == "application/vnd.github+json" for r in seen)


@pytest.mark.parametrize(
    ("statuses", "runs", "says"),
    [
        ([], [_run("test", "failure")], "test: failure"),
        ([], [_run("test", None, status="in_progress")], "test: in_progress"),
        ([{"context": "ci/build", "state": "pending"}], [], "ci/build: pending"),
        ([], [], "has no CI results on acme/shop"),
    ],
)
def test_a_commit_that_has_not_passed_is_refused_with_what_failed(
    statuses: list[dict[str, Any]], runs: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(CiNotPassed) as refused:
        require_ci(GITHUB, None, COMMIT, transport=_github(statuses, runs))
    assert says in refused.value.message
    assert refused.value.exit_code == ExitCode.FAILED


def test_an_unreadable_repository_names_the_answer_and_the_settings_to_check() -> None:
    with pytest.raises(CiNotPassed) as refused:
        require_ci(GITHUB, "wrong", COMMIT, transport=_github([], [], code=404))
    assert "GitHub answered 404" in refused.value.message
    assert "deploy.github.repository" in (refused.value.hint or "")


def test_a_network_failure_is_a_refusal_not_a_crash() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CiNotPassed) as refused:
        require_ci(GITHUB, None, COMMIT, transport=httpx.MockTransport(fail))
    assert "cannot read CI results from https://api.github.com" in refused.value.message
