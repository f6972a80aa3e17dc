"""``shipyard snapshot …``, ``shipyard migrations lint`` and ``shipyard db rotate-password``:
parse, call the library, render. Each command imports what it runs in its own body."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shipyard.cli._options import (
    Group,
    config_option,
    environment_argument,
    exit_with,
    flag,
    json_option,
    node_option,
    one_node,
    print_json,
    wait_option,
    yes_option,
)
from shipyard.errors import ExitCode

if TYPE_CHECKING:
    from shipyard.providers import DatabaseOperations


@click.group("snapshot", cls=Group)
def snapshot_group() -> None:
    """Database snapshots: create, list, verify, restore, prune."""


@click.group("migrations", cls=Group)
def migrations_group() -> None:
    """Migration safety checks."""


@click.group("db", cls=Group)
def db_group() -> None:
    """The database shipyard runs: its password."""


def _snapshots(config: Path, environment: str, node: str | None) -> DatabaseOperations:
    """The snapshot operations of the environment's database (on ``node``)."""
    from shipyard.cli._context import open_session

    session = open_session(config, environment, node=node)
    return session.provider.database(session.ctx)


@snapshot_group.command("create")
@one_node
def snapshot_create(environment: str, config: Path, node: str | None, json_output: bool) -> None:
    """Take a snapshot now (pg_dump -Fc in the database container), checksum and verify it."""
    from rich.markup import escape

    from shipyard.cli._output import err, human_size

    snapshot = _snapshots(config, environment, node).create()
    if json_output:
        print_json(snapshot.to_dict())
        return
    err().print(
        f"[green]✓[/] snapshot {escape(snapshot.name)}: {human_size(snapshot.size)} in "
        f"{snapshot.duration_s:.1f}s, {snapshot.toc_entries} TOC entries, sha256 {snapshot.sha256[:12]}"
    )
    sys.stdout.write(snapshot.path + "\n")


@snapshot_group.command("list")
@one_node
def snapshot_list(environment: str, config: Path, node: str | None, json_output: bool) -> None:
    """Snapshots of the environment's database, newest first."""
    from rich.markup import escape
    from rich.table import Table

    from shipyard.cli._output import err, human_size, print_table

    snapshots = _snapshots(config, environment, node).snapshots()
    if json_output:
        print_json([s.to_dict() for s in snapshots])
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
    print_table(err(), table)


@snapshot_group.command("verify")
@environment_argument
@click.argument("name", required=False)
@flag("--restore-test", "Restore into a scratch database and compare row counts.")
@config_option
@node_option
@json_option
def snapshot_verify(
    environment: str,
    name: str | None,
    restore_test: bool,
    config: Path,
    node: str | None,
    json_output: bool,
) -> None:
    """Check a snapshot's checksum and archive (and, with --restore-test, restore it aside).
    NAME is a snapshot's name (default: the newest)."""
    from dataclasses import asdict

    from rich.markup import escape

    from shipyard.cli._output import err

    snapshot, test = _snapshots(config, environment, node).verify(name, restore_test=restore_test)
    if json_output:
        print_json({"snapshot": snapshot.to_dict(), "restore_test": asdict(test) if test else None})
        return
    err().print(
        f"[green]✓[/] {escape(snapshot.name)}: sha256 matches, {snapshot.toc_entries} TOC entries"
    )
    if test is not None:
        err().print(
            f"[green]✓[/] restored into scratch database {test.database}: "
            f"{len(test.tables)} table(s), {test.rows} row(s), counts equal to the dump's (dropped after)"
        )


@snapshot_group.command("restore")
@environment_argument
@click.argument("name")
@yes_option("Do not ask for confirmation.")
@config_option
@node_option
@json_option
def snapshot_restore(
    environment: str, name: str, yes: bool, config: Path, node: str | None, json_output: bool
) -> None:
    """Replace the database's contents with snapshot NAME (see `shipyard snapshot list`); the
    app's slots stop meanwhile."""
    from dataclasses import asdict

    from rich.markup import escape

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err

    session = open_session(config, environment, node=node)
    operations = session.provider.database(session.ctx)
    if not yes and not click.confirm(
        f"Restore {name} into {session.config.app.name} {environment}? Writes since then are lost "
        "(a pre-restore snapshot is taken first).",
        err=True,
    ):
        raise exit_with(ExitCode.USAGE)
    result = operations.restore(name)
    if json_output:
        print_json(asdict(result))
        return
    err().print(
        f"[green]✓[/] restored {escape(result.restored.name)}; pre-restore snapshot "
        f"{escape(result.safety.name)}; restarted {', '.join(result.restarted) or 'nothing'}; "
        f"health: {escape(result.health)}"
    )


@snapshot_group.command("prune")
@environment_argument
@flag("--dry-run", "Show the plan; delete nothing.")
@config_option
@node_option
@json_option
def snapshot_prune(
    environment: str, dry_run: bool, config: Path, node: str | None, json_output: bool
) -> None:
    """Delete snapshots past retention (never the newest N, nor those of retained releases)."""
    from shipyard.cli._output import err

    result = _snapshots(config, environment, node).prune(dry_run=dry_run)
    if json_output:
        print_json(
            {"keep": result.plan.keep, "delete": result.plan.delete, "deleted": result.deleted}
        )
        return
    for name in result.plan.keep:
        err().print(f"keep   {name}  ({result.plan.reason(name)})")
    for name in result.plan.delete:
        verb = "would delete" if dry_run else "deleted"
        err().print(f"[yellow]{verb}[/] {name}  ({result.plan.reason(name)})")


@migrations_group.command("lint")
@click.argument("environment", default="development")
@click.option(
    "--path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Lint this directory instead of the configured one.",
)
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Every migration, applied or not (the history, for review).",
)
@click.option(
    "--since",
    type=int,
    metavar="VERSION",
    help="Offline: the migrations newer than this version (the one applied in the environment).",
)
@config_option
@node_option
@json_option
def migrations_lint(
    environment: str,
    path: Path | None,
    every: bool,
    since: int | None,
    config: Path,
    node: str | None,
    json_output: bool,
) -> None:
    """Flag statements unsafe while two app versions share the schema, in the migrations not yet
    applied on ENVIRONMENT's database (or newer than --since, or --all); exit 8 when any is
    found. ENVIRONMENT (default: development) names the migrations directory and the database
    that says what is pending."""
    if every and since is not None:
        raise click.BadParameter("--all lints every migration: it goes without --since")
    from dataclasses import asdict

    from rich.markup import escape

    from shipyard.cli._context import open_session
    from shipyard.cli._output import err
    from shipyard.config import load_config
    from shipyard.database import lint_migrations

    if path is None:
        loaded = load_config(config, environment)
        if loaded.database is None or loaded.database.migrations is None:
            if json_output:
                print_json([])
            else:
                err().print("no migrations configured")
            return
        path = loaded.resolve(loaded.database.migrations.path)
    if every:
        report, scope = lint_migrations(path, applied=None, history=True), "every migration"
    elif since is not None:
        report, scope = lint_migrations(path, applied=since), f"newer than version {since}"
    else:
        session = open_session(config, environment, node=node)
        state = session.provider.migration_state(session.ctx)
        report = lint_migrations(path, applied=state.version)
        at = (
            f"at version {state.version}{' (dirty)' if state.dirty else ''}"
            if state.version is not None
            else "empty, no migrations applied"
        )
        scope = f"pending on {environment} (its database is {at})"
    if json_output:
        print_json([asdict(f) for f in report.findings])
    else:
        for finding in report.findings:
            sys.stdout.write(f"{finding}\n")
        linted = f"{len(report.files)} migration(s)" if report.files else "no migration"
        err().print(
            f"{len(report.findings)} finding(s) in {linted} of {escape(str(path))}: {escape(scope)}"
        )
    if report.findings:
        raise exit_with(ExitCode.FAILED)  # the lint found unsafe statements


@db_group.command("rotate-password")
@environment_argument
@config_option
@wait_option
@json_option
def db_rotate_password(environment: str, config: Path, wait: str, json_output: bool) -> None:
    """Give the database role the password the env file holds now and redeploy the live version
    with it, blue-green (every node)."""
    from rich.markup import escape

    from shipyard.cli._context import node_suffix, open_sessions
    from shipyard.cli._output import err
    from shipyard.config import parse_duration
    from shipyard.deploy import RotateOptions
    from shipyard.session import on_nodes

    sessions = open_sessions(config, environment, json_events=json_output)
    options = RotateOptions(lock_wait=parse_duration(wait))
    for session, result in on_nodes(
        sessions, lambda s: s.provider.rotate_password(s.ctx, options), "rotate-password"
    ):
        if json_output:
            continue
        err().print(
            f"[bold green]rotated[/] the database password of {escape(environment)}"
            f"{node_suffix(session, sessions)}: {escape(result.release.version)} "
            f"({result.release.commit[:7]}) serves with it, in {result.duration_s:.1f}s"
        )
        sys.stdout.write(result.url + "\n")
