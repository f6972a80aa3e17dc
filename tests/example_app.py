"""The example app (``examples/events-api``) copied into a git repository of its own, as the
end-to-end tests and the benches deploy it: named for the run, its settings changed by the
caller, an env file of generated secrets (never committed) and one commit."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "events-api"
# The monitoring stack's images as scripts/images.sh builds them (no registry is reachable).
MONITORING_IMAGES = {
    "prometheus": "shipyard-local/prometheus:2",
    "alertmanager": "shipyard-local/alertmanager:0",
    "node_exporter": "shipyard-local/node-exporter:1",
    "postgres_exporter": "shipyard-local/postgres-exporter:0",
    "cadvisor": "shipyard-local/cadvisor:0",
}

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "shipyard tests",
    "GIT_AUTHOR_EMAIL": "tests@shipyard.invalid",
    "GIT_COMMITTER_NAME": "shipyard tests",
    "GIT_COMMITTER_EMAIL": "tests@shipyard.invalid",
}


def git(cwd: Path, *args: str) -> str:
    """``git -C cwd args`` with a fixed identity; its stdout, stripped."""
    return subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **_GIT_IDENTITY},
    ).stdout.strip()


def copy_example(
    where: Path, name: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """The example app copied to ``where`` as app ``name``, its ``shipyard.yml`` changed by
    ``edit``, with ``.env.development`` (generated secrets, mode 0600, ignored by git) and every
    file committed. Returns ``where``."""
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("bin", ".env.*"))
    yaml = YAML()
    document = yaml.load(where / "shipyard.yml")
    document["app"]["name"] = name
    if edit is not None:
        edit(document)
    with (where / "shipyard.yml").open("w") as handle:
        yaml.dump(document, handle)
    env_file = where / ".env.development"
    env_file.write_text(
        f"POSTGRES_PASSWORD=pw-{secrets.token_hex(12)}\nJWT_SECRET={secrets.token_hex(32)}\n",
        encoding="utf-8",
    )
    env_file.chmod(0o600)
    (where / ".gitignore").write_text("bin/\n.env.*\n", encoding="utf-8")
    git(where, "init", "-q", "-b", "main")
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", "initial")
    return where


def destroy_example(app: Path, environment: str = "development") -> None:
    """``shipyard destroy`` of ``app``'s environment with its volumes and snapshots: nothing of
    it stays on the engine (a failure is left to the caller's own clean-up)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard",
            "destroy",
            environment,
            "--yes",
            "--volumes",
            "--snapshots",
        ],
        cwd=app,
        capture_output=True,
        check=False,
        timeout=600,
    )
