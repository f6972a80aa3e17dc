"""Prometheus's own configuration (``prometheus.yml``): what it scrapes, how often, where its
rules are and which Alertmanager it tells."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shipyard.config import MonitoringSection
from shipyard.monitoring._rules import (
    APP_JOB,
    CONTAINERS_JOB,
    NODE_JOB,
    POSTGRES_JOB,
    PROXY_JOB,
    duration,
)

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
    containers: str | None = None  # cAdvisor
    app_metrics_path: str = "/metrics"


# The Docker labels every container of an environment carries, as cAdvisor names them on its
# series (``container_label_`` and the label with dots as underscores).
CONTAINER_APP_LABEL = "container_label_org_shipyard_app"
CONTAINER_ENVIRONMENT_LABEL = "container_label_org_shipyard_environment"


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
    if targets.containers is not None:
        # cAdvisor sees every container on the host: keep this environment's, named by
        # container name and image (the cgroup path and Docker labels say nothing more).
        containers = _job(CONTAINERS_JOB, targets.containers)
        containers["metric_relabel_configs"] = [
            {
                "source_labels": [CONTAINER_APP_LABEL, CONTAINER_ENVIRONMENT_LABEL],
                "regex": f"{re.escape(app)};{re.escape(environment)}",
                "action": "keep",
            },
            {"regex": "id|container_label_.*", "action": "labeldrop"},
        ]
        jobs.append(containers)
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
