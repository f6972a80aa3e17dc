"""How a command runs on a host, and what it did."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypedDict

__all__ = ["CommandResult", "FeedOptions", "RunOptions", "StreamingOptions"]


class RunOptions(TypedDict, total=False):
    """``Host.run``'s keyword arguments, each optional.

    ``env``: variables added to the command's environment (values never travel in argv);
    ``stdin``: data for its stdin (else it reads nothing); ``timeout``: seconds before it is
    stopped and ``CommandFailed`` raised; ``check`` (default true): a non-zero exit raises
    ``CommandFailed``; ``cwd``: the directory it runs in.
    """

    env: Mapping[str, str] | None
    stdin: str | bytes | None
    timeout: float | None
    check: bool
    cwd: str | None


class StreamingOptions(TypedDict, total=False):
    """``Host.run_streaming``'s keyword arguments, each optional.

    ``stdin_path``: a file on the host the command reads; ``stdout_path``: a file on the host its
    output goes to, created with ``mode`` (default 0600) and removed when the command fails;
    ``timeout`` and ``check`` as for ``run``.
    """

    stdin_path: PurePosixPath | None
    stdout_path: PurePosixPath | None
    mode: int
    timeout: float | None
    check: bool


class FeedOptions(TypedDict, total=False):
    """``Host.stream``'s keyword arguments: ``progress`` gets the bytes sent so far;
    ``timeout`` as for ``run``."""

    progress: Callable[[int], None] | None
    timeout: float | None


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``argv`` is masked."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0
