"""Benchmark: what the proxy does while shipyard renames containers. Not a test.

Two small backends (Caddy's `respond`, each answering its own slot) behind the proxy image on a
private network, under load from loopback: blue carries the live name, green (a candidate)
runs beside it. Two proxy configs, each rendered by ``shipyard.proxy.render_caddy``:

- fallback (shipyard before): the live name, the switching name, then an alias every slot's
  container answers to (both backends carry it);
- names only (shipyard now): the live and the switching name; the backends carry no alias.

1. Steady state: requests per second through the proxy (wrk, when installed), each config.
2. ``--renames`` round trips of blue from the live to the switching name and back under load
   (a switch's first rename, and repair's undo of a switch cut short): requests green answered
   (a version that was never live), failed requests and the slowest answer. A Docker rename drops
   the container's names from the embedded DNS before it adds the new one; a lookup in between
   finds neither name.
3. ``--switches`` whole switches under load (shipyard's three renames, back and forth): failed
   requests and the slowest answer.

    .venv/bin/python -m bench.switch [--renames 250] [--switches 20] [--image shipyard-local/caddy:2]
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
from collections import Counter
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
    fallback: bool

    @property
    def live(self) -> str:
        return f"{self.prefix}-live"

    @property
    def switching(self) -> str:
        return f"{self.prefix}-switching"

    @property
    def alias(self) -> str:
        return f"{self.prefix}-slots"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def proxy_config(here: World) -> dict[str, Any]:
    names = (here.live, here.switching) + ((here.alias,) if here.fallback else ())
    return render_caddy(ProxySection(), names, 8080)


@contextmanager
def world(image: str, *, fallback: bool) -> Iterator[World]:
    prefix = f"bsw{secrets.token_hex(3)}"
    config_dir = Path(tempfile.mkdtemp(prefix="shipyard-bench-switch-"))
    here = World(prefix, 0, fallback)
    (config_dir / "caddy.json").write_text(json.dumps(proxy_config(here)))
    docker("network", "create", prefix)
    try:
        for slot in ("blue", "green"):
            name = here.live if slot == "blue" else f"{prefix}-{slot}"
            alias = ["--network-alias", here.alias] if fallback else []
            docker("run", "-d", "--name", name, "--network", prefix, *alias,
                   "--entrypoint", "caddy", image,
                   "respond", "--listen", ":8080", json.dumps({"version": slot}))  # fmt: skip
        docker("run", "-d", "--name", f"{prefix}-proxy", "--network", prefix,
               "--dns-opt", "ndots:1", "--dns-search", ".", "-p", "127.0.0.1::80",
               "-v", f"{config_dir}:/etc/caddy:ro", "--entrypoint", "caddy", image,
               "run", "--config", "/etc/caddy/caddy.json")  # fmt: skip
        here.port = int(docker("port", f"{prefix}-proxy", "80/tcp").split(":")[-1])
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
            docker("rm", "-f", "-v", *names)  # and the image's anonymous volumes
        docker("network", "rm", prefix)
        shutil.rmtree(config_dir, ignore_errors=True)


def _serving(here: World) -> tuple[str, str]:
    """(the slot carrying the live name, the other slot)."""
    slot = json.loads(httpx.get(here.url(), timeout=5).text)["version"]
    return slot, "green" if slot == "blue" else "blue"


def switch(here: World) -> None:
    """shipyard's switch: the live container takes the switching name, the other slot's the
    live name, and the old one its slot name back."""
    old, new = _serving(here)
    docker("rename", here.live, here.switching)
    docker("rename", f"{here.prefix}-{new}", here.live)
    docker("rename", here.switching, f"{here.prefix}-{old}")


def renames(here: World, count: int) -> None:
    """Blue from the live to the switching name and back, ``count`` times."""
    for _ in range(count):
        docker("rename", here.live, here.switching)
        docker("rename", here.switching, here.live)


@dataclass
class Outcome:
    requests: int
    failed: int
    slowest_ms: float
    answers: dict[str, int]


class CountingLoad(Load):
    """The tests' load generator, also counting every answer by version and keeping the slowest."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.slowest = 0.0
        self.answers: Counter[str] = Counter()

    def _record(self, client: int, response: Any, failure: Any, retried: bool) -> bool:
        if response is not None:
            self.slowest = max(self.slowest, response.elapsed.total_seconds())
            if response.status_code == 200:
                self.answers[str(response.json().get("version"))] += 1
        return super()._record(client, response, failure, retried)


def under_load(here: World, action: Callable[[], None], settle: float) -> Outcome:
    load = CountingLoad(here.url(), clients=2)
    with load:
        time.sleep(0.5)
        action()
        time.sleep(settle)
    return Outcome(
        load.result.requests,
        len(load.result.failures),
        round(load.slowest * 1000, 1),
        dict(load.answers),
    )


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
    parser.add_argument("--renames", type=int, default=250)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per config")
    parser.add_argument("--image", default="shipyard-local/caddy:2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = {
        "fallback (live, switching, then an alias every slot answers to)": True,
        "names only (live, switching)": False,
    }
    results: dict[str, dict[str, Any]] = {}
    for label, fallback in kinds.items():
        with world(args.image, fallback=fallback) as here:
            rps = throughput(here, args.seconds)

            def round_trips(here: World = here) -> None:
                renames(here, args.renames)

            renamed = under_load(here, round_trips, settle=1.0)

            def switches(here: World = here) -> None:
                for _ in range(args.switches):
                    switch(here)
                    time.sleep(0.3)

            switched = under_load(here, switches, settle=1.0)
        results[label] = {"rps": rps, "renames": renamed.__dict__, "switches": switched.__dict__}
        print(
            f"{label}: {rps if rps is not None else 'n/a (no wrk)'} req/s; "
            f"{args.renames} rename round trips: green answered "
            f"{renamed.answers.get('green', 0)} of {renamed.requests}, {renamed.failed} failed, "
            f"slowest {renamed.slowest_ms} ms; {args.switches} switches: {switched.failed} of "
            f"{switched.requests} failed, slowest {switched.slowest_ms} ms",
            flush=True,
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
