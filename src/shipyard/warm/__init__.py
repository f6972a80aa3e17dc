"""The command's entry point, and its warm start: commands run by a resident process that has
shipyard imported already.

A command's process spends about half a second importing shipyard and its libraries before it
does anything (twice that on a busy machine): most of a redeploy of an unchanged image, and all
of a ``status``. At a terminal (standard input, output and error all terminals, ``CI`` unset),
or with ``SHIPYARD_WARM=1`` anywhere, ``shipyard`` hands its command to a resident server
instead (``shipyard.warm._server``): the server has imported what commands run, and forks one
process per command, which takes the client's arguments, working directory, environment, umask
and standard streams (the descriptors themselves, passed over the socket), so the command runs
as it would have, on the same terminal. The client forwards the signals it gets (Ctrl-C,
SIGTERM, SIGHUP) to the command's process group and exits with its exit status; if the client is
killed outright, the command's process kills itself the same way. ``SHIPYARD_WARM=0`` turns it
off; scripts, pipes and CI jobs run their commands in their own process unless they set it.

The client imports nothing but the standard library. With no server to answer, it runs the
command itself and starts a server for the next one (saying so on a terminal); a server whose
code or libraries changed on disk since it started says so, exits, and is replaced the same way.
A server exits after ``SHIPYARD_WARM_IDLE`` seconds (default 900) without a command. Its socket
lives in a directory only its user can enter, and it serves no other user (``SO_PEERCRED``).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing's, without importing typing (12 ms) on the client's path
if TYPE_CHECKING:
    from collections.abc import Mapping

ENV = "SHIPYARD_WARM"
IDLE_ENV = "SHIPYARD_WARM_IDLE"
DIR_ENV = "SHIPYARD_WARM_DIR"  # where the sockets live (default: $XDG_RUNTIME_DIR/shipyard)
_OFF = ("", "0", "off", "no", "false")


def main() -> None:
    """Console entry point: the command through a warm server when the warm start is on,
    else in this process (the cold path imports nothing more than this module)."""
    on, by_default = enabled(os.environ, terminal=_at_terminal())
    if not on:
        cold()
        return
    from shipyard.warm._client import run

    run(announce=by_default)


def _at_terminal() -> bool:
    """Standard input, output and error on a terminal, in its foreground (a job started with
    ``&`` runs its commands itself: only a process of the terminal's own can be stopped by it
    for reading it)."""
    try:
        return all(os.isatty(fd) for fd in (0, 1, 2)) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def enabled(environ: Mapping[str, str], *, terminal: bool) -> tuple[bool, bool]:
    """Whether the warm start is on, and whether only by default: ``SHIPYARD_WARM`` decides
    when set; else it is on in a terminal's foreground (an operator typing commands), off in a
    script, a pipe, a background job or a CI job (``CI`` set)."""
    chosen = environ.get(ENV)
    if chosen is not None:
        return chosen.strip().lower() not in _OFF, False
    on = terminal and not environ.get("CI")
    return on, on


def cold() -> None:
    """The command in this process."""
    from shipyard.cli import main as cli_main

    cli_main()
