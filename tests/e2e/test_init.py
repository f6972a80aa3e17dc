"""``shipyard init`` on a copy of the reference app without its shipyard.yml: with only an env
file of generated secrets (and environment variables that select the locally built images and
a reserved port), `check` accepts the config it wrote and `deploy` deploys it.

The app is renamed in the generated file (``app.name`` only) so that its containers cannot meet
another run's on the shared engine (the demo deploys the example as ``events-api``)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import EXAMPLE, git, isolated_env, remove_everything, run_shipyard
from tests.e2e.ports import reserve_port


@dataclass
class Initialised:
    dir: Path
    name: str
    port: int
    env: dict[str, str]

    def shipyard(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return run_shipyard(self.dir, self.env, *args, timeout=timeout)


@pytest.fixture
def initialised(tmp_path: Path, docker_engine: None) -> Iterator[Initialised]:
    work = tmp_path / "app"

    def left_out(_directory: str, names: list[str]) -> set[str]:
        return {
            n
            for n in names
            if n in ("bin", "shipyard.yml") or (n.startswith(".env.") and n != ".env.example")
        }

    shutil.copytree(EXAMPLE, work, ignore=left_out)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "the reference app, without shipyard.yml")
    home = tmp_path / "home"
    home.mkdir()
    port = reserve_port()
    env = {**isolated_env(home), "SHIPYARD_HTTP_PORT": str(port)}
    under_test = Initialised(dir=work, name=f"i{secrets.token_hex(3)}", port=port, env=env)
    try:
        yield under_test
    finally:
        under_test.shipyard("destroy", "development", "--yes", "--volumes", "--snapshots")
        remove_everything(under_test.name)


def test_init_then_check_and_deploy(initialised: Initialised) -> None:
    ran = initialised.shipyard("init")
    assert ran.returncode == 0, ran.stderr
    assert "shipyard deploy development" in ran.stderr
    config = initialised.dir / "shipyard.yml"
    text = config.read_text()
    config.write_text(re.sub(r"(?m)^  name: events-api\b", f"  name: {initialised.name}", text))
    env_file = initialised.dir / ".env.development"
    env_file.write_text(
        f"POSTGRES_PASSWORD={secrets.token_hex(16)}\nJWT_SECRET={secrets.token_hex(32)}\n"
    )
    env_file.chmod(0o600)
    assert git(initialised.dir, "check-ignore", ".env.development") == ".env.development"
    git(initialised.dir, "add", "-A")
    git(initialised.dir, "commit", "-q", "-m", "shipyard init")
    head = git(initialised.dir, "rev-parse", "HEAD")

    checked = initialised.shipyard("check", "development")
    assert checked.returncode == 0, checked.stderr

    deployed = initialised.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    version = httpx.get(f"http://127.0.0.1:{initialised.port}/version", timeout=10).json()
    assert version["git_commit"], version
    assert head.startswith(version["git_commit"]) or version["git_commit"].startswith(head)
