"""The harness itself: ports reserved for a test are outside the ephemeral range, and no other
process's test can reserve them while it holds them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.ports import release_ports, reserve_port

ROOT = Path(__file__).resolve().parents[2]


def _reservable_elsewhere(ports: set[int]) -> set[int]:
    """Which of ``ports`` another process manages to reserve."""
    script = (
        "import sys\n"
        "from tests.e2e.ports import try_reserve\n"
        "print(' '.join(p for p in sys.argv[1:] if try_reserve(int(p))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, sorted(ports))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(port) for port in out.split()}


def test_reserved_ports_are_outside_the_ephemeral_range_and_held_against_other_processes() -> None:
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    mine = {reserve_port() for _ in range(20)}
    assert len(mine) == 20
    assert all(not low <= port <= high for port in mine)
    assert _reservable_elsewhere(mine) == set()
    release_ports()
    assert _reservable_elsewhere(mine) == mine  # free again once released
