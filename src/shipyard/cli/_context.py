"""What the CLI adds to the library's sessions (``shipyard.session``): the console or JSON
sink, masking of error output with the config's secrets, and closing every session once the
command's result and any error are out.

All of it lives on one ``Run`` object per invocation, the root click context's ``obj`` (``main``
creates it and closes it last); nothing is kept at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from collections.abc import Callable

    from shipyard.config import Config
    from shipyard.secrets import Masker
    from shipyard.session import Session, Sessions

Opened = TypeVar("Opened", "Session", "Sessions")


@dataclass
class Run:
    """One invocation of the CLI: the masker of every config it loaded, what it opened, and
    ``--debug``."""

    debug: bool = False
    maskers: list[Masker] = field(default_factory=list)
    opened: list[Session | Sessions] = field(default_factory=list)

    def mask(self, text: str) -> str:
        for masker in self.maskers:
            text = masker(text)
        return text

    def keep(self, config: Config) -> None:
        self.maskers.append(config.masker)

    def close(self) -> None:
        """Close what the command opened, newest first (a bounded wait for notifications)."""
        while self.opened:
            self.opened.pop().close()


def current_run() -> Run:
    """The ``Run`` of the command being invoked (made here when a test invokes the group
    without ``main``: closed with the click context then)."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Run):
        root.obj = Run()
        root.call_on_close(root.obj.close)
    return root.obj


def _sink(json_events: bool) -> object:
    from shipyard.events import ConsoleSink, JsonLinesSink

    return JsonLinesSink() if json_events else ConsoleSink()


def open_session(
    config_path: Path,
    environment: str,
    *,
    json_events: bool = False,
    ref: str | None = None,
    node: str | None = None,
) -> Session:
    """``shipyard.session.open_session`` for a command, closed when the command is done. Its
    events go to the console (stderr), or with ``json_events`` one JSON object per line on
    stdout: that is for the commands that stream (``--json`` of deploy, rollback, …); a command
    that prints one JSON document keeps its events on stderr."""
    from shipyard import session as library

    return _opened(library.open_session, config_path, environment, json_events, ref=ref, node=node)


def open_sessions(
    config_path: Path, environment: str, *, json_events: bool = False, ref: str | None = None
) -> Sessions:
    """``shipyard.session.open_sessions`` for a command (see ``open_session``)."""
    from shipyard import session as library

    return _opened(library.open_sessions, config_path, environment, json_events, ref=ref)


def _opened(
    opener: Callable[..., Opened],
    config_path: Path,
    environment: str,
    json_events: bool,
    **options: str | None,
) -> Opened:
    """What ``opener`` opens, with the command's sink and config keeper, closed with the run."""
    run = current_run()
    opened = opener(
        config_path, environment, sink=_sink(json_events), on_config=run.keep, **options
    )
    run.opened.append(opened)
    return opened


def node_suffix(session: Session, sessions: list[Session]) -> str:
    """`` on <node>`` when the environment has several nodes."""
    return f" on {session.ctx.node}" if len(sessions) > 1 else ""
