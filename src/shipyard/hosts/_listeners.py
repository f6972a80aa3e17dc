"""Which TCP sockets listen on a host, and whether one stands in the way of binding an address.

``ss -ltnp`` names the process behind each socket (every process's when run as root, the user's
own otherwise); where ``ss`` is missing (a minimal image without iproute2), the kernel's
``/proc/net/tcp`` and ``/proc/net/tcp6`` still say which addresses and ports are taken. Both are
read through the ``Host`` seam, so a remote host answers for itself.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from shipyard.errors import HostUnreachable

if TYPE_CHECKING:
    from shipyard.hosts import Host

__all__ = ["Listener", "addresses_overlap", "listeners", "parse_proc_net_tcp", "parse_ss"]

# Every IPv4 and IPv6 address at once: how ss writes a dual-stack socket bound to [::].
DUAL_STACK = "*"

_PROCESS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+)')
_LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its address (``0.0.0.0``, ``::``, ``*`` for every IPv4 and IPv6
    address, or one address), port, and the processes holding it (``name (pid N)``; empty when
    they cannot be seen)."""

    address: str
    port: int
    processes: tuple[str, ...] = ()


def parse_ss(text: str) -> list[Listener]:
    """The listening sockets in ``ss -l -t -n -p`` output (header or not)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":  # noqa: PLR2004 — state … local address
            continue
        host, _, port = fields[3].rpartition(":")
        if not port.isdigit():
            continue
        address = host.split("%", 1)[0].removeprefix("[").removesuffix("]")
        processes = tuple(
            dict.fromkeys(f"{name} (pid {pid})" for name, pid in _PROCESS.findall(line))
        )
        found.append(Listener(address, int(port), processes))
    return found


def parse_proc_net_tcp(text: str, *, ipv6: bool) -> list[Listener]:
    """The listening sockets in ``/proc/net/tcp`` (or ``tcp6`` with ``ipv6``).

    Addresses are the kernel's words in host byte order, read as a little-endian machine writes
    them (x86-64, arm64). The file does not say whether an IPv6 socket on ``::`` also takes IPv4
    (most servers' do), so it counts as both (``*``)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN_STATE:  # noqa: PLR2004 — sl … st
            continue
        hex_address, _, hex_port = fields[1].partition(":")
        try:
            raw = bytes.fromhex(hex_address)
            port = int(hex_port, 16)
        except ValueError:
            continue
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        if ipv6:
            v6 = ipaddress.IPv6Address(words)
            address = DUAL_STACK if v6.is_unspecified else str(v6)
        else:
            address = str(ipaddress.IPv4Address(words))
        found.append(Listener(address, port))
    return found


def listeners(host: Host) -> list[Listener] | None:
    """The TCP sockets listening on ``host``: from ``ss`` (with their processes), else from
    ``/proc/net/tcp{,6}`` (without); ``None`` when neither can be read (not Linux)."""
    try:
        result = host.run(["ss", "-l", "-t", "-n", "-p"], check=False, timeout=30)
    except HostUnreachable:
        # `ss` is not installed here (a host that cannot be reached fails the next read too).
        result = None
    if result is not None and result.ok:
        return parse_ss(result.stdout)
    found: list[Listener] = []
    read = False
    for name, ipv6 in (("tcp", False), ("tcp6", True)):
        data = host.get(PurePosixPath("/proc/net") / name)
        if data is not None:
            read = True
            found += parse_proc_net_tcp(data.decode(errors="replace"), ipv6=ipv6)
    return found if read else None


def _scope(
    address: str,
) -> tuple[frozenset[int], ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """The IP versions an address covers and the one address it is (``None``: every address)."""
    if address in ("", DUAL_STACK):
        return frozenset({4, 6}), None
    try:
        ip = ipaddress.ip_address(address.removeprefix("[").removesuffix("]"))
    except ValueError:
        return frozenset({4, 6}), None  # a name: assume it may be any address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    version = frozenset({ip.version})
    return version, None if ip.is_unspecified else ip


def addresses_overlap(first: str, second: str) -> bool:
    """Whether sockets on ``first`` and ``second`` (one port) stand in each other's way: the same
    IP version and the same address, or the "any" address of it (``0.0.0.0``, ``::``; ``*``, and
    the empty host IP Docker may report, stand for every address of both versions)."""
    versions, ip = _scope(first)
    other_versions, other_ip = _scope(second)
    if not versions & other_versions:
        return False
    return ip is None or other_ip is None or ip == other_ip
