"""The app's log lines and a job execution's from Cloud Logging: what CloudWatch Logs is to the
AWS provider (its ``logs --app``).

Cloud Run sends what a container writes to ``run.googleapis.com/stdout`` and ``…/stderr``, and
its own notes on the container (exit codes, memory limits, failed starts) to
``run.googleapis.com/varlog/system``: those three logs are the app's lines. Request logs and
audit logs, which name the same resources, are left out, as the AWS provider leaves out all but
the app's streams.

One search (``entries.list``) asks for the newest entries first and follows its pages until it
has ``limit`` lines; the lines come back oldest first, as ``logs`` prints them. A page may come
back empty with a token (the search ran out of time, not of entries): the next page is asked
for, up to ``pages`` requests, since Cloud Logging allows a project only 60 of them a minute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shipyard.gcp import GcpApi
from shipyard.providers.gcp._names import GcpNames

APP_LOGS = ("run.googleapis.com/stdout", "run.googleapis.com/stderr",
            "run.googleapis.com/varlog/system")  # fmt: skip
EXECUTION_LABEL = "run.googleapis.com/execution_name"
_PAGE_MOST = 1000  # Cloud Logging's largest page
_SHOWN_SEVERITIES = frozenset({"WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LogLine:
    """One log entry as ``logs`` prints it: ``<timestamp> [<severity>] <text>`` (the severity
    only from WARNING up), the timestamp in UTC as the AWS provider writes CloudWatch's."""

    timestamp: datetime
    severity: str  # Cloud Logging's: DEFAULT, INFO… (stderr arrives as ERROR)
    text: str

    def __str__(self) -> str:
        stamp = self.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        severity = f"{self.severity} " if self.severity in _SHOWN_SEVERITIES else ""
        return f"{stamp} {severity}{self.text}"


class CloudLogging:
    """Log lines of the environment's Cloud Run service and jobs (see the module).

    ``api``: a ``GcpApi("logging", …)``; ``pages``: the most requests one search makes."""

    def __init__(self, api: GcpApi, names: GcpNames, *, pages: int = 20) -> None:
        self.api = api
        self.names = names
        self.pages = pages

    def app_lines(
        self,
        service: str,
        *,
        since: datetime | None = None,
        limit: int,
        revision: str | None = None,
    ) -> list[LogLine]:
        """The newest ``limit`` lines of Cloud Run service ``service`` (of its revision
        ``revision`` only, when given; from ``since`` on, when given), oldest first."""
        clauses = [
            _equals("resource.type", "cloud_run_revision"),
            _equals("resource.labels.service_name", service),
            _equals("resource.labels.location", self.names.region),
        ]
        if revision is not None:
            clauses.append(_equals("resource.labels.revision_name", revision))
        if since is not None:
            clauses.append(f'timestamp>="{_rfc3339(since)}"')
        return self._lines(clauses, limit, what=f"the logs of Cloud Run service {service}")

    def execution_lines(self, job: str, execution: str, limit: int) -> list[LogLine]:
        """The newest ``limit`` lines of execution ``execution`` (its short name) of Cloud Run
        job ``job``, oldest first: what to show when it failed."""
        clauses = [
            _equals("resource.type", "cloud_run_job"),
            _equals("resource.labels.job_name", job),
            _equals("resource.labels.location", self.names.region),
            _equals(f'labels."{EXECUTION_LABEL}"', execution),
        ]
        return self._lines(clauses, limit, what=f"the logs of job execution {execution}")

    def _lines(self, clauses: list[str], limit: int, *, what: str) -> list[LogLine]:
        if limit <= 0:
            return []
        logs = " OR ".join(
            _quoted(f"projects/{self.names.project}/logs/{log.replace('/', '%2F')}")
            for log in APP_LOGS
        )
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{self.names.project}"],
            "filter": " AND ".join([*clauses, f"logName=({logs})"]),
            "orderBy": "timestamp desc",
            "pageSize": min(limit, _PAGE_MOST),
        }
        newest: list[LogLine] = []
        for _ in range(self.pages):
            page = self.api.json("POST", "v2/entries:list", body=body, idempotent=True,
                                 what=what) or {}  # fmt: skip
            newest += [line for entry in page.get("entries") or [] if (line := _line(entry))]
            token = page.get("nextPageToken")
            if len(newest) >= limit or not token:
                break
            body["pageToken"] = str(token)
        return newest[:limit][::-1]


def _line(entry: dict[str, Any]) -> LogLine | None:
    """The line of a log entry: its ``textPayload``, or its ``jsonPayload``'s message (``msg``
    as Go's slog writes it), else that payload as JSON; ``None`` for an entry with neither."""
    payload = entry.get("jsonPayload")
    if "textPayload" in entry:
        text = str(entry["textPayload"])
    elif isinstance(payload, dict):
        message = payload.get("message", payload.get("msg"))
        text = str(message) if message is not None else json.dumps(payload, sort_keys=True)
    else:
        return None
    when = _parsed(entry.get("timestamp")) or _parsed(entry.get("receiveTimestamp")) or _EPOCH
    return LogLine(when, str(entry.get("severity") or "DEFAULT"), text.rstrip())


def _parsed(stamp: Any) -> datetime | None:
    """An RFC 3339 timestamp (nanoseconds cut to microseconds), or ``None``."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def _rfc3339(when: datetime) -> str:
    """``when`` (UTC when it names no zone) as Cloud Logging's filters take a timestamp."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _quoted(value: str) -> str:
    """A string in the logging query language: double-quoted, ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _equals(field: str, value: str) -> str:
    return f"{field}={_quoted(value)}"
