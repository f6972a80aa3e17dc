"""The warm server: imports what commands run, then forks one process per command.

One server per socket: it holds ``<socket>.lock`` (``flock``) for its life, with its pid in it,
so a second one started at the same moment exits at once; ``<socket>.log`` has a line per
command it forked (the time and the command's pid, nothing of what it was asked). Before each command it compares what it imported with
what is on disk (every file of the shipyard package and the import path's directories, by size
and modification time); on a difference it answers "stale" and exits, and the client runs the
command itself. The process it forks for a command starts from the server's imports, takes the
client's descriptors, working directory, environment and umask, runs ``shipyard.cli.main`` and
reports the exit status as the interpreter ends, after every exit handler.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import importlib
import io
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

from shipyard.warm import IDLE_ENV
from shipyard.warm._wire import groups, peer_uid, private_directory, receive, send

# What the commands import in their bodies (``shipyard.cli`` imports only click and its own
# modules at the top): the deploy, rollback and status paths, the local engine and SSH hosts.
# The cloud providers' SDKs are left to the commands that use them.
PRELOAD = (
    "shipyard.cli",
    "shipyard.cli._context",
    "shipyard.cli._output",
    "shipyard.config",
    "shipyard.session",
    "shipyard.deploy",
    "shipyard.providers",
    "shipyard.providers.docker",
    "shipyard.state",
    "shipyard.docker",
    "shipyard.hosts",
    "shipyard.health",
    "shipyard.proxy",
    "shipyard.events",
    "shipyard.database",
    "shipyard.build",
    "rich.console",
    "rich.markup",
    "rich.table",
    "rich.progress",
    "httpx",
)
# What those import on first use, which every deploy, rollback and status reaches: httpx's
# transport (httpcore, h11, anyio, certifi: 30-40 ms), a host name's IDNA codec, rich's emoji
# table (read by markup), ruamel's merge keys; and rich's table of character widths, loaded by
# the first line written to a terminal. Imported when present: they are the libraries' own
# modules, which a release may move.
PRELOAD_ON_USE = (
    "httpcore",
    "certifi",
    "encodings.idna",
    "rich._emoji_codes",
    "ruamel.yaml.mergevalue",
)
DEFAULT_IDLE = 900.0
_ACCEPT_EVERY = 1.0  # s between looks at the idle deadline and at finished children
_LOCK_WAIT = 10.0  # s for an ending server to let go of the lock
_REQUEST_WITHIN = 2.0  # s for a caller to send its request once connected
_TO_GROUP = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP)
_FORWARDED = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM)
_IGNORABLE = (*_FORWARDED, signal.SIGTSTP)


def serve(path: str) -> None:
    """Serve commands on ``path`` until idle, stale or terminated (returns at once if another
    server holds it)."""
    directory = os.path.dirname(path)
    with contextlib.suppress(FileExistsError):
        os.makedirs(directory, mode=0o700)
    if not private_directory(directory):
        return  # a link, another user's, or open to others: never serve through it
    with open(f"{path}.lock", "a") as lock:
        if not _locked(lock, path):
            return  # another server serves
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")  # who serves: `kill $(cat <socket>.lock)` stops it
        lock.flush()
        signal.signal(signal.SIGTERM, _terminated)
        fingerprint = _fingerprint()  # before the imports: a change meanwhile makes it stale
        _preload()
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener,
            open(f"{path}.log", "w", buffering=1) as journal,
        ):
            # Listening before it is in place: a client never finds a socket that refuses it.
            staged = f"{path}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
            listener.bind(staged)
            os.chmod(staged, 0o600)
            listener.listen(16)
            os.replace(staged, path)
            bound = os.stat(path).st_ino
            try:
                _loop(listener, journal, fingerprint, lock)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == bound:  # not a successor's socket
                        os.unlink(path)


def _locked(lock: TextIO, path: str) -> bool:
    """Take the socket's lock; ``False`` when another server serves. A server that is ending
    (stale, idle) holds it a moment after its socket is gone: waited for."""
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        else:
            return True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                pass
            else:
                return False  # it answers
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _terminated(_signum: int, _frame: object) -> None:
    sys.exit(0)  # through the clean-ups: the socket removed


def _loop(
    listener: socket.socket,
    journal: TextIO,
    fingerprint: list[tuple[str, int, int]],
    lock: TextIO,
) -> None:
    idle = _idle()
    listener.settimeout(_ACCEPT_EVERY)
    # What the imports made lives as long as every command: out of the collector's walks in
    # each forked process (and their pages shared with the server as long as they are not
    # written).
    gc.freeze()
    last = time.monotonic()
    while True:
        _reap(journal)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if time.monotonic() - last > idle:
                return
            continue
        last = time.monotonic()
        with conn:
            request = _request(conn, fingerprint)
            if request is None:
                continue
            if isinstance(request, _Stale):
                send(conn, {"stale": request.why})
                return
            pid = os.fork()
            if pid == 0:
                for inherited in (listener, journal, lock):
                    inherited.close()
                _command(conn, request)  # never returns
            for fd in request.fds:
                os.close(fd)
        journal.write(f"{_now()} command pid {pid}\n")


@dataclass(frozen=True)
class _Request:
    argv: list[str]
    cwd: str
    env: dict[str, str]
    umask: int
    streams: dict[str, object]
    ignored: list[int]  # signals the client ignores
    groups: list[int]  # the client's group and supplementary groups
    fds: list[int]  # the client's stdin, stdout and stderr


@dataclass(frozen=True)
class _Stale:
    why: str


def _request(
    conn: socket.socket, fingerprint: list[tuple[str, int, int]]
) -> _Request | _Stale | None:
    """The command a caller hands over; ``_Stale`` when this server should no longer run
    commands (its code changed on disk, or the caller's groups are not the ones it started
    with); ``None`` for a caller to ignore (another user, a malformed request)."""
    try:
        if peer_uid(conn) != os.getuid():
            return None
        conn.settimeout(_REQUEST_WITHIN)
        message, fds = receive(conn, fds=3)
        conn.settimeout(None)
    except (OSError, ValueError):  # gone, too slow, or not a request
        return None
    try:
        request = _parse(message, fds)
    except (TypeError, ValueError):
        for fd in fds:
            os.close(fd)
        return None
    why = ""
    if _fingerprint() != fingerprint:
        why = "shipyard's code or libraries changed on disk"
    elif request.groups != groups():
        why = "the caller's groups are not the server's"
    if why:
        for fd in fds:
            os.close(fd)
        return _Stale(why)
    return request


def _idle() -> float:
    try:
        return float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE)
    except ValueError:
        return DEFAULT_IDLE


def _preload() -> None:
    # As ``shipyard.cli.main`` does: httpx's own command-line client is never used.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_ON_USE:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(ImportError, AttributeError):
        importlib.import_module("rich.cells").cell_len("shipyard ✓")


def _fingerprint() -> list[tuple[str, int, int]]:
    """The size and modification time of every file of the shipyard package, and of every
    directory on the import path (installing or removing a package changes its directory)."""
    package = Path(__file__).resolve().parents[1]
    seen: list[tuple[str, int, int]] = []
    for entry in sys.path:
        with contextlib.suppress(OSError):
            stat = os.stat(entry or ".")
            seen.append((entry, stat.st_size, stat.st_mtime_ns))
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".json", ".yml", ".yaml", ".typed")):
                with contextlib.suppress(OSError):
                    stat = os.stat(os.path.join(root, name))
                    seen.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
    return seen


def _reap(journal: TextIO) -> None:
    """Collect the commands that ended, each with a line in the log: its exit status, or the
    signal that ended it."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            if os.WIFSIGNALED(status):
                ended = f"signal {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                ended = f"exit {os.waitstatus_to_exitcode(status)}"
            journal.write(f"{_now()} pid {pid} ended: {ended}\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _command(conn: socket.socket, request: _Request) -> NoReturn:
    """In the forked process: become the client's command, run it, report its exit status."""
    try:
        os.setpgid(0, 0)  # the command's own group: a terminal's signals reach its children too
        for target, fd in enumerate(request.fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request.cwd)
        os.umask(request.umask)
        os.environ.clear()
        os.environ.update(request.env)
        sys.argv = request.argv
        _reopen_streams(request.streams, unbuffered=bool(request.env.get("PYTHONUNBUFFERED")))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for ignored in request.ignored:  # what the client's caller ignores, ignored here too
            signal.signal(ignored, signal.SIG_IGN)
        send(conn, {"pid": os.getpid()})
    except BaseException:  # noqa: BLE001 — a command that could not start: no status to give
        os._exit(1)

    reported = threading.Event()
    threading.Thread(target=_listen, args=(conn, reported), name="warm-client", daemon=True).start()
    from shipyard.cli import main

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = _status(exc.code)
    except BaseException:  # noqa: BLE001 — printed as the interpreter would, then reported
        import traceback

        traceback.print_exc()
        code = 1
    # As the interpreter ends (``threading._shutdown`` is what it calls first: the threads'
    # own exit hooks, then a join of every thread that is not a daemon), the exit handlers,
    # the streams flushed; then the status, and an exit that leaves the server's state alone.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    reported.set()
    with contextlib.suppress(OSError):
        send(conn, {"exit": code})
    os._exit(code)


def _parse(message: dict[str, object] | None, fds: list[int]) -> _Request:
    if message is None or len(fds) != 3:  # noqa: PLR2004 — stdin, stdout, stderr
        raise ValueError("no request, or not the three standard descriptors")
    argv, cwd, env, umask, streams, ignored, groups = (
        message.get(k) for k in ("argv", "cwd", "env", "umask", "streams", "ignored", "groups")
    )
    if (
        not isinstance(argv, list)
        or not isinstance(cwd, str)
        or not isinstance(env, dict)
        or not isinstance(umask, int)
    ):
        raise TypeError("a malformed request")
    return _Request(
        [str(a) for a in argv],
        cwd,
        {str(k): str(v) for k, v in env.items()},
        umask,
        streams if isinstance(streams, dict) else {},
        [int(sig) for sig in ignored if sig in _IGNORABLE] if isinstance(ignored, list) else [],
        [int(group) for group in groups] if isinstance(groups, list) else [],
        fds,
    )


def _status(value: object) -> int:
    """The exit status of ``sys.exit(value)``, as the interpreter makes it (a message is
    printed, and exits 1)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    with contextlib.suppress(Exception):
        print(value, file=sys.stderr)  # noqa: T201
    return 1


def _listen(conn: socket.socket, reported: threading.Event) -> None:
    """The client's forwarded signals: to the command's group for those a terminal sends its
    foreground group (Ctrl-C, Ctrl-\\, a hang-up), to the command alone otherwise (SIGTERM). If
    the client is gone before the command reported, it was killed: the command ends the same
    way. This thread blocks the signals it passes on, so that they reach the main thread, and
    interrupt what it waits on (a prompt's read, a sleep) as they would there."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    while True:
        try:
            message, _ = receive(conn)
        except OSError:
            message = None
        if message is None:
            if not reported.is_set():
                os.kill(os.getpid(), signal.SIGKILL)
            return
        signum = message.get("signal")
        if isinstance(signum, int):
            with contextlib.suppress(OSError):
                if signum in _TO_GROUP:
                    os.killpg(0, signum)
                else:
                    os.kill(os.getpid(), signum)


def _reopen_streams(streams: dict[str, object], *, unbuffered: bool) -> None:
    """Standard streams on descriptors 0-2 as the interpreter makes them at start: with the
    client's encodings, stdout line-buffered on a terminal, stderr always, both written through
    with ``PYTHONUNBUFFERED``. (``sys.__stdout__`` and its kin keep the server's objects, on the
    same descriptors, now the client's.)"""

    def opened(fd: int, name: str) -> TextIO:
        options = streams.get(name)
        options = options if isinstance(options, dict) else {}
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        return io.TextIOWrapper(
            buffered,
            encoding=str(options.get("encoding") or "utf-8"),
            errors=str(options.get("errors") or "strict"),
            line_buffering=os.isatty(fd) or name == "stderr",
            write_through=unbuffered and fd != 0,
        )

    sys.stdin = opened(0, "stdin")
    sys.stdout = opened(1, "stdout")
    sys.stderr = opened(2, "stderr")
