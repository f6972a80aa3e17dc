"""The Docker Engine's HTTP API over the local engine's Unix socket.

An operation inspects containers and lists them dozens of times; each docker CLI call is a
process start (20 to 60 ms, more on a busy machine). Over the socket, one connection serves them
all. Reads go this way, and the changes on the way to a new version serving: its container is
created and started here (``Docker.create_and_start``), where ``docker compose up`` would cost
two Go processes and their startup before the engine's own work; a kept container is started
(``Docker.start``), the switch's renames are made (``Docker.rename``) and the old version is
stopped (``Docker.stop``) here too, and commands run in containers (``Docker.exec``: the
database's queries, command health checks). The other changes (remove, the infra project)
stay docker CLI commands.

The API's documents are the CLI's: ``docker container inspect`` prints what
``GET /containers/{id}/json`` answers, so the same parsers read both.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from shipyard.errors import CommandFailed, HostUnreachable

if TYPE_CHECKING:
    import httpx

DEFAULT_SOCKET = "/var/run/docker.sock"
# Longest wait, once an exec's output has ended, for the engine to record its exit code.
_EXIT_CODE_WAIT_S = 10.0
# What to do when no engine answers, through the CLI or the socket.
NO_ENGINE_HINT = "start dockerd (scripts/engine.sh does on this kind of machine)"


def local_socket(endpoint: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The Unix socket the docker CLI on this machine talks to, when shipyard can tell without
    asking it: ``endpoint`` or ``DOCKER_HOST`` when it is ``unix://``, else the standard socket
    when no other context is selected (``DOCKER_CONTEXT``, or ``currentContext`` in the CLI's
    config). ``None``: TCP, SSH or another context; the CLI then does the reading too."""
    environ = os.environ if environ is None else environ
    address = endpoint or environ.get("DOCKER_HOST")
    if address:
        return address.removeprefix("unix://") if address.startswith("unix://") else None
    if environ.get("DOCKER_CONTEXT", "default") != "default":
        return None
    config_dir = environ.get("DOCKER_CONFIG") or str(Path(environ.get("HOME", "/")) / ".docker")
    try:
        config = json.loads((Path(config_dir) / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict) and config.get("currentContext", "default") != "default":
        return None
    return DEFAULT_SOCKET if Path(DEFAULT_SOCKET).is_socket() else None


class EngineAPI:
    """Requests to one engine over its Unix socket, on one kept connection.

    ``host``: the host's name, for errors. ``transport``: how requests travel (tests pass
    httpx's ``MockTransport``); by default the socket."""

    def __init__(
        self, socket: str, host: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.socket = socket
        self.host = host
        self._transport = transport
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx  # noqa: PLC0415 — only an operation that reads containers needs it

            # Plain HTTP over the socket: no TLS, so no CA bundle to read (50 ms).
            transport = self._transport or httpx.HTTPTransport(uds=self.socket, verify=False)
            self._client = httpx.Client(transport=transport, base_url="http://docker", timeout=60.0)
            # Closed with the reader: a ``Docker`` is made wherever one is needed, and its kept
            # connection goes with it.
            weakref.finalize(self, self._client.close)
        return self._client

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any | None:
        """The JSON document at ``path``; ``None`` when the engine answers 404 (no such object)."""
        return self.send("GET", path, params)

    def send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        body: Mapping[str, Any] | None = None,
        absent: bool = True,
        timeout: float | None = None,
    ) -> Any | None:
        """``method`` on ``path`` (with a JSON ``body``): the JSON document answered (``None``
        for an empty answer, or for 404 when ``absent``: no such object). Any other error is
        ``CommandFailed`` with the engine's message, naming the request (never its body, which
        may hold secrets). ``timeout``: the longest wait for the answer, for a request the
        engine takes long to answer (a stop); else the client's 60 s."""
        import httpx  # noqa: PLC0415

        wait = httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout)
        try:
            response = self._http().request(method, path, params=params, json=body, timeout=wait)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code == 404 and absent:  # noqa: PLR2004
            return None
        if response.is_error:
            message = _engine_message(response.text)
            raise CommandFailed(self.host, [method, path], response.status_code, message)
        return response.json() if response.content else None

    def containers(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """The inspect document of each of ``names`` (names or IDs) that exists, in order."""
        found = (self.get(f"/containers/{quote(name, safe='')}/json") for name in names)
        return [document for document in found if document is not None]

    def listed(self, filters: Mapping[str, list[str]], *, all: bool) -> list[dict[str, Any]]:
        """``GET /containers/json``: the containers matching ``filters`` (running ones only
        unless ``all``)."""
        params = {"all": "1" if all else "0", "filters": json.dumps(dict(filters))}
        return list(self.get("/containers/json", params) or [])

    def image(self, ref: str) -> dict[str, Any] | None:
        document = self.get(f"/images/{quote(ref, safe='/:@')}/json")  # as the docker CLI sends it
        return document if isinstance(document, dict) else None

    def exec(
        self,
        container: str,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        user: str | None = None,
        timeout: float | None = None,
    ) -> Executed:
        """``docker exec``: ``argv`` run in ``container`` to its end, fed ``stdin`` (its input
        is closed after it) — about 25 ms less than the CLI's process. The engine refusing (no
        such container, not running) is ``CommandFailed``; no end within ``timeout`` is
        ``TimeoutError`` (the process may still run in the container, as after the CLI's)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        options: dict[str, Any] = {
            "AttachStdin": stdin is not None,
            "AttachStdout": True,
            "AttachStderr": True,
            "Cmd": list(argv),
        }
        if user:
            options["User"] = user
        path = f"/containers/{quote(container, safe='')}/exec"
        created = self.send("POST", path, body=options, absent=False)
        if not isinstance(created, dict) or not created.get("Id"):
            raise CommandFailed(self.host, ["POST", path], 0, "the engine named no exec ID")
        exec_id = quote(str(created["Id"]), safe="")
        stdout, stderr = self._attached(f"/exec/{exec_id}/start", stdin, deadline)
        # The output ends when the process does; its exit code is recorded right after.
        recorded = time.monotonic() + _EXIT_CODE_WAIT_S
        if deadline is not None:
            recorded = min(recorded, deadline)
        while True:
            info = self.send("GET", f"/exec/{exec_id}/json", absent=False)
            if (
                isinstance(info, dict)
                and not info.get("Running")
                and info.get("ExitCode") is not None
            ):
                return Executed(int(info["ExitCode"]), stdout, stderr)
            if time.monotonic() > recorded:
                raise TimeoutError(f"exec in {container}: no exit code recorded")
            time.sleep(0.005)

    def _attached(
        self, path: str, stdin: bytes | None, deadline: float | None
    ) -> tuple[bytes, bytes]:
        """Start the exec at ``path`` attached, on a connection of its own that the engine
        hijacks (the HTTP upgrade ``docker exec`` makes): ``stdin``, if any, is written from a
        thread while the output is read (neither side's pipe can fill and stall the other), then
        its end is signalled by closing this side's writing half. The output is Docker's stream
        format: 8-byte frame headers (stream 1 stdout, 2 stderr; a big-endian length)."""
        body = json.dumps({"Detach": False, "Tty": False}).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        ).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(_remaining(deadline))
                sock.connect(self.socket)
                sock.sendall(head + body)
                with sock.makefile("rb") as reader:
                    return self._output(sock, reader, path, stdin, deadline)
        except TimeoutError:
            raise
        except OSError as exc:  # refused, reset, or not an HTTP answer
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> HostUnreachable:
        return HostUnreachable(
            f"on {self.host}: the Docker engine is not reachable at {self.socket} ({exc})",
            hint=NO_ENGINE_HINT,
        )

    def _output(
        self,
        sock: socket.socket,
        reader: BinaryIO,
        path: str,
        stdin: bytes | None,
        deadline: float | None,
    ) -> tuple[bytes, bytes]:
        """The answer to the exec's start on ``sock`` (read through ``reader``): the engine's
        refusal, or the exec's output read to its end, stdout and stderr apart."""
        status = _response_head(reader)
        if status.code not in (101, 200):  # switched, or an older engine's OK
            message = _engine_message(reader.read(status.length or 0).decode(errors="replace"))
            raise CommandFailed(self.host, ["POST", path], status.code, message)
        writer = None
        if stdin is not None:
            writer = threading.Thread(target=_feed, args=(sock, stdin), daemon=True)
            writer.start()
        streams: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        while True:
            sock.settimeout(_remaining(deadline))
            header = reader.read(8)
            if len(header) < 8:  # noqa: PLR2004
                break
            kind, size = header[0], int.from_bytes(header[4:8], "big")
            streams.setdefault(kind, bytearray()).extend(reader.read(size))
        if writer is not None:
            writer.join(timeout=_remaining(deadline))
        return bytes(streams[1]), bytes(streams[2])


@dataclass(frozen=True)
class Executed:
    """An exec that ended: its exit code and raw output."""

    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class _Status:
    code: int
    length: int | None  # Content-Length, when given


def _engine_message(text: str) -> str:
    """The message of an error the engine answered (``{"message": …}``), else its text."""
    try:
        document = json.loads(text)
    except ValueError:
        return text
    return str(document.get("message", text)) if isinstance(document, dict) else text


def _response_head(reader: BinaryIO) -> _Status:
    """The status line and headers of an HTTP response, read up to its blank line."""
    line = reader.readline(65536).decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():  # noqa: PLR2004
        raise OSError(f"not an HTTP answer: {line.strip()[:80]!r}")
    length = None
    while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    return _Status(int(parts[1]), length)


def _feed(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` to a hijacked connection, then close its writing half: the process's
    input ends there."""
    with contextlib.suppress(OSError):  # the process may end without reading it all
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left
