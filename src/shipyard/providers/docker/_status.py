"""What ``shipyard status`` reports of a Docker environment, and how it is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipyard.database import MigrationState
from shipyard.deploy import OperationContext
from shipyard.docker import ContainerInfo
from shipyard.errors import ShipyardError
from shipyard.providers.docker._names import LABEL, Names
from shipyard.providers.docker._steps import DockerSteps
from shipyard.proxy import (
    ServedCertificate,
    judge_health,
    keeping_running_lookups,
    probe,
    running_maintenance_routes,
    served_certificate,
    upstreams_of,
)
from shipyard.state import Current, Intent, Maintenance


@dataclass(frozen=True)
class Status:
    """What ``shipyard status`` reports."""

    url: str
    version: str | None
    commit: str | None
    slot: str | None
    release_id: str | None
    deployed_at: str | None
    deployed_by: str | None
    health: str  # healthy, degraded, unhealthy, unreachable, not deployed
    health_detail: str  # what the proxy answered (a redirect is never healthy)
    probed: str | None  # the URL the health came from, with its SNI/Host and where it connected
    proxy_upstreams: list[str]
    drift: str | None
    containers: dict[str, str]
    # An operation that was interrupted, and what the next one will do about it.
    interrupted: str | None = None
    # What is wrong beyond drift: nothing serves, the app is unhealthy, the schema is dirty, a
    # certificate is failing.
    problems: list[str] = field(default_factory=list)
    # With proxy.domains: what the proxy serves for each domain (``certificate_report``).
    certificates: list[dict[str, Any]] = field(default_factory=list)
    # Maintenance mode as recorded: {"on": false}, or on with its message, allowed CIDRs,
    # Retry-After, since and by whom.
    maintenance: dict[str, Any] = field(default_factory=lambda: {"on": False})

    @property
    def ok(self) -> bool:
        return self.drift is None and self.interrupted is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _interrupted(ctx: OperationContext) -> Intent | None:
    """The journalled operation, unless it is still running (it holds a live lock)."""
    intent = ctx.store.intent()
    if intent is None:
        return None
    lock = ctx.store.lock(ctx.deployment_id, "status")
    holder = lock.holder()
    if (
        holder is not None
        and holder.get("deployment_id") == intent.deployment_id
        and not lock.is_stale(holder)
    ):
        return None  # in progress, not interrupted
    return intent


def _stack_containers(names: Names) -> list[str]:
    return [
        names.database,
        names.database_client,
        names.proxy,
        names.guard,
        names.live,
        names.switching,
        names.slot("blue"),
        names.slot("green"),
    ]


def read_schema(steps: DockerSteps) -> MigrationState | ShipyardError | None:
    """The migration state of the environment's database, or why it could not be read
    (``None``: the environment has no database). Read before the stack is inspected, so the
    answer counts only where ``schema_problem`` finds the database running."""
    database = steps._database()
    if database is None:
        return None
    try:
        return database.migration_state()
    except ShipyardError as exc:
        return exc


def schema_problem(
    steps: DockerSteps,
    found: Mapping[str, ContainerInfo | None],
    read: MigrationState | ShipyardError | None,
) -> str | None:
    """A dirty schema, or a migration state that cannot be read, in the environment's running
    database (``None``: clean, or no database running). ``found``: the stack's containers;
    ``read``: ``read_schema``'s answer."""
    database = steps._database()
    db = found.get(database.container) if database is not None else None
    if read is None or db is None or not db.running:
        return None
    if isinstance(read, ShipyardError):
        return f"the migration state cannot be read: {read.message}"
    if read.dirty:
        return f"the schema is dirty at version {read.version}: a migration failed part-way"
    return None


def _serving_problems(
    steps: DockerSteps,
    found: Mapping[str, ContainerInfo | None],
    health: str,
    detail: str,
    schema: str | None,
) -> list[str]:
    """What keeps a deployed environment from serving well: no running live container, an
    unhealthy app, a dirty schema (``schema``: ``schema_problem``'s answer). ``found``: the
    stack's containers, inspected."""
    problems = []
    live = found[steps.names.live]
    if live is None or not live.running:
        state = f"{live.name} {live.status}" if live is not None else f"{steps.names.live} absent"
        switching = found[steps.names.switching]
        if switching is not None and switching.running:
            slot = switching.labels.get(f"{LABEL}.slot", "?")
            problems.append(
                f"no container carries the live name ({state}): a switch was cut short, the "
                f"proxy sends requests to {switching.name} (slot {slot})"
            )
        elif steps._running_slots():
            problems.append(
                f"no container carries the live or the switching name ({state}): requests wait "
                "proxy.dial_retry for one, then fail; `shipyard repair ENV` makes a running "
                "slot live"
            )
        else:
            problems.append(f"no container serves ({state})")
    if health not in ("healthy", "degraded"):
        problems.append(f"the app is {health} through the proxy ({detail})")
    if schema is not None:
        problems.append(schema)
    return problems


def _describe(info: ContainerInfo | None) -> str:
    if info is None:
        return "absent"
    slot = info.labels.get(f"{LABEL}.slot")
    return (
        info.status
        + (f" ({info.health})" if info.health else "")
        + (f", slot {slot}" if slot else "")
    )


def _proxy_health(steps: DockerSteps) -> tuple[str, str, str]:
    """The app's health through the proxy, the way users reach it (``shipyard.proxy.probe``):
    the health, what answered, and the URL probed and how."""
    path = next((c.path for c in steps.config.health.checks if c.kind == "http"), "/health")
    endpoint = steps.endpoints()[0]
    answer = probe(endpoint, path, verify=steps.trust, timeout=5)
    return judge_health(answer), answer.describe(), endpoint.describe(path)


def certificate_report(steps: DockerSteps, now: float) -> tuple[list[dict[str, Any]], list[str]]:
    """Each domain's certificate as the proxy serves it (issuer, expiry, days left; read the
    way users reach it, with the domain as SNI, and trusted as verify trusts it), and what is
    wrong with them: no trusted certificate, or an error the proxy logged about the domain since
    the served certificate was issued (a renewal failing while the certificate still serves)."""
    report: list[dict[str, Any]] = []
    problems: list[str] = []
    trusted = steps.trust()
    for endpoint in steps.endpoints():
        served = served_certificate(endpoint, verify=trusted, timeout=5)
        logged = steps._caddy_errors(endpoint.server_name, since=served.not_before or None)
        report.append(_certificate_record(served, now, logged))
        if served.error is not None:
            problems.append(f"certificate for {served.domain}: {served.error}")
        elif logged:
            days = served.days_left(now) or 0.0
            problems.append(
                f"certificate for {served.domain}: the proxy logged an error since it was issued "
                f"(renewal failing? {days:.1f} days left): {logged}"
            )
    return report, problems


def _certificate_record(served: ServedCertificate, now: float, logged: str) -> dict[str, Any]:
    days_left = served.days_left(now)
    return {
        "domain": served.domain,
        "issuer": served.issuer,
        "serial": served.serial,
        "not_after": (
            None
            if served.not_after is None
            else datetime.fromtimestamp(served.not_after, UTC).isoformat(timespec="seconds")
        ),
        "days_left": None if days_left is None else round(days_left, 4),
        "error": served.error,
        "last_error": logged or None,
    }


def _drift(
    steps: DockerSteps,
    found: Mapping[str, ContainerInfo | None],
    current: Current | None,
    recorded: Maintenance | None,
) -> tuple[list[str], list[str]]:
    """The proxy's upstreams, and where the proxy and the live container disagree with the
    state (its routes, its maintenance routes and flag, the slot carrying the live name)."""
    upstreams: list[str] = []
    problems: list[str] = []
    proxy = found[steps.names.proxy]
    if proxy is not None and proxy.running:
        running: dict[str, Any] = {}
        try:
            running = steps.admin().config()
            upstreams = upstreams_of(running)
        except ShipyardError as exc:
            problems.append(f"proxy admin API unreachable: {exc.message}")
        rendered = keeping_running_lookups(steps.caddy_config(read_only=True), running)
        expected = upstreams_of(rendered)
        if not problems and upstreams != expected:
            problems.append(f"proxy routes to {upstreams or 'nothing'}, its config says {expected}")
        if not problems and running_maintenance_routes(running) != (
            running_maintenance_routes(rendered)
        ):
            problems.append(
                "the proxy's maintenance routes are not those the state gives: "
                "`shipyard maintenance on|off ENV` loads them again"
            )
    elif current:
        problems.append("the proxy is not running")
    if steps.maintenance_flagged() != (recorded is not None):
        said = "on" if recorded is not None else "off"
        problems.append(
            f"the proxy's maintenance flag disagrees with the state ({said}): "
            f"`shipyard maintenance {said} ENV` sets it again"
        )
    live_container = found[steps.names.live]
    live = live_container.labels.get(f"{LABEL}.slot") if live_container is not None else None
    if current and live != current.slot:
        problems.append(f"{steps.names.live} is slot {live or 'nobody'}, state says {current.slot}")
    return upstreams, problems


def recorded(
    ctx: OperationContext, current: Current | None, maintenance: Maintenance | None
) -> dict[str, Any]:
    """What the state records, as ``Status`` fields: the live release (``current``, as read)
    and its slot, an interrupted operation, maintenance mode (as read). Every provider's status
    starts from these."""
    release = ctx.store.release(current.release_id) if current else None
    return {
        "version": release.version if release else None,
        "commit": release.commit if release else None,
        "slot": current.slot if current else None,
        "release_id": current.release_id if current else None,
        "deployed_at": current.switched_at if current else None,
        "deployed_by": release.deployed_by if release else None,
        "interrupted": _interruption(ctx),
        "maintenance": maintenance.to_dict() if maintenance is not None else {"on": False},
    }


def _interruption(ctx: OperationContext) -> str | None:
    """An interrupted operation, and what the next one will do about it."""
    intent = _interrupted(ctx)
    interrupted = None
    if intent is not None:
        version = intent.release.version if intent.release else "a version not yet built"
        if not intent.started:
            then = "records it (it had not changed what serves)"
        elif intent.proven:
            then = f"finishes it ({version} stays)"
        else:
            then = "undoes it (the previous version serves alone)"
        interrupted = (
            f"{intent.action} {intent.deployment_id} of {version} by {intent.by} stopped at "
            f"step {intent.step!r} (since {intent.updated_at}); the next deploy, rollback or "
            f"`shipyard repair` {then}"
        )
    return interrupted
