"""Where an environment's state is kept: the seam between what the state means (``StateStore``,
``Lock``) and the storage that keeps it.

A backend stores named blobs under the environment's root (``current.json``,
``logs/<id>.jsonl``) and gives the lock the atomic operations its guarantees rest on: create a
record only if none exists, replace a record only if it is still the one read (its ``token``),
and keep a taken-over record aside. ``HostState`` keeps everything in a directory on the
environment's host (the Docker provider's targets); ``S3State`` (``state._s3``) keeps it in an S3
bucket, for environments without a host of their own.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Protocol

from shipyard.hosts import Host

STALE_PREFIX = "lock.stale-"  # a taken-over lock's record, kept for post-mortems


class StateBackend(Protocol):
    """The storage under one environment's state (see the module)."""

    @property
    def root(self) -> PurePosixPath:
        """The environment's namespace: a directory on a host, a key prefix in a bucket."""
        ...

    def where(self, name: str) -> str:
        """``name`` as messages show it (``host:/path``, ``s3://bucket/key``)."""
        ...

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes, *, shared: bool = False) -> None:
        """Replace ``name`` whole (readers see the old or the new content, never a mix).
        ``shared``: readable by the host's other users (an exporter), where that applies."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; nothing when it does not exist."""
        ...

    def names(self, directory: str) -> list[str]:
        """The names directly under ``directory``, unsorted (none when it does not exist)."""
        ...

    def remove_all(self, *, keep: str | None = None) -> None:
        """Remove the environment's state, or all of it but the entry ``keep``."""
        ...

    # -- the lock's primitives (``state.Lock`` builds its semantics on them) ----------------------
    def lock_read(self) -> tuple[bytes, str] | None:
        """The lock's record and its token (what ``lock_replace`` compares), or ``None``."""
        ...

    def lock_create(self, owner_id: str, record: bytes) -> str | None:
        """Create the lock holding ``record``, atomically; its token, or ``None`` when a lock
        exists."""
        ...

    def lock_refresh(self, token: str, record: bytes) -> str | None:
        """Replace the holder's own record (a heartbeat); the new token, or ``None`` when the
        lock is no longer the one ``token`` names (where the backend can tell)."""
        ...

    def lock_take_over(self, token: str, stale_id: str, owner_id: str, record: bytes) -> str | None:
        """Replace a stale lock, the one ``token`` names, by ``record``, keeping the stale record
        as ``lock.stale-<stale_id>``; the new token, or ``None`` when another taker won."""
        ...

    def lock_delete(self, token: str | None) -> None:
        """Remove the lock (``token``: only if it is still that one, where the backend can
        tell; ``None``: whatever is there)."""
        ...

    def lock_prune(self, days: int) -> None:
        """Remove kept stale locks untouched for more than ``days`` days."""
        ...


class HostState:
    """State in a directory on a host (``<state_dir>/<app>/<env>/``), files mode 0600 in
    directories mode 0700. The lock is a directory, ``lock/owner.json``: taking it renames a
    private directory that already holds the record onto ``lock`` (``rename`` fails when it
    exists), and a takeover renames the stale one away first; a record's token is its hash."""

    def __init__(self, host: Host, root: PurePosixPath) -> None:
        self.host = host
        self._root = root

    @property
    def root(self) -> PurePosixPath:
        return self._root

    def _path(self, name: str) -> PurePosixPath:
        return self._root / name

    def where(self, name: str) -> str:
        return f"{self.host.name}:{self._path(name)}"

    def read(self, name: str) -> bytes | None:
        return self.host.get(self._path(name))

    def write(self, name: str, data: bytes, *, shared: bool = False) -> None:
        self.host.put(self._path(name), data, mode=0o644 if shared else 0o600)

    def delete(self, name: str) -> None:
        self.host.run(["rm", "-f", str(self._path(name))])

    def names(self, directory: str) -> list[str]:
        result = self.host.run(["ls", "-1", str(self._path(directory))], check=False)
        return result.stdout.split() if result.ok else []

    def remove_all(self, *, keep: str | None = None) -> None:
        if keep is None:
            self.host.run(["rm", "-rf", str(self._root)])
            return
        listed = self.host.run(["ls", "-1", "-A", str(self._root)], check=False)
        others = [self._root / name for name in listed.stdout.split() if name != keep]
        if others:
            self.host.run(["rm", "-rf", *map(str, others)])

    # -- the lock ------------------------------------------------------------------------------------
    @property
    def _lock(self) -> PurePosixPath:
        return self._path("lock")

    def lock_read(self) -> tuple[bytes, str] | None:
        data = self.host.get(self._lock / "owner.json")
        return (data, _digest(data)) if data is not None else None

    def lock_create(self, owner_id: str, record: bytes) -> str | None:
        self.host.run(["mkdir", "-p", "-m", "0700", str(self._root)])
        pending = self._path(f"lock.new-{owner_id}")
        self.host.run(["rm", "-rf", str(pending)], check=False)
        self.host.put(pending / "owner.json", record, mode=0o600)
        if self.host.run(["mv", "-T", str(pending), str(self._lock)], check=False).ok:
            return _digest(record)
        self.host.run(["rm", "-rf", str(pending)], check=False)
        return None

    def lock_refresh(self, token: str, record: bytes) -> str | None:
        # A file cannot be replaced only if unchanged; the lock's holder reads the record first,
        # and stops refreshing once silent past the TTL (before a takeover can happen).
        del token
        self.host.put(self._lock / "owner.json", record, mode=0o600)
        return _digest(record)

    def lock_take_over(self, token: str, stale_id: str, owner_id: str, record: bytes) -> str | None:
        # The stale lock is renamed to a name of its own: a second taker that read the same
        # stale record finds that name taken and loses, so exactly one taker wins.
        del token
        graveyard = self._path(f"{STALE_PREFIX}{stale_id}")
        if not self.host.run(["mv", "-T", str(self._lock), str(graveyard)], check=False).ok:
            return None
        return self.lock_create(owner_id, record)

    def lock_delete(self, token: str | None) -> None:
        del token
        self.host.run(["rm", "-rf", str(self._lock)], check=False)

    def lock_prune(self, days: int) -> None:
        self.host.run(
            [
                "find", str(self._root), "-mindepth", "1", "-maxdepth", "1", "-type", "d",
                "-name", f"{STALE_PREFIX}*", "-mtime", f"+{days}",
                "-exec", "rm", "-rf", "{}", "+",
            ],
            check=False,
        )  # fmt: skip


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
