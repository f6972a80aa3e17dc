"""Benchmark: what the monitoring stack costs on this machine, against the spec's budget
(0.3 cores and 800 MB for Prometheus, Alertmanager and the exporters, cAdvisor among them). Not a test.

Deploys the example app with ``monitoring.enabled`` (the Debian-built images, scraping every 15 s
as by default), sends a bounded load through the proxy for ``--minutes`` (default 5), then
samples each monitoring container's CPU (the Engine's count of its CPU time over the sampling window) and
memory (in use less the page cache, as ``docker stats`` shows it) for ``--sample`` seconds. The app itself is measured the same way, as
the baseline the stack's cost is set beside. Prints each container, the totals, and the
ratios to the budget.

    .venv/bin/python -m bench.monitoring [--minutes 5] [--sample 60] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tests.example_app import MONITORING_IMAGES, copy_example, destroy_example

from bench.first_deploy import free_port, run

BUDGET_CORES = 0.3
BUDGET_MB = 800.0
STACK = ("prometheus", "alertmanager", "node-exporter", "postgres-exporter", "cadvisor")


def _load(urls: list[str], rate: float, stop: threading.Event, counts: dict[str, int]) -> None:
    """Requests spread over ``urls`` at about ``rate`` a second until ``stop``."""
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            for url in urls:
                try:
                    status = client.get(url).status_code
                    counts[str(status)] = counts.get(str(status), 0) + 1
                except httpx.HTTPError:
                    counts["error"] = counts.get("error", 0) + 1
            stop.wait(len(urls) / rate)


ENGINE = httpx.Client(transport=httpx.HTTPTransport(uds="/var/run/docker.sock"), timeout=30)


def _stats(container: str) -> dict[str, Any]:
    """The Engine's one-shot statistics of ``container``."""
    response = ENGINE.get(
        f"http://engine/containers/{container}/stats",
        params={"stream": "false", "one-shot": "true"},
    )
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def _cpu_seconds(container: str) -> float:
    """The CPU time the container's processes used since it started."""
    return float(_stats(container)["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def _memory_mb(container: str) -> float:
    """The container's memory in use, as ``docker stats`` counts it (less the page cache)."""
    memory = _stats(container)["memory_stats"]
    cache = memory.get("stats", {}).get("inactive_file", 0)
    return (float(memory["usage"]) - float(cache)) / 2**20


def measure(minutes: float, sample: float, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-monitoring-") as tmp:
        work = Path(tmp)
        name, port = f"b{secrets.token_hex(3)}", free_port()

        def settings(document: dict[str, Any]) -> None:
            document["proxy"]["http_port"] = port
            document["deploy"]["state_dir"] = str(work / "state")
            document["monitoring"] = {
                "enabled": True,
                "prometheus_port": free_port(),
                "alertmanager_port": free_port(),
                "images": MONITORING_IMAGES,
                "grafana": {"enabled": False},
            }

        app = copy_example(work / name, name, settings)
        cli = [sys.executable, "-m", "shipyard"]
        stop, counts = threading.Event(), {}
        try:
            run(*cli, "deploy", "development", cwd=app)
            urls = [f"http://127.0.0.1:{port}{p}" for p in ("/", "/api/v1/events", "/health")]
            loader = threading.Thread(target=_load, args=(urls, rate, stop, counts), daemon=True)
            loader.start()
            time.sleep(max(0.0, minutes * 60 - sample))
            containers = [f"{name}-development-{c}" for c in STACK]
            app_container = f"{name}-development-live"
            watched = [*containers, app_container]
            before = {c: _cpu_seconds(c) for c in watched}
            started = time.monotonic()
            memory_samples: list[dict[str, float]] = []
            while time.monotonic() - started < sample:
                memory_samples.append({c: _memory_mb(c) for c in watched})
                time.sleep(5)
            elapsed = time.monotonic() - started
            cores = {c: (_cpu_seconds(c) - before[c]) / elapsed for c in watched}
            memory = {c: max(s.get(c, 0.0) for s in memory_samples) for c in watched}
        finally:
            stop.set()
            destroy_example(app)
    stack_cores = sum(cores[c] for c in containers)
    stack_mb = sum(memory[c] for c in containers)
    return {
        "minutes_of_load": minutes,
        "requests": counts,
        "containers": {
            c.removeprefix(f"{name}-development-"): {"cores": cores[c], "memory_mb": memory[c]}
            for c in watched
        },
        "stack_cores": stack_cores,
        "stack_memory_mb": stack_mb,
        "cores_of_budget": stack_cores / BUDGET_CORES,
        "memory_of_budget": stack_mb / BUDGET_MB,
        "app_cores": cores[app_container],
        "app_memory_mb": memory[app_container],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--sample", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    args = parser.parse_args()
    result = measure(args.minutes, args.sample, args.rate)
    for container, figures in result["containers"].items():
        print(f"{container:20} {figures['cores']:6.3f} cores {figures['memory_mb']:8.1f} MB")
    print(
        f"monitoring stack: {result['stack_cores']:.3f} cores ({result['cores_of_budget']:.0%} of "
        f"{BUDGET_CORES} budget), {result['stack_memory_mb']:.0f} MB "
        f"({result['memory_of_budget']:.0%} of {BUDGET_MB:.0f} MB budget); app: "
        f"{result['app_cores']:.3f} cores, {result['app_memory_mb']:.0f} MB; requests {result['requests']}"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
