"""The monitoring stack on the real engine: a deploy with ``monitoring.enabled`` brings up
Prometheus, Alertmanager, node exporter, the PostgreSQL exporter and cAdvisor (stand-ins of the
official images built from Debian's packages and, for cAdvisor, its library) on the environment's network; every target is scraped; under load, every
query of every Grafana dashboard returns data from that Prometheus (Grafana itself is in no
registry this machine reaches, so it does not run here); a redeploy and a rollback leave the
stack's containers running untouched while the deployment metrics follow them; ``destroy
--volumes`` removes the stack and its data."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from datetime import datetime
from typing import Any

import httpx

from shipyard.monitoring import queries
from tests.e2e.conftest import AppUnderTest, git
from tests.e2e.ports import reserve_port
from tests.example_app import MONITORING_IMAGES

JOBS = {"app", "proxy", "prometheus", "alertmanager", "node", "postgres", "containers"}


class Traffic:
    """GET requests to ``urls`` through the proxy, in turn, a few a second, until stopped."""

    def __init__(self, *urls: str) -> None:
        self.urls = urls
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                for url in self.urls:
                    try:
                        client.get(url)
                    except httpx.HTTPError:
                        pass
                self.stop.wait(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql}, timeout=10
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _eventually(what: str, probe: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:g}s; last: {last!r}")


def _started_at(containers: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.Name}} {{.State.StartedAt}}", *containers],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.lstrip("/").split(" ", 1) for line in out.splitlines())


def _operations(port: int, operation: str) -> int:
    found = _query(port, f'shipyard_operations_total{{operation="{operation}",result="succeeded"}}')
    return int(float(found[0]["value"][1])) if found else -1


def _every_dashboard_query_returns_data(app: AppUnderTest, port: int) -> None:
    traffic = Traffic(app.url("/"), app.url("/api/v1/events"))
    try:
        deadline = time.monotonic() + 120
        missing = list(queries())
        while missing and time.monotonic() < deadline:
            missing = [
                (uid, title, expr)
                for uid, title, expr in missing
                if not _query(port, expr.replace("$__rate_interval", "30s"))
            ]
            if missing:
                time.sleep(1)
    finally:
        traffic.close()
    assert missing == [], "dashboard queries without data"


def test_a_deploy_brings_the_stack_up_and_later_operations_leave_it_running(
    app: AppUnderTest,
) -> None:
    prometheus_port, alertmanager_port = reserve_port(), reserve_port()

    def change(document: Any) -> None:
        document["monitoring"] = {
            "enabled": True,
            "scrape_interval": "1s",
            "prometheus_port": prometheus_port,
            "alertmanager_port": alertmanager_port,
            "images": MONITORING_IMAGES,
            "grafana": {"enabled": False},
        }

    app.edit(change)
    app.commit("monitor it")
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    assert "monitoring: started" in " ".join(deployed.stderr.split()), deployed.stderr

    # Every target is scraped, the app through the live name.
    def all_up() -> bool:
        result = app.shipyard("monitoring", "status", "development", "--json")
        status = json.loads(result.stdout)
        jobs = {t["job"]: t["health"] for t in status["targets"]}
        return result.returncode == 0 and set(jobs) == JOBS and set(jobs.values()) == {"up"}

    _eventually("every target up", all_up)
    assert _eventually("deploys counted", lambda: _operations(prometheus_port, "deploy") == 1)
    _every_dashboard_query_returns_data(app, prometheus_port)
    # cAdvisor's series name this environment's containers, and only them.
    ours = set(subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}",
         "--filter", f"label=org.shipyard.app={app.name}",
         "--filter", "label=org.shipyard.environment=development"],
        capture_output=True, text=True, check=True,
    ).stdout.split())  # fmt: skip
    assert {f"{app.name}-development-db", f"{app.name}-development-cadvisor"} <= ours

    def measured() -> set[str]:
        series = _query(prometheus_port, 'container_memory_working_set_bytes{job="containers"}')
        return {s["metric"].get("name", "") for s in series}

    _eventually("every container measured", lambda: ours <= measured())
    assert measured() <= ours | {""}, measured() - ours
    stack = [f"{app.name}-development-{c}" for c in
             ("prometheus", "alertmanager", "node-exporter", "postgres-exporter", "cadvisor")]  # fmt: skip
    started = _started_at(stack)

    # A redeploy and a rollback: the stack keeps running, the metrics follow.
    app.commit("a second version")
    redeployed = app.shipyard("deploy", "development", "--no-watch")
    assert redeployed.returncode == 0, redeployed.stderr
    assert "every container was running" in " ".join(redeployed.stderr.split())
    _eventually("two deploys counted", lambda: _operations(prometheus_port, "deploy") == 2)
    rolled = app.shipyard("rollback", "development", "--yes", "--no-watch")
    assert rolled.returncode == 0, rolled.stderr
    _eventually("the rollback counted", lambda: _operations(prometheus_port, "rollback") == 1)
    assert _started_at(stack) == started
    assert _query(prometheus_port, 'up{job="app"}')[0]["value"][1] == "1"
    # Rules are loaded and Alertmanager is the one Prometheus tells.
    rules = httpx.get(f"http://127.0.0.1:{prometheus_port}/api/v1/rules", timeout=10).json()
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"HighErrorRate", "DatabaseDown", "DeployFailed"} <= names
    managers = httpx.get(
        f"http://127.0.0.1:{prometheus_port}/api/v1/alertmanagers", timeout=10
    ).json()["data"]["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [
        f"http://{app.name}-development-alertmanager:9093/api/v2/alerts"
    ]

    # A snapshot taken by hand reaches the deployment metrics (SnapshotTooOld reads it).
    created = app.shipyard("snapshot", "create", "development", "--json")
    assert created.returncode == 0, created.stderr
    taken = datetime.fromisoformat(json.loads(created.stdout)["created_at"].replace("Z", "+00:00"))

    def snapshot_seen() -> float:
        found = _query(prometheus_port, "shipyard_last_snapshot_timestamp_seconds")
        return float(found[0]["value"][1]) if found else 0.0

    _eventually("the snapshot's time", lambda: snapshot_seen() == taken.timestamp())

    # destroy --volumes removes the stack and its data.
    destroyed = app.shipyard("destroy", "development", "--yes", "--volumes")
    assert destroyed.returncode == 0, destroyed.stderr
    left = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"name={app.name}-development-"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert left == []
    volumes = subprocess.run(
        ["docker", "volume", "ls", "--format", "{{.Name}}", "--filter", f"name={app.name}-"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert volumes == []


def test_published_uis_answer_over_https_behind_basic_auth_only(app: AppUnderTest) -> None:
    https_port = reserve_port()
    app_domain, prom_domain, am_domain = (f"{p}-{app.name}.test" for p in ("app", "prom", "am"))
    password = f"pw-{secrets.token_hex(12)}"
    with (app.dir / ".env.development").open("a") as env_file:
        env_file.write(f"MONITORING_PASSWORD={password}\n")

    def change(document: Any) -> None:
        document["proxy"].update(
            {"domains": [app_domain], "https_port": https_port, "tls": "internal"}
        )
        document["monitoring"] = {
            "enabled": True,
            "prometheus_port": reserve_port(),
            "alertmanager_port": reserve_port(),
            "images": MONITORING_IMAGES,
            "grafana": {"enabled": False},
            "publish": {"prometheus": prom_domain, "alertmanager": am_domain, "user": "ops"},
        }

    app.edit(change)
    app.commit("monitoring published under domains")
    deployed = app.shipyard("deploy", "development", "--no-watch")
    assert deployed.returncode == 0, deployed.stderr

    def get(domain: str, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
        with httpx.Client(verify=False, trust_env=False, timeout=10) as client:  # noqa: S501 — the proxy's internal CA; trust is not the subject
            return client.get(
                f"https://127.0.0.1:{https_port}{path}",
                headers={"Host": domain},
                extensions={"sni_hostname": domain},
                auth=auth,
            )

    for domain in (prom_domain, am_domain):
        assert get(domain, "/-/ready").status_code == 401
        assert get(domain, "/-/ready", ("ops", "wrong")).status_code == 401
        ready = _eventually(
            f"{domain} through the proxy",
            lambda domain=domain: get(domain, "/-/ready", ("ops", password)).status_code == 200,
        )
        assert ready
    # The app's own domain still reaches the app, and the password is in no rendered file.
    assert get(app_domain, "/version").json()["git_commit"] == git(app.dir, "rev-parse", "HEAD")
    proxy_dir = app.state_dir / app.name / "development" / "proxy"
    assert password not in (proxy_dir / "caddy.json").read_text()
    hashed = (proxy_dir / "monitoring.hash").read_text()
    # A redeploy keeps the hash: the proxy's config does not change under it.
    app.commit("again")
    again = app.shipyard("deploy", "development", "--no-watch")
    assert again.returncode == 0, again.stderr
    assert (proxy_dir / "monitoring.hash").read_text() == hashed
    assert get(prom_domain, "/-/ready", ("ops", password)).status_code == 200
