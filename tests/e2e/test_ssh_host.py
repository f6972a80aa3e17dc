"""SSHHost against a real OpenSSH server: commands, files, env, forwards, one shared connection."""

from __future__ import annotations

import glob
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import pytest

from shipyard.hosts import SSHHost, SSHSettings
from tests.e2e.sshd import Sshd


@pytest.fixture
def host(sshd: Sshd) -> Iterator[SSHHost]:
    connected = SSHHost(
        sshd.target, SSHSettings(known_hosts=sshd.known_hosts, identity_file=sshd.client_key)
    )
    try:
        yield connected
    finally:
        connected.close()


def test_commands_are_quoted_and_share_one_connection(host: SSHHost, sshd: Sshd) -> None:
    result = host.run(["printf", "%s|", "a b", "$HOME", "it's", "*"])
    assert result.stdout == "a b|$HOME|it's|*|"
    for _ in range(5):
        host.run(["true"])
    log = (sshd.dir / "sshd.log").read_text()
    assert log.count("Accepted publickey") == 1, "every command went through the master connection"
    failed = host.run(["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert (failed.returncode, failed.stderr.strip()) == (3, "oops")


def test_env_values_never_reach_argv_and_leave_no_file(host: SSHHost) -> None:
    secret = "s3cret value with 'quotes' and $dollar"
    seen = host.run(
        ["sh", "-c", 'printf %s "$API_TOKEN"; ps -eo args | grep -c "s3cret valu[e]" || true'],
        env={"API_TOKEN": secret},
    ).stdout
    assert seen.startswith(secret)
    assert seen.removeprefix(secret).strip() == "0", "the value is in no process's arguments"
    assert glob.glob("/tmp/.shipyard-env-*") == []


def test_put_is_atomic_with_mode_and_get_tells_missing(host: SSHHost, tmp_path: Path) -> None:
    target = PurePosixPath(str(tmp_path / "new" / "dir" / "state.json"))
    host.put(target, b'{"a": 1}\n', mode=0o640)
    assert Path(target).read_bytes() == b'{"a": 1}\n'
    assert Path(target).stat().st_mode & 0o777 == 0o640
    assert Path(target).parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in Path(target).parent.iterdir()] == ["state.json"]  # no temp left
    assert host.get(target) == b'{"a": 1}\n'
    assert host.get(PurePosixPath(str(tmp_path / "absent"))) is None

    source = tmp_path / "src"
    source.mkdir()
    (source / "001.up.sql").write_text("select 1;")
    tree = PurePosixPath(str(tmp_path / "tree"))
    Path(tree).mkdir()
    (Path(tree) / "stale.sql").write_text("old")
    host.put_tree(source, tree)
    assert sorted(p.name for p in Path(tree).iterdir()) == ["001.up.sql"]


def test_tunnel_reaches_the_hosts_loopback(host: SSHHost) -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"through the tunnel")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        local = host.tunnel(server.server_port)
        assert local != server.server_port
        assert httpx.get(f"http://127.0.0.1:{local}/", timeout=10).text == "through the tunnel"
        assert host.tunnel(server.server_port) == local  # one forward per port
    finally:
        server.shutdown()
        server.server_close()
    assert host.home() == PurePosixPath("/root")
