"""Caddy in front of the app slots.

Caddy routes to the first of two names that resolves on the private network: the live name
(``<app>-<env>-live``), then the switching name (``<app>-<env>-switching``). Each is looked up
again every ``LOOKUP_REFRESH_S`` (a proxy started with another refresh keeps it:
``keeping_running_lookups``), and the ``first`` policy picks among them. A candidate carries
neither name, so it gets no request before its switch. A switch renames the live container to
the switching name, the candidate to the live name, and the old container to its slot name:
one container answers the first name that resolves, so no client sees the old version after the
new one, and some healthy container serves throughout (if shipyard is killed between two
renames, until the next operation finishes the switch). A rename is not atomic in Docker's DNS:
for an instant the renamed container answers to no name. A lookup in that instant finds
nothing, and the request waits ``try_interval`` and asks again, as it does when nothing is
deployed (for ``dial_retry`` seconds at most); it is never sent to another container. Caddy's
config is never reloaded to switch (a reload closes connections that were just accepted, which
drops a few requests under load). The config itself is rendered from the environment's
settings and loaded through the admin API, which also serves metrics (the 5xx rate watched after
a switch) and the requests in flight per upstream (draining). The admin API listens on the
private network and is published on the host's loopback only.

Maintenance mode (``maintenance_routes``) is two more routes before the app's, in the config at
all times and answering only while a flag file exists: every request but those for the app's
health paths and those from allowed networks gets a 503 page. Turning it on or off writes or
removes the flag and loads no config (a ``/load``, like a reload, closed connections just
accepted: measured, a few requests failed under load).
"""

from __future__ import annotations

import copy
import html
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from shipyard.config import ProxySection, parse_duration
from shipyard.errors import ProxyError
from shipyard.proxy._latency import Latency, parse_latency, regression
from shipyard.proxy._probe import (
    Answer,
    Endpoint,
    ServedCertificate,
    endpoints,
    judge_health,
    probe,
    reports_commit,
    served_certificate,
    trust,
)
from shipyard.state import Maintenance

__all__ = [
    "ADMIN_PORT",
    "FORWARDED_HEADERS",
    "LOOKUP_REFRESH_S",
    "MAINTENANCE_DIR",
    "MAINTENANCE_FLAG",
    "PROXY_DIR",
    "Answer",
    "CaddyAdmin",
    "Endpoint",
    "Latency",
    "MaintenanceRoutes",
    "Observed",
    "ProxyError",
    "Published",
    "ServedCertificate",
    "Traffic",
    "endpoints",
    "judge_health",
    "keeping_running_lookups",
    "lookup_refresh",
    "maintenance_files",
    "maintenance_routes",
    "parse_latency",
    "parse_observed",
    "parse_traffic",
    "probe",
    "proxy_files",
    "regression",
    "render_caddy",
    "reports_commit",
    "running_maintenance_routes",
    "served_certificate",
    "trust",
    "upstreams_of",
]

ADMIN_PORT = 2019
UPSTREAM_ID = "shipyard-upstream"
# How soon Caddy sees a switch: each name is resolved again by the first request after this
# long (Docker's embedded DNS, on the proxy's own network: a lookup costs well under 1 ms, so
# two names every 50 ms cost the proxy nothing it would notice; under load, the new version
# is first served on average half of this after the switch, and a drain right after it waits
# two of these).
LOOKUP_REFRESH_S = 0.05
LOCAL_CA = "local"  # the id of Caddy's internal CA
SERVER = "shipyard"
PROXY_DIR = "/etc/caddy"  # where the proxy's directory on the host is mounted (read-only)
ACME_CA_ROOT_FILE = "acme-ca-root.pem"
# How often Caddy looks for certificates to renew (its default is 10m): often enough for a
# short-lived certificate; each look only reads the expiry of the certificates it holds.
RENEW_INTERVAL = "30s"
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
    proxy: ProxySection,
    names: tuple[str, ...],
    port: int,
    maintenance: MaintenanceRoutes | None = None,
    *,
    admin_host: str | None = None,
    published: tuple[Published, ...] = (),
    lookup_refresh_s: float = LOOKUP_REFRESH_S,
) -> dict[str, Any]:
    """The Caddy JSON config routing all traffic to the first of ``names`` that resolves (the
    live name, then the switching name; each looked up again after ``lookup_refresh_s``);
    with ``maintenance``, the routes of maintenance mode before them (``maintenance_routes``). ``admin_host``: the proxy's name on the private network, by
    which Prometheus reaches its metrics. ``published``: the monitoring UIs served under domains
    of their own, behind basic auth, before all else (maintenance mode does not hide them)."""
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
                    "refresh": _milliseconds(lookup_refresh_s),
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
        *maintenance_routes(maintenance),
        {"handle": [reverse_proxy], "terminal": True},
    ]
    server: dict[str, Any] = {"routes": routes}
    if proxy.domains:
        server["listen"] = [":443"]
        for route in routes:
            route["match"] = [{**m, "host": list(proxy.domains)} for m in route.get("match", [{}])]
        routes[:0] = [_published_route(ui) for ui in published]
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
    if proxy.domains and proxy.hsts:
        hsts = {
            "handler": "headers",
            "response": {"set": {"Strict-Transport-Security": [f"max-age={int(proxy.hsts)}"]}},
        }
        for route in routes:
            route["handle"].insert(0, hsts)
    if proxy.domains:
        config["apps"]["tls"] = tls_app(proxy, [ui.domain for ui in published])
    if proxy.domains and proxy.tls == "internal":
        config["apps"]["pki"] = {"certificate_authorities": {LOCAL_CA: {"install_trust": False}}}
    return config


@dataclass(frozen=True)
class Published:
    """A UI served through the proxy under a domain of its own: where it answers on the private
    network, and the basic auth account in front of it (its password's bcrypt hash)."""

    domain: str
    upstream: str  # name:port
    user: str
    password_hash: str


def _published_route(ui: Published) -> dict[str, Any]:
    account = {"username": ui.user, "password": ui.password_hash}
    return {
        "match": [{"host": [ui.domain]}],
        "handle": [
            {
                "handler": "authentication",
                "providers": {
                    "http_basic": {
                        "accounts": [account],
                        "hash": {"algorithm": "bcrypt"},
                        "realm": "shipyard monitoring",
                    }
                },
            },
            {
                "@id": f"shipyard-published-{ui.domain}",
                "handler": "reverse_proxy",
                "upstreams": [{"dial": ui.upstream}],
                "headers": {"request": FORWARDED_HEADERS},
            },
        ],
        "terminal": True,
    }


def tls_app(proxy: ProxySection, also: list[str] | None = None) -> dict[str, Any]:
    """Caddy's ``tls`` app for ``proxy.domains`` (and the domains ``also`` served): who issues
    their certificates, the certificates brought as files, and how often Caddy looks for ones
    to renew.

    Certificates and ACME accounts live in Caddy's data directory, a named volume
    (``caddy-data``): a deploy, a rollback or a re-created proxy finds them there and obtains
    nothing again."""
    app: dict[str, Any] = {}
    if proxy.certificates:
        app["certificates"] = {
            "load_files": [
                {"certificate": f"{PROXY_DIR}/{cert}", "key": f"{PROXY_DIR}/{key}"}
                for cert, key in certificate_files(proxy)
            ]
        }
    if proxy.tls == "internal":
        # Caddy's own CA signs the domains' certificates (no ACME); its root stays out of the
        # container's trust store: shipyard trusts it per request (``CaddyAdmin.local_root``).
        subjects = [*proxy.domains, *(also or [])]
        app["automation"] = {
            "policies": [{"subjects": subjects, "issuers": [{"module": "internal"}]}]
        }
        return app
    issuer: dict[str, Any] = {"module": "acme"}
    if proxy.acme_ca:
        issuer["ca"] = proxy.acme_ca
    if proxy.tls_email:
        issuer["email"] = proxy.tls_email
    if proxy.acme_ca_root:
        issuer["trusted_roots_pem_files"] = [f"{PROXY_DIR}/{ACME_CA_ROOT_FILE}"]
    # Caddy's default issuers (Let's Encrypt, then ZeroSSL) unless one is configured.
    automation: dict[str, Any] = {"renew_interval": RENEW_INTERVAL}
    if len(issuer) > 1:
        automation["policies"] = [{"issuers": [issuer]}]
    app["automation"] = automation
    return app


def certificate_files(proxy: ProxySection) -> list[tuple[str, str]]:
    """The names, in the proxy's directory, of each ``proxy.certificates`` pair (chain, key)."""
    return [
        (f"certificate-{i}.pem", f"certificate-{i}.key") for i in range(len(proxy.certificates))
    ]


def proxy_files(proxy: ProxySection) -> dict[str, str]:
    """The files Caddy's config names, by their name in the proxy's directory (mounted at
    ``PROXY_DIR``), each from the file ``proxy`` names (relative to shipyard.yml)."""
    files: dict[str, str] = {}
    if proxy.domains and proxy.tls == "acme" and proxy.acme_ca_root:
        files[ACME_CA_ROOT_FILE] = proxy.acme_ca_root
    if proxy.domains:
        for (cert, key), pair in zip(certificate_files(proxy), proxy.certificates, strict=True):
            files[cert], files[key] = pair.cert, pair.key
    return files


# An Accept header naming JSON (application/json, or a +json type) gets the JSON body.
_ACCEPTS_JSON = r"(?i)application/([a-z0-9.-]+\+)?json"

# Where the proxy reads maintenance mode from, inside its container: the proxy's directory on the
# host is mounted at /etc/caddy (read only). The flag file ``on`` turns the routes on.
MAINTENANCE_DIR = "/etc/caddy/maintenance"
MAINTENANCE_FLAG = "on"


@dataclass(frozen=True)
class MaintenanceRoutes:
    """What the maintenance routes of a config are made of: the paths that still reach the app
    (exact paths: the health and verify paths) and the networks whose requests do."""

    open_paths: tuple[str, ...]
    allow: tuple[str, ...] = ()


def maintenance_routes(routes: MaintenanceRoutes | None) -> list[dict[str, Any]]:
    """The routes that answer 503 with the maintenance page while the flag file
    ``MAINTENANCE_DIR/on`` exists (Caddy's ``file`` matcher looks on every request), so that
    turning maintenance mode on or off is one file written or removed and no config is loaded:
    a ``/load`` closes connections the proxy has just accepted. The page (HTML, or JSON for a
    client whose Accept header names it) and the ``Retry-After`` seconds are read from files
    beside the flag on every request (``maintenance_files``). Every request passes but those
    for ``open_paths`` and those from ``allow`` (the connection's own address, ``remote_ip``:
    the proxy trusts no header); changing those is a config change."""
    if routes is None:
        return []
    passing: list[dict[str, Any]] = []
    paths = sorted({path.split("?", 1)[0] for path in routes.open_paths if path})
    if paths:
        passing.append({"path": paths})
    if routes.allow:
        passing.append({"remote_ip": {"ranges": list(routes.allow)}})
    matched: dict[str, Any] = {
        "file": {"root": MAINTENANCE_DIR, "try_files": [f"/{MAINTENANCE_FLAG}"]}
    }
    if passing:
        matched["not"] = passing
    headers = {
        "Retry-After": [f"{{file.{MAINTENANCE_DIR}/retry-after}}"],
        "Cache-Control": ["no-store"],
    }

    def answer(page: str, content_type: str) -> dict[str, Any]:
        return {
            "handler": "static_response",
            "status_code": 503,
            "headers": {**headers, "Content-Type": [content_type]},
            # Read on every request; what a file holds is not read for placeholders again.
            "body": f"{{file.{MAINTENANCE_DIR}/{page}}}",
        }

    return [
        {
            "match": [{**matched, "header_regexp": {"Accept": {"pattern": _ACCEPTS_JSON}}}],
            "handle": [answer("page.json", "application/json")],
            "terminal": True,
        },
        {
            "match": [matched],
            "handle": [answer("page.html", "text/html; charset=utf-8")],
            "terminal": True,
        },
    ]


def maintenance_files(maintenance: Maintenance) -> dict[str, str]:
    """The files beside the flag the maintenance routes answer with: the page (the message
    HTML-escaped), its JSON form, and the Retry-After seconds."""
    document = json.dumps(
        {"status": "maintenance", "message": maintenance.message}, separators=(",", ":")
    )
    return {
        "page.html": _MAINTENANCE_PAGE.format(message=html.escape(maintenance.message)),
        "page.json": document,
        "retry-after": str(maintenance.retry_after),
    }


_MAINTENANCE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Down for maintenance</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em">
<h1>Down for maintenance</h1>
<p>{message}</p>
</body></html>
"""


def running_maintenance_routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The maintenance routes of a Caddy config (``render_caddy``'s shape)."""
    try:
        routes: list[dict[str, Any]] = config["apps"]["http"]["servers"][SERVER]["routes"]
    except (KeyError, TypeError):
        return []
    return [
        route
        for route in routes
        if any(
            handler.get("handler") == "static_response" and handler.get("status_code") == 503  # noqa: PLR2004
            for handler in route.get("handle", [])
        )
    ]


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
    found: list[str] = []
    for handler in _app_proxies(config):
        found += [u.get("dial", "") for u in handler.get("upstreams", [])]
        found += [f"{s['name']}:{s.get('port', '')}" for s in _lookups(handler) if s.get("name")]
    return found


def lookup_refresh(config: dict[str, Any]) -> float | None:
    """How often a running Caddy config (``render_caddy``'s shape) looks the app's names up
    again, in seconds; ``None`` when it names no refresh it could be rendered with."""
    # Strings as ``render_caddy`` writes them ("100ms"); anything else (a number would be
    # Caddy's nanoseconds) counts as no refresh.
    found = {
        refresh if isinstance(refresh := source.get("refresh"), str) else None
        for handler in _app_proxies(config)
        for source in _lookups(handler)
    }
    if len(found) != 1 or (refresh := found.pop()) is None:
        return None
    try:
        return parse_duration(refresh)
    except ValueError:  # a duration in a form shipyard does not render
        return None


def keeping_running_lookups(
    rendered: dict[str, Any], running: dict[str, Any] | None
) -> dict[str, Any]:
    """``rendered`` with the name lookups of the ``running`` config, when those are all they
    differ by and they route as ``rendered``'s do. A proxy an earlier shipyard started keeps
    them rather than load a config for them alone (a load closes connections just accepted):
    its lookup refresh (another ``LOOKUP_REFRESH_S``), and its last lookup, of the alias
    ``<app>-<env>-slots`` that app containers answered to (the proxy's fallback when neither
    name resolved). The containers shipyard creates answer to no such alias, so once those an
    earlier shipyard created are replaced that lookup finds nothing; the next config that
    changes anything else drops it. Any other change loads ``rendered`` as it is."""
    if not running or lookup_refresh(running) is None:
        return rendered
    kept = copy.deepcopy(rendered)
    for ours, theirs in zip(_app_proxies(kept), _app_proxies(running), strict=False):
        if _routing(theirs) == _routing(ours):
            ours["dynamic_upstreams"] = copy.deepcopy(theirs["dynamic_upstreams"])
    return kept if kept == running else rendered


def _routing(handler: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``reverse_proxy`` handler's name lookups, but for their refresh and for a last lookup
    of the retired ``slots`` alias (the only place an earlier shipyard rendered it)."""
    lookups = [{k: v for k, v in s.items() if k != "refresh"} for s in _lookups(handler)]
    live = str(lookups[0].get("name", "")) if lookups else ""
    if len(lookups) > 1 and live.endswith("-live"):
        if lookups[-1].get("name") == live.removesuffix("-live") + "-slots":
            return lookups[:-1]
    return lookups


def _app_proxies(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``reverse_proxy`` handlers to the app (not to a published monitoring UI)."""
    try:
        routes = config["apps"]["http"]["servers"][SERVER]["routes"]
    except (KeyError, TypeError):
        return []
    return [
        handler
        for route in routes
        for handler in route.get("handle", [])
        if handler.get("handler") == "reverse_proxy"
        and handler.get("@id", UPSTREAM_ID) == UPSTREAM_ID
    ]


def _lookups(handler: dict[str, Any]) -> list[dict[str, Any]]:
    """The name lookups of a ``reverse_proxy`` handler's dynamic upstreams."""
    dynamic = handler.get("dynamic_upstreams") or {}
    return [source for source in dynamic.get("sources") or [dynamic] if source]


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True)
class Traffic:
    """Requests the proxy passed on to the app, counted since it started (what it answered
    itself aside: the maintenance page's 503s and the blocked /metrics are no error of the
    app's)."""

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
        if labels.get("server") != server or labels.get("handler") == "static_response":
            continue
        count = int(float(match.group("value")))
        total += count
        if labels.get("code", "").startswith("5"):
            errors += count
    return Traffic(total, errors)


_STARTED = re.compile(r"^process_start_time_seconds\s+(?P<value>[0-9.e+]+)$", re.M)


@dataclass(frozen=True)
class Observed:
    """One read of the proxy's metrics: requests and 5xx, the app's latency histogram, and when
    the proxy's process started (its counts begin there)."""

    traffic: Traffic
    latency: Latency
    started: float | None


def parse_observed(metrics: str) -> Observed:
    started = _STARTED.search(metrics)
    return Observed(
        parse_traffic(metrics),
        parse_latency(metrics, SERVER),
        float(started.group("value")) if started else None,
    )


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

    def observe(self) -> Observed:
        """Requests, 5xx, the latency histogram and the proxy's start, from one read."""
        return parse_observed(self._request("GET", "/metrics").text)

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
