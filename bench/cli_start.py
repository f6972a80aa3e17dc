"""Benchmark: how long the command line takes to start, and `shipyard status` on a local engine.
Not a test.

1. CPU (user + sys of the child, from ``wait4``) of ``shipyard --help``, ``shipyard status
   --help`` and ``shipyard --version`` against ``python -c pass`` in the same run: the median of
   ``--runs`` runs each, interleaved, as an absolute figure and as a ratio to the baseline. The
   goal for both help commands is 0.25 s of CPU.
2. With ``--status``: a copy of examples/events-api (its own name, port and state directory, as
   the end-to-end tests set it up) deployed to the local Docker engine, then ``shipyard status
   development`` timed (wall and CPU, median of ``--runs``), then destroyed. The goal is 0.5 s
   of wall time. ``--app DIR`` times an app that is already deployed instead (nothing is
   deployed nor destroyed).

The children run without PYTHONDONTWRITEBYTECODE, so the warm-up run leaves bytecode caches as
an installed package has them (pip compiles at install); otherwise every run would compile
shipyard's own modules again.

3. With ``--warm``: every shipyard case also with ``SHIPYARD_WARM=1`` (``shipyard.warm``), named
   "(warm)", against the bench's own warm server. Its CPU is the client's alone; compare walls.

    .venv/bin/python -m bench.cli_start [--runs 15] [--status | --app DIR [--environment ENV]]
        [--warm]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENV = {
    k: v
    for k, v in os.environ.items()
    if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("SHIPYARD_WARM")
}
WARM = " (warm)"  # a case's name suffix: run with SHIPYARD_WARM=1 (``--warm``)
HELP_GOAL_S = 0.25
STATUS_GOAL_S = 0.5


@dataclass(frozen=True)
class Run:
    cpu_s: float
    wall_s: float
    returncode: int


def run_once(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] = ENV) -> Run:
    """One child: its own CPU (user + sys, children included) and the wall time to its exit."""
    started = time.perf_counter()
    child = subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return Run(usage.ru_utime + usage.ru_stime, wall, child.returncode)


def shipyard_command() -> list[str]:
    """The console script next to this interpreter (what an operator runs), else ``-m``."""
    script = Path(sys.executable).with_name("shipyard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipyard"]


def measure(
    cases: dict[str, list[str]], runs: int, cwd: Path | None = None, warm: Path | None = None
) -> dict[str, list[Run]]:
    """Every case ``runs`` times, interleaved (a burst of load hits all cases alike). With
    ``warm`` (a directory for the sockets), each shipyard case also runs with SHIPYARD_WARM=1:
    its CPU is then the client's alone (the command runs in a process the warm server forks)."""
    if warm is not None:
        cases = {**cases, **{n + WARM: a for n, a in cases.items() if n.startswith("shipyard")}}
    hot = {**ENV, "SHIPYARD_WARM": "1", "SHIPYARD_WARM_DIR": str(warm)}
    results: dict[str, list[Run]] = {name: [] for name in cases}
    for _ in range(2):  # warm the page and bytecode caches; the first warm run starts a server
        for name, argv in cases.items():
            run_once(argv, cwd, hot if name.endswith(WARM) else ENV)
        time.sleep(3 if warm is not None else 0)  # the server's imports, before measuring
    for _ in range(runs):
        for name, argv in cases.items():
            results[name].append(run_once(argv, cwd, hot if name.endswith(WARM) else ENV))
    return results


def report(results: dict[str, list[Run]], baseline: str | None, goals: dict[str, str]) -> None:
    base = statistics.median(r.cpu_s for r in results[baseline]) if baseline else None
    print(
        f"{'command':<32} {'cpu median':>10} {'cpu min':>8} {'wall median':>11} {'ratio':>6}  goal"
    )
    for name, runs in results.items():
        cpu = statistics.median(r.cpu_s for r in runs)
        wall = statistics.median(r.wall_s for r in runs)
        ratio = f"{cpu / base:5.1f}x" if base else "     -"
        codes = sorted({r.returncode for r in runs})
        note = f"  exit {codes}" if codes != [0] else ""
        print(
            f"{name:<32} {cpu:9.3f}s {min(r.cpu_s for r in runs):7.3f}s {wall:10.3f}s {ratio}"
            f"  {goals.get(name, '')}{note}"
        )


def start_figures(runs: int, warm: Path | None) -> None:
    shipyard = shipyard_command()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "shipyard --help": [*shipyard, "--help"],
        "shipyard status --help": [*shipyard, "status", "--help"],
        "shipyard --version": [*shipyard, "--version"],
    }
    goal = f"cpu <= {HELP_GOAL_S}s"
    report(
        measure(cases, runs, warm=warm),
        "python -c pass",
        {"shipyard --help": goal, "shipyard status --help": goal},
    )


def status_figures(app_dir: Path, environment: str, runs: int, warm: Path | None) -> None:
    shipyard = shipyard_command()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        f"shipyard status {environment}": [*shipyard, "status", environment],
        f"shipyard status {environment} --json": [*shipyard, "status", environment, "--json"],
    }
    goal = f"wall <= {STATUS_GOAL_S}s"
    report(
        measure(cases, runs, cwd=app_dir, warm=warm),
        "python -c pass",
        {name: goal for name in cases if name.startswith("shipyard")},
    )


def deployed_copy(work: Path) -> tuple[Path, str]:
    """A copy of the reference app deployed to the local engine, as the e2e tests set it up."""
    from tests.e2e.ports import reserve_port  # noqa: PLC0415
    from tests.example_app import copy_example  # noqa: PLC0415

    name = f"b{secrets.token_hex(3)}"

    def settings(document: dict[str, Any]) -> None:
        document["proxy"]["http_port"] = reserve_port()
        document["deploy"]["state_dir"] = str(work / "state")
        document["health"]["interval"] = "250ms"

    app = copy_example(work / "app", name, settings)
    print(f"deploying {name} to the local engine (a first deploy builds the app) …", flush=True)
    subprocess.run(
        [*shipyard_command(), "deploy", "development"],
        cwd=app,
        check=True,
        capture_output=True,
        timeout=1200,
    )
    return app, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--status", action="store_true", help="Deploy a copy and time status.")
    where.add_argument("--app", type=Path, help="Time status of this already deployed app.")
    parser.add_argument("--environment", default="development")
    parser.add_argument(
        "--warm", action="store_true", help="Also every shipyard case with SHIPYARD_WARM=1."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw", dir="/tmp") as sockets:
        try:
            figures(args, Path(sockets) if args.warm else None)
        finally:
            for lock in Path(sockets).glob("*.lock"):  # the bench's own warm server
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int(lock.read_text().strip()), signal.SIGTERM)


def figures(args: argparse.Namespace, warm: Path | None) -> None:

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1 and 5 min)")
    start_figures(args.runs, warm)
    if args.app is not None:
        print()
        status_figures(args.app, args.environment, args.runs, warm)
    elif args.status:
        from tests.e2e.conftest import remove_everything  # noqa: PLC0415
        from tests.example_app import destroy_example  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
            app, name = deployed_copy(Path(tmp))
            try:
                print()
                status_figures(app, "development", args.runs, warm)
            finally:
                destroy_example(app)
                remove_everything(name)


if __name__ == "__main__":
    main()
