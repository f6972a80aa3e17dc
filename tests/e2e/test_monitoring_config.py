"""The monitoring files shipyard renders, checked by the tools that read them, in the images the
stack runs: ``promtool test rules`` proves every alert fires on the series it is about and stays
quiet otherwise (tests/monitoring/alerts_test.yml); ``promtool check config``/``check rules``
and ``amtool check-config`` accept every rendered file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from shipyard.config import (
    AlertsSection,
    MonitoringSection,
    NotificationsSection,
    NtfySink,
    WebhookSink,
)
from shipyard.monitoring import Targets, alert_rules, alertmanager_config, prometheus_config

PROMETHEUS = "shipyard-local/prometheus:2"
ALERTMANAGER = "shipyard-local/alertmanager:0"
CASES = Path(__file__).parents[1] / "monitoring" / "alerts_test.yml"

pytestmark = pytest.mark.usefixtures("docker_engine")


def _tool(image: str, entrypoint: str, mount: Path, target: str, *args: str) -> str:
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--user",
            "root",
            "--network",
            "none",
            "-v",
            f"{mount}:{target}:ro",
            "--entrypoint",
            entrypoint,
            image,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _write(path: Path, document: Any) -> None:
    YAML(typ="safe", pure=True).dump(document, path)


def _rules() -> dict[str, Any]:
    return alert_rules(AlertsSection(snapshot_max_age="1d"), database=True, node=True)


def test_every_alert_fires_and_stays_quiet_in_promtool_cases(tmp_path: Path) -> None:
    _write(tmp_path / "alerts.yml", _rules())
    shutil.copy(CASES, tmp_path / CASES.name)

    output = _tool(PROMETHEUS, "/bin/promtool", tmp_path, "/w", "test", "rules", f"/w/{CASES.name}")

    assert "SUCCESS" in output, output
    # … and the cases cover every rule both ways (a rule without cases would pass silently).
    cases = YAML(typ="safe", pure=True).load(CASES)["tests"]
    firing = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in cases for c in t["alert_rule_test"] if not c["exp_alerts"]}
    alerts = {r["alert"] for g in _rules()["groups"] for r in g["rules"] if "alert" in r}
    assert alerts - firing == set(), "rules never shown firing"
    assert alerts - quiet == set(), "rules never shown quiet"


def test_promtool_and_amtool_accept_every_rendered_file(tmp_path: Path) -> None:
    monitoring = MonitoringSection(
        enabled=True, alertmanager={"group_wait": "10s", "repeat_interval": "1h"}
    )
    notifications = NotificationsSection(
        sinks=[
            NtfySink(kind="ntfy", server="http://ntfy:80", topic="alerts", token_env="NTFY_TOKEN"),
            WebhookSink(kind="webhook", url="http://hooks:8000/in", secret_env="HOOK_SECRET"),
        ]
    )
    prometheus_dir, alertmanager_dir = tmp_path / "prometheus", tmp_path / "alertmanager"
    (alertmanager_dir / "secrets").mkdir(parents=True)
    prometheus_dir.mkdir()
    targets = Targets(
        app="shop-production-live:8080",
        proxy="shop-production-proxy:2019",
        alertmanager="shop-production-alertmanager:9093",
        node="shop-production-node-exporter:9100",
        postgres="shop-production-postgres-exporter:9187",
    )
    _write(
        prometheus_dir / "prometheus.yml",
        prometheus_config(monitoring, targets, app="shop", environment="production"),
    )
    _write(prometheus_dir / "alerts.yml", _rules())
    files = alertmanager_config(monitoring, notifications)
    _write(alertmanager_dir / "alertmanager.yml", files.config)
    for name in files.credentials:
        (alertmanager_dir / "secrets" / name).write_text("tk_notarealtoken\n")

    config = _tool(
        PROMETHEUS,
        "/bin/promtool",
        prometheus_dir,
        "/etc/prometheus",
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
    )
    rule_count = sum(len(g["rules"]) for g in _rules()["groups"])
    assert "valid prometheus config file syntax" in config, config
    assert f"SUCCESS: {rule_count} rules found" in config, config
    rules = _tool(
        PROMETHEUS,
        "/bin/promtool",
        prometheus_dir,
        "/etc/prometheus",
        "check",
        "rules",
        "/etc/prometheus/alerts.yml",
    )
    assert f"SUCCESS: {rule_count} rules found" in rules, rules
    checked = _tool(
        ALERTMANAGER,
        "/bin/amtool",
        alertmanager_dir,
        "/etc/alertmanager",
        "check-config",
        "/etc/alertmanager/alertmanager.yml",
    )
    assert "SUCCESS" in checked and "2 receivers" in checked, checked
