"""The ``shipyard`` command: parse options, call one library function, render the result.

Only this package maps errors to messages and exit codes.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import asdict
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipyard import __version__
from shipyard.cli._context import Session, open_session, open_sessions, run_checks, run_provision
from shipyard.config import json_schema, reference_markdown
from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    RollbackOptions,
    across_nodes,
    rollout_error,
)
from shipyard.errors import (
    CheckFailed,
    ConfigError,
    DeployFailed,
    HostUnreachable,
    LockHeld,
    NeedsConfirmation,
    RollbackFailed,
    ShipyardError,
)
from shipyard.events import send_test
from shipyard.provision import StepResult

__all__ = ["ExitCode", "app", "main"]


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    INVALID_CONFIG = 3  # also: `check` found problems
    LOCK_HELD = 4
    HOST_UNREACHABLE = 5
    DEPLOY_FAILED = 6  # the previous version keeps serving
    ROLLBACK_FAILED = 7  # a person must act
    FAILED = 8  # any other expected failure


_EXIT_CODES: list[tuple[type[ShipyardError], ExitCode]] = [
    (NeedsConfirmation, ExitCode.USAGE),
    (ConfigError, ExitCode.INVALID_CONFIG),
    (CheckFailed, ExitCode.INVALID_CONFIG),
    (LockHeld, ExitCode.LOCK_HELD),
    (HostUnreachable, ExitCode.HOST_UNREACHABLE),
    (RollbackFailed, ExitCode.ROLLBACK_FAILED),
    (DeployFailed, ExitCode.DEPLOY_FAILED),
]

app = typer.Typer(
    name="shipyard",
    help="Deploy a Go + PostgreSQL server to Docker hosts: blue-green behind Caddy, one command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to shipyard.yml.", envvar="SHIPYARD_CONFIG")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
EnvArgument = Annotated[
    str, typer.Argument(help="Environment name (development, staging, production, …).")
]

_state: dict[str, bool] = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")
    ] = False,
    version: Annotated[bool, typer.Option("--version", help="Print shipyard's version.")] = False,
) -> None:
    _state["debug"] = debug
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr)


def _out(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def check(environment: EnvArgument, config: ConfigOption = Path("shipyard.yml")) -> None:
    """Validate everything a deploy needs, changing nothing; print every problem at once."""
    for line in run_checks(config, environment):
        err.print(f"[green]✓[/] {escape(line)}")


@app.command()
def schema(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The configuration reference instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of shipyard.yml (for editors)."""
    sys.stdout.write((reference_markdown() if markdown else json_schema()) + "\n")


@app.command()
def render(environment: EnvArgument, config: ConfigOption = Path("shipyard.yml")) -> None:
    """Print the compose projects and proxy config a deploy would write on the host."""
    session = open_session(config, environment, json_output=False)
    for path, text in session.provider.render(session.ctx).items():
        sys.stdout.write(f"# {path}\n{session.config.masker(text)}\n")


@app.command()
def deploy(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Deploy uncommitted changes.")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Build the image even if this commit was built before."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Build, migrate and switch the environment to the current source, blue-green (node by node)."""
    sessions = open_sessions(config, environment, json_output=json_output)
    options = DeployOptions(allow_dirty=allow_dirty, rebuild=rebuild)
    for session, result in _on_nodes(
        sessions, lambda s: s.provider.deploy(s.ctx, options), "deploy"
    ):
        if json_output:
            continue
        err.print(
            f"[bold green]deployed[/] {escape(result.release.version)} ({result.release.commit[:7]}) "
            f"to {escape(environment)}{_on(session, sessions)} in {result.duration_s:.1f}s"
        )
        sys.stdout.write(result.url + "\n")


T = TypeVar("T")


def _on(session: Session, sessions: list[Session]) -> str:
    return f" on {session.ctx.node}" if len(sessions) > 1 else ""


def _on_nodes(
    sessions: list[Session], action: Callable[[Session], T], what: str
) -> list[tuple[Session, T]]:
    """``action`` on every node, in order (``deploy.parallelism`` at a time); the first failure
    stops the rollout and is raised with every node's fate."""
    if len(sessions) == 1:
        return [(sessions[0], action(sessions[0]))]
    by_node = {s.config.environment.target: s for s in sessions}
    outcomes = across_nodes(
        list(by_node),
        lambda node: action(by_node[node]),
        parallelism=sessions[0].config.deploy.parallelism,
    )
    error = rollout_error(outcomes, what)
    if error is not None:
        raise error
    return [(by_node[o.node], o.result) for o in outcomes if o.result is not None]


@app.command()
def rollback(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version, release id or commit of a retained release."),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Roll back even if the schema is newer than that release's."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Bring back the previous (or a chosen) retained release: no rebuild, health-gated switch."""
    sessions = open_sessions(config, environment, json_output=json_output)
    options = RollbackOptions(to=to, yes=yes)
    for session, result in _on_nodes(
        sessions, lambda s: s.provider.rollback(s.ctx, options), "rollback"
    ):
        if json_output:
            continue
        _rolled_back(environment + _on(session, sessions), result)


def _rolled_back(environment: str, result: DeployResult) -> None:
    err.print(
        f"[bold green]rolled back[/] {escape(environment)} to {escape(result.release.version)} "
        f"({result.release.commit[:7]}) in {result.duration_s:.1f}s"
    )
    sys.stdout.write(result.url + "\n")


@app.command()
def status(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    json_output: JsonOption = False,
) -> None:
    """What runs in the environment (every node), its health, and drift from recorded state."""
    sessions = open_sessions(config, environment, json_output=json_output)
    if len(sessions) == 1:
        reports = [_status_of(sessions[0])]
    else:  # every node, even when some cannot be reached
        reports = [
            {"node": o.node, **(o.result or _unreachable(o.error))}
            for o in across_nodes(
                [s.config.environment.target for s in sessions],
                lambda node: _status_of(
                    next(s for s in sessions if s.config.environment.target == node)
                ),
                parallelism=len(sessions),
            )
        ]
    if json_output:
        _out(reports[0] if len(reports) == 1 else reports)
    else:
        for data in reports:
            table = Table(show_header=False, box=None)
            if "node" in data:
                table.add_row("node", escape(str(data["node"])))
            for key in (
                "url",
                "version",
                "commit",
                "slot",
                "deployed_at",
                "deployed_by",
                "health",
                "drift",
            ):
                table.add_row(key, escape(str(data.get(key) or "-")))
            for name, state in data.get("containers", {}).items():
                table.add_row(f"  {name}", escape(state))
            err.print(table)
    if any(data.get("drift") for data in reports):
        raise typer.Exit(ExitCode.FAILED)


def _status_of(session: Session) -> dict[str, Any]:
    report = session.provider.health_check(session.ctx)
    data: dict[str, Any] = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    return data


def _unreachable(error: ShipyardError | None) -> dict[str, Any]:
    return {"health": "unreachable", "drift": error.message if error else "not checked"}


@app.command()
def history(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    json_output: JsonOption = False,
) -> None:
    """Deployments of the environment, newest first."""
    session = open_session(config, environment, json_output=json_output)
    entries = list(reversed(session.ctx.store.history()))
    if json_output:
        _out([asdict(e) for e in entries])
        return
    table = Table(
        "id", "action", "version", "commit", "slot", "result", "started", "duration", "by"
    )
    for e in entries:
        table.add_row(
            e.deployment_id,
            e.action,
            e.version,
            e.commit[:7],
            e.slot,
            e.result,
            e.started_at[:19],
            f"{e.duration_s:.1f}s",
            e.by,
        )
    err.print(table)


notify_app = typer.Typer(
    help="Notifications: webhooks and ntfy topics set under `notifications:`.",
    no_args_is_help=True,
)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    json_output: JsonOption = False,
) -> None:
    """Send a test event to every configured sink and report each result."""
    session = open_session(config, environment, json_output=json_output)
    results = send_test(session.config, session.ctx.deployment_id, session.ctx.node)
    if json_output:
        _out([asdict(r) for r in results])
    elif not results:
        err.print(f"no notification sinks are configured for {escape(environment)}")
    else:
        table = Table("sink", "result", "detail", "attempts")
        for r in results:
            table.add_row(
                escape(r.sink),
                "[green]ok[/]" if r.ok else "[red]failed[/]",
                escape(r.detail),
                str(r.attempts),
            )
        err.print(table)
    if any(not r.ok for r in results):
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def provision(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    user: Annotated[
        str, typer.Option("--user", help="User to connect as (root, or a sudoer with --sudo).")
    ] = "root",
    sudo: Annotated[bool, typer.Option("--sudo", help="Run every step through `sudo -n`.")] = False,
    deploy_user: Annotated[
        str | None,
        typer.Option(
            "--deploy-user",
            help="User deploys run as (default: the target's user, or `deploy` for root).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Set up the environment's fresh Debian/Ubuntu host(s): Docker, deploy user, firewall, limits."""

    def report(node: str, result: StepResult) -> None:
        if json_output:  # one step per line
            sys.stdout.write(json.dumps({"node": node, **asdict(result)}) + "\n")
            sys.stdout.flush()
            return
        colour = {"changed": "yellow", "unchanged": "green", "failed": "red"}[result.status]
        err.print(
            f"{escape(node.removeprefix('ssh://'))}  {result.step:<15} "
            f"[{colour}]{result.status:<9}[/] {escape(result.detail)}"
        )

    results = run_provision(
        config, environment, user=user, sudo=sudo, deploy_user=deploy_user, report=report
    )
    failed = [r for steps in results.values() for r in steps if r.status == "failed"]
    if failed:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def destroy(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also delete the database volume (data loss).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove the environment's containers, network and state (and volumes with --volumes)."""
    sessions = open_sessions(config, environment, json_output=False)
    nodes = f" on {len(sessions)} nodes" if len(sessions) > 1 else ""
    if not yes and not typer.confirm(
        f"Remove {sessions[0].config.app.name} {environment}{nodes}"
        f"{' including its database' if volumes else ''}?"
    ):
        raise typer.Exit(ExitCode.USAGE)
    failures: list[ShipyardError] = []
    for session in sessions:  # every node, even after one failed
        try:
            removed = session.provider.cleanup(session.ctx, volumes=volumes)
        except ShipyardError as exc:
            if len(sessions) == 1:
                raise
            err.print(f"[red]failed[/]{_on(session, sessions)}: {escape(exc.message)}")
            failures.append(exc)
            continue
        for name in removed:
            err.print(f"removed {escape(name)}{_on(session, sessions)}")
    if failures:
        raise failures[0]


def _exit_code(exc: ShipyardError) -> ExitCode:
    for kind, code in _EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return ExitCode.FAILED


def main() -> None:
    """Console entry point. Usage errors exit 2 (typer); expected errors get their own code."""
    try:
        app()
    except ShipyardError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        if exc.hint:
            err.print(f"[dim]hint: {escape(exc.hint)}[/]")
        sys.exit(_exit_code(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception:  # noqa: BLE001 — the one place that catches everything
        crash = Path(tempfile.gettempdir()) / "shipyard-crash.log"
        crash.write_text(traceback.format_exc(), encoding="utf-8")
        err.print(f"[bold red]unexpected error[/]; traceback written to {crash}")
        if _state["debug"]:
            err.print(escape(traceback.format_exc()))
        sys.exit(ExitCode.UNEXPECTED)
