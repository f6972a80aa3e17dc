"""Deploying over SSH to a real OpenSSH server (this machine's own engine behind it)."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import AppUnderTest
from tests.e2e.load import Load
from tests.e2e.sshd import Sshd


def _short_watch(app: AppUnderTest) -> None:
    def change(document: object) -> None:
        document["deploy"]["watch"] = "2s"  # type: ignore[index]
        document["deploy"]["min_requests"] = 5  # type: ignore[index]

    app.edit(change)


def test_deploy_over_ssh_then_redeploy_under_load(remote_app: AppUnderTest, sshd: Sshd) -> None:
    app = remote_app
    _short_watch(app)
    first = app.commit("version 1")
    result = app.shipyard("deploy", "development")
    assert result.returncode == 0, result.stderr
    # The sshd runs on this machine: the host's engine is the one that built the image.
    assert "the host already has this image" in result.stderr
    assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] == first
    assert (app.state_dir / "current.json").exists() or any(app.state_dir.rglob("current.json"))

    second = app.commit("version 2")
    with Load(app.url("/")) as load:
        again = app.shipyard("deploy", "development")
    assert again.returncode == 0, again.stderr
    assert load.result.requests > 50
    assert load.result.failures == [], load.result.failures[:5]
    assert load.result.versions == [f"0.0.0+{first[:7]}", f"0.0.0+{second[:7]}"]

    status = app.status()
    assert status["version"] == f"0.0.0+{second[:7]}"
    assert status["drift"] is None
    assert status["health"] == "healthy"
