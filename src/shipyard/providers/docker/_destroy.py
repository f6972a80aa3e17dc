"""What ``destroy`` removes, keeps and reports: the environment's images, snapshots and state."""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.database import Snapshot, SnapshotStore
from shipyard.deploy import OperationContext
from shipyard.docker import Docker
from shipyard.errors import StateError
from shipyard.hosts import Host
from shipyard.state import StateStore


@dataclass(frozen=True)
class SnapshotFiles:
    """An environment's snapshots on one host: how many, their size, where."""

    where: str  # host:directory
    count: int
    size: int  # bytes, dumps together


@dataclass(frozen=True)
class Destroyed:
    """What ``destroy`` removed on one host, and what it kept and why. ``snapshots``: the
    environment's snapshots, kept (backups outlive the environment) unless asked for, and then
    ``snapshots_removed``."""

    removed: list[str]
    kept: list[str] = field(default_factory=list)
    snapshots: SnapshotFiles | None = None
    snapshots_removed: bool = False


def _snapshot_files(store: SnapshotStore, owned: list[Snapshot]) -> SnapshotFiles:
    return SnapshotFiles(
        f"{store.host.name}:{store.directory}", len(owned), sum(s.size for s in owned)
    )


def _remove_state(store: StateStore, *, keep: str | None) -> None:
    """Remove the environment's state directory, or all of it but the entry ``keep``."""
    store.backend.remove_all(keep=keep)


def _built_images(ctx: OperationContext) -> list[str]:
    """The images shipyard built for the environment: its retained releases', and the one an
    interrupted deploy built (no release names it yet)."""
    images = [release.image for release in ctx.store.releases()]
    intent = ctx.store.intent()
    if intent is not None and intent.fresh_image and intent.release is not None:
        images.append(intent.release.image)
    return list(dict.fromkeys(images))


def _images_to_remove(
    ctx: OperationContext, host: Host, docker: Docker, images: list[str]
) -> list[tuple[str, str | None]]:
    """Each image still on the engine, with why it must stay (``None``: it can go): the
    releases of another environment of the app under the same state directory name it, or a
    container (of any project) uses it."""
    named: dict[str, str] = {}  # image reference or ID → the environment whose release names it
    siblings = host.run(["ls", "-1", "-A", str(ctx.store.root.parent)], check=False)
    for environment in siblings.stdout.split() if siblings.ok else []:
        if environment == ctx.store.root.name:
            continue
        try:
            releases = StateStore.on_host(host, ctx.store.root.parent / environment).releases()
        except (StateError, TypeError):
            releases = []  # not an environment's state: nothing it names
        for release in releases:
            named.setdefault(release.image, environment)
            named.setdefault(release.image_id, environment)
    found: list[tuple[str, str | None]] = []
    for image in images:
        info = docker.image(image)
        if info is None:
            continue  # removed already
        other = named.get(image) or named.get(info.id)
        if other is not None:
            found.append((image, f"a release of environment {other}"))
            continue
        users = docker.containers_using(image)
        found.append((image, f"used by container {', '.join(users)}" if users else None))
    return found
