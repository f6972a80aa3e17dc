"""What listens on a host: `ss` and the kernel's tables, and which addresses stand in each
other's way."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.hosts import Listener, addresses_overlap, parse_proc_net_tcp, parse_ss

DATA = Path(__file__).parent / "data"
ANY = "0.0.0.0"  # noqa: S104 — the address that stands for every IPv4 address


# -- reading what listens -------------------------------------------------------------------------
def test_ss_output_names_each_listening_socket_and_its_processes() -> None:
    found = parse_ss((DATA / "ss-ltnp.txt").read_text())
    assert len(found) == 11
    assert Listener(ANY, 18801, ("python3 (pid 17702)",)) in found
    assert Listener("127.0.0.1", 18802, ("python3 (pid 17702)",)) in found
    assert Listener("::1", 18805, ("python3 (pid 17702)",)) in found
    assert Listener("::", 18803, ("python3 (pid 17702)",)) in found  # IPv6 only
    assert Listener("*", 18804, ("python3 (pid 17702)",)) in found  # IPv4 and IPv6
    assert Listener(ANY, 2024, ()) in found  # a process ss cannot see
    assert Listener("127.0.0.53", 53, ("systemd-resolve (pid 512)",)) in found
    assert Listener(ANY, 80, ("nginx (pid 1201)", "nginx (pid 1200)")) in found


def test_the_kernels_tables_give_the_listening_addresses_without_processes() -> None:
    v4 = parse_proc_net_tcp((DATA / "proc-net-tcp.txt").read_text(), ipv6=False)
    assert Listener(ANY, 18801) in v4
    assert Listener("127.0.0.1", 18802) in v4
    assert Listener(ANY, 2024) in v4
    assert len(v4) == 6  # the connections in TIME_WAIT are not listening
    v6 = parse_proc_net_tcp((DATA / "proc-net-tcp6.txt").read_text(), ipv6=True)
    # The table does not say which socket on [::] is IPv6 only: both count as every address.
    assert set(v6) == {Listener("::1", 18805), Listener("*", 18803), Listener("*", 18804)}


@pytest.mark.parametrize(
    ("bind", "listening", "overlap"),
    [
        (ANY, ANY, True),
        (ANY, "127.0.0.1", True),
        ("127.0.0.1", ANY, True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "10.0.0.5", False),
        (ANY, "::", False),  # an IPv6-only socket
        (ANY, "*", True),  # a dual-stack one takes IPv4 too
        (ANY, "::1", False),
        (ANY, "::ffff:127.0.0.1", True),
        ("::", "::1", True),
        ("::", "127.0.0.1", False),
        (ANY, "", True),  # Docker's empty host IP: every address
    ],
)
def test_addresses_overlap_when_one_covers_the_other(
    bind: str, listening: str, overlap: bool
) -> None:
    assert addresses_overlap(bind, listening) is overlap
    assert addresses_overlap(listening, bind) is overlap
