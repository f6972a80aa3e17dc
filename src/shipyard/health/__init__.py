"""Health checks (a registry of kinds) and the gate that waits for N consecutive passing rounds.

Kinds: ``http`` (status and JSON fields), ``tcp``, ``postgres`` (a query in the database) and
``command`` (run inside the app container). One polling loop serves them all.

A failing check either got no answer (the slot is not listening yet, the query or command could
not run) or got one that says the slot is unhealthy (a status or JSON field not accepted, a query
returning false, a command exiting non-zero): ``CheckResult.answered`` tells them apart, so the
gate can give up early on a version that keeps saying it is unhealthy while it waits patiently
for one that is still starting.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from shipyard.config import CommandCheck, HealthSection, HttpCheck, PostgresCheck, TcpCheck
from shipyard.docker import Docker
from shipyard.errors import ShipyardError
from shipyard.waiting import Clock, Interval, wait_until

__all__ = [
    "CHECK_KINDS",
    "CheckResult",
    "GateResult",
    "HealthCheck",
    "Target",
    "build_checks",
    "describe_check",
    "reports_commit",
    "wait_healthy",
]


@dataclass(frozen=True)
class Target:
    """What a check looks at: one app slot."""

    base_url: str  # http://127.0.0.1:<port> reaching the slot's app port
    port: int
    container: str
    docker: Docker
    database_container: str | None = None
    database_user: str | None = None
    database_name: str | None = None
    transport: httpx.BaseTransport | None = None  # how HTTP checks travel; None: the network


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    answered: bool = False  # the slot answered: a failure is its own verdict, not silence


class HealthCheck(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, target: Target, timeout: float) -> CheckResult: ...


@dataclass(frozen=True)
class _Http:
    spec: HttpCheck

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, target: Target, timeout: float) -> CheckResult:
        url = target.base_url + self.spec.path
        try:
            with httpx.Client(transport=target.transport, timeout=timeout) as client:
                response = client.get(url)
        except httpx.HTTPError as exc:
            return CheckResult(
                self.name, False, f"GET {self.spec.path}: {type(exc).__name__}: {exc}"
            )
        body = response.text[:300]
        if response.status_code not in self.spec.status:
            return CheckResult(
                self.name,
                False,
                f"GET {self.spec.path} → {response.status_code} {body}",
                answered=True,
            )
        if self.spec.json_fields:
            try:
                document = response.json()
            except json.JSONDecodeError:
                return CheckResult(
                    self.name,
                    False,
                    f"GET {self.spec.path}: body is not JSON: {body}",
                    answered=True,
                )
            for key, accepted in self.spec.json_fields.items():
                value = document.get(key) if isinstance(document, dict) else None
                if str(value) not in accepted:
                    return CheckResult(
                        self.name,
                        False,
                        f"GET {self.spec.path}: {key}={value!r}, expected one of {accepted}: {body}",
                        answered=True,
                    )
        return CheckResult(
            self.name, True, f"GET {self.spec.path} → {response.status_code}", answered=True
        )


@dataclass(frozen=True)
class _Tcp:
    spec: TcpCheck

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, target: Target, timeout: float) -> CheckResult:
        try:
            with socket.create_connection(("127.0.0.1", target.port), timeout=timeout):
                return CheckResult(self.name, True, f"tcp {target.port} accepts", answered=True)
        except OSError as exc:
            return CheckResult(self.name, False, f"tcp {target.port}: {exc}")


@dataclass(frozen=True)
class _Postgres:
    spec: PostgresCheck

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, target: Target, timeout: float) -> CheckResult:
        if not target.database_container:
            return CheckResult(
                self.name, False, "no database managed by shipyard in this environment"
            )
        result = target.docker.exec(
            target.database_container,
            [
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                target.database_user or "postgres",
                "-d",
                target.database_name or "postgres",
            ],
            stdin=self.spec.query,
            check=False,
            timeout=timeout,
        )
        value = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
        if result.ok and value.lower() in {"t", "true", "1"}:
            return CheckResult(self.name, True, f"query returned {value}", answered=True)
        # A query that ran and returned something else is the database's verdict; one that
        # could not run (the database not accepting connections yet) is no answer.
        return CheckResult(
            self.name,
            False,
            f"query returned {value!r} {result.stderr.strip()[:200]}",
            answered=result.ok,
        )


@dataclass(frozen=True)
class _Command:
    spec: CommandCheck

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, target: Target, timeout: float) -> CheckResult:
        try:
            result = target.docker.exec(
                target.container, self.spec.argv, check=False, timeout=timeout
            )
        except ShipyardError as exc:
            return CheckResult(self.name, False, exc.message)
        if result.ok:
            return CheckResult(self.name, True, "exit 0", answered=True)
        # docker exec's own failures (126, 127: the command cannot run; the container is not
        # running) are no answer; any other exit status is the command's verdict.
        return CheckResult(
            self.name,
            False,
            f"exit {result.returncode}: {(result.stdout + result.stderr)[-200:]}",
            answered=result.returncode not in _EXEC_FAILURES,
        )


_EXEC_FAILURES = frozenset({125, 126, 127})  # docker exec could not run the command


CHECK_KINDS: dict[str, Callable[[Any], HealthCheck]] = {
    "http": _Http,
    "tcp": _Tcp,
    "postgres": _Postgres,
    "command": _Command,
}


def build_checks(section: HealthSection) -> list[HealthCheck]:
    return [CHECK_KINDS[spec.kind](spec) for spec in section.checks]


def describe_check(spec: HttpCheck | TcpCheck | PostgresCheck | CommandCheck) -> str:
    """A check as output names it: its name, and what an HTTP check requests
    (``http /health``, ``readiness /readyz``); the kind when the name is not the kind's."""
    label = spec.name if spec.name == spec.kind else f"{spec.name} ({spec.kind})"
    if isinstance(spec, HttpCheck):
        label = f"{spec.name} {spec.path}"
    return label


@dataclass
class GateResult:
    ok: bool
    rounds: int
    last: list[CheckResult] = field(default_factory=list)
    reason: str = ""


def _round(checks: Sequence[HealthCheck], target: Target, timeout: float) -> list[CheckResult]:
    """Every check in order, up to the first that fails."""
    results: list[CheckResult] = []
    for check in checks:
        results.append(check.run(target, timeout))
        if not results[-1].ok:
            break
    return results


def wait_healthy(
    checks: Sequence[HealthCheck],
    target: Target,
    section: HealthSection,
    *,
    alive: Callable[[], str | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_round: Callable[[int, list[CheckResult]], None] | None = None,
) -> GateResult:
    """Run rounds of ``checks`` until ``section.passes`` rounds in a row pass, the slot dies, it
    keeps answering that it is unhealthy for ``section.unhealthy_grace``, or
    ``section.start_timeout`` runs out.

    The first round runs at once. After a failing round the pause starts at
    ``section.first_interval`` and doubles up to ``section.interval`` (a slot that is starting is
    seen soon, one that takes long is not hammered); a passing round is followed after
    ``first_interval``, so the passes needed cost no idle wait. The grace counts from the first
    round that got an unhealthy answer (``CheckResult.answered``) and only a passing round resets
    it: a slot that is not answering yet gets the whole ``start_timeout``.

    ``alive`` returns a reason when the slot can no longer become healthy (its container exited
    or restarted); it is asked after a failing round (at most once per ``section.interval``, as
    it costs an inspection of the container) and once the streak is complete, so a restart
    between passes fails the gate too.
    """
    gate = _Gate(checks, target, section, alive=alive, clock=clock, on_round=on_round)
    ended = wait_until(
        gate.round,
        timeout=section.start_timeout,
        interval=gate.pauses(),
        clock=Clock(clock, sleep),
        done=lambda result: result is not None,
    )
    if ended is not None:
        return ended
    failing = "; ".join(r.detail for r in gate.last if not r.ok) or "its last round passed"
    return GateResult(
        False, gate.rounds, gate.last, f"not healthy within {section.start_timeout:g}s: {failing}"
    )


class _Gate:
    """The health gate's rounds (``round``, the condition ``wait_until`` tries) and the pauses
    between them, which depend on how the last round went (``pauses``)."""

    def __init__(
        self,
        checks: Sequence[HealthCheck],
        target: Target,
        section: HealthSection,
        *,
        alive: Callable[[], str | None],
        clock: Callable[[], float],
        on_round: Callable[[int, list[CheckResult]], None] | None,
    ) -> None:
        self.checks, self.target, self.section = checks, target, section
        self.alive, self.clock, self.on_round = alive, clock, on_round
        self.first = min(section.first_interval, section.interval)
        self.rounds = self.streak = 0
        self.last: list[CheckResult] = []
        self.unhealthy_since: float | None = None
        self.asked: float | None = None  # when ``alive`` was last asked

    def round(self) -> GateResult | None:
        """One round of checks: the gate's result once it is decided, else ``None``."""
        section = self.section
        self.rounds += 1
        self.last = last = _round(self.checks, self.target, section.timeout)
        if self.on_round is not None:
            self.on_round(self.rounds, last)
        if all(r.ok for r in last):
            self.streak += 1
            self.unhealthy_since = None
            if self.streak >= section.passes:
                dead = self.alive()
                return GateResult(not dead, self.rounds, last, dead or "")
            return None
        self.streak = 0
        now = self.clock()
        if self.asked is None or now - self.asked >= section.interval:
            self.asked, dead = now, self.alive()
            if dead:
                return GateResult(False, self.rounds, last, dead)
        if any(r.answered and not r.ok for r in last):
            if self.unhealthy_since is None:
                self.unhealthy_since = now
            since = self.unhealthy_since
            if now - since >= section.unhealthy_grace:
                failing = "; ".join(r.detail for r in last if not r.ok)
                return GateResult(
                    False,
                    self.rounds,
                    last,
                    f"it answered unhealthy for {now - since:.1f}s "
                    f"(health.unhealthy_grace: {section.unhealthy_grace:g}s): {failing}",
                )
        return None

    def pauses(self) -> Iterator[float]:
        """The pause after each round: ``first`` after a pass; after a failure, the pause before
        it doubled (up to ``section.interval``), starting at ``first``."""
        pause = self.first
        while True:
            if self.streak:
                pause = self.first
                yield pause
            else:
                yield pause
                pause = min(pause * 2, self.section.interval)


_REPORTS = Interval(0.5, 1.5, 5.0)


def reports_commit(
    url: str, commit: str, *, timeout: float, request_timeout: float
) -> tuple[bool, str]:
    """GET ``url`` until a successful answer names ``commit`` (the release a platform's load
    balancer or service URL should serve: in ``/version``'s ``git_commit``, or anywhere in the
    answer), within ``timeout`` seconds: whether one did, and the last answer seen."""
    seen: list[str] = []

    def answer() -> bool:
        try:
            response = httpx.get(url, timeout=request_timeout)
        except httpx.HTTPError as exc:
            seen.append(f"{type(exc).__name__}: {exc}")
            return False
        seen.append(f"{response.status_code} {response.text[:200]}")
        return response.is_success and commit in response.text

    reported = wait_until(answer, timeout=timeout, interval=_REPORTS, done=bool)
    return bool(reported), seen[-1] if seen else "none"
