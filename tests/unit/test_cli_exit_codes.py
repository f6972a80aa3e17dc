"""Every exit code of README's table, each produced by the real entry point (``cli.main``) with
its message on stderr: an error raised where the library would raise it (a patched provider or
library call where a real one needs Docker), or the real code path where it needs no engine."""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard import __version__
from shipyard import session as library
from shipyard.errors import (
    CheckFailed,
    DeployFailed,
    ExitCode,
    HostUnreachable,
    Interrupted,
    LockHeld,
    NeedsConfirmation,
    RollbackFailed,
    ToolTooOld,
)
from tests.bad_configs import VALID
from tests.unit.cli_harness import POSTGRES_PASSWORD, Project, hold_lock, project, shipyard

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
def crash_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # so that gettempdir() reads TMPDIR again
    return tmp_path / "shipyard-crash.log"


@dataclass(frozen=True)
class Raised:
    """``shipyard *argv`` while the provider's ``method`` raises ``error``."""

    id: str
    code: ExitCode
    argv: tuple[str, ...]
    method: str
    error: BaseException
    stderr: tuple[str, ...]  # each on stderr


RAISED = [
    Raised(
        "unexpected",
        ExitCode.UNEXPECTED,
        ("deploy", "development"),
        "deploy",
        RuntimeError("a bug"),
        ("unexpected error; traceback written to",),
    ),
    Raised(
        "needs-confirmation",
        ExitCode.USAGE,
        ("rollback", "development"),
        "rollback",
        NeedsConfirmation(
            "the schema (version 4) is newer than 1.0.0 shipped with (3)", hint="add --yes"
        ),
        ("error: the schema (version 4) is newer than 1.0.0 shipped with (3)", "hint: add --yes"),
    ),
    Raised(
        "lock-held",
        ExitCode.LOCK_HELD,
        ("deploy", "development"),
        "deploy",
        LockHeld("the lock is held by deploy by ops@ci (pid 7)"),
        ("error: the lock is held by deploy by ops@ci (pid 7)",),
    ),
    Raised(
        "deploy-failed",
        ExitCode.DEPLOY_FAILED,
        ("deploy", "development"),
        "deploy",
        DeployFailed("health", "the new version never answered", hint="see shipyard logs"),
        (
            "error: deploy failed in phase 'health': the new version never answered",
            "hint: see shipyard logs",
        ),
    ),
    Raised(
        "rollback-failed",
        ExitCode.ROLLBACK_FAILED,
        ("deploy", "development"),
        "deploy",
        RollbackFailed(
            "the previous version did not start again",
            hint="`shipyard status development` says what is left",
        ),
        (
            "error: the previous version did not start again",
            "hint: `shipyard status development` says what is left",
        ),
    ),
    Raised(
        "rollback-failed-in-a-rollback",
        ExitCode.ROLLBACK_FAILED,
        ("rollback", "development", "--json"),
        "rollback",
        RollbackFailed("switching back to green failed"),
        ("error: switching back to green failed",),
    ),
    Raised(
        "too-old",
        ExitCode.TOOL_TOO_OLD,
        ("deploy", "development"),
        "deploy",
        ToolTooOld("docker compose 2.20.0 on fake is older than 2.26 (needed)"),
        ("error: docker compose 2.20.0 on fake is older than 2.26 (needed)",),
    ),
    Raised(
        "interrupted",
        ExitCode.INTERRUPTED,
        ("deploy", "development"),
        "deploy",
        Interrupted("interrupted by SIGTERM; the previous version keeps serving"),
        ("interrupted by SIGTERM; the previous version keeps serving",),
    ),
    Raised(
        "ctrl-c",
        ExitCode.INTERRUPTED,
        ("status", "development"),
        "health_check",
        KeyboardInterrupt(),
        ("interrupted",),
    ),
    Raised(
        "secret-masked",
        ExitCode.DEPLOY_FAILED,
        ("db", "rotate-password", "development"),
        "rotate_password",
        DeployFailed("migrate", f"password {POSTGRES_PASSWORD} refused"),
        ("error: deploy failed in phase 'migrate': password *** refused",),
    ),
]


@pytest.mark.parametrize("case", RAISED, ids=[c.id for c in RAISED])
def test_a_raised_error_exits_with_its_code_and_says_why(
    crash_log: Path, p: Project, monkeypatch: pytest.MonkeyPatch, case: Raised
) -> None:
    p.provider.raises[case.method] = case.error
    ran = p.run(monkeypatch, *case.argv)
    assert ran.code == case.code, ran
    for text in case.stderr:
        assert text in ran.stderr, ran.stderr
    assert POSTGRES_PASSWORD not in ran.stderr
    assert ran.stdout == ""  # no result, no document
    assert crash_log.exists() == (case.code == ExitCode.UNEXPECTED)


def test_0_on_success(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "deploy", "development")
    assert ran.code == ExitCode.OK, ran
    assert ran.stdout == "http://localhost:18080\n"
    assert "deployed 1.0.0 (abcdef0) to development in 1.5s" in ran.stderr


def test_0_with_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = shipyard(monkeypatch, "--version")
    assert (ran.code, ran.stdout, ran.stderr) == (ExitCode.OK, f"shipyard {__version__}\n", "")


def test_2_for_a_missing_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = shipyard(monkeypatch, "snapshot", "restore", "development")
    assert ran.code == ExitCode.USAGE
    assert "Error: Missing argument 'NAME'." in ran.stderr


def test_2_for_a_node_the_environment_lacks(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "history", "development", "--node", "ssh://root@nowhere")
    assert ran.code == ExitCode.USAGE
    assert "error: --node ssh://root@nowhere is not a node of 'development'" in ran.stderr


def test_2_when_destroy_is_not_confirmed(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "destroy", "development", "--json", input="n\n")
    assert ran.code == ExitCode.USAGE
    assert "Remove shop development?" in ran.stderr  # the prompt is not data: never on stdout
    assert ran.stdout == ""
    assert "cleanup" not in p.provider.calls


def test_3_for_an_invalid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, monkeypatch, yaml=VALID + "colour: blue\n")
    ran = p.run(monkeypatch, "status", "development")
    assert ran.code == ExitCode.INVALID_CONFIG
    assert "error: configuration is invalid (1 problem):" in ran.stderr
    assert f"{p.config}:23:1 colour: unknown key" in ran.stderr


def test_3_when_a_check_fails(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(_config: Path, _environment: str, *, allow_dirty: bool) -> None:
        raise CheckFailed(["docker is not reachable on fake"])

    monkeypatch.setattr(library, "check", failing)
    ran = p.run(monkeypatch, "check", "development")
    assert ran.code == ExitCode.INVALID_CONFIG
    assert "error: check failed (1 problem):\n  docker is not reachable on fake" in ran.stderr


def test_4_when_the_lock_is_held_by_a_live_operation(
    p: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_lock(p, heartbeat=time.time(), deployment_id="20261202T101010Z-abc")
    ran = p.run(monkeypatch, "lock", "release", "development")
    assert ran.code == ExitCode.LOCK_HELD
    assert "error: the lock is held and its holder is alive: deploy by ops@ci (pid 1)" in ran.stderr
    assert "hint: if you are sure it is gone, `shipyard lock release ENV --force`" in ran.stderr


def test_5_when_the_host_cannot_be_reached(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(_config: object) -> None:
        raise HostUnreachable("cannot connect to deploy@far: Connection refused", hint="is it up?")

    monkeypatch.setattr(library, "connect", unreachable)
    ran = p.run(monkeypatch, "status", "development", "--json")
    assert ran.code == ExitCode.HOST_UNREACHABLE
    assert "error: cannot connect to deploy@far: Connection refused" in ran.stderr
    assert "hint: is it up?" in ran.stderr
    assert ran.stdout == ""


def test_8_for_another_expected_failure(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "logs", "development")
    assert ran.code == ExitCode.FAILED
    assert "error: no deployment log  for development (recent: none yet)" in ran.stderr


def test_8_when_status_finds_drift(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    p.provider.drift["local"] = "the proxy sends requests to shop-development-blue"
    ran = p.run(monkeypatch, "status", "development")
    assert ran.code == ExitCode.FAILED
    assert "the proxy sends requests to shop-development-blue" in ran.stderr


def test_every_exit_code_is_tested_here_and_in_readmes_table() -> None:
    """Each code of ``ExitCode`` has a test in this module, and README's table lists exactly
    those codes."""
    source = Path(__file__).read_text(encoding="utf-8")
    tested = {c.code for c in RAISED} | {
        ExitCode(int(n)) for n in re.findall(r"^def test_(\d+)_", source, re.MULTILINE)
    }
    assert tested == set(ExitCode)
    table = README.read_text(encoding="utf-8").split("### Exit codes\n", 1)[1].split("\n## ", 1)[0]
    listed = {int(n) for n in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert listed == {int(c) for c in ExitCode}
