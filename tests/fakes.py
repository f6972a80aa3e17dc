"""Recording fakes for unit tests (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Unpack

from shipyard.hosts import CommandResult, FeedOptions, RunOptions, StreamingOptions

Responder = Callable[[list[str]], CommandResult | None]


class FakeHost:
    """Records commands (with their env, cwd and stdin) and keeps files in memory.
    ``respond``, or a subclass's ``answer``, may answer a command."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.commands: list[list[str]] = []
        self.contexts: list[tuple[dict[str, str], str | None]] = []  # each command's env and cwd
        self.stdins: list[str | bytes | None] = []
        self.files: dict[str, tuple[bytes, int]] = {}
        self.respond = respond

    @property
    def envs(self) -> list[dict[str, str] | None]:
        """The environment each command got (``None``: none given)."""
        return [env or None for env, _cwd in self.contexts]

    def answer(self, command: list[str], stdin: str | bytes | None) -> CommandResult | None:
        """The result of ``command`` when the fake should not act it out (else ``None``)."""
        return self.respond(command) if self.respond is not None else None

    @property
    def name(self) -> str:
        return "fake"

    def run(self, argv: Sequence[str], **options: Unpack[RunOptions]) -> CommandResult:
        command = list(argv)
        self.commands.append(command)
        self.contexts.append((dict(options.get("env") or {}), options.get("cwd")))
        self.stdins.append(options.get("stdin"))
        if (answer := self.answer(command, options.get("stdin"))) is not None:
            return answer
        if command[:2] == ["mkdir", "-m"]:
            path = command[-1]
            if path in self.files or any(f.startswith(path + "/") for f in self.files):
                return CommandResult(tuple(command), 1, "", "File exists")
            self.files[path] = (b"", 0o700)
        if command[:2] == ["mv", "-T"]:
            source, target = command[2], command[3]
            if self._exists(target) or not self._exists(source):
                return CommandResult(tuple(command), 1, "", "cannot move")
            for name in [f for f in self.files if f == source or f.startswith(source + "/")]:
                self.files[target + name[len(source) :]] = self.files.pop(name)
        if command[:2] in (["rm", "-rf"], ["rm", "-f"]):
            for path in command[2:]:
                for name in [f for f in self.files if f == path or f.startswith(path + "/")]:
                    del self.files[name]
        return CommandResult(tuple(command), 0, "", "")

    def _exists(self, path: str) -> bool:
        return any(f == path or f.startswith(path + "/") for f in self.files)

    def stream(
        self, argv: Sequence[str], source: IO[bytes], **options: Unpack[FeedOptions]
    ) -> CommandResult:
        data = source.read()
        if (progress := options.get("progress")) is not None:
            progress(len(data))
        return self.run(argv, stdin=data)

    def run_streaming(
        self, argv: Sequence[str], **options: Unpack[StreamingOptions]
    ) -> CommandResult:
        result = self.run(argv, timeout=options.get("timeout"), check=options.get("check", True))
        if (stdout_path := options.get("stdout_path")) is not None and result.ok:
            self.files[str(stdout_path)] = (result.stdout.encode(), options.get("mode", 0o600))
        return result

    def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
        self.files[str(path)] = (data, mode)

    def get(self, path: PurePosixPath) -> bytes | None:
        entry = self.files.get(str(path))
        return entry[0] if entry else None

    def put_tree(self, source: Path, destination: PurePosixPath) -> None:
        for item in source.iterdir():
            self.put(destination / item.name, item.read_bytes(), mode=0o644)

    def tunnel(self, port: int) -> int:
        return port

    def home(self) -> PurePosixPath:
        return PurePosixPath("/home/fake")
