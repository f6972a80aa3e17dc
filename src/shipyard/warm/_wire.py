"""The warm start's messages: a length-prefixed JSON object, and the descriptors passed with it
(``SCM_RIGHTS``)."""

from __future__ import annotations

import json
import socket
import struct

_HEADER = struct.Struct("!I")


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
