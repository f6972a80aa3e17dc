"""The command's entry point, and its warm start: commands run by a resident process that has
shipyard imported already.

A command's process spends about half a second importing shipyard and its libraries before it
does anything (twice that on a busy machine): most of a redeploy of an unchanged image, and all
of a ``status``. With ``SHIPYARD_WARM=1`` in the environment, ``shipyard`` hands its command to
a resident server instead (``shipyard.warm._server``): the server has imported what commands run,
and forks one process per command, which takes the client's arguments, working directory,
environment, umask and standard streams (the descriptors themselves, passed over the socket), so
the command runs as it would have, on the same terminal. The client forwards the signals it
gets (Ctrl-C, SIGTERM, SIGHUP) to the command's process group and exits with its exit status;
if the client is killed outright, the command's process kills itself the same way.

The client imports nothing but the standard library. With no server to answer, it runs the
command itself and starts a server for the next one; a server whose code or libraries changed
on disk since it started says so, exits, and is replaced the same way. A server exits after
``SHIPYARD_WARM_IDLE`` seconds (default 900) without a command. Its socket lives in a directory
only its user can enter, and it serves no other user (``SO_PEERCRED``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

ENV = "SHIPYARD_WARM"
IDLE_ENV = "SHIPYARD_WARM_IDLE"
DIR_ENV = "SHIPYARD_WARM_DIR"  # where the sockets live (default: $XDG_RUNTIME_DIR/shipyard)
_OFF = ("", "0", "off", "no", "false")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_HEADER = struct.Struct("!I")
# What the server is started with from the client's environment (the rest, secrets included,
# reaches only the process that runs a command).
_SERVER_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "VIRTUAL_ENV", IDLE_ENV, DIR_ENV)
_SERVER_ENV_PREFIXES = ("LC_", "PYTHON", "XDG_")
NO_STATUS = 1  # the command's process ended without reporting an exit status


def main() -> None:
    """Console entry point: the command through a warm server when ``SHIPYARD_WARM`` is on,
    else (or when none answers) in this process."""
    if os.environ.get(ENV, "").strip().lower() in _OFF:
        _cold()
        return
    path = socket_path()
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        conn.close()
        _start_server(path)
        _cold()
        return
    with conn:
        code = _run_remote(conn)
    if code is None:  # stale (the server has exited), or it could not take the command
        _start_server(path)
        _cold()
        return
    sys.exit(code)


def _cold() -> None:
    from shipyard.cli import main as cli_main

    cli_main()


def socket_dir() -> str:
    base = os.environ.get(DIR_ENV) or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or os.path.join(_home(), ".cache"), "shipyard"
    )
    return base


def socket_path() -> str:
    """The socket of the server for this interpreter and this import path: a shipyard installed
    in another virtual environment, or run from another source tree, gets its own."""
    import hashlib

    key = "\0".join([sys.executable, *sys.path]).encode()
    name = hashlib.blake2b(key, digest_size=8).hexdigest()
    return os.path.join(socket_dir(), f"warm-{name}.sock")


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def _start_server(path: str) -> None:
    """Start a server for the next command, detached; never fails the command at hand."""
    import subprocess

    env = {
        key: value
        for key, value in os.environ.items()
        if key in _SERVER_ENV or key.startswith(_SERVER_ENV_PREFIXES)
    }
    try:
        subprocess.Popen(
            [sys.executable, "-m", "shipyard.warm", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    except OSError:
        pass


def send(conn: socket.socket, message: dict[str, object], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(conn, [frame], fds)
    else:
        conn.sendall(frame)


def receive(conn: socket.socket, *, fds: int = 0) -> tuple[dict[str, object] | None, list[int]]:
    """One message (``None`` at the end of the stream), and the descriptors that came with it."""
    received: list[int] = []
    head = b""
    while len(head) < _HEADER.size:
        if fds and not received:
            chunk, got, _, _ = socket.recv_fds(conn, _HEADER.size - len(head), fds)
            received.extend(got)
        else:
            chunk = conn.recv(_HEADER.size - len(head))
        if not chunk:
            return None, received
        head += chunk
    (size,) = _HEADER.unpack(head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return None, received
        body += chunk
    return json.loads(body), received


def _run_remote(conn: socket.socket) -> int | None:
    """Hand the command to the server, forward signals, and return its exit status (``None``:
    the server refused it as stale)."""
    umask = os.umask(0)
    os.umask(umask)
    streams = {
        name: {"encoding": stream.encoding, "errors": stream.errors}
        for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr))
        if stream is not None
    }
    request = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": umask,
        "streams": streams,
    }
    try:
        send(conn, request, [0, 1, 2])
        reply, _ = receive(conn)
    except OSError:  # a standard stream closed, or the server went away: run it here
        return None
    if reply is None or reply.get("stale"):
        return None

    def forward(signum: int, _frame: object) -> None:
        try:
            send(conn, {"signal": signum})
        except OSError:
            pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            message, _ = receive(conn)
        except OSError:
            message = None
        if message is None:
            sys.stderr.write("shipyard: the command's process ended without an exit status\n")
            return NO_STATUS
        status = message.get("exit")
        if isinstance(status, int):
            return status
