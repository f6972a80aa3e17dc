"""The workflow `shipyard ci github` writes: actionlint (built from its Go module) accepts it, and
its deploy job's steps, run here as GitHub's runner runs them (bash -eo pipefail, the step's
env with the secrets filled in, $GITHUB_ENV and $RUNNER_TEMP), deploy the example app to this
machine's engine without a secret reaching the job's output."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.e2e.conftest import remove_everything, run_shipyard
from tests.e2e.ports import reserve_port
from tests.example_app import copy_example, destroy_example
from tests.unit.test_ci_workflow import SSH, _repository

ACTIONLINT = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """actionlint, built once from its module through the Go module proxy (kept under
    ~/.cache, so a rerun does not build it again)."""
    version = ACTIONLINT.rsplit("@", 1)[1]
    bin_dir = Path.home() / ".cache" / "shipyard-tests" / f"actionlint-{version}"
    binary = bin_dir / "actionlint"
    if not binary.exists():
        subprocess.run(
            ["go", "install", ACTIONLINT],
            env={**os.environ, "GOBIN": str(bin_dir)},
            check=True,
            capture_output=True,
            timeout=900,
        )
    return binary


def _lint(actionlint: Path, workflow: Path) -> None:
    result = subprocess.run(
        [str(actionlint), "-no-color", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
        cwd=workflow.parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_accepts_every_kind_of_workflow(actionlint: Path, tmp_path: Path) -> None:
    """A local target, ssh:// targets with deploy.require_ci, and a Dockerfile build."""
    dockerfile = SSH.replace(
        'build:\n  kind: go\n  context: .\n  ldflags:\n    example.com/shop/cmd.Version: "{version}"\n',
        "build:\n  kind: dockerfile\n  context: .\n",
    )
    for name, yaml in (("ssh", SSH), ("dockerfile", dockerfile)):
        config = _repository(tmp_path / name, yaml)
        (tmp_path / name / "Dockerfile").write_text("FROM scratch\n")
        written = run_shipyard(
            config.parent, None, "ci", "github", "--config", str(config), "--branch", "main"
        )
        assert written.returncode == 0, written.stderr
        _lint(actionlint, tmp_path / name / ".github" / "workflows" / "deploy.yml")
    # A broken workflow is refused: the check can fail.
    broken = tmp_path / "ssh" / ".github" / "workflows" / "deploy.yml"
    broken.write_text(broken.read_text().replace("needs: test", "needs: tests"))
    with pytest.raises(AssertionError, match="tests"):
        _lint(actionlint, broken)


@pytest.fixture
def example(tmp_path: Path, docker_engine: None) -> Iterator[tuple[Path, str]]:
    name = f"w{secrets.token_hex(3)}"

    def settings(document: dict[str, Any]) -> None:
        document["proxy"]["http_port"] = reserve_port()
        document["deploy"]["state_dir"] = str(tmp_path / "state")
        document["deploy"]["watch"] = "2s"
        document["deploy"]["min_requests"] = 1

    app = copy_example(tmp_path / "app", name, settings)
    try:
        yield app, name
    finally:
        destroy_example(app)
        remove_everything(name)


def _run_step(
    step: dict[str, Any], cwd: Path, runner: dict[str, str], values: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A `run:` step as GitHub's runner runs it with `shell: bash`: its env (expressions
    filled in from ``values``), the variables earlier steps appended to $GITHUB_ENV."""
    exported = Path(runner["GITHUB_ENV"]).read_text().splitlines()
    env = {**os.environ, **runner, **dict(line.split("=", 1) for line in exported if line)}
    for key, value in (step.get("env") or {}).items():
        env[key] = re.sub(r"\$\{\{ ([\w.]+) \}\}", lambda m: values[m.group(1)], str(value))
    script = cwd.parent / f"step-{secrets.token_hex(3)}.sh"
    script.write_text(step["run"])
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def test_the_deploy_steps_deploy_with_the_secrets_given_as_the_workflow_gives_them(
    example: tuple[Path, str], tmp_path: Path
) -> None:
    app, _ = example
    written = run_shipyard(app, None, "ci", "github", "--environment", "development")
    assert written.returncode == 0, written.stderr
    workflow = YAML(typ="safe").load((app / ".github" / "workflows" / "deploy.yml").read_text())
    steps = {s.get("name"): s for s in workflow["jobs"]["deploy"]["steps"]}
    # The env file exists only as the repository secret: the job writes it.
    env_file = app / ".env.development"
    env_text = env_file.read_text()
    env_file.unlink()
    jwt = next(line.split("=", 1)[1] for line in env_text.splitlines() if line.startswith("JWT"))
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    (tmp_path / "github-env").touch()
    runner = {
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_ENV": str(tmp_path / "github-env"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": "77",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    values = {"secrets.SHIPYARD_ENV_FILE": env_text, "github.token": "token-unused"}
    ran = []
    for name in ("Secrets", "Deploy"):
        result = _run_step(steps[name], app, runner, values)
        ran.append(result)
        assert result.returncode == 0, (name, result.stdout[-3000:], result.stderr[-3000:])
    assert env_file.read_text().strip() == env_text.strip()
    assert env_file.stat().st_mode & 0o777 == 0o600
    events_file = runner_temp / "shipyard-events" / "deploy.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert "deploy.completed" in {e["kind"] for e in events}, events[-3:]
    commit = subprocess.run(
        ["git", "-C", str(app), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = YAML(typ="safe").load((app / "shipyard.yml").read_text())["proxy"]["http_port"]
    served = httpx.get(f"http://127.0.0.1:{port}/version", timeout=10).json()
    assert served["git_commit"] == commit
    for text in (events_file.read_text(), *(r.stdout + r.stderr for r in ran)):
        assert jwt not in text
