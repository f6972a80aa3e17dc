"""The client: hands the command to the server, forwards signals, exits with its status; runs
the command itself (and starts a server for the next one) when no server takes it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

from shipyard.warm import DIR_ENV, IDLE_ENV, cold
from shipyard.warm._wire import groups, peer_uid, private_directory, receive, send

TYPE_CHECKING = False  # as typing's, without importing typing on the client's path
if TYPE_CHECKING:
    from typing import Any

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# What the server is started with from the client's environment (the rest, secrets included,
# reaches only the process that runs a command).
_SERVER_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "VIRTUAL_ENV", IDLE_ENV, DIR_ENV)
_SERVER_ENV_PREFIXES = ("LC_", "PYTHON", "XDG_")
NO_STATUS = 1  # the command's process ended without reporting an exit status
_REPLY_WITHIN = 3.0  # s for the server to take the command (it forks once it has read it)
STARTED = (
    "shipyard: starting a warm server for the commands that follow (SHIPYARD_WARM=0 turns it off)\n"
)


def run(*, announce: bool) -> None:
    """The command through the server, or here when none takes it (then a server is started
    for the next one, and said so with ``announce``: the warm start was not asked for)."""
    path = socket_path()
    code = None
    conn = _connect(path)
    if conn is not None:
        with conn:
            code = _run_remote(conn)
    if code is None:  # none answers, it is stale (and has exited), or it could not take it
        if _start_server(path) and announce:
            sys.stderr.write(STARTED)
        cold()
        return
    sys.exit(code)


def _connect(path: str) -> socket.socket | None:
    """A connection to the server at ``path``: only in a directory of this user's that no one
    else may enter, and only to a server of this user's (what the client sends is its whole
    environment and its terminal)."""
    if not private_directory(os.path.dirname(path)):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        if peer_uid(conn) == os.getuid():
            return conn
    except OSError:
        pass
    conn.close()
    return None


def socket_dir() -> str:
    base = os.environ.get(DIR_ENV) or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or os.path.join(_home(), ".cache"), "shipyard"
    )
    return base


def socket_path() -> str:
    """The socket of the server for this interpreter, import path, groups, locale and Python
    settings: a shipyard installed in another virtual environment, or run from another source
    tree, a shell after `newgrp`, another locale or ``PYTHON*`` variables get their own (what
    the server's interpreter set up at its start from them)."""
    import hashlib  # only here: a cold command never loads OpenSSL's hashes

    settings = sorted(
        f"{key}={value}"
        for key, value in os.environ.items()
        if key in ("LANG", "LANGUAGE") or key.startswith(("LC_", "PYTHON"))
    )
    group_ids = [str(group) for group in groups()]
    key = "\0".join([sys.executable, *sys.path, "", *group_ids, "", *settings]).encode()
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


def _request(ignored: list[int]) -> dict[str, object]:
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
        "groups": groups(),
        "ignored": ignored,  # signals this process ignores (nohup, trap ''): so does the command
    }


class _Early(Exception):
    """A signal before the command started in the server: the client acts on it itself."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _run_remote(conn: socket.socket) -> int | None:
    """Hand the command to the server, pass signals on, and return its exit status (``None``:
    the server did not take it; the command runs here)."""
    saved = {sig: signal.getsignal(sig) for sig in (*_FORWARDED, signal.SIGTSTP)}
    ignored = [int(sig) for sig, handler in saved.items() if handler == signal.SIG_IGN]
    forwarded: list[int] = []  # the signals passed on, in order
    command: list[int] = []  # the command's pid (and process group), once it runs

    def forward(signum: int, _frame: object) -> None:
        if not command:
            raise _Early(signum)
        forwarded.append(signum)
        with contextlib.suppress(OSError):
            send(conn, {"signal": signum})

    def suspend(signum: int, _frame: object) -> None:  # Ctrl-Z: the command stops, then this
        with contextlib.suppress(OSError):
            send(conn, {"signal": signum})
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        # Continued (`fg`, or `bg`): in the background, it stays stopped, as a job that reads
        # its terminal would; in the foreground, the command goes on.
        signal.signal(signum, suspend)
        while not _foreground():
            os.kill(os.getpid(), signal.SIGSTOP)
        with contextlib.suppress(OSError):
            os.killpg(command[0], signal.SIGCONT)

    for sig in _FORWARDED:
        if sig not in ignored:
            signal.signal(sig, forward)
    conn.settimeout(_REPLY_WITHIN)
    try:
        send(conn, _request(ignored), [0, 1, 2])
        reply, _ = receive(conn)
    except _Early as early:  # acted on here, as it would have been: the command never ran
        _restore(saved)
        os.kill(os.getpid(), early.signum)
        return None
    except (OSError, ValueError):  # a standard stream closed, the server gone or too slow
        reply = None
    pid = reply.get("pid") if reply is not None else None
    if not isinstance(pid, int):  # none, or stale: the command runs here
        _restore(saved)
        return None
    conn.settimeout(None)
    command.append(pid)
    if signal.SIGTSTP not in ignored:
        signal.signal(signal.SIGTSTP, suspend)
    return _status(conn, forwarded)


def _status(conn: socket.socket, forwarded: list[int]) -> int:
    """The command's exit status, once it has ended."""
    while True:
        try:
            message, _ = receive(conn)
        except (OSError, ValueError):
            message = None
        if message is None:
            return _ended(forwarded)
        status = message.get("exit")
        if isinstance(status, int):
            return status


def _foreground() -> bool:
    """Whether this process is in its terminal's foreground (or has no terminal)."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return True


def _restore(saved: dict[signal.Signals, Any]) -> None:
    """The signals' handling as it was before the client changed it."""
    for sig, handler in saved.items():
        if handler is not None:  # None: not set from Python, left alone
            signal.signal(sig, handler)


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
