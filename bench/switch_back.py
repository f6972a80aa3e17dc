"""Benchmark: the switch-back after a failed watch, `deploy.old_version: standby` (the baseline)
vs `stop`. Not a test.

The reference app (examples/events-api) on the local engine, with its own health settings
(three passing rounds one second apart). Each run deploys, in each mode, a version that turns
unhealthy during its watch window (``TEST_UNHEALTHY_AFTER``) while a client polls ``/version``
through the proxy every 10 ms and the tests' load generator (tests/e2e/load.py) keeps requests
going. The switch-back time is from the watch phase's failure (its event's timestamp, from
``deploy --json``) to the first answer of the previous version through the proxy. With
``standby`` the old version still runs: the switch-back is two renames. With ``stop`` it was
stopped after the switch: it is started again and must pass its health gate first. Prints each
run, the medians, the ratio stop / standby and the failed requests.

    .venv/bin/python -m bench.switch_back [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.load import Load  # noqa: E402
from tests.example_app import destroy_example  # noqa: E402

from bench.first_deploy import deploy_json, free_port, prepare_app, run  # noqa: E402

MODES = ("standby", "stop")
CLI = [sys.executable, "-m", "shipyard"]


@dataclass
class Poller:
    """GETs ``url`` every ``interval`` seconds, keeping (when, git commit) of each answer."""

    url: str
    interval: float = 0.01
    answers: list[tuple[datetime, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(self.interval):
                try:
                    commit = str(client.get(self.url).json().get("git_commit", "?"))
                except (httpx.HTTPError, ValueError):
                    continue
                self.answers.append((datetime.now(UTC), commit))

    def __enter__(self) -> Poller:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def edit(app: Path, change: Any) -> None:
    yaml = YAML()
    document = yaml.load(app / "shipyard.yml")
    change(document)
    with (app / "shipyard.yml").open("w") as handle:
        yaml.dump(document, handle)


def commit(app: Path, message: str) -> str:
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@shipyard.invalid"]
    run("git", "add", "-A", cwd=app)
    run(*git, "commit", "-q", "--allow-empty", "-m", message, cwd=app)
    return subprocess.run(
        ["git", "-C", str(app), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def failing_deploy(app: Path, port: int, mode: str, good: str) -> tuple[float, int, int]:
    """Deploy a version that fails its watch in ``mode``: (seconds from the watch's failure to
    the previous version answering again, requests, failed requests)."""

    def change(document: Any) -> None:
        document["deploy"]["old_version"] = mode
        document["deploy"]["watch"] = "60s"
        document["app"]["env"]["TEST_UNHEALTHY_AFTER"] = "8s"

    edit(app, change)
    commit(app, f"fails its watch ({mode})")
    url = f"http://127.0.0.1:{port}/version"
    with Load(url) as load, Poller(url) as poller:
        deploy = deploy_json(app)
        deadline = time.monotonic() + 60
        while not (poller.answers and poller.answers[-1][1] == good):
            if time.monotonic() > deadline:
                raise SystemExit("the previous version never answered again")
            time.sleep(0.05)
    if deploy.returncode != 6:
        raise SystemExit(f"expected a rolled-back deploy, got {deploy.returncode}: {deploy.stderr}")
    events = [json.loads(line) for line in deploy.stdout.splitlines() if line.startswith("{")]
    failed_at = next(
        datetime.fromisoformat(e["timestamp"])
        for e in events
        if e.get("kind") == "phase.failed" and e.get("phase") == "watch"
    )
    back = next(when for when, seen in poller.answers if when > failed_at and seen == good)
    return (back - failed_at).total_seconds(), load.result.requests, len(load.result.failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    failed: dict[str, int] = dict.fromkeys(MODES, 0)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        name, port = f"b{secrets.token_hex(3)}", free_port()
        app = prepare_app(Path(tmp), name, port)
        try:
            run(*CLI, "deploy", "development", cwd=app)
            good = subprocess.run(
                ["git", "-C", str(app), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for index in range(args.runs):
                for mode in MODES:
                    seconds, requests, failures = failing_deploy(app, port, mode, good)
                    times[mode].append(seconds)
                    failed[mode] += failures
                    print(
                        f"run {index + 1}, {mode}: switched back {seconds:.2f}s after the watch "
                        f"failed; {failures} of {requests} requests failed",
                        flush=True,
                    )
        finally:
            destroy_example(app)
    base, stop = (statistics.median(times[mode]) for mode in MODES)
    print(
        f"median switch-back: standby {base:.2f}s, stop {stop:.2f}s, ratio stop / standby "
        f"{stop / base:.1f}; failed requests: standby {failed['standby']}, stop {failed['stop']}"
    )


if __name__ == "__main__":
    main()
