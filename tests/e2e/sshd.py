"""A real OpenSSH server for tests: Debian's ``sshd`` on 127.0.0.1 and a reserved port, with its own
config, a generated host key, an authorized test key and a known_hosts file in a temp directory.

It runs on this machine, so the "remote" Docker engine is the one the tests use. It only accepts
the test key, listens on loopback only and is killed when the test ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.daemons import stop_daemon
from tests.e2e.ports import reserve_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class Sshd:
    dir: Path
    port: int
    process: subprocess.Popen[bytes]
    host_key: Path
    client_key: Path
    known_hosts: Path  # trusts the host key
    empty_known_hosts: Path  # trusts nothing

    @property
    def target(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def settings(self, *, trusted: bool = True) -> dict[str, object]:
        """``providers.ssh`` for shipyard.yml."""
        return {
            "known_hosts": str(self.known_hosts if trusted else self.empty_known_hosts),
            "identity_file": str(self.client_key),
        }

    def stop(self) -> None:
        stop_daemon(self.process, grace=10)


def start_sshd(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Sshd:
    """``env``: variables every session gets (sshd's SetEnv), e.g. DOCKER_HOST."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    host_key = directory / "host_ed25519"
    client_key = directory / "client_ed25519"
    keygen(host_key, "shipyard-test-host")
    keygen(client_key, "shipyard-test-client")
    authorized = directory / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    port = port or reserve_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {host}:{port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {directory / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "MaxSessions 100",
                "MaxStartups 100",
                "AllowTcpForwarding yes",
                "Subsystem sftp internal-sftp",
                # This machine's root ~/.bashrc runs `pyenv init` (~0.15 s) and Debian's bash
                # sources it for every SSH command unless SHLVL says it is not a top-level shell;
                # a server's usual .bashrc returns at once for non-interactive shells.
                # (one SetEnv line: sshd keeps only the first)
                "SetEnv "
                + " ".join(
                    f"{key}={value}" for key, value in {"SHLVL": "1", **(env or {})}.items()
                ),
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    with (directory / "sshd.log").open("wb") as log:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
    deadline = time.monotonic() + 120  # a busy machine may take a while to start it
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(directory / 'sshd.log').read_text()}")
        try:
            with socket.create_connection((host, port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    public = (host_key.with_suffix(".pub")).read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[{host}]:{port} {public[0]} {public[1]}\n")
    empty = directory / "known_hosts.empty"
    empty.write_text("")
    os.chmod(known_hosts, 0o600)
    return Sshd(directory, port, process, host_key, client_key, known_hosts, empty)
