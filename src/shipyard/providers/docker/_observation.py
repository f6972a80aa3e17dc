"""Observation: the new version checked through the proxy as users reach it (verify), and
watched after the switch."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipyard.errors import DeployFailed, ShipyardError
from shipyard.event_kinds import EventKind
from shipyard.health import build_checks
from shipyard.hosts import LocalHost
from shipyard.providers.docker._base import StepsBase
from shipyard.proxy import (
    Answer,
    CaddyAdmin,
    Endpoint,
    Latency,
    Observed,
    Traffic,
    endpoints,
    probe,
    regression,
    reports_commit,
    trust,
)
from shipyard.state import Release
from shipyard.waiting import Interval, wait_until


class Observation(StepsBase):
    """The ``verify`` and ``watch`` steps."""

    def endpoints(self) -> list[Endpoint]:
        """The proxy as users reach it (each domain over HTTPS, or plain HTTP), connected to
        its port on the host rather than through public DNS (``shipyard.proxy.endpoints``)."""
        proxy = self.config.proxy
        port = proxy.https_port if proxy.domains else proxy.http_port
        host = None if isinstance(self.host, LocalHost) else self.host.name
        return endpoints(proxy, host, self.host.tunnel(port))

    def trust(self) -> ssl.SSLContext:
        """The system's trust store, plus ``proxy.trusted_roots`` (a private CA's), plus the
        proxy's internal root with ``proxy.tls: internal`` (read from its admin API; absent
        while the proxy does not answer, so nothing it presents is trusted until it does)."""
        proxy = self.config.proxy
        roots = "".join(self.config.resolve(f).read_text() for f in proxy.trusted_roots)
        if proxy.domains and proxy.tls == "internal":
            try:
                roots += self.admin().local_root()
            except ShipyardError:
                pass
        return trust(roots or None)

    def verify(self, release: Release) -> str:
        """``deploy.verify_path`` through the proxy, at every endpoint users reach, must report
        the deployed commit: waits up to ``proxy.certificate_timeout`` for a trusted
        certificate (HTTPS), then ``deploy.verify_timeout`` for the commit."""
        path = self.config.deploy.verify_path
        if not path:
            return "skipped (deploy.verify_path is empty)"
        return "; ".join(self._verify_at(endpoint, path, release) for endpoint in self.endpoints())

    def _verify_at(self, endpoint: Endpoint, path: str, release: Release) -> str:
        """Any HTTP answer at ``endpoint`` first (over HTTPS that takes a trusted certificate:
        within ``proxy.certificate_timeout``, else ``deploy.verify_timeout``), then, within
        ``deploy.verify_timeout`` of it, one naming the commit."""
        proxy, deploy = self.config.proxy, self.config.deploy
        trusted: ssl.SSLContext | None = None  # read at the first HTTPS probe
        last: Answer | None = None

        def trust() -> ssl.SSLContext:
            nonlocal trusted
            if trusted is None:
                trusted = self.trust()
            return trusted

        def ask() -> Answer:
            nonlocal trusted, last
            last = probe(endpoint, path, verify=trust, timeout=5)
            if last.tls:
                trusted = None  # read again: the internal root appears once the proxy made it
            return last

        def commit(answer: Answer) -> bool:
            return reports_commit(answer, release.commit)

        first = proxy.certificate_timeout if endpoint.scheme == "https" else deploy.verify_timeout
        answer = wait_until(
            ask,
            timeout=first,
            interval=_VERIFY_PAUSES,
            clock=self.clock,
            done=lambda answer: answer.status is not None,
        )
        if answer is not None and not commit(answer):
            answer = wait_until(
                ask,
                timeout=deploy.verify_timeout,
                interval=_VERIFY_PAUSES,
                clock=self.clock,
                done=commit,
            )
        if answer is None:
            assert last is not None  # noqa: S101 — wait_until asks at least once
            raise self._unverified(last, release)
        return f"{endpoint.describe(path)} reports {release.commit[:7]}"

    def _unverified(self, answer: Answer, release: Release) -> DeployFailed:
        endpoint, proxy = answer.endpoint, self.config.proxy
        where = endpoint.describe(answer.path)
        if answer.status is not None:
            return DeployFailed(
                "verify",
                f"{where} does not report commit {release.commit[:7]}: {answer.describe()}\n"
                "  deploy.verify_path must be answered by the app itself (2xx, no redirect) "
                "with a body naming the commit it was built from",
            )
        if not answer.tls:
            return DeployFailed("verify", f"{where}: the proxy does not answer: {answer.error}")
        domain = endpoint.server_name
        logged = self._caddy_errors(domain)
        if proxy.tls == "internal":
            why = (
                f"the proxy's internal CA signs {domain}'s certificate: `docker logs "
                f"{self.names.proxy}` says why it did not"
            )
        elif proxy.acme_ca:
            why = (
                f"Caddy obtains {domain}'s certificate from the ACME server {proxy.acme_ca}: "
                f"{domain} must resolve, for that server, to this proxy (ports 80 and 443), and "
                "verify trusts what a private CA issues only with its root in "
                f"proxy.trusted_roots (`docker logs {self.names.proxy}` shows its attempts)"
            )
        else:
            why = (
                f"Caddy obtains {domain}'s certificate by ACME: {domain} must resolve to this host "
                f"and ports 80 and 443 be reachable from the internet (`docker logs "
                f"{self.names.proxy}` shows its attempts); a private setup or a test uses "
                "proxy.tls: internal"
            )
        # The explanation is part of the message: a failure after the switch gets the rollback's
        # hint instead of this phase's.
        return DeployFailed(
            "verify",
            f"no trusted certificate for {domain} within {proxy.certificate_timeout:g}s "
            f"(proxy.certificate_timeout, proxy.tls: {proxy.tls}) at {where}: {answer.error}"
            + (f"\n  the proxy logged: {logged}" if logged else "")
            + f"\n  {why}",
        )

    def _caddy_errors(self, domain: str, since: float | None = None) -> str:
        """The proxy's last logged error about ``domain`` (why a certificate is missing); with
        ``since`` (seconds since the epoch), the last one its certificate management (``tls*``
        loggers: obtaining, renewing) logged after it."""
        try:
            logs = self.docker.logs(self.names.proxy, tail=500)
        except ShipyardError:
            return ""
        found = [
            line
            for line in logs.splitlines()
            if domain in line
            and '"level":"error"' in line.replace(" ", "")
            and (since is None or _tls_error_after(line, since))
        ]
        return found[-1][:500] if found else ""

    def compare_latency(self, observed: Observed, marks: list[dict[str, Any]]) -> Comparison:
        """The live version's p95 through the proxy since its switch, against the version's
        before it over its whole time live (``StateStore.switch_marks``). A figure is missing
        when the proxy restarted in between (its counts began again) or nothing was marked."""
        if not marks:
            return Comparison(None, None, 0, 0, None)
        last = marks[-1]
        at_switch = Latency.from_dict(last["latency"])
        current = observed.latency.since(at_switch)
        if observed.started != last.get("proxy_started"):
            current = None
        previous: Latency | None = None
        before = marks[-2] if len(marks) > 1 else None
        if before is not None and before.get("proxy_started") == last.get("proxy_started"):
            previous = at_switch.since(Latency.from_dict(before["latency"]))
        return Comparison(
            current.quantile(0.95) if current else None,
            previous.quantile(0.95) if previous else None,
            current.count if current else 0,
            previous.count if previous else 0,
            str(before["version"]) if before is not None else None,
        )

    def watch(self, slot: str, seconds: float) -> str:
        """After the switch: health checks and the proxy's 5xx rate for ``seconds``
        (``deploy.watch``, or ``deploy.rollback_watch`` for a rollback), a round every
        ``health.interval`` and one at the end; and the new version's p95 latency against the
        previous version's: a regression (``deploy.latency_regression``) sends a
        ``health.degraded`` event with both figures, and with ``deploy.on_latency_regression:
        switch_back`` fails the watch."""
        section = self.config.deploy
        if seconds <= 0:
            return "skipped (no watch window)"
        admin = self.admin()
        watch = Watch(self, slot, admin)
        warned = False

        def watched() -> None:
            nonlocal warned
            watch.round()
            seen, latency = watch.seen, watch.latency
            if seen.total >= section.min_requests and seen.error_rate > section.max_error_rate:
                raise DeployFailed(
                    "watch",
                    f"{seen.errors} of {seen.total} requests through the proxy failed with 5xx "
                    f"({seen.error_rate:.0%} > {section.max_error_rate:.0%}) after the switch",
                )
            if latency.regressed(section.min_requests, section.latency_regression):
                said = latency.said(section.latency_regression)
                if section.on_latency_regression == "switch_back":
                    raise DeployFailed("watch", f"{said} (deploy.on_latency_regression)")
                if not warned:
                    warned = True
                    self.ctx.phases().event(
                        EventKind.HEALTH_DEGRADED, message=said, data=latency.to_dict()
                    )

        wait_until(
            watched, timeout=seconds, interval=self.config.health.interval, clock=self.clock,
            done=_never,
        )  # fmt: skip
        return f"healthy for {seconds:g}s; {watch.summary()}"

    def observe_live(
        self, seconds: float, each: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """``shipyard watch``: the live version's health checks, requests, 5xx and p95 (against
        the previous version's) for ``seconds``, a round every ``health.interval`` handed to
        ``each``; returns the summary. Changes nothing."""
        slot = self.live_slot()
        if slot is None:
            raise ShipyardError("nothing is live: nothing to watch")
        watch = Watch(self, slot, self.admin())
        started = time.monotonic()

        def observed() -> None:
            watch.round()
            each({"elapsed_s": round(time.monotonic() - started, 1), **watch.to_dict()})

        wait_until(
            observed, timeout=seconds, interval=self.config.health.interval, clock=self.clock,
            done=_never,
        )  # fmt: skip
        allowed = self.config.deploy.latency_regression
        regressed = watch.latency.regressed(self.config.deploy.min_requests, allowed)
        return {
            **watch.to_dict(),
            "seconds": seconds,
            "regression": regressed,
            "summary": watch.summary(),
        }


@dataclass(frozen=True)
class Comparison:
    """The live version's p95 latency through the proxy against the previous version's."""

    current_p95: float | None
    previous_p95: float | None
    current_requests: int
    previous_requests: int
    previous_version: str | None

    def regressed(self, min_requests: int, allowed: float) -> bool:
        enough = min(self.current_requests, self.previous_requests) >= min_requests
        return enough and regression(self.current_p95, self.previous_p95, allowed)

    def said(self, allowed: float) -> str:
        current, previous = _ms(self.current_p95), _ms(self.previous_p95)
        return (
            f"p95 latency {current} over {self.current_requests} request(s) since the switch, "
            f"{previous} for {self.previous_version} before it: more than {allowed:.0%} slower"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "p95_s": self.current_p95,
            "previous_p95_s": self.previous_p95,
            "previous_version": self.previous_version,
            "previous_requests": self.previous_requests,
        }


class Watch:
    """Rounds of health checks on a slot and reads of the proxy's metrics, counted from the
    first round."""

    def __init__(self, steps: Observation, slot: str, admin: CaddyAdmin) -> None:
        self.steps, self.admin = steps, admin
        self.health = steps.config.health
        self.checks = build_checks(self.health)
        self.target = steps._target(slot)
        self.slot = slot
        self.baseline = admin.observe().traffic
        self.marks = steps.ctx.store.switch_marks()  # read once: no switch during a watch
        self.seen = self.baseline.since(self.baseline)
        self.latency = Comparison(None, None, 0, 0, None)
        self.passed = self.failed = self.failing = 0

    def round(self) -> None:
        """One round; ``DeployFailed`` when ``health.failures`` rounds in a row failed."""
        results = [check.run(self.target, self.health.timeout) for check in self.checks]
        if all(r.ok for r in results):
            self.passed, self.failing = self.passed + 1, 0
        else:
            self.failed, self.failing = self.failed + 1, self.failing + 1
        if self.failing >= self.health.failures:
            detail = "; ".join(r.detail for r in results if not r.ok)
            raise DeployFailed(
                "watch", f"slot {self.slot} turned unhealthy after the switch: {detail}"
            )
        observed = self.admin.observe()
        self.seen = observed.traffic.since(self.baseline)
        self.latency = self.steps.compare_latency(observed, self.marks)

    def summary(self) -> str:
        seen: Traffic = self.seen
        latency = self.latency
        compared = (
            f"; p95 {_ms(latency.current_p95)} (was {_ms(latency.previous_p95)} for "
            f"{latency.previous_version})"
            if latency.previous_version
            else f"; p95 {_ms(latency.current_p95)}"
        )
        return (
            f"checks {self.passed} passed, {self.failed} failed; {seen.total} request(s), "
            f"{seen.errors} 5xx{compared}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks_passed": self.passed,
            "checks_failed": self.failed,
            "requests": self.seen.total,
            "errors": self.seen.errors,
            **self.latency.to_dict(),
        }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _tls_error_after(line: str, since: float) -> bool:
    """Whether Caddy's JSON log ``line`` comes from its certificate management (a ``tls``
    logger) and was logged (``ts``) after ``since``."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return False
    if not isinstance(entry, dict):
        return False
    stamp, logger = entry.get("ts"), str(entry.get("logger") or "")
    return isinstance(stamp, int | float) and stamp > since and (logger + ".").startswith("tls.")


def _never(_: object) -> bool:
    """The watch runs its whole window: it ends early only by raising."""
    return False


# Verify asks at once, then after pauses doubling from 0.025 s up to 0.5 s: the proxy's lookup
# sees the switch within its refresh (shipyard.proxy.LOOKUP_REFRESH_S, 0.05 s).
_VERIFY_PAUSES = Interval(0.025, 2, 0.5)
