"""The warm start's messages: a length-prefixed JSON object, and the descriptors passed with it
(``SCM_RIGHTS``)."""

from __future__ import annotations

import json
import os
import socket
import struct
from stat import S_ISDIR

_HEADER = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def send(conn: socket.socket, message: dict[str, object], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [frame], fds)
        if sent < len(frame):  # the descriptors went with the first part
            conn.sendall(frame[sent:])
    else:
        conn.sendall(frame)


def receive(conn: socket.socket, *, fds: int = 0) -> tuple[dict[str, object] | None, list[int]]:
    """One message (``None`` at the end of the stream), and the descriptors that came with it;
    ``ValueError`` for anything but a JSON object."""
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
    try:
        message = json.loads(body)
        if not isinstance(message, dict):
            raise ValueError("a message is a JSON object")
    except ValueError:
        for fd in received:
            os.close(fd)
        raise
    return message, received


def private_directory(path: str) -> bool:
    """Whether ``path`` is a directory (not a link to one) of this user's that no one else may
    enter: where a socket that carries environments and terminals may live."""
    try:
        stat = os.lstat(path)
    except OSError:
        return False
    return S_ISDIR(stat.st_mode) and stat.st_uid == os.getuid() and not stat.st_mode & 0o077


def groups() -> list[int]:
    """This process's group and supplementary groups: what picks, and is checked by, a server."""
    return sorted({os.getgid(), *os.getgroups()})


def peer_uid(conn: socket.socket) -> int:
    """The user on the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return int(_PEERCRED.unpack(creds)[1])
