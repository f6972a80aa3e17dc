"""Reaching the proxy the way users do, for ``verify`` and ``status``.

With ``proxy.domains`` users reach the app over HTTPS, by name: the request carries the domain as
TLS SNI (which certificate Caddy presents) and as Host (which routes match), and the certificate
must be trusted. shipyard sends exactly that, but connects to the proxy's own port on the host
(``127.0.0.1:<https_port>``, through the host's tunnel when it is remote) instead of resolving
the domain through public DNS, which may not point at this host yet (or at a load balancer in
front of several). Without domains it is plain HTTP on ``proxy.http_port``.

Trust is the system's store, plus the proxy's own internal root with ``proxy.tls: internal``;
verification is never turned off.

A redirect is never an answer: the HTTP port of a proxy with domains answers 308 to HTTPS, and an
app may redirect a path elsewhere. Neither says anything about the app at the probed URL, so a
3xx is not healthy and does not verify a commit; it is not followed either (the place it points
to is not what was configured to be checked). The path to check is the one that answers itself.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from shipyard.config import ProxySection

__all__ = [
    "Answer",
    "Endpoint",
    "ServedCertificate",
    "endpoints",
    "judge_health",
    "probe",
    "reports_commit",
    "served_certificate",
    "trust",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_LIMIT = 100_000


@dataclass(frozen=True)
class Endpoint:
    """The proxy as users reach it: ``url`` is what they type; the request goes to the proxy's
    ``port`` on ``host``, reached at ``127.0.0.1:local_port`` on this machine (the port itself on
    a local host, a forwarded one on a remote host), with ``server_name`` as SNI and Host."""

    scheme: str  # http or https
    server_name: str  # the domain (https), or the host's name (http)
    port: int  # the proxy's port on the host
    host: str | None  # the remote host's name; None: this machine
    local_port: int

    @property
    def url(self) -> str:
        suffix = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{self.server_name}{suffix}"

    @property
    def host_header(self) -> str:
        return self.url.split("://", 1)[1]

    def describe(self, path: str) -> str:
        """The probed URL and how it was reached, for messages and ``status``."""
        via = f"127.0.0.1:{self.port}" + (
            "" if self.host is None else f" on {self.host} (local port {self.local_port})"
        )
        if self.scheme == "https":
            return f"{self.url}{path} (SNI and Host {self.server_name}, connected to {via})"
        return f"{self.url}{path} (connected to {via})"


def endpoints(proxy: ProxySection, host: str | None, local_port: int) -> list[Endpoint]:
    """Where the proxy serves users: each domain over HTTPS on ``proxy.https_port`` or, without
    domains, plain HTTP on ``proxy.http_port``, on ``host`` (None: this machine), whose port is
    reached from here at ``local_port``."""
    if proxy.domains:
        return [Endpoint("https", d, proxy.https_port, host, local_port) for d in proxy.domains]
    name = "localhost" if host is None else host
    return [Endpoint("http", name, proxy.http_port, host, local_port)]


def trust(extra_root: str | None = None) -> ssl.SSLContext:
    """The system's trust store, plus ``extra_root`` (PEM) when given. Hostnames are checked."""
    context = ssl.create_default_context()
    if extra_root:
        context.load_verify_locations(cadata=extra_root)
    return context


@dataclass(frozen=True)
class Answer:
    """What one request through the proxy got: an HTTP answer, or why there was none."""

    endpoint: Endpoint
    path: str
    status: int | None = None
    body: str = ""
    location: str | None = None
    error: str | None = None  # no HTTP answer: the cause
    tls: bool = False  # the cause is the TLS handshake (no certificate yet, or not trusted)

    @property
    def redirect(self) -> bool:
        return self.status is not None and 300 <= self.status < 400  # noqa: PLR2004

    def describe(self) -> str:
        """What the proxy answered, in one line."""
        if self.status is None:
            return f"no answer: {self.error}"
        if self.redirect:
            return (
                f"{self.status} redirect to {self.location or '(no Location)'} "
                "(not followed: a redirect is not the app's answer)"
            )
        return f"{self.status} {self.body[:200]}".rstrip()


def probe(
    endpoint: Endpoint, path: str, *, verify: Callable[[], ssl.SSLContext], timeout: float
) -> Answer:
    """GET ``path`` through the proxy at ``endpoint``; redirects are reported, not followed.
    ``verify`` gives the trust store, asked only over HTTPS: plain HTTP reads no CA bundle
    (30 to 50 ms of a short command's time)."""
    url = f"{endpoint.scheme}://127.0.0.1:{endpoint.local_port}{path}"
    https = endpoint.scheme == "https"
    extensions = {"sni_hostname": endpoint.server_name} if https else {}
    trusted = verify() if https else False
    try:
        with httpx.Client(verify=trusted, timeout=timeout, trust_env=False) as client:
            response = client.get(
                url, headers={"Host": endpoint.host_header}, extensions=extensions
            )
    except httpx.HTTPError as exc:
        cause = _tls_cause(exc)
        if cause is not None:
            return Answer(endpoint, path, error=cause, tls=True)
        return Answer(endpoint, path, error=f"{type(exc).__name__}: {exc}")
    return Answer(
        endpoint,
        path,
        status=response.status_code,
        body=response.text[:_BODY_LIMIT],
        location=response.headers.get("location"),
    )


def _tls_cause(exc: BaseException) -> str | None:
    """Why the TLS handshake failed, if that is what ``exc`` comes from."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"the certificate presented is not trusted ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            if "internal error" in str(seen).lower():
                # What Caddy answers for a name it has no certificate for (yet).
                return "the proxy has no certificate for this name yet (TLS alert internal error)"
            return f"TLS handshake failed ({seen})"
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True)
class ServedCertificate:
    """The certificate the proxy presents for a domain (read at an HTTPS ``Endpoint``).
    Without a trusted one, only ``error`` says why (nothing else is read from it)."""

    domain: str
    issuer: str | None = None  # the issuer's organization and common name
    serial: str | None = None
    not_before: float | None = None  # seconds since the epoch
    not_after: float | None = None
    error: str | None = None

    def days_left(self, now: float) -> float | None:
        return None if self.not_after is None else (self.not_after - now) / 86400


def served_certificate(
    endpoint: Endpoint, *, verify: ssl.SSLContext, timeout: float
) -> ServedCertificate:
    """The certificate the proxy presents at ``endpoint`` (HTTPS) with the domain as SNI,
    verified against ``verify`` (a certificate that is not trusted is reported as such)."""
    domain = endpoint.server_name
    try:
        with (
            socket.create_connection(("127.0.0.1", endpoint.local_port), timeout=timeout) as raw,
            verify.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            cert = tls.getpeercert() or {}
    except OSError as exc:
        return ServedCertificate(domain, error=_tls_cause(exc) or f"{type(exc).__name__}: {exc}")
    return ServedCertificate(
        domain,
        issuer=_name(cert.get("issuer", ())),
        serial=str(cert.get("serialNumber") or "") or None,
        not_before=_seconds(cert.get("notBefore")),
        not_after=_seconds(cert.get("notAfter")),
    )


def _name(rdns: Any) -> str | None:
    """``O, CN`` of a certificate name as ``getpeercert`` gives it."""
    fields = {key: value for rdn in rdns for key, value in rdn}
    parts = [fields[k] for k in ("organizationName", "commonName") if fields.get(k)]
    return ", ".join(dict.fromkeys(parts)) or None


def _seconds(value: Any) -> float | None:
    return float(ssl.cert_time_to_seconds(value)) if isinstance(value, str) else None


def reports_commit(answer: Answer, commit: str) -> bool:
    """Whether the proxy answered with success and a body naming ``commit``."""
    return answer.status is not None and 200 <= answer.status < 300 and commit in answer.body  # noqa: PLR2004


def judge_health(answer: Answer) -> str:
    """``status``'s health from one answer: unreachable without an HTTP answer; unhealthy for a
    redirect or an error status (whatever its body says); else the body's JSON ``status`` field
    (healthy, degraded, …), or healthy for a 2xx without one."""
    if answer.status is None:
        return "unreachable"
    if answer.redirect:
        return "unhealthy"
    field = _status_field(answer.body)
    if answer.status >= 400:  # noqa: PLR2004
        return field if field and field not in ("healthy", "degraded") else "unhealthy"
    return field or "healthy"


def _status_field(body: str) -> str:
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return ""
    return str(document.get("status") or "") if isinstance(document, dict) else ""
