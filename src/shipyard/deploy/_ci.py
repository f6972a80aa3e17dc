"""CI-verified commits: a commit may be deployed only when its CI passed (FR-025).

Reads GitHub's combined commit status and the check runs of the commit. Passing means: at least
one status or check run exists, the combined status (if any) is ``success``, and every check run
completed as success, neutral or skipped.

A deploy run by a GitHub Actions workflow (``shipyard ci github`` writes one) is itself a check
run of the commit, still in progress: the unfinished check runs of that same workflow run
(``this_run``, its ``GITHUB_RUN_ID``) are not counted. Its finished jobs (the tests the deploy
job needs) are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from shipyard.config import GitHubSection
from shipyard.errors import CiNotPassed
from shipyard.secrets import SecretsBackend

_PASSING_CONCLUSIONS = {"success", "neutral", "skipped"}


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # success, failure, pending, …

    @property
    def ok(self) -> bool:
        return self.state in _PASSING_CONCLUSIONS


def _checks(
    client: httpx.Client, github: GitHubSection, commit: str, this_run: str | None
) -> list[Check]:
    """Every status context and check run GitHub reports for ``commit``, but the unfinished
    check runs of workflow run ``this_run``."""
    base = f"{github.api_url.rstrip('/')}/repos/{github.repository}/commits/{commit}"
    status = _get(client, f"{base}/status")
    runs = _get(client, f"{base}/check-runs?per_page=100")
    checks = [
        Check(str(s.get("context", "?")), str(s.get("state", "?")))
        for s in status.get("statuses", [])
    ]
    for run in runs.get("check_runs", []):
        if this_run and run.get("status") != "completed" and _of_run(run, this_run):
            continue
        state = str(run.get("conclusion") or run.get("status") or "?")
        checks.append(Check(str(run.get("name", "?")), state))
    return checks


def ci_credentials(
    github: GitHubSection, secrets: SecretsBackend, environ: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The token that reads the checks and the GitHub Actions run this process is a job of.
    The token: the env file's (``deploy.github.token_env``), else one the process was given
    under the same name, as a CI job is given its own token (which the app then never gets).
    The run: ``GITHUB_RUN_ID`` inside GitHub Actions, else none."""
    token = secrets.get(github.token_env) or environ.get(github.token_env) or None
    in_actions = environ.get("GITHUB_ACTIONS") == "true"
    return token, (environ.get("GITHUB_RUN_ID") or None) if in_actions else None


def _of_run(check_run: dict[str, Any], run_id: str) -> bool:
    """Whether a check run is a job of GitHub Actions workflow run ``run_id`` (its URLs are
    ``…/actions/runs/<run_id>/job/<job_id>``)."""
    marker = f"/actions/runs/{run_id}/"
    return any(marker in str(check_run.get(key) or "") for key in ("details_url", "html_url"))


def _get(client: httpx.Client, url: str) -> dict[str, Any]:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise CiNotPassed(
            f"cannot read CI results from {url.split('/repos/', maxsplit=1)[0]}: {exc}"
        ) from exc
    if response.status_code in (401, 403, 404):
        raise CiNotPassed(
            f"GitHub answered {response.status_code} for {url.split('?', maxsplit=1)[0]}",
            hint="check deploy.github.repository and that the token (deploy.github.token_env) can read statuses and checks",
        )
    if response.status_code >= 400:  # noqa: PLR2004
        raise CiNotPassed(
            f"GitHub answered {response.status_code} for {url.split('?', maxsplit=1)[0]}"
        )
    data = response.json()
    return data if isinstance(data, dict) else {}


def require_ci(
    github: GitHubSection,
    token: str | None,
    commit: str,
    *,
    this_run: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Raise ``CiNotPassed`` unless ``commit`` passed CI; returns a summary. ``this_run``: the
    GitHub Actions run this deploy is a job of, if any (its unfinished jobs are not counted);
    ``transport``: how requests travel, the network unless given."""
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(headers=headers, timeout=github.timeout, transport=transport) as client:
        checks = _checks(client, github, commit, this_run)
    if not checks:
        raise CiNotPassed(
            f"commit {commit[:7]} has no CI results on {github.repository}",
            hint="push it and wait for CI, or deploy a commit that passed",
        )
    failing = [c for c in checks if not c.ok]
    if failing:
        listed = ", ".join(f"{c.name}: {c.state}" for c in failing)
        raise CiNotPassed(
            f"commit {commit[:7]} has not passed CI ({listed})",
            hint="wait for pending checks, or fix the failing ones",
        )
    return f"{len(checks)} check(s) passed for {commit[:7]}"
