"""Getting the app image from the operator's engine onto a host.

Without a registry the image is streamed: ``docker save IMAGE`` on the operator's machine piped
into ``docker load`` on the host over the SSH connection, chunk by chunk (no file on either side),
with progress on stderr. With a registry (``deploy.registry``) it is pushed from the operator's
engine and pulled on the host; the password comes from the env file and reaches ``docker login``
on stdin only, and the credentials ``docker login`` writes live in a private temporary CLI
configuration directory on each side (``docker --config DIR``), removed once the image has
moved: never in the deploy user's ``~/.docker/config.json`` on the host, never in place of the
operator's own login on their machine. Either way nothing is sent when the host already has the image, recognised by its
fingerprint (``shipyard.docker.image_fingerprint``) rather than its ID.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO

from shipyard.config import RegistrySection
from shipyard.docker import Docker
from shipyard.errors import CommandFailed, DeliveryError, HostError, ShipyardError
from shipyard.hosts import Host
from shipyard.secrets import SecretsBackend

__all__ = [
    "Delivered",
    "DeliveryError",
    "StderrProgress",
    "deliver",
    "push",
    "registry_ref",
]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class Delivered:
    """What ``deliver`` did."""

    method: str  # present, stream, registry
    bytes: int
    seconds: float

    def __str__(self) -> str:
        if self.method == "present":
            return "the host already has this image"
        rate = self.bytes / _MIB / self.seconds if self.seconds > 0 else 0.0
        size = f"{self.bytes / _MIB:.1f} MiB, {rate:.1f} MiB/s" if self.bytes else ""
        how = (
            "docker save | docker load over ssh" if self.method == "stream" else "via the registry"
        )
        return f"{how} in {self.seconds:.1f}s" + (f" ({size})" if size else "")


class StderrProgress:
    """``deliver: 12.0 MiB at 40.1 MiB/s`` on stderr, at most twice a second."""

    def __init__(self, label: str, stream: IO[str] | None = None, every: float = 0.5) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, sent: int) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        rate = sent / _MIB / max(now - self.started, 1e-6)
        self.stream.write(f"  {self.label}: {sent / _MIB:.1f} MiB at {rate:.1f} MiB/s\n")
        self.stream.flush()


def registry_ref(registry: RegistrySection, tag: str) -> str:
    """``<registry url>/<app>:<version>`` for the local ``<app>:<version>``."""
    return f"{registry.url.rstrip('/')}/{tag}"


def deliver(
    tag: str,
    image_id: str,
    local: Host,
    target: Host,
    *,
    registry: RegistrySection | None = None,
    secrets: SecretsBackend | None = None,
    progress: Callable[[int], None] | None = None,
    timeout: float = 1800,
) -> Delivered:
    """Make ``tag`` (image ``image_id`` on this machine) present on ``target``.

    Images are compared by fingerprint, not ID: an engine on the containerd image store gives
    a delivered image another ID (see ``shipyard.docker.image_fingerprint``)."""
    remote = Docker(target)
    started = time.monotonic()
    wanted = Docker(local).image(image_id)
    if wanted is None:
        raise DeliveryError(f"image {tag} ({image_id}) is not on this machine's engine")
    existing = remote.image(tag)
    if existing is not None and existing.fingerprint == wanted.fingerprint:
        return Delivered("present", 0, time.monotonic() - started)
    same_id = remote.image(image_id)  # the same image under another tag (one store's IDs)
    if same_id is not None and same_id.fingerprint == wanted.fingerprint:
        remote.tag(image_id, tag)
        return Delivered("present", 0, time.monotonic() - started)
    if registry is not None:
        _through_registry(tag, local, remote, registry, secrets)
        method, sent = "registry", 0
    else:
        sent = _stream(tag, target, progress, timeout)
        method = "stream"
    arrived = remote.image(tag)
    if arrived is None or arrived.fingerprint != wanted.fingerprint:
        raise DeliveryError(
            f"after delivery {target.name} has {tag} as {arrived.id if arrived else 'nothing'}, "
            f"not the image {image_id} sent (its layers or config differ)"
        )
    return Delivered(method, sent, time.monotonic() - started)


def _stream(tag: str, target: Host, progress: Callable[[int], None] | None, timeout: float) -> int:
    sent = 0

    def count(total: int) -> None:
        nonlocal sent
        sent = total
        if progress is not None:
            progress(total)

    save = subprocess.Popen(
        Docker.save_argv(tag),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert save.stdout is not None and save.stderr is not None  # noqa: S101
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(save.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        target.stream(Docker.load_argv(), save.stdout, progress=count, timeout=timeout)
    except CommandFailed as exc:
        save.kill()
        raise DeliveryError(
            f"`docker load` on {target.name} failed after {sent / _MIB:.1f} MiB: {exc.stderr.strip()[-500:]}"
        ) from exc
    finally:
        save.stdout.close()
        save.wait(timeout=60)
        reader.join(timeout=10)
        save.stderr.close()
    if save.returncode != 0:
        detail = b"".join(errors).decode(errors="replace").strip()
        raise DeliveryError(f"`docker save {tag}` on this machine failed: {detail}")
    return sent


def _through_registry(
    tag: str,
    local: Host,
    remote: Docker,
    registry: RegistrySection,
    secrets: SecretsBackend | None,
) -> None:
    ref = registry_ref(registry, tag)
    server = registry.url.split("/", 1)[0]
    here = Docker(local)
    with ExitStack() as logins:
        if registry.username:
            password = (
                secrets.get(registry.password_env) if secrets and registry.password_env else None
            ) or ""
            if not password:
                raise ShipyardError(
                    f"registry {server}: no password (set deploy.registry.password_env and that key in the env file)"
                )
            here = logins.enter_context(_logged_in(here, server, registry.username, password))
            remote = logins.enter_context(_logged_in(remote, server, registry.username, password))
        _push(here, tag, ref)  # the operator's engine keeps only <app>:<version>
        remote.pull(ref)
    remote.tag(ref, tag)
    remote.untag(ref)  # one name per release on the host too, so pruning a release frees it


def push(tag: str, local: Host, ref: str, *, login: tuple[str, str, str] | None = None) -> None:
    """Push ``tag`` from this machine's engine as ``ref``; ``login``: (server, username,
    password), logged in through a private configuration directory (see ``_logged_in``). The
    engine keeps only ``tag`` afterwards."""
    here = Docker(local)
    with ExitStack() as logins:
        if login is not None:
            here = logins.enter_context(_logged_in(here, *login))
        _push(here, tag, ref)


def _push(here: Docker, tag: str, ref: str) -> None:
    here.tag(tag, ref)
    try:
        here.push(ref)
    finally:
        here.untag(ref)


@contextmanager
def _logged_in(docker: Docker, server: str, username: str, password: str) -> Iterator[Docker]:
    """``docker`` logged in to ``server`` through a CLI configuration directory of its own.

    ``docker login`` writes the credentials (base64, not encrypted) into the configuration
    directory: here a ``mktemp -d`` directory (mode 0700) on that side, removed on the way out
    whatever happened, so they never stay on disk and the user's own login (``~/.docker``) is
    neither read nor replaced. A user whose current Docker context is not the default one keeps
    talking to that context's engine."""
    host = docker.host
    try:
        directory = host.run(["mktemp", "-d"], timeout=30).stdout.strip()
    except CommandFailed as exc:
        raise DeliveryError(
            f"cannot create a private Docker configuration directory on {host.name}: "
            f"{exc.stderr.strip()[-300:]}"
        ) from exc
    if not directory.startswith("/"):
        raise DeliveryError(f"`mktemp -d` on {host.name} gave {directory!r}, not a directory")
    try:
        private = Docker(host, config=directory, endpoint=docker.endpoint_of_current_context())
        try:
            private.login(server, username, password)
        except CommandFailed as exc:
            raise DeliveryError(
                f"docker login to {server} as {username} failed on {host.name}: "
                f"{exc.stderr.strip()[-300:]}"
            ) from exc
        yield private
    except BaseException:
        _remove_config(host, directory, strict=False)  # the first error is the one to show
        raise
    _remove_config(host, directory, strict=True)


def _remove_config(host: Host, directory: str, *, strict: bool) -> None:
    try:
        removed = host.run(["rm", "-rf", directory], check=False, timeout=60).ok
    except HostError:
        removed = False
    if not removed and strict:
        raise DeliveryError(
            f"could not remove {directory} on {host.name}, which holds registry credentials",
            hint=f"remove it by hand: rm -rf {directory}",
        )
