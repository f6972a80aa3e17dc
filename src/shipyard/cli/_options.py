"""Options and arguments several commands share, and how a command prints JSON.

Only click and the standard library are imported here: ``shipyard --help`` and ``shipyard
COMMAND --help`` must not load the library (pydantic models, httpx, the providers), so each
command imports what it runs in its own body.

The JSON rule (README's "JSON output"): with ``--json``, a command that reports a result prints
one JSON document on stdout (``print_json``, indented by two spaces); a command that streams
progress (deploy, rollback, repair, db rotate-password, provision, logs --app) prints one JSON
object per line as it goes (the event bus's ``JsonLinesSink``, or ``print_json_line``). Humans
read stderr either way.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

BARE_WAIT = "30m"
"""What a bare ``--wait`` (no duration after it) waits."""


def environment_argument(f: F) -> F:
    """``ENVIRONMENT``: development, staging, production, or any name under ``environments:``."""
    return click.argument("environment", shell_complete=complete_environment)(f)


def complete_environment(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """The names under ``environments:`` in the config (for shell completion: a quick scan of
    the file's lines, not a load of the config; nothing when it cannot be read)."""
    config = ctx.params.get("config") or os.environ.get("SHIPYARD_CONFIG") or "shipyard.yml"
    try:
        lines = Path(config).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [name for name in environment_names(lines) if name.startswith(incomplete)]


def environment_names(lines: list[str]) -> list[str]:
    """The keys one level under a top-level ``environments:`` key of a YAML document."""
    names: list[str] = []
    indent: str | None = None
    inside = False
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            inside = line.split("#", 1)[0].rstrip() == "environments:"
            continue
        if inside:
            found = _KEY.match(line)
            if found is not None and (indent is None or found["indent"] == indent):
                indent = found["indent"]
                names.append(found["key"])
    return names


_KEY = re.compile(r"(?P<indent>[ ]+)(?P<key>[A-Za-z0-9_.-]+):(\s|$)")


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "-c",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("shipyard.yml"),
        show_default=True,
        envvar="SHIPYARD_CONFIG",
        help="Path to shipyard.yml (or $SHIPYARD_CONFIG).",
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json", "json_output", is_flag=True, help="Machine-readable output on stdout."
    )(f)


def print_json(data: object) -> None:
    """A command's result with ``--json``: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_json_line(data: object) -> None:
    """One item of a command that streams with ``--json``: one JSON object on one line, out at
    once."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def exit_with(code: int) -> click.exceptions.Exit:
    """What a command raises to end with ``code`` (an ``ExitCode``) after printing its result."""
    return click.exceptions.Exit(int(code))


def node_option(f: F) -> F:
    return click.option(
        "--node",
        metavar="NODE",
        help="Which node of a several-node environment (default: its `target`).",
    )(f)


def one_node(f: F) -> F:
    """``ENVIRONMENT``, ``--config``, ``--node`` and ``--json``: what a command acting on one
    node of an environment takes."""
    return environment_argument(config_option(node_option(json_option(f))))


def wait_option(f: F) -> F:
    return click.option(
        "--wait",
        default="0s",
        metavar="DURATION",
        help=f"Wait this long for another operation's lock (e.g. 10m); bare --wait waits {BARE_WAIT}.",
    )(f)


def yes_option(help_text: str) -> Callable[[F], F]:
    return click.option("--yes", is_flag=True, help=help_text)


def flag(name: str, help_text: str) -> Callable[[F], F]:
    """A boolean ``--name`` (off unless given)."""
    return click.option(name, is_flag=True, help=help_text)


class Group(click.Group):
    """A command group whose listing shows each command's whole first sentence, wrapped (click
    cuts it with "..." at the terminal's width). Its subgroups are of this class too."""

    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_WHOLE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_WHOLE = 10_000
