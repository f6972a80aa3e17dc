"""The AWS stand-in's data plane: what ECS and the load balancer do with what the control plane
records, as far as a deploy observes it.

moto keeps services, task definitions, target groups and listeners, and runs nothing. Here a
service's tasks are registered in its target group as ECS registers a Fargate task's address
(``desiredCount`` targets, at addresses of their own), and a local HTTP server answers as the
load balancer would: through the listener's forward action to the target group with the
weight, to the service registered there, whose task definition's labels say which release it
runs: ``/version`` answers that release's commit and version, anything else 200; a target
group with no registered target answers 503. What the deploy proves against it is what it sends:
that the listener forwards to the slot whose service runs the new revision."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shipyard.providers.aws import AwsNames
from tests.aws_standin import client

_SLOTS = ("blue", "green")


class DataPlane:
    """Targets for the services of one environment's cluster, and its load balancer's answers."""

    def __init__(self, endpoint: str, names: AwsNames) -> None:
        self.names = names
        self.ecs = client("ecs", endpoint)
        self.elb = client("elbv2", endpoint)
        self.url = ""
        self.requests: list[str] = []

    def _services(self) -> list[dict[str, Any]]:
        wanted = [self.names.service(slot) for slot in _SLOTS]
        try:
            found = self.ecs.describe_services(cluster=self.names.cluster, services=wanted)
        except self.ecs.exceptions.ClusterNotFoundException:
            return []
        return [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]

    def register(self) -> None:
        """Each service's target group holds as many targets as the service wants tasks."""
        for index, service in enumerate(self._services()):
            for balancer in service.get("loadBalancers", []):
                group = balancer["targetGroupArn"]
                health = self.elb.describe_target_health(TargetGroupArn=group)
                present = [t["Target"] for t in health["TargetHealthDescriptions"]
                           if t["TargetHealth"]["State"] == "healthy"]  # fmt: skip
                wanted = [
                    {"Id": f"10.77.{index}.{n + 1}", "Port": balancer["containerPort"]}
                    for n in range(int(service.get("desiredCount", 0)))
                ]
                extra = [t for t in present if t not in wanted]
                missing = [t for t in wanted if t not in present]
                if extra:
                    self.elb.deregister_targets(TargetGroupArn=group, Targets=extra)
                if missing:
                    self.elb.register_targets(TargetGroupArn=group, Targets=missing)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """What the load balancer answers for ``path``."""
        balancers = self.elb.describe_load_balancers(Names=[self.names.load_balancer])
        arn = balancers["LoadBalancers"][0]["LoadBalancerArn"]
        [listener] = self.elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]
        forward = listener["DefaultActions"][0]
        groups = forward.get("ForwardConfig", {}).get("TargetGroups") or [
            {"TargetGroupArn": forward["TargetGroupArn"], "Weight": 1}
        ]
        group = max(groups, key=lambda g: g.get("Weight", 0))["TargetGroupArn"]
        health = self.elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        if not [t for t in health if t["TargetHealth"]["State"] == "healthy"]:
            return 503, {"error": "no healthy target"}
        service = next(
            s for s in self._services()
            if any(b["targetGroupArn"] == group for b in s.get("loadBalancers", []))
        )  # fmt: skip
        definition = self.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
        labels = definition["taskDefinition"]["containerDefinitions"][0].get("dockerLabels", {})
        if path == "/version":
            return 200, {
                "version": labels.get("org.opencontainers.image.version"),
                "git_commit": labels.get("org.opencontainers.image.revision"),
            }
        return 200, {"status": "healthy"}


@contextmanager
def data_plane(endpoint: str, names: AwsNames) -> Iterator[DataPlane]:
    """The data plane of ``names``'s environment, running until the block ends."""
    plane = DataPlane(endpoint, names)
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            plane.requests.append(self.path)
            try:
                status, body = plane.answer(self.path)
            except Exception as exc:  # noqa: BLE001 — the stand-in answers what went wrong
                status, body = 502, {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    plane.url = f"http://127.0.0.1:{server.server_address[1]}"

    def registering() -> None:
        while not stop.wait(0.2):
            try:
                plane.register()
            except Exception:  # noqa: BLE001, S112 — the cluster may not exist yet, or be gone
                continue

    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=registering, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield plane
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(timeout=10)
