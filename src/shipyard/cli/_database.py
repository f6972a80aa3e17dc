"""``shipyard snapshot …``, ``shipyard migrations lint`` and ``shipyard db rotate-password``:
parse, call the library, render."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipyard.cli._context import NodeOption, node_suffix, on_nodes, open_session, open_sessions
from shipyard.cli._output import human_size, print_table
from shipyard.config import load_config, parse_duration
from shipyard.database import lint_migrations
from shipyard.deploy import RotateOptions
from shipyard.errors import ExitCode

snapshot_app = typer.Typer(
    help="Database snapshots: create, list, verify, restore, prune.", no_args_is_help=True
)
migrations_app = typer.Typer(help="Migration safety checks.", no_args_is_help=True)
db_app = typer.Typer(help="The database shipyard runs: its password.", no_args_is_help=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_USAGE = 2

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to shipyard.yml.", envvar="SHIPYARD_CONFIG")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
EnvArgument = Annotated[str, typer.Argument(help="Environment name.")]
WaitOption = Annotated[
    str,
    typer.Option(
        "--wait",
        help="Wait this long for another operation's lock (e.g. 10m); bare --wait waits 30m.",
    ),
]


def _out(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@snapshot_app.command("create")
def snapshot_create(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Take a snapshot now (pg_dump -Fc in the database container), checksum and verify it."""
    session = open_session(config, environment, json_output=json_output, node=node)
    snapshot = session.provider.database(session.ctx).create()
    if json_output:
        _out(snapshot.to_dict())
        return
    err.print(
        f"[green]✓[/] snapshot {escape(snapshot.name)}: {human_size(snapshot.size)} in "
        f"{snapshot.duration_s:.1f}s, {snapshot.toc_entries} TOC entries, sha256 {snapshot.sha256[:12]}"
    )
    sys.stdout.write(snapshot.path + "\n")


@snapshot_app.command("list")
def snapshot_list(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Snapshots of the environment's database, newest first."""
    session = open_session(config, environment, json_output=json_output, node=node)
    snapshots = session.provider.database(session.ctx).snapshots()
    if json_output:
        _out([s.to_dict() for s in snapshots])
        return
    table = Table("name", "created", "size", "reason", "version", "deployment")
    for s in snapshots:
        table.add_row(
            s.name,
            s.created_at,
            human_size(s.size),
            escape(s.reason),
            escape(s.version),
            s.deployment_id or "-",
        )
    print_table(err, table)


@snapshot_app.command("verify")
def snapshot_verify(
    environment: EnvArgument,
    name: Annotated[str | None, typer.Argument(help="Snapshot name (default: the newest).")] = None,
    restore_test: Annotated[
        bool,
        typer.Option(
            "--restore-test", help="Restore into a scratch database and compare row counts."
        ),
    ] = False,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check a snapshot's checksum and archive (and, with --restore-test, restore it aside)."""
    session = open_session(config, environment, json_output=json_output, node=node)
    snapshot, test = session.provider.database(session.ctx).verify(name, restore_test=restore_test)
    if json_output:
        _out({"snapshot": snapshot.to_dict(), "restore_test": asdict(test) if test else None})
        return
    err.print(
        f"[green]✓[/] {escape(snapshot.name)}: sha256 matches, {snapshot.toc_entries} TOC entries"
    )
    if test is not None:
        err.print(
            f"[green]✓[/] restored into scratch database {test.database}: "
            f"{len(test.tables)} table(s), {test.rows} row(s), counts equal to the dump's (dropped after)"
        )


@snapshot_app.command("restore")
def snapshot_restore(
    environment: EnvArgument,
    name: Annotated[str, typer.Argument(help="Snapshot name (see `shipyard snapshot list`).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
) -> None:
    """Replace the database's contents with a snapshot (the app's slots stop meanwhile)."""
    session = open_session(config, environment, json_output=False, node=node)
    operations = session.provider.database(session.ctx)
    if not yes and not typer.confirm(
        f"Restore {name} into {session.config.app.name} {environment}? Writes since then are lost "
        "(a pre-restore snapshot is taken first)."
    ):
        raise typer.Exit(_USAGE)
    result = operations.restore(name)
    err.print(
        f"[green]✓[/] restored {escape(result.restored.name)}; pre-restore snapshot "
        f"{escape(result.safety.name)}; restarted {', '.join(result.restarted) or 'nothing'}; "
        f"health: {escape(result.health)}"
    )


@snapshot_app.command("prune")
def snapshot_prune(
    environment: EnvArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; delete nothing.")
    ] = False,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete snapshots past retention (never the newest N, nor those of retained releases)."""
    session = open_session(config, environment, json_output=json_output, node=node)
    result = session.provider.database(session.ctx).prune(dry_run=dry_run)
    if json_output:
        _out({"keep": result.plan.keep, "delete": result.plan.delete, "deleted": result.deleted})
        return
    for name in result.plan.keep:
        err.print(f"keep   {name}  ({result.plan.reason(name)})")
    for name in result.plan.delete:
        verb = "would delete" if dry_run else "deleted"
        err.print(f"[yellow]{verb}[/] {name}  ({result.plan.reason(name)})")


@migrations_app.command("lint")
def migrations_lint(
    environment: Annotated[
        str,
        typer.Argument(
            help="Environment whose config names the migrations directory and whose database says what is pending."
        ),
    ] = "development",
    path: Annotated[
        Path | None,
        typer.Option("--path", help="Lint this directory instead of the configured one."),
    ] = None,
    every: Annotated[
        bool,
        typer.Option("--all", help="Every migration, applied or not (the history, for review)."),
    ] = False,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            help="Offline: the migrations newer than this version (the one applied in the environment).",
        ),
    ] = None,
    config: ConfigOption = Path("shipyard.yml"),
    node: NodeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Flag statements unsafe while two app versions share the schema, in the migrations not yet
    applied on the environment's database (or newer than --since, or --all); exit 8 when any is
    found."""
    if every and since is not None:
        raise typer.BadParameter("--all lints every migration: it goes without --since")
    if path is None:
        loaded = load_config(config, environment)
        if loaded.database is None or loaded.database.migrations is None:
            err.print("no migrations configured")
            return
        path = loaded.resolve(loaded.database.migrations.path)
    if every:
        report, scope = lint_migrations(path, applied=None, history=True), "every migration"
    elif since is not None:
        report, scope = lint_migrations(path, applied=since), f"newer than version {since}"
    else:
        session = open_session(config, environment, json_output=True, node=node)
        state = session.provider.migration_state(session.ctx)
        report = lint_migrations(path, applied=state.version)
        at = (
            f"at version {state.version}{' (dirty)' if state.dirty else ''}"
            if state.version is not None
            else "empty, no migrations applied"
        )
        scope = f"pending on {environment} (its database is {at})"
    if json_output:
        _out([asdict(f) for f in report.findings])
    else:
        for finding in report.findings:
            sys.stdout.write(f"{finding}\n")
        linted = f"{len(report.files)} migration(s)" if report.files else "no migration"
        err.print(
            f"{len(report.findings)} finding(s) in {linted} of {escape(str(path))}: {escape(scope)}"
        )
    if report.findings:
        raise typer.Exit(ExitCode.FAILED)  # the lint found unsafe statements


@db_app.command("rotate-password")
def db_rotate_password(
    environment: EnvArgument,
    config: ConfigOption = Path("shipyard.yml"),
    wait: WaitOption = "0s",
    json_output: JsonOption = False,
) -> None:
    """Give the database role the password the env file holds now and redeploy the live version
    with it, blue-green (every node)."""
    sessions = open_sessions(config, environment, json_output=json_output)
    options = RotateOptions(lock_wait=parse_duration(wait))
    for session, result in on_nodes(
        sessions, lambda s: s.provider.rotate_password(s.ctx, options), "rotate-password"
    ):
        if json_output:
            continue
        err.print(
            f"[bold green]rotated[/] the database password of {escape(environment)}"
            f"{node_suffix(session, sessions)}: {escape(result.release.version)} "
            f"({result.release.commit[:7]}) serves with it, in {result.duration_s:.1f}s"
        )
        sys.stdout.write(result.url + "\n")
