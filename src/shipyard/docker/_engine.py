"""The Docker Engine's HTTP API over the local engine's Unix socket.

An operation inspects containers and lists them dozens of times; each docker CLI call is a
process start (20 to 60 ms, more on a busy machine). Over the socket, one connection serves them
all. Reads go this way, and the changes on the way to a new version serving: its container is
created and started here (``Docker.create_and_start``), where ``docker compose up`` would cost
two Go processes and their startup before the engine's own work; a kept container is started
(``Docker.start``) and the switch's renames are made (``Docker.rename``) here too. The other
changes (stop, remove, exec, the infra project) stay docker CLI commands.

The API's documents are the CLI's: ``docker container inspect`` prints what
``GET /containers/{id}/json`` answers, so the same parsers read both.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.errors import CommandFailed, HostUnreachable

if TYPE_CHECKING:
    import httpx

DEFAULT_SOCKET = "/var/run/docker.sock"
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
    ) -> Any | None:
        """``method`` on ``path`` (with a JSON ``body``): the JSON document answered (``None``
        for an empty answer, or for 404 when ``absent``: no such object). Any other error is
        ``CommandFailed`` with the engine's message, naming the request (never its body, which
        may hold secrets)."""
        import httpx  # noqa: PLC0415

        try:
            response = self._http().request(method, path, params=params, json=body)
        except httpx.TransportError as exc:
            raise HostUnreachable(
                f"on {self.host}: the Docker engine is not reachable at {self.socket} ({exc})",
                hint=NO_ENGINE_HINT,
            ) from exc
        if response.status_code == 404 and absent:  # noqa: PLR2004
            return None
        if response.is_error:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
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
