"""Monitoring: what Prometheus and Alertmanager run with, rendered from ``monitoring:``.

- ``prometheus_config``: the scrape jobs (the live app through the live name, the proxy's metrics,
  the exporters, Prometheus and Alertmanager themselves), the rules file and the Alertmanager.
- ``alert_rules``: recording rules and alerts (error rate, app and database down, targets
  missing, latency regression after a deploy, failed deploys, disk, memory, snapshot age), with
  the thresholds of ``monitoring.alerts``. ``tests/monitoring/alerts_test.yml`` holds the
  ``promtool test rules`` cases proving each one fires and stays quiet.
- ``alertmanager_config``: routing to the environment's ntfy topics and webhooks.
- ``deployment_metrics``: the deployment history as metrics, for node exporter's textfile
  collector.
- ``dashboards``: Grafana's dashboards (deployment, application, infrastructure, database),
  built with grafana-foundation-sdk from the panels and queries declared in ``_dashboards``.

The files are plain data; running the stack is the provider's business.
"""

from __future__ import annotations

from shipyard.monitoring._alertmanager import AlertmanagerFiles, alertmanager_config
from shipyard.monitoring._dashboards import DASHBOARDS, DATASOURCE_UID, dashboards, queries
from shipyard.monitoring._metrics import (
    FILE_NAME,
    TEXTFILE_DIR,
    deployment_metrics,
    publish_deployment_metrics,
    republish_deployment_metrics,
)
from shipyard.monitoring._prometheus import Targets, prometheus_config
from shipyard.monitoring._rules import alert_rules, duration

__all__ = [
    "DASHBOARDS",
    "DATASOURCE_UID",
    "FILE_NAME",
    "TEXTFILE_DIR",
    "AlertmanagerFiles",
    "Targets",
    "alert_rules",
    "alertmanager_config",
    "dashboards",
    "deployment_metrics",
    "duration",
    "prometheus_config",
    "publish_deployment_metrics",
    "queries",
    "republish_deployment_metrics",
]
