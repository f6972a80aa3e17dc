"""Image delivery between two real engines: the operator's, and a second one behind a real sshd."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.config import RegistrySection
from shipyard.delivery import DeliveryError, deliver
from shipyard.hosts import LocalHost, SSHHost, SSHSettings
from shipyard.secrets import EnvFileBackend, Masker
from tests.e2e.engine import Engine, inspect_image_id, start_engine
from tests.e2e.registry import running_registry
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
    image_id = inspect_image_id(tag)
    assert image_id is not None, tag
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


@pytest.fixture
def registry(tmp_path: Path, docker_engine: None) -> Iterator[tuple[str, str]]:
    """Debian's docker-registry with basic auth (user ``ci``), on 127.0.0.1."""
    password = secrets.token_urlsafe(18)
    with running_registry(tmp_path / "registry-auth", "ci", password) as url:
        yield url, password


def test_image_goes_through_a_registry_with_the_password_on_stdin_only(
    tmp_path: Path,
    remote_engine: Engine,
    image: tuple[str, str],
    registry: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, password = registry
    tag, image_id = image
    # Each side's own Docker configuration (what ~/.docker is to the operator and to the deploy
    # user) and temp directory are directories of this test: this machine's ~/.docker is never
    # touched, and what delivery leaves behind can be seen. The operator is already logged in to
    # the registry under another name: that login must stay as it was.
    local_config, remote_config = tmp_path / "docker-local", tmp_path / "docker-remote"
    local_tmp, remote_tmp = tmp_path / "tmp-local", tmp_path / "tmp-remote"
    for directory in (local_config, remote_config, local_tmp, remote_tmp):
        directory.mkdir()
    own_login = json.dumps({"auths": {url: {"auth": "b3BlcmF0b3I6b3duLXRva2Vu"}}}, indent=1)
    (local_config / "config.json").write_text(own_login)
    monkeypatch.setenv("DOCKER_CONFIG", str(local_config))
    monkeypatch.setenv("TMPDIR", str(local_tmp))
    server = start_sshd(
        tmp_path / "sshd-registry",
        env={
            "DOCKER_HOST": remote_engine.docker_host,
            "DOCKER_CONFIG": str(remote_config),
            "TMPDIR": str(remote_tmp),
        },
    )

    def credentials_left() -> list[str]:
        """Where the registry's auth is on disk, and private directories not removed."""
        found = [str(left) for tmp in (local_tmp, remote_tmp) for left in tmp.iterdir()]
        if (local_config / "config.json").read_text() != own_login:
            found.append("the operator's config.json changed")
        remote_file = remote_config / "config.json"
        if remote_file.exists() and url in remote_file.read_text():
            found.append(f"{remote_file}: {remote_file.read_text()}")
        return found

    host = SSHHost(
        server.target, SSHSettings(known_hosts=server.known_hosts, identity_file=server.client_key)
    )
    masker = Masker([password])
    try:
        section = RegistrySection(
            url=f"{url}/acme", username="ci", password_env="REGISTRY_PASSWORD"
        )
        done = deliver(
            tag,
            image_id,
            LocalHost(masker),
            host,
            registry=section,
            secrets=EnvFileBackend({"REGISTRY_PASSWORD": password}),
        )
        assert done.method == "registry"
        assert remote_engine.image_id(tag) == image_id  # pulled, and tagged as compose expects
        assert remote_engine.image_id(f"{url}/acme/{tag}") is None  # one name per release
        assert (
            subprocess.run(
                ["docker", "image", "inspect", f"{url}/acme/{tag}"],
                capture_output=True,
                check=False,
            ).returncode
            != 0
        ), "the registry name is not left on the operator's engine"
        assert password not in (server.dir / "sshd.log").read_text()
        assert credentials_left() == []

        wrong = RegistrySection(url=f"{url}/acme", username="ci", password_env="REGISTRY_PASSWORD")
        remote_engine.docker("image", "rm", tag)
        with pytest.raises(DeliveryError) as refused:
            deliver(
                tag,
                image_id,
                LocalHost(),
                host,
                registry=wrong,
                secrets=EnvFileBackend({"REGISTRY_PASSWORD": "not-the-password"}),
            )
        assert (
            "docker login" in refused.value.message
            and "not-the-password" not in refused.value.message
        )
        assert credentials_left() == []
    finally:
        host.close()
        server.stop()
