"""The client: hands the command to the server, forwards signals, exits with its status; runs
the command itself (and starts a server for the next one) when no server takes it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

from shipyard.warm import DIR_ENV, IDLE_ENV, cold
from shipyard.warm._wire import receive, send

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# What the server is started with from the client's environment (the rest, secrets included,
# reaches only the process that runs a command).
_SERVER_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "VIRTUAL_ENV", IDLE_ENV, DIR_ENV)
_SERVER_ENV_PREFIXES = ("LC_", "PYTHON", "XDG_")
NO_STATUS = 1  # the command's process ended without reporting an exit status
STARTED = (
    "shipyard: starting a warm server for the commands that follow (SHIPYARD_WARM=0 turns it off)\n"
)


def run(*, announce: bool) -> None:
    """The command through the server, or here when none takes it (then a server is started
    for the next one, and said so with ``announce``: the warm start was not asked for)."""
    path = socket_path()
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        conn.close()
        code = None
    else:
        with conn:
            code = _run_remote(conn)
    if code is None:  # none answers, it is stale (and has exited), or it could not take it
        if _start_server(path) and announce:
            sys.stderr.write(STARTED)
        cold()
        return
    sys.exit(code)


def socket_dir() -> str:
    base = os.environ.get(DIR_ENV) or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or os.path.join(_home(), ".cache"), "shipyard"
    )
    return base


def socket_path() -> str:
    """The socket of the server for this interpreter and this import path: a shipyard installed
    in another virtual environment, or run from another source tree, gets its own."""
    import hashlib  # only here: a cold command never loads OpenSSL's hashes

    key = "\0".join([sys.executable, *sys.path]).encode()
    name = hashlib.blake2b(key, digest_size=8).hexdigest()
    return os.path.join(socket_dir(), f"warm-{name}.sock")


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def _start_server(path: str) -> bool:
    """Start a server for the next command, detached; never fails the command at hand."""
    import subprocess  # only when one starts

    env = {
        key: value
        for key, value in os.environ.items()
        if key in _SERVER_ENV or key.startswith(_SERVER_ENV_PREFIXES)
    }
    try:
        subprocess.Popen(
            # -P and "/": no directory of the operator's on the server's import path
            [sys.executable, "-P", "-m", "shipyard.warm", path],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    except OSError:
        return False
    return True


def _request() -> dict[str, object]:
    """The command as the server needs it; its standard descriptors go along with it."""
    umask = os.umask(0)
    os.umask(umask)
    streams = {
        name: {"encoding": stream.encoding, "errors": stream.errors}
        for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr))
        if stream is not None
    }
    return {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": umask,
        "streams": streams,
        "groups": sorted({os.getgid(), *os.getgroups()}),
    }


def _run_remote(conn: socket.socket) -> int | None:
    """Hand the command to the server, forward signals, and return its exit status (``None``:
    the server did not take it)."""
    forwarded: list[int] = []  # the signals received, in order
    taken = False

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        if taken:  # else sent once the command runs
            with contextlib.suppress(OSError):
                send(conn, {"signal": signum})

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    try:
        send(conn, _request(), [0, 1, 2])
        reply, _ = receive(conn)
    except OSError:  # a standard stream closed, or the server went away: run it here
        reply = None
    if reply is None or "pid" not in reply:  # none, or stale: the command runs here
        _restore(forwarded)
        return None
    taken = True
    with contextlib.suppress(OSError):
        for signum in forwarded:
            send(conn, {"signal": signum})
    return _status(conn, forwarded)


def _status(conn: socket.socket, forwarded: list[int]) -> int:
    """The command's exit status, once it has ended."""
    while True:
        try:
            message, _ = receive(conn)
        except OSError:
            message = None
        if message is None:
            return _ended(forwarded)
        status = message.get("exit")
        if isinstance(status, int):
            return status


def _restore(forwarded: list[int]) -> None:
    """The signals' own handling back, and what came meanwhile as it would have come."""
    for sig in _FORWARDED:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    for signum in forwarded:
        os.kill(os.getpid(), signum)


def _ended(forwarded: list[int]) -> int:
    """The command's process ended without a status: killed. After a signal this client passed
    on, this client ends by that signal too (the status a shell shows, 128 + its number);
    otherwise it says so and exits 1."""
    if forwarded:
        signum = forwarded[-1]
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum  # a signal whose default is not to end the process
    sys.stderr.write("shipyard: the command's process ended without an exit status\n")
    return NO_STATUS
