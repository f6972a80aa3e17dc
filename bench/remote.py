"""Benchmark: deploying over SSH. Not a test.

1. Redeploy over SSH vs the same redeploy on the local engine. The SSH target is this machine's
   own sshd (127.0.0.1, a generated key), so the ratio measures what SSH adds: every docker call,
   file and state read going through the multiplexed connection, health checks through forwards.
2. Image delivery (`shipyard.delivery.deliver`: inspect, stream, verify) vs a raw
   `docker save IMAGE | ssh host docker load` of the same image, into a second, empty engine
   behind the sshd (so the image really travels).

Prints each run and the ratio of the medians.

    .venv/bin/python bench/remote.py [--runs 3] [--image shipyard-local/postgres:17]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.engine import inspect_image_id, start_engine  # noqa: E402
from tests.e2e.sshd import Sshd, start_sshd  # noqa: E402
from tests.example_app import destroy_example  # noqa: E402

from bench.first_deploy import free_port, prepare_app, run  # noqa: E402
from shipyard.delivery import deliver  # noqa: E402
from shipyard.hosts import LocalHost, SSHHost, SSHSettings  # noqa: E402

CLI = [sys.executable, "-m", "shipyard"]


def _configure(app: Path, target: str, sshd: Sshd | None) -> None:
    yaml = YAML()
    document = yaml.load(app / "shipyard.yml")
    document["environments"]["development"]["target"] = target
    document["deploy"]["watch"] = "2s"
    document["deploy"]["min_requests"] = 5
    document["health"]["interval"] = "250ms"
    if sshd is not None:
        document["providers"] = {"ssh": sshd.settings()}
    with (app / "shipyard.yml").open("w") as handle:
        yaml.dump(document, handle)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@shipyard.invalid"]
    run(*git, "commit", "-q", "-am", "target", cwd=app)


def _redeploy(app: Path, index: int) -> float:
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@shipyard.invalid"]
    run(*git, "commit", "-q", "--allow-empty", "-m", f"run {index}", cwd=app)
    started = time.perf_counter()
    run(*CLI, "deploy", "development", cwd=app)
    return time.perf_counter() - started


def deploys(work: Path, sshd: Sshd, runs: int) -> tuple[list[float], list[float]]:
    local = prepare_app(work / "local", f"bl{secrets.token_hex(3)}", free_port())
    remote = prepare_app(work / "remote", f"br{secrets.token_hex(3)}", free_port())
    _configure(local, "local", None)
    _configure(remote, sshd.target, sshd)
    here, there = [], []
    try:
        for app in (local, remote):  # first deploys: images, database, proxy (not measured)
            run(*CLI, "deploy", "development", cwd=app)
        for index in range(runs):
            here.append(_redeploy(local, index))
            there.append(_redeploy(remote, index))
            print(f"deploy run {index + 1}: local {here[-1]:.2f}s, over ssh {there[-1]:.2f}s")
    finally:
        for app in (local, remote):
            destroy_example(app)
    return here, there


def deliveries(work: Path, image: str, runs: int) -> tuple[list[float], list[float]]:
    engine = start_engine()
    sshd = start_sshd(work / "sshd-engine", env={"DOCKER_HOST": engine.docker_host})
    image_id = inspect_image_id(image)
    assert image_id is not None, image
    settings = SSHSettings(known_hosts=sshd.known_hosts, identity_file=sshd.client_key)
    ssh = [
        "ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={sshd.known_hosts}",
        "-i", str(sshd.client_key), "-p", str(sshd.port), "root@127.0.0.1",
    ]  # fmt: skip
    ours, raw = [], []
    try:
        for index in range(runs):
            engine.docker("image", "rm", "--force", image, check=False)
            host = SSHHost(sshd.target, settings)  # a fresh connection each run, like the raw pipe
            started = time.perf_counter()
            done = deliver(image, image_id, LocalHost(), host)
            ours.append(time.perf_counter() - started)
            host.close()
            assert done.method == "stream", done
            engine.docker("image", "rm", "--force", image, check=False)
            started = time.perf_counter()
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            subprocess.run(
                [*ssh, "docker load --quiet"], stdin=save.stdout, check=True, capture_output=True
            )
            assert save.stdout is not None
            save.stdout.close()
            save.wait()
            raw.append(time.perf_counter() - started)
            assert engine.image_id(image) == image_id
            print(
                f"delivery run {index + 1}: shipyard {ours[-1]:.2f}s ({done.bytes / 2**20:.0f} MiB), "
                f"raw pipe {raw[-1]:.2f}s"
            )
    finally:
        sshd.stop()
        engine.stop()
    return ours, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="shipyard-local/postgres:17")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-remote-") as tmp:
        work = Path(tmp)
        sshd = start_sshd(work / "sshd")
        try:
            here, there = deploys(work, sshd, args.runs)
        finally:
            sshd.stop()
        ours, raw = deliveries(work, args.image, args.runs)
    a, b = statistics.median(there), statistics.median(here)
    print(f"deploy median: over ssh {a:.2f}s, local {b:.2f}s, ratio {a / b:.2f} (aim <= 1.3)")
    c, d = statistics.median(ours), statistics.median(raw)
    print(f"delivery median: shipyard {c:.2f}s, raw pipe {d:.2f}s, ratio {c / d:.2f} (aim <= 1.1)")
    print(f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
