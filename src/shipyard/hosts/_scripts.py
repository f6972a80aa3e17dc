"""The POSIX shell scripts that move files on a host reached by a remote shell.

``ShellFiles`` is the file half of every such host, written once: ``SSHHost`` runs the scripts
as the SSH user, ``SudoHost`` runs the same text through ``sudo -n sh -c``. Every path is
quoted here; file contents travel on stdin, never in argv.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Unpack

from shipyard.errors import CommandFailed
from shipyard.hosts._result import CommandResult, RunOptions, StreamingOptions
from shipyard.secrets import Masker

ABSENT_EXIT = 3  # the exit code of ``get_script`` when the file does not exist


def put_script(path: PurePosixPath, mode: int, size: int) -> str:
    """Write stdin (``size`` bytes) to ``path`` atomically with ``mode``; new parents are 0700
    (umask 077).

    The file is written beside its target, then renamed over it only when all ``size`` bytes
    arrived: a transfer cut short (the connection dropped, shipyard was killed) ends stdin early
    and must never replace the file with a truncated one.
    """
    parent, name = shlex.quote(str(path.parent)), shlex.quote(f".{path.name}.")
    target = shlex.quote(str(path))
    return (
        f"umask 077 && mkdir -p {parent} && tmp=$(mktemp {parent}/{name}XXXXXX) && "
        f'{{ cat > "$tmp" && [ "$(wc -c < "$tmp")" -eq {int(size)} ] && '
        f'chmod {mode:o} "$tmp" && mv -f "$tmp" {target}; }} '
        f'|| {{ rm -f "$tmp"; exit 1; }}'
    )


def get_script(path: PurePosixPath) -> str:
    """Print ``path``; exit ``ABSENT_EXIT`` when it does not exist (any other failure is real)."""
    quoted = shlex.quote(str(path))
    return f"if [ -e {quoted} ]; then exec cat {quoted}; else exit {ABSENT_EXIT}; fi"


def tree_archive(source: Path) -> bytes:
    """A tar of ``source``'s files (not its subdirectories), each 0644 with no owner."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for item in sorted(source.iterdir()):
            if item.is_file():
                info = archive.gettarinfo(str(item), arcname=item.name)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                with item.open("rb") as handle:
                    archive.addfile(info, handle)
    return buffer.getvalue()


def put_tree_script(destination: PurePosixPath) -> str:
    """Replace the files in ``destination`` with those of a ``tree_archive`` read from stdin."""
    target = shlex.quote(str(destination))
    return (
        f"mkdir -p {target} && find {target} -maxdepth 1 -type f -delete && "
        f"tar -x --no-same-owner -f - -C {target}"
    )


def streaming_script(
    argv: Sequence[str],
    *,
    stdin_path: PurePosixPath | None,
    stdout_path: PurePosixPath | None,
    mode: int,
) -> str:
    """A POSIX shell script running ``argv`` with its stdin and/or stdout bound to files on the
    host: the output file is created with ``mode`` before anything is written, synced to disk on
    success and removed on any failure (a full disk included)."""
    command = shlex.join(argv)
    if stdin_path is not None:
        command += f" < {shlex.quote(str(stdin_path))}"
    else:
        command += " < /dev/null"
    if stdout_path is None:
        return command
    out = shlex.quote(str(stdout_path))
    return (
        f"umask 077; : > {out} && chmod {mode:o} {out} || exit 1; "
        f"{command} > {out}; rc=$?; "
        f'if [ "$rc" -eq 0 ]; then sync {out} || rc=$?; fi; '
        f'[ "$rc" -eq 0 ] || rm -f {out}; exit "$rc"'
    )


class ShellFiles:
    """Files and redirected commands on a host whose commands run through a POSIX shell there.

    A subclass supplies ``name``, ``masker``, ``run`` and ``_read`` (a script's exit code and
    raw stdout): ``put``, ``get``, ``put_tree`` and ``run_streaming`` follow from them.
    """

    masker: Masker

    @property
    def name(self) -> str:
        raise NotImplementedError

    def run(self, argv: Sequence[str], **options: Unpack[RunOptions]) -> CommandResult:
        raise NotImplementedError

    def _read(self, script: str) -> tuple[int, bytes, str]:
        """Run ``script``; its exit code, raw stdout and (masked) stderr."""
        raise NotImplementedError

    def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
        self.run(["sh", "-c", put_script(path, mode, len(data))], stdin=data)

    def get(self, path: PurePosixPath) -> bytes | None:
        returncode, stdout, stderr = self._read(get_script(path))
        if returncode == ABSENT_EXIT:
            return None
        if returncode != 0:
            raise CommandFailed(self.name, ["cat", str(path)], returncode, stderr)
        return stdout

    def put_tree(self, source: Path, destination: PurePosixPath) -> None:
        self.run(["sh", "-c", put_tree_script(destination)], stdin=tree_archive(source))

    def run_streaming(
        self, argv: Sequence[str], **options: Unpack[StreamingOptions]
    ) -> CommandResult:
        # The redirections happen on the host: dumps never cross the connection.
        script = streaming_script(
            argv,
            stdin_path=options.get("stdin_path"),
            stdout_path=options.get("stdout_path"),
            mode=options.get("mode", 0o600),
        )
        ran = self.run(["sh", "-c", script], timeout=options.get("timeout"), check=False)
        # Reported as the command it ran, not as the script around it.
        result = CommandResult(
            tuple(self.masker.argv(argv)), ran.returncode, ran.stdout, ran.stderr
        )
        if options.get("check", True) and not result.ok:
            raise CommandFailed(self.name, result.argv, result.returncode, result.stderr)
        return result
