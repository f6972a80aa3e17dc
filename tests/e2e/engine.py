"""A second, empty Docker engine on this machine: its own data root, exec root, socket and bridge
(never docker0: `dockerd --bridge=none` would delete the main engine's docker0), no iptables, no
containers. It stands for a remote host's engine in image-delivery tests
(the sshd in front of it sets DOCKER_HOST), so images really travel from one engine to another.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.daemons import stop_daemon


@dataclass
class Engine:
    dir: Path
    process: subprocess.Popen[bytes]
    bridge: str

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "DOCKER_HOST": self.docker_host},
        )

    def image_id(self, ref: str) -> str | None:
        return inspect_image_id(ref, docker_host=self.docker_host)

    def stop(self) -> None:
        stop_daemon(self.process, grace=60)
        # dockerd leaves its data root bind-mounted onto itself.
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for line in sorted((m.split()[1] for m in mounts), reverse=True):
            if line.startswith(str(self.dir) + "/"):
                subprocess.run(["umount", "-l", line], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        subprocess.run(["ip", "link", "delete", self.bridge], check=False, capture_output=True)


def inspect_image_id(ref: str, *, docker_host: str | None = None) -> str | None:
    """The ID of image ``ref`` on this machine's engine (or the one at ``docker_host``)."""
    env = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else None
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def start_engine() -> Engine:
    # Short paths: containerd's sockets live below the exec root (a socket path is ~100 bytes max).
    directory = Path(tempfile.mkdtemp(prefix="sy-eng-", dir="/tmp"))
    bridge = f"syeng{secrets.token_hex(4)}"  # its own bridge, no address, no iptables rules
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    log = (directory / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            "--data-root", str(directory / "data"),
            "--exec-root", str(directory / "exec"),
            "--pidfile", str(directory / "dockerd.pid"),
            "--host", f"unix://{directory / 'docker.sock'}",
            "--bridge", bridge,
            "--iptables=false",
            "--ip-forward=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    log.close()
    engine = Engine(directory, process, bridge)
    deadline = time.monotonic() + 60
    while engine.docker("version", check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            text = (directory / "dockerd.log").read_text(errors="replace")[-2000:]
            engine.stop()
            raise RuntimeError(f"the second engine did not start: {text}")
        time.sleep(0.2)
    return engine
