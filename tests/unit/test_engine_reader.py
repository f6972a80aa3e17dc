"""Reads from the Docker Engine's API (``shipyard.docker._engine``): which socket the CLI would
use, and the reader's answers, errors and requests, on httpx's MockTransport."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.docker import Docker, EngineAPI, parse_image
from shipyard.docker import _engine as engine
from shipyard.errors import CommandFailed, HostUnreachable, ShipyardError
from shipyard.hosts import LocalHost

GOLDEN = Path(__file__).parent / "golden"
INSPECT = json.loads((GOLDEN / "container-inspect.json").read_text())[0]


@pytest.fixture
def standard_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A listening Unix socket standing where the engine's standard one is looked for."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    monkeypatch.setattr(engine, "DEFAULT_SOCKET", str(path))
    yield str(path)
    server.close()


@pytest.mark.parametrize(
    ("endpoint", "environ", "expected"),
    [
        (None, {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
        ("unix:///tmp/engine.sock", {"DOCKER_HOST": "tcp://10.0.0.2:2376"}, "/tmp/engine.sock"),
        (None, {"DOCKER_HOST": "tcp://10.0.0.2:2376"}, None),
        (None, {"DOCKER_HOST": "ssh://deploy@web-1"}, None),
        (None, {"DOCKER_CONTEXT": "colima"}, None),
    ],
)
def test_the_socket_is_the_one_the_cli_would_use(
    endpoint: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert engine.local_socket(endpoint, environ) == expected


def test_the_standard_socket_unless_the_cli_config_selects_another_context(
    tmp_path: Path, standard_socket: str
) -> None:
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    environ = {"HOME": str(home)}
    assert engine.local_socket(None, environ) == standard_socket  # no config file at all
    (home / ".docker" / "config.json").write_text('{"currentContext": "default"}')
    assert engine.local_socket(None, environ) == standard_socket
    (home / ".docker" / "config.json").write_text('{"currentContext": "desktop-linux"}')
    assert engine.local_socket(None, environ) is None
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "config.json").write_text("{not json")
    assert engine.local_socket(None, {**environ, "DOCKER_CONFIG": str(other)}) == standard_socket


def test_no_socket_no_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "DEFAULT_SOCKET", str(tmp_path / "absent.sock"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Docker(LocalHost()).api is None


def _reader(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[EngineAPI, list[str]]:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return answer(request)

    return EngineAPI("/x.sock", "local", transport=httpx.MockTransport(handler)), asked


def _docker(reader: EngineAPI) -> Docker:
    docker = Docker(LocalHost())
    docker.api = reader
    return docker


def test_inspections_read_the_api_documents_and_a_missing_container_is_none() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/containers/shop-development-blue/json":
            return httpx.Response(200, json=INSPECT)
        return httpx.Response(404, json={"message": "No such container: gone"})

    reader, asked = _reader(answer)
    docker = _docker(reader)
    info = docker.container("shop-development-blue")
    assert info is not None and info.name == "shop-development-blue"
    assert info.ports == {8080: 32768} and info.labels["org.shipyard.slot"] == "blue"
    assert docker.container("gone") is None
    found = docker.containers_named(["gone", "shop-development-blue"])
    assert found == {"gone": None, "shop-development-blue": info}
    assert len(asked) == 4  # one request per name, over one client


def test_a_listing_sends_the_filters_and_reads_the_names() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/containers/json":
            return httpx.Response(
                200, json=[{"Id": "b", "Names": ["/shop-b"]}, {"Id": "a", "Names": ["/shop-a"]}]
            )
        return httpx.Response(200, json=INSPECT)

    reader, asked = _reader(answer)
    docker = _docker(reader)
    assert docker.containers({"org.shipyard.app": "shop", "org.shipyard.role": "app"}) == [
        "shop-a",
        "shop-b",
    ]
    query = httpx.URL(asked[0]).params
    assert query["all"] == "1"
    assert json.loads(query["filters"]) == {
        "label": ["org.shipyard.app=shop", "org.shipyard.role=app"]
    }
    assert docker.containers_using("shop:1") == ["shop-a", "shop-b"]
    assert json.loads(httpx.URL(asked[1]).params["filters"]) == {"ancestor": ["shop:1"]}
    assert [info.name for info in docker.running()] == ["shop-development-blue"] * 2
    assert httpx.URL(asked[2]).params["all"] == "0"


def test_an_image_reference_travels_as_the_cli_sends_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.raw_path == b"/images/registry.example:5000/shop/app:1.2/json":
            return httpx.Response(200, json={"Id": "sha256:abc", "Config": {"Labels": {}}})
        return httpx.Response(404, json={"message": "No such image"})

    reader, _ = _reader(answer)
    docker = _docker(reader)
    image = docker.image("registry.example:5000/shop/app:1.2")
    assert image is not None and image.id == "sha256:abc"
    assert docker.image("shop:missing") is None


def test_an_engine_error_names_the_request_and_the_engine_message() -> None:
    reader, _ = _reader(lambda _: httpx.Response(500, json={"message": "layer store broken"}))
    with pytest.raises(CommandFailed) as raised:
        _docker(reader).container("shop-development-blue")
    assert raised.value.returncode == 500
    assert "layer store broken" in raised.value.stderr
    assert raised.value.argv == ["GET", "/containers/shop-development-blue/json"]


def test_an_engine_that_does_not_answer_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    reader, _ = _reader(refuse)
    with pytest.raises(HostUnreachable, match=r"not reachable at /x\.sock"):
        _docker(reader).labelled({"org.shipyard.app": "shop"})


@pytest.mark.parametrize(
    ("healthcheck", "expected"),
    [
        ({"Test": ["CMD", "false"], "Interval": 1000000000}, True),
        ({"Test": ["CMD-SHELL", "curl -f localhost"]}, True),
        ({"Test": ["NONE"]}, False),  # HEALTHCHECK NONE: the base image's is switched off
        (None, False),
    ],
)
def test_an_image_says_whether_it_has_its_own_healthcheck(
    healthcheck: dict[str, object] | None, expected: bool
) -> None:
    document = {"Id": "sha256:abc", "Config": {"Healthcheck": healthcheck}}
    assert parse_image(document).healthcheck is expected


def _engine(
    containers: dict[str, dict[str, Any]], *, unhealthy_after: int | None = None
) -> tuple[Docker, list[tuple[str, str, Any]]]:
    """An engine holding ``containers`` (name → inspect document) that answers removals,
    creations, starts and renames, recording each request's method, path and body."""
    requests: list[tuple[str, str, Any]] = []
    inspected = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal inspected
        body = json.loads(request.content) if request.content else None
        requests.append((request.method, request.url.path, body))
        path = request.url.path
        if request.method == "DELETE":
            name = path.removeprefix("/containers/")
            return httpx.Response(204) if containers.pop(name, None) else httpx.Response(404)
        if path == "/containers/create":
            name = request.url.params["name"]
            if name in containers:
                return httpx.Response(409, json={"message": f'Conflict. "/{name}" is in use'})
            containers[name] = {**INSPECT, "Name": f"/{name}", "Id": f"id-{name}"}
            return httpx.Response(201, json={"Id": f"id-{name}", "Warnings": []})
        if path.endswith(("/start", "/rename")):
            return _start_or_rename(containers, request)
        name = path.removeprefix("/containers/").removesuffix("/json")
        found = containers.get(name)
        if found is None:
            return httpx.Response(404, json={"message": "No such container"})
        inspected += 1
        health = "unhealthy" if unhealthy_after and inspected > unhealthy_after else "starting"
        state = {**found["State"], "Health": {"Status": health}}
        return httpx.Response(200, json={**found, "State": state})

    reader, _ = _reader(answer)
    return _docker(reader), requests


def _start_or_rename(
    containers: dict[str, dict[str, Any]], request: httpx.Request
) -> httpx.Response:
    if request.url.path.endswith("/start"):
        return httpx.Response(204)
    old = request.url.path.removeprefix("/containers/").removesuffix("/rename")
    new = request.url.params["name"]
    if new in containers:
        return httpx.Response(409, json={"message": f'Conflict. "/{new}" is in use'})
    if old not in containers:
        return httpx.Response(404, json={"message": f"No such container: {old}"})
    containers[new] = {**containers.pop(old), "Name": f"/{new}"}
    return httpx.Response(204)


def test_a_container_is_replaced_created_and_started_over_the_api() -> None:
    docker, requests = _engine({"id-old": INSPECT})
    body = {"Image": "shop:2", "Env": ["JWT_SECRET=s3cret"]}
    docker.create_and_start("shop-development-green", body, replacing="id-old")
    assert [(method, path) for method, path, _ in requests] == [
        ("DELETE", "/containers/id-old"),
        ("POST", "/containers/create"),
        ("POST", "/containers/id-shop-development-green/start"),
    ]
    assert requests[1][2] == body


def test_a_refused_creation_names_the_request_but_not_the_environment() -> None:
    docker, _ = _engine({"shop-development-green": INSPECT})
    with pytest.raises(CommandFailed) as raised:
        docker.create_and_start("shop-development-green", {"Env": ["JWT_SECRET=s3cret"]})
    assert raised.value.returncode == 409 and "is in use" in raised.value.stderr
    assert "s3cret" not in str(raised.value) + raised.value.stderr + " ".join(raised.value.argv)


def test_an_image_healthcheck_is_waited_for_and_unhealthy_fails_the_start() -> None:
    docker, _ = _engine({}, unhealthy_after=2)
    with pytest.raises(ShipyardError, match="is unhealthy"):
        docker.create_and_start("shop-development-green", {"Image": "shop:2"}, healthy_within=30)


def test_a_switch_renames_over_the_api_and_a_taken_name_is_refused() -> None:
    docker, requests = _engine(
        {"shop-development-live": INSPECT, "shop-development-green": INSPECT}
    )
    docker.rename("shop-development-live", "shop-development-switching")
    assert docker.container("shop-development-switching") is not None
    assert docker.container("shop-development-live") is None
    assert requests[0][:2] == ("POST", "/containers/shop-development-live/rename")
    with pytest.raises(CommandFailed) as raised:
        docker.rename("shop-development-green", "shop-development-switching")
    assert raised.value.returncode == 409 and "is in use" in raised.value.stderr
    with pytest.raises(CommandFailed) as raised:
        docker.rename("shop-development-blue", "shop-development-live")
    assert raised.value.returncode == 404  # not taken for "absent": a rename needs its container


def test_a_kept_container_is_started_over_the_api() -> None:
    docker, requests = _engine({"shop-development-blue": INSPECT})
    docker.start("shop-development-blue")
    assert [(method, path) for method, path, _ in requests] == [
        ("POST", "/containers/shop-development-blue/start")
    ]


def test_the_old_version_is_stopped_over_the_api_with_its_grace_period() -> None:
    """``t`` carries the grace period, and the answer is waited for beyond it (the engine
    answers only once the container has stopped: after SIGKILL at worst)."""
    waits: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        waits.append(request.extensions["timeout"])
        if request.url.path == "/containers/shop-development-blue/stop":
            return httpx.Response(304 if len(waits) > 1 else 204)  # 304: already stopped
        return httpx.Response(404, json={"message": "No such container: gone"})

    reader, asked = _reader(answer)
    docker = _docker(reader)
    docker.stop("shop-development-blue", timeout=15)
    docker.stop("shop-development-blue", timeout=15)
    assert asked == ["http://docker/containers/shop-development-blue/stop?t=15"] * 2
    assert waits[0]["read"] == 75
    with pytest.raises(CommandFailed) as raised:
        docker.stop("gone", timeout=15)
    assert raised.value.returncode == 404 and "No such container" in raised.value.stderr


def _frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


@pytest.fixture
def hijacking_engine(tmp_path: Path) -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    """A Unix socket answering each connection with the next of ``answers`` (raw bytes, sent
    in small pieces), then recording what the client wrote until it closed its writing half."""
    path = str(tmp_path / "engine.sock")
    answers: list[bytes] = []
    received: list[bytes] = []
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                answer = answers.pop(0)
                for start in range(0, len(answer), 7):  # frames split across reads
                    conn.sendall(answer[start : start + 7])
                if answer.startswith(b"HTTP/1.1 101"):
                    data = request.split(b"\r\n\r\n", 1)[1].removeprefix(
                        b'{"Detach": false, "Tty": false}'
                    )
                    while chunk := conn.recv(65536):
                        data += chunk
                    received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, answers, received
    server.close()


def _exec_api(path: str) -> EngineAPI:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/exec"):
            return httpx.Response(201, json={"Id": "e1"})
        return httpx.Response(200, json={"Running": False, "ExitCode": 3})

    return EngineAPI(path, "local", transport=httpx.MockTransport(answer))


_UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


def test_an_exec_feeds_its_input_and_reads_its_framed_output_apart(
    hijacking_engine: tuple[str, list[bytes], list[bytes]],
) -> None:
    path, answers, received = hijacking_engine
    answers.append(
        _UPGRADED + _frame(1, b"out-1 ") + _frame(2, b"err\n") + _frame(1, b"x" * 70_000)
    )
    done = _exec_api(path).exec("db", ["psql"], stdin=b"SELECT 1;\n", timeout=30)
    assert done.returncode == 3
    assert done.stdout == b"out-1 " + b"x" * 70_000 and done.stderr == b"err\n"
    assert received == [b"SELECT 1;\n"]  # all of it, then the end of the input


def test_an_exec_the_engine_refuses_or_cannot_answer_is_named(
    hijacking_engine: tuple[str, list[bytes], list[bytes]],
) -> None:
    path, answers, _ = hijacking_engine
    refusal = b'{"message":"Container db is not running"}'
    answers.append(
        b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(refusal)}\r\n\r\n".encode()
        + refusal
    )
    with pytest.raises(CommandFailed) as raised:
        _exec_api(path).exec("db", ["true"], timeout=30)
    assert raised.value.returncode == 409 and raised.value.stderr == "Container db is not running"
    answers.append(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(HostUnreachable, match="not an HTTP answer"):
        _exec_api(path).exec("db", ["true"], timeout=30)
    with pytest.raises(HostUnreachable, match="not reachable"):
        _exec_api(path + ".absent").exec("db", ["true"], timeout=30)


def test_an_exec_whose_output_does_not_end_in_time_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()

        def upgrade_and_hold() -> None:
            conn, _ = server.accept()
            conn.recv(4096)
            conn.sendall(_UPGRADED + _frame(1, b"partial"))
            time.sleep(3)
            conn.close()

        threading.Thread(target=upgrade_and_hold, daemon=True).start()
        with pytest.raises(TimeoutError):
            _exec_api(path).exec("db", ["sleep", "60"], timeout=0.5)
