"""Deployment metrics: a file in Prometheus's text format that node exporter's textfile collector
serves, rewritten (atomically, by the host's ``put``) after each operation, so dashboards show
the deployment history and alerts can refer to it.

Counts are over the history shipyard keeps (``deploy.history_days``): when old entries are
trimmed a count may go down, which Prometheus's ``rate``/``increase`` take as a counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import PurePosixPath

from shipyard.config import Config
from shipyard.errors import ShipyardError
from shipyard.state import Current, HistoryEntry, Release, StateStore

OPERATIONS = ("deploy", "rollback")
RESULTS = ("succeeded", "failed", "rolled_back", "interrupted")
FILE_NAME = "shipyard.prom"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _metric(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


def deployment_metrics(
    app: str,
    environment: str,
    history: list[HistoryEntry],
    current: Current | None,
    release: Release | None,
    last_snapshot_at: str | None = None,
) -> str:
    """The metrics text for one app environment."""
    base = {"app": app, "environment": environment}
    lines: list[str] = []
    if current is not None and release is not None:
        info = _labels(**base, version=release.version, commit=release.commit, slot=current.slot)
        lines += _metric(
            "shipyard_release_info", "gauge", "The release serving traffic (always 1).", [(info, 1)]
        )
        lines += _metric(
            "shipyard_live_since_timestamp_seconds",
            "gauge",
            "When the serving release went live (Unix time).",
            [(_labels(**base), _seconds(current.switched_at))],
        )
    counts = {(o, r): 0 for o in OPERATIONS for r in RESULTS}
    last: dict[str, HistoryEntry] = {}
    for entry in history:
        if entry.action in OPERATIONS:
            key = (entry.action, entry.result if entry.result in RESULTS else "failed")
            counts[key] += 1
            if entry.action not in last or entry.started_at > last[entry.action].started_at:
                last[entry.action] = entry
    lines += _metric(
        "shipyard_operations_total",
        "counter",
        "Deploys and rollbacks by result.",
        [(_labels(**base, operation=o, result=r), n) for (o, r), n in counts.items()],
    )
    lines += _metric(
        "shipyard_last_operation_timestamp_seconds",
        "gauge",
        "When the last deploy or rollback started (Unix time).",
        [(_labels(**base, operation=o), _seconds(e.started_at)) for o, e in last.items()],
    )
    lines += _metric(
        "shipyard_last_operation_duration_seconds",
        "gauge",
        "How long the last deploy or rollback took.",
        [(_labels(**base, operation=o), e.duration_s) for o, e in last.items()],
    )
    lines += _metric(
        "shipyard_last_operation_success",
        "gauge",
        "1 when the last deploy or rollback succeeded, else 0.",
        [(_labels(**base, operation=o), float(e.result == "succeeded")) for o, e in last.items()],
    )
    if last_snapshot_at is not None:
        lines += _metric(
            "shipyard_last_snapshot_timestamp_seconds",
            "gauge",
            "When the newest database snapshot was taken (Unix time).",
            [(_labels(**base), _seconds(last_snapshot_at))],
        )
    return "\n".join(lines) + "\n"


# Where the metrics file lives, under the environment's state directory; node exporter's textfile
# collector reads the directory.
TEXTFILE_DIR = PurePosixPath("monitoring") / "textfile"


def publish_deployment_metrics(
    store: StateStore, app: str, environment: str, *, last_snapshot_at: str | None
) -> PurePosixPath:
    """Write the environment's deployment metrics where node exporter reads them (readable by
    the exporter, which runs as nobody); returns the file's path. ``last_snapshot_at``: when the
    newest database snapshot was taken (``None``: there is none, or no database)."""
    current = store.current()
    release = store.release(current.release_id) if current is not None else None
    text = deployment_metrics(app, environment, store.history(), current, release, last_snapshot_at)
    name = str(TEXTFILE_DIR / FILE_NAME)
    store.backend.write(name, text.encode(), shared=True)
    return store.path(name)


def republish_deployment_metrics(
    config: Config,
    store: StateStore,
    newest_snapshot: Callable[[], str | None],
    warn: Callable[[str], None],
) -> None:
    """With ``monitoring.enabled``, the deployment metrics written again after an operation
    (``newest_snapshot``: when the environment's newest snapshot was taken). That they could not
    be is ``warn``-ed, never the operation's failure."""
    if not config.monitoring.enabled:
        return
    try:
        publish_deployment_metrics(
            store,
            config.app.name,
            config.environment.name,
            last_snapshot_at=newest_snapshot(),
        )
    except (ShipyardError, OSError) as exc:
        warn(f"could not publish the deployment metrics: {exc}")
