"""The monitoring stack of an environment: its own compose project ``<app>-<env>-monitoring`` on
the environment's network (Prometheus, Alertmanager, node exporter and, with a database of its
own, the PostgreSQL exporter), brought up by ``shipyard monitoring up`` and after each deploy
when ``monitoring.enabled``. An app deploy or rollback never restarts it: ``up`` leaves unchanged
containers running and has Prometheus and Alertmanager reload a changed configuration.

Its files live under ``<state>/monitoring/``: the rendered configurations (readable by the
containers, which run as nobody; none holds a secret), the PostgreSQL exporter's env file and
Alertmanager's credential files (mode 0600; Alertmanager runs as root to read them), and the
deployment metrics node exporter serves.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import httpx

from shipyard.errors import MonitoringError
from shipyard.monitoring import (
    DATASOURCE_UID,
    TEXTFILE_DIR,
    Targets,
    alert_rules,
    alertmanager_config,
    dashboards,
    prometheus_config,
    publish_deployment_metrics,
)
from shipyard.providers.docker._base import StepsBase
from shipyard.providers.docker._env import managed_database
from shipyard.providers.docker._names import LABEL
from shipyard.providers.docker._stack import _LOGGING, to_yaml
from shipyard.proxy import ADMIN_PORT
from shipyard.waiting import Interval, wait_until

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
NODE_EXPORTER_PORT = 9100
POSTGRES_EXPORTER_PORT = 9187
CADVISOR_PORT = 8080
# containerd's socket, which cAdvisor's Docker support also reads: where Docker's packages put it,
# then where Debian's docker.io (a containerd started by dockerd) does.
CONTAINERD_SOCKETS = ("/run/containerd/containerd.sock", "/run/docker/containerd/containerd.sock")
_FIRST_SOCKET = 'for s in "$@"; do [ -S "$s" ] && echo "$s" && break; done'
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class MonitoringStatus:
    """What ``shipyard monitoring status`` reports."""

    enabled: bool
    containers: dict[str, str]  # name → state
    targets: list[dict[str, str]] = field(default_factory=list)  # job, instance, health, error
    alerts: list[dict[str, str]] = field(default_factory=list)  # firing and pending alerts
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "containers": self.containers,
            "targets": self.targets,
            "alerts": self.alerts,
            "problem": self.problem,
        }


class MonitoringStack:
    """The environment's monitoring stack on its Docker host."""

    def __init__(self, steps: StepsBase) -> None:
        self.steps = steps
        self.section = steps.config.monitoring
        names = steps.names
        self.project = names.monitoring_project
        services = (
            "prometheus",
            "alertmanager",
            "node-exporter",
            "postgres-exporter",
            "cadvisor",
            "grafana",
        )
        self.containers = {service: names.monitoring(service) for service in services}
        self.root = steps.layout.root / "monitoring"
        self._containerd: str | None = None

    # -- what runs --------------------------------------------------------------------------------
    @property
    def _node(self) -> bool:
        return "node" in self.section.exporters

    @property
    def _cadvisor(self) -> bool:
        return "cadvisor" in self.section.exporters

    @property
    def _postgres(self) -> bool:
        config = self.steps.config
        return (
            "postgres" in self.section.exporters
            and config.database is not None
            and managed_database(config)
        )

    def targets(self) -> Targets:
        names, config = self.steps.names, self.steps.config
        return Targets(
            app=f"{names.live}:{config.app.port}" if self.section.app_metrics_path else None,
            app_metrics_path=self.section.app_metrics_path or "/metrics",
            proxy=f"{names.proxy}:{ADMIN_PORT}",
            alertmanager=f"{self.containers['alertmanager']}:{ALERTMANAGER_PORT}",
            node=f"{self.containers['node-exporter']}:{NODE_EXPORTER_PORT}" if self._node else None,
            postgres=(
                f"{self.containers['postgres-exporter']}:{POSTGRES_EXPORTER_PORT}"
                if self._postgres
                else None
            ),
            containers=(
                f"{self.containers['cadvisor']}:{CADVISOR_PORT}" if self._cadvisor else None
            ),
        )

    def files(self) -> dict[PurePosixPath, tuple[str, int]]:
        """Every file of the stack: path → (text, mode)."""
        config, names = self.steps.config, self.steps.names
        prometheus = prometheus_config(
            self.section, self.targets(), app=names.app, environment=names.environment
        )
        rules = alert_rules(
            self.section.alerts,
            database=self._postgres,
            node=self._node,
            app=self.section.app_metrics_path is not None,
        )
        alerting = alertmanager_config(self.section, config.notifications)
        files = {
            self.root / "compose.yml": (to_yaml(self.compose()), 0o600),
            self.root / "prometheus" / "prometheus.yml": (to_yaml(prometheus), 0o644),
            self.root / "prometheus" / "alerts.yml": (to_yaml(rules), 0o644),
            self.root / "alertmanager" / "alertmanager.yml": (to_yaml(alerting.config), 0o644),
        }
        if self.section.grafana.enabled:
            files.update(self._grafana_files())
        for name, key in alerting.credentials.items():
            value = config.secrets.get(key) or ""
            files[self.root / "alertmanager" / "secrets" / name] = (value, 0o600)
        if self._postgres:
            assert config.database is not None  # noqa: S101
            db = config.database
            env = {
                "DATA_SOURCE_URI": f"{names.database}:5432/{db.name}?sslmode=disable",
                "DATA_SOURCE_USER": db.user,
                "DATA_SOURCE_PASS": config.secrets.get(db.password_env) or "",
            }
            files[self.root / "postgres.env"] = (
                "".join(f"{k}={v}\n" for k, v in env.items()),
                0o600,
            )
        return files

    def _grafana_files(self) -> dict[PurePosixPath, tuple[str, int]]:
        """Grafana's provisioning (Prometheus as its datasource, shipyard's dashboards) and its
        env file (the admin password, 0600)."""
        grafana = self.root / "grafana"
        datasource = {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "uid": DATASOURCE_UID,
                    "type": "prometheus",
                    "access": "proxy",
                    "url": f"http://{self.containers['prometheus']}:{PROMETHEUS_PORT}",
                    "isDefault": True,
                    "editable": False,
                }
            ],
        }
        provider = {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "shipyard",
                    "folder": "shipyard",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "options": {"path": "/etc/grafana/dashboards"},
                }
            ],
        }
        files = {
            grafana / "provisioning" / "datasources" / "prometheus.yml": (
                to_yaml(datasource),
                0o644,
            ),
            grafana / "provisioning" / "dashboards" / "shipyard.yml": (to_yaml(provider), 0o644),
        }
        for uid, model in dashboards().items():
            files[grafana / "dashboards" / f"{uid}.json"] = (json.dumps(model, indent=2), 0o644)
        password = self.steps.config.secrets.get(self.section.grafana.admin_password_env) or ""
        env = {
            "GF_SECURITY_ADMIN_PASSWORD": password,
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_USERS_ALLOW_SIGN_UP": "false",
        }
        domain = self.section.publish.grafana
        if domain:  # links and redirects name the published address
            env["GF_SERVER_ROOT_URL"] = f"https://{domain}/"
        files[self.root / "grafana.env"] = ("".join(f"{k}={v}\n" for k, v in env.items()), 0o600)
        return files

    def compose(self) -> dict[str, Any]:
        names, images = self.steps.names, self.section.images
        labels = names.labels(role="monitoring")

        def service(container: str, image: str, entrypoint: str, **more: Any) -> dict[str, Any]:
            return {
                "image": image,
                "container_name": self.containers[container],
                "entrypoint": [entrypoint],
                "networks": ["app"],
                "restart": "unless-stopped",
                "labels": labels,
                "logging": copy.deepcopy(_LOGGING),
                **more,
            }

        services = {
            "prometheus": service(
                "prometheus",
                images.prometheus,
                "/bin/prometheus",
                command=[
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={round(self.section.retention)}s",
                    "--web.enable-lifecycle",
                ],
                volumes=[
                    f"{self.root / 'prometheus'}:/etc/prometheus:ro",
                    "prometheus-data:/prometheus",
                ],
                ports=[f"127.0.0.1:{self.section.prometheus_port}:{PROMETHEUS_PORT}"],
            ),
            "alertmanager": service(
                "alertmanager",
                images.alertmanager,
                "/bin/alertmanager",
                command=[
                    "--config.file=/etc/alertmanager/alertmanager.yml",
                    "--storage.path=/alertmanager",
                    "--cluster.listen-address=",
                ],
                user="0:0",  # reads its credential files, mode 0600
                volumes=[
                    f"{self.root / 'alertmanager'}:/etc/alertmanager:ro",
                    "alertmanager-data:/alertmanager",
                ],
                ports=[f"127.0.0.1:{self.section.alertmanager_port}:{ALERTMANAGER_PORT}"],
            ),
        }
        if self._node:
            services["node-exporter"] = service(
                "node-exporter",
                images.node_exporter,
                "/bin/node_exporter",
                command=["--path.rootfs=/host", "--collector.textfile.directory=/textfile"],
                volumes=["/:/host:ro", f"{self.root / 'textfile'}:/textfile:ro"],
            )
        if self._postgres:
            services["postgres-exporter"] = service(
                "postgres-exporter",
                images.postgres_exporter,
                "/bin/postgres_exporter",
                env_file=[str(self.root / "postgres.env")],
            )
        if self._cadvisor:
            label = f"{LABEL}.app,{LABEL}.environment"
            services["cadvisor"] = service(
                "cadvisor",
                images.cadvisor,
                "/usr/bin/cadvisor",
                command=[
                    "-logtostderr",
                    f"-port={CADVISOR_PORT}",
                    "-docker_only=true",
                    f"-housekeeping_interval={max(1, round(self.section.scrape_interval))}s",
                    "-store_container_labels=false",
                    f"-whitelisted_container_labels={label}",
                    f"-containerd={self._containerd_socket()}",
                ],
                volumes=[
                    "/:/rootfs:ro",
                    "/var/run:/var/run:ro",
                    "/sys:/sys:ro",
                    "/var/lib/docker:/var/lib/docker:ro",
                ],
            )
        if self.section.grafana.enabled:
            grafana = self.root / "grafana"
            services["grafana"] = {
                **service("grafana", images.grafana, "/run.sh"),
                "env_file": [str(self.root / "grafana.env")],
                "volumes": [
                    f"{grafana / 'provisioning'}:/etc/grafana/provisioning:ro",
                    f"{grafana / 'dashboards'}:/etc/grafana/dashboards:ro",
                    "grafana-data:/var/lib/grafana",
                ],
                "ports": [f"127.0.0.1:{self.section.grafana.port}:3000"],
            }
        return {
            "name": self.project,
            "services": services,
            "networks": {"app": {"name": names.network, "external": True}},
            "volumes": {
                "prometheus-data": {"name": f"{names.prefix}-prometheus-data"},
                "alertmanager-data": {"name": f"{names.prefix}-alertmanager-data"},
                "grafana-data": {"name": f"{names.prefix}-grafana-data"},
            },
        }

    def _containerd_socket(self) -> str:
        """containerd's socket on the host (the first of ``CONTAINERD_SOCKETS`` that is one)."""
        if self._containerd is None:
            found = self.steps.host.run(
                ["sh", "-c", _FIRST_SOCKET, "-", *CONTAINERD_SOCKETS],
                check=False,
            ).stdout.strip()
            self._containerd = found or CONTAINERD_SOCKETS[0]
        return self._containerd

    # -- up, status, down -------------------------------------------------------------------------
    def up(self, *, metrics: bool = True) -> str:
        """Write the files, start what is not running, and have a running Prometheus and
        Alertmanager reload a changed configuration. Returns what was done. ``metrics``: write
        the deployment metrics too (after a deploy or a rollback, its record has just done so)."""
        host = self.steps.host
        changed: list[str] = []
        for path, (text, mode) in self.files().items():
            if host.get(path) != text.encode():
                changed.append(path.parent.name if path.parent != self.root else path.name)
                host.put(path, text.encode(), mode=mode)
        if metrics:
            publish_deployment_metrics(
                self.steps.ctx.store,
                self.steps.names.app,
                self.steps.names.environment,
                last_snapshot_at=self.steps.newest_snapshot(),
            )
        # The containers run as nobody: the directories they read must let them in.
        readable = [self.root, self.root / "prometheus", self.root / "alertmanager"]
        if self.section.grafana.enabled:
            grafana = self.root / "grafana"
            readable += [grafana, grafana / "dashboards", grafana / "provisioning"]
            readable += [grafana / "provisioning" / d for d in ("datasources", "dashboards")]
        readable.append(self.steps.ctx.store.path(*TEXTFILE_DIR.parts))
        host.run(["chmod", "0755", *map(str, readable)])
        running = {
            name
            for name, info in self.steps.docker.containers_named(
                list(self.containers.values())
            ).items()
            if info is not None and info.running
        }
        self.steps.compose_ready()
        result = self.steps.docker.compose_up(self.project, self.root / "compose.yml")
        if not result.ok:
            raise MonitoringError(f"monitoring stack did not start: {result.stderr.strip()[-800:]}")
        reloaded = []
        for service in ("prometheus", "alertmanager"):  # each reads the directory named after it
            if self.containers[service] in running and service in changed:
                self._request("POST", service, "/-/reload")
                reloaded.append(service)
        self._wait_ready()
        started = [n for n in self.containers.values() if n not in running]
        started = [n for n in started if self.steps.docker.container(n) is not None]
        parts = [f"started {', '.join(started)}" if started else "every container was running"]
        if reloaded:
            parts.append(f"reloaded {' and '.join(reloaded)}")
        return f"{'; '.join(parts)}; Prometheus at http://127.0.0.1:{self.section.prometheus_port}"

    def _request(self, method: str, service: str, path: str) -> httpx.Response:
        """``method path`` on Prometheus's or Alertmanager's port published on the host's
        loopback (reached through the host's tunnel on an ssh:// target)."""
        published = (
            self.section.prometheus_port
            if service == "prometheus"
            else self.section.alertmanager_port
        )
        url = f"http://127.0.0.1:{self.steps.host.tunnel(published)}{path}"
        try:
            with httpx.Client(transport=self.steps.http, timeout=10) as client:
                response = client.request(method, url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise MonitoringError(f"{service} at {url}: {exc}") from exc
        return response

    def _get(self, service: str, path: str) -> Any:
        return self._request("GET", service, path).json()

    def _wait_ready(self) -> None:
        def ready() -> bool:
            try:
                self._request("GET", "prometheus", "/-/ready")
                self._request("GET", "alertmanager", "/-/ready")
            except MonitoringError:
                return False
            return True

        if not wait_until(ready, timeout=READY_TIMEOUT, interval=Interval(0.2, 1.5, 1.0)):
            raise MonitoringError(
                f"Prometheus or Alertmanager not ready within {READY_TIMEOUT:g}s "
                f"(`docker logs {self.containers['prometheus']}`)"
            )

    def _running_containers(self) -> list[str]:
        """The containers the stack has with this configuration."""
        wanted = ["prometheus", "alertmanager"]
        wanted += ["node-exporter"] if self._node else []
        wanted += ["postgres-exporter"] if self._postgres else []
        wanted += ["grafana"] if self.section.grafana.enabled else []
        return [self.containers[name] for name in wanted]

    def status(self) -> MonitoringStatus:
        found = self.steps.docker.containers_named(self._running_containers())
        containers = {
            name: ("running" if info.running else info.status) if info is not None else "missing"
            for name, info in found.items()
        }
        try:
            targets = self._get("prometheus", "/api/v1/targets")["data"]["activeTargets"]
            alerts = self._get("prometheus", "/api/v1/alerts")["data"]["alerts"]
        except (MonitoringError, KeyError, TypeError) as exc:
            message = exc.message if isinstance(exc, MonitoringError) else str(exc)
            return MonitoringStatus(self.section.enabled, containers, problem=message)
        return MonitoringStatus(
            self.section.enabled,
            containers,
            targets=[
                {
                    "job": t["labels"].get("job", ""),
                    "instance": t["labels"].get("instance", ""),
                    "health": t.get("health", ""),
                    "error": t.get("lastError", ""),
                }
                for t in targets
            ],
            alerts=[
                {
                    "alert": a["labels"].get("alertname", ""),
                    "state": a.get("state", ""),
                    "severity": a["labels"].get("severity", ""),
                    "summary": a.get("annotations", {}).get("summary", ""),
                }
                for a in alerts
            ],
        )

    def down(self, *, volumes: bool) -> str:
        self.steps.docker.compose_down(self.project, volumes=volumes)
        return f"removed {self.project}" + (" and its volumes" if volumes else "")


__all__ = ["MonitoringStack", "MonitoringStatus"]
