"""Google Cloud's APIs as shipyard calls them (``shipyard.gcp``), against the GCP stand-in
(``tests.gcp.standin``, held to Google's discovery documents): Application Default Credentials
from a service account key, the retry policy (Retry-After, RetryInfo, backoff, a budget), rate
and allocation quotas told apart, requests that are not repeated, and the errors' words."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.errors import ExitCode, HostUnreachable
from shipyard.gcp import GcpApi, GcpError, QuotaExceeded, RateLimited
from shipyard.gcp import application_default_credentials as adc
from shipyard.waiting import Clock
from tests.gcp.discovery import discovery
from tests.gcp.standin import (
    PROJECT,
    PROJECT_NUMBER,
    Reply,
    Session,
    gcp_session,
    quota_details,
    rpc_error,
)
from tests.unit.fake_clock import FakeClock

PROJECT_PATH = f"v3/projects/{PROJECT}"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with gcp_session(tmp_path, buckets=("records",)) as running:
        yield running
        assert running.standin.invalid == []


def _api(session: Session, clock: FakeClock, *, budget: float = 120.0) -> GcpApi:
    return session.api("cloudresourcemanager", clock=Clock(clock, clock.sleep), budget=budget)


def test_adc_from_a_service_account_key_gets_one_token_for_many_requests(
    session: Session,
) -> None:
    api = session.api("cloudresourcemanager")
    for _ in range(3):
        found = api.json("GET", PROJECT_PATH)
        assert found is not None and found["name"] == f"projects/{PROJECT_NUMBER}"
    assert len(session.standin.tokens) == 1  # the JWT grant made once, its token reused


def test_without_credentials_the_error_says_how_to_set_them_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(GcpError) as refused:
        adc()
    assert "application-default login" in (refused.value.hint or "")
    assert "shipyard.yml never holds credentials" in (refused.value.hint or "")


def test_a_refused_token_names_the_credentials_not_the_token(session: Session) -> None:
    api = session.api("cloudresourcemanager")
    api.credentials.token()  # issued, then revoked
    session.standin.tokens.clear()
    with pytest.raises(GcpError) as refused:
        api.json("GET", PROJECT_PATH)
    assert refused.value.status == 401
    assert "credentials are refused" in refused.value.message
    assert "ya29" not in str(refused.value) + (refused.value.hint or "")


@pytest.mark.parametrize(
    ("retry_after", "retry_delay", "waits"),
    [(7, None, [7.0, 7.0]), (None, "3s", [3.0, 3.0]), (None, None, [1.0, 2.0])],
    ids=["retry-after", "retry-info", "backoff"],
)
def test_a_rate_quota_is_waited_out_as_google_asks(
    session: Session, retry_after: int | None, retry_delay: str | None, waits: list[float]
) -> None:
    clock = FakeClock()
    session.standin.rate_limit(
        "cloudresourcemanager.projects.get", 2, retry_after=retry_after, retry_delay=retry_delay
    )
    assert _api(session, clock).json("GET", PROJECT_PATH) is not None
    assert clock.sleeps == waits


def test_a_rate_quota_that_outlasts_the_budget_names_the_quota(session: Session) -> None:
    clock = FakeClock()
    session.standin.rate_limit("cloudresourcemanager.projects.get", 50, retry_delay="20s")
    with pytest.raises(RateLimited) as refused:
        _api(session, clock, budget=60).json("GET", PROJECT_PATH)
    assert clock.sleeps == [20.0, 20.0, 20.0] and clock.now <= 60
    error = refused.value
    assert "cloudresourcemanager API" in error.message
    assert "'RequestsPerMinutePerProject'" in error.message
    assert "request_increase" in (error.hint or "")
    assert error.exit_code == ExitCode.FAILED


def test_an_allocation_quota_is_not_retried_and_says_where_to_ask(session: Session) -> None:
    clock = FakeClock()
    reply = rpc_error(
        429, "RESOURCE_EXHAUSTED", "Quota exceeded for 'Cloud SQL instances'",
        quota_details("RESOURCE_QUOTA_EXCEEDED", "InstancesPerProject"),
    )  # fmt: skip
    session.standin.fail("cloudresourcemanager.projects.get", reply)
    with pytest.raises(QuotaExceeded) as refused:
        _api(session, clock).json("GET", PROJECT_PATH)
    assert clock.sleeps == []
    assert "'InstancesPerProject'" in refused.value.message
    assert "cloud.google.com/docs/quotas" in (refused.value.hint or "")


def test_a_legacy_403_rate_limit_is_retried(session: Session) -> None:
    clock = FakeClock()
    error = {"code": 403, "message": "Rate Limit Exceeded",
             "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded"}]}  # fmt: skip
    session.standin.fail("cloudresourcemanager.projects.get", Reply(403, {"error": error}))
    assert _api(session, clock).json("GET", PROJECT_PATH) is not None
    assert clock.sleeps == [1.0]


def test_server_errors_are_retried_only_where_a_repeat_is_harmless(session: Session) -> None:
    clock = FakeClock()
    unavailable = rpc_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    session.standin.fail("cloudresourcemanager.projects.get", unavailable, times=2)
    assert _api(session, clock).json("GET", PROJECT_PATH) is not None
    assert clock.sleeps == [1.0, 2.0]

    storage = session.api("storage", clock=Clock(clock, clock.sleep))
    session.standin.fail("storage.buckets.insert", unavailable)
    with pytest.raises(GcpError) as refused:  # a POST that may have acted: not repeated
        storage.json("POST", "storage/v1/b", body={"name": "x"}, query={"project": PROJECT})
    assert "status.cloud.google.com" in (refused.value.hint or "")
    assert "x" not in session.storage.buckets


def test_a_lost_answer_is_repeated_only_when_idempotent(session: Session) -> None:
    storage = session.api("storage")
    session.standin.lose_answer("storage.buckets.insert")
    with pytest.raises(HostUnreachable):
        storage.json("POST", "storage/v1/b", body={"name": "b1"}, query={"project": PROJECT})
    assert "b1" in session.storage.buckets  # it took effect; only its answer was lost

    session.standin.lose_answer("storage.buckets.insert")
    again = storage.json(
        "POST", "storage/v1/b", body={"name": "b2"}, query={"project": PROJECT},
        idempotent=True, allow=(409,),
    )  # fmt: skip
    assert again is None  # the repeat found it made: 409, the caller's to judge


def test_a_disabled_api_says_how_to_enable_it(session: Session) -> None:
    reply = rpc_error(
        403, "PERMISSION_DENIED",
        f"Cloud Resource Manager API has not been used in project {PROJECT_NUMBER} before or "
        "it is disabled.",
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
          "domain": "googleapis.com", "metadata": {"service": "cloudresourcemanager.googleapis.com"}}],
    )  # fmt: skip
    session.standin.fail("cloudresourcemanager.projects.get", reply)
    with pytest.raises(GcpError) as refused:
        session.api("cloudresourcemanager").json("GET", PROJECT_PATH)
    assert (
        refused.value.hint
        == "enable it: gcloud services enable cloudresourcemanager.googleapis.com"
    )


class Static:
    """Credentials with a token got elsewhere and a quota project (a person's gcloud login)."""

    def __init__(self, token: str, quota_project: str | None = None) -> None:
        self._token = token
        self.quota_project = quota_project

    def token(self) -> str:
        return self._token


def test_the_endpoint_setting_and_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_GCP_ENDPOINT", raising=False)
    default = GcpApi("run", Static("t"))
    assert default.url == "https://run.googleapis.com/"
    monkeypatch.setenv("SHIPYARD_GCP_ENDPOINT", "http://127.0.0.1:9/")
    local = GcpApi("run", Static("t"))
    assert local.url == "http://127.0.0.1:9/run/"
    assert os.environ["SHIPYARD_GCP_ENDPOINT"]  # untouched
    default.close()
    local.close()


def test_credentials_with_a_quota_project_bill_it(session: Session) -> None:
    token = session.credentials.token()
    assert session.credentials.quota_project is None  # a service account key names none
    api = GcpApi(
        "cloudresourcemanager", Static(token, "billing-project"), endpoint=session.standin.url
    )
    assert api.json("GET", PROJECT_PATH) is not None
    assert session.standin.requests[-1].user_project == "billing-project"
    api.close()


def test_the_stand_in_refuses_what_the_discovery_document_does_not_declare() -> None:
    storage = discovery("storage")
    fine = storage.check(
        "POST", "/upload/storage/v1/b/b/o?uploadType=media&name=k&ifGenerationMatch=0", b"x"
    )
    assert fine.method == "storage.objects.insert" and fine.problems == []
    assert storage.check("GET", "/storage/v1/b/b/o/k?ifGenerationMatch=abc", b"").problems == [
        "ifGenerationMatch: string/int64 expected, not 'abc'"
    ]
    assert storage.check("GET", "/storage/v1/b/b/o/k?generations=1", b"").problems == [
        "unknown query parameter generations"
    ]
    assert storage.check("POST", "/storage/v1/b", b'{"name": "b"}').problems == [
        "missing required query parameter project"
    ]
    bad = storage.check(
        "POST", "/storage/v1/b?project=p", b'{"name": "b", "versioning": {"on": true}}'
    )
    assert bad.problems == ["Bucket.versioning.on: unknown field"]
    assert discovery("run").check(
        "POST",
        "/v2/projects/p/locations/l/services?serviceId=s",
        b'{"traffic": [{"type": "LATEST", "percent": "100"}]}',
    ).problems == [
        "GoogleCloudRunV2Service.traffic[0].type: 'LATEST' is not one of "
        f"{discovery('run').doc['schemas']['GoogleCloudRunV2TrafficTarget']['properties']['type']['enum']}",
        "GoogleCloudRunV2Service.traffic[0].percent: integer/int32 expected, not '100'",
    ]
    assert storage.check("PUT", "/storage/v1/nowhere", b"").method == ""
