"""A warm server's command imports nothing more for what every deploy, rollback and status does:
a request to the engine over its socket, rich markup on a console, a YAML file read."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_PROBE = textwrap.dedent(
    """
    import io, json, os, pathlib, socket, sys, threading

    from shipyard.warm._server import _preload

    _preload()
    scratch = sys.argv[1]
    path = os.path.join(scratch, "engine.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        body = b'{"Version": "20.10.24"}'
        conn.sendall(
            b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
            b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body)
        )
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    yaml = os.path.join(scratch, "shipyard.yml")
    with open(yaml, "w") as f:
        f.write("app:\\n  name: demo\\nbase: &b {port: 8080}\\nweb:\\n  <<: *b\\n")
    before = set(sys.modules)

    from rich.console import Console

    from shipyard.config._yaml import read_yaml
    from shipyard.docker._engine import EngineAPI

    answered = EngineAPI(path, "local").get("/version")
    Console(file=io.StringIO(), force_terminal=True).print("[bold]live[/] :rocket: demo")
    read_yaml(pathlib.Path(yaml))
    print(json.dumps({"answered": answered, "new": sorted(set(sys.modules) - before)}))
    """
)


def test_a_command_of_a_warm_server_imports_nothing_for_the_engine_markup_or_yaml(
    tmp_path: Path,
) -> None:
    probe = subprocess.run(
        [sys.executable, "-P", "-c", _PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["answered"] == {"Version": "20.10.24"}  # the request really went over the socket
    assert found["new"] == []
