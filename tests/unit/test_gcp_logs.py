"""The app's and its jobs' log lines from Cloud Logging (``providers.gcp._logs``), against the
GCP stand-in's Cloud Logging (``tests.gcp.logging``, held to the logging.v2 discovery document,
reading the filter it is sent): only the service's own lines, the newest ``limit`` of them
oldest first, a revision's or those since a time, pages followed (empty ones too) within a
bound, a job execution's lines, and lines rendered as the AWS provider renders CloudWatch's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shipyard.gcp import GcpError
from shipyard.providers.gcp import GcpNames
from shipyard.providers.gcp._logs import CloudLogging, LogLine
from shipyard.waiting import Clock
from tests.gcp.discovery import discovery
from tests.gcp.logging import LoggingModel
from tests.gcp.standin import PROJECT, REGION, Session, gcp_session
from tests.unit.fake_clock import FakeClock

NAMES = GcpNames(PROJECT, REGION, "shop", "production")
SERVICE = NAMES.service
JOB = NAMES.job("migrate")
LIST = "logging.entries.list"


def _at(second: int, fraction: str = "") -> str:
    return f"2026-03-01T10:00:{second:02d}{'.' + fraction if fraction else ''}Z"


@dataclass
class World:
    session: Session
    model: LoggingModel
    clock: FakeClock

    def logging(self, **options: Any) -> CloudLogging:
        api = self.session.api("logging", clock=Clock(self.clock, self.clock.sleep))
        return CloudLogging(api, NAMES, **options)

    def line(self, second: int, text: str, *, revision: str = "r1", **options: Any) -> None:
        """A line of the service's revision ``revision``, ``second`` seconds into the hour."""
        self.model.add_entry(
            resource_type="cloud_run_revision", timestamp=_at(second), text=text,
            resource_labels={"service_name": SERVICE, "revision_name": NAMES.revision(revision),
                             "location": REGION, "configuration_name": SERVICE},
            **options,
        )  # fmt: skip

    def job_line(self, second: int, text: str | None, execution: str, **options: Any) -> None:
        self.model.add_entry(
            resource_type="cloud_run_job", timestamp=_at(second), text=text,
            resource_labels={"job_name": JOB, "location": REGION},
            labels={"run.googleapis.com/execution_name": execution,
                    "run.googleapis.com/task_index": "0"},
            **options,
        )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with gcp_session(tmp_path) as session:
        yield World(session, session.standin.add(LoggingModel(session.standin)), FakeClock())
        assert session.standin.invalid == []


def _texts(lines: list[LogLine]) -> list[str]:
    return [line.text for line in lines]


def test_the_services_own_lines_come_oldest_first(world: World) -> None:
    world.line(3, "listening on :8080")
    world.line(1, "starting shop 1.4.0\n")
    world.line(5, "panic: nil map", severity="ERROR", log="run.googleapis.com/stderr")
    world.line(6, "Memory limit of 512 MiB exceeded", severity="ERROR",
               log="run.googleapis.com/varlog/system")  # fmt: skip
    world.line(4, "", log="run.googleapis.com/requests")  # a request log: not the app's
    world.model.add_entry(  # another service
        resource_type="cloud_run_revision", timestamp=_at(2), text="other app",
        resource_labels={"service_name": "billing", "location": REGION},
    )  # fmt: skip
    world.job_line(2, "migrating", "exec-1")
    lines = world.logging().app_lines(SERVICE, limit=100)
    assert [str(line) for line in lines] == [
        "2026-03-01T10:00:01.000000Z starting shop 1.4.0",
        "2026-03-01T10:00:03.000000Z listening on :8080",
        "2026-03-01T10:00:05.000000Z ERROR panic: nil map",
        "2026-03-01T10:00:06.000000Z ERROR Memory limit of 512 MiB exceeded",
    ]
    [search] = world.model.searches
    logs = " OR ".join(f'"projects/{PROJECT}/logs/run.googleapis.com%2F{name}"'
                       for name in ("stdout", "stderr", "varlog%2Fsystem"))  # fmt: skip
    assert search == {
        "resourceNames": [f"projects/{PROJECT}"],
        "filter": f'resource.type="cloud_run_revision" AND resource.labels.service_name="{SERVICE}"'
        f' AND resource.labels.location="{REGION}" AND logName=({logs})',
        "orderBy": "timestamp desc",
        "pageSize": 100,
    }


def test_the_newest_lines_up_to_the_limit(world: World) -> None:
    for second in range(10):
        world.line(second, f"line {second}")
    lines = world.logging().app_lines(SERVICE, limit=3)
    assert _texts(lines) == ["line 7", "line 8", "line 9"]
    assert world.model.searches[0]["pageSize"] == 3
    assert world.logging().app_lines(SERVICE, limit=0) == []
    assert len(world.model.searches) == 1  # no search for no lines


def test_a_revisions_lines_and_those_since_a_time(world: World) -> None:
    for second in range(6):
        world.line(second, f"r{second % 2 + 1} at {second}", revision=f"r{second % 2 + 1}")
    logging = world.logging()
    revision = NAMES.revision("r2")
    assert _texts(logging.app_lines(SERVICE, limit=10, revision=revision)) == [
        "r2 at 1", "r2 at 3", "r2 at 5"]  # fmt: skip
    since = datetime(2026, 3, 1, 10, 0, 3, tzinfo=UTC)
    assert _texts(logging.app_lines(SERVICE, limit=10, since=since)) == [
        "r2 at 3", "r1 at 4", "r2 at 5"]  # fmt: skip
    naive = datetime(2026, 3, 1, 10, 0, 4)  # taken as UTC
    assert _texts(logging.app_lines(SERVICE, limit=10, since=naive, revision=revision)) == [
        "r2 at 5"]  # fmt: skip
    assert 'timestamp>="2026-03-01T10:00:04.000000Z"' in world.model.searches[-1]["filter"]


def test_pages_are_followed_until_the_limit(world: World) -> None:
    for index in range(1500):
        world.line(index % 60, f"n{index:04d}")
    lines = world.logging().app_lines(SERVICE, limit=1200)
    assert len(lines) == 1200
    assert [s["pageSize"] for s in world.model.searches] == [1000, 1000]  # Google's largest page
    assert "pageToken" in world.model.searches[1]
    stamps = [line.timestamp for line in lines]
    assert stamps == sorted(stamps)


def test_empty_pages_with_a_token_are_followed(world: World) -> None:
    world.line(1, "after a slow search")
    world.model.empty_pages = 2  # the search ran out of time twice before finding it
    assert _texts(world.logging().app_lines(SERVICE, limit=10)) == ["after a slow search"]
    assert len(world.model.searches) == 3


def test_a_search_stops_after_its_pages(world: World) -> None:
    world.line(1, "never reached")
    world.model.empty_pages = 100
    assert world.logging(pages=4).app_lines(SERVICE, limit=10) == []
    assert len(world.model.searches) == 4  # Cloud Logging allows 60 searches a minute


def test_a_rate_limited_search_waits(world: World) -> None:
    world.line(1, "hello")
    world.session.standin.rate_limit(LIST, 1, retry_delay="12s")
    assert _texts(world.logging().app_lines(SERVICE, limit=5)) == ["hello"]
    assert world.clock.sleeps == [12.0]


def test_an_executions_lines(world: World) -> None:
    execution = "shipyard-shop-production-migrate-abc12"
    world.job_line(1, "applying 0003_orders.up.sql", execution)
    world.job_line(2, "another execution", "shipyard-shop-production-migrate-zzz99")
    world.job_line(3, None, execution, severity="ERROR",
                   json_payload={"msg": "error: relation exists", "level": "ERROR"})  # fmt: skip
    world.job_line(4, None, execution, json_payload={"step": 3, "ok": False})
    world.job_line(5, "Container called exit(1).", execution,
                   log="run.googleapis.com/varlog/system")  # fmt: skip
    lines = world.logging().execution_lines(JOB, execution, 10)
    assert _texts(lines) == [
        "applying 0003_orders.up.sql",
        "error: relation exists",  # Go's slog writes its message as msg
        '{"ok": false, "step": 3}',  # no message: the whole payload
        "Container called exit(1).",
    ]
    assert str(lines[1]) == "2026-03-01T10:00:03.000000Z ERROR error: relation exists"
    [search] = world.model.searches
    assert search["filter"].startswith(
        f'resource.type="cloud_run_job" AND resource.labels.job_name="{JOB}" AND '
        f'resource.labels.location="{REGION}" AND '
        f'labels."run.googleapis.com/execution_name"="{execution}" AND logName=('
    )
    assert world.logging().execution_lines(JOB, execution, 2)[0].text == '{"ok": false, "step": 3}'


def test_a_json_message_and_nanosecond_timestamps(world: World) -> None:
    world.model.add_entry(
        resource_type="cloud_run_revision", timestamp=_at(7, "123456789"),
        json_payload={"message": "order 42 paid", "severity": "INFO"}, severity="INFO",
        resource_labels={"service_name": SERVICE, "location": REGION},
    )  # fmt: skip
    [line] = world.logging().app_lines(SERVICE, limit=1)
    assert str(line) == "2026-03-01T10:00:07.123456Z order 42 paid"
    assert line.severity == "INFO"


def test_the_standin_refuses_a_filter_it_cannot_read(world: World) -> None:
    """So that a typo in shipyard's filter fails a test instead of matching nothing."""
    api = world.session.api("logging")
    for bad in ('resource.label.service_name="x"', 'resource.type="a" AND', "resource.type=a",
                'timestamp>="yesterday"', 'resource.type="a" OR resource.type="b"'):  # fmt: skip
        with pytest.raises(GcpError) as refused:
            api.json("POST", "v2/entries:list",
                     body={"resourceNames": [f"projects/{PROJECT}"], "filter": bad})  # fmt: skip
        assert refused.value.status == 400, bad
        assert "Unparseable filter" in refused.value.message, bad


def test_the_models_answers_follow_the_document(world: World) -> None:
    world.line(1, "hello")
    world.job_line(2, None, "exec-1", json_payload={"message": "hi"})
    api = world.session.api("logging")
    answer = api.json("POST", "v2/entries:list",
                      body={"resourceNames": [f"projects/{PROJECT}"], "pageSize": 1})  # fmt: skip
    assert answer and answer["entries"] and answer["nextPageToken"]
    assert discovery("logging").check_value(answer, "ListLogEntriesResponse") == []
