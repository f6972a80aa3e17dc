"""How a command runs on a host, and what it did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

__all__ = ["CommandResult", "RunOptions"]


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
