"""A bounded load generator for zero-downtime tests, on loopback.

Two kinds of client run side by side:

- ``fresh``: a new connection per request. Any failure here is a request the switch dropped.
- ``keepalive``: a connection pool, like browsers and API clients. When the proxy reloads its
  config it closes *idle* keep-alive connections; a request sent on such a connection at that
  instant gets no response. HTTP allows a client to retry an idempotent request in exactly that
  case (RFC 9112 §9.3.1) and browsers and Go's client do so; this client does too, once, and
  counts it in ``retried`` so a test can see it. Every other error is a failure.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    requests: int = 0
    retried: int = 0  # idempotent GETs resent after the server closed an idle connection
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(
        default_factory=list
    )  # versions in order of answers, repeats folded
    per_client: dict[int, list[str]] = field(default_factory=dict)  # the same, for each client

    def monotonic(self, order: list[str]) -> bool:
        """Every client saw versions only move forward along ``order``, never back."""
        for seen in self.per_client.values():
            positions = [order.index(v) if v in order else -1 for v in seen]
            if -1 in positions or positions != sorted(positions):
                return False
        return True

    @property
    def version_counts(self) -> Counter[str]:
        return Counter(self.versions)


def _closed_while_idle(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)


class Load:
    """``clients`` threads of each kind GET ``url`` back to back until stopped (or ``max_seconds``);
    with ``pace``, each thread sends at most one request per ``pace`` seconds (an app that limits
    requests per client sees a bounded rate).

    ``verify`` for HTTPS makes a trust context, called once per client: httpcore sets the ALPN
    list on the context at every connection, and CPython makes each connection's SSL object
    without holding the GIL, so a context shared by threads now and then yields a ClientHello
    whose ALPN extension was read from freed memory (the proxy answers a TLS decode_error)."""

    def __init__(
        self,
        url: str,
        *,
        clients: int = 2,
        max_seconds: float = 300,
        max_requests: int = 200_000,
        pace: float = 0.0,
        verify: Callable[[], ssl.SSLContext] | bool = True,
        server_name: str | None = None,
    ) -> None:
        self.url = url
        self.verify = verify
        # HTTPS to a proxy on loopback: the domain as SNI and Host (``url`` names 127.0.0.1).
        self.server_name = server_name
        self.pace = pace
        self.clients = clients
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _record(
        self, client: int, response: httpx.Response | None, failure: str | None, retried: bool
    ) -> bool:
        with self._lock:
            self.result.requests += 1
            self.result.retried += int(retried)
            if failure is None and response is not None and response.status_code != 200:
                failure = f"{response.status_code} {response.text[:120]}"
            if failure is not None:
                self.result.failures.append(failure)
            elif response is not None:
                version = str(response.json().get("version", "?"))
                for seen in (self.result.versions, self.result.per_client.setdefault(client, [])):
                    if not seen or seen[-1] != version:
                        seen.append(version)
            return self.result.requests < self.max_requests

    def _run(self, index: int, keepalive: bool) -> None:
        deadline = time.monotonic() + self.max_seconds
        limits = httpx.Limits(max_keepalive_connections=1 if keepalive else 0)
        headers, extensions = {}, {}
        if self.server_name is not None:
            port = httpx.URL(self.url).port
            headers["Host"] = self.server_name + (f":{port}" if port else "")
            extensions["sni_hostname"] = self.server_name
        verify = self.verify if isinstance(self.verify, bool) else self.verify()
        with httpx.Client(timeout=15, limits=limits, verify=verify, trust_env=False) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                response, failure, retried = None, None, False
                try:
                    try:
                        response = client.get(self.url, headers=headers, extensions=extensions)
                    except httpx.HTTPError as exc:
                        if not (keepalive and _closed_while_idle(exc)):
                            raise
                        retried = True
                        response = client.get(self.url, headers=headers, extensions=extensions)
                except (httpx.HTTPError, ValueError) as exc:
                    # The Unix time, as Caddy logs its ``ts``, places it among the proxy's lines.
                    failure = (
                        f"at {time.time():.3f} "
                        f"{'keepalive' if keepalive else 'fresh'}: {type(exc).__name__}: {exc}"
                    )
                if not self._record(index, response, failure, retried):
                    return
                if self.pace:
                    self._stop.wait(max(0.0, self.pace - (time.monotonic() - started)))

    def __enter__(self) -> Load:
        for index in range(self.clients * 2):
            thread = threading.Thread(target=self._run, args=(index, index % 2 == 0), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
