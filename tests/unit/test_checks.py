"""What `shipyard check` refuses, deploy, rollback and plan refuse too, before changing anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from shipyard import cli
from shipyard.cli import _context
from shipyard.config import Config
from shipyard.deploy import DeployOptions, OperationContext, RollbackOptions, run_rollback
from shipyard.errors import CheckFailed, ToolTooOld
from shipyard.events import Bus
from shipyard.hosts import LocalHost
from shipyard.providers import DockerProvider
from shipyard.state import Current, StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.test_pipeline import RecordingSteps, _release, _run

STATE = PurePosixPath("/state/shop/development")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return committed_config(tmp_path, VALID)


def _context_for(config: Config, host: FakeHost) -> OperationContext:
    return OperationContext(
        config=config,
        local=LocalHost(),
        store=StateStore(host, STATE),
        bus=Bus(config.masker),
        deployment_id="d1",
    )


def test_deploy_refuses_a_world_readable_env_file_before_any_step(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config.root / ".env.development").chmod(0o644)
    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(CheckFailed, match="world-readable") as refused:
        _run(config, steps, host, monkeypatch)
    assert refused.value.problems == [
        f"{config.root / '.env.development'}: world-readable (mode 0o644); "
        f"run chmod 600 {config.root / '.env.development'}"
    ]
    assert steps.calls == []  # not even the engine was asked
    assert host.files == {}  # no lock, no journal, no history


def test_deploy_refuses_an_env_file_tracked_by_git(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["git", "-C", str(config.root), "add", "-f", ".env.development"], check=True)
    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(CheckFailed, match="tracked by git"):
        _run(config, steps, host, monkeypatch)
    assert steps.calls == []
    assert host.files == {}


def test_deploy_refuses_a_configured_migrations_directory_that_does_not_exist(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "no migrations": the app would start on an empty schema."""
    (config.root / "migrations").rmdir()
    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(CheckFailed, match=r"database\.migrations\.path: directory .* does not"):
        _run(config, steps, host, monkeypatch)
    assert steps.calls == []
    assert host.files == {}


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
    store = StateStore(host, STATE)
    store.save_releases([_release("r1", "1.0.1", "a" * 40), _release("r2", "1.0.2", "b" * 40)])
    store.set_current(Current(slot="blue", release_id="r2", switched_at="t"))
    before = dict(host.files)
    (config.root / ".env.development").chmod(0o604)
    steps = RecordingSteps()
    with pytest.raises(CheckFailed, match="world-readable"):
        run_rollback(_context_for(config, host), steps, RollbackOptions())
    assert steps.calls == []
    assert host.files == before


def test_plan_runs_the_same_checks_before_asking_the_engine(config: Config) -> None:
    (config.root / ".env.development").chmod(0o644)
    engine = FakeHost()
    with pytest.raises(CheckFailed, match="world-readable"):
        DockerProvider(engine).plan(_context_for(config, FakeHost()), DeployOptions())
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
    """A PATH holding docker, git (nothing is tracked) and a go of ``go_version``."""
    directory.mkdir()
    for name, script in (
        ("docker", "exit 0"),
        ("git", "exit 1"),
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
    monkeypatch.setattr(_context, "connect", lambda _config: target)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "logs"))
    monkeypatch.setattr(_context, "_MASKERS", [])
    monkeypatch.setattr(sys, "argv", ["shipyard", "deploy", "development", "-c", str(config.path)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.INVALID_CONFIG
    assert "world-readable (mode 0o644)" in capsys.readouterr().err
    assert target.commands == []
