"""The engine's API (over this machine's socket) and the docker CLI read the same: every read
``Docker`` makes of real containers and images gives the same answer both ways, and so does a
command run in a container. A new version's container, made over the API, is the container
Compose would create."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.docker import Docker
from shipyard.errors import CommandFailed
from shipyard.hosts import LocalHost
from shipyard.secrets import MASK, Masker
from tests.e2e.conftest import AppUnderTest
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
    sock = Docker(LocalHost())
    assert sock.api is not None, "this machine's engine has a local socket"
    cli = Docker(LocalHost())
    cli.api = None
    labels = {"org.shipyard.test": mark}
    for docker_ in (sock, cli):
        running = docker_.container(names[0])
        assert running is not None and running.running and 8080 in running.ports
        stopped = docker_.container(names[1])
        assert stopped is not None and not stopped.running
    assert sock.container(names[0]) == cli.container(names[0])
    assert sock.container(names[1]) == cli.container(names[1])
    assert sock.container(f"{mark}-absent") is None and cli.container(f"{mark}-absent") is None
    assert sock.containers(labels) == cli.containers(labels) == sorted(names)
    assert sock.labelled(labels) == cli.labelled(labels)
    assert sock.containers_named([*names, "absent"]) == cli.containers_named([*names, "absent"])
    assert sock.containers_using(IMAGE) == cli.containers_using(IMAGE)
    assert set(names) <= set(sock.containers_using(IMAGE))
    running_sock = {info.name for info in sock.running()}
    assert names[0] in running_sock and names[1] not in running_sock
    # Only the containers publishing a host port: the running one's, and no other port.
    published = sock.container(names[0])
    assert published is not None
    [port] = published.ports.values()
    for docker_ in (sock, cli):
        assert [info.name for info in docker_.running(publishing=[port])] == [names[0]]
        other = port - 1  # a port these containers do not publish
        assert not {info.name for info in docker_.running(publishing=[other])} & set(names)
    assert sock.image(IMAGE) == cli.image(IMAGE)
    # The engine's version and platform, and the socket the CLI would use, read either way.
    assert sock.info() == cli.info()
    assert sock.socket_path() == cli.socket_path() == sock.api.socket
    assert sock.image(f"{IMAGE}-absent") is None and cli.image(f"{IMAGE}-absent") is None


def test_a_command_in_a_container_runs_the_same_over_the_api_and_the_cli(
    labelled_containers: tuple[str, list[str]],
) -> None:
    """``Docker.exec`` over the socket answers what ``docker exec`` does: exit code, stdout
    and stderr apart, input fed in full (more than a pipe holds, while output flows), outputs
    masked, the engine's refusals (no such container, one not running) as exit 1 with its
    message, a timeout as an error."""
    _, (running, stopped) = labelled_containers
    masker = Masker()
    masker.add("s3cret-token-value")
    sock = Docker(LocalHost(masker))
    assert sock.api is not None, "this machine's engine has a local socket"
    cli = Docker(LocalHost(masker))
    cli.api = None
    big = "x" * (3 << 20) + "\n"
    cases: list[tuple[str, list[str], str | None, str | None]] = [
        (running, ["sh", "-c", "cat; echo oops >&2; exit 3"], "hello\n", None),
        (running, ["sh", "-c", "wc -c; head -c 200000 /dev/zero | tr '\\0' y"], big, None),
        (running, ["sh", "-c", "echo s3cret-token-value; echo s3cret-token-value >&2"], None, None),
        (running, ["id", "-u"], None, "nobody"),
        (running, ["sh", "-c", "read line; echo got $line"], "", None),
        (f"{running}-absent", ["true"], None, None),
        (stopped, ["true"], None, None),
    ]
    answers = []
    for container, argv, stdin, user in cases:
        over_api = sock.exec(container, argv, stdin=stdin, user=user, check=False, timeout=60)
        over_cli = cli.exec(container, argv, stdin=stdin, user=user, check=False, timeout=60)
        assert over_api == over_cli, (container, argv)
        answers.append(over_api)
    assert answers[0].returncode == 3 and answers[0].stdout == "hello\n"
    assert answers[0].stderr == "oops\n"
    assert answers[2].stdout.strip() == answers[2].stderr.strip() == MASK
    assert answers[5].returncode == answers[6].returncode == 1
    assert "No such container" in answers[5].stderr and "is not running" in answers[6].stderr
    assert sock.exec(running, ["sh", "-c", "wc -c"], stdin=big).stdout.strip() == str(len(big))
    with pytest.raises(CommandFailed) as raised:
        sock.exec(running, ["sh", "-c", "exit 4"])
    assert raised.value.returncode == 4
    with pytest.raises(CommandFailed, match="timed out after 1s"):
        sock.exec(running, ["sleep", "30"], timeout=1)


# What Compose alone writes on its containers: its version, the image ID it resolved, the
# container it replaced, and its own hash of the definition.
_COMPOSE_OWN = {"version", "image", "replace", "config-hash"}


def _as_created(name: str) -> dict[str, Any]:
    """What a container was created with (not the state it is in)."""
    [document] = json.loads(docker("container", "inspect", name))
    config, host = document["Config"], document["HostConfig"]
    [(network, endpoint)] = document["NetworkSettings"]["Networks"].items()
    labels = {
        key: value
        for key, value in config["Labels"].items()
        if key.removeprefix("com.docker.compose.") not in _COMPOSE_OWN
    }
    return {
        "image": config["Image"],
        "env": sorted(config["Env"]),
        "labels": labels,
        "exposed": config["ExposedPorts"],
        "stop_timeout": config.get("StopTimeout"),
        "user": config["User"],
        "entrypoint": config["Entrypoint"],
        "ports": host["PortBindings"],
        "restart": host["RestartPolicy"],
        "network": (host["NetworkMode"], network),
        "aliases": [a for a in endpoint["Aliases"] or [] if a != document["Id"][:12]],
        "logging": host["LogConfig"],
    }


def test_a_new_versions_container_is_the_one_compose_would_create(app: AppUnderTest) -> None:
    """On this machine's engine a slot's container is created and started over the engine's
    API. Compose, given the slot's compose file, creates the same container (its environment,
    port, network and aliases, restart policy, stop timeout, logging and labels), and counts the
    one shipyard created as the project's."""
    assert app.shipyard("deploy", app.environment).returncode == 0
    app.commit("a second version")
    assert app.shipyard("deploy", app.environment, "--no-watch").returncode == 0
    blue = f"{app.name}-{app.environment}-blue"  # the first version's, stopped now
    file = app.state_dir / app.name / app.environment / "slots" / "blue" / "compose.yml"
    projects = {
        p["Name"]: p for p in json.loads(docker("compose", "ls", "--all", "--format", "json"))
    }
    assert projects[blue]["ConfigFiles"] == str(file)
    listed = docker("compose", "--project-name", blue, "ps", "--all", "--format", "{{.Name}}")
    assert listed.split() == [blue]
    ours = _as_created(blue)
    docker("compose", "--project-name", blue, "--file", str(file), "up", "--no-start",
           "--force-recreate")  # fmt: skip
    theirs = _as_created(blue)
    assert ours == theirs
