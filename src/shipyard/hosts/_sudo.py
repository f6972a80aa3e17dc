"""A host whose commands run as root through ``sudo -n`` (no password prompt: sudo must be set
up), for ``shipyard provision`` connecting as a sudoer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import IO, Unpack

from shipyard.hosts._host import Host
from shipyard.hosts._result import CommandResult, FeedOptions, RunOptions
from shipyard.hosts._scripts import ShellFiles
from shipyard.secrets import Masker

__all__ = ["SudoHost"]


class SudoHost(ShellFiles):
    """Runs every command of ``inner`` through ``sudo -n``.

    sudo resets the environment: the names of ``env`` are passed with ``--preserve-env`` (their
    values travel as ``inner`` sends environments, never in argv). Files move with the same
    scripts as ``SSHHost``'s, run as root.
    """

    def __init__(self, host: Host, masker: Masker | None = None) -> None:
        self.inner = host
        self.masker = masker or Masker()

    @property
    def name(self) -> str:
        return self.inner.name

    @staticmethod
    def _sudo(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        sudo = ["sudo", "-n"]
        if env:
            sudo.append("--preserve-env=" + ",".join(env))
        return [*sudo, "--", *argv]

    def run(self, argv: Sequence[str], **options: Unpack[RunOptions]) -> CommandResult:
        return self.inner.run(self._sudo(argv, options.get("env")), **options)

    def stream(
        self, argv: Sequence[str], source: IO[bytes], **options: Unpack[FeedOptions]
    ) -> CommandResult:
        return self.inner.stream(self._sudo(argv), source, **options)

    def _read(self, script: str) -> tuple[int, bytes, str]:
        # The whole script runs as root, so root-owned files can be read.
        result = self.run(["sh", "-c", script], check=False)
        return result.returncode, result.stdout.encode(), result.stderr

    def tunnel(self, port: int) -> int:
        return self.inner.tunnel(port)

    def home(self) -> PurePosixPath:
        return self.inner.home()
