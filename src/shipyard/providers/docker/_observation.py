"""Observation: the new version checked through the proxy as users reach it (verify), and
watched after the switch."""

from __future__ import annotations

import json
import ssl

from shipyard.errors import DeployFailed, ShipyardError
from shipyard.health import build_checks
from shipyard.hosts import LocalHost
from shipyard.providers.docker._base import StepsBase
from shipyard.proxy import Answer, Endpoint, endpoints, probe, reports_commit, trust
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
        trusted = self.trust()
        last: Answer | None = None

        def ask() -> Answer:
            nonlocal trusted, last
            last = probe(endpoint, path, verify=trusted, timeout=5)
            if last.tls:
                trusted = self.trust()  # the internal root appears once the proxy made it
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

    def watch(self, slot: str, seconds: float) -> str:
        """After the switch: health checks and the proxy's 5xx rate for ``seconds``
        (``deploy.watch``, or ``deploy.rollback_watch`` for a rollback), a round every
        ``health.interval`` and one at the end."""
        section, health = self.config.deploy, self.config.health
        if seconds <= 0:
            return "skipped (no watch window)"
        admin = self.admin()
        baseline = admin.traffic()
        checks = build_checks(health)
        target = self._target(slot)
        failing = 0
        seen = baseline.since(baseline)

        def watched() -> None:
            nonlocal failing, seen
            results = [check.run(target, health.timeout) for check in checks]
            failing = failing + 1 if not all(r.ok for r in results) else 0
            if failing >= health.failures:
                detail = "; ".join(r.detail for r in results if not r.ok)
                raise DeployFailed(
                    "watch", f"slot {slot} turned unhealthy after the switch: {detail}"
                )
            seen = admin.traffic().since(baseline)
            if seen.total >= section.min_requests and seen.error_rate > section.max_error_rate:
                raise DeployFailed(
                    "watch",
                    f"{seen.errors} of {seen.total} requests through the proxy failed with 5xx "
                    f"({seen.error_rate:.0%} > {section.max_error_rate:.0%}) after the switch",
                )

        wait_until(
            watched, timeout=seconds, interval=health.interval, clock=self.clock, done=_never
        )
        return f"healthy for {seconds:g}s; {seen.total} request(s), {seen.errors} 5xx"


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


# Verify asks at once, then after pauses doubling from 0.1 s up to 0.5 s: the proxy's lookup
# sees the switch within its refresh (shipyard.proxy.LOOKUP_REFRESH_S).
_VERIFY_PAUSES = Interval(0.1, 2, 0.5)
