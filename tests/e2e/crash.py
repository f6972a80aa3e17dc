"""Killing shipyard on purpose, for crash-safety tests: at a phase (read from its deployment
log), just before the Nth docker command matching a pattern (a `docker` wrapper first on its
PATH) or the Nth request to the engine's API matching one (a `sitecustomize` first on its
PYTHONPATH), and watching that some container always carries a name the proxy routes to."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.e2e.conftest import AppUnderTest

# Runs the real docker, except that just before the STOP_AT-th command whose words match the
# shell pattern STOP_MATCH it kills its whole process group: shipyard and everything it runs.
_WRAPPER = """#!/bin/sh
case "$*" in
  $STOP_MATCH)
    n=$(( $(cat "$STOP_COUNT" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$STOP_COUNT"
    if [ "$n" -eq "$STOP_AT" ]; then kill -KILL 0; fi
    ;;
esac
exec {docker} "$@"
"""

# The same for shipyard's requests to the local engine's API (``EngineAPI.send``), matched as
# "METHOD /path" against the pattern STOP_REQUEST (``fnmatch``): loaded by the interpreter
# before shipyard runs, it kills the whole process group just before the STOP_AT-th match.
_SITECUSTOMIZE = """
import fnmatch
import os
import signal

from shipyard.docker import _engine

_send = _engine.EngineAPI.send
_seen = 0


def _send_or_die(self, method, path, *args, **kwargs):
    global _seen
    if fnmatch.fnmatchcase(f"{method} {path}", os.environ["STOP_REQUEST"]):
        _seen += 1
        if _seen == int(os.environ["STOP_AT"]):
            os.killpg(0, signal.SIGKILL)
    return _send(self, method, path, *args, **kwargs)


_engine.EngineAPI.send = _send_or_die
"""


def local_logs(app: AppUnderTest) -> set[Path]:
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return set((base / "shipyard" / "logs" / app.name / app.environment).glob("*.jsonl"))


def events(path: Path) -> list[dict[str, object]]:
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written when it was killed
            continue
    return found


def start(
    app: AppUnderTest, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``shipyard`` in its own process group (so it can be killed with all it runs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard", *args],
        cwd=app.dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **app.extra_env, **(env or {})},
    )


@dataclass
class Victim:
    """A shipyard command run until it was killed."""

    process: subprocess.Popen[str]
    log: Path | None
    stderr: str = ""

    @property
    def deployment_id(self) -> str | None:
        return self.log.stem if self.log else None


def wait_for_phase(
    app: AppUnderTest,
    earlier: set[Path],
    phase: str,
    process: subprocess.Popen[str],
    *,
    timeout: float = 300,
) -> Path:
    """The deployment log (one not in ``earlier``) of ``process`` once ``phase`` has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for path in local_logs(app) - earlier:
            if any(
                e.get("kind") == "phase.started" and e.get("phase") == phase for e in events(path)
            ):
                return path
        time.sleep(0.02)
    raise AssertionError(f"phase {phase} never started (exit {process.poll()})")


def kill_at_phase(app: AppUnderTest, phase: str, *args: str, timeout: float = 300) -> Victim:
    """Run ``shipyard *args`` and SIGKILL its process group as soon as ``phase`` starts."""
    earlier = local_logs(app)
    process = start(app, *args)
    try:
        log = wait_for_phase(app, earlier, phase, process, timeout=timeout)
    except AssertionError as exc:
        _, err = process.communicate(timeout=60)
        raise AssertionError(f"{exc}: {err[-2000:]}") from exc
    os.killpg(process.pid, signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    return Victim(process, log, err)


def kill_before_command(
    app: AppUnderTest, tmp: Path, match: str, nth: int, *args: str, timeout: float = 300
) -> Victim:
    """Run ``shipyard *args`` and kill it (with all it runs) just before its ``nth`` docker
    command matching the shell pattern ``match``."""
    docker = shutil.which("docker")
    assert docker is not None
    bin_dir = tmp / f"stop-{time.monotonic_ns()}"
    bin_dir.mkdir()
    wrapper = bin_dir / "docker"
    wrapper.write_text(_WRAPPER.format(docker=docker))
    wrapper.chmod(0o755)
    earlier = local_logs(app)
    process = start(
        app,
        *args,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "STOP_MATCH": match,
            "STOP_AT": str(nth),
            "STOP_COUNT": str(bin_dir / "count"),
        },
    )
    return _killed(app, earlier, process, f"`{match}` #{nth}", timeout=timeout)


def kill_before_request(
    app: AppUnderTest, tmp: Path, match: str, nth: int, *args: str, timeout: float = 300
) -> Victim:
    """Run ``shipyard *args`` and kill it (with all it runs) just before its ``nth`` request to
    the local engine's API whose ``METHOD /path`` matches the ``fnmatch`` pattern ``match``
    (``POST /containers/*/rename``)."""
    site_dir = tmp / f"stop-{time.monotonic_ns()}"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    python_path = os.pathsep.join(filter(None, [str(site_dir), os.environ.get("PYTHONPATH")]))
    earlier = local_logs(app)
    process = start(
        app,
        *args,
        env={"PYTHONPATH": python_path, "STOP_REQUEST": match, "STOP_AT": str(nth)},
    )
    return _killed(app, earlier, process, f"request `{match}` #{nth}", timeout=timeout)


def _killed(
    app: AppUnderTest,
    earlier: set[Path],
    process: subprocess.Popen[str],
    what: str,
    *,
    timeout: float,
) -> Victim:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == -signal.SIGKILL, (
        f"{what} never ran (exit {process.returncode}): {err[-2000:]}"
    )
    new = sorted(local_logs(app) - earlier)
    return Victim(process, new[-1] if new else None, err)


@dataclass
class LiveWatch:
    """Samples, every ``interval`` seconds through Docker's API, whether the proxy has a running
    container to route to: the one carrying the live name, or (between the renames of a switch)
    the one carrying the switching name. Counts the samples with none."""

    app: AppUnderTest
    interval: float = 0.1
    samples: int = 0
    empty: list[float] = field(default_factory=list)  # nothing to route to
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        live = f"/{self.app.name}-{self.app.environment}-live"
        switching = f"/{self.app.name}-{self.app.environment}-switching"
        filters = json.dumps(
            {
                "label": [f"org.shipyard.app={self.app.name}", "org.shipyard.role=app"],
                "status": ["running"],
            }
        )
        transport = httpx.HTTPTransport(uds="/var/run/docker.sock")
        with httpx.Client(transport=transport, base_url="http://docker", timeout=10) as client:
            while not self._stop.wait(self.interval):
                listed = client.get("/containers/json", params={"filters": filters}).json()
                names = {name for c in listed for name in c.get("Names", [])}
                self.samples += 1
                if live not in names and switching not in names:
                    self.empty.append(time.monotonic())

    def __enter__(self) -> LiveWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
