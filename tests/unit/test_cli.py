"""The CLI's last line of defence: an unexpected error's traceback is masked and kept private."""

from __future__ import annotations

import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import shipyard.config
from shipyard import cli
from shipyard import session as library
from shipyard.cli._context import current_run
from shipyard.config import load_config
from shipyard.deploy import _checks
from shipyard.hosts import CommandResult
from tests.bad_configs import BILLION_LAUGHS, CATALOGUE, VALID, BadConfig, clean_tree, write
from tests.fakes import FakeHost

JWT_SECRET = "0123456789abcdef0123456789abcdef"  # the values of tests.bad_configs.ENV_FILE
POSTGRES_PASSWORD = "s3cret-password"


@pytest.fixture
def crash_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # so that gettempdir() reads TMPDIR again
    return tmp_path / "shipyard-crash.log"


def _crash_in_a_session(monkeypatch: pytest.MonkeyPatch, project: Path, *argv: str) -> None:
    """Run ``shipyard *argv`` where `schema` opens the project's session and then hits a bug."""
    project.mkdir()
    config_path = write(project, BadConfig("ok", VALID, "", ""))

    def schema_with_a_bug() -> str:
        current_run().keep(load_config(config_path, "development"))  # as opening a session does
        raise RuntimeError(f"token {JWT_SECRET} and password {POSTGRES_PASSWORD} rejected")

    monkeypatch.setattr(shipyard.config, "json_schema", schema_with_a_bug)
    monkeypatch.setattr(sys, "argv", ["shipyard", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.UNEXPECTED


def test_crash_log_is_masked_and_private(
    tmp_path: Path, crash_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_log.write_text("an older crash\n", encoding="utf-8")
    crash_log.chmod(0o644)

    _crash_in_a_session(monkeypatch, tmp_path / "project", "schema")

    text = crash_log.read_text(encoding="utf-8")
    assert "RuntimeError: token *** and password *** rejected" in text
    assert JWT_SECRET not in text
    assert POSTGRES_PASSWORD not in text
    assert "an older crash" not in text
    assert stat.S_IMODE(crash_log.stat().st_mode) == 0o600


def test_debug_prints_the_masked_traceback(
    tmp_path: Path,
    crash_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _crash_in_a_session(monkeypatch, tmp_path / "project", "--debug", "schema")

    stderr = capsys.readouterr().err
    assert f"unexpected error; traceback written to {crash_log}" in stderr
    assert "RuntimeError: token *** and password *** rejected" in stderr
    assert JWT_SECRET not in stderr
    assert POSTGRES_PASSWORD not in stderr


@pytest.mark.parametrize("command", ["check", "plan", "deploy"])
def test_an_alias_bomb_is_an_invalid_config(
    tmp_path: Path,
    crash_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    config = write(tmp_path, BadConfig("bomb", VALID + BILLION_LAUGHS, "", ""))
    monkeypatch.setattr(sys, "argv", ["shipyard", command, "development", "-c", str(config)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.INVALID_CONFIG
    stderr = capsys.readouterr().err
    assert f"{config}:29:5 providers.lol.a4[2]: aliases repeat more than 100,000" in stderr
    assert not crash_log.exists()


def test_check_lists_the_warnings_with_the_problems(
    tmp_path: Path,
    crash_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    yaml = VALID.replace("  user: shop\n", "  user: shop\n  extensions: [postgist]\n").replace(
        "  port: 8080\n", "  port: 8080\n  env: {API_TOKEN: abc}\n"
    )
    config = write(tmp_path, BadConfig("warned", yaml, "", ""))
    (tmp_path / "go.mod").unlink()  # a problem check finds beyond the config itself
    monkeypatch.setattr(sys, "argv", ["shipyard", "check", "development", "-c", str(config)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.INVALID_CONFIG
    stderr = capsys.readouterr().err
    assert "has no go.mod" in stderr
    assert (
        f"\nand 2 warnings:\n  {config}:4:9 app.env.API_TOKEN: 'API_TOKEN' is named like a secret: "
        "move it to the env file .env.development"
    ) in stderr
    assert f"\n  {config}:14:16 database.extensions[0]: 'postgist' is not an extension" in stderr


def test_check_prints_warnings_and_passes(
    tmp_path: Path,
    crash_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    yaml = VALID.replace("  user: shop\n", "  user: shop\n  extensions: [postgist]\n")
    config = write(tmp_path, BadConfig("warned", yaml, "", ""))
    (tmp_path / "migrations").mkdir()
    clean_tree(tmp_path)

    def engine(argv: list[str]) -> CommandResult | None:
        if argv[1:3] == ["compose", "version"]:
            return CommandResult(tuple(argv), 0, "2.29.0\n", "")
        if argv[1:2] == ["version"]:
            return CommandResult(tuple(argv), 0, '{"Version": "27.0.0"}', "")
        return None

    monkeypatch.setattr(library, "connect", lambda _config: FakeHost(engine))
    monkeypatch.setattr(_checks, "_tool_problems", lambda _config, _local, **_: [])  # this PATH
    monkeypatch.setattr(sys, "argv", ["shipyard", "check", "development", "-c", str(config)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.OK  # warnings do not fail check
    stderr = capsys.readouterr().err
    assert f"! warning: {config}:13:16 database.extensions[0]: 'postgist' is not" in stderr
    assert f"✓ {config}: valid for environment 'development'" in stderr
    assert "✓ docker 27.0.0 reachable on fake; compose 2.29.0" in stderr


@pytest.mark.parametrize("command", ["check", "deploy"])
@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_each_config_message_is_printed_whole(
    tmp_path: Path,
    crash_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: BadConfig,
    command: str,
) -> None:
    """What the unit tests expect of load_config reaches the terminal through the masker."""
    config = write(tmp_path, case)
    monkeypatch.setattr(sys, "argv", ["shipyard", command, case.environment, "-c", str(config)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.ExitCode.INVALID_CONFIG
    assert case.expected in capsys.readouterr().err


def test_what_a_command_made_is_frozen_once_at_exit() -> None:
    """The interpreter's last collection at exit does not walk the objects the command made
    (about 0.1 s of a status or a deploy): ``main`` freezes them from an exit handler, which it
    registers once however often it runs in one process."""
    probe = textwrap.dedent(
        """
        import atexit, gc, sys
        calls = []
        freeze = gc.freeze
        gc.freeze = lambda: (calls.append(1), freeze())
        atexit.register(lambda: print(len(calls), gc.get_freeze_count()))  # runs after main's
        from shipyard import cli
        for _ in range(2):
            sys.argv = ["shipyard", "--version"]
            try:
                cli.main()
            except SystemExit:
                pass
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    calls, frozen = map(int, done.stdout.split()[-2:])
    assert calls == 1, done.stdout
    assert frozen > 0, done.stdout
