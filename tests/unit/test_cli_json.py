"""``--json``: a command that reports a result prints one JSON document on stdout, with the keys
README names; a command that streams prints one JSON object per line. Run through the real
entry point, the library reaching a recording host and a scripted provider."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click
import pytest

from shipyard import cli
from shipyard import events as events_module
from shipyard import session as library
from shipyard.config import load_config
from shipyard.deploy import Checked
from shipyard.errors import CheckFailed, ExitCode, HostError
from shipyard.events import DeliveryResult
from shipyard.provision import StepResult
from shipyard.state import StateStore
from tests.bad_configs import VALID
from tests.unit.cli_harness import POSTGRES_PASSWORD, Project, Ran, hold_lock, project
from tests.unit.state_records import succeeded

SNAPSHOT_KEYS = {
    "name",
    "database",
    "app",
    "environment",
    "version",
    "commit",
    "deployment_id",
    "reason",
    "created_at",
    "size",
    "sha256",
    "duration_s",
    "toc_entries",
    "server_version",
    "path",
}
STATUS_KEYS = {
    "node",
    "certificates",
    "url",
    "version",
    "commit",
    "slot",
    "release_id",
    "deployed_at",
    "deployed_by",
    "health",
    "health_detail",
    "probed",
    "proxy_upstreams",
    "drift",
    "containers",
    "interrupted",
    "problems",
    "maintenance",
}
TWO_NODES = VALID.replace(
    "  development:\n    target: local\n",
    "  development:\n    target: local\n    targets: ['ssh://deploy@second']\n",
)


def _document(ran: Ran, code: ExitCode = ExitCode.OK) -> Any:
    """stdout as one JSON document (``json.loads`` refuses anything after it)."""
    assert ran.code == code, ran
    return json.loads(ran.stdout)


def _lines(ran: Ran) -> list[dict[str, Any]]:
    """stdout as one JSON object per line."""
    assert ran.code == ExitCode.OK, ran
    lines = ran.stdout.splitlines()
    assert lines, ran
    return [json.loads(line) for line in lines]


def _store(p: Project) -> StateStore:
    config = load_config(p.config, "development")
    return StateStore.on_host(p.host, library.state_root(config, p.host))


def _leaves(group: click.Group, path: str = "") -> dict[str, click.Command]:
    """Every command that is not a group, by its words (``snapshot list``)."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= _leaves(command, f"{path}{name} ")
        else:
            found[f"{path}{name}"] = command
    return found


def test_every_command_but_schema_and_completion_takes_json() -> None:
    """``schema`` prints JSON (or Markdown) anyway; ``completion`` prints a shell script."""
    without = {
        name
        for name, command in _leaves(cli.app).items()
        if not any("--json" in param.opts for param in command.params)
    }
    assert without == {"schema", "completion"}


def test_readme_gives_the_shape_of_each_commands_json() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### JSON output\n", 1)[1].split("\n### ", 1)[0]
    documented: set[str] = set()
    for row in re.findall(r"^\| (`.+?`) \|", table, re.MULTILINE):
        documented |= {name.removesuffix(" --app") for name in re.findall(r"`([a-z -]+)`", row)}
    assert documented == set(_leaves(cli.app)) - {"schema", "completion"}


def test_status_is_a_list_of_one_node_record(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    [record] = _document(p.run(monkeypatch, "status", "development", "--json"))
    assert set(record) == STATUS_KEYS
    assert (record["node"], record["health"], record["drift"]) == ("local", "healthy", None)


def test_status_lists_each_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, monkeypatch, yaml=TWO_NODES)
    p.provider.drift["ssh://deploy@second"] = "nothing serves"
    records = _document(p.run(monkeypatch, "status", "development", "--json"), ExitCode.FAILED)
    assert [r["node"] for r in records] == ["local", "ssh://deploy@second"]
    assert all(set(r) == STATUS_KEYS for r in records)
    assert [r["drift"] for r in records] == [None, "nothing serves"]


def test_status_without_json_keeps_its_table_on_stderr(
    p: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = p.run(monkeypatch, "status", "development")
    assert ran.code == ExitCode.OK
    assert ran.stdout == ""
    assert "healthy" in ran.stderr
    assert "node" not in ran.stderr.split()  # one node: no node row


def test_check_passing(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def passing(_config: Path, _environment: str, *, allow_dirty: bool) -> Checked:
        return Checked(
            passed=["shipyard.yml: valid"], warnings=["'API_TOKEN' is named like a secret"]
        )

    monkeypatch.setattr(library, "check", passing)
    document = _document(p.run(monkeypatch, "check", "development", "--json"))
    assert document == {
        "passed": ["shipyard.yml: valid"],
        "warnings": ["'API_TOKEN' is named like a secret"],
        "problems": [],
    }


def test_check_failing_prints_its_problems_and_exits_3(
    p: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(_config: Path, _environment: str, *, allow_dirty: bool) -> Checked:
        raise CheckFailed(["docker is not reachable on fake", "no go.mod"], warnings=["w"])

    monkeypatch.setattr(library, "check", failing)
    ran = p.run(monkeypatch, "check", "development", "--json")
    document = _document(ran, ExitCode.INVALID_CONFIG)
    assert document == {
        "passed": [],
        "warnings": ["w"],
        "problems": ["docker is not reachable on fake", "no go.mod"],
    }
    assert "error: check failed (2 problems)" in ran.stderr


def test_check_of_an_invalid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, monkeypatch, yaml=VALID + "colour: blue\n")
    document = _document(
        p.run(monkeypatch, "check", "development", "--json"), ExitCode.INVALID_CONFIG
    )
    assert document == {
        "passed": [],
        "warnings": [],
        "problems": [f"{p.config}:23:1 colour: unknown key"],
    }


@pytest.mark.parametrize(
    ("command", "document"),
    [
        pytest.param(
            "render",
            [
                {"path": "/state/compose.yml", "content": "POSTGRES_PASSWORD: ***\n"},
                {"path": "/state/caddy.json", "content": '{"apps": {}}\n'},
            ],
            id="render",
        ),
        pytest.param(
            "plan",
            [
                {"phase": "build", "action": "build shop:abcdef0"},
                {"phase": "switch", "action": "switch to blue"},
            ],
            id="plan",
        ),
    ],
)
def test_render_and_plan(
    p: Project, monkeypatch: pytest.MonkeyPatch, command: str, document: list[dict[str, str]]
) -> None:
    assert _document(p.run(monkeypatch, command, "development", "--json")) == document


def test_render_without_json_is_unchanged(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "render", "development")
    assert ran.stdout.startswith(
        "# /state/compose.yml\nPOSTGRES_PASSWORD: ***\n\n# /state/caddy.json\n"
    )


def test_history(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(p)
    for n in (1, 2):
        store.append_history(
            succeeded(
                f"d{n}",
                f"1.0.{n}",
                commit="abcdef0123",
                started_at="2026-12-02T10:10:10Z",
                duration_s=3.0,
                by="ops@laptop",
            )
        )
    entries = _document(p.run(monkeypatch, "history", "development", "--json"))
    assert [e["deployment_id"] for e in entries] == ["d2", "d1"]  # newest first
    assert {"deployment_id", "action", "result", "version", "commit", "slot", "started_at"} <= set(
        entries[0]
    )
    assert {"duration_s", "by", "phase", "error", "release_id", "steps"} <= set(entries[0])


def test_logs_of_a_deployment(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        {"kind": "phase.finished", "phase": "build", "message": "built"},
        {"kind": "note", "message": f"password {POSTGRES_PASSWORD}"},
    ]
    p.host.put(
        _store(p).path("logs", "d7.jsonl"),
        "".join(json.dumps(e) + "\n" for e in events).encode(),
    )
    document = _document(p.run(monkeypatch, "logs", "development", "--deployment", "d7", "--json"))
    assert document == {
        "deployment_id": "d7",
        "events": [events[0], {**events[1], "message": "password ***"}],
    }


def test_logs_of_the_app_stream_one_line_each(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines(p.run(monkeypatch, "logs", "development", "--app", "--json"))
    assert lines == [
        {"time": "2026-12-02T10:10:10.000000001Z", "line": "listening on :8080"},
        {"time": "2026-12-02T10:10:11.000000001Z", "line": "connected with ***"},
    ]


def test_lock_status(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _document(p.run(monkeypatch, "lock", "status", "development", "--json")) == {
        "held": False,
        "stale": None,
        "owner": None,
    }
    owner = hold_lock(p, heartbeat=time.time())
    assert _document(p.run(monkeypatch, "lock", "status", "development", "--json")) == {
        "held": True,
        "stale": False,
        "owner": owner,
    }


def test_lock_release(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _document(p.run(monkeypatch, "lock", "release", "development", "--json")) == {
        "released": False,
        "owner": None,
    }
    owner = hold_lock(p, heartbeat=0)  # stale
    assert _document(p.run(monkeypatch, "lock", "release", "development", "--json")) == {
        "released": True,
        "owner": owner,
    }
    assert not any(name.endswith("/lock/owner.json") for name in p.host.files)


def test_notify_test(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def sent(*_args: object) -> list[DeliveryResult]:
        return [
            DeliveryResult("ntfy ops", True, "200", 1, "notify.test"),
            DeliveryResult("webhook https://hooks", False, "503", 3, "notify.test"),
        ]

    monkeypatch.setattr(events_module, "send_test", sent)
    results = _document(
        p.run(monkeypatch, "notify", "test", "development", "--json"), ExitCode.FAILED
    )
    assert [set(r) for r in results] == [{"sink", "ok", "detail", "attempts", "event"}] * 2
    assert [r["ok"] for r in results] == [True, False]


def test_destroy(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "destroy", "development", "--yes", "--json")
    assert _document(ran) == [
        {
            "node": "local",
            "removed": ["container shop-development-live"],
            "kept": ["image postgres:17"],
            "snapshots": None,
            "snapshots_removed": False,
            "error": None,
        }
    ]
    assert "removed container" not in ran.stderr


def test_destroy_says_which_node_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, monkeypatch, yaml=TWO_NODES)
    failing = HostError(f"rm refused ({POSTGRES_PASSWORD})")
    cleanup = p.provider.cleanup

    def on_second(ctx: Any, **options: Any) -> Any:
        if ctx.config.environment.target == "ssh://deploy@second":
            raise failing
        return cleanup(ctx, **options)

    monkeypatch.setattr(p.provider, "cleanup", on_second)
    records = _document(
        p.run(monkeypatch, "destroy", "development", "--yes", "--json"), ExitCode.FAILED
    )
    assert [(r["node"], r["error"]) for r in records] == [
        ("local", None),
        ("ssh://deploy@second", "rm refused (***)"),
    ]
    assert set(records[1]) == set(records[0])


def test_snapshot_create_and_list(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    created = _document(p.run(monkeypatch, "snapshot", "create", "development", "--json"))
    assert set(created) == SNAPSHOT_KEYS
    listed = _document(p.run(monkeypatch, "snapshot", "list", "development", "--json"))
    assert [s["name"] for s in listed] == ["shop_2", "shop_1"]
    assert all(set(s) == SNAPSHOT_KEYS for s in listed)


def test_snapshot_verify(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("snapshot", "verify", "development", "shop_1", "--json")
    plain = _document(p.run(monkeypatch, *argv))
    assert set(plain) == {"snapshot", "restore_test"}
    assert plain["restore_test"] is None
    tested = _document(p.run(monkeypatch, *argv, "--restore-test"))
    assert tested["restore_test"] == {"database": "shipyard_verify", "tables": {"events": [3, 3]}}


def test_snapshot_restore(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = p.run(monkeypatch, "snapshot", "restore", "development", "shop_1", "--yes", "--json")
    document = _document(ran)
    assert set(document) == {"restored", "safety", "restarted", "health"}
    assert document["restored"]["name"] == "shop_1"
    assert set(document["safety"]) == SNAPSHOT_KEYS
    assert (document["restarted"], document["health"]) == (["shop-development-live"], "healthy")


def test_snapshot_prune(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("snapshot", "prune", "development", "--json")
    assert _document(p.run(monkeypatch, *argv, "--dry-run")) == {
        "keep": ["shop_2"],
        "delete": ["shop_1"],
        "deleted": [],
    }
    assert _document(p.run(monkeypatch, *argv))["deleted"] == ["shop_1"]


def test_migrations_lint(tmp_path: Path, p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "000001_drop.up.sql").write_text("ALTER TABLE events DROP COLUMN title;\n")
    argv = ("migrations", "lint", "development", "--all", "--path", str(migrations), "--json")
    [finding] = _document(p.run(monkeypatch, *argv), ExitCode.FAILED)
    assert set(finding) == {"file", "line", "rule", "message", "safe"}
    assert (finding["line"], finding["file"].endswith("000001_drop.up.sql")) == (1, True)


def test_migrations_lint_without_migrations_is_an_empty_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = VALID[VALID.index("database:") : VALID.index("proxy:")]
    p = project(tmp_path, monkeypatch, yaml=VALID.replace(database, ""))
    assert load_config(p.config, "development").database is None
    assert _document(p.run(monkeypatch, "migrations", "lint", "development", "--json")) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("deploy", "development"),
        ("rollback", "development"),
        ("repair", "development"),
        ("db", "rotate-password", "development"),
    ],
    ids=lambda argv: " ".join(argv[:-1]),
)
def test_operations_stream_one_event_per_line(
    p: Project, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]
) -> None:
    events = _lines(p.run(monkeypatch, *argv, "--json"))
    assert all(
        {"kind", "deployment_id", "app", "environment", "timestamp"} <= set(e) for e in events
    )
    notes = [e["message"] for e in events if e["kind"] == "operation.note"]
    assert len(notes) == 1, events  # the fake provider's one event


def test_provision_streams_one_step_per_line(p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def provisioned(*_args: object, report: Any, **_options: object) -> dict[str, list[StepResult]]:
        steps = [
            StepResult("docker", "unchanged", "27.0.0"),
            StepResult("user", "changed", "deploy"),
        ]
        for step in steps:
            report("ssh://root@fresh", step)
        return {"ssh://root@fresh": steps}

    monkeypatch.setattr(library, "provision_nodes", provisioned)
    assert _lines(p.run(monkeypatch, "provision", "development", "--json")) == [
        {"node": "ssh://root@fresh", "step": "docker", "status": "unchanged", "detail": "27.0.0"},
        {"node": "ssh://root@fresh", "step": "user", "status": "changed", "detail": "deploy"},
    ]
