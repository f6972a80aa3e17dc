"""``shipyard.aws``: the retry policy against a local endpoint that throttles (a real HTTP
server speaking CloudWatch Logs' JSON protocol, not AWS), and AWS's answers translated into
errors that name the service, the action, the quota and what to do (botocore's Stubber)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.stub import Stubber

from shipyard import aws
from shipyard.errors import ExitCode, HostUnreachable


class _Throttling(BaseHTTPRequestHandler):
    """Answers the first ``throttle`` requests with ThrottlingException, then an empty list."""

    throttle = 0
    seen: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(self.headers.get("X-Amz-Target", ""))
        if len(self.seen) <= self.throttle:
            status, body = 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        else:
            status, body = 200, {"logGroups": []}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        del args


@pytest.fixture
def throttling(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Throttling]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    handler = type("Handler", (_Throttling,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # the kernel picks the port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.endpoint = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _logs(handler: type[_Throttling], attempts: int) -> object:
    endpoint = handler.endpoint  # type: ignore[attr-defined]
    return aws.client("logs", region="eu-west-1", endpoint_url=endpoint, attempts=attempts)


def test_throttling_is_retried_with_backoff_until_an_answer(throttling: type[_Throttling]) -> None:
    throttling.throttle = 2
    logs = _logs(throttling, attempts=4)
    answer = aws.call("logs", "DescribeLogGroups", logs.describe_log_groups)  # type: ignore[attr-defined]
    assert answer["logGroups"] == []
    assert throttling.seen == ["Logs_20140328.DescribeLogGroups"] * 3


def test_a_throttling_storm_ends_after_the_bounded_attempts_with_a_clear_message(
    throttling: type[_Throttling],
) -> None:
    throttling.throttle = 100
    logs = _logs(throttling, attempts=3)
    with pytest.raises(aws.Throttled) as caught:
        aws.call(
            "logs", "DescribeLogGroups", logs.describe_log_groups,  # type: ignore[attr-defined]
            what="log group /shipyard/shop/production",
        )  # fmt: skip
    assert len(throttling.seen) == 3  # no more than the bound
    message = caught.value.message
    assert message.startswith("AWS logs DescribeLogGroups: AWS kept throttling the request")
    assert "ThrottlingException: Rate exceeded" in message
    assert "/shipyard/shop/production" in message
    assert caught.value.hint is not None and "run the command again" in caught.value.hint


def test_a_quota_names_what_to_ask_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    ecs = aws.client("ecs", region="eu-west-1")
    with Stubber(ecs) as stub:
        stub.add_client_error(
            "create_cluster",
            service_error_code="LimitExceededException",
            service_message="Cluster limit exceeded",
            http_status_code=400,
        )
        with pytest.raises(aws.QuotaExceeded) as caught:
            aws.call("ecs", "CreateCluster", ecs.create_cluster, clusterName="shipyard-shop")
    assert "'Clusters per account'" in caught.value.message
    assert "Cluster limit exceeded" in caught.value.message
    assert caught.value.hint is not None and "Service Quotas (ecs" in caught.value.hint
    assert caught.value.exit_code == ExitCode.FAILED


def test_access_denied_names_the_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    iam = aws.client("iam", region="eu-west-1")
    with Stubber(iam) as stub:
        stub.add_client_error(
            "create_role", service_error_code="AccessDenied", http_status_code=403
        )
        with pytest.raises(aws.AwsError) as caught:
            aws.call(
                "iam", "CreateRole", iam.create_role, RoleName="r", AssumeRolePolicyDocument="{}"
            )
    assert "access denied for iam:CreateRole" in caught.value.message


def test_missing_credentials_say_where_they_come_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ecs = aws.client("ecs", region="eu-west-1", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(aws.AwsError) as caught:
        aws.call("ecs", "ListClusters", ecs.list_clusters)
    assert "no AWS credentials found" in caught.value.message
    assert caught.value.hint is not None and "shipyard.yml never holds them" in caught.value.hint


def test_an_endpoint_out_of_reach_is_the_unreachable_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    ecs = aws.client("ecs", region="eu-west-1", endpoint_url="http://127.0.0.1:1", attempts=1)
    with pytest.raises(
        HostUnreachable, match="AWS ecs ListClusters: the endpoint cannot be reached"
    ):
        aws.call("ecs", "ListClusters", ecs.list_clusters)
