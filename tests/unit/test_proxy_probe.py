"""How verify and status reach the proxy (the way users do) and judge what it answers."""

from __future__ import annotations

import ssl

import httpx
import pytest
from pydantic import ValidationError

from shipyard.config import ProxySection
from shipyard.proxy import Answer, Endpoint, endpoints, judge_health, reports_commit
from shipyard.proxy._probe import _tls_cause

HTTPS = Endpoint("https", "events.test", 8443, None, 8443)


def test_with_domains_each_domain_is_probed_over_https_with_its_own_sni_and_host() -> None:
    proxy = ProxySection(domains=["events.test", "www.events.test"], https_port=8443)
    found = endpoints(proxy, None, 8443)
    assert [(e.scheme, e.server_name, e.port) for e in found] == [
        ("https", "events.test", 8443),
        ("https", "www.events.test", 8443),
    ]
    assert found[0].url == "https://events.test:8443"
    assert found[0].host_header == "events.test:8443"
    assert found[0].describe("/health") == (
        "https://events.test:8443/health (SNI and Host events.test, connected to 127.0.0.1:8443)"
    )


def test_the_default_https_port_is_left_out_of_the_url_and_host() -> None:
    endpoint = endpoints(ProxySection(domains=["events.example"]), None, 443)[0]
    assert endpoint.url == "https://events.example"
    assert endpoint.host_header == "events.example"


def test_a_remote_host_is_reached_through_its_forwarded_port() -> None:
    endpoint = endpoints(ProxySection(domains=["events.example"]), "web1.example", 40123)[0]
    assert endpoint.describe("/version") == (
        "https://events.example/version (SNI and Host events.example, connected to "
        "127.0.0.1:443 on web1.example (local port 40123))"
    )


def test_without_domains_it_is_plain_http_on_the_http_port() -> None:
    found = endpoints(ProxySection(http_port=18080), None, 18080)
    assert [(e.scheme, e.url) for e in found] == [("http", "http://localhost:18080")]


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_never_healthy_nor_a_verified_commit(code: int) -> None:
    answer = Answer(
        HTTPS,
        "/health",
        status=code,
        body='{"status":"healthy","commit":"abcdef0"}',
        location="https://elsewhere.test/health",
    )
    assert judge_health(answer) == "unhealthy"
    assert not reports_commit(answer, "abcdef0")
    assert "redirect to https://elsewhere.test/health" in answer.describe()


@pytest.mark.parametrize(
    ("code", "body", "health"),
    [
        (200, '{"status":"healthy"}', "healthy"),
        (200, '{"status":"degraded"}', "degraded"),
        (200, "ok", "healthy"),
        (503, '{"status":"shutting_down"}', "shutting_down"),
        (500, '{"status":"healthy"}', "unhealthy"),
        (404, "not found", "unhealthy"),
    ],
)
def test_health_from_an_answer(code: int, body: str, health: str) -> None:
    assert judge_health(Answer(HTTPS, "/health", status=code, body=body)) == health


def test_no_answer_is_unreachable() -> None:
    answer = Answer(HTTPS, "/health", error="the proxy has no certificate", tls=True)
    assert judge_health(answer) == "unreachable"
    assert answer.describe() == "no answer: the proxy has no certificate"


def test_a_commit_is_verified_only_by_a_successful_answer_naming_it() -> None:
    assert reports_commit(
        Answer(HTTPS, "/version", status=200, body='{"commit":"abc1234"}'), "abc1234"
    )
    assert not reports_commit(
        Answer(HTTPS, "/version", status=200, body='{"commit":"0000000"}'), "abc1234"
    )
    assert not reports_commit(Answer(HTTPS, "/version", status=500, body="abc1234"), "abc1234")


def _wrapped(cause: BaseException) -> httpx.ConnectError:
    try:
        try:
            raise cause
        except ssl.SSLError as exc:
            raise httpx.ConnectError(str(exc)) from exc
    except httpx.ConnectError as outer:
        return outer


def test_tls_causes_are_named() -> None:
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    assert _tls_cause(_wrapped(untrusted)) == (
        "the certificate presented is not trusted (unable to get local issuer certificate)"
    )
    missing = ssl.SSLError(1, "[SSL: TLSV1_ALERT_INTERNAL_ERROR] tlsv1 alert internal error")
    assert "no certificate for this name yet" in (_tls_cause(_wrapped(missing)) or "")
    assert _tls_cause(httpx.ConnectError("connection refused")) is None


def test_tls_is_acme_or_internal() -> None:
    assert ProxySection().tls == "acme"
    assert ProxySection(domains=["events.test"], tls="internal").tls == "internal"
    with pytest.raises(ValidationError, match="'acme' or 'internal'"):
        ProxySection(tls="letsencrypt")
