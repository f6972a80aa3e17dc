"""What `shipyard check` refuses, deploy, rollback and plan refuse too, before changing anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipyard import cli
from shipyard import session as library
from shipyard.build import read_version
from shipyard.config import Config
from shipyard.deploy import DeployOptions, RollbackOptions, run_rollback
from shipyard.errors import CheckFailed, ToolTooOld
from shipyard.hosts import LocalHost
from shipyard.providers import DockerProvider
from shipyard.state import Current, StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.pipeline_harness import STATE, operation_context
from tests.unit.test_pipeline import RecordingSteps, _release, _run


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return committed_config(tmp_path, VALID)


def _refused_before_any_step(
    config: Config, monkeypatch: pytest.MonkeyPatch, match: str
) -> CheckFailed:
    """A deploy of ``config`` its checks refuse (with a message matching ``match``) before any
    step ran or anything was written on the host."""
    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(CheckFailed, match=match) as refused:
        _run(config, steps, host, monkeypatch)
    assert steps.calls == []  # not even the engine was asked
    assert host.files == {}  # no lock, no journal, no history
    return refused.value


def test_deploy_refuses_a_world_readable_env_file_before_any_step(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config.root / ".env.development").chmod(0o644)
    refused = _refused_before_any_step(config, monkeypatch, "world-readable")
    assert refused.problems == [
        f"{config.root / '.env.development'}: world-readable (mode 0o644); "
        f"run chmod 600 {config.root / '.env.development'}"
    ]


def test_deploy_refuses_an_env_file_tracked_by_git(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["git", "-C", str(config.root), "add", "-f", ".env.development"], check=True)
    _refused_before_any_step(config, monkeypatch, "tracked by git")


def test_deploy_refuses_a_configured_migrations_directory_that_does_not_exist(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "no migrations": the app would start on an empty schema."""
    (config.root / "migrations").rmdir()
    _refused_before_any_step(
        config, monkeypatch, r"database\.migrations\.path: directory .* does not"
    )


def test_deploy_refuses_a_dockerfile_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = VALID.replace(
        '  kind: go\n  context: .\n  ldflags:\n    example.com/shop/cmd.Version: "{version}"\n',
        "  kind: dockerfile\n  dockerfile: deploy/Dockerfile\n",
    )
    config = committed_config(tmp_path, yaml)
    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(CheckFailed, match=r"build\.dockerfile: .*deploy/Dockerfile does not exist"):
        _run(config, steps, host, monkeypatch)
    assert steps.calls == []


def test_rollback_runs_the_same_checks(config: Config) -> None:
    host = FakeHost()
    store = StateStore.on_host(host, STATE)
    store.save_releases([_release("r1", "1.0.1", "a" * 40), _release("r2", "1.0.2", "b" * 40)])
    store.set_current(Current(slot="blue", release_id="r2", switched_at="t"))
    before = dict(host.files)
    (config.root / ".env.development").chmod(0o604)
    steps = RecordingSteps()
    with pytest.raises(CheckFailed, match="world-readable"):
        run_rollback(operation_context(config, host), steps, RollbackOptions())
    assert steps.calls == []
    assert host.files == before


def test_plan_runs_the_same_checks_before_asking_the_engine(config: Config) -> None:
    (config.root / ".env.development").chmod(0o644)
    engine = FakeHost()
    with pytest.raises(CheckFailed, match="world-readable"):
        DockerProvider(engine).plan(operation_context(config, FakeHost()), DeployOptions())
    assert engine.commands == []


def test_check_and_deploy_report_the_same_problems(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.deploy import check_file  # noqa: PLC0415

    (config.root / ".env.development").chmod(0o644)
    (config.root / "migrations").rmdir()
    (config.root / "go.mod").unlink()
    with pytest.raises(CheckFailed) as checked:
        check_file(config.path, "development", engine=lambda _config: "engine fine")
    with pytest.raises(CheckFailed) as deployed:
        _run(config, RecordingSteps(), FakeHost(), monkeypatch)
    assert len(checked.value.problems) == 3
    assert deployed.value.problems == checked.value.problems


def _tools(directory: Path, go_version: str) -> str:
    """A PATH holding docker, git (a clean tree at one commit where nothing is tracked) and a
    go of ``go_version``."""
    directory.mkdir()
    for name, script in (
        ("docker", "exit 0"),
        ("git", f'case "$3" in rev-parse) echo {"0" * 40};; status|tag) ;; *) exit 1;; esac'),
        ("go", f'[ "$1" = env ] && echo {go_version}'),
    ):
        (directory / name).write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
        (directory / name).chmod(0o755)
    return str(directory)


def test_a_tool_older_than_needed_stops_an_operation_as_such_and_fails_check(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deploy keeps exit 9 for an old Go (the message names both versions); check lists it as
    one of its problems (exit 3)."""
    from shipyard.deploy import check_file  # noqa: PLC0415

    monkeypatch.setenv("PATH", _tools(tmp_path / "bin", "go1.20.3"))
    steps = RecordingSteps()
    with pytest.raises(ToolTooOld, match=r"found go1\.20\.3, need go1\.22 or newer"):
        _run(config, steps, FakeHost(), monkeypatch)
    assert steps.calls == []
    with pytest.raises(CheckFailed, match=r"found go1\.20\.3, need go1\.22 or newer"):
        check_file(config.path, "development", engine=lambda _config: "engine fine")


def test_deploy_with_a_failed_check_exits_3_and_runs_nothing_on_the_target(
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (config.root / ".env.development").chmod(0o644)
    target = FakeHost()
    monkeypatch.setattr(library, "connect", lambda _config: target)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "logs"))
    monkeypatch.setattr(sys, "argv", ["shipyard", "deploy", "development", "-c", str(config.path)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.INVALID_CONFIG
    assert "world-readable (mode 0o644)" in capsys.readouterr().err
    assert target.commands == []


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def _with_tracked_files(tmp_path: Path) -> Config:
    """A repository where shipyard.yml and go.mod are committed and the env file is untracked
    and not ignored (as in a fresh checkout where the operator just wrote it)."""
    config = committed_config(tmp_path, VALID)
    (tmp_path / ".gitignore").write_text("bin/\n", encoding="utf-8")
    (tmp_path / "migrations" / ".keep").write_text("", encoding="utf-8")
    _git(tmp_path, "add", ".gitignore", "shipyard.yml", "go.mod", "migrations")
    _git(tmp_path, "commit", "-q", "-m", "app")
    return config


def test_the_env_file_never_makes_the_tree_dirty_and_check_says_to_ignore_it(
    tmp_path: Path,
) -> None:
    from shipyard.deploy import check_file  # noqa: PLC0415

    config = _with_tracked_files(tmp_path)
    checked = check_file(config.path, "development", engine=lambda _config: "engine fine")
    env_file = tmp_path / ".env.development"
    assert checked.warnings == [
        f"{env_file}: not ignored by git, so `git add -A` would commit its secrets; add "
        ".env.development to .gitignore"
    ]
    (tmp_path / ".gitignore").write_text("bin/\n.env.*\n", encoding="utf-8")
    _git(tmp_path, "commit", "-q", "-am", "ignore env files")
    checked = check_file(config.path, "development", engine=lambda _config: "engine fine")
    assert checked.warnings == []


def test_check_deploy_and_plan_refuse_a_dirty_tree_alike_without_counting_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` passed and then deploy refused: now all three run the version phase's own
    function, the env file is never a change, and the hint never says to commit it."""
    from shipyard.deploy import check_file, run_deploy  # noqa: PLC0415

    config = _with_tracked_files(tmp_path)
    (tmp_path / "shipyard.yml").write_text(VALID + "# edited\n", encoding="utf-8")
    with pytest.raises(CheckFailed) as checked:
        check_file(config.path, "development", engine=lambda _config: "engine fine")
    [problem] = checked.value.problems
    assert problem.startswith(f"uncommitted changes in {tmp_path}: shipyard.yml — commit them")
    assert ".env.development" not in problem.split(" — ")[0]
    assert (
        "the env file (.env.development) is never counted and must never be committed: add "
        ".env.development to .gitignore"
    ) in problem

    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(CheckFailed) as deployed:
        run_deploy(operation_context(config, host), steps, DeployOptions())
    assert deployed.value.problems == checked.value.problems
    assert steps.calls == []
    with pytest.raises(CheckFailed) as planned:
        DockerProvider(FakeHost()).plan(operation_context(config, FakeHost()), DeployOptions())
    assert planned.value.problems == checked.value.problems

    # allowed: check and the version phase agree again
    check_file(config.path, "development", engine=lambda _config: "engine fine", allow_dirty=True)
    _git(tmp_path, "commit", "-q", "-am", "edited")
    passed = check_file(config.path, "development", engine=lambda _config: "engine fine").passed
    assert passed[1].startswith("source: version 0.0.0+")
    assert "uncommitted" not in passed[1]
    version = read_version(
        LocalHost(), tmp_path, allow_dirty=False, env_files=[tmp_path / ".env.development"]
    )
    assert not version.dirty
    assert read_version(LocalHost(), tmp_path, allow_dirty=True).dirty  # it is untracked
