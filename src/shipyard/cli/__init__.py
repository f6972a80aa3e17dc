"""The ``shipyard`` command: parse options, call one library function, render the result.

Only this package maps errors to messages and exit codes. Its modules import click and the
error tree at the top and nothing else of the library: a command imports what it runs in its
own body, so ``shipyard --help`` (and every ``--help``) starts without pydantic, httpx or the
providers (``bench/cli_start.py`` measures it).
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shipyard import __version__
from shipyard.cli._database import db_group, migrations_group, snapshot_group
from shipyard.cli._options import (
    BARE_WAIT,
    Group,
    config_option,
    environment_argument,
    exit_with,
    flag,
    json_option,
    node_option,
    one_node,
    print_json,
    print_json_line,
    wait_option,
    yes_option,
)
from shipyard.errors import (
    ExitCode,
    Interrupted,
    LockHeld,
    ShipyardError,
    StateError,
)

if TYPE_CHECKING:
    from shipyard.cli._context import Run
    from shipyard.deploy import DeployResult, RollbackChoice
    from shipyard.providers import Destroyed, SnapshotFiles
    from shipyard.provision import StepResult
    from shipyard.session import Session
    from shipyard.state import Lock

__all__ = ["ExitCode", "app", "main"]


_SHELLS = ("bash", "zsh", "fish")
# The collector's youngest-generation threshold while a command runs (``main``).
_GC_THRESHOLD = 50_000


@click.group(
    name="shipyard",
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "--version", prog_name="shipyard", message="%(prog)s %(version)s"
)
@flag("--debug", "Show tracebacks of unexpected errors.")
def app(debug: bool) -> None:
    """Deploy a Go + PostgreSQL server to Docker hosts: blue-green behind Caddy, one command.

    Shell completion: `shipyard completion bash|zsh|fish` prints the script to source.
    """
    from shipyard.cli._context import current_run

    current_run().debug = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr)


app.add_command(snapshot_group)
app.add_command(migrations_group)
app.add_command(db_group)


@app.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="The repository to inspect and write into.",
)
@flag("--force", "Replace an existing shipyard.yml.")
@json_option
def init(directory: Path, force: bool, json_output: bool) -> None:
    """Inspect a Go repository and write a commented shipyard.yml, .env.example and .gitignore
    entries for env files (an existing shipyard.yml is kept unless --force: exit 2)."""
    from rich.markup import escape

    from shipyard.cli._output import err
    from shipyard.scaffold import init_repository

    done = init_repository(directory, force=force)
    found = done.repository
    if json_output:
        print_json(
            {
                "config": str(done.config),
                "replaced": done.replaced,
                "appended": done.appended,
                "found": {
                    "module": found.module,
                    "package": found.package,
                    "ldflags": found.ldflags,
                    "dockerfile": found.dockerfile,
                    "migrations": found.migrations,
                    "extensions": list(found.extensions),
                    "health": list(found.health_paths),
                    "version_path": found.version_path,
                    "port": found.port,
                    "database_url_env": found.database_url_env,
                    "required_env": list(found.required_env),
                    "env": list(found.env),
                },
                "next": done.next,
            }
        )
        return
    err().print(f"{'replaced' if done.replaced else 'wrote'} {escape(str(done.config))}")
    for name, lines in done.appended.items():
        err().print(f"appended {len(lines)} line(s) to {escape(name)}")
    err().print("next:")
    for command in done.next:
        err().print(f"  {escape(command)}")


@app.command()
@environment_argument
@config_option
@flag("--allow-dirty", "As for deploy: uncommitted changes are no problem.")
@json_option
def check(environment: str, config: Path, allow_dirty: bool, json_output: bool) -> None:
    """Validate everything a deploy needs, changing nothing; print every problem at once."""
    from rich.markup import escape

    from shipyard.cli._output import err
    from shipyard.errors import CheckFailed, ConfigError
    from shipyard.session import check as run_checks

    try:
        checked = run_checks(config, environment, allow_dirty=allow_dirty)
    except ConfigError as exc:
        if json_output:
            print_json(_checked([], exc.warnings, exc.issues))
        raise
    except CheckFailed as exc:
        if json_output:
            print_json(_checked([], exc.warnings, exc.problems))
        raise
    if json_output:
        print_json(_checked(checked.passed, checked.warnings, []))
        return
    for warning in checked.warnings:
        err().print(f"[yellow]! warning:[/] {escape(warning)}")
    for line in checked.passed:
        err().print(f"[green]✓[/] {escape(line)}")


def _checked(passed: list[str], warnings: list[Any], problems: list[Any]) -> dict[str, list[str]]:
    """``check --json``: what passed, the warnings, the problems (each one line, masked)."""
    from shipyard.cli._context import current_run

    mask = current_run().mask
    return {
        "passed": [mask(line) for line in passed],
        "warnings": [mask(str(w)) for w in warnings],
        "problems": [mask(str(p)) for p in problems],
    }


@app.command()
@flag("--markdown", "The configuration reference instead.")
def schema(markdown: bool) -> None:
    """Print the JSON Schema of shipyard.yml (for editors)."""
    from shipyard.config import json_schema, reference_markdown

    sys.stdout.write((reference_markdown() if markdown else json_schema()) + "\n")


@app.command()
@one_node
def render(environment: str, config: Path, node: str | None, json_output: bool) -> None:
    """Print the compose projects and proxy config a deploy would write on the host."""
    from shipyard.cli._context import open_session

    session = open_session(config, environment, node=node)
    files = {
        path: session.config.masker(text)
        for path, text in session.provider.render(session.ctx).items()
    }
    if json_output:
        print_json([{"path": path, "content": text} for path, text in files.items()])
        return
    for path, text in files.items():
        sys.stdout.write(f"# {path}\n{text}\n")


@app.command()
@environment_argument
@config_option
@flag("--allow-dirty", "Deploy uncommitted changes.")
@flag("--rebuild", "Build the image even if this commit was built before.")
@click.option(
    "--ref",
    metavar="REF",
    help="Deploy this branch, tag or commit (built in a temporary worktree).",
)
@wait_option
@flag(
    "--no-watch",
    "Return once the switch is verified: no watch window (the old version is retired at once; "
    "no automatic switch-back).",
)
@click.option(
    "--watch-for",
    metavar="DURATION",
    help="Watch the new version this long after the switch (e.g. 10m; default deploy.watch), "
    "switching back if it fails, and end with its statistics.",
)
@flag(
    "--maintenance",
    "Maintenance mode from just before the migrations until the switch is verified: the proxy "
    "answers every request but the health paths with 503 (for migrations that cannot run online).",
)
@json_option
def deploy(
    environment: str,
    config: Path,
    allow_dirty: bool,
    rebuild: bool,
    ref: str | None,
    wait: str,
    no_watch: bool,
    watch_for: str | None,
    maintenance: bool,
    json_output: bool,
) -> None:
    """Build, migrate and switch the environment to the current source, blue-green (node by node)."""
    from rich.markup import escape

    from shipyard.cli._context import node_suffix, open_sessions
    from shipyard.cli._output import err
    from shipyard.config import parse_duration
    from shipyard.deploy import DeployOptions
    from shipyard.session import on_nodes

    if no_watch and watch_for is not None:
        raise click.UsageError("--no-watch and --watch-for: choose one")
    watch = parse_duration(watch_for) if watch_for is not None else None
    sessions = open_sessions(config, environment, json_events=json_output, ref=ref)
    options = DeployOptions(
        allow_dirty=allow_dirty,
        rebuild=rebuild,
        lock_wait=parse_duration(wait),
        watch=0 if no_watch else watch,
        maintenance=maintenance,
    )
    for session, result in on_nodes(
        sessions, lambda s: s.provider.deploy(s.ctx, options), "deploy"
    ):
        if json_output:
            continue
        err().print(
            f"[bold green]deployed[/] {escape(result.release.version)} ({result.release.commit[:7]}) "
            f"to {escape(environment)}{node_suffix(session, sessions)} in {result.duration_s:.1f}s"
        )
        sys.stdout.write(result.url + "\n")


@app.command()
@environment_argument
@config_option
@click.option(
    "--to", metavar="VERSION", help="Version, release id or commit of a retained release."
)
@yes_option("Roll back even if the schema is newer than that release's.")
@wait_option
@flag(
    "--no-watch",
    "Return once the switch is verified: no watch window (the old version is retired at once; "
    "no automatic switch-back).",
)
@json_option
def rollback(
    environment: str,
    config: Path,
    to: str | None,
    yes: bool,
    wait: str,
    no_watch: bool,
    json_output: bool,
) -> None:
    """Bring back what served before the live release (or a chosen retained release): no
    rebuild, health-gated switch. Rolling back again goes further back."""
    from rich.markup import escape

    from shipyard.cli._context import node_suffix, open_sessions
    from shipyard.cli._output import err
    from shipyard.config import parse_duration
    from shipyard.deploy import RollbackOptions
    from shipyard.session import on_nodes

    sessions: list[Session] = open_sessions(config, environment, json_events=json_output)
    why = None
    if to is None and len(sessions) > 1:
        choice = _common_rollback(sessions)
        to, why = choice.release.version, choice.why
        there = [s for s in sessions if _live_version(s) == to]
        for session in there:
            err().print(f"{escape(session.ctx.node)} already serves {escape(to)}")
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
    from shipyard.deploy import Served, common_rollback_version

    return common_rollback_version([(s.ctx.node, Served.read(s.ctx.store)) for s in sessions])


def _live_version(session: Session) -> str | None:
    current = session.ctx.store.current()
    release = session.ctx.store.release(current.release_id) if current else None
    return release.version if release else None


def _rolled_back(environment: str, result: DeployResult) -> None:
    from rich.markup import escape

    from shipyard.cli._output import err

    err().print(
        f"[bold green]rolled back[/] {escape(environment)} to {escape(result.release.version)} "
        f"({result.release.commit[:7]}) in {result.duration_s:.1f}s"
    )
    sys.stdout.write(result.url + "\n")


_STATUS_ROWS = (
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
)


@app.command()
@environment_argument
@config_option
@json_option
def status(environment: str, config: Path, json_output: bool) -> None:
    """What runs in the environment (every node), its health, and drift from recorded state."""
    from rich.markup import escape
    from rich.table import Table

    from shipyard.cli._context import open_sessions
    from shipyard.cli._output import err, print_table
    from shipyard.deploy import across_nodes

    sessions = open_sessions(config, environment)
    if len(sessions) == 1:
        reports = [{"node": sessions[0].config.environment.target, **_status_of(sessions[0])}]
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
        print_json(reports)  # a list of node records, one node or several
    else:
        for data in reports:
            table = Table(show_header=False, box=None)
            if len(reports) > 1:
                table.add_row("node", escape(str(data["node"])))
            for key in _STATUS_ROWS:
                table.add_row(key, escape(str(data.get(key) or "-")))
            for cert in data.get("certificates") or []:
                table.add_row(f"certificate {escape(cert['domain'])}", escape(_certificate(cert)))
            if "maintenance" in data:
                table.add_row("maintenance", escape(_said_maintenance(data["maintenance"])))
            for problem in data.get("problems") or []:
                table.add_row("problem", escape(str(problem)))
            for name, state in data.get("containers", {}).items():
                table.add_row(f"  {name}", escape(state))
            print_table(err(), table)
    if any(
        data.get("drift") or data.get("interrupted") or data.get("problems") for data in reports
    ):
        raise exit_with(ExitCode.FAILED)


def _said_maintenance(mode: dict[str, Any]) -> str:
    if not mode.get("on"):
        return "off"
    allow = ", ".join(mode.get("allow") or []) or "none"
    return (
        f"ON since {mode.get('since')} by {mode.get('by')} (Retry-After {mode.get('retry_after')}s, "
        f"allowed: {allow}): {mode.get('message')}"
    )


@app.command()
@environment_argument
@config_option
@click.option(
    "--for",
    "duration",
    metavar="DURATION",
    default="1m",
    show_default=True,
    help="How long to watch (e.g. 30s, 10m).",
)
@json_option
def watch(environment: str, config: Path, duration: str, json_output: bool) -> None:
    """Watch the live version: health checks passed and failed, requests, 5xx, and its p95
    latency through the proxy against the previous version's, a line each health.interval,
    then a summary (exit 1 on a latency regression, as deploy.latency_regression defines it).
    Changes nothing."""
    from rich.markup import escape

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err
    from shipyard.config import parse_duration

    seconds = parse_duration(duration)
    session = open_session(config, environment)
    console = err()

    def each(round_: dict[str, Any]) -> None:
        if not json_output:
            console.print(escape(_watch_line(round_)))

    summary = session.provider.watch_live(session.ctx, seconds, each)
    if json_output:
        print_json({"environment": environment, **summary})
    else:
        console.print(
            f"watched {escape(environment)} for {seconds:g}s: {escape(summary['summary'])}"
        )
    if summary["regression"]:
        raise SystemExit(1)


def _watch_line(round_: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    return (
        f"{round_['elapsed_s']:6.1f}s  checks {round_['checks_passed']} ok {round_['checks_failed']} "
        f"failed  requests {round_['requests']}  5xx {round_['errors']}  p95 {ms(round_['p95_s'])} "
        f"(previous {ms(round_['previous_p95_s'])})"
    )


@app.command()
@environment_argument
@config_option
@wait_option
@json_option
def repair(environment: str, config: Path, wait: str, json_output: bool) -> None:
    """Finish or undo an interrupted operation and bring what serves in line with the state
    (every node; each deploy and rollback does this first)."""
    from rich.markup import escape

    from shipyard.cli._context import node_suffix, open_sessions
    from shipyard.cli._output import err
    from shipyard.config import parse_duration
    from shipyard.session import on_nodes

    sessions = open_sessions(config, environment, json_events=json_output)
    for session, summary in on_nodes(
        sessions,
        lambda s: s.provider.repair(s.ctx, lock_wait=parse_duration(wait)),
        "repair",
    ):
        if not json_output:
            err().print(
                f"[bold green]repaired[/] {escape(environment)}{node_suffix(session, sessions)}: {escape(summary)}"
            )


def _certificate(cert: dict[str, Any]) -> str:
    """One domain's certificate in ``status``: its issuer and expiry, or why there is none."""
    if cert.get("error"):
        return str(cert["error"])
    return f"{cert.get('issuer') or '?'}, expires {cert.get('not_after')} ({cert.get('days_left')} days left)"


def _status_of(session: Session) -> dict[str, Any]:
    report = session.provider.health_check(session.ctx)
    data: dict[str, Any] = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    return data


def _unreachable(error: ShipyardError | None) -> dict[str, Any]:
    return {"health": "unreachable", "drift": error.message if error else "not checked"}


@app.command()
@one_node
def history(environment: str, config: Path, node: str | None, json_output: bool) -> None:
    """Deployments of the environment, newest first."""
    from dataclasses import asdict

    from rich.table import Table

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err, print_table

    session = open_session(config, environment, node=node)
    entries = list(reversed(session.ctx.store.history()))
    if json_output:
        print_json([asdict(e) for e in entries])
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
    print_table(err(), table)


@app.command()
@environment_argument
@config_option
@node_option
@flag("--allow-dirty", "As for deploy.")
@click.option("--ref", metavar="REF", help="As for deploy.")
@flag("--rollback", "What `rollback` would do: the release it brings back and why.")
@click.option("--to", metavar="VERSION", help="With --rollback: as for rollback.")
@json_option
def plan(
    environment: str,
    config: Path,
    node: str | None,
    allow_dirty: bool,
    ref: str | None,
    rollback: bool,
    to: str | None,
    json_output: bool,
) -> None:
    """Every action a deploy (or with --rollback, a rollback) would take, touching nothing."""
    if to is not None and not rollback:
        raise click.BadParameter("--to goes with --rollback", param_hint="--to")
    if rollback and ref is not None:
        raise click.BadParameter("a rollback builds nothing: --ref goes without --rollback")
    from dataclasses import asdict

    from rich.markup import escape
    from rich.table import Table

    from shipyard.cli._context import open_session, open_sessions
    from shipyard.cli._output import err, print_table
    from shipyard.deploy import DeployOptions, RollbackOptions

    session = open_session(config, environment, ref=ref, node=node)
    if rollback:
        options = RollbackOptions(to=to)
        if to is None and len(session.config.environment.nodes) > 1:
            choice = _common_rollback(open_sessions(config, environment))
            options = RollbackOptions(to=choice.release.version, why=choice.why)
        steps = session.provider.plan_rollback(session.ctx, options)
    else:
        steps = session.provider.plan(session.ctx, DeployOptions(allow_dirty=allow_dirty))
    if json_output:
        print_json([asdict(step) for step in steps])
        return
    table = Table("phase", "action", box=None)
    for step in steps:
        table.add_row(step.phase, escape(step.action))
    print_table(err(), table)


@app.command()
@environment_argument
@config_option
@node_option
@click.option("--deployment", metavar="ID", help="A deployment id (default: the latest).")
@flag("--app", "The live app's own log instead.")
@click.option("--follow", "-f", is_flag=True, help="With --app: keep printing.")
@click.option("--tail", type=int, default=200, show_default=True, help="With --app: lines to show.")
@json_option
def logs(
    environment: str,
    config: Path,
    node: str | None,
    deployment: str | None,
    app: bool,
    follow: bool,
    tail: int,
    json_output: bool,
) -> None:
    """A deployment's log (JSON lines), or with --app the live app's log."""
    from shipyard.cli._context import open_session

    session = open_session(config, environment, node=node)
    if app:
        _follow_app(session, tail=tail, follow=follow, json_output=json_output)
        return
    store = session.ctx.store
    ids = store.log_ids()
    chosen = deployment or (ids[-1] if ids else None)
    text = store.log(chosen) if chosen else None
    if chosen is None or text is None:
        known = ", ".join(ids[-5:]) or "none yet"
        raise StateError(f"no deployment log {chosen or ''} for {environment} (recent: {known})")
    masked = session.config.masker(text)
    if json_output:
        print_json({"deployment_id": chosen, "events": _events(chosen, masked)})
        return
    sys.stdout.write(masked)


def _events(deployment: str, text: str) -> list[Any]:
    """The events of a deployment log (one JSON object per line)."""
    import json

    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise StateError(
                f"deployment log {deployment}: line {number} is not JSON ({exc.msg})"
            ) from exc
    return events


def _follow_app(session: Session, *, tail: int, follow: bool, json_output: bool) -> None:
    import time

    since: str | None = None
    while True:
        text = session.provider.app_logs(
            session.ctx, tail=tail if since is None else 10_000, since=since
        )
        lines = [line for line in text.splitlines() if line]
        if since is not None:  # --since is inclusive of its second: skip what was printed
            lines = [line for line in lines if line.split(" ", 1)[0] > since]
        for line in lines:
            masked = session.config.masker(line)
            if json_output:  # a stream: one object per line as it comes
                stamp, _, message = masked.partition(" ")
                print_json_line({"time": stamp, "line": message})
            else:
                sys.stdout.write(masked + "\n")
        sys.stdout.flush()
        if not follow:
            return
        if lines:
            since = lines[-1].split(" ", 1)[0]
        elif since is None:
            since = "1s"
        time.sleep(1)


@app.group("monitoring")
def monitoring_group() -> None:
    """The environment's monitoring stack: Prometheus, Alertmanager and the exporters."""


@monitoring_group.command("up")
@environment_argument
@config_option
@json_option
def monitoring_up(environment: str, config: Path, json_output: bool) -> None:
    """Bring the monitoring stack up, or bring it in line with shipyard.yml (running containers
    whose definition did not change keep running; a changed configuration is reloaded)."""
    from rich.markup import escape

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err

    session = open_session(config, environment)
    done = session.provider.monitoring_up(session.ctx)
    if json_output:
        print_json({"environment": environment, "done": done})
        return
    err().print(f"monitoring of {escape(environment)}: {escape(done)}")


@monitoring_group.command("status")
@environment_argument
@config_option
@json_option
def monitoring_status(environment: str, config: Path, json_output: bool) -> None:
    """Each container, each scrape target's health and the alerts firing or pending (exit 1
    when a target is down or Prometheus does not answer)."""
    from rich.markup import escape

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err

    session = open_session(config, environment)
    status = session.provider.monitoring_status(session.ctx)
    data = status.to_dict()
    healthy = status.problem is None and all(t["health"] == "up" for t in status.targets)
    if json_output:
        print_json({**data, "healthy": healthy})
    else:
        console = err()
        for name, state in status.containers.items():
            console.print(f"{escape(name):40} {escape(state)}")
        for target in status.targets:
            error = f"  {target['error']}" if target["error"] else ""
            console.print(
                f"target {escape(target['job']):14} {escape(target['instance']):44} "
                f"{escape(target['health'])}{escape(error)}"
            )
        for alert in status.alerts:
            console.print(
                f"alert  {escape(alert['alert'])} ({escape(alert['severity'])}, "
                f"{escape(alert['state'])}): {escape(alert['summary'])}"
            )
        if status.problem:
            console.print(f"[red]{escape(status.problem)}[/red]")
    if not healthy:
        raise SystemExit(1)


@monitoring_group.command("down")
@environment_argument
@config_option
@flag("--volumes", "Also remove Prometheus's and Alertmanager's data.")
@json_option
def monitoring_down(environment: str, config: Path, volumes: bool, json_output: bool) -> None:
    """Stop and remove the monitoring stack (its data stays unless --volumes)."""
    from rich.markup import escape

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err

    session = open_session(config, environment)
    done = session.provider.monitoring_down(session.ctx, volumes=volumes)
    if json_output:
        print_json({"environment": environment, "done": done})
        return
    err().print(f"monitoring of {escape(environment)}: {escape(done)}")


@app.group("ci")
def ci_group() -> None:
    """Continuous deployment: workflows that test, then deploy, on every push."""


@ci_group.command("github")
@click.option(
    "--environment",
    "environment",
    default="production",
    show_default=True,
    help="The environment every push deploys to (its env file must exist here: it is checked).",
)
@click.option("--branch", default="main", show_default=True, help="The branch that deploys.")
@click.option(
    "--package",
    metavar="SPEC",
    help="What the workflow `pip install`s shipyard from (default: the repository variable "
    "SHIPYARD_PACKAGE).",
)
@config_option
@flag("--force", "Replace an existing .github/workflows/deploy.yml.")
@json_option
def ci_github(
    environment: str,
    branch: str,
    package: str | None,
    config: Path,
    force: bool,
    json_output: bool,
) -> None:
    """Write .github/workflows/deploy.yml: tests on every push to --branch, then `shipyard
    deploy` to --environment (an existing workflow is kept unless --force: exit 2)."""
    from rich.markup import escape

    from shipyard.cli._context import current_run
    from shipyard.cli._output import err
    from shipyard.config import load_config
    from shipyard.scaffold import write_workflow

    loaded = load_config(config, environment)
    current_run().keep(loaded)
    done = write_workflow(loaded, branch=branch, package=package, force=force)
    if json_output:
        print_json(
            {
                "workflow": str(done.path),
                "replaced": done.replaced,
                "secrets": done.secrets,
                "variables": done.variables,
                "next": done.next,
            }
        )
        return
    err().print(f"{'replaced' if done.replaced else 'wrote'} {escape(str(done.path))}")
    err().print("next:")
    for step in done.next:
        err().print(f"  {escape(step)}")


@app.group("maintenance")
def maintenance_group() -> None:
    """Maintenance mode: the proxy answers every request with 503 and a maintenance page."""


_DEFAULT_MESSAGE = "This site is down for maintenance. Please try again soon."
_MOST_RETRY_AFTER = 86_400


def _cidrs(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--allow`` values as networks (a bare address is its own /32 or /128)."""
    import ipaddress

    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as exc:
            raise click.BadParameter(
                f"{value!r} is not a CIDR (e.g. 203.0.113.0/24 or 2001:db8::/32): {exc}"
            ) from exc
    return tuple(dict.fromkeys(networks))


def _maintenance_record(session: Session, summary: str) -> dict[str, Any]:
    mode = session.ctx.store.maintenance()
    return {
        "node": session.config.environment.target,
        **(mode.to_dict() if mode is not None else {"on": False}),
        "summary": summary,
    }


@maintenance_group.command("on")
@environment_argument
@click.option(
    "--message",
    default=_DEFAULT_MESSAGE,
    show_default=True,
    help="The text of the maintenance page (HTML-escaped) and of its JSON body.",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="CIDR",
    callback=_cidrs,
    help="Requests from this network still reach the app (as the proxy sees the client's "
    "address); repeat for several.",
)
@click.option(
    "--retry-after",
    type=click.IntRange(1, _MOST_RETRY_AFTER),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="The Retry-After header of the 503 answers.",
)
@config_option
@wait_option
@json_option
def maintenance_on(
    environment: str,
    message: str,
    allow: tuple[str, ...],
    retry_after: int,
    config: Path,
    wait: str,
    json_output: bool,
) -> None:
    """Turn maintenance mode on (every node): the proxy answers 503 with the page, except the
    app's health paths and --allow networks. Kept through deploys until `maintenance off`."""
    from shipyard.deploy import by_operator

    mode = by_operator(message, allow, retry_after)
    _set_maintenance(config, environment, mode, wait=wait, json_output=json_output)


@maintenance_group.command("off")
@environment_argument
@config_option
@wait_option
@json_option
def maintenance_off(environment: str, config: Path, wait: str, json_output: bool) -> None:
    """Turn maintenance mode off (every node): requests reach the app again."""
    _set_maintenance(config, environment, None, wait=wait, json_output=json_output)


def _set_maintenance(
    config: Path, environment: str, mode: Any, *, wait: str, json_output: bool
) -> None:
    from rich.markup import escape

    from shipyard.cli._context import node_suffix, open_sessions
    from shipyard.cli._output import err
    from shipyard.config import parse_duration
    from shipyard.session import on_nodes

    sessions = open_sessions(config, environment)
    done = on_nodes(
        sessions,
        lambda s: s.provider.maintenance(s.ctx, mode, lock_wait=parse_duration(wait)),
        "maintenance",
    )
    if json_output:
        print_json([_maintenance_record(session, summary) for session, summary in done])
        return
    for session, summary in done:
        err().print(f"{escape(environment)}{node_suffix(session, sessions)}: {escape(summary)}")


@app.group("lock")
def lock_group() -> None:
    """The deploy lock of an environment."""


def _environment_lock(
    config: Path, environment: str, node: str | None, purpose: str
) -> tuple[Lock, dict[str, Any] | None, bool]:
    """The lock of an environment's node, its holder's record and whether the lock is there
    at all (an unreadable record still counts)."""
    from shipyard.cli._context import open_session

    session = open_session(config, environment, node=node)
    lock = session.ctx.store.lock(
        session.ctx.deployment_id, purpose, ttl=session.config.deploy.lock_ttl
    )
    holder = lock.holder()
    return lock, holder, holder is not None or lock.exists()


@lock_group.command("status")
@one_node
def lock_status(environment: str, config: Path, node: str | None, json_output: bool) -> None:
    """Who holds the environment's lock, since when, and whether it is stale."""
    from rich.markup import escape

    from shipyard.cli._output import err
    from shipyard.state import Lock

    lock, holder, exists = _environment_lock(config, environment, node, "status")
    data = {"held": exists, "stale": lock.is_stale(holder) if exists else None, "owner": holder}
    if json_output:
        print_json(data)
    elif not exists:
        err().print(f"{escape(environment)}: unlocked")
    else:
        state = "[yellow]stale[/]" if data["stale"] else "[green]alive[/]"
        err().print(f"{escape(environment)}: locked ({state}) by {escape(Lock.describe(holder))}")


@lock_group.command("release")
@environment_argument
@config_option
@node_option
@flag("--force", "Break a lock whose holder looks alive.")
@json_option
def lock_release(
    environment: str, config: Path, node: str | None, force: bool, json_output: bool
) -> None:
    """Release a stale lock; --force breaks a live one (and says whose)."""
    from rich.markup import escape

    from shipyard.cli._output import err
    from shipyard.state import Lock

    lock, holder, exists = _environment_lock(config, environment, node, "release")
    if not exists:
        if json_output:
            print_json({"released": False, "owner": None})
        else:
            err().print(f"{escape(environment)}: not locked")
        return
    if not lock.is_stale(holder) and not force:
        raise LockHeld(
            f"the lock is held and its holder is alive: {Lock.describe(holder)}",
            hint="if you are sure it is gone, `shipyard lock release ENV --force`",
        )
    broken = lock.break_lock()
    if json_output:
        print_json({"released": True, "owner": broken})
    else:
        err().print(f"released the lock of {escape(Lock.describe(broken))}")


@app.group("notify")
def notify_group() -> None:
    """Notifications: webhooks and ntfy topics set under `notifications:`."""


@notify_group.command("test")
@one_node
def notify_test(environment: str, config: Path, node: str | None, json_output: bool) -> None:
    """Send a test event to every configured sink and report each result."""
    from dataclasses import asdict

    from rich.markup import escape
    from rich.table import Table

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err, print_table
    from shipyard.events import send_test

    session = open_session(config, environment, node=node)
    results = send_test(session.config, session.ctx.deployment_id, session.ctx.node)
    if json_output:
        print_json([asdict(r) for r in results])
    elif not results:
        err().print(f"no notification sinks are configured for {escape(environment)}")
    else:
        table = Table("sink", "result", "detail", "attempts")
        for r in results:
            table.add_row(
                escape(r.sink),
                "[green]ok[/]" if r.ok else "[red]failed[/]",
                escape(r.detail),
                str(r.attempts),
            )
        print_table(err(), table)
    if any(not r.ok for r in results):
        raise exit_with(ExitCode.FAILED)


@app.command()
@environment_argument
@config_option
@click.option(
    "--user",
    default="root",
    show_default=True,
    help="User to connect as (root, or a sudoer with --sudo).",
)
@flag("--sudo", "Run every step through `sudo -n`.")
@click.option(
    "--deploy-user",
    metavar="USER",
    help="User deploys run as (default: the target's user, or `deploy` for root).",
)
@json_option
def provision(
    environment: str,
    config: Path,
    user: str,
    sudo: bool,
    deploy_user: str | None,
    json_output: bool,
) -> None:
    """Set up the environment's fresh Debian/Ubuntu host(s): Docker, deploy user, firewall, limits."""
    from dataclasses import asdict

    from rich.markup import escape

    from shipyard.cli._context import current_run
    from shipyard.cli._output import err
    from shipyard.session import provision_nodes

    def report(node: str, result: StepResult) -> None:
        if json_output:  # one step per line
            print_json_line({"node": node, **asdict(result)})
            return
        colour = {"changed": "yellow", "unchanged": "green", "failed": "red"}[result.status]
        err().print(
            f"{escape(node.removeprefix('ssh://'))}  {result.step:<15} "
            f"[{colour}]{result.status:<9}[/] {escape(result.detail)}"
        )

    results = provision_nodes(
        config,
        environment,
        user=user,
        sudo=sudo,
        deploy_user=deploy_user,
        report=report,
        on_config=current_run().keep,
    )
    failed = [r for steps in results.values() for r in steps if r.status == "failed"]
    if failed:
        raise exit_with(ExitCode.FAILED)


@app.command()
@environment_argument
@config_option
@flag("--volumes", "Also delete the database volume (data loss).")
@flag("--snapshots", "Also delete the environment's database snapshots (backups).")
@yes_option("Do not ask for confirmation.")
@json_option
def destroy(
    environment: str, config: Path, volumes: bool, snapshots: bool, yes: bool, json_output: bool
) -> None:
    """Remove the environment's containers, network, images and state (and volumes with
    --volumes); an image another environment or a container uses is kept. Its snapshots are
    kept, and said where, unless --snapshots."""
    from dataclasses import asdict

    from rich.markup import escape

    from shipyard.cli._context import current_run, node_suffix, open_sessions
    from shipyard.cli._output import err
    from shipyard.providers import Destroyed

    sessions = open_sessions(config, environment)
    nodes = f" on {len(sessions)} nodes" if len(sessions) > 1 else ""
    held = ""
    if snapshots:
        found = [s.provider.snapshot_files(s.ctx) for s in sessions]
        held = "; ".join(_snapshots_named(f) for f in found if f and f.count) or "none found"
    if not yes and not click.confirm(
        f"Remove {sessions[0].config.app.name} {environment}{nodes}"
        f"{' including its database' if volumes else ''}"
        f"{f' and delete its snapshots ({held})' if snapshots else ''}?",
        err=True,
    ):
        raise exit_with(ExitCode.USAGE)
    if yes and snapshots:
        err().print(f"deleting the snapshots of {escape(environment)}: {escape(held)}")
    failures: list[ShipyardError] = []
    records: list[dict[str, Any]] = []
    for session in sessions:  # every node, even after one failed
        node = {"node": session.config.environment.target}
        try:
            destroyed = session.provider.cleanup(session.ctx, volumes=volumes, snapshots=snapshots)
        except ShipyardError as exc:
            if len(sessions) == 1:
                raise
            err().print(f"[red]failed[/]{node_suffix(session, sessions)}: {escape(exc.message)}")
            failures.append(exc)
            nothing = asdict(Destroyed(removed=[]))  # the same keys as a node destroyed
            records.append({**node, **nothing, "error": current_run().mask(exc.message)})
            continue
        records.append({**node, **asdict(destroyed), "error": None})
        if not json_output:
            _say_destroyed(environment, destroyed, node_suffix(session, sessions))
    if json_output:
        print_json(records)
    if failures:
        raise failures[0]


def _say_destroyed(environment: str, destroyed: Destroyed, suffix: str) -> None:
    from rich.markup import escape

    from shipyard.cli._output import err

    for name in destroyed.removed:
        err().print(f"removed {escape(name)}{suffix}")
    for name in destroyed.kept:
        err().print(f"kept {escape(name)}{suffix}")
    if destroyed.snapshots is not None and destroyed.snapshots_removed:
        err().print(f"removed {escape(_snapshots_named(destroyed.snapshots))}")
    elif destroyed.snapshots is not None:
        err().print(
            f"kept {escape(_snapshots_named(destroyed.snapshots))}: a later deploy of "
            f"{escape(environment)} finds them (`shipyard snapshot list {escape(environment)}`) "
            f"and its retention prunes them; `shipyard destroy {escape(environment)} "
            "--snapshots` deletes them"
        )


def _snapshots_named(files: SnapshotFiles) -> str:
    from shipyard.cli._output import human_size

    return f"{files.count} snapshot(s), {human_size(files.size)}, in {files.where}"


@app.command()
@click.argument("shell", metavar="SHELL", type=click.Choice(_SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(shipyard completion bash)"    in ~/.bashrc
    zsh:   eval "$(shipyard completion zsh)"     in ~/.zshrc
    fish:  shipyard completion fish > ~/.config/fish/completions/shipyard.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # noqa: S101 — click knows each of _SHELLS
    sys.stdout.write(completer(app, {}, "shipyard", "_SHIPYARD_COMPLETE").source() + "\n")


def main() -> None:
    """Console entry point. Usage errors exit 2; expected errors get their own code."""
    # With click installed, `import httpx` also loads httpx's own command-line client (click,
    # rich.progress, rich.syntax, pygments): about 0.1 s of CPU that shipyard never uses. A None
    # entry makes that one optional import fail, and httpx falls back to a stub.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # Importing what a command runs is most of a short command's CPU: tens of thousands of
    # objects (modules, classes, validators) that live as long as the process. With Python's
    # default the collector walks them over and over meanwhile (about 25 ms of a deploy's
    # start here); collecting the youngest generation every 50,000 allocations instead of 700
    # leaves that out and still collects what a long watch leaves behind.
    thresholds = gc.get_threshold()
    gc.set_threshold(_GC_THRESHOLD, *thresholds[1:])
    # The interpreter's exit walks those objects once more, in a last collection: about 0.1 s
    # after a deploy or a status here, to free memory the process gives back as it ends. Frozen
    # by an exit handler, they are left out of it. What the command opened is closed before
    # (``run.close``); the standard streams are still flushed and the other exit handlers still
    # run. Registered once, however often ``main`` runs in one process.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    args = [
        f"--wait={BARE_WAIT}" if arg == "--wait" and _bare(sys.argv, i) else arg
        for i, arg in enumerate(sys.argv[1:], 1)
    ]
    from shipyard.cli._context import Run

    run = Run()
    try:
        _invoke(args, run)
    finally:
        run.close()  # after the result and any error are out
        gc.set_threshold(*thresholds)


def _invoke(args: list[str], run: Run) -> None:
    try:
        code = app.main(args=args, prog_name="shipyard", standalone_mode=False, obj=run)
    except ShipyardError as exc:
        _expected(exc, run)
    except click.ClickException as exc:  # usage: a missing argument, an unknown option, …
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # Ctrl-C (click turns it into Abort), or EOF at a prompt
        _say("interrupted" if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted")
        sys.exit(
            ExitCode.INTERRUPTED if isinstance(exc.__cause__, KeyboardInterrupt) else ExitCode.USAGE
        )
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception:  # noqa: BLE001 — the one place that catches everything
        _crashed(run)
    except BaseException as exc:  # an operation's Interrupted (SIGINT, SIGTERM), SystemExit
        if isinstance(exc, SystemExit):
            raise
        if not isinstance(exc, Interrupted):
            raise
        _say(run.mask(str(exc)), markup=False)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _say(text: str, *, markup: bool = True) -> None:
    from rich.markup import escape

    from shipyard.cli._output import err

    err().print(text if markup else escape(text))


def _expected(exc: ShipyardError, run: Run) -> None:
    from rich.markup import escape

    _say(f"[bold red]error:[/] {escape(run.mask(str(exc)))}")
    if exc.hint:
        _say(f"[dim]hint: {escape(run.mask(exc.hint))}[/]")
    sys.exit(exc.exit_code)


def _crashed(run: Run) -> None:
    """Masked traceback to a private file; on stderr too with --debug."""
    import tempfile
    import traceback
    from pathlib import PurePosixPath

    from rich.markup import escape

    from shipyard.hosts import LocalHost

    trace = run.mask(traceback.format_exc())
    crash = Path(tempfile.gettempdir()) / "shipyard-crash.log"
    try:
        LocalHost().put(PurePosixPath(crash), trace.encode())  # mode 0600, replaced whole
    except OSError as exc:
        _say(
            f"[bold red]unexpected error[/]; the traceback could not be written to {crash}: {escape(exc.strerror or str(exc))}"
        )
    else:
        _say(f"[bold red]unexpected error[/]; traceback written to {crash}")
    if run.debug:
        _say(trace, markup=False)
    sys.exit(ExitCode.UNEXPECTED)


def _bare(argv: list[str], index: int) -> bool:
    """``--wait`` given without a value (the next word is not a duration)."""
    following = argv[index + 1] if index + 1 < len(argv) else ""
    return not following or following.startswith("-") or not following[0].isdigit()
