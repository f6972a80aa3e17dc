"""The configuration reference (Markdown), generated from the models so it never drifts."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from shipyard.config import _models as m

_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("app", m.AppSection),
    ("build (kind: go)", m.GoBuild),
    ("build (kind: dockerfile)", m.DockerfileBuild),
    ("database", m.DatabaseSection),
    ("database.migrations", m.MigrationsSection),
    ("database.snapshots", m.SnapshotsSection),
    ("proxy", m.ProxySection),
    ("health", m.HealthSection),
    ("health.checks[] (kind: http)", m.HttpCheck),
    ("health.checks[] (kind: tcp)", m.TcpCheck),
    ("health.checks[] (kind: postgres)", m.PostgresCheck),
    ("health.checks[] (kind: command)", m.CommandCheck),
    ("deploy", m.DeploySection),
    ("deploy.github", m.GitHubSection),
    ("deploy.registry", m.RegistrySection),
    ("notifications", m.NotificationsSection),
    ("notifications.sinks[] (kind: webhook)", m.WebhookSink),
    ("notifications.sinks[] (kind: ntfy)", m.NtfySink),
    ("notifications.sinks[].retry", m.RetrySection),
    ("monitoring", m.MonitoringSection),
    ("monitoring.alerts", m.AlertsSection),
    ("monitoring.alertmanager", m.AlertmanagerSection),
    ("monitoring.grafana", m.GrafanaSection),
    ("monitoring.publish", m.PublishSection),
    ("monitoring.images", m.MonitoringImages),
    ("hooks", m.HooksSection),
    ("hooks.<point>[]", m.HookSpec),
    ("environments.<name>", m.EnvironmentSection),
    ("providers.ssh", m.SSHSection),
    ("providers.aws", m.AwsSection),
    ("providers.aws.rds", m.RdsSection),
    ("providers.digitalocean", m.DigitalOceanSection),
    ("providers.digitalocean.database", m.DoDatabaseSection),
]


def _type_name(annotation: Any) -> str:  # noqa: PLR0911 — one return per kind of annotation
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if origin is list:
        return f"list[{_type_name(get_args(annotation)[0])}]"
    if origin is dict:
        key, value = get_args(annotation)
        return f"map[{_type_name(key)}, {_type_name(value)}]"
    if annotation is type(None):
        return "null"
    if origin is not None and getattr(origin, "__name__", "") == "Literal":
        return " | ".join(repr(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation)).replace("Section", "")


def _is_duration(annotation: Any) -> bool:
    """``Duration`` or ``Duration | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_duration(a) for a in get_args(annotation))
    return get_origin(annotation) is Annotated and any(
        "parse_duration" in str(m) for m in get_args(annotation)[1:]
    )


def _duration(seconds: float) -> str:
    """``15d``, ``4h``, ``120s``: whole days or hours as such, else seconds."""
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _default(field: Any, *, duration: bool) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
        if value is None:
            return "null"
        return f"`{_duration(value)}`" if duration else f"`{value}`"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section defaults)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return "`" + ", ".join(str(v.model_dump(exclude_defaults=True)) for v in value) + "`"
        return f"`{value}`" if value not in ([], {}) else "empty"
    return "**required**"


def reference_markdown() -> str:
    """Markdown tables of every key, its type, default and description."""
    out = []
    for title, model in _SECTIONS:
        out.append(f"#### `{title}`\n")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        for name, field in model.model_fields.items():
            duration = _is_duration(field.annotation) or any(
                "Duration" in str(m) for m in field.metadata
            )
            kind = "duration" if duration else _type_name(field.annotation)
            cells = [f"`{name}`", kind, _default(field, duration=duration), field.description or ""]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        out.append("")
    return "\n".join(out)
