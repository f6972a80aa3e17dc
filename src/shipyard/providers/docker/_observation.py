"""Observation: the new version checked through the proxy as users reach it (verify), and
watched after the switch."""

from __future__ import annotations

import ssl
import time

from shipyard.errors import DeployFailed, ShipyardError
from shipyard.health import build_checks
from shipyard.hosts import LocalHost
from shipyard.providers.docker._base import StepsBase
from shipyard.proxy import Answer, Endpoint, endpoints, probe, reports_commit, trust
from shipyard.state import Release


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
        """The system's trust store, plus the proxy's internal root with ``proxy.tls: internal``
        (read from its admin API; absent while the proxy does not answer, so nothing it
        presents is trusted until it does)."""
        proxy = self.config.proxy
        if not (proxy.domains and proxy.tls == "internal"):
            return trust()
        try:
            return trust(self.admin().local_root())
        except ShipyardError:
            return trust()

    def verify(self, release: Release) -> str:
        """``deploy.verify_path`` through the proxy, at every endpoint users reach, must report
        the deployed commit: waits up to ``proxy.certificate_timeout`` for a trusted
        certificate (HTTPS), then ``deploy.verify_timeout`` for the commit."""
        path = self.config.deploy.verify_path
        if not path:
            return "skipped (deploy.verify_path is empty)"
        return "; ".join(self._verify_at(endpoint, path, release) for endpoint in self.endpoints())

    def _verify_at(self, endpoint: Endpoint, path: str, release: Release) -> str:
        proxy, deploy = self.config.proxy, self.config.deploy
        https = endpoint.scheme == "https"
        deadline = time.monotonic() + (
            proxy.certificate_timeout if https else deploy.verify_timeout
        )
        answered = False
        verify = self.trust()
        while True:
            answer = probe(endpoint, path, verify=verify, timeout=5)
            if reports_commit(answer, release.commit):
                return f"{endpoint.describe(path)} reports {release.commit[:7]}"
            if answer.status is not None and not answered:
                answered = True  # the certificate is there: the commit must follow soon
                deadline = time.monotonic() + deploy.verify_timeout
            if time.monotonic() >= deadline:
                raise self._unverified(answer, release)
            if answer.tls:
                verify = self.trust()  # the internal root appears once the proxy made it
            time.sleep(0.5)

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

    def _caddy_errors(self, domain: str) -> str:
        """The proxy's last logged error about ``domain`` (why a certificate is missing)."""
        try:
            logs = self.docker.logs(self.names.proxy, tail=200)
        except ShipyardError:
            return ""
        found = [
            line
            for line in logs.splitlines()
            if domain in line and '"level":"error"' in line.replace(" ", "")
        ]
        return found[-1][:500] if found else ""

    def watch(self, slot: str, seconds: float) -> str:
        """After the switch: health checks and the proxy's 5xx rate for ``seconds``
        (``deploy.watch``, or ``deploy.rollback_watch`` for a rollback)."""
        section = self.config.deploy
        if seconds <= 0:
            return "skipped (no watch window)"
        admin = self.admin()
        baseline = admin.traffic()
        checks = build_checks(self.config.health)
        target = self._target(slot)
        deadline = time.monotonic() + seconds
        failing = rounds = 0
        seen = baseline.since(baseline)
        while True:
            rounds += 1
            results = [check.run(target, self.config.health.timeout) for check in checks]
            failing = failing + 1 if not all(r.ok for r in results) else 0
            if failing >= self.config.health.failures:
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
            if time.monotonic() >= deadline:
                break
            time.sleep(min(self.config.health.interval, max(0.0, deadline - time.monotonic())))
        return f"healthy for {seconds:g}s; {seen.total} request(s), {seen.errors} 5xx"
