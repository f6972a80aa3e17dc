"""Benchmark: a first deploy on an empty engine vs `docker compose up -d --wait` of a hand-written
compose file that runs the same stack (database, migrations, app, Caddy). Not a test.

Both start from nothing but cached images (the local base images and the app image); both end
with the app answering through the proxy. Prints each run and the ratio of the medians.

    .venv/bin/python bench/first_deploy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.docker_cli import docker_inspect
from tests.example_app import copy_example, destroy_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "events-api"

BASELINE = """\
name: {project}
services:
  db:
    image: shipyard-local/postgres:17
    environment:
      POSTGRES_USER: events
      POSTGRES_DB: events
      POSTGRES_PASSWORD: {password}
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "events", "-d", "events"]
      interval: 2s
      timeout: 5s
      retries: 30
      start_period: 10s
  migrate:
    image: shipyard-local/migrate:4
    command: ["-path", "/migrations", "-database", "postgres://events:{password}@db:5432/events?sslmode=disable", "up"]
    volumes: ["{migrations}:/migrations:ro"]
    depends_on: {{db: {{condition: service_healthy}}}}
  app:
    image: {image}
    environment:
      DATABASE_URL: postgres://events:{password}@db:5432/events?sslmode=disable
      JWT_SECRET: {jwt}
      ENVIRONMENT: development
    depends_on: {{migrate: {{condition: service_completed_successfully}}}}
    healthcheck:
      test: ["CMD", "/app/server", "healthcheck"]
      interval: 1s
      timeout: 5s
      retries: 60
  proxy:
    image: shipyard-local/caddy:2
    entrypoint: ["caddy"]
    command: ["reverse-proxy", "--from", ":80", "--to", "app:8080"]
    ports: ["127.0.0.1:{port}:80"]
    depends_on: {{app: {{condition: service_healthy}}}}
volumes:
  pgdata: {{}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        argv, cwd=cwd, check=True, capture_output=True, env={**os.environ, **(env or {})}
    )


def deploy_json(app: Path) -> subprocess.CompletedProcess[str]:
    """``shipyard deploy development --json`` of ``app``, its output captured; not checked (the
    caller reads the exit code and the events)."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard", "deploy", "development", "--json"],
        cwd=app,
        capture_output=True,
        text=True,
        check=False,
    )


def wait_for(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def prepare_app(work: Path, name: str, port: int) -> Path:
    def settings(document: dict[str, Any]) -> None:
        document["proxy"]["http_port"] = port
        document["deploy"]["state_dir"] = str(work / "state")

    return copy_example(work / name, name, settings)


def shipyard_first_deploy(work: Path) -> tuple[float, str]:
    name, port = f"b{secrets.token_hex(3)}", free_port()
    app = prepare_app(work, name, port)
    cli = [sys.executable, "-m", "shipyard"]
    try:
        # Warm the app image and Go build cache, then empty the engine of this app.
        run(*cli, "deploy", "development", cwd=app)
        image = docker_inspect(f"{name}-development-live", "{{.Config.Image}}")
        run(*cli, "destroy", "development", "--yes", "--volumes", "--snapshots", cwd=app)
        started = time.perf_counter()
        run(*cli, "deploy", "development", cwd=app)
        wait_for(f"http://127.0.0.1:{port}/health")
        elapsed = time.perf_counter() - started
    finally:
        destroy_example(app)
    return elapsed, image


def compose_baseline(work: Path, image: str) -> float:
    project, port = f"bb{secrets.token_hex(3)}", free_port()
    compose = work / f"{project}.yml"
    compose.write_text(
        BASELINE.format(
            project=project,
            password=secrets.token_hex(12),
            jwt=secrets.token_hex(32),
            image=image,
            migrations=EXAMPLE / "migrations",
            port=port,
        )
    )
    started = time.perf_counter()
    run("docker", "compose", "-f", str(compose), "up", "-d", "--wait")
    wait_for(f"http://127.0.0.1:{port}/health")
    elapsed = time.perf_counter() - started
    run("docker", "compose", "-f", str(compose), "down", "--volumes")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ours, baseline = [], []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        work = Path(tmp)
        for index in range(args.runs):
            seconds, image = shipyard_first_deploy(work)
            ours.append(seconds)
            baseline.append(compose_baseline(work, image))
            print(
                f"run {index + 1}: shipyard deploy {ours[-1]:.2f}s, compose up --wait {baseline[-1]:.2f}s"
            )
    a, b = statistics.median(ours), statistics.median(baseline)
    print(
        f"median: shipyard {a:.2f}s, compose {b:.2f}s, ratio {a / b:.2f}  ({os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
