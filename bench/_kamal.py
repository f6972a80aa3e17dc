"""kamal-proxy for the benchmarks: built from its Go module, run in a container on the local engine.

``build`` compiles one released version (``VERSION``) from the Go module proxy, statically
(``CGO_ENABLED=0``): ``go install MODULE/cmd/kamal-proxy@VERSION`` first, and where the module proxy
refuses the version list that ``go install`` looks up, ``go mod download`` of that very version and
``go build`` inside the downloaded module. ``KamalProxy`` runs the binary, bind-mounted into a local
Debian image, and is driven the way Kamal drives it: ``docker exec <proxy> kamal-proxy deploy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

MODULE = "github.com/basecamp/kamal-proxy"
VERSION = "v0.9.2"


def build(gobin: Path, version: str = VERSION) -> Path:
    """The kamal-proxy binary of ``version``, built into ``gobin``."""
    gobin.mkdir(parents=True, exist_ok=True)
    binary = gobin / "kamal-proxy"
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(gobin), "GOFLAGS": "-mod=mod"}

    def go(
        *args: str, cwd: str | Path | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["go", *args], capture_output=True, text=True, check=check, env=env, cwd=cwd,
            timeout=900,
        )  # fmt: skip

    installed = go("install", f"{MODULE}/cmd/kamal-proxy@{version}")
    if installed.returncode == 0 and binary.is_file():
        return binary
    with tempfile.TemporaryDirectory(prefix="kamal-proxy-") as scratch:
        downloaded = go("mod", "download", "-json", f"{MODULE}@{version}", cwd=scratch)
    if downloaded.returncode != 0:
        raise RuntimeError(
            f"kamal-proxy {version}: go install failed ({installed.stderr.strip()[-400:]}) "
            f"and so did go mod download ({downloaded.stderr.strip()[-400:]})"
        )
    source = Path(json.loads(downloaded.stdout)["Dir"])
    go("build", "-o", str(binary), "./cmd/kamal-proxy", cwd=source, check=True)
    return binary


@dataclass
class KamalProxy:
    """A running kamal-proxy container (``name``) that answers on ``127.0.0.1:port``."""

    name: str
    port: int

    @classmethod
    def start(
        cls, name: str, binary: Path, network: str, port: int, image: str, labels: dict[str, str]
    ) -> KamalProxy:
        label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        subprocess.run(
            ["docker", "run", "--detach", "--name", name, "--network", network, *label_args,
             "--publish", f"127.0.0.1:{port}:80",
             "--volume", f"{binary.resolve()}:/usr/local/bin/kamal-proxy:ro",
             image, "kamal-proxy", "run", "--http-port", "80"],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        proxy = cls(name, port)
        deadline = time.monotonic() + 60
        while True:  # any HTTP answer (404 with no service deployed yet) means it listens
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                return proxy
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(
                    ["docker", "logs", name], capture_output=True, text=True, check=False
                )
                raise RuntimeError(f"kamal-proxy never answered: {logs.stdout}{logs.stderr}")
            time.sleep(0.2)

    def deploy(self, service: str, target: str, *options: str) -> None:
        """``kamal-proxy deploy``: waits for ``target`` to pass its health check, then routes
        ``service`` to it and drains the target it replaces."""
        subprocess.run(
            ["docker", "exec", self.name, "kamal-proxy", "deploy", service, "--target", target,
             *options],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
