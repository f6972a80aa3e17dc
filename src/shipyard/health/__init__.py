"""Health checks (a registry of kinds) and the gate that waits for N consecutive passing rounds.

Kinds: ``http`` (status and JSON fields), ``tcp``, ``postgres`` (a query in the database) and
``command`` (run inside the app container). One polling loop serves them all.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from shipyard.config import CommandCheck, HealthSection, HttpCheck, PostgresCheck, TcpCheck
from shipyard.docker import Docker
from shipyard.errors import ShipyardError

__all__ = [
    "CHECK_KINDS",
    "CheckResult",
    "GateResult",
    "HealthCheck",
    "Target",
    "build_checks",
    "describe_check",
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


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


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
            response = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            return CheckResult(
                self.name, False, f"GET {self.spec.path}: {type(exc).__name__}: {exc}"
            )
        body = response.text[:300]
        if response.status_code not in self.spec.status:
            return CheckResult(
                self.name, False, f"GET {self.spec.path} → {response.status_code} {body}"
            )
        if self.spec.json_fields:
            try:
                document = response.json()
            except json.JSONDecodeError:
                return CheckResult(
                    self.name, False, f"GET {self.spec.path}: body is not JSON: {body}"
                )
            for key, accepted in self.spec.json_fields.items():
                value = document.get(key) if isinstance(document, dict) else None
                if str(value) not in accepted:
                    return CheckResult(
                        self.name,
                        False,
                        f"GET {self.spec.path}: {key}={value!r}, expected one of {accepted}: {body}",
                    )
        return CheckResult(self.name, True, f"GET {self.spec.path} → {response.status_code}")


@dataclass(frozen=True)
class _Tcp:
    spec: TcpCheck

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, target: Target, timeout: float) -> CheckResult:
        try:
            with socket.create_connection(("127.0.0.1", target.port), timeout=timeout):
                return CheckResult(self.name, True, f"tcp {target.port} accepts")
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
            return CheckResult(self.name, True, f"query returned {value}")
        return CheckResult(
            self.name, False, f"query returned {value!r} {result.stderr.strip()[:200]}"
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
            return CheckResult(self.name, True, "exit 0")
        return CheckResult(
            self.name, False, f"exit {result.returncode}: {(result.stdout + result.stderr)[-200:]}"
        )


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
    """Poll until ``section.passes`` consecutive rounds pass, the slot dies, or time runs out.

    ``alive`` returns a reason when the slot can no longer become healthy (its container exited).
    """
    deadline = clock() + section.start_timeout
    streak = 0
    rounds = 0
    last: list[CheckResult] = []
    while True:
        dead = alive()
        if dead:
            return GateResult(False, rounds, last, dead)
        rounds += 1
        last = []
        for check in checks:
            result = check.run(target, section.timeout)
            last.append(result)
            if not result.ok:
                break
        if on_round is not None:
            on_round(rounds, last)
        streak = streak + 1 if all(r.ok for r in last) else 0
        if streak >= section.passes:
            return GateResult(True, rounds, last)
        if clock() >= deadline:
            failing = "; ".join(r.detail for r in last if not r.ok) or "no passing streak"
            return GateResult(
                False, rounds, last, f"not healthy within {section.start_timeout:g}s: {failing}"
            )
        sleep(section.interval)
