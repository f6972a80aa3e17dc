"""Image delivery between two real engines: the operator's, and a second one behind a real sshd."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.delivery import deliver
from shipyard.hosts import LocalHost, SSHHost, SSHSettings
from tests.e2e.engine import Engine, start_engine
from tests.e2e.sshd import Sshd, start_sshd


@pytest.fixture
def remote_engine(docker_engine: None) -> Iterator[Engine]:
    engine = start_engine()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def remote(tmp_path: Path, remote_engine: Engine) -> Iterator[tuple[SSHHost, Sshd]]:
    server = start_sshd(tmp_path / "sshd", env={"DOCKER_HOST": remote_engine.docker_host})
    host = SSHHost(
        server.target, SSHSettings(known_hosts=server.known_hosts, identity_file=server.client_key)
    )
    try:
        yield host, server
    finally:
        host.close()
        server.stop()


@pytest.fixture
def image(docker_engine: None) -> Iterator[tuple[str, str]]:
    """A small image of its own (a unique label and a few MiB of random data on the Debian base)."""
    tag = f"delivery-test-{secrets.token_hex(4)}:1"
    dockerfile = (
        "FROM shipyard-local/debian:trixie\n"
        f"LABEL org.shipyard.test={tag}\n"
        "RUN head -c 8388608 /dev/urandom > /payload\n"
    )
    subprocess.run(
        ["docker", "build", "--quiet", "--tag", tag, "-"],
        input=dockerfile,
        text=True,
        capture_output=True,
        check=True,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    image_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        yield tag, image_id
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)


def test_image_streams_to_the_host_once(
    remote: tuple[SSHHost, Sshd], remote_engine: Engine, image: tuple[str, str]
) -> None:
    host, _ = remote
    tag, image_id = image
    assert remote_engine.image_id(tag) is None
    seen: list[int] = []
    first = deliver(tag, image_id, LocalHost(), host, progress=seen.append)
    assert first.method == "stream"
    assert remote_engine.image_id(tag) == image_id
    assert first.bytes > 8 * 1024 * 1024  # the payload travelled
    assert seen == sorted(seen) and seen[-1] == first.bytes  # progress moved forward to the end
    assert "MiB/s" in str(first)

    again = deliver(tag, image_id, LocalHost(), host, progress=seen.append)
    assert again.method == "present" and again.bytes == 0

    # Same image under another tag on the host: retagged, not sent again.
    remote_engine.docker("image", "tag", tag, "kept:1")
    remote_engine.docker("image", "rm", tag)
    retagged = deliver(tag, image_id, LocalHost(), host)
    assert retagged.method == "present"
    assert remote_engine.image_id(tag) == image_id
