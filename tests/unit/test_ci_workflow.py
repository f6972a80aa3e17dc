"""``shipyard ci github``: the workflow it writes (read back as YAML, as GitHub reads it), what it
refuses, and how ``deploy.require_ci`` treats the deploy job's own run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from shipyard.config import GitHubSection, load_config
from shipyard.deploy._ci import ci_credentials, require_ci
from shipyard.errors import CiNotPassed
from shipyard.scaffold import render_workflow, write_workflow
from shipyard.secrets import EnvFileBackend
from tests.bad_configs import VALID, committed_repository
from tests.unit.cli_harness import shipyard
from tests.unit.test_ci import COMMIT, GITHUB, _github, _run

SSH = VALID.replace(
    "  production:\n    target: local\n",
    "  production:\n    target: ssh://deploy@web-1.example\n    targets: [ssh://deploy@web-2.example]\n",
) + ("deploy:\n  require_ci: true\n  github:\n    repository: acme/shop\n    token_env: CI_TOKEN\n")


def _repository(root: Path, yaml: str, *, subdir: str = "") -> Path:
    """A git repository with shipyard.yml (in ``subdir``) and a production env file."""
    return committed_repository(root, yaml, environment="production", subdir=subdir)


def _workflow(config_path: Path, **options: Any) -> tuple[str, dict[str, Any]]:
    text = render_workflow(load_config(config_path, "production", process_env={}), **options)
    return text, YAML(typ="safe").load(text)


def _steps(document: dict[str, Any], job: str) -> dict[str, dict[str, Any]]:
    steps = document["jobs"][job]["steps"]
    return {step.get("name") or step["uses"]: step for step in steps}


def test_pushes_to_the_branch_are_tested_then_deployed_in_a_queue(tmp_path: Path) -> None:
    text, workflow = _workflow(_repository(tmp_path, VALID), branch="release")
    assert workflow["on"]["push"]["branches"] == ["release"]
    assert workflow["defaults"]["run"]["shell"] == "bash"  # -eo pipefail: tee hides no failure
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert _steps(workflow, "test")["Go tests"]["run"] == "go test ./..."
    assert deploy["needs"] == "test"
    assert deploy["environment"] == "production"
    assert deploy["concurrency"] == {
        "group": "shipyard-deploy-production",
        "cancel-in-progress": False,
    }
    steps = _steps(workflow, "deploy")
    assert steps["actions/checkout@v4"]["with"]["fetch-depth"] == 0
    assert "shipyard deploy production --json --wait 30m" in steps["Deploy"]["run"]
    assert "$RUNNER_TEMP/shipyard-events/deploy.jsonl" in steps["Deploy"]["run"]
    kept = steps["Keep the deploy's events"]
    assert kept["if"] == "always()" and kept["uses"] == "actions/upload-artifact@v4"
    assert kept["with"]["path"] == "${{ runner.temp }}/shipyard-events/"
    assert test["runs-on"] == deploy["runs-on"] == "ubuntu-latest"
    assert "ssh" not in text.lower()  # a local target needs no key


def test_secrets_reach_steps_through_env_only(tmp_path: Path) -> None:
    """No `${{ … }}` expression stands in a script, where GitHub would paste the value into the
    command text: secrets, the token and the package spec arrive as environment variables."""
    text, workflow = _workflow(_repository(tmp_path, SSH))
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step
    referenced = set(re.findall(r"\$\{\{ secrets\.(\w+) \}\}", text))
    assert referenced == {"SHIPYARD_ENV_FILE", "SHIPYARD_SSH_KEY", "SHIPYARD_KNOWN_HOSTS"}
    secrets_step = _steps(workflow, "deploy")["Secrets"]
    assert set(secrets_step["env"]) == referenced
    script = secrets_step["run"]
    assert script.startswith("umask 077\n")
    assert "> .env.production" in script
    assert "| ssh-add -" in script and "SSH_AUTH_SOCK" in script  # the key never on disk
    assert '>> "$HOME/.ssh/known_hosts"' in script
    deploy = _steps(workflow, "deploy")["Deploy"]
    assert deploy["env"] == {"CI_TOKEN": "${{ github.token }}"}
    assert workflow["permissions"] == {"contents": "read", "checks": "read", "statuses": "read"}


def test_a_config_below_the_repository_root(tmp_path: Path) -> None:
    config_path = _repository(tmp_path, VALID, subdir="deploy/shop")
    done = write_workflow(
        load_config(config_path, "production", process_env={}), package="shipyard==0.1.0"
    )
    assert done.path == tmp_path / ".github" / "workflows" / "deploy.yml"
    workflow = YAML(typ="safe").load(done.path.read_text())
    steps = _steps(workflow, "deploy")
    assert "> deploy/shop/.env.production" in steps["Secrets"]["run"]
    assert "--config deploy/shop/shipyard.yml" in steps["Deploy"]["run"]
    assert steps["Install shipyard"]["env"]["SHIPYARD_PACKAGE"] == "shipyard==0.1.0"
    assert steps["actions/setup-go@v5"]["with"]["go-version-file"] == "deploy/shop/go.mod"
    assert _steps(workflow, "test")["Go tests"]["working-directory"] == "deploy/shop"
    assert done.variables == []  # the package is given: no repository variable needed


def test_a_dockerfile_build_is_tested_by_building_it(tmp_path: Path) -> None:
    yaml = VALID.replace(
        'build:\n  kind: go\n  context: .\n  ldflags:\n    example.com/shop/cmd.Version: "{version}"\n',
        "build:\n  kind: dockerfile\n  context: .\n",
    )
    config_path = _repository(tmp_path, yaml)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    _, workflow = _workflow(config_path)
    assert _steps(workflow, "test")["The image builds"]["run"].strip() == (
        "docker build --file Dockerfile ."
    )
    assert "actions/setup-go@v5" not in _steps(workflow, "deploy")


def test_an_existing_workflow_is_kept_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = _repository(tmp_path, VALID)
    existing = tmp_path / ".github" / "workflows" / "deploy.yml"
    existing.parent.mkdir(parents=True)
    existing.write_text("name: mine\n")
    refused = shipyard(monkeypatch, "ci", "github", "--config", str(config_path))
    assert refused.code == 2, refused.stderr
    assert "exists; nothing was changed" in refused.stderr
    assert existing.read_text() == "name: mine\n"
    forced = shipyard(
        monkeypatch, "ci", "github", "--config", str(config_path), "--force", "--json"
    )
    assert forced.code == 0, forced.stderr
    result = json.loads(forced.stdout)
    assert result["replaced"] is True and result["workflow"] == str(existing)
    assert result["secrets"] == ["SHIPYARD_ENV_FILE"]
    assert result["variables"] == ["SHIPYARD_PACKAGE"]
    assert "the whole text of .env.production" in " ".join(result["next"])
    assert YAML(typ="safe").load(existing.read_text())["name"] == "deploy"


def test_a_missing_env_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = _repository(tmp_path, VALID)
    (tmp_path / ".env.production").unlink()
    result = shipyard(monkeypatch, "ci", "github", "--config", str(config_path))
    assert result.code == 3, result.stderr
    assert ".env.production not found" in result.stderr
    assert not (tmp_path / ".github").exists()


RUN = "https://github.com/acme/shop/actions/runs/77/job/9"


def test_the_deploy_jobs_own_run_is_not_counted_but_its_finished_jobs_are() -> None:
    own = {**_run("deploy", None, status="in_progress"), "details_url": RUN}
    tests = {**_run("test", "success"), "details_url": RUN.replace("/9", "/8")}
    transport = _github([], [own, tests])
    assert require_ci(GITHUB, None, COMMIT, this_run="77", transport=transport) == (
        "1 check(s) passed for 0123456"
    )
    with pytest.raises(CiNotPassed, match="deploy: in_progress"):  # not inside that run
        require_ci(GITHUB, None, COMMIT, transport=transport)
    other = {**_run("lint", None, status="queued"), "details_url": RUN.replace("77", "78")}
    with pytest.raises(CiNotPassed, match="lint: queued"):
        require_ci(GITHUB, None, COMMIT, this_run="77", transport=_github([], [own, other]))
    failed = {**_run("test", "failure"), "html_url": RUN}
    with pytest.raises(CiNotPassed, match="test: failure"):
        require_ci(GITHUB, None, COMMIT, this_run="77", transport=_github([], [own, failed]))


def test_the_token_is_the_env_files_else_the_processes_and_the_run_is_actions() -> None:
    github = GitHubSection(repository="acme/shop", token_env="CI_TOKEN")
    in_file = EnvFileBackend({"CI_TOKEN": "from-file"})
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "77", "CI_TOKEN": "from-job"}
    assert ci_credentials(github, in_file, actions) == ("from-file", "77")
    assert ci_credentials(github, EnvFileBackend({}), actions) == ("from-job", "77")
    assert ci_credentials(github, EnvFileBackend({}), {"GITHUB_RUN_ID": "77"}) == (None, None)


def test_requests_carry_no_token_when_there_is_none() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(CiNotPassed):
        require_ci(GITHUB, None, COMMIT, transport=_github([], [], seen=seen))
    assert all("authorization" not in r.headers for r in seen)
