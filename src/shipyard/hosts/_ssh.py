"""A host reached with the system's OpenSSH client.

The operator's ``~/.ssh/config``, agent and jump hosts apply. One master connection per host
(``ControlMaster``, its socket in a private temporary directory) carries every command, file
transfer and port forward; ``close`` ends it (the session that opened the host closes it, and
the master exits by itself after ``control_persist`` idle seconds anyway). Host keys are checked strictly: an
unknown or changed key is refused with the key's fingerprint and the command that trusts it.

Commands are argv lists joined with ``shlex.join`` exactly once, here. Environment values never
travel in argv: they go to the remote shell through stdin or a private file.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Unpack
from urllib.parse import urlsplit

from shipyard.errors import (
    HostKeyRejected,
    HostUnreachable,
    ShipyardError,
    ToolTooOld,
)
from shipyard.hosts._result import CommandResult, FeedOptions, RunOptions
from shipyard.hosts._runner import Runner
from shipyard.hosts._scripts import ShellFiles
from shipyard.secrets import Masker

__all__ = [
    "MIN_OPENSSH",
    "SSHHost",
    "SSHSettings",
    "SSHTarget",
    "openssh_version",
    "parse_ssh_target",
]

_DEFAULT_PORT = 22
MIN_OPENSSH = (7, 6)
_UNKNOWN_KEY = (
    "No ED25519 host key is known",
    "host key is known for",
    "Host key verification failed",
)
_CHANGED_KEY = "REMOTE HOST IDENTIFICATION HAS CHANGED"
_CONNECT_FAILURES = (
    "Connection refused",
    "Connection timed out",
    "Could not resolve hostname",
    "No route to host",
    "Permission denied",
    "Connection closed by",
    "Connection reset by",
    "Network is unreachable",
    "kex_exchange_identification",
    "Operation timed out",
)
_SSH_EXIT = 255  # ssh's own failure, as opposed to the remote command's exit code


@dataclass(frozen=True)
class SSHTarget:
    """``ssh://user@host:port`` taken apart."""

    user: str | None
    host: str
    port: int
    port_given: bool = True  # False: the URL has none, ssh's config (or 22) decides

    @property
    def destination(self) -> str:
        """``user@host:port`` for messages."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != _DEFAULT_PORT else ""
        return f"{user}{self.host}{port}"

    @property
    def known_hosts_name(self) -> str:
        """How the host appears in known_hosts (``[host]:port`` off port 22)."""
        return self.host if self.port == _DEFAULT_PORT else f"[{self.host}]:{self.port}"


def parse_ssh_target(target: str) -> SSHTarget:
    parts = urlsplit(target)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ShipyardError(f"{target!r} is not an ssh://user@host[:port] target")
    return SSHTarget(
        user=parts.username,
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORT,
        port_given=parts.port is not None,
    )


@dataclass(frozen=True)
class SSHSettings:
    """How to reach SSH targets (``providers.ssh`` in shipyard.yml)."""

    known_hosts: Path | None = None  # None: the operator's ~/.ssh/known_hosts (ssh's default)
    identity_file: Path | None = None
    options: tuple[str, ...] = ()  # extra `-o Key=Value` options
    connect_timeout: float = 10.0
    control_persist: float = 60.0


def openssh_version() -> tuple[int, int] | None:
    """The local OpenSSH client's version, from ``ssh -V``."""
    if shutil.which("ssh") is None:
        return None
    result = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


class SSHHost(ShellFiles):
    """A machine reached over SSH (system OpenSSH, one multiplexed connection)."""

    def __init__(
        self, target: str, settings: SSHSettings | None = None, masker: Masker | None = None
    ) -> None:
        self.target = parse_ssh_target(target)
        self.settings = settings or SSHSettings()
        self.masker = masker or Masker()
        self._runner = Runner(self.target.host, self.masker, self._translate)
        self._control_dir: Path | None = None
        self._connected = False
        self._lock = threading.Lock()
        self._forwards: dict[int, int] = {}
        self._home: PurePosixPath | None = None
        self._last_used = 0.0

    # -- identity ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.target.host

    def __repr__(self) -> str:
        return f"SSHHost({self.target.destination!r})"

    # -- argv ------------------------------------------------------------------------------------
    def _control_path(self) -> Path:
        if self._control_dir is None:
            # Short (a socket path is limited to ~100 bytes) and private (0700).
            self._control_dir = Path(tempfile.mkdtemp(prefix="shipyard-ssh-"))
        return self._control_dir / "cm"

    def ssh_argv(self, *extra: str) -> list[str]:
        """``ssh`` with every option shipyard relies on, before the destination."""
        s = self.settings
        argv = [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={max(1, round(s.connect_timeout))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", f"ControlPath={self._control_path()}",
        ]  # fmt: skip
        if s.known_hosts is not None:
            argv += [
                "-o",
                f"UserKnownHostsFile={s.known_hosts}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ]
        if s.identity_file is not None:
            argv += ["-i", str(s.identity_file), "-o", "IdentitiesOnly=yes"]
        for option in s.options:
            argv += ["-o", option]
        if self.target.port_given:  # otherwise a Port in ~/.ssh/config applies
            argv += ["-p", str(self.target.port)]
        if self.target.user:
            argv += ["-l", self.target.user]
        return [*argv, *extra]

    # -- connection ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the master connection (idempotent). Refuses unknown or changed host keys.

        A master left idle for most of ``control_persist`` (a long local build) may have exited:
        it is checked and, if gone, opened again, so commands keep sharing one connection.
        """
        with self._lock:
            if self._connected:
                idle = time.monotonic() - self._last_used
                self._last_used = time.monotonic()
                if idle < self.settings.control_persist * 0.5 or self._alive():
                    return
                self._connected = False
            version = openssh_version()
            if version is None:
                raise HostUnreachable(
                    f"cannot reach {self.target.destination}: the OpenSSH client `ssh` is not installed",
                    hint="install openssh-client",
                )
            if version < MIN_OPENSSH:
                raise ToolTooOld(
                    f"OpenSSH {version[0]}.{version[1]} found on this machine; "
                    f"{MIN_OPENSSH[0]}.{MIN_OPENSSH[1]} or newer is needed"
                )
            argv = self.ssh_argv(
                "-M", "-N", "-f",
                "-o", "ControlMaster=yes",
                "-o", f"ControlPersist={max(1, round(self.settings.control_persist))}",
                "--", self.target.host,
            )  # fmt: skip
            # stderr goes to a file: the backgrounded master would keep a pipe open forever.
            with tempfile.TemporaryFile() as errors:
                try:
                    proc = subprocess.run(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=errors,
                        timeout=self.settings.connect_timeout + 30,
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise HostUnreachable(
                        f"cannot reach {self.target.destination}: no answer within "
                        f"{self.settings.connect_timeout + 30:.0f}s"
                    ) from exc
                errors.seek(0)
                stderr = errors.read().decode(errors="replace")
            if proc.returncode != 0:
                raise self._connection_error(stderr)
            self._connected = True
            self._last_used = time.monotonic()

    def _alive(self) -> bool:
        check = subprocess.run(
            self.ssh_argv("-O", "check", "--", self.target.host),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return check.returncode == 0

    def _connection_error(self, stderr: str) -> HostUnreachable:
        where = self.target.destination
        if _CHANGED_KEY in stderr:
            return self._key_error(changed=True)
        if any(marker in stderr for marker in _UNKNOWN_KEY):
            return self._key_error(changed=False)
        cause = next(
            (
                line.strip()
                for line in stderr.splitlines()
                if any(m in line for m in _CONNECT_FAILURES)
            ),
            (stderr.strip().splitlines() or ["ssh exited without a message"])[-1],
        )
        hint = None
        if "Permission denied" in cause:
            hint = "check the user in the target and that your key is in the host's authorized_keys"
        return HostUnreachable(f"cannot reach {where}: {cause}", hint=hint)

    def _key_error(self, *, changed: bool) -> HostKeyRejected:
        known_hosts = self.settings.known_hosts or Path("~/.ssh/known_hosts")
        fingerprints = self.fingerprints()
        shown = "\n".join(f"    {f}" for f in fingerprints) or "    (ssh-keyscan got no key)"
        scan = shlex.join(["ssh-keyscan", "-p", str(self.target.port), self.target.host])
        trust = f"{scan} >> {shlex.quote(str(known_hosts))}"
        where = self.target.destination
        if changed:
            return HostKeyRejected(
                f"the host key of {where} has CHANGED since it was trusted ({known_hosts}); "
                f"refusing to connect. The host now presents:\n{shown}",
                hint="if the server was reinstalled, verify this fingerprint with its operator, then "
                f"`ssh-keygen -R {shlex.quote(self.target.known_hosts_name)} -f {shlex.quote(str(known_hosts))}` "
                f"and `{trust}`; otherwise someone may be intercepting the connection",
            )
        return HostKeyRejected(
            f"the host key of {where} is not in {known_hosts}; refusing to connect. "
            f"The host presents:\n{shown}",
            hint=f"verify the fingerprint out of band (e.g. the provider's console), then trust it: {trust}",
        )

    def fingerprints(self) -> list[str]:
        """``SHA256:… (ED25519)`` of the keys the host presents (``ssh-keyscan | ssh-keygen -lf -``)."""
        try:
            scan = subprocess.run(
                ["ssh-keyscan", "-T", "5", "-p", str(self.target.port), self.target.host],
                capture_output=True,
                timeout=30,
                check=False,
            )
            listed = subprocess.run(
                ["ssh-keygen", "-lf", "-"],
                input=scan.stdout,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        found = []
        for line in listed.stdout.decode(errors="replace").splitlines():
            bits, fingerprint, *_, kind = line.split()
            found.append(f"{kind.strip('()')} {fingerprint} ({bits} bits)")
        return found

    def close(self) -> None:
        """Close the master connection (and with it every forward); remove its socket directory."""
        with self._lock:
            if self._connected:
                subprocess.run(
                    self.ssh_argv("-O", "exit", "--", self.target.host),
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                self._connected = False
                self._forwards.clear()
            if self._control_dir is not None:
                shutil.rmtree(self._control_dir, ignore_errors=True)
                self._control_dir = None

    # -- commands --------------------------------------------------------------------------------
    def _remote(self, argv: Sequence[str], *, cwd: str | None, env_prefix: str) -> str:
        command = "exec " + shlex.join(argv)  # the one place an argv becomes a string
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        return env_prefix + command

    def _over_ssh(
        self, argv: Sequence[str], *, cwd: str | None = None, env_prefix: str = ""
    ) -> list[str]:
        """The ``ssh`` argv that runs ``argv`` on the host."""
        return [
            *self.ssh_argv("--", self.target.host),
            self._remote(argv, cwd=cwd, env_prefix=env_prefix),
        ]

    def _translate(self, returncode: int, stderr: str) -> HostUnreachable | None:
        """ssh's own failure (exit 255) with a lost connection: the host, not the command."""
        if returncode == _SSH_EXIT and _lost_connection(stderr):
            return self._connection_error(stderr)
        return None

    def run(self, argv: Sequence[str], **options: Unpack[RunOptions]) -> CommandResult:
        self.connect()
        env, stdin, timeout = options.get("env"), options.get("stdin"), options.get("timeout")
        env_prefix = ""
        env_file: PurePosixPath | None = None
        if env:
            # Values go to a private file read by the remote shell, then removed: never argv.
            env_file = PurePosixPath(f"/tmp/.shipyard-env-{secrets.token_hex(8)}")  # noqa: S108
            self.put(env_file, _shell_env(env), mode=0o600)
            quoted = shlex.quote(str(env_file))
            # Removed whatever sourcing it did; the command runs only if it was read.
            env_prefix = (
                f"set -a; . {quoted}; rc=$?; rm -f {quoted}; set +a; "
                '[ "$rc" -eq 0 ] || exit "$rc"; '
            )
        shown = self._runner.shown(argv)
        out = self._runner.output(
            self._over_ssh(argv, cwd=options.get("cwd"), env_prefix=env_prefix),
            shown=shown,
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            timeout=timeout,
            on_error=lambda: self._forget(env_file),
        )
        if out.returncode == _SSH_EXIT:
            self._forget(env_file)  # the remote shell may never have run to remove it
        stdout = self.masker(out.stdout.decode(errors="replace"))
        return self._runner.result(
            shown, out.returncode, stdout, out.stderr, check=options.get("check", True)
        )

    def _forget(self, env_file: PurePosixPath | None) -> None:
        """Remove a private env file the remote shell did not get to remove (best effort)."""
        if env_file is None:
            return
        with contextlib.suppress(ShipyardError, subprocess.TimeoutExpired):
            self.run(["rm", "-f", str(env_file)], check=False, timeout=30)

    def stream(
        self, argv: Sequence[str], source: IO[bytes], **options: Unpack[FeedOptions]
    ) -> CommandResult:
        self.connect()
        return self._runner.feed(
            self._over_ssh(argv),
            source,
            shown=self._runner.shown(argv),
            **options,
        )

    # -- files -------------------------------------------------------------------------------------
    def _read(self, script: str) -> tuple[int, bytes, str]:
        self.connect()
        out = self._runner.output(
            self._over_ssh(["sh", "-c", script]),
            shown=("sh", "-c", "…"),
            timeout=300,
        )
        return out.returncode, out.stdout, out.stderr

    # -- network -------------------------------------------------------------------------------------
    def tunnel(self, port: int) -> int:
        """Forward a local port to ``127.0.0.1:port`` on the host over the master connection."""
        self.connect()
        with self._lock:
            if port in self._forwards:
                return self._forwards[port]
            local = _free_port()
            spec = f"127.0.0.1:{local}:127.0.0.1:{port}"
            proc = subprocess.run(
                self.ssh_argv("-O", "forward", "-L", spec, "--", self.target.host),
                capture_output=True,
                timeout=60,
                check=False,
            )
            if proc.returncode != 0:
                raise HostUnreachable(
                    f"cannot forward a local port to {self.target.destination} 127.0.0.1:{port}: "
                    f"{proc.stderr.decode(errors='replace').strip()}"
                )
            self._forwards[port] = local
            return local

    def home(self) -> PurePosixPath:
        if self._home is None:
            result = self.run(["sh", "-c", 'printf %s "$HOME"'])
            self._home = PurePosixPath(result.stdout or "/")
        return self._home


def _shell_env(env: Mapping[str, str]) -> bytes:
    lines = []
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ShipyardError(f"{key!r} is not a valid environment variable name")
        lines.append(f"{key}={shlex.quote(value)}")
    return ("\n".join(lines) + "\n").encode()


def _lost_connection(stderr: str) -> bool:
    return (
        any(marker in stderr for marker in _CONNECT_FAILURES)
        or _CHANGED_KEY in stderr
        or any(marker in stderr for marker in _UNKNOWN_KEY)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
