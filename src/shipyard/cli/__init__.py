"""The ``shipyard`` command: parse options, call one library function, render the result.

Only this package maps errors to messages and exit codes.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from enum import IntEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipyard import __version__
from shipyard.cli._context import (
    NodeOption,
    Session,
    current_masker,
    node_suffix,
    on_nodes,
    open_session,
    open_sessions,
    run_checks,
    run_provision,
)
from shipyard.cli._database import db_app, migrations_app, snapshot_app
from shipyard.cli._output import human_size, print_table
from shipyard.config import json_schema, parse_duration, reference_markdown
from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    Interrupted,
    RollbackChoice,
    RollbackOptions,
    Served,
    across_nodes,
    common_rollback_version,
)
from shipyard.errors import (
    CheckFailed,
    ConfigError,
    DeployFailed,
    HostConflict,
    HostUnreachable,
    LockHeld,
    NeedsConfirmation,
    RollbackFailed,
    ShipyardError,
    StateError,
    ToolTooOld,
)
from shipyard.events import send_test
from shipyard.hosts import LocalHost
from shipyard.providers import SnapshotFiles
from shipyard.provision import StepResult
from shipyard.state import Lock

__all__ = ["ExitCode", "app", "main"]


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    INVALID_CONFIG = 3  # also: `check` found problems, a port the proxy needs is taken
    LOCK_HELD = 4
    HOST_UNREACHABLE = 5
    DEPLOY_FAILED = 6  # the previous version keeps serving
    ROLLBACK_FAILED = 7  # a person must act
    FAILED = 8  # any other expected failure
    TOOL_TOO_OLD = 9  # a tool here or on the host is older than needed


_EXIT_CODES: list[tuple[type[ShipyardError], ExitCode]] = [
    (NeedsConfirmation, ExitCode.USAGE),
    (ConfigError, ExitCode.INVALID_CONFIG),
    (CheckFailed, ExitCode.INVALID_CONFIG),
    (HostConflict, ExitCode.INVALID_CONFIG),
    (LockHeld, ExitCode.LOCK_HELD),
    (HostUnreachable, ExitCode.HOST_UNREACHABLE),
    (ToolTooOld, ExitCode.TOOL_TOO_OLD),
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
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(migrations_app, name="migrations")
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to shipyard.yml.", envvar="SHIPYARD_CONFIG")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
WaitOption = Annotated[
    str,
    typer.Option(
        "--wait",
        help="Wait this long for another operation's lock (e.g. 10m); bare --wait waits 30m.",
    ),
]
_BARE_WAIT = "30m"
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
def check(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    allow_dirty: Annotated[
        bool,
        typer.Option("--allow-dirty", help="As for deploy: uncommitted changes are no problem."),
    ] = False,
) -> None:
    """Validate everything a deploy needs, changing nothing; print every problem at once."""
    checked = run_checks(config, environment, allow_dirty=allow_dirty)
    for warning in checked.warnings:
        err.print(f"[yellow]! warning:[/] {escape(warning)}")
    for line in checked.passed:
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
def render(
    environment: EnvArgument, config: ConfigOption = Path("shipyard.yml"), node: NodeOption = None
) -> None:
    """Print the compose projects and proxy config a deploy would write on the host."""
    session = open_session(config, environment, json_output=False, node=node)
    for path, text in session.provider.render(session.ctx).items():
        sys.stdout.write(f"# {path}\n{session.config.masker(text)}\n")


NoWatchOption = Annotated[
    bool,
    typer.Option(
        "--no-watch",
        help="Return once the switch is verified: no watch window (the old version is retired "
        "at once; no automatic switch-back).",
    ),
]


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
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref", help="Deploy this branch, tag or commit (built in a temporary worktree)."
        ),
    ] = None,
    wait: WaitOption = "0s",
    no_watch: NoWatchOption = False,
    json_output: JsonOption = False,
) -> None:
    """Build, migrate and switch the environment to the current source, blue-green (node by node)."""
    sessions = open_sessions(config, environment, json_output=json_output, ref=ref)
    options = DeployOptions(
        allow_dirty=allow_dirty,
        rebuild=rebuild,
        lock_wait=parse_duration(wait),
        watch=0 if no_watch else None,
    )
    for session, result in on_nodes(
        sessions, lambda s: s.provider.deploy(s.ctx, options), "deploy"
    ):
        if json_output:
            continue
        err.print(
            f"[bold green]deployed[/] {escape(result.release.version)} ({result.release.commit[:7]}) "
            f"to {escape(environment)}{node_suffix(session, sessions)} in {result.duration_s:.1f}s"
        )
        sys.stdout.write(result.url + "\n")


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
    wait: WaitOption = "0s",
    no_watch: NoWatchOption = False,
    json_output: JsonOption = False,
) -> None:
    """Bring back what served before the live release (or a chosen retained release): no
    rebuild, health-gated switch. Rolling back again goes further back."""
    sessions = open_sessions(config, environment, json_output=json_output)
    why = None
    if to is None and len(sessions) > 1:
        choice = _common_rollback(sessions)
        to, why = choice.release.version, choice.why
        there = [s for s in sessions if _live_version(s) == to]
        for session in there:
            err.print(f"{escape(session.ctx.node)} already serves {escape(to)}")
        sessions = [s for s in sessions if s not in there]
        if not sessions:
            return
    options = RollbackOptions(
        to=to, why=why, yes=yes, lock_wait=parse_duration(wait), watch=0 if no_watch else None
    )
    for session, result in on_nodes(
        sessions, lambda s: s.provider.rollback(s.ctx, options), "rollback"
    ):
        if json_output:
            continue
        _rolled_back(environment + node_suffix(session, sessions), result)


def _common_rollback(sessions: list[Session]) -> RollbackChoice:
    """One version for every node, even after a rollout that stopped half way."""
    return common_rollback_version([(s.ctx.node, Served.read(s.ctx.store)) for s in sessions])


def _live_version(session: Session) -> str | None:
    current = session.ctx.store.current()
    release = session.ctx.store.release(current.release_id) if current else None
    return release.version if release else None


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
                "probed",
                "drift",
                "interrupted",
            ):
                table.add_row(key, escape(str(data.get(key) or "-")))
            for problem in data.get("problems") or []:
                table.add_row("problem", escape(str(problem)))
            for name, state in data.get("containers", {}).items():
                table.add_row(f"  {name}", escape(state))
            print_table(err, table)
    if any(
        data.get("drift") or data.get("interrupted") or data.get("problems") for data in reports
    ):
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def repair(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    wait: WaitOption = "0s",
    json_output: JsonOption = False,
) -> None:
    """Finish or undo an interrupted operation and bring what serves in line with the state
    (every node; each deploy and rollback does this first)."""
    sessions = open_sessions(config, environment, json_output=json_output)
    for session, summary in on_nodes(
        sessions,
        lambda s: s.provider.repair(s.ctx, lock_wait=parse_duration(wait)),
        "repair",
    ):
        if not json_output:
            err.print(
                f"[bold green]repaired[/] {escape(environment)}{node_suffix(session, sessions)}: {escape(summary)}"
            )


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
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Deployments of the environment, newest first."""
    session = open_session(config, environment, json_output=json_output, node=node)
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
    print_table(err, table)


@app.command()
def plan(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    allow_dirty: Annotated[bool, typer.Option("--allow-dirty", help="As for deploy.")] = False,
    ref: Annotated[str | None, typer.Option("--ref", help="As for deploy.")] = None,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback", help="What `rollback` would do: the release it brings back and why."
        ),
    ] = False,
    to: Annotated[
        str | None, typer.Option("--to", help="With --rollback: as for rollback.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Every action a deploy (or with --rollback, a rollback) would take, touching nothing."""
    if to is not None and not rollback:
        raise typer.BadParameter("--to goes with --rollback", param_hint="--to")
    if rollback and ref is not None:
        raise typer.BadParameter("a rollback builds nothing: --ref goes without --rollback")
    session = open_session(config, environment, json_output=json_output, ref=ref, node=node)
    if rollback:
        options = RollbackOptions(to=to)
        if to is None and len(session.config.environment.nodes) > 1:
            choice = _common_rollback(open_sessions(config, environment, json_output=json_output))
            options = RollbackOptions(to=choice.release.version, why=choice.why)
        steps = session.provider.plan_rollback(session.ctx, options)
    else:
        steps = session.provider.plan(session.ctx, DeployOptions(allow_dirty=allow_dirty))
    if json_output:
        _out([asdict(step) for step in steps])
        return
    table = Table("phase", "action", box=None)
    for step in steps:
        table.add_row(step.phase, escape(step.action))
    print_table(err, table)


@app.command()
def logs(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", help="A deployment id (default: the latest).")
    ] = None,
    app_logs: Annotated[
        bool, typer.Option("--app", help="The live app's own log instead.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="With --app: keep printing.")
    ] = False,
    tail: Annotated[int, typer.Option("--tail", help="With --app: lines to show.")] = 200,
) -> None:
    """A deployment's log (JSON lines), or with --app the live app's log."""
    session = open_session(config, environment, json_output=False, node=node)
    if app_logs:
        _follow_app(session, tail=tail, follow=follow)
        return
    store = session.ctx.store
    ids = store.log_ids()
    chosen = deployment or (ids[-1] if ids else None)
    text = store.log(chosen) if chosen else None
    if text is None:
        known = ", ".join(ids[-5:]) or "none yet"
        raise StateError(f"no deployment log {chosen or ''} for {environment} (recent: {known})")
    sys.stdout.write(session.config.masker(text))


def _follow_app(session: Session, *, tail: int, follow: bool) -> None:
    since: str | None = None
    while True:
        text = session.provider.app_logs(
            session.ctx, tail=tail if since is None else 10_000, since=since
        )
        lines = [line for line in text.splitlines() if line]
        if since is not None:  # --since is inclusive of its second: skip what was printed
            lines = [line for line in lines if line.split(" ", 1)[0] > since]
        for line in lines:
            sys.stdout.write(session.config.masker(line) + "\n")
        sys.stdout.flush()
        if not follow:
            return
        if lines:
            since = lines[-1].split(" ", 1)[0]
        elif since is None:
            since = "1s"
        time.sleep(1)


lock_app = typer.Typer(help="The deploy lock of an environment.", no_args_is_help=True)
app.add_typer(lock_app, name="lock")


@lock_app.command("status")
def lock_status(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Who holds the environment's lock, since when, and whether it is stale."""
    session = open_session(config, environment, json_output=json_output, node=node)
    lock = session.ctx.store.lock(
        session.ctx.deployment_id, "status", ttl=session.config.deploy.lock_ttl
    )
    holder = lock.holder()
    exists = holder is not None or session.ctx.store.host.get(lock.dir / "owner.json") is not None
    data = {"held": exists, "stale": lock.is_stale(holder) if exists else None, "owner": holder}
    if json_output:
        _out(data)
    elif not exists:
        err.print(f"{escape(environment)}: unlocked")
    else:
        state = "[yellow]stale[/]" if data["stale"] else "[green]alive[/]"
        err.print(f"{escape(environment)}: locked ({state}) by {escape(Lock.describe(holder))}")


@lock_app.command("release")
def lock_release(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Break a lock whose holder looks alive.")
    ] = False,
) -> None:
    """Release a stale lock; --force breaks a live one (and says whose)."""
    session = open_session(config, environment, json_output=False, node=node)
    lock = session.ctx.store.lock(
        session.ctx.deployment_id, "release", ttl=session.config.deploy.lock_ttl
    )
    holder = lock.holder()
    if holder is None and session.ctx.store.host.get(lock.dir / "owner.json") is None:
        err.print(f"{escape(environment)}: not locked")
        return
    if not lock.is_stale(holder) and not force:
        raise LockHeld(
            f"the lock is held and its holder is alive: {Lock.describe(holder)}",
            hint="if you are sure it is gone, `shipyard lock release ENV --force`",
        )
    broken = lock.break_lock()
    err.print(f"released the lock of {escape(Lock.describe(broken))}")


notify_app = typer.Typer(
    help="Notifications: webhooks and ntfy topics set under `notifications:`.",
    no_args_is_help=True,
)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send a test event to every configured sink and report each result."""
    session = open_session(config, environment, json_output=json_output, node=node)
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
        print_table(err, table)
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
    snapshots: Annotated[
        bool,
        typer.Option(
            "--snapshots", help="Also delete the environment's database snapshots (backups)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove the environment's containers, network, images and state (and volumes with
    --volumes); an image another environment or a container uses is kept. Its snapshots are
    kept, and said where, unless --snapshots."""
    sessions = open_sessions(config, environment, json_output=False)
    nodes = f" on {len(sessions)} nodes" if len(sessions) > 1 else ""
    held = ""
    if snapshots:
        found = [s.provider.snapshot_files(s.ctx) for s in sessions]
        held = "; ".join(_snapshots_named(f) for f in found if f and f.count) or "none found"
    if not yes and not typer.confirm(
        f"Remove {sessions[0].config.app.name} {environment}{nodes}"
        f"{' including its database' if volumes else ''}"
        f"{f' and delete its snapshots ({held})' if snapshots else ''}?"
    ):
        raise typer.Exit(ExitCode.USAGE)
    if yes and snapshots:
        err.print(f"deleting the snapshots of {escape(environment)}: {escape(held)}")
    failures: list[ShipyardError] = []
    for session in sessions:  # every node, even after one failed
        try:
            destroyed = session.provider.cleanup(session.ctx, volumes=volumes, snapshots=snapshots)
        except ShipyardError as exc:
            if len(sessions) == 1:
                raise
            err.print(f"[red]failed[/]{node_suffix(session, sessions)}: {escape(exc.message)}")
            failures.append(exc)
            continue
        suffix = node_suffix(session, sessions)
        for name in destroyed.removed:
            err.print(f"removed {escape(name)}{suffix}")
        for name in destroyed.kept:
            err.print(f"kept {escape(name)}{suffix}")
        if destroyed.snapshots is not None and destroyed.snapshots_removed:
            err.print(f"removed {escape(_snapshots_named(destroyed.snapshots))}")
        elif destroyed.snapshots is not None:
            err.print(
                f"kept {escape(_snapshots_named(destroyed.snapshots))}: a later deploy of "
                f"{escape(environment)} finds them (`shipyard snapshot list {escape(environment)}`) "
                f"and its retention prunes them; `shipyard destroy {escape(environment)} "
                "--snapshots` deletes them"
            )
    if failures:
        raise failures[0]


def _snapshots_named(files: SnapshotFiles) -> str:
    return f"{files.count} snapshot(s), {human_size(files.size)}, in {files.where}"


def _exit_code(exc: ShipyardError) -> ExitCode:
    for kind, code in _EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return ExitCode.FAILED


def main() -> None:
    """Console entry point. Usage errors exit 2 (typer); expected errors get their own code."""
    args = [
        f"--wait={_BARE_WAIT}" if arg == "--wait" and _bare(sys.argv, i) else arg
        for i, arg in enumerate(sys.argv[1:], 1)
    ]
    try:
        app(args=args)
    except ShipyardError as exc:
        mask = current_masker()
        err.print(f"[bold red]error:[/] {escape(mask(str(exc)))}")
        if exc.hint:
            err.print(f"[dim]hint: {escape(mask(exc.hint))}[/]")
        sys.exit(_exit_code(exc))
    except (KeyboardInterrupt, Interrupted) as exc:
        err.print(
            escape(current_masker()(str(exc))) if isinstance(exc, Interrupted) else "interrupted"
        )
        sys.exit(130)
    except Exception:  # noqa: BLE001 — the one place that catches everything
        trace = current_masker()(traceback.format_exc())
        crash = Path(tempfile.gettempdir()) / "shipyard-crash.log"
        try:
            LocalHost().put(PurePosixPath(crash), trace.encode())  # mode 0600, replaced whole
        except OSError as exc:
            err.print(
                f"[bold red]unexpected error[/]; the traceback could not be written to {crash}: {escape(exc.strerror or str(exc))}"
            )
        else:
            err.print(f"[bold red]unexpected error[/]; traceback written to {crash}")
        if _state["debug"]:
            err.print(escape(trace))
        sys.exit(ExitCode.UNEXPECTED)


def _bare(argv: list[str], index: int) -> bool:
    """``--wait`` given without a value (the next word is not a duration)."""
    following = argv[index + 1] if index + 1 < len(argv) else ""
    return not following or following.startswith("-") or not following[0].isdigit()
