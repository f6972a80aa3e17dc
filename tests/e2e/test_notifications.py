"""Notifications and hooks end to end: the real CLI, a signed-webhook receiver on loopback and a
real ntfy server (Debian's package, shipyard-local/ntfy:2) checked through its own HTTP API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AppUnderTest, Ntfy, engine_snapshot
from tests.e2e.ports import reserve_port

LIFECYCLE_OF_A_DEPLOY = [
    "deploy.started",
    "deploy.built",
    "deploy.migrated",
    "deploy.switched",
    "deploy.completed",
]
# Prints the env file (every secret in it) to stderr and fails: the error text that reaches
# events, notifications and hooks must arrive masked.
LEAK_AND_FAIL = "import sys; sys.stderr.write(open('.env.development').read()); sys.exit({code})"
# Writes the hook's SHIPYARD_* environment to the file named by its first argument.
RECORD_ENV = (
    "import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
    "if k.startswith('SHIPYARD_')}, open(sys.argv[1], 'w'))"
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 answering 503 to the first ``fail_each`` deliveries of
    each webhook-id, then 204."""

    fail_each: int
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver._seen[headers.get("webhook-id", "")] += 1
                    tries = receiver._seen[headers.get("webhook-id", "")]
                    status = 503 if tries <= receiver.fail_each else 204
                    receiver.requests.append(Received(headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/shipyard"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(fail_each=2)
    try:
        yield server
    finally:
        server.close()


def _poll(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds:g}s")
        time.sleep(0.2)


def _owned(app: AppUnderTest) -> dict[str, list[str]]:
    """The app's containers, networks, volumes and images (other work may share the engine)."""
    return engine_snapshot(app.name)


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _add_env(app: AppUnderTest, **values: str) -> dict[str, str]:
    env_file = app.dir / ".env.development"
    with env_file.open("a", encoding="utf-8") as handle:
        for key, value in values.items():
            handle.write(f"{key}={value}\n")
    secrets_in_file = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        secrets_in_file[key] = value
    return secrets_in_file


def _verify(secret: str, request: Received) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 300
    signed = f"{message_id}.{timestamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = request.headers["webhook-signature"].split()
    assert f"v1,{expected}" in signatures


def _assert_no_secret(values: dict[str, str], texts: list[str]) -> None:
    for key, value in values.items():
        for text in texts:
            assert value not in text, f"the value of {key} leaked"


def test_deploy_sends_signed_webhooks_through_retries_and_survives_a_dead_receiver(
    app: AppUnderTest, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    signing = _whsec()
    secret_values = _add_env(
        app, WEBHOOK_SIGNING=signing, CANARY_API_KEY=f"canary-{secrets.token_hex(12)}"
    )
    facts_file = tmp_path / "after_deploy.json"
    dead = f"http://127.0.0.1:{reserve_port()}/nobody-listens"

    def change(document: Any) -> None:
        retry = {"attempts": 4, "initial_delay": "100ms", "max_delay": "400ms", "total": "10s"}
        document["notifications"] = {
            "flush_timeout": "30s",
            "sinks": [
                {
                    "kind": "webhook",
                    "name": "ops",
                    "url": receiver.url,
                    "secret_env": "WEBHOOK_SIGNING",
                    "events": [*LIFECYCLE_OF_A_DEPLOY, "deploy.failed", "operation.warning"],
                    "retry": retry,
                },
                {
                    "kind": "webhook",
                    "name": "dead",
                    "url": dead,
                    "secret_env": "WEBHOOK_SIGNING",
                    "retry": {**retry, "attempts": 2},
                },
            ],
        }
        document["hooks"] = {
            "timeout": "60s",
            "after_switch": [
                {"name": "leaky", "argv": [sys.executable, "-c", LEAK_AND_FAIL.format(code=4)]}
            ],
            "after_deploy": [
                {"argv": [sys.executable, "-c", RECORD_ENV, str(facts_file)], "where": "target"}
            ],
        }

    app.edit(change)
    commit = app.commit("notify ops")

    result = app.shipyard("deploy", "development")

    assert result.returncode == 0, result.stderr
    # The failing after_switch hook is a warning; the deploy stands.
    assert "after_switch hook failed" in result.stderr
    # The dead receiver: every delivery failed, each failure logged, nothing blocked the deploy.
    assert "notification deploy.started → dead failed after 2 attempts: ConnectError" in (
        result.stderr
    )
    assert "→ dead failed after 1 attempt" in result.stderr

    requests = receiver.requests
    for request in requests:
        _verify(signing, request)
    by_id: dict[str, list[Received]] = {}
    for request in requests:
        by_id.setdefault(request.headers["webhook-id"], []).append(request)
    # Every message was answered 503 twice, then accepted: three attempts, one body.
    assert all([r.status for r in tries] == [503, 503, 204] for tries in by_id.values())
    assert all(len({r.body for r in tries}) == 1 for tries in by_id.values())
    documents = [json.loads(tries[-1].body) for tries in by_id.values()]
    kinds = [d["type"] for d in documents]
    assert [k for k in kinds if k in LIFECYCLE_OF_A_DEPLOY] == LIFECYCLE_OF_A_DEPLOY
    completed = next(d["data"] for d in documents if d["type"] == "deploy.completed")
    assert completed["commit"] == commit
    assert completed["app"] == app.name and completed["environment"] == "development"
    assert completed["node"] and completed["started_at"] and completed["duration_s"] > 0
    warning = next(d["data"] for d in documents if d["type"] == "operation.warning")
    assert "after_switch hook failed" in warning["message"]
    assert "***" in warning["message"]  # the env file's secrets, masked

    texts = [r.body.decode() for r in requests] + [json.dumps(r.headers) for r in requests]
    _assert_no_secret(secret_values, [*texts, result.stderr])

    facts = json.loads(facts_file.read_text())
    assert facts["SHIPYARD_HOOK"] == "after_deploy"
    assert facts["SHIPYARD_COMMIT"] == commit
    assert facts["SHIPYARD_VERSION"] == f"0.0.0+{commit[:7]}"
    assert facts["SHIPYARD_SLOT"] == "blue"
    assert facts["SHIPYARD_URL"] == f"http://localhost:{app.http_port}"
    assert facts["SHIPYARD_DEPLOYMENT_ID"] == completed["deployment_id"]


def test_failed_deploy_reaches_ntfy_and_notify_test_reports_each_sink(
    app: AppUnderTest, ntfy: Ntfy
) -> None:
    topic = f"shipyard-{secrets.token_hex(6)}"
    secret_values = _add_env(app, NTFY_TOKEN=ntfy.token, WEBHOOK_SIGNING=_whsec())

    def change(document: Any) -> None:
        document["notifications"] = {
            "sinks": [
                {"kind": "ntfy", "server": ntfy.url, "topic": topic, "token_env": "NTFY_TOKEN"}
            ]
        }
        document["hooks"] = {
            "before_deploy": [{"argv": [sys.executable, "-c", LEAK_AND_FAIL.format(code=7)]}]
        }

    app.edit(change)
    app.commit("page on failure")
    before = _owned(app)

    result = app.shipyard("deploy", "development")

    assert result.returncode == 6, result.stderr
    assert "deploy failed in phase 'before_deploy'" in result.stderr
    assert _owned(app) == before  # a failing pre-hook stops the deploy before any change
    assert before == {"containers": [], "networks": [], "volumes": [], "images": []}

    def failed_message() -> dict[str, Any] | None:
        return next(
            (m for m in ntfy.messages(topic) if "deploy FAILED" in m.get("title", "")), None
        )

    failed = _poll(failed_message, 30, "ntfy never received the failed deploy")
    assert failed["title"].startswith(f"{app.name} development: deploy FAILED")
    assert failed["priority"] == 4
    assert "warning" in failed["tags"]
    assert "exited 7" in failed["message"]
    assert "phase: before_deploy" in failed["message"]
    assert "***" in failed["message"]
    started = next(m for m in ntfy.messages(topic) if "deploy started" in m["title"])
    assert started.get("priority", 3) < 4
    bodies = [json.dumps(m) for m in ntfy.messages(topic)]
    _assert_no_secret(secret_values, bodies)

    ok = app.shipyard("notify", "test", "development")
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stderr
    assert any("test notification" in m["title"] for m in ntfy.messages(topic))

    app.edit(
        lambda document: document["notifications"]["sinks"].append(
            {
                "kind": "webhook",
                "name": "nobody",
                "url": f"http://127.0.0.1:{reserve_port()}/",
                "secret_env": "WEBHOOK_SIGNING",
                "retry": {"attempts": 1},
            }
        )
    )
    report = app.shipyard("notify", "test", "development", "--json")
    assert report.returncode == 8, report.stderr
    results = {r["sink"]: r for r in json.loads(report.stdout)}
    assert results["ntfy"]["ok"] is True
    assert results["nobody"]["ok"] is False
    assert "ConnectError" in results["nobody"]["detail"]
