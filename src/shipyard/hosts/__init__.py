"""Running commands and moving files on a target.

``Host`` is the seam every other part goes through: no code assumes the operator's machine is the
server. ``LocalHost`` is the machine shipyard runs on; ``SSHHost`` is any other machine, reached
with the system's OpenSSH client. The shell scripts that move files on a remote host are shared
by every host that runs commands through a remote shell (``put_script`` and its kin).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import Protocol

from shipyard.errors import CommandFailed, HostUnreachable
from shipyard.hosts._listeners import (
    Listener,
    addresses_overlap,
    listeners,
    parse_proc_net_tcp,
    parse_ss,
)
from shipyard.hosts._result import CommandResult
from shipyard.hosts._scripts import (
    ABSENT_EXIT,
    get_script,
    put_script,
    put_tree_script,
    streaming_script,
    tree_archive,
)
from shipyard.hosts._ssh import (
    MIN_OPENSSH,
    SSHHost,
    SSHSettings,
    SSHTarget,
    openssh_version,
    parse_ssh_target,
)
from shipyard.secrets import Masker

__all__ = [
    "ABSENT_EXIT",
    "MIN_OPENSSH",
    "CommandResult",
    "Host",
    "Listener",
    "LocalHost",
    "SSHHost",
    "SSHSettings",
    "SSHTarget",
    "addresses_overlap",
    "get_script",
    "listeners",
    "openssh_version",
    "parse_proc_net_tcp",
    "parse_ss",
    "parse_ssh_target",
    "put_script",
    "put_tree_script",
    "streaming_script",
    "tree_archive",
]


class Host(Protocol):
    """A machine shipyard acts on."""

    @property
    def name(self) -> str: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` (a list, never a shell string). ``check`` raises ``CommandFailed``."""
        ...

    def run_streaming(
        self,
        argv: Sequence[str],
        *,
        stdin_path: PurePosixPath | None = None,
        stdout_path: PurePosixPath | None = None,
        mode: int = 0o600,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run ``argv`` with stdin read from and/or stdout written to files on the host.

        Large outputs (database dumps) never pass through memory. ``stdout_path`` is created with
        ``mode``; when the command fails (or the disk fills) the partial file is removed. The
        result's ``stdout`` is empty when ``stdout_path`` is given.
        """
        ...

    def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
        """Write a file atomically with ``mode``, creating parent directories (0700)."""
        ...

    def get(self, path: PurePosixPath) -> bytes | None:
        """Read a file, or ``None`` when it does not exist."""
        ...

    def put_tree(self, source: Path, destination: PurePosixPath) -> None:
        """Copy a local directory's files to ``destination`` (replacing what was there)."""
        ...

    def tunnel(self, port: int) -> int:
        """A local port that reaches ``127.0.0.1:port`` on the host."""
        ...

    def home(self) -> PurePosixPath:
        """The home directory of the user shipyard acts as."""
        ...


class LocalHost:
    """The machine shipyard runs on."""

    def __init__(self, masker: Masker | None = None) -> None:
        self._masker = masker or Masker()

    @property
    def name(self) -> str:
        return "local"

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        cwd: str | None = None,
    ) -> CommandResult:
        full_env = {**os.environ, **env} if env else None
        data = stdin.encode() if isinstance(stdin, str) else stdin
        masked = tuple(self._masker.argv(argv))
        try:
            proc = subprocess.run(
                list(argv),
                input=data,
                capture_output=True,
                env=full_env,
                timeout=timeout,
                check=False,
                cwd=cwd,
                stdin=None if data is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise HostUnreachable(
                f"on {self.name}: {argv[0]!r} is not installed", hint=f"install {argv[0]} and retry"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(
                self.name, masked, -1, f"timed out after {timeout:.0f}s" if timeout else "timed out"
            ) from exc
        result = CommandResult(
            argv=masked,
            returncode=proc.returncode,
            stdout=self._masker(proc.stdout.decode(errors="replace")),
            stderr=self._masker(proc.stderr.decode(errors="replace")),
        )
        if check and not result.ok:
            raise CommandFailed(self.name, masked, result.returncode, result.stderr)
        return result

    def run_streaming(
        self,
        argv: Sequence[str],
        *,
        stdin_path: PurePosixPath | None = None,
        stdout_path: PurePosixPath | None = None,
        mode: int = 0o600,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        masked = tuple(self._masker.argv(argv))
        with ExitStack() as files:
            source = files.enter_context(open(stdin_path, "rb")) if stdin_path else None
            sink = None
            if stdout_path is not None:
                fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                sink = files.enter_context(os.fdopen(fd, "wb"))
            try:
                proc = subprocess.run(
                    list(argv),
                    stdin=source if source is not None else subprocess.DEVNULL,
                    stdout=sink if sink is not None else subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    timeout=timeout,
                    check=False,
                )
                if sink is not None:
                    sink.flush()
                    os.fsync(sink.fileno())
            except FileNotFoundError as exc:
                _discard(stdout_path)
                raise HostUnreachable(
                    f"on {self.name}: {argv[0]!r} is not installed",
                    hint=f"install {argv[0]} and retry",
                ) from exc
            except subprocess.TimeoutExpired as exc:
                _discard(stdout_path)
                raise CommandFailed(
                    self.name,
                    masked,
                    -1,
                    f"timed out after {timeout:.0f}s" if timeout else "timed out",
                ) from exc
            except OSError as exc:  # ENOSPC on flush/fsync
                _discard(stdout_path)
                raise CommandFailed(self.name, masked, -1, f"writing {stdout_path}: {exc}") from exc
        result = CommandResult(
            argv=masked,
            returncode=proc.returncode,
            stdout=""
            if stdout_path
            else self._masker((proc.stdout or b"").decode(errors="replace")),
            stderr=self._masker(proc.stderr.decode(errors="replace")),
        )
        if not result.ok:
            _discard(stdout_path)
            if check:
                raise CommandFailed(self.name, masked, result.returncode, result.stderr)
        return result

    def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, path: PurePosixPath) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def put_tree(self, source: Path, destination: PurePosixPath) -> None:
        target = Path(destination)
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        wanted = {p.name for p in source.iterdir() if p.is_file()}
        for existing in target.iterdir():
            if existing.is_file() and existing.name not in wanted:
                existing.unlink()
        for item in sorted(source.iterdir()):
            if item.is_file():
                self.put(destination / item.name, item.read_bytes(), mode=0o644)

    def tunnel(self, port: int) -> int:
        return port

    def home(self) -> PurePosixPath:
        return PurePosixPath(Path.home())

    def __repr__(self) -> str:
        return "LocalHost()"


def _discard(path: PurePosixPath | None) -> None:
    """Remove a partial output file."""
    if path is not None:
        Path(path).unlink(missing_ok=True)
