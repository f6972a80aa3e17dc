"""State in an S3 bucket: for environments with no host of their own (cloud providers), so two
operators on two machines still share one record and one lock.

Objects live under ``<prefix>/<app>/<environment>/`` (the backend's ``root``). The lock is the
object ``lock.json``: it is created with ``If-None-Match: *`` (only if absent), refreshed and
taken over with ``If-Match: <ETag>`` (only if it is still the record read), and removed with
``If-Match`` too, so every lock decision is one conditional request S3 decides atomically. A
taken-over record is first copied to ``lock.stale-<id>.json`` (only if unchanged) and kept for a
week. Requests retry with ``shipyard.aws``'s policy; an error that remains names the bucket,
the key and the cause. Works against any endpoint speaking the S3
API with conditional writes (``endpoint_url``: LocalStack, the tests' moto server). Only
environments kept in S3 import this module (and boto3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shipyard import aws
from shipyard.errors import ShipyardError, StateError
from shipyard.state._backend import STALE_PREFIX

_LOCK = "lock.json"
_LOST_RACE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def s3_client(*, region: str, endpoint_url: str | None = None) -> Any:
    """An S3 client with shipyard's credential chain and retry policy (``shipyard.aws``)."""
    return aws.client("s3", region=region, endpoint_url=endpoint_url)


class S3State:
    """One environment's state under ``root`` in ``bucket`` (see the module)."""

    def __init__(self, client: Any, bucket: str, root: PurePosixPath) -> None:
        self.client = client
        self.bucket = bucket
        self._root = root

    @property
    def root(self) -> PurePosixPath:
        return self._root

    def _key(self, name: str) -> str:
        return str(self._root / name)

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    # -- requests --------------------------------------------------------------------------------
    def _call(self, action: str, name: str, **params: Any) -> Any:
        """``client.<action>`` on ``name``'s key; a ``ClientError`` is the caller's to judge,
        anything else (an endpoint out of reach) becomes shipyard's error."""
        try:
            return getattr(self.client, action)(Bucket=self.bucket, **params)
        except BotoCoreError as exc:
            raise aws.translate("s3", _permission(action), exc, what=self.where(name)) from exc

    def _failed(self, action: str, name: str, exc: ClientError) -> ShipyardError:
        if aws.error_code(exc) == "NoSuchBucket":
            return StateError(
                f"s3://{self.bucket}: no such bucket (reading {self.where(name)})",
                hint="create the bucket, or name an existing one in the environment's settings",
            )
        return aws.translate("s3", _permission(action), exc, what=self.where(name))

    def _get(self, name: str) -> tuple[bytes, str] | None:

        try:
            answer = self._call("get_object", name, Key=self._key(name))
        except ClientError as exc:
            if aws.error_code(exc) in _MISSING:
                return None
            raise self._failed("get_object", name, exc) from exc
        return bytes(answer["Body"].read()), str(answer["ETag"])

    def _put(self, name: str, data: bytes, **conditions: str) -> str | None:
        """Write ``name``; its new ETag, or ``None`` when a condition does not hold."""

        try:
            answer = self._call("put_object", name, Key=self._key(name), Body=data, **conditions)
        except ClientError as exc:
            if conditions and (
                aws.error_code(exc) in _LOST_RACE or aws.error_code(exc) in _MISSING
            ):
                return None
            raise self._failed("put_object", name, exc) from exc
        return str(answer["ETag"])

    def _delete(self, name: str, **conditions: str) -> bool:

        try:
            self._call("delete_object", name, Key=self._key(name), **conditions)
        except ClientError as exc:
            if aws.error_code(exc) in _MISSING or (
                conditions and aws.error_code(exc) in _LOST_RACE
            ):
                return False
            raise self._failed("delete_object", name, exc) from exc
        return True

    def _list(self, prefix: str, *, delimiter: bool) -> list[dict[str, Any]]:
        """The objects (``Key``, ``LastModified``) whose key starts with ``prefix``; with
        ``delimiter``, only those directly under it."""

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, **({"Delimiter": "/"} if delimiter else {})
        )
        found: list[dict[str, Any]] = []
        try:
            for page in pages:
                found += page.get("Contents", [])
        except BotoCoreError as exc:
            where = f"s3://{self.bucket}/{prefix}"
            raise aws.translate("s3", "ListBucket", exc, what=where) from exc
        except ClientError as exc:
            name = prefix.removeprefix(f"{self._root}/")
            raise self._failed("list_objects_v2", name, exc) from exc
        return found

    # -- the state -------------------------------------------------------------------------------
    def read(self, name: str) -> bytes | None:
        found = self._get(name)
        return found[0] if found is not None else None

    def write(self, name: str, data: bytes, *, shared: bool = False) -> None:
        del shared  # a bucket's objects are as readable as its policy says
        self._put(name, data)

    def delete(self, name: str) -> None:
        self._delete(name)

    def names(self, directory: str) -> list[str]:
        prefix = f"{self._key(directory)}/"
        return [obj["Key"].removeprefix(prefix) for obj in self._list(prefix, delimiter=True)]

    def remove_all(self, *, keep: str | None = None) -> None:
        prefix = f"{self._root}/"
        keys = [
            obj["Key"]
            for obj in self._list(prefix, delimiter=False)
            if keep is None or obj["Key"].removeprefix(prefix).split("/", 1)[0] != keep
        ]

        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                self._call("delete_objects", "", Delete={"Objects": batch, "Quiet": True})
            except ClientError as exc:
                raise self._failed("delete_objects", "", exc) from exc

    # -- the lock --------------------------------------------------------------------------------
    def lock_read(self) -> tuple[bytes, str] | None:
        return self._get(_LOCK)

    def lock_create(self, owner_id: str, record: bytes) -> str | None:
        del owner_id
        return self._put(_LOCK, record, IfNoneMatch="*")

    def lock_refresh(self, token: str, record: bytes) -> str | None:
        return self._put(_LOCK, record, IfMatch=token)

    def lock_take_over(self, token: str, stale_id: str, owner_id: str, record: bytes) -> str | None:
        del owner_id

        stale = f"{STALE_PREFIX}{stale_id}.json"
        try:  # the stale record kept aside, only if it is still the one read
            self._call(
                "copy_object",
                stale,
                Key=self._key(stale),
                CopySource={"Bucket": self.bucket, "Key": self._key(_LOCK)},
                CopySourceIfMatch=token,
            )
        except ClientError as exc:
            if aws.error_code(exc) in _LOST_RACE or aws.error_code(exc) in _MISSING:
                return None
            raise self._failed("copy_object", stale, exc) from exc
        return self._put(_LOCK, record, IfMatch=token)

    def lock_delete(self, token: str | None) -> None:
        if token is None:
            self._delete(_LOCK)
        else:
            self._delete(_LOCK, IfMatch=token)

    def lock_prune(self, days: int) -> None:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        for obj in self._list(f"{self._root}/{STALE_PREFIX}", delimiter=True):
            if obj["LastModified"] < cutoff:
                self._delete(obj["Key"].removeprefix(f"{self._root}/"))


def _permission(action: str) -> str:
    """The IAM action an S3 client method needs."""
    return {
        "get_object": "GetObject",
        "put_object": "PutObject",
        "delete_object": "DeleteObject",
        "delete_objects": "DeleteObject",
        "copy_object": "PutObject",
        "list_objects_v2": "ListBucket",
    }.get(action, action)
