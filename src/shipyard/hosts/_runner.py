"""The one place a host spawns a process on this machine.

Every host runs its commands as a local process: ``LocalHost`` the command itself, ``SSHHost``
an ``ssh`` client carrying it. What they share is written once here: the argv shown in results
and errors is masked, so is every output; a timeout, a missing program and a non-zero exit
become the same errors everywhere; and a host may translate a failure of its transport (a lost
SSH connection) into its own error before ``check`` applies.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Unpack

from shipyard.errors import CommandFailed, HostError, HostUnreachable
from shipyard.hosts._result import CommandResult, FeedOptions
from shipyard.secrets import Masker

__all__ = ["Output", "Runner"]

_CHUNK = 1 << 20

# A host's own reading of a finished process (exit code, masked stderr): an error to raise
# instead of the command's result (the transport failed, not the command), or ``None``.
Translate = Callable[[int, str], HostError | None]


@dataclass(frozen=True)
class Output:
    """A finished process: its exit code, its raw stdout and its masked stderr."""

    returncode: int
    stdout: bytes
    stderr: str


@dataclass
class Runner:
    """Spawns processes for the host called ``host``, masking with ``masker``."""

    host: str
    masker: Masker = field(default_factory=Masker)
    translate: Translate = lambda _rc, _stderr: None

    def shown(self, argv: Sequence[str]) -> tuple[str, ...]:
        """``argv`` as results and errors show it."""
        return tuple(self.masker.argv(argv))

    def output(
        self,
        command: Sequence[str],
        *,
        shown: Sequence[str],
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        on_error: Callable[[], None] = lambda: None,
    ) -> Output:
        """Run ``command`` to its end. ``stdin`` is data or an open file; ``stdout`` an open
        file to write to (else it is captured). ``on_error`` runs before any error is raised
        (a partial output file to remove, a private file to forget)."""
        data = stdin if isinstance(stdin, bytes) else None
        source: IO[bytes] | int | None = None
        if data is None:
            source = (
                stdin if stdin is not None and not isinstance(stdin, bytes) else subprocess.DEVNULL
            )
        try:
            proc = subprocess.run(
                list(command),
                input=data,
                stdin=source,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **env} if env else None,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            on_error()
            raise HostUnreachable(
                f"on {self.host}: {command[0]!r} is not installed",
                hint=f"install {command[0]} and retry",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            on_error()
            raise self.timed_out(shown, timeout) from exc
        stderr = self.masker(proc.stderr.decode(errors="replace"))
        if (failure := self.translate(proc.returncode, stderr)) is not None:
            on_error()
            raise failure
        return Output(proc.returncode, proc.stdout or b"", stderr)

    def run(
        self,
        command: Sequence[str],
        *,
        shown: Sequence[str],
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_error: Callable[[], None] = lambda: None,
    ) -> CommandResult:
        """Run ``command``, reporting it as ``shown`` (already masked)."""
        out = self.output(
            command, shown=shown, stdin=stdin, env=env, cwd=cwd, timeout=timeout, on_error=on_error
        )
        return self.result(
            shown,
            out.returncode,
            self.masker(out.stdout.decode(errors="replace")),
            out.stderr,
            check=check,
        )

    def feed(
        self,
        command: Sequence[str],
        source: IO[bytes],
        *,
        shown: Sequence[str],
        **options: Unpack[FeedOptions],
    ) -> CommandResult:
        """Run ``command`` with ``source`` copied to its stdin as it is read (nothing is
        buffered whole), while its output is collected. A failure always raises."""
        try:
            proc = subprocess.Popen(
                list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise HostUnreachable(
                f"on {self.host}: {command[0]!r} is not installed",
                hint=f"install {command[0]} and retry",
            ) from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # noqa: S101
        outputs: dict[str, bytes] = {}

        def collect(name: str, stream: IO[bytes]) -> None:
            outputs[name] = stream.read()

        readers = [
            threading.Thread(target=collect, args=("out", proc.stdout), daemon=True),
            threading.Thread(target=collect, args=("err", proc.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        progress, timeout = options.get("progress"), options.get("timeout")
        sent = 0
        try:
            for moved in _moved(source, proc.stdin):
                sent += moved
                if progress is not None:
                    progress(sent)
        except BrokenPipeError:
            pass  # the command stopped reading: its exit code and stderr say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise self.timed_out(shown, timeout) from exc
        for reader in readers:
            reader.join(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
        stderr = self.masker(outputs.get("err", b"").decode(errors="replace"))
        if (failure := self.translate(proc.returncode, stderr)) is not None:
            raise failure
        stdout = self.masker(outputs.get("out", b"").decode(errors="replace"))
        return self.result(shown, proc.returncode, stdout, stderr, check=True)

    def result(
        self, shown: Sequence[str], returncode: int, stdout: str, stderr: str, *, check: bool
    ) -> CommandResult:
        """The result of a command shown as ``shown``; ``check`` raises on a non-zero exit."""
        result = CommandResult(tuple(shown), returncode, stdout, stderr)
        if check and not result.ok:
            raise CommandFailed(self.host, result.argv, returncode, stderr)
        return result

    def timed_out(self, shown: Sequence[str], timeout: float | None) -> CommandFailed:
        return CommandFailed(
            self.host, shown, -1, f"timed out after {timeout:.0f}s" if timeout else "timed out"
        )


def _moved(source: IO[bytes], sink: IO[bytes]) -> Iterator[int]:
    """Move ``source`` into ``sink`` chunk by chunk, yielding each chunk's size. Between two
    pipes (``docker save`` into ssh) Linux's splice moves the bytes without copying them through
    this process; otherwise they are read and written."""
    if hasattr(os, "splice"):
        try:
            while moved := os.splice(source.fileno(), sink.fileno(), _CHUNK):
                yield moved
            return
        except (OSError, ValueError, io.UnsupportedOperation) as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            # not two pipes (or no file descriptors): copy instead, from where splice stopped
    while chunk := source.read(_CHUNK):
        sink.write(chunk)
        yield len(chunk)
