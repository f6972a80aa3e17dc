"""The engine's API (over this machine's socket) and the docker CLI read the same: every read
``Docker`` makes of real containers and images gives the same answer both ways."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from shipyard.docker import Docker
from shipyard.hosts import LocalHost
from tests.e2e.docker_cli import docker, remove_found

IMAGE = "shipyard-local/docker-cli:26"


@pytest.fixture
def labelled_containers(docker_engine: None) -> Iterator[tuple[str, list[str]]]:
    """Two containers with a label of this test's own, one running and one stopped."""
    mark = f"reader-{secrets.token_hex(3)}"
    names = [f"{mark}-running", f"{mark}-stopped"]
    try:
        for name in names:
            docker(
                "run",
                "--detach",
                "--name",
                name,
                "--label",
                f"org.shipyard.test={mark}",
                "--publish",
                "127.0.0.1::8080",
                "--entrypoint",
                "sleep",
                IMAGE,
                "300",
            )
        docker("stop", "--time", "0", names[1])
        yield mark, names
    finally:
        remove_found(
            ["ps", "--all", "--quiet", "--filter", f"label=org.shipyard.test={mark}"],
            ["rm", "--force"],
        )


def test_the_api_and_the_cli_read_the_same(labelled_containers: tuple[str, list[str]]) -> None:
    mark, names = labelled_containers
    api = Docker(LocalHost())
    assert api.reader is not None, "this machine's engine has a local socket"
    cli = Docker(LocalHost())
    cli.reader = None
    labels = {"org.shipyard.test": mark}
    for docker_ in (api, cli):
        running = docker_.container(names[0])
        assert running is not None and running.running and 8080 in running.ports
        stopped = docker_.container(names[1])
        assert stopped is not None and not stopped.running
    assert api.container(names[0]) == cli.container(names[0])
    assert api.container(names[1]) == cli.container(names[1])
    assert api.container(f"{mark}-absent") is None and cli.container(f"{mark}-absent") is None
    assert api.containers(labels) == cli.containers(labels) == sorted(names)
    assert api.labelled(labels) == cli.labelled(labels)
    assert api.containers_named([*names, "absent"]) == cli.containers_named([*names, "absent"])
    assert api.containers_using(IMAGE) == cli.containers_using(IMAGE)
    assert set(names) <= set(api.containers_using(IMAGE))
    running_api = {info.name for info in api.running()}
    assert names[0] in running_api and names[1] not in running_api
    # Only the containers publishing a host port: the running one's, and no other port.
    published = api.container(names[0])
    assert published is not None
    [port] = published.ports.values()
    for docker_ in (api, cli):
        assert [info.name for info in docker_.running(publishing=[port])] == [names[0]]
        other = port - 1  # a port these containers do not publish
        assert not {info.name for info in docker_.running(publishing=[other])} & set(names)
    assert api.image(IMAGE) == cli.image(IMAGE)
    # The engine's version and platform, and the socket the CLI would use, read either way.
    assert api.info() == cli.info()
    assert api.socket_path() == cli.socket_path() == api.reader.socket
    assert api.image(f"{IMAGE}-absent") is None and cli.image(f"{IMAGE}-absent") is None
