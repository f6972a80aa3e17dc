"""The command line itself: help, --version, completion, and what starting it loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from shipyard import __version__, cli
from tests.unit.cli_harness import shipyard

TOP_LEVEL = [
    "check",
    "ci",
    "completion",
    "db",
    "deploy",
    "destroy",
    "history",
    "init",
    "lock",
    "logs",
    "maintenance",
    "migrations",
    "monitoring",
    "notify",
    "plan",
    "provision",
    "render",
    "repair",
    "rollback",
    "schema",
    "snapshot",
    "status",
    "watch",
]


def _every_command(
    group: click.Group, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in sorted(group.commands.items()):
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(_every_command(command, (*path, name)))
    return found


COMMANDS = _every_command(cli.app)


def test_version_prints_the_version_and_exits_0() -> None:
    result = CliRunner().invoke(cli.app, ["--version"], prog_name="shipyard")
    assert result.exit_code == 0, result.output
    assert result.output == f"shipyard {__version__}\n"


def test_the_entry_point_prints_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = shipyard(monkeypatch, "--version")
    assert ran.code == cli.ExitCode.OK
    assert ran.stdout == f"shipyard {__version__}\n"


def test_help_lists_every_command_without_type_noise() -> None:
    result = CliRunner().invoke(cli.app, ["--help"], prog_name="shipyard")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: shipyard [OPTIONS] COMMAND [ARGS]...\n")
    listed = result.output.split("\nCommands:\n", 1)[1].splitlines()
    named = [line.split()[0] for line in listed if line.startswith("  ") and line[2] != " "]
    assert named == TOP_LEVEL
    assert "..." not in result.output.split("\nCommands:\n", 1)[1]  # whole sentences, wrapped
    for option in ("--version", "--debug", "--help"):
        assert option in result.output
    assert "<bool>" not in result.output
    assert "{" not in result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_each_command_has_plain_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli.app, [*path, "--help"], prog_name="shipyard")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: shipyard {' '.join(path)} [OPTIONS]")
    assert "<bool>" not in result.output
    assert "<text>" not in result.output
    assert "{" not in result.output


def test_status_help_names_its_argument_and_options() -> None:
    result = CliRunner().invoke(cli.app, ["status", "--help"], prog_name="shipyard")
    assert result.exit_code == 0, result.output
    assert "Usage: shipyard status [OPTIONS] ENVIRONMENT\n" in result.output
    words = " ".join(result.output.split())  # however the terminal's width wraps it
    assert (
        "-c, --config FILE Path to shipyard.yml (or $SHIPYARD_CONFIG). [default: shipyard.yml]"
        in words
    )
    assert "--json Machine-readable output on stdout." in words


def test_a_missing_argument_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = shipyard(monkeypatch, "status")
    assert ran.code == cli.ExitCode.USAGE
    assert "Error: Missing argument 'ENVIRONMENT'." in ran.stderr


def test_plan_refuses_to_without_rollback() -> None:
    result = CliRunner().invoke(
        cli.app, ["plan", "production", "--to", "1.2.3"], prog_name="shipyard"
    )
    assert result.exit_code == cli.ExitCode.USAGE
    assert "--to goes with --rollback" in result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(shell: str) -> None:
    result = CliRunner().invoke(cli.app, ["completion", shell], prog_name="shipyard")
    assert result.exit_code == 0, result.output
    assert "_SHIPYARD_COMPLETE" in result.output
    assert f"{shell}_complete" in result.output


def _bash_complete(words: str, cword: int) -> Result:
    """What the app answers bash asking to complete word ``cword`` of the command line
    ``words``."""
    env = {"_SHIPYARD_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    return CliRunner().invoke(cli.app, [], prog_name="shipyard", env=env)


def test_completion_completes_commands_and_options() -> None:
    """What the sourced script asks the program: bash's words in, candidates out."""
    commands = _bash_complete("shipyard s", 1)
    assert commands.output.split() == ["plain,schema", "plain,snapshot", "plain,status"]
    options = _bash_complete("shipyard status production --j", 3)
    assert options.output.split() == ["plain,--json"]


def test_starting_the_cli_loads_click_and_not_the_library() -> None:
    """``shipyard --help`` must stay fast: the library loads when a command runs."""
    probe = (
        "import sys, json, shipyard.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if '.' not in m or m.startswith('shipyard'))))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(ran.stdout))
    assert "click" in loaded
    heavy = {
        "pydantic",
        "httpx",
        "tenacity",
        "rich",
        "ruamel",
        "postgast",
        "shipyard.config",
        "shipyard.deploy",
        "shipyard.events",
        "shipyard.providers",
        "shipyard.cli._context",
        "shipyard.session",
    }
    assert loaded & heavy == set()


def test_completion_offers_the_environments_of_the_config(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yml"
    config.write_text(
        "app: {name: shop}\n"
        "environments:\n"
        "  # the laptop\n"
        "  development:\n"
        "    target: local\n"
        "    deploy:\n"
        "      allow_dirty: true\n"
        "  staging: {target: 'ssh://deploy@staging'}\n"
        "  production:   # the real one\n"
        "    target: ssh://deploy@prod\n"
        "health:\n"
        "  passes: 3\n",
        encoding="utf-8",
    )
    result = _bash_complete(f"shipyard status -c {config} ", 4)
    assert result.output.split() == ["plain,development", "plain,staging", "plain,production"]
    narrowed = _bash_complete(f"shipyard snapshot list --config {config} pro", 5)
    assert narrowed.output.split() == ["plain,production"]
    missing = _bash_complete(f"shipyard status -c {tmp_path / 'none.yml'} ", 4)
    assert missing.exit_code == 0
    assert missing.output.split() == []
