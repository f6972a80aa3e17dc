"""Host ports for end-to-end tests, reserved so that nothing else takes one between the moment a
test picks it and the moment what the test starts (a proxy, an sshd, a server) binds it.

A port is picked outside the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``):
that range is where the kernel picks the local port of every outgoing connection and of every
bind to port 0, and where Docker picks the host port of ``-p 127.0.0.1::PORT``. Outside it, only
a program that asks for that very number binds it. Tests of every process and checkout on this
machine lock the port's file under ``/tmp/shipyard-test-ports`` (whatever ``TMPDIR`` each sets;
``flock``, dropped when the test ends or its process dies), so two tests never hold the same port;
a port something already listens on is skipped. A reserved port nothing binds is one where nothing
listens.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
from pathlib import Path

__all__ = ["release_ports", "reserve_port", "try_reserve"]

_LOWEST = 20_000  # below: well-known and registered services
_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_held: dict[int, int] = {}  # port → the open file descriptor holding its lock


def _candidates() -> list[int]:
    low, high = (int(n) for n in _RANGE.read_text().split())
    ports = [p for p in range(_LOWEST, 65_536) if not low <= p <= high]
    if not ports:
        raise RuntimeError(
            f"the ephemeral port range {low}-{high} leaves no port from {_LOWEST} up for tests"
        )
    return ports


def _lock_dir() -> Path:
    directory = Path("/tmp/shipyard-test-ports")  # one for the machine
    directory.mkdir(exist_ok=True)
    with contextlib.suppress(PermissionError):  # another user's tests made it
        directory.chmod(0o1777)
    return directory


def _nothing_listens(port: int) -> bool:
    """Whether ``port`` can be bound on every IPv4 address (connections in TIME_WAIT aside)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 — conflicts with any IPv4 listener
        except OSError:
            return False
    return True


def try_reserve(port: int) -> bool:
    """Reserve ``port`` unless a test (of any process) holds it or something listens on it."""
    if port in _held:
        return False
    fd = os.open(_lock_dir() / f"{port}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # another test holds it
        return False
    if not _nothing_listens(port):
        os.close(fd)
        return False
    _held[port] = fd
    return True


def reserve_port() -> int:
    """A port no other test holds and nothing listens on, kept for this test (``release_ports``)."""
    candidates = _candidates()
    start = random.randrange(len(candidates))
    for port in candidates[start:] + candidates[:start]:
        if try_reserve(port):
            return port
    raise RuntimeError(f"no port from {_LOWEST} up outside the ephemeral range is free")


def release_ports() -> None:
    """Let other tests have the ports this process reserved."""
    while _held:
        _port, fd = _held.popitem()
        os.close(fd)
