"""The Caddy admin client against Caddy's admin API contract, on httpx's MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from shipyard.errors import ProxyError
from shipyard.proxy import CaddyAdmin

ROOT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _caddy(seen: list[httpx.Request], *, down: bool = False) -> httpx.MockTransport:
    """Caddy's admin endpoints as its documentation gives them."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if request.method == "POST" and path == "/load":
            json.loads(request.content)  # the config travels as JSON
            return httpx.Response(200)
        if path == "/config/":
            return httpx.Response(200, json={"apps": {"http": {"servers": {}}}})
        if path == "/reverse_proxy/upstreams":
            return httpx.Response(
                200,
                json=[
                    {"address": "10.0.0.2:8080", "num_requests": 0, "fails": 0},
                    {"address": "10.0.0.3:8080", "num_requests": 4, "fails": 0},
                ],
            )
        if path == "/pki/ca/local":
            return httpx.Response(200, json={"id": "local", "root_certificate": ROOT})
        return httpx.Response(404, text='{"error":"unknown path"}')

    return httpx.MockTransport(handle)


def test_requests_go_to_the_loopback_admin_port_as_json() -> None:
    seen: list[httpx.Request] = []
    admin = CaddyAdmin(2019, transport=_caddy(seen))
    admin.load({"apps": {}})
    assert admin.config() == {"apps": {"http": {"servers": {}}}}
    assert [str(r.url) for r in seen] == [
        "http://127.0.0.1:2019/load",
        "http://127.0.0.1:2019/config/",
    ]
    assert seen[0].headers["Content-Type"] == "application/json"


def test_in_flight_counts_one_upstream_and_zero_once_it_is_gone() -> None:
    admin = CaddyAdmin(2019, transport=_caddy([]))
    assert admin.in_flight("10.0.0.3:8080") == 4
    assert admin.in_flight("10.0.0.2:8080") == 0
    assert admin.in_flight("10.0.0.9:8080") == 0


def test_the_local_root_certificate_is_read_from_the_pki_app() -> None:
    assert CaddyAdmin(2019, transport=_caddy([])).local_root() == ROOT


def test_an_error_answer_names_the_request_and_the_answer() -> None:
    admin = CaddyAdmin(2019, transport=_caddy([]))
    with pytest.raises(ProxyError, match=r"GET /id/nothing answered 404: .*unknown path"):
        admin._request("GET", "/id/nothing")


def test_an_unreachable_api_is_a_proxy_error_and_not_ready() -> None:
    admin = CaddyAdmin(2019, transport=_caddy([], down=True))
    with pytest.raises(ProxyError, match=r"admin API at http://127\.0\.0\.1:2019 is not reachable"):
        admin.config()
    assert admin.config_if_ready() is None
