"""The alert rules shipyard renders for Prometheus (``alerts.yml``).

Every rule reads series that exist for any app: the proxy's own metrics (Caddy counts every
request, whatever the app exposes), ``up`` of each scrape job, the exporters', and the deployment
metrics shipyard writes for node exporter's textfile collector (``_metrics``). Thresholds come from
``monitoring.alerts``; each rule carries ``severity`` (``critical`` pages, ``warning`` informs).
"""

from __future__ import annotations

from typing import Any

from shipyard.config import AlertsSection

# Job names of the scrape configs (``_prometheus``); the rules select on them.
APP_JOB = "app"
PROXY_JOB = "proxy"
NODE_JOB = "node"
POSTGRES_JOB = "postgres"
CONTAINERS_JOB = "containers"

P95 = "shipyard:proxy_request_duration_seconds:p95_5m"
REQUEST_RATE = "shipyard:proxy_requests:rate5m"
# LatencyRegression compares the p95 of the 5 minutes after a switch with the p95 this long
# before: the previous version's, while the switch is more recent than that.
BASELINE_OFFSET = "30m"
_BASELINE_S = 1800
_SETTLE_S = 300  # the p95 window holds only the new version's requests from then on
_MIN_RATE = 0.1  # requests/s: below it a p95 says nothing


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (``90s``, ``2m``, ``15d``)."""
    whole = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s" if whole == seconds else f"{round(seconds * 1000)}ms"


def _alert(
    name: str, expr: str, wait: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": wait,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def _proxy_requests(match: str = "") -> str:
    return (
        f'caddy_http_request_duration_seconds_count{{job="{PROXY_JOB}",server="shipyard"{match}}}'
    )


def alert_rules(
    alerts: AlertsSection, *, database: bool, node: bool, app: bool = True
) -> dict[str, Any]:
    """The rule groups: recording rules, then the alerts (``database``: the app has a
    PostgreSQL watched by the exporter; ``node``: node exporter runs; ``app``: Prometheus
    scrapes the app's own metrics)."""
    recording = [
        {
            "record": P95,
            "expr": (
                "histogram_quantile(0.95, sum by (le) (rate("
                f'caddy_http_request_duration_seconds_bucket{{job="{PROXY_JOB}",server="shipyard"}}[5m])))'
            ),
        },
        {"record": REQUEST_RATE, "expr": f"sum(rate({_proxy_requests()}[5m]))"},
    ]
    since_switch = "(time() - max(shipyard_live_since_timestamp_seconds))"
    errors = _proxy_requests(',code=~"5.."')
    rules = [
        _alert(
            "HighErrorRate",
            f"sum(rate({errors}[1m])) / sum(rate({_proxy_requests()}[1m])) > {alerts.error_rate:g}",
            duration(alerts.error_rate_for),
            "critical",
            "More than {{ $value | humanizePercentage }} of requests fail",
            f"Over {alerts.error_rate:.0%} of the requests through the proxy answered 5xx for {duration(alerts.error_rate_for)}.",
        ),
        _alert(
            "TargetDown",
            f'up{{job!="{APP_JOB}"}} == 0',
            "2m",
            "warning",
            "{{ $labels.job }} is not scraped",
            "Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}).",
        ),
        _alert(
            "LatencyRegression",
            f"{P95} > {1 + alerts.latency_regression:g} * ({P95} offset {BASELINE_OFFSET})"
            f" and on() {since_switch} > {_SETTLE_S} and on() {since_switch} < {_BASELINE_S}"
            f" and on() {REQUEST_RATE} > {_MIN_RATE:g}",
            "1m",
            "warning",
            "p95 latency {{ $value | humanizeDuration }} since the last deploy",
            f"The p95 latency through the proxy is more than {alerts.latency_regression:.0%} above the previous version's "
            f'({{{{ with query "{P95} offset {BASELINE_OFFSET}" }}}}{{{{ . | first | value | humanizeDuration }}}}{{{{ end }}}}).',
        ),
        _alert(
            "DeployFailed",
            'increase(shipyard_operations_total{operation="deploy",result=~"failed|rolled_back"}[15m]) > 0',
            "0s",
            "warning",
            "A deploy {{ $labels.result }}",
            "A deploy of {{ $labels.app }} to {{ $labels.environment }} {{ $labels.result }} in the last 15 minutes; the previous version serves.",
        ),
    ]
    if app:
        rules += [
            _alert(
                "AppDown",
                f'up{{job="{APP_JOB}"}} == 0',
                duration(alerts.down_for),
                "critical",
                "The live app does not answer its metrics scrape",
                "Prometheus cannot scrape the live slot's /metrics: the app is down or not reachable on its network.",
            ),
            _alert(
                "AppTargetMissing",
                f'absent(up{{job="{APP_JOB}"}})',
                "5m",
                "critical",
                "Prometheus does not scrape the app",
                "No scrape target for the app: the monitoring configuration does not match the environment.",
            ),
        ]
    if database:
        rules.append(
            _alert(
                "DatabaseDown",
                f'pg_up{{job="{POSTGRES_JOB}"}} == 0 or up{{job="{POSTGRES_JOB}"}} == 0',
                duration(alerts.down_for),
                "critical",
                "PostgreSQL does not answer",
                "The PostgreSQL exporter cannot reach the database (or is itself down).",
            )
        )
    if node:
        rules += [
            _alert(
                "DiskSpaceLow",
                f'node_filesystem_avail_bytes{{job="{NODE_JOB}",mountpoint="/"}} / node_filesystem_size_bytes{{job="{NODE_JOB}",mountpoint="/"}} < {alerts.disk_free:g}',
                "5m",
                "warning",
                "{{ $value | humanizePercentage }} of the disk is free",
                f"The host's root filesystem has less than {alerts.disk_free:.0%} free.",
            ),
            _alert(
                "HighMemoryUsage",
                f'1 - node_memory_MemAvailable_bytes{{job="{NODE_JOB}"}} / node_memory_MemTotal_bytes{{job="{NODE_JOB}"}} > {alerts.memory_used:g}',
                "10m",
                "warning",
                "{{ $value | humanizePercentage }} of the memory is used",
                f"The host uses more than {alerts.memory_used:.0%} of its memory.",
            ),
        ]
    if alerts.snapshot_max_age is not None:
        rules.append(
            _alert(
                "SnapshotTooOld",
                f"time() - max(shipyard_last_snapshot_timestamp_seconds) > {alerts.snapshot_max_age:g}",
                "0s",
                "warning",
                "The newest database snapshot is {{ $value | humanizeDuration }} old",
                f"No database snapshot in the last {duration(alerts.snapshot_max_age)}.",
            )
        )
    return {
        "groups": [
            {"name": "shipyard-recording", "rules": recording},
            {"name": "shipyard-alerts", "rules": rules},
        ]
    }
