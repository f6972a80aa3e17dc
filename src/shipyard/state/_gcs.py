"""State in a Cloud Storage bucket: for environments on Google Cloud, so two operators on two
machines share one record and one lock, as ``state._s3`` does on AWS.

Objects live under ``<prefix>/<app>/<environment>/`` (the backend's ``root``). Every object has a
generation, a number Cloud Storage changes on each write, and every write and delete can be made
conditional on it (``ifGenerationMatch``; ``0``: only if there is none), which the bucket decides
atomically. The lock is the object ``lock.json``: created with ``ifGenerationMatch=0``, refreshed
and taken over only if its generation is still the one read (the lock's token), removed the same
way; a taken-over record is first copied to ``lock.stale-<id>.json`` (only if unchanged) and kept
for a week. A conditional write whose answer was lost is retried, and its repeat is refused (412)
although the first one took: the record is then read back, and found to be the writer's own.

The bucket is one the operator named, which must exist, or the project's default
(``DefaultBucket``, ``shipyard-state-<project>``): created, as a careful operator would, by the
first write that finds it missing, and, since anyone can create a bucket of any free name, checked
to belong to the project before anything is read from it or written to it. Reading a missing
default bucket finds no state: nothing was deployed yet, and a read never creates it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from shipyard.errors import StateError
from shipyard.gcp import GcpApi
from shipyard.state._backend import STALE_PREFIX

_LOCK = "lock.json"
_NOT_FOUND = 404
_CONFLICT = 409
_PRECONDITION = 412
_FORBIDDEN = 403
_REREADS = 5
MANAGED_LABEL = ("shipyard-managed", "true")


def default_bucket_name(project: str) -> str:
    """The project's state bucket: bucket names are global, and project IDs are too (at most
    15 + 30 characters, of Cloud Storage's 63; a legacy ``example.com:project`` ID's ``.`` and
    ``:`` become ``-``)."""
    return "shipyard-state-" + re.sub(r"[^a-z0-9-]", "-", project.lower())


class DefaultBucket:
    """The project's state bucket (``default_bucket_name``), used when the environment names
    none: in ``location`` (the environment's region) when the first write creates it."""

    def __init__(self, project: str, location: str, storage: GcpApi, projects: GcpApi) -> None:
        self.project = project
        self.location = location
        self.storage = storage
        self.projects = projects  # Cloud Resource Manager: the project's number

    @property
    def name(self) -> str:
        return default_bucket_name(self.project)

    @cached_property
    def project_number(self) -> str:
        found = self.projects.json("GET", f"v3/projects/{self.project}", what=self.project) or {}
        return str(found.get("name", "")).removeprefix("projects/")

    def exists(self) -> bool:
        """Whether the bucket exists, after checking it is the project's: one that another
        project owns (a name taken first) is refused, so state is never read from it nor
        written to it."""
        where = f"gs://{self.name}"
        response = self.storage.request(
            "GET", f"storage/v1/b/{self.name}", allow=(_NOT_FOUND, _FORBIDDEN), what=where
        )
        if response.status_code == _NOT_FOUND:
            return False
        owner = response.json().get("projectNumber") if response.is_success else None
        if owner is None or str(owner) != self.project_number:
            raise StateError(
                f"{where}: the project's default state bucket is owned by another project "
                "(its name was taken first), or these credentials may not read it",
                hint="name a bucket of this project in providers.gcp.state_bucket",
            )
        return True

    def create(self) -> None:
        """Create the bucket: uniform bucket-level access, public access prevented, versioning
        on (every earlier record stays recoverable), labelled ``shipyard-managed``. Another
        operator creating it at the same moment is fine (409, then the owner is checked)."""
        key, value = MANAGED_LABEL
        bucket = {
            "name": self.name,
            "location": self.location,
            "versioning": {"enabled": True},
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
            "labels": {key: value},
        }
        created = self.storage.json(
            "POST", "storage/v1/b", body=bucket, query={"project": self.project},
            idempotent=True, allow=(_CONFLICT,), what=f"gs://{self.name}",
        )  # fmt: skip
        if created is None and not self.exists():
            raise StateError(f"gs://{self.name}: created by another caller, yet not there")


class GcsState:
    """One environment's state under ``root`` in ``bucket``: a name (a bucket that must exist)
    or the project's ``DefaultBucket`` (see the module)."""

    def __init__(self, storage: GcpApi, bucket: str | DefaultBucket, root: PurePosixPath) -> None:
        self.storage = storage
        self._bucket = bucket
        self._root = root

    @property
    def bucket(self) -> str:
        return self._bucket if isinstance(self._bucket, str) else self._bucket.name

    @property
    def root(self) -> PurePosixPath:
        return self._root

    @cached_property
    def _default_exists(self) -> bool:
        """Whether the default bucket exists (checked to be the project's), asked once."""
        return isinstance(self._bucket, DefaultBucket) and self._bucket.exists()

    @cached_property
    def _named_exists(self) -> bool:
        """Whether the named bucket exists, asked once: a misspelt name is an error, never
        "nothing deployed yet" (Cloud Storage answers a missing object and a missing bucket
        with the same 404)."""
        found = self.storage.request(
            "GET", f"storage/v1/b/{self.bucket}", allow=(_NOT_FOUND,), what=f"gs://{self.bucket}"
        )
        if found.status_code == _NOT_FOUND:
            raise self._missing_bucket("")
        return True

    def _readable(self) -> bool:
        """Whether there can be state to read: a named bucket (which must exist), or a default
        one that exists."""
        if isinstance(self._bucket, str):
            return self._named_exists
        return self._default_exists

    def _key(self, name: str) -> str:
        return str(self._root / name)

    def where(self, name: str) -> str:
        return f"gs://{self.bucket}/{self._key(name)}"

    def _object(self, name: str) -> str:
        return f"storage/v1/b/{self.bucket}/o/{quote(self._key(name), safe='')}"

    def _missing_bucket(self, name: str) -> StateError:
        return StateError(
            f"gs://{self.bucket}: no such bucket, named by providers.gcp.state_bucket"
            + (f" ({self.where(name)})" if name else ""),
            hint="create it, name an existing one in providers.gcp.state_bucket, or leave "
            "state_bucket out to keep the state in the project's default bucket, which the "
            "first deploy creates",
        )

    # -- requests --------------------------------------------------------------------------------
    def _generation(self, name: str) -> str | None:
        found = self.storage.json(
            "GET", self._object(name), allow=(_NOT_FOUND,), what=self.where(name)
        )
        return str(found["generation"]) if found is not None else None

    def _get(self, name: str) -> tuple[bytes, str] | None:
        """``name``'s content and generation: two reads, the generation, then that one's bytes,
        so they always belong together. When it was replaced between them (the holder's own
        heartbeat), both are read again: ``None`` means it is gone, never that it changed."""
        if not self._readable():
            return None
        for _ in range(_REREADS):
            generation = self._generation(name)
            if generation is None:
                return None
            response = self.storage.request(
                "GET", self._object(name), query={"alt": "media", "generation": generation},
                allow=(_NOT_FOUND,), what=self.where(name),
            )  # fmt: skip
            if response.status_code != _NOT_FOUND:
                return response.content, generation
        raise StateError(
            f"{self.where(name)} was replaced {_REREADS} times while being read",
            hint="run the command again",
        )

    def _put(self, name: str, data: bytes, *, if_generation: str | None = None) -> str | None:
        """Write ``name`` whole; its new generation, or ``None`` when ``if_generation`` (``"0"``:
        none) no longer holds. The first write to a missing default bucket creates it."""
        if isinstance(self._bucket, DefaultBucket) and not self._default_exists:
            self._bucket.create()
            self.__dict__["_default_exists"] = True
        query: dict[str, str] = {"uploadType": "media", "name": self._key(name)}
        if if_generation is not None:
            query["ifGenerationMatch"] = if_generation
        response = self.storage.request(
            "POST", f"upload/storage/v1/b/{self.bucket}/o", content=data,
            content_type="application/octet-stream", query=query, idempotent=True,
            allow=(_NOT_FOUND, _PRECONDITION), what=self.where(name),
        )  # fmt: skip
        if response.status_code == _NOT_FOUND:
            raise self._missing_bucket(name)
        if response.status_code == _PRECONDITION:
            return self._written_already(name, data)
        return str(response.json()["generation"])

    def _written_already(self, name: str, data: bytes) -> str | None:
        """After a conditional write was refused: the generation of ``name`` when it holds
        ``data`` (this writer's own earlier attempt took, and only its answer was lost)."""
        found = self._get(name)
        return found[1] if found is not None and found[0] == data else None

    def _delete(self, name: str, *, if_generation: str | None = None) -> bool:
        if not self._readable():
            return False
        query = {"ifGenerationMatch": if_generation} if if_generation is not None else {}
        response = self.storage.request(
            "DELETE", self._object(name), query=query, allow=(_NOT_FOUND, _PRECONDITION),
            what=self.where(name),
        )  # fmt: skip
        return response.is_success

    def _list(self, prefix: str, *, delimiter: bool) -> list[dict[str, Any]]:
        """The objects (``name``, ``updated``) whose name starts with ``prefix``; with
        ``delimiter``, only those directly under it."""
        if not self._readable():
            return []
        found: list[dict[str, Any]] = []
        query: dict[str, str] = {"prefix": prefix}
        if delimiter:
            query["delimiter"] = "/"
        while True:
            page = self.storage.json(
                "GET", f"storage/v1/b/{self.bucket}/o", query=query, allow=(_NOT_FOUND,),
                what=f"gs://{self.bucket}/{prefix}",
            )  # fmt: skip
            if page is None:
                raise self._missing_bucket(prefix.removeprefix(f"{self._root}/"))
            found += page.get("items", [])
            if not page.get("nextPageToken"):
                return found
            query["pageToken"] = str(page["nextPageToken"])

    # -- the state -------------------------------------------------------------------------------
    def read(self, name: str) -> bytes | None:
        if not self._readable():
            return None
        response = self.storage.request(
            "GET", self._object(name), query={"alt": "media"}, allow=(_NOT_FOUND,),
            what=self.where(name),
        )  # fmt: skip
        return response.content if response.status_code != _NOT_FOUND else None

    def write(self, name: str, data: bytes, *, shared: bool = False) -> None:
        del shared  # a bucket's objects are as readable as its IAM policy says
        self._put(name, data)

    def delete(self, name: str) -> None:
        self._delete(name)

    def names(self, directory: str) -> list[str]:
        prefix = f"{self._key(directory)}/"
        return [obj["name"].removeprefix(prefix) for obj in self._list(prefix, delimiter=True)]

    def remove_all(self, *, keep: str | None = None) -> None:
        prefix = f"{self._root}/"
        for obj in self._list(prefix, delimiter=False):
            relative = str(obj["name"]).removeprefix(prefix)
            if keep is None or relative.split("/", 1)[0] != keep:
                self._delete(relative)

    # -- the lock --------------------------------------------------------------------------------
    def lock_read(self) -> tuple[bytes, str] | None:
        return self._get(_LOCK)

    def lock_create(self, owner_id: str, record: bytes) -> str | None:
        del owner_id
        return self._put(_LOCK, record, if_generation="0")

    def lock_refresh(self, token: str, record: bytes) -> str | None:
        return self._put(_LOCK, record, if_generation=token)

    def lock_take_over(self, token: str, stale_id: str, owner_id: str, record: bytes) -> str | None:
        del owner_id
        stale = f"{STALE_PREFIX}{stale_id}.json"
        target = quote(self._key(stale), safe="")
        response = self.storage.request(  # the stale record kept aside, if still the one read
            "POST", f"{self._object(_LOCK)}/copyTo/b/{self.bucket}/o/{target}",
            body={}, query={"ifSourceGenerationMatch": token}, idempotent=True,
            allow=(_NOT_FOUND, _PRECONDITION), what=self.where(stale),
        )  # fmt: skip
        if not response.is_success:
            return None
        return self._put(_LOCK, record, if_generation=token)

    def lock_delete(self, token: str | None) -> None:
        self._delete(_LOCK, if_generation=token)

    def lock_prune(self, days: int) -> None:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        for obj in self._list(f"{self._root}/{STALE_PREFIX}", delimiter=True):
            updated = datetime.fromisoformat(str(obj["updated"]).replace("Z", "+00:00"))
            if updated < cutoff:
                self._delete(str(obj["name"]).removeprefix(f"{self._root}/"))
