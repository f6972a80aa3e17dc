"""Grafana dashboards as code: deployment, application, infrastructure and database, declared
here as panels of PromQL queries and built into Grafana's JSON model with grafana-foundation-sdk
(``dashboards``). Every query reads what shipyard's Prometheus scrapes: the proxy's metrics
(any app), the app's own (the metrics contract in the README), node exporter, the PostgreSQL
exporter, cAdvisor and the deployment metrics. ``queries`` lists them all, so a test can run each one
against a real Prometheus.

Grafana's own variables in the queries (``$__rate_interval``, ``$__range``) are what Grafana
substitutes at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.monitoring._rules import CONTAINERS_JOB

DATASOURCE_UID = "shipyard-prometheus"
_PROXY = 'job="proxy",server="shipyard"'
_RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries, stat, state-timeline
    unit: str = ""
    description: str = ""


def _q(expr: str, legend: str = "") -> tuple[Query, ...]:
    return (Query(expr, legend),)


def _quantile(q: float, bucket: str, by: str = "le") -> str:
    return f"histogram_quantile({q:g}, sum by ({by}) (rate({bucket}{_RATE})))"


_CADDY_COUNT = f"caddy_http_request_duration_seconds_count{{{_PROXY}}}"
_CADDY_ERRORS = f'caddy_http_request_duration_seconds_count{{{_PROXY},code=~"5.."}}'
_CADDY_BUCKET = f"caddy_http_request_duration_seconds_bucket{{{_PROXY}}}"

DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "shipyard-deployment": (
        "Deployment",
        (
            Panel(
                "Current version",
                _q("max by (version, commit) (shipyard_release_info)", "{{version}} ({{commit}})"),
                "stat",
            ),
            Panel(
                "Live since",
                _q("max(shipyard_live_since_timestamp_seconds) * 1000"),
                "stat",
                "dateTimeFromNow",
            ),
            Panel("Health (live app scraped)", _q('min(up{job="app"})'), "stat"),
            Panel(
                "Version over time",
                _q("max by (version) (shipyard_release_info)", "{{version}}"),
                "state-timeline",
            ),
            Panel(
                "Deploy success rate",
                _q(
                    'sum(shipyard_operations_total{operation="deploy",result="succeeded"}) / clamp_min(sum(shipyard_operations_total{operation="deploy"}), 1)'
                ),
                "stat",
                "percentunit",
                "Over the deploy history shipyard keeps.",
            ),
            Panel(
                "Rollbacks",
                _q('sum(shipyard_operations_total{operation="rollback"})'),
                "stat",
                description="Over the kept history.",
            ),
            Panel(
                "Deploys and rollbacks by result",
                _q(
                    "sum by (operation, result) (shipyard_operations_total)",
                    "{{operation}} {{result}}",
                ),
            ),
            Panel(
                "Last operation took",
                _q(
                    "max by (operation) (shipyard_last_operation_duration_seconds)", "{{operation}}"
                ),
                "stat",
                "s",
            ),
        ),
    ),
    "shipyard-application": (
        "Application",
        (
            Panel(
                "Requests per second",
                _q(f"sum(rate({_CADDY_COUNT}{_RATE}))", "requests/s"),
                unit="reqps",
            ),
            Panel(
                "Errors per second (5xx)",
                _q(f"sum(rate({_CADDY_ERRORS}{_RATE})) or vector(0)", "5xx/s"),
                unit="reqps",
            ),
            Panel(
                "Error rate",
                _q(
                    f"(sum(rate({_CADDY_ERRORS}{_RATE})) or vector(0)) / sum(rate({_CADDY_COUNT}{_RATE}))",
                    "5xx share",
                ),
                unit="percentunit",
            ),
            Panel(
                "Latency through the proxy",
                tuple(
                    Query(_quantile(q, _CADDY_BUCKET), f"p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ),
                unit="s",
            ),
            Panel(
                "Requests by route and status",
                _q(
                    f"sum by (path, status) (rate(http_requests_total{_RATE}))",
                    "{{path}} {{status}}",
                ),
                unit="reqps",
            ),
            Panel(
                "Slowest routes (p95)",
                _q(
                    f"topk(5, {_quantile(0.95, 'http_request_duration_seconds_bucket', 'le, path')})",
                    "{{path}}",
                ),
                unit="s",
            ),
            Panel("Requests in flight", _q("sum(http_requests_in_flight)", "in flight")),
            Panel(
                "Database pool",
                (
                    Query("sum(db_connections_open)", "open"),
                    Query("sum(db_connections_in_use)", "in use"),
                ),
            ),
        ),
    ),
    "shipyard-infrastructure": (
        "Infrastructure",
        (
            Panel(
                "Host CPU used",
                _q(f'1 - avg(rate(node_cpu_seconds_total{{mode="idle"}}{_RATE}))', "cpu"),
                unit="percentunit",
            ),
            Panel(
                "Host memory",
                (
                    Query("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", "used"),
                    Query("node_memory_Cached_bytes + node_memory_Buffers_bytes", "cache"),
                    Query("node_memory_SwapTotal_bytes - node_memory_SwapFree_bytes", "swap used"),
                ),
                unit="bytes",
            ),
            Panel(
                "Root filesystem free",
                _q(
                    'node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"}',
                    "free",
                ),
                unit="percentunit",
            ),
            Panel(
                "Disk I/O",
                (
                    Query(f"sum(rate(node_disk_read_bytes_total{_RATE}))", "read"),
                    Query(f"sum(rate(node_disk_written_bytes_total{_RATE}))", "written"),
                ),
                unit="Bps",
            ),
            Panel(
                "Network",
                (
                    Query(
                        f'sum(rate(node_network_receive_bytes_total{{device!="lo"}}{_RATE}))',
                        "received",
                    ),
                    Query(
                        f'sum(rate(node_network_transmit_bytes_total{{device!="lo"}}{_RATE}))',
                        "sent",
                    ),
                ),
                unit="Bps",
            ),
            Panel(
                "CPU per container",
                _q(
                    f'sum by (name) (rate(container_cpu_usage_seconds_total{{job="{CONTAINERS_JOB}"}}{_RATE}))',
                    "{{name}}",
                ),
                unit="percentunit",
                description="Every container of the environment (cAdvisor).",
            ),
            Panel(
                "Memory per container",
                _q(
                    f'sum by (name) (container_memory_working_set_bytes{{job="{CONTAINERS_JOB}"}})',
                    "{{name}}",
                ),
                unit="bytes",
                description="Working set: what the kernel would not reclaim (cAdvisor).",
            ),
            Panel(
                "Network per container",
                (
                    Query(
                        f'sum by (name) (rate(container_network_receive_bytes_total{{job="{CONTAINERS_JOB}"}}{_RATE}))',
                        "{{name}} received",
                    ),
                    Query(
                        f'sum by (name) (rate(container_network_transmit_bytes_total{{job="{CONTAINERS_JOB}"}}{_RATE}))',
                        "{{name}} sent",
                    ),
                ),
                unit="Bps",
                description="cAdvisor.",
            ),
            Panel(
                "CPU per scraped process",
                _q(f"sum by (job) (rate(process_cpu_seconds_total{_RATE}))", "{{job}}"),
                unit="percentunit",
                description="The process of each scraped target (the app, Prometheus, Alertmanager, the exporters), from its own metrics: shown without cAdvisor too.",
            ),
            Panel(
                "Memory per scraped process",
                _q("sum by (job) (process_resident_memory_bytes)", "{{job}}"),
                unit="bytes",
            ),
        ),
    ),
    "shipyard-database": (
        "Database",
        (
            Panel("Up", _q("max(pg_up)"), "stat"),
            Panel(
                "Connections",
                (
                    Query("sum by (state) (pg_stat_activity_count)", "{{state}}"),
                    Query("max(pg_settings_max_connections)", "max"),
                ),
            ),
            Panel(
                "Transactions per second",
                (
                    Query(f"sum(rate(pg_stat_database_xact_commit{_RATE}))", "commits"),
                    Query(f"sum(rate(pg_stat_database_xact_rollback{_RATE}))", "rollbacks"),
                ),
                unit="ops",
            ),
            Panel(
                "Cache hit ratio",
                _q(
                    "sum(pg_stat_database_blks_hit) / clamp_min(sum(pg_stat_database_blks_hit) + sum(pg_stat_database_blks_read), 1)",
                    "hit ratio",
                ),
                unit="percentunit",
            ),
            Panel(
                "Database sizes",
                _q("sum by (datname) (pg_database_size_bytes)", "{{datname}}"),
                unit="bytes",
            ),
            Panel(
                "Longest running transaction",
                _q("max(pg_stat_activity_max_tx_duration)", "longest"),
                unit="s",
            ),
        ),
    ),
}


def queries() -> list[tuple[str, str, str]]:
    """Every query of every dashboard: (dashboard uid, panel title, PromQL)."""
    return [
        (uid, panel.title, query.expr)
        for uid, (_, panels) in DASHBOARDS.items()
        for panel in panels
        for query in panel.queries
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards' JSON models, by uid."""
    import json

    from grafana_foundation_sdk.builders import (
        dashboard,
        prometheus,
        stat,
        statetimeline,
        timeseries,
    )
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
    builders: dict[str, Any] = {
        "timeseries": timeseries.Panel,
        "stat": stat.Panel,
        "state-timeline": statetimeline.Panel,
    }
    built: dict[str, dict[str, Any]] = {}
    for uid, (title, panels) in DASHBOARDS.items():
        board = (
            dashboard.Dashboard(title)
            .uid(uid)
            .tags(["shipyard"])
            .refresh("30s")
            .time("now-6h", "now")
            .editable()
        )
        for index, panel in enumerate(panels):
            body: Any = builders[panel.kind]().title(panel.title).datasource(source)
            body = body.grid_pos(_position(index, panel.kind))
            if panel.unit:
                body = body.unit(panel.unit)
            if panel.description:
                body = body.description(panel.description)
            for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
                target = prometheus.Dataquery().expr(query.expr).ref_id(ref).datasource(source)
                if query.legend:
                    target = target.legend_format(query.legend)
                body = body.with_target(target)
            board = board.with_panel(body)
        built[uid] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return built


def _position(index: int, kind: str) -> Any:
    from grafana_foundation_sdk.models.dashboard import GridPos

    height = 4 if kind == "stat" else 8
    return GridPos(h=height, w=12, x=12 * (index % 2), y=8 * (index // 2))
