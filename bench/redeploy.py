"""Benchmark: redeploys and rollbacks of a prebuilt image by shipyard, kamal-proxy and a naive
`docker compose up -d`, interleaved in one run under the same bounded load. Not a test.

The reference app (examples/events-api) in a temporary git repository with two commits, A and B
(B is empty); shipyard deploys B, then A, so both images exist and A serves. The other two tools
run those same image tags, on the network and with the environment of shipyard's live container
(so they share its database, already migrated):

- ``compose``: one service publishing the app's port on loopback; a redeploy is
  ``docker compose up -d`` with the other image (the old container stops, then the new one starts).
- ``kamal``: kamal-proxy (``bench/_kamal.py``, built from its Go module) in a container publishing
  a loopback port, driven as Kamal does: ``docker run`` the new version's container,
  ``kamal-proxy deploy`` (health check ``/health``, Kamal's buffering), ``docker stop`` the old
  one; its rollback starts the previous container again, ``kamal-proxy deploy``, stops the current.
- ``shipyard``: ``shipyard deploy development --ref <commit>`` and ``shipyard rollback development``
  as an operator types them (extra arguments: ``--shipyard-args``, ``--shipyard-rollback-args``),
  run as an installed tool runs: with its bytecode cached (``Shipyard.env``); with ``--warm``,
  as an operator with ``SHIPYARD_WARM=1`` runs it: each command handed to the run's own warm
  server (``shipyard.warm``), which the setup's first command starts.

Each round redeploys A → B with each tool, then rolls each back B → A. Around every operation the
tests' load generator (tests/e2e/load.py, paced) GETs ``/version`` through that tool's front door
from loopback: a quiet window first, then the command. Reported per operation: failed requests,
time from the command's start to the first answer showing the target commit (measured from the
answers, whatever the command says), the command's own time, and p99 latency while the command
ran vs in the quiet window; the medians and the ratios shipyard / kamal-proxy and shipyard /
compose (the deploy's to kamal-proxy also without shipyard's process start: from its start to
its log's first event, the interpreter and its imports); and the per-phase profile of shipyard's
operations, read from its deployment logs (``phase.finished`` events with ``duration_s``, under
``<state_dir>/<app>/<env>/logs/``).

    .venv/bin/python -m bench.redeploy [--rounds 3] [--json] [--kamal-proxy PATH]
        [--shipyard-args='--some-flag'] [--tools compose,kamal,shipyard] [--warm]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import git, remove_everything  # noqa: E402
from tests.e2e.docker_cli import remove_found  # noqa: E402
from tests.e2e.load import Load  # noqa: E402
from tests.e2e.ports import release_ports, reserve_port  # noqa: E402
from tests.example_app import destroy_example  # noqa: E402

from bench import _kamal  # noqa: E402
from bench.first_deploy import prepare_app  # noqa: E402

CLI = [sys.executable, "-m", "shipyard"]
ENVIRONMENT = "development"
TOOLS = ("compose", "kamal", "shipyard")
OPERATIONS = ("deploy", "rollback")
HELPER_IMAGE = "shipyard-local/debian:trixie"
APP_PORT = 8080
# How Kamal 2 calls kamal-proxy by default (proxy: buffering on, 30 s deploy and drain timeouts),
# with the app's own health endpoint instead of Kamal's /up.
KAMAL_DEPLOY_OPTIONS = (
    "--health-check-path", "/health", "--health-check-interval", "1s",
    "--deploy-timeout", "30s", "--drain-timeout", "30s",
    "--buffer-requests", "--buffer-responses",
)  # fmt: skip
KAMAL_STOP_WAIT = "30"  # Kamal's stop_wait_time: `docker stop -t 30`

COMPOSE = """\
name: {project}
services:
  app:
    image: ${{APP_IMAGE:?}}
    env_file: [{env_file}]
    ports: ["127.0.0.1:{port}:{app_port}"]
    labels: {{org.shipyard.bench: {label}}}
    networks: [shared]
networks:
  shared:
    name: {network}
    external: true
"""


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def docker(*args: str, timeout: float = 300) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


# -- measuring ------------------------------------------------------------------------------------
class Probe(Load):
    """The tests' load generator, also keeping (when, latency, git commit) of every answer; a
    failed request is kept with no latency and no commit."""

    def __init__(self, url: str, **limits: Any) -> None:
        super().__init__(url, **limits)
        self.samples: list[tuple[float, float | None, str | None]] = []
        self.quiet_from = self.started = self.ended = 0.0  # the windows, when measured

    def _record(
        self, client: int, response: httpx.Response | None, failure: str | None, retried: bool
    ) -> bool:
        latency: float | None = None
        commit: str | None = None
        if failure is None and response is not None and response.status_code == 200:
            latency = response.elapsed.total_seconds()
            try:
                commit = str(response.json().get("git_commit"))
            except ValueError:
                commit = None
        self.samples.append((time.monotonic(), latency, commit))
        return super()._record(client, response, failure, retried)

    def first(self, commit: str, after: float) -> float | None:
        return next((t for t, _, c in list(self.samples) if c == commit and t > after), None)


def p99_ms(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    if len(latencies) < 2:
        return round(latencies[0] * 1000, 1)
    return round(statistics.quantiles(latencies, n=100, method="inclusive")[98] * 1000, 1)


@dataclass
class Measured:
    tool: str
    operation: str
    round: int
    target: str
    command_s: float
    first_served_s: float | None
    requests: int
    failed: int
    p99_quiet_ms: float | None
    p99_window_ms: float | None
    failures: list[str] = field(default_factory=list)  # the first few, as the load saw them
    shipyard: Profile | None = None  # shipyard: its deployment log


@dataclass
class Settings:
    quiet: float
    settle: float
    clients: int
    pace: float
    max_seconds: float


def measure(
    settings: Settings,
    url: str,
    current: str,
    target: str,
    command: Callable[[], None],
) -> tuple[float | None, Probe]:
    """Run ``command`` under load on ``url`` after a quiet window: (seconds from the command's
    start to the first answer of ``target``, the probe with its windows)."""
    probe = Probe(
        url, clients=settings.clients, pace=settings.pace, max_seconds=settings.max_seconds
    )
    with probe:
        deadline = time.monotonic() + 30
        while probe.first(current, 0) is None:  # the load reaches the serving version
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} does not serve {current[:7]} before the operation")
            time.sleep(0.05)
        probe.quiet_from = time.monotonic()
        time.sleep(settings.quiet)
        probe.started = time.monotonic()
        command()
        probe.ended = time.monotonic()
        deadline = probe.ended + 60
        while (first := probe.first(target, probe.started)) is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(settings.settle)
    return (None if first is None else round(first - probe.started, 3)), probe


def summarize(
    tool: str,
    operation: str,
    index: int,
    target: str,
    served: float | None,
    probe: Probe,
) -> Measured:
    started, ended = probe.started, probe.ended
    samples = probe.samples
    quiet = [lat for t, lat, _ in samples if probe.quiet_from <= t < started and lat is not None]
    window = [lat for t, lat, _ in samples if started <= t <= ended and lat is not None]
    return Measured(
        tool=tool,
        operation=operation,
        round=index,
        target=target,
        command_s=round(ended - started, 3),
        first_served_s=served,
        requests=probe.result.requests,
        failed=len(probe.result.failures),
        p99_quiet_ms=p99_ms(quiet),
        p99_window_ms=p99_ms(window),
        failures=probe.result.failures[:3],
    )


# -- the three tools --------------------------------------------------------------------------------
@dataclass
class Shipyard:
    app: Path
    port: int
    state_dir: Path
    name: str
    deploy_args: list[str]
    rollback_args: list[str]
    warm: bool = False  # SHIPYARD_WARM=1: the commands run by a warm server (shipyard.warm)
    profile: Profile = field(default_factory=lambda: Profile({}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/version"

    @property
    def logs(self) -> Path:
        return self.state_dir / self.name / ENVIRONMENT / "logs"

    @property
    def env(self) -> dict[str, str]:
        """shipyard runs as an installed tool does, its modules' bytecode cached (pip compiles it
        at install): under PYTHONDONTWRITEBYTECODE an editable install would compile every
        module again on every run. The cache is the run's own (PYTHONPYCACHEPREFIX), warmed by
        the setup's deploys."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("SHIPYARD_WARM")
        }
        env["PYTHONPYCACHEPREFIX"] = str(self.state_dir.parent / "pycache")
        if self.warm:  # the server is the run's own, started by the setup's first command
            env.update(SHIPYARD_WARM="1", SHIPYARD_WARM_DIR=str(self.state_dir.parent / "warm"))
        return env

    def stop_warm(self) -> None:
        """Stop the run's warm server, if one runs."""
        for lock in (self.state_dir.parent / "warm").glob("warm-*.sock.lock"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(lock.read_text().strip()), signal.SIGTERM)

    def _run(self, *args: str) -> None:
        before = set(self.logs.glob("*.jsonl"))
        started = datetime.now(UTC)
        result = subprocess.run(
            [*CLI, *args],
            cwd=self.app,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
            env=self.env,
        )
        ended = datetime.now(UTC)
        if result.returncode != 0:
            raise RuntimeError(
                f"shipyard {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}"
            )
        new = sorted(set(self.logs.glob("*.jsonl")) - before)
        if new:
            text = new[-1].read_text()
        else:  # the log kept somewhere else: ask shipyard for its latest one
            text = subprocess.run(
                [*CLI, "logs", ENVIRONMENT],
                cwd=self.app, capture_output=True, text=True, check=False, timeout=300,
            ).stdout  # fmt: skip
        self.profile = phase_profile(text, started, ended)

    def deploy(self, commit: str) -> None:
        self._run("deploy", ENVIRONMENT, "--ref", commit, *self.deploy_args)

    def rollback(self, commit: str) -> None:
        del commit  # shipyard knows what served before
        self._run("rollback", ENVIRONMENT, *self.rollback_args)


@dataclass
class Profile:
    """One shipyard operation, from its deployment log."""

    phases: dict[str, float]  # phase → seconds (its ``phase.finished`` events)
    total_s: float | None = None  # the operation's own duration (``*.completed``)
    startup_s: float | None = None  # from the process's start to the log's first event
    exit_s: float | None = None  # from the log's last event to the process's end


def phase_profile(text: str, started: datetime, ended: datetime) -> Profile:
    """The profile of the deployment log ``text`` (JSON lines) of a process that ran from
    ``started`` to ``ended``."""
    profile = Profile({})
    stamps: list[datetime] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("timestamp"):
            stamps.append(datetime.fromisoformat(event["timestamp"]))
        if event.get("duration_s") is None:
            continue
        if event.get("kind") == "phase.finished":
            phase = event["phase"]
            profile.phases[phase] = profile.phases.get(phase, 0.0) + float(event["duration_s"])
        elif event.get("kind", "").endswith(".completed"):
            profile.total_s = float(event["duration_s"])
    if stamps:
        profile.startup_s = round((min(stamps) - started).total_seconds(), 3)
        profile.exit_s = round((ended - max(stamps)).total_seconds(), 3)
    return profile


@dataclass
class Compose:
    file: Path
    port: int
    images: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/version"

    def _up(self, commit: str) -> None:
        subprocess.run(
            ["docker", "compose", "-f", str(self.file), "up", "-d"],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
            env={**os.environ, "APP_IMAGE": self.images[commit]},
        )

    deploy = _up
    rollback = _up

    def down(self) -> None:
        subprocess.run(
            ["docker", "compose", "-f", str(self.file), "down", "--timeout", "5"],
            capture_output=True,
            check=False,
            timeout=300,
            env={**os.environ, "APP_IMAGE": "unused"},
        )


@dataclass
class Kamal:
    proxy: _kamal.KamalProxy
    prefix: str
    network: str
    env_file: Path
    images: dict[str, str]
    label: str
    live: str | None = None  # the container serving
    previous: str | None = None  # the stopped container it replaced (for the rollback)
    count: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}/version"

    @property
    def service(self) -> str:
        return f"{self.prefix}-web"

    def _switch(self, container: str) -> None:
        self.proxy.deploy(self.service, f"{container}:{APP_PORT}", *KAMAL_DEPLOY_OPTIONS)
        old, self.live = self.live, container
        if old is not None:
            docker("stop", "-t", KAMAL_STOP_WAIT, old)
        self.previous = old

    def deploy(self, commit: str) -> None:
        self.count += 1
        container = f"{self.prefix}-web-{commit[:7]}-{self.count}"
        docker("run", "--detach", "--restart", "unless-stopped", "--name", container,
               "--network", self.network, "--env-file", str(self.env_file),
               "--label", f"org.shipyard.bench={self.label}", "--label", f"service={self.service}",
               self.images[commit])  # fmt: skip
        self._switch(container)

    def rollback(self, commit: str) -> None:
        if self.previous is None:
            raise RuntimeError("kamal: nothing to roll back to")
        docker("start", self.previous)
        self._switch(self.previous)

    def prune(self) -> None:
        """Remove the stopped containers a rollback no longer needs (outside any measurement)."""
        keep = {self.live, self.previous}
        names = docker(
            "ps", "--all", "--filter", f"label=service={self.service}", "--format", "{{.Names}}"
        ).split()
        stale = [n for n in names if n not in keep]
        if stale:
            docker("rm", "--force", *stale)


# -- the run ---------------------------------------------------------------------------------------
def shipyard_live(name: str) -> tuple[list[str], str]:
    """The live container's environment (less PATH and its slot) and its network."""
    inspected = json.loads(docker("inspect", f"{name}-{ENVIRONMENT}-live"))[0]
    env = [
        item
        for item in inspected["Config"]["Env"]
        if not item.startswith(("PATH=", "DEPLOYMENT_SLOT=", "SLOT="))
    ]
    network = next(iter(inspected["NetworkSettings"]["Networks"]))
    return env, network


def live_image(name: str) -> str:
    return docker("inspect", "--format", "{{.Config.Image}}", f"{name}-{ENVIRONMENT}-live").strip()


def serving(url: str) -> str:
    return str(httpx.get(url, timeout=10).json()["git_commit"])


def wait_serving(tool: str, url: str, commit: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if serving(url) == commit:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tool} does not serve {commit[:7]} after its setup")
        time.sleep(0.2)


@dataclass
class World:
    """What one run sets up: shipyard's environment, the others' fronts, ports and labels."""

    work: Path
    name: str
    ports: dict[str, int]
    app: Path
    tools: dict[str, Shipyard | Compose | Kamal] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # commit → image tag

    @property
    def label(self) -> str:  # org.shipyard.bench on everything started next to shipyard
        return self.name

    def start_compose(self, network: str, env_file: Path, commit: str) -> None:
        compose_file = self.work / "compose.yml"
        compose_file.write_text(
            COMPOSE.format(
                project=f"{self.name}-compose", env_file=env_file, port=self.ports["compose"],
                app_port=APP_PORT, label=self.label, network=network,
            )
        )  # fmt: skip
        compose = Compose(compose_file, self.ports["compose"], self.images)
        self.tools["compose"] = compose
        log("setup: docker compose up -d")
        compose.deploy(commit)

    def start_kamal(self, binary: Path, network: str, env_file: Path, commit: str) -> None:
        proxy = _kamal.KamalProxy.start(
            f"{self.name}-kamal-proxy", binary, network, self.ports["kamal"], HELPER_IMAGE,
            {"org.shipyard.bench": self.label},
        )  # fmt: skip
        kamal = Kamal(proxy, f"{self.name}-kamal", network, env_file, self.images, self.label)
        self.tools["kamal"] = kamal
        log("setup: kamal-proxy deploy")
        kamal.deploy(commit)

    def remove(self) -> None:
        compose = self.tools.get("compose")
        if isinstance(compose, Compose):
            compose.down()
        remove_found(
            ["ps", "--all", "--quiet", "--filter", f"label=org.shipyard.bench={self.label}"],
            ["rm", "--force"],
        )
        destroy_example(self.app, ENVIRONMENT)
        remove_everything(self.name)
        release_ports()


@contextmanager
def world(args: argparse.Namespace, work: Path) -> Iterator[tuple[World, str, str]]:
    """Shipyard's environment with the images of A and B built and A serving, and the other
    tools serving A from the same image; everything removed afterwards. Yields (world, A, B)."""
    name = f"rd{secrets.token_hex(3)}"
    ports = {tool: reserve_port() for tool in TOOLS}
    app = prepare_app(work, name, ports["shipyard"])
    commit_a = git(app, "rev-parse", "HEAD")
    git(app, "commit", "-q", "--allow-empty", "-m", "B: the same app, another commit")
    commit_b = git(app, "rev-parse", "HEAD")
    here = World(work, name, ports, app)
    shipyard = Shipyard(
        app, ports["shipyard"], work / "state", name,
        shlex.split(args.shipyard_args), shlex.split(args.shipyard_rollback_args), args.warm,
    )  # fmt: skip
    here.tools["shipyard"] = shipyard
    try:
        for commit in (commit_b, commit_a):
            log(f"setup: shipyard deploy --ref {commit[:7]}")
            shipyard.deploy(commit)
            here.images[commit] = live_image(name)
            wait_serving("shipyard", shipyard.url, commit)
        env, network = shipyard_live(name)
        env_file = work / "app.env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{item}\n" for item in env))
        if "compose" in args.tools:
            here.start_compose(network, env_file, commit_a)
        if "kamal" in args.tools:
            binary = Path(args.kamal_proxy) if args.kamal_proxy else None
            if binary is None:
                log(f"setup: building kamal-proxy {_kamal.VERSION}")
                binary = _kamal.build(work / "gobin")
            here.start_kamal(binary, network, env_file, commit_a)
        for tool in args.tools:
            wait_serving(tool, here.tools[tool].url, commit_a)
        yield here, commit_a, commit_b
    finally:
        shipyard.stop_warm()
        here.remove()


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(args.quiet, args.settle, args.clients, args.pace, args.max_seconds)
    measured: list[Measured] = []
    with (
        tempfile.TemporaryDirectory(prefix="shipyard-bench-redeploy-") as tmp,
        world(args, Path(tmp)) as setup,
    ):
        here, commit_a, commit_b = setup
        for index in range(1, args.rounds + 1):
            for operation, current, target in (
                ("deploy", commit_a, commit_b),
                ("rollback", commit_b, commit_a),
            ):
                for tool in args.tools:
                    driver = here.tools[tool]
                    action: Callable[[str], None] = getattr(driver, operation)
                    served, probe = measure(
                        settings, driver.url, current, target, functools.partial(action, target)
                    )
                    row = summarize(tool, operation, index, target, served, probe)
                    if isinstance(driver, Shipyard):
                        row.shipyard = driver.profile
                    if isinstance(driver, Kamal):
                        driver.prune()
                    if row.first_served_s is None:
                        raise RuntimeError(f"{tool} {operation}: {target[:7]} never served")
                    measured.append(row)
                    log(
                        f"round {index} {operation:8} {tool:8}: first served "
                        f"{row.first_served_s:.2f}s, command {row.command_s:.2f}s, "
                        f"{row.failed} of {row.requests} failed, p99 {row.p99_window_ms} ms "
                        f"(quiet {row.p99_quiet_ms} ms)"
                    )
    return report(args, measured)


# -- the report ------------------------------------------------------------------------------------
def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def report(args: argparse.Namespace, measured: list[Measured]) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        for tool in args.tools:
            rows = [m for m in measured if m.tool == tool and m.operation == operation]
            summary.setdefault(operation, {})[tool] = {
                "runs": len(rows),
                "failed": sum(m.failed for m in rows),
                "requests": sum(m.requests for m in rows),
                "first_served_s": median([m.first_served_s for m in rows]),
                "first_served_range_s": [
                    min(m.first_served_s or 0 for m in rows),
                    max(m.first_served_s or 0 for m in rows),
                ]
                if rows
                else None,
                "command_s": median([m.command_s for m in rows]),
                "p99_quiet_ms": median([m.p99_quiet_ms for m in rows]),
                "p99_window_ms": median([m.p99_window_ms for m in rows]),
            }
    ratios: dict[str, dict[str, Any]] = {}
    for operation, tools in summary.items():
        ours = tools.get("shipyard")
        if ours is None:
            continue
        for baseline in ("kamal", "compose"):
            if baseline in tools:
                ratios.setdefault(operation, {})[f"shipyard/{baseline}"] = {
                    "first_served": ratio(
                        ours["first_served_s"], tools[baseline]["first_served_s"]
                    ),
                    "command": ratio(ours["command_s"], tools[baseline]["command_s"]),
                }
    profile: dict[str, dict[str, float | None]] = {}
    for operation in OPERATIONS:
        rows = [m for m in measured if m.tool == "shipyard" and m.operation == operation]
        logs = [m.shipyard for m in rows if m.shipyard is not None]
        phases = list(dict.fromkeys(p for log in logs for p in log.phases))
        profile[operation] = {
            "(process start to the first event)": median([log.startup_s for log in logs]),
            **{p: median([log.phases.get(p) for log in logs]) for p in phases},
            "(last event to the process's end)": median([log.exit_s for log in logs]),
            "(total, from the log)": median([log.total_s for log in logs]),
        }
    return {
        "kamal_proxy": _kamal.VERSION,
        "rounds": args.rounds,
        "load": {"clients": args.clients * 2, "pace_s": args.pace, "quiet_s": args.quiet},
        "shipyard_args": args.shipyard_args,
        "shipyard_warm": args.warm,
        "shipyard_rollback_args": args.shipyard_rollback_args,
        "cpus": os.cpu_count(),
        "loadavg_before": args.loadavg_before,
        "loadavg_after": list(os.getloadavg()),
        "summary": summary,
        "ratios": ratios,
        "shipyard_phases_median_s": profile,
        "runs": [asdict(m) for m in measured],
    }


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def print_tables(document: dict[str, Any], out: TextIO) -> None:
    header = (
        f"{'operation':9} {'tool':9} {'runs':>4} {'failed/requests':>16} {'first served':>13} "
        f"{'(min-max)':>13} {'command':>9} {'p99 window':>11} {'p99 quiet':>10}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for operation, tools in document["summary"].items():
        for tool, s in tools.items():
            low, high = s["first_served_range_s"] or (None, None)
            print(
                f"{operation:9} {tool:9} {s['runs']:>4} {s['failed']:>7}/{s['requests']:<8} "
                f"{fmt(s['first_served_s'], 's'):>13} {fmt(low) + '-' + fmt(high):>13} "
                f"{fmt(s['command_s'], 's'):>9} {fmt(s['p99_window_ms'], 'ms'):>11} "
                f"{fmt(s['p99_quiet_ms'], 'ms'):>10}",
                file=out,
            )
    print(file=out)
    for operation, pairs in document["ratios"].items():
        for pair, values in pairs.items():
            print(
                f"{operation}: {pair} first served {fmt(values['first_served'])}x, "
                f"command {fmt(values['command'])}x",
                file=out,
            )
    summary = document["summary"]
    deploy_ratio = document["ratios"].get("deploy", {}).get("shipyard/kamal", {})
    if deploy_ratio:
        print(
            f"goal{' (SHIPYARD_WARM=1)' if document['shipyard_warm'] else ''}: "
            f"the new version live within 2x of kamal-proxy: "
            f"{fmt(deploy_ratio['first_served'])}x",
            file=out,
        )
        # What a cold Python process costs before shipyard's first event (its imports: the
        # config's pydantic models, rich, httpx) set apart: the rest is the pipeline's own.
        startup = document["shipyard_phases_median_s"]["deploy"].get(
            "(process start to the first event)"
        )
        ours, theirs = summary["deploy"]["shipyard"], summary["deploy"]["kamal"]
        if startup is not None and ours["first_served_s"] and theirs["first_served_s"]:
            after = ratio(ours["first_served_s"] - startup, theirs["first_served_s"])
            print(
                f"      without the process start ({fmt(startup, 's')}): {fmt(after)}x",
                file=out,
            )
    if "shipyard" in summary.get("rollback", {}):
        served = summary["rollback"]["shipyard"]["first_served_s"]
        print(f"goal: a rollback live in <= 3 s: {fmt(served, 's')}", file=out)
    print(file=out)
    profile = document["shipyard_phases_median_s"]
    phases = list(dict.fromkeys(p for operation in profile.values() for p in operation))
    print(f"{'shipyard phase (median s)':36} {'deploy':>8} {'rollback':>9}", file=out)
    for phase in phases:
        print(
            f"{phase:36} {fmt(profile['deploy'].get(phase)):>8} "
            f"{fmt(profile['rollback'].get(phase)):>9}",
            file=out,
        )
    print(
        f"\n{document['cpus']} cpus; load average before {document['loadavg_before']}, "
        f"after {[round(x, 2) for x in document['loadavg_after']]}",
        file=out,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="redeploys (and rollbacks) per tool")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help="comma-separated subset of compose,kamal,shipyard"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout")
    parser.add_argument("--kamal-proxy", help="a kamal-proxy binary to use instead of building it")
    parser.add_argument("--shipyard-args", default="", help="extra arguments to `shipyard deploy`")
    parser.add_argument(
        "--warm", action="store_true", help="shipyard with SHIPYARD_WARM=1 (a warm server)"
    )
    parser.add_argument(
        "--shipyard-rollback-args", default="", help="extra arguments to `shipyard rollback`"
    )
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds of load before each")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of load after each")
    parser.add_argument("--clients", type=int, default=2, help="load clients of each kind")
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between a client's GETs")
    parser.add_argument("--max-seconds", type=float, default=300, help="bound on each load")
    args = parser.parse_args()
    args.tools = [t for t in TOOLS if t in args.tools.split(",")]
    if "shipyard" not in args.tools:
        args.tools.append("shipyard")  # it builds the images the others run
    args.loadavg_before = [round(x, 2) for x in os.getloadavg()]
    document = run(args)
    print_tables(document, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
