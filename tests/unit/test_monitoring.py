"""The monitoring files rendered from ``monitoring:`` (promtool and amtool check them in
tests/e2e/test_monitoring_config.py; here, what they say)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from shipyard.config import (
    AlertsSection,
    MonitoringSection,
    NotificationsSection,
    NtfySink,
    ProxySection,
    WebhookSink,
)
from shipyard.monitoring import (
    DATASOURCE_UID,
    Targets,
    alert_rules,
    alertmanager_config,
    dashboards,
    deployment_metrics,
    duration,
    prometheus_config,
    queries,
)
from shipyard.proxy import Published, render_caddy, upstreams_of
from shipyard.state import Current, HistoryEntry, Release

NTFY = NtfySink(kind="ntfy", server="https://ntfy.example/", topic="ops", token_env="NTFY_TOKEN")
HOOK = WebhookSink(kind="webhook", name="pager", url="https://hooks.example/in", secret_env="S")
TARGETS = Targets(app="shop-production-live:8080", proxy="p:2019", alertmanager="am:9093")


def _alerts(rules: dict[str, object]) -> dict[str, dict[str, object]]:
    groups = rules["groups"]
    assert isinstance(groups, list)
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(15, "15s"), (90, "90s"), (120, "2m"), (14400, "4h"), (1296000, "15d"), (0.5, "500ms")],
)
def test_durations_are_written_the_way_prometheus_reads_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_thresholds_reach_the_rules() -> None:
    rules = _alerts(
        alert_rules(
            AlertsSection(
                error_rate=0.2, error_rate_for="5m", latency_regression=1.0, disk_free=0.25
            ),
            database=True,
            node=True,
        )
    )

    assert rules["HighErrorRate"]["expr"].endswith("> 0.2")
    assert rules["HighErrorRate"]["for"] == "5m"
    assert "> 2 * (shipyard:proxy_request_duration_seconds:p95_5m offset 30m)" in str(
        rules["LatencyRegression"]["expr"]
    )
    assert str(rules["DiskSpaceLow"]["expr"]).endswith("< 0.25")
    assert "SnapshotTooOld" not in rules  # no snapshot_max_age: no such rule


def test_rules_about_what_does_not_run_are_left_out() -> None:
    rules = _alerts(alert_rules(AlertsSection(), database=False, node=False))

    assert {"DatabaseDown", "DiskSpaceLow", "HighMemoryUsage"}.isdisjoint(rules)
    assert {"HighErrorRate", "AppDown", "AppTargetMissing", "LatencyRegression"} <= set(rules)
    assert all(r["labels"]["severity"] in {"critical", "warning"} for r in rules.values())


def test_prometheus_scrapes_the_live_name_and_labels_everything_with_app_and_environment() -> None:
    config = prometheus_config(
        MonitoringSection(scrape_interval="30s"),
        Targets(**{**TARGETS.__dict__, "node": "n:9100"}),
        app="shop",
        environment="production",
    )

    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {
        "app": ["shop-production-live:8080"],
        "proxy": ["p:2019"],
        "prometheus": ["localhost:9090"],
        "alertmanager": ["am:9093"],
        "node": ["n:9100"],
    }
    assert config["global"]["scrape_interval"] == "30s"
    assert config["global"]["external_labels"] == {"app": "shop", "environment": "production"}


def test_ntfy_gets_a_readable_push_with_priority_by_severity_and_the_token_from_a_file() -> None:
    files = alertmanager_config(MonitoringSection(), NotificationsSection(sinks=[NTFY, HOOK]))

    receivers = {r["name"]: r["webhook_configs"] for r in files.config["receivers"]}
    ntfy = {name: hooks[0] for name, hooks in receivers.items()}
    for severity, priority in (("critical", "5"), ("warning", "3")):
        url = urlsplit(ntfy[severity]["url"])
        query = parse_qs(url.query)
        assert (url.netloc, url.path) == ("ntfy.example", "/ops")
        assert query["tpl"] == ["yes"] and query["p"] == [priority]
        assert "{{.commonLabels.alertname}}" in query["t"][0]
        assert ntfy[severity]["send_resolved"] is True
        assert ntfy[severity]["http_config"]["authorization"]["credentials_file"] == (
            "/etc/alertmanager/secrets/ntfy.token"
        )
    assert files.credentials == {"ntfy.token": "NTFY_TOKEN"}  # the key's name, never its value
    assert receivers["critical"][1] == {"url": "https://hooks.example/in", "send_resolved": True}
    route = files.config["route"]
    assert route["routes"] == [{"matchers": ['severity="critical"'], "receiver": "critical"}]
    assert (route["group_wait"], route["repeat_interval"]) == ("30s", "4h")


def test_alerts_go_only_to_the_chosen_sinks() -> None:
    monitoring = MonitoringSection(alertmanager={"sinks": ["pager"]})

    files = alertmanager_config(monitoring, NotificationsSection(sinks=[NTFY, HOOK]))

    for receiver in files.config["receivers"]:
        assert [h["url"] for h in receiver["webhook_configs"]] == ["https://hooks.example/in"]
    assert files.credentials == {}


def test_without_sinks_alerts_are_kept_in_alertmanager_only() -> None:
    files = alertmanager_config(MonitoringSection(), NotificationsSection())

    assert files.config["receivers"] == [{"name": "critical"}, {"name": "warning"}]


def _entry(action: str, result: str, started: str, duration_s: float = 3.0) -> HistoryEntry:
    return HistoryEntry(
        deployment_id=started,
        action=action,
        result=result,
        version="1.2.0",
        commit="abc1234",
        slot="blue",
        started_at=started,
        duration_s=duration_s,
        by="ci@runner",
    )


def test_deployment_metrics_count_operations_by_result_and_name_the_live_release() -> None:
    history = [
        _entry("deploy", "succeeded", "2026-12-01T10:00:00Z"),
        _entry("deploy", "rolled_back", "2026-12-01T11:00:00Z"),
        _entry("rollback", "succeeded", "2026-12-01T12:00:00Z", 2.5),
        _entry("deploy", "succeeded", "2026-12-01T13:00:00Z", 4.0),
        _entry("rotate-password", "succeeded", "2026-12-01T14:00:00Z"),
    ]
    release = Release(
        id="r1",
        version='1.2.0 "beta"',
        commit="abc1234",
        image="shop:1",
        image_id="sha256:1",
        slot="green",
        migration_version=3,
        created_at="2026-12-01T13:00:00Z",
        deployed_by="ci",
    )
    current = Current(slot="green", release_id="r1", switched_at="2026-12-01T13:00:05Z")

    text = deployment_metrics(
        "shop", "production", history, current, release, last_snapshot_at="2026-12-01T12:59:00Z"
    )

    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    base = 'app="shop",environment="production"'
    assert (
        samples[f'shipyard_operations_total{{{base},operation="deploy",result="succeeded"}}'] == "2"
    )
    assert (
        samples[f'shipyard_operations_total{{{base},operation="deploy",result="rolled_back"}}']
        == "1"
    )
    assert samples[f'shipyard_operations_total{{{base},operation="deploy",result="failed"}}'] == "0"
    assert (
        samples[f'shipyard_operations_total{{{base},operation="rollback",result="succeeded"}}']
        == "1"
    )
    assert samples[f'shipyard_last_operation_duration_seconds{{{base},operation="deploy"}}'] == "4"
    assert samples[f'shipyard_last_operation_success{{{base},operation="deploy"}}'] == "1"
    info = (
        f'shipyard_release_info{{{base},version="1.2.0 \\"beta\\"",commit="abc1234",slot="green"}}'
    )
    assert samples[info] == "1"
    assert float(samples[f"shipyard_live_since_timestamp_seconds{{{base}}}"]) == 1796130005.0
    assert float(samples[f"shipyard_last_snapshot_timestamp_seconds{{{base}}}"]) == 1796129940.0
    assert "rotate-password" not in text
    assert "# TYPE shipyard_operations_total counter" in text


def test_dashboards_cover_deployments_the_app_the_host_and_the_database() -> None:
    built = dashboards()

    assert {model["title"] for model in built.values()} == {
        "Deployment",
        "Application",
        "Infrastructure",
        "Database",
    }
    for uid, model in built.items():
        assert model["uid"] == uid
        for panel in model["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
    every = [expr for _, _, expr in queries()]
    assert len(every) == len(set(every))
    assert any("histogram_quantile(0.99" in expr for expr in every)
    assert any("shipyard_release_info" in expr for expr in every)


def test_the_dashboards_load_into_the_sdks_types_without_loss() -> None:
    for model in dashboards().values():
        loaded = Dashboard.from_json(model)
        assert json.loads(json.dumps(loaded, cls=JSONEncoder)) == model


def test_an_app_without_metrics_is_not_scraped_and_has_no_app_rules() -> None:
    config = prometheus_config(
        MonitoringSection(app_metrics_path=None),
        Targets(**{**TARGETS.__dict__, "app": None}),
        app="shop",
        environment="production",
    )
    rules = _alerts(alert_rules(AlertsSection(), database=False, node=False, app=False))

    assert "app" not in {job["job_name"] for job in config["scrape_configs"]}
    assert {"AppDown", "AppTargetMissing"}.isdisjoint(rules)
    assert {"HighErrorRate", "TargetDown", "LatencyRegression"} <= set(rules)


def test_published_uis_come_first_behind_basic_auth_and_are_not_the_apps_upstreams() -> None:
    proxy = ProxySection(domains=["shop.example.com"], tls="internal")
    ui = Published("prom.example.com", "shop-production-prometheus:9090", "ops", "$2b$10$hash")

    config = render_caddy(proxy, ("live", "switching", "slots"), 8080, published=(ui,))

    routes = config["apps"]["http"]["servers"]["shipyard"]["routes"]
    first = routes[0]
    assert first["match"] == [{"host": ["prom.example.com"]}]
    auth, upstream = first["handle"][0], first["handle"][-1]
    assert auth["handler"] == "authentication"
    assert auth["providers"]["http_basic"]["accounts"] == [
        {"username": "ops", "password": "$2b$10$hash"}
    ]
    assert upstream["upstreams"] == [{"dial": "shop-production-prometheus:9090"}]
    assert all(r["match"][0]["host"] == ["shop.example.com"] for r in routes[1:])
    assert upstreams_of(config) == ["live:8080", "switching:8080", "slots:8080"]
    [policy] = config["apps"]["tls"]["automation"]["policies"]
    assert policy["subjects"] == ["shop.example.com", "prom.example.com"]


def test_container_metrics_are_kept_for_this_environments_containers_only() -> None:
    config = prometheus_config(
        MonitoringSection(),
        Targets(**{**TARGETS.__dict__, "containers": "c:8080"}),
        app="shop.v2",
        environment="production",
    )

    job = next(j for j in config["scrape_configs"] if j["job_name"] == "containers")
    assert job["static_configs"] == [{"targets": ["c:8080"]}]
    keep, drop = job["metric_relabel_configs"]
    assert keep["action"] == "keep"
    assert keep["source_labels"] == [
        "container_label_org_shipyard_app",
        "container_label_org_shipyard_environment",
    ]
    # Prometheus anchors the regex at both ends; the app name's dot is literal.
    assert re.fullmatch(keep["regex"], "shop.v2;production")
    for other in ("shop.v2;production2", "shopxv2;production", "shop.v2;", ";"):
        assert not re.fullmatch(keep["regex"], other), other
    assert drop == {"regex": "id|container_label_.*", "action": "labeldrop"}
