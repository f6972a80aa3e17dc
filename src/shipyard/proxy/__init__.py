"""Caddy in front of the app slots.

Caddy routes to the first of three names that resolves on the private network: the live name
(``<app>-<env>-live``), the switching name (``<app>-<env>-switching``) and the alias every
slot's container answers to (``<app>-<env>-slots``). Each is looked up every ``LOOKUP_REFRESH``
(``first`` policy), so a candidate starting beside the live slot gets no request. A switch
renames the live container to the switching name, the candidate to the live name, and the old
container to its slot name: at every instant exactly one container answers the first name that
resolves, so no client sees the old version after the new one, and some healthy container serves
throughout (if shipyard is killed between two renames, until the next operation finishes the
switch). The alias serves only when neither name resolves (a container removed outside
shipyard): then any running slot does. Caddy's config is never reloaded to switch (a reload
closes connections that were just accepted, which drops a few requests under load). When no name
resolves (nothing is deployed), requests wait and retry for ``dial_retry`` seconds instead of
failing. The config itself is rendered from the environment's settings and loaded through the
admin API, which also serves metrics (the 5xx rate watched after a switch) and the requests in
flight per upstream (draining). The admin API listens on the private network and is published on
the host's loopback only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from shipyard.config import ProxySection
from shipyard.errors import ProxyError
from shipyard.proxy._probe import (
    Answer,
    Endpoint,
    endpoints,
    judge_health,
    probe,
    reports_commit,
    trust,
)

__all__ = [
    "ADMIN_PORT",
    "FORWARDED_HEADERS",
    "LOOKUP_REFRESH_S",
    "Answer",
    "CaddyAdmin",
    "Endpoint",
    "ProxyError",
    "Traffic",
    "endpoints",
    "judge_health",
    "parse_traffic",
    "probe",
    "render_caddy",
    "reports_commit",
    "trust",
    "upstreams_of",
]

ADMIN_PORT = 2019
UPSTREAM_ID = "shipyard-upstream"
LOOKUP_REFRESH_S = 0.25  # how soon Caddy sees a switch
LOOKUP_REFRESH = f"{LOOKUP_REFRESH_S * 1000:g}ms"
LOCAL_CA = "local"  # the id of Caddy's internal CA
SERVER = "shipyard"
_BLOCKED_PATHS = ["/metrics", "/metrics/*"]
_MULTI_LOGGER = "http.reverse_proxy.upstreams.multi"


# What the app is told about the client, from the connection the proxy accepted and nothing the
# client sent: the proxy trusts no proxy in front of it (no ``trusted_proxies``), so an
# X-Forwarded-For (or X-Real-IP, Forwarded) a client sends is replaced, never passed on or
# appended to. An app that trusts these headers from ``proxy.subnet`` alone
# (``${SHIPYARD_PROXY_CIDR}``) gets each visitor's own address. Applied after Caddy's own
# X-Forwarded-* handling, so they hold whatever it does by default.
FORWARDED_HEADERS: dict[str, Any] = {
    "set": {
        "X-Forwarded-For": ["{http.request.remote.host}"],
        "X-Real-IP": ["{http.request.remote.host}"],
        "X-Forwarded-Proto": ["{http.request.scheme}"],
        "X-Forwarded-Host": ["{http.request.hostport}"],
    },
    "delete": ["Forwarded"],
}


def render_caddy(
    proxy: ProxySection, names: tuple[str, ...], port: int, *, admin_host: str | None = None
) -> dict[str, Any]:
    """The Caddy JSON config routing all traffic to the first of ``names`` that resolves (the
    live name, the switching name, then the alias every slot answers to). ``admin_host``: the
    proxy's name on the private network, by which Prometheus reaches its metrics."""
    reverse_proxy: dict[str, Any] = {
        "@id": UPSTREAM_ID,
        "handler": "reverse_proxy",
        "dynamic_upstreams": {
            "source": "multi",
            "sources": [
                {
                    "source": "a",
                    "name": name,
                    "port": str(port),
                    "refresh": LOOKUP_REFRESH,
                    "versions": {"ipv4": True},
                }
                for name in names
            ],
        },
        "load_balancing": {
            "selection_policy": {"policy": "first"},
            "try_duration": f"{proxy.dial_retry:g}s",
            "try_interval": "100ms",
        },
        "headers": {"request": FORWARDED_HEADERS},
    }
    routes: list[dict[str, Any]] = [
        # The app's /metrics is for the monitoring network, not the internet.
        {
            "match": [{"path": _BLOCKED_PATHS}],
            "handle": [{"handler": "static_response", "status_code": 404}],
            "terminal": True,
        },
        {"handle": [reverse_proxy], "terminal": True},
    ]
    server: dict[str, Any] = {"routes": routes}
    if proxy.domains:
        server["listen"] = [":443"]
        for route in routes:
            route["match"] = [{**m, "host": list(proxy.domains)} for m in route.get("match", [{}])]
    else:
        server["listen"] = [":80"]
        server["automatic_https"] = {"disable": True}
    config: dict[str, Any] = {
        "admin": {"listen": f"0.0.0.0:{ADMIN_PORT}", "origins": _admin_origins(admin_host)},
        # During a switch the live name fails its lookup: not worth a log line each.
        "logging": {"logs": {"default": {"exclude": [_MULTI_LOGGER]}}},
        # Metrics (served on the admin endpoint) give the 5xx rate watched after a switch.
        "apps": {"http": {"metrics": {}, "servers": {SERVER: server}}},
    }
    if proxy.domains and proxy.tls == "internal":
        # Caddy's own CA signs the domains' certificates (no ACME); its root stays out of the
        # container's trust store: shipyard trusts it per request (``CaddyAdmin.local_root``).
        config["apps"]["tls"] = {
            "automation": {
                "policies": [{"subjects": list(proxy.domains), "issuers": [{"module": "internal"}]}]
            }
        }
        config["apps"]["pki"] = {"certificate_authorities": {LOCAL_CA: {"install_trust": False}}}
    elif proxy.domains and proxy.tls_email:
        config["apps"]["tls"] = {
            "automation": {
                "policies": [{"issuers": [{"module": "acme", "email": proxy.tls_email}]}]
            }
        }
    return config


def _admin_origins(admin_host: str | None) -> list[str]:
    # The admin endpoint checks the Host header (DNS-rebinding protection); it is reached through
    # a port published on the host's loopback, so loopback names are the allowed origins, and
    # by the proxy's own name on the private network (Prometheus scraping its metrics).
    origins = [
        "localhost",
        "127.0.0.1",
        "[::1]",
        f"localhost:{ADMIN_PORT}",
        f"127.0.0.1:{ADMIN_PORT}",
    ]
    return [*origins, f"{admin_host}:{ADMIN_PORT}"] if admin_host else origins


def upstreams_of(config: dict[str, Any]) -> list[str]:
    """The upstreams (``name:port``) a Caddy config routes to (from ``render_caddy``'s shape)."""
    try:
        routes = config["apps"]["http"]["servers"][SERVER]["routes"]
    except (KeyError, TypeError):
        return []
    found: list[str] = []
    for route in routes:
        for handler in route.get("handle", []):
            if handler.get("handler") == "reverse_proxy":
                found += [u.get("dial", "") for u in handler.get("upstreams", [])]
                dynamic = handler.get("dynamic_upstreams") or {}
                for source in dynamic.get("sources") or [dynamic]:
                    if source.get("name"):
                        found.append(f"{source['name']}:{source.get('port', '')}")
    return found


@dataclass(frozen=True)
class Traffic:
    """Requests the proxy answered, counted since it started."""

    total: int
    errors: int  # 5xx

    def since(self, earlier: Traffic) -> Traffic:
        return Traffic(self.total - earlier.total, self.errors - earlier.errors)

    @property
    def error_rate(self) -> float:
        return self.errors / self.total if self.total else 0.0


_COUNT = re.compile(
    r"^caddy_http_request_duration_seconds_count\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$"
)


def parse_traffic(metrics: str, server: str = SERVER) -> Traffic:
    """Sum Caddy's request counts for ``server`` from its Prometheus text output."""
    total = errors = 0
    for line in metrics.splitlines():
        match = _COUNT.match(line.strip())
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("server") != server:
            continue
        count = int(float(match.group("value")))
        total += count
        if labels.get("code", "").startswith("5"):
            errors += count
    return Traffic(total, errors)


class CaddyAdmin:
    """Caddy's admin API at ``http://127.0.0.1:<port>`` (``transport``: how requests travel,
    the network unless given)."""

    def __init__(
        self, port: int, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout
        self.transport = transport

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            with httpx.Client(transport=self.transport, timeout=self.timeout) as client:
                response = client.request(
                    method,
                    f"{self.base}{path}",
                    content=None if body is None else json.dumps(body),
                    headers={"Content-Type": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise ProxyError(f"Caddy admin API at {self.base} is not reachable: {exc}") from exc
        if response.status_code >= 400:  # noqa: PLR2004
            raise ProxyError(
                f"Caddy admin API {method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response

    def load(self, config: dict[str, Any]) -> None:
        """Replace the running config atomically."""
        self._request("POST", "/load", config)

    def config(self) -> dict[str, Any]:
        data = self._request("GET", "/config/").json()
        return data if isinstance(data, dict) else {}

    def traffic(self) -> Traffic:
        return parse_traffic(self._request("GET", "/metrics").text)

    def in_flight(self, upstream: str) -> int:
        """Requests the proxy has in flight to ``upstream`` (0 once it is no longer known)."""
        data = self._request("GET", "/reverse_proxy/upstreams").json()
        for entry in data if isinstance(data, list) else []:
            if entry.get("address") == upstream:
                return int(entry.get("num_requests", 0))
        return 0

    def local_root(self) -> str:
        """The PEM root certificate of Caddy's internal CA (what signs ``tls: internal``
        certificates)."""
        data = self._request("GET", f"/pki/ca/{LOCAL_CA}").json()
        root = data.get("root_certificate") if isinstance(data, dict) else None
        if not isinstance(root, str) or "BEGIN CERTIFICATE" not in root:
            raise ProxyError(f"Caddy admin API GET /pki/ca/{LOCAL_CA} gave no root certificate")
        return root

    def config_if_ready(self) -> dict[str, Any] | None:
        """The running config, or ``None`` while the admin API does not answer."""
        try:
            return self.config()
        except ProxyError:
            return None
