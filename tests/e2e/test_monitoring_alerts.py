"""Alerts end to end, on the real engine: the reference app made to answer 5xx (its
TEST_UNHEALTHY_AFTER switch) fires HighErrorRate in a real Prometheus; Alertmanager delivers it
to a real ntfy server (token from a credentials file, readable title and priority) and to a
webhook receiver; when a fixed version serves again the resolved notice arrives at both.
Stopping the database fires DatabaseDown."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.conftest import AppUnderTest, Ntfy
from tests.e2e.ports import reserve_port
from tests.e2e.test_monitoring_stack import Traffic
from tests.example_app import MONITORING_IMAGES


class AlertReceiver:
    """An HTTP server on the environment network's gateway (where Alertmanager reaches the
    host), keeping every JSON body POSTed to it."""

    def __init__(self, address: str) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append(json.loads(body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notices(self, alertname: str, status: str) -> list[dict[str, Any]]:
        return [
            body
            for body in list(self.bodies)
            if body.get("status") == status
            and any(a["labels"].get("alertname") == alertname for a in body.get("alerts", []))
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _eventually(what: str, probe: Any, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout:g}s")


def _gateway(network: str) -> str:
    return subprocess.run(
        ["docker", "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", network],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_high_error_rate_and_database_down_reach_ntfy_and_a_webhook_then_resolve(
    app: AppUnderTest, ntfy: Ntfy
) -> None:
    network = f"{app.name}-development"
    ntfy_alias = f"{app.name}-ntfy"
    topic = f"alerts-{app.name}"

    def monitored(document: Any) -> None:
        document["monitoring"] = {
            "enabled": True,
            "scrape_interval": "1s",
            "prometheus_port": reserve_port(),
            "alertmanager_port": reserve_port(),
            "images": MONITORING_IMAGES,
            "exporters": ["node", "postgres"],
            "grafana": {"enabled": False},
            "alerts": {"error_rate_for": "2s", "down_for": "2s"},
            "alertmanager": {"group_wait": "1s", "group_interval": "2s"},
        }

    app.edit(monitored)
    app.commit("monitored")
    first = app.shipyard("deploy", "development")
    assert first.returncode == 0, first.stderr

    # The ntfy server and a webhook receiver, where Alertmanager reaches them.
    subprocess.run(
        ["docker", "network", "connect", "--alias", ntfy_alias, network, ntfy.container],
        check=True, capture_output=True,
    )  # fmt: skip
    receiver = AlertReceiver(_gateway(network))
    with (app.dir / ".env.development").open("a") as env_file:
        env_file.write(f"NTFY_TOKEN={ntfy.token}\nHOOK_SECRET=whsec_{'A' * 43}=\n")

    def alerting(document: Any) -> None:
        document["notifications"] = {
            "sinks": [
                # Shipyard's own events are not the subject: only `notify test` goes to them.
                {"kind": "ntfy", "server": f"http://{ntfy_alias}:80", "topic": topic,
                 "token_env": "NTFY_TOKEN", "events": ["notify.test"]},
                {"kind": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET",
                 "events": ["notify.test"]},
            ]
        }  # fmt: skip

    try:
        app.edit(alerting)
        app.commit("alerts to ntfy and a webhook")
        reloaded = app.shipyard("monitoring", "up", "development")
        assert reloaded.returncode == 0, reloaded.stderr
        assert "reloaded alertmanager" in " ".join(reloaded.stderr.split()), reloaded.stderr

        def at_ntfy(title: str, timeout: float) -> list[dict[str, Any]]:
            """The messages whose title starts with ``title``, once one arrives. ntfy limits
            how often one address may ask (a burst of 60, then one each 5 s)."""

            def found() -> list[dict[str, Any]]:
                return [
                    m
                    for m in ntfy.messages(topic)
                    if m.get("event") == "message" and m.get("title", "").startswith(title)
                ]

            messages: list[dict[str, Any]] = _eventually(
                f"{title!r} at ntfy", found, timeout=timeout, every=4
            )
            return messages

        # A version whose GET / answers 500 once it has served 20 s (after its health gate).
        def failing(document: Any) -> None:
            document["app"].setdefault("env", {})["TEST_UNHEALTHY_AFTER"] = "20s"

        app.edit(failing)
        app.commit("a version that starts failing")
        traffic = Traffic(app.url("/"))
        try:
            bad = app.shipyard("deploy", "development", "--no-watch")
            assert bad.returncode == 0, bad.stderr
            firing = at_ntfy("Firing: HighErrorRate", 150)
            assert firing[0]["title"] == f"Firing: HighErrorRate ({app.name} development)"
            assert firing[0]["priority"] == 5
            assert "[firing] More than" in firing[0]["message"]
            _eventually(
                "HighErrorRate at the webhook",
                lambda: receiver.notices("HighErrorRate", "firing"),
                60,
            )

            # The fixed version: the error rate falls, and the resolved notice follows.
            def fixed(document: Any) -> None:
                del document["app"]["env"]["TEST_UNHEALTHY_AFTER"]

            app.edit(fixed)
            app.commit("fixed")
            good = app.shipyard("deploy", "development", "--no-watch")
            assert good.returncode == 0, good.stderr
            resolved = at_ntfy("Resolved: HighErrorRate", 180)
            assert "[resolved]" in resolved[0]["message"]
            _eventually(
                "the resolved notice at the webhook",
                lambda: receiver.notices("HighErrorRate", "resolved"),
                60,
            )
        finally:
            traffic.close()

        # The database stops: DatabaseDown.
        subprocess.run(["docker", "stop", app.database], check=True, capture_output=True)
        down = at_ntfy("Firing: DatabaseDown", 120)
        assert down[0]["priority"] == 5
        _eventually(
            "DatabaseDown at the webhook", lambda: receiver.notices("DatabaseDown", "firing"), 60
        )
        # The token reached ntfy from the credentials file; it is in no file shipyard rendered.
        rendered = app.state_dir / app.name / "development" / "monitoring" / "alertmanager"
        assert ntfy.token not in (rendered / "alertmanager.yml").read_text()
    finally:
        subprocess.run(["docker", "start", app.database], capture_output=True, check=False)
        receiver.close()
