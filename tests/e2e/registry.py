"""Debian's docker-registry with basic auth on 127.0.0.1 (Docker trusts loopback over HTTP): a
registry for delivery tests, and the AWS stand-in's registry (ECR's addresses do not resolve
here)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REGISTRY_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :5000
auth:
  htpasswd:
    realm: shipyard-test
    path: /auth/htpasswd
"""


@contextmanager
def running_registry(directory: Path, user: str, password: str) -> Iterator[str]:
    """A registry accepting only ``user`` with ``password``; yields its ``127.0.0.1:<port>``.
    Its files are written to ``directory``; it is removed on the way out."""
    directory.mkdir()
    (directory / "config.yml").write_text(REGISTRY_CONFIG)
    htpasswd = subprocess.run(
        ["docker", "run", "--rm", "-i", "--entrypoint", "htpasswd", "shipyard-local/registry:2",
         "-Bin", user],
        input=password, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (directory / "htpasswd").write_text(htpasswd)
    name = f"sy-registry-{directory.parent.name[-12:]}-{time.monotonic_ns() % 10**6}"
    subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--publish", "127.0.0.1::5000",
         "--volume", f"{directory / 'config.yml'}:/etc/docker/registry/config.yml:ro",
         "--volume", f"{directory / 'htpasswd'}:/auth/htpasswd:ro",
         "shipyard-local/registry:2"],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        port = (
            subprocess.run(
                ["docker", "port", name, "5000/tcp"], capture_output=True, text=True, check=True
            )
            .stdout.split(":")[-1]
            .strip()
        )
        url = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not _answers(url):
            assert time.monotonic() < deadline, "the registry never answered"
            time.sleep(0.2)
        yield url
    finally:
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False
        )


def _answers(url: str) -> bool:
    """The registry answers (401: it asks for the login)."""
    try:
        return httpx.get(f"http://{url}/v2/", timeout=5).status_code == 401
    except httpx.HTTPError:
        return False


def tags(url: str, repository: str, user: str, password: str) -> list[str]:
    """The tags of ``repository`` in the registry at ``url``."""
    answer = httpx.get(f"http://{url}/v2/{repository}/tags/list", auth=(user, password), timeout=10)
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    found: list[str] = answer.json().get("tags") or []
    return found
