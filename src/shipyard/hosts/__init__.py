"""Running commands and moving files on a target.

``Host`` is the seam every other part goes through: no code assumes the operator's machine is the
server. ``LocalHost`` is the machine shipyard runs on; ``SSHHost`` is any other machine, reached
with the system's OpenSSH client; ``SudoHost`` runs another host's commands as root. What they
share is written once: spawning, masking, timeouts, ``check`` and error translation in
``Runner``; moving files through a remote shell in ``ShellFiles``. They differ only in how a
command is spawned and how bytes move.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import IO, Unpack

from shipyard.errors import CommandFailed
from shipyard.hosts._host import Host
from shipyard.hosts._listeners import (
    Listener,
    addresses_overlap,
    listeners,
    parse_proc_net_tcp,
    parse_ss,
)
from shipyard.hosts._result import CommandResult, FeedOptions, RunOptions, StreamingOptions
from shipyard.hosts._runner import Runner
from shipyard.hosts._scripts import (
    ABSENT_EXIT,
    ShellFiles,
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
from shipyard.hosts._sudo import SudoHost
from shipyard.secrets import Masker

__all__ = [
    "ABSENT_EXIT",
    "MIN_OPENSSH",
    "CommandResult",
    "FeedOptions",
    "Host",
    "Listener",
    "LocalHost",
    "RunOptions",
    "Runner",
    "SSHHost",
    "SSHSettings",
    "SSHTarget",
    "ShellFiles",
    "StreamingOptions",
    "SudoHost",
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


class LocalHost:
    """The machine shipyard runs on."""

    def __init__(self, masker: Masker | None = None) -> None:
        self.masker = masker or Masker()
        self._runner = Runner(self.name, self.masker)

    @property
    def name(self) -> str:
        return "local"

    @property
    def runner(self) -> Runner:
        """How this host reports a command: as shown (masked), its result, and its errors
        (what runs it another way, such as an exec over the engine's API, reports the same)."""
        return self._runner

    def run(self, argv: Sequence[str], **options: Unpack[RunOptions]) -> CommandResult:
        stdin = options.get("stdin")
        return self._runner.run(
            argv,
            shown=self._runner.shown(argv),
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            env=options.get("env"),
            cwd=options.get("cwd"),
            timeout=options.get("timeout"),
            check=options.get("check", True),
        )

    def stream(
        self, argv: Sequence[str], source: IO[bytes], **options: Unpack[FeedOptions]
    ) -> CommandResult:
        return self._runner.feed(argv, source, shown=self._runner.shown(argv), **options)

    def run_streaming(
        self, argv: Sequence[str], **options: Unpack[StreamingOptions]
    ) -> CommandResult:
        shown = self._runner.shown(argv)
        stdin_path, stdout_path = options.get("stdin_path"), options.get("stdout_path")
        with ExitStack() as files:
            source = files.enter_context(open(stdin_path, "rb")) if stdin_path else None
            sink = None
            if stdout_path is not None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                fd = os.open(stdout_path, flags, options.get("mode", 0o600))
                sink = files.enter_context(os.fdopen(fd, "wb"))
            out = self._runner.output(
                argv,
                shown=shown,
                stdin=source,
                stdout=sink,
                timeout=options.get("timeout"),
                on_error=lambda: _discard(stdout_path),
            )
            if sink is not None:
                try:
                    sink.flush()
                    os.fsync(sink.fileno())
                except OSError as exc:  # ENOSPC on flush/fsync
                    _discard(stdout_path)
                    raise CommandFailed(
                        self.name, shown, -1, f"writing {stdout_path}: {exc}"
                    ) from exc
        if out.returncode != 0:
            _discard(stdout_path)
        stdout = "" if stdout_path else self.masker(out.stdout.decode(errors="replace"))
        check = options.get("check", True)
        return self._runner.result(shown, out.returncode, stdout, out.stderr, check=check)

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
