"""Benchmark: the proxy's switch between slots. Not a test.

Two small backends (Caddy's `respond`, each answering its own name) behind the proxy image on a
private network, under load from loopback. The baseline is the switch shipyard used before: the
proxy looks up one name and a switch is two renames (the old container gives the name back, the
new one takes it), with nothing answering in between. Against it, shipyard's switch
(``shipyard.proxy.render_caddy``): the same two renames, but every running slot also answers to
the fallback name, which the proxy uses while no container carries the live name.

1. Steady state: requests per second through the proxy (wrk, when installed), each config.
2. Switches under load (tests/e2e/load.py: fresh and keep-alive clients): failed requests and the
   slowest answer over ``--switches`` switches, each config.
3. A switch cut short after its first rename for ``--stall`` seconds, as when shipyard is killed
   there: failed requests and the slowest answer while it stays so.

    .venv/bin/python -m bench.switch [--switches 20] [--stall 5] [--image shipyard-local/caddy:2]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.load import Load  # noqa: E402

from shipyard.config import ProxySection  # noqa: E402
from shipyard.proxy import render_caddy  # noqa: E402


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


@dataclass
class World:
    prefix: str
    port: int
    config_dir: Path

    @property
    def live(self) -> str:
        return f"{self.prefix}-live"

    @property
    def fallback(self) -> str:
        return f"{self.prefix}-slots"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def baseline_config(world: World) -> dict[str, Any]:
    """The config shipyard rendered before: one name, looked up every 250 ms."""
    config = render_caddy(ProxySection(), (world.live, world.fallback), 8080)
    handler = config["apps"]["http"]["servers"]["shipyard"]["routes"][-1]["handle"][0]
    handler["dynamic_upstreams"] = handler["dynamic_upstreams"]["sources"][0]
    del handler["load_balancing"]["selection_policy"]
    del config["logging"]
    return config


def fallback_config(world: World) -> dict[str, Any]:
    return render_caddy(ProxySection(), (world.live, world.fallback), 8080)


@contextmanager
def world(image: str, config: Callable[[World], dict[str, Any]]) -> Iterator[World]:
    prefix = f"bsw{secrets.token_hex(3)}"
    config_dir = Path(tempfile.mkdtemp(prefix="shipyard-bench-switch-"))
    (config_dir / "caddy.json").write_text(json.dumps(config(World(prefix, 0, config_dir))))
    docker("network", "create", prefix)
    try:
        for slot in ("blue", "green"):
            name = f"{prefix}-live" if slot == "blue" else f"{prefix}-{slot}"
            docker("run", "-d", "--name", name, "--network", prefix,
                   "--network-alias", f"{prefix}-slots", "--entrypoint", "caddy", image,
                   "respond", "--listen", ":8080", json.dumps({"version": slot}))  # fmt: skip
        docker("run", "-d", "--name", f"{prefix}-proxy", "--network", prefix,
               "--dns-opt", "ndots:1", "--dns-search", ".", "-p", "127.0.0.1::80",
               "-v", f"{config_dir}:/etc/caddy:ro", "--entrypoint", "caddy", image,
               "run", "--config", "/etc/caddy/caddy.json")  # fmt: skip
        port = int(docker("port", f"{prefix}-proxy", "80/tcp").split(":")[-1])
        here = World(prefix, port, config_dir)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(here.url(), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(docker("logs", f"{prefix}-proxy"))
            time.sleep(0.2)
        yield here
    finally:
        names = docker("ps", "-aq", "--filter", f"name={prefix}-").split()
        if names:
            docker("rm", "-f", *names)
        docker("network", "rm", prefix)
        shutil.rmtree(config_dir, ignore_errors=True)


def _serving(here: World) -> tuple[str, str]:
    """(the slot carrying the live name, the other slot)."""
    slot = json.loads(httpx.get(here.url(), timeout=5).text)["version"]
    return slot, "green" if slot == "blue" else "blue"


def switch(here: World, stop_after: int | None = None) -> None:
    """The old container gives the live name back, the new one takes it."""
    old, new = _serving(here)
    renames = [(here.live, f"{here.prefix}-{old}"), (f"{here.prefix}-{new}", here.live)]
    for index, (source, target) in enumerate(renames):
        if stop_after is not None and index == stop_after:
            return
        docker("rename", source, target)


@dataclass
class Outcome:
    requests: int
    failed: int
    slowest_ms: float


class TimedLoad(Load):
    """The tests' load generator, also keeping the slowest answer."""

    slowest = 0.0

    def _record(self, client: int, response: Any, failure: Any, retried: bool) -> bool:
        if response is not None:
            self.slowest = max(self.slowest, response.elapsed.total_seconds())
        return super()._record(client, response, failure, retried)


def under_load(here: World, action: Callable[[], None], settle: float) -> Outcome:
    with TimedLoad(here.url(), clients=2) as load:
        time.sleep(0.5)
        action()
        time.sleep(settle)
    return Outcome(load.result.requests, len(load.result.failures), round(load.slowest * 1000, 1))


def throughput(here: World, seconds: int) -> float | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", here.url()],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--stall", type=float, default=5.0)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per config")
    parser.add_argument("--image", default="shipyard-local/caddy:2")
    args = parser.parse_args()
    kinds = {
        "baseline (the live name only)": baseline_config,
        "fallback (the live name, then any running slot)": fallback_config,
    }
    results: dict[str, dict[str, Any]] = {}
    for label, config in kinds.items():
        with world(args.image, config) as here:
            rps = throughput(here, args.seconds)

            def switches(here: World = here) -> None:
                for _ in range(args.switches):
                    switch(here)
                    time.sleep(0.3)

            many = under_load(here, switches, settle=1.0)
            stalled = under_load(
                here,
                lambda here=here: switch(here, stop_after=1),
                settle=args.stall,
            )
        results[label] = {"rps": rps, "switches": many, "cut short": stalled}
        print(
            f"{label}: {rps if rps is not None else 'n/a (no wrk)'} req/s; "
            f"{args.switches} switches: {many.failed} of {many.requests} failed, slowest {many.slowest_ms} ms; "
            f"cut short for {args.stall:g}s: {stalled.failed} of {stalled.requests} failed, "
            f"slowest {stalled.slowest_ms} ms",
            flush=True,
        )
    base, new = (results[label]["rps"] for label in kinds)
    if base and new:
        print(f"steady-state throughput, fallback / baseline: {new / base:.3f}")


if __name__ == "__main__":
    main()
