"""Prometheus's own configuration (``prometheus.yml``): what it scrapes, how often, where its
rules are and which Alertmanager it tells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.config import MonitoringSection
from shipyard.monitoring._rules import APP_JOB, NODE_JOB, POSTGRES_JOB, PROXY_JOB, duration

RULES_FILE = "/etc/prometheus/alerts.yml"


@dataclass(frozen=True)
class Targets:
    """Where each scraped thing answers on the environment's network (``host:port``)."""

    app: str | None  # the live name and the app's port (whichever slot is live); None: unscraped
    proxy: str  # Caddy's admin endpoint, which serves its metrics
    alertmanager: str
    prometheus: str = "localhost:9090"
    node: str | None = None
    postgres: str | None = None
    app_metrics_path: str = "/metrics"


def _job(name: str, target: str, path: str = "/metrics") -> dict[str, Any]:
    return {"job_name": name, "metrics_path": path, "static_configs": [{"targets": [target]}]}


def prometheus_config(
    monitoring: MonitoringSection, targets: Targets, *, app: str, environment: str
) -> dict[str, Any]:
    """The configuration; every series and alert carries the app and environment labels."""
    interval = duration(monitoring.scrape_interval)
    jobs = [_job(APP_JOB, targets.app, targets.app_metrics_path)] if targets.app else []
    jobs += [
        _job(PROXY_JOB, targets.proxy),
        _job("prometheus", targets.prometheus),
        _job("alertmanager", targets.alertmanager),
    ]
    if targets.node is not None:
        jobs.append(_job(NODE_JOB, targets.node))
    if targets.postgres is not None:
        jobs.append(_job(POSTGRES_JOB, targets.postgres))
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"app": app, "environment": environment},
        },
        "rule_files": [RULES_FILE],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [targets.alertmanager]}]}]},
        "scrape_configs": jobs,
    }
