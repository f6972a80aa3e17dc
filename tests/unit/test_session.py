"""The library's way in: a session opens an environment and closes what it opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard import session as library
from shipyard.config import Config
from shipyard.errors import ExitCode, UnknownNode
from tests.bad_configs import VALID, BadConfig, write
from tests.fakes import FakeHost


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    project = tmp_path / "project"
    project.mkdir()
    return write(project, BadConfig("ok", VALID, "", ""))


def test_the_deployment_log_reaches_the_host_when_the_session_closes(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FakeHost()
    monkeypatch.setattr(library, "connect", lambda _config: host)
    loaded: list[Config] = []
    with library.open_session(config_path, "development", on_config=loaded.append) as session:
        assert [c.environment.name for c in loaded] == ["development"]
        session.ctx.phases().note("hello")
        assert not any(name.endswith(".jsonl") for name in host.files)
    logs = [name for name in host.files if name.endswith(".jsonl")]
    assert len(logs) == 1 and logs[0].startswith(str(session.ctx.store.path("logs")))
    assert b"hello" in host.files[logs[0]][0]


def test_nodes_share_one_deployment_id_and_close_together(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library, "connect", lambda _config: FakeHost())
    with library.open_sessions(config_path, "development") as sessions:
        ids = {s.ctx.deployment_id for s in sessions}
        assert len(sessions) == 1 and len(ids) == 1


def test_a_node_the_environment_lacks_is_a_usage_error_after_the_config_was_seen(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library, "connect", lambda _config: FakeHost())
    loaded: list[Config] = []
    with pytest.raises(UnknownNode) as refused:
        library.open_session(
            config_path, "development", node="ssh://root@nowhere", on_config=loaded.append
        )
    assert refused.value.exit_code == ExitCode.USAGE
    assert "ssh://root@nowhere is not a node of 'development'" in refused.value.message
    assert len(loaded) == 1  # its masker could mask the error's output
