"""The GCP stand-in's data plane: what Cloud Run serves for the services the stand-in's Cloud Run
(``tests.gcp.run``) records, as far as a deploy observes it.

The stand-in runs no container. Each service's URL, and each traffic tag's, is a path of one
local HTTP server (``<url>/<service>/<tag>``; ``-`` for the service's own URL, which sends every
request to the revision with all the traffic); it answers as the revision behind it would:
``/version`` with the release's commit (the revision's ``shipyard-commit`` label), anything else
200, or 503 for a revision a test marks unhealthy. What a deploy proves against it is what it
sends: which revision each URL reaches, and that the traffic moved to the new one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gcp.run import RunModel


class DataPlane:
    """The answers of the services of ``run``'s stand-in (see the module)."""

    def __init__(self, run: RunModel) -> None:
        self.run = run
        self.url = ""
        self.unhealthy: set[str] = set()  # revisions (short names) whose health answers 503
        self.requests: list[str] = []

    def url_for(self, service: str, tag: str | None) -> str:
        return f"{self.url}/{service}/{tag or '-'}"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """What ``path`` (``/<service>/<tag>/<rest>``) answers."""
        _, service, tag, *rest = [*path.split("?", 1)[0].split("/"), ""][:4]
        with self.run.standin.lock:
            found = next(
                (s for n, s in self.run.services.items() if n.endswith(f"/services/{service}")),
                None,
            )
            if found is None:
                return 404, {"error": f"no service {service}"}
            if tag == "-":
                target = next((t for t in found.traffic if t.get("percent") == 100), None)
            else:
                target = next((t for t in found.traffic if t.get("tag") == tag), None)
            revision = self.run.revisions.get(target["revision"]) if target else None
        if revision is None or not revision.get("_ready"):
            return 503, {"error": "no revision ready behind this URL"}
        short = str(revision["name"]).rsplit("/", 1)[-1]
        if "/" + "/".join(rest) == "/version":
            labels = revision.get("labels") or {}
            return 200, {"revision": short, "git_commit": labels.get("shipyard-commit", "")}
        if short in self.unhealthy:
            return 503, {"status": "unhealthy"}
        return 200, {"status": "healthy"}


@contextmanager
def data_plane(run: RunModel) -> Iterator[DataPlane]:
    """The data plane of ``run``'s services, serving until the block ends; the Cloud Run
    stand-in's URLs point at it meanwhile."""
    plane = DataPlane(run)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            plane.requests.append(self.path)
            status, body = plane.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    plane.url = f"http://127.0.0.1:{server.server_address[1]}"
    previous = run.url_for
    run.url_for = plane.url_for
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="gcp-data-plane", daemon=True)  # fmt: skip
    thread.start()
    try:
        yield plane
    finally:
        run.url_for = previous
        server.shutdown()
        server.server_close()
