"""The ``Host`` protocol: the seam every other part goes through to act on a machine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Protocol, Unpack

from shipyard.hosts._result import CommandResult, FeedOptions, RunOptions, StreamingOptions

__all__ = ["Host"]


class Host(Protocol):
    """A machine shipyard acts on."""

    @property
    def name(self) -> str: ...

    def run(self, argv: Sequence[str], **options: Unpack[RunOptions]) -> CommandResult:
        """Run ``argv`` (a list, never a shell string). ``check`` raises ``CommandFailed``."""
        ...

    def stream(
        self, argv: Sequence[str], source: IO[bytes], **options: Unpack[FeedOptions]
    ) -> CommandResult:
        """Run ``argv`` with ``source`` copied to its stdin as it is read (nothing is buffered
        whole: an image's ``docker save``); ``progress`` gets the bytes sent so far. A non-zero
        exit raises ``CommandFailed``."""
        ...

    def run_streaming(
        self, argv: Sequence[str], **options: Unpack[StreamingOptions]
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
