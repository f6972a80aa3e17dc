"""What operators read: a container's real end, the plan's words for an empty database and for
health checks, and tables written out whole when they do not go to a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath

import pytest

from shipyard import cli
from shipyard import session as library
from shipyard.config import CommandCheck, HttpCheck, PostgresCheck, TcpCheck
from shipyard.docker import ContainerInfo, parse_container, parse_exit_codes
from shipyard.health import describe_check
from shipyard.providers.docker._plan import _schema_at
from shipyard.providers.docker._slots import describe_exit
from shipyard.state import StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.state_records import succeeded


def _info(status: str, exit_code: int = 0, restarts: int = 0) -> ContainerInfo:
    return ContainerInfo(
        id="c1",
        name="shop-development-blue",
        image_id="sha256:1",
        status=status,
        health=None,
        exit_code=exit_code,
        labels={},
        restart_count=restarts,
    )


def test_a_container_whose_server_returned_is_reported_as_exited_with_code_0() -> None:
    """Seen as "not running (running, exit code 0): … does not publish port": Docker had
    restarted it and reset its exit code; the die events hold the real ones."""
    restarted = _info("running", exit_code=0, restarts=3)
    said = describe_exit(restarted, [0, 0, 0])
    assert said.startswith("exited with code 0: its server process ended")
    assert "started it again 3 time(s) (now running)" in said
    # a running container's own exit code is never taken for the last one's
    assert describe_exit(_info("running", 0, restarts=2), [1, 1]).startswith("exited with code 1")
    assert describe_exit(_info("running", 0, restarts=2), []).startswith("stopped: its process")
    assert describe_exit(_info("exited", 2), []) == "exited with code 2"
    assert describe_exit(_info("restarting", 0, restarts=1), []).startswith("exited with code 0")
    assert describe_exit(None, []) == "is gone"


def test_inspect_and_events_give_restarts_and_exit_codes() -> None:
    document = {
        "Id": "c1",
        "Name": "/shop-development-blue",
        "RestartCount": 4,
        "Created": "2026-12-02T06:00:00.123456789Z",
        "State": {"Status": "running", "ExitCode": 0},
    }
    info = parse_container(document)
    assert (info.restart_count, info.created, info.exit_code_known) == (
        4,
        "2026-12-02T06:00:00.123456789Z",
        False,
    )
    events = "\n".join(
        json.dumps({"status": "die", "Actor": {"ID": "c1", "Attributes": {"exitCode": code}}})
        for code in ("0", "1")
    )
    assert parse_exit_codes(events + "\nnot json\n") == [0, 1]


def test_plan_names_an_empty_database_and_each_check_by_name_and_path() -> None:
    assert _schema_at(None, None) == "empty database, no migrations applied"
    assert _schema_at(7, _info("running")) == "schema at version 7"
    assert "is exited: its schema is not known" in _schema_at(None, _info("exited"))
    checks = [
        HttpCheck(kind="http"),
        HttpCheck(kind="http", name="readiness", path="/readyz"),
        TcpCheck(kind="tcp"),
        PostgresCheck(kind="postgres", name="rows"),
        CommandCheck(kind="command", argv=["true"]),
    ]
    assert [describe_check(c) for c in checks] == [
        "http /health",
        "readiness /readyz",
        "tcp",
        "rows (postgres)",
        "command",
    ]


def test_history_is_not_cut_at_80_columns_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app").mkdir()
    config = committed_config(tmp_path / "app", VALID)
    target = FakeHost()
    store = StateStore.on_host(
        target, PurePosixPath("/home/fake/.local/state/shipyard/shop/development")
    )
    who = "operator@a-rather-long-host-name.example.org"
    store.append_history(
        succeeded(
            "20261202T061234Z-abcdef",
            "0.0.0+abcdef1.dirty",
            commit="abcdef1" * 6,
            started_at="2026-12-02T06:12:34Z",
            duration_s=12.3,
            by=who,
        )
    )
    monkeypatch.setattr(library, "connect", lambda _config: target)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "logs"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "argv", ["shipyard", "history", "development", "-c", str(config.path)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code in (0, None)
    table = capsys.readouterr().err
    for whole in ("20261202T061234Z-abcdef", "0.0.0+abcdef1.dirty", "succeeded", who):
        assert whole in table, table
    assert "…" not in table
    assert max(len(line) for line in table.splitlines()) > 80
