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

The bucket is one the operator named, which must exist, or the account's default
(``DefaultBucket``, ``shipyard-state-<account>-<region>``): named on first use (STS, so nothing
is asked of AWS before the state is touched), and created, as a careful operator would, by the
first write that finds it missing. Reading a missing default bucket finds no state: nothing was
deployed yet, and a read never creates it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shipyard import aws
from shipyard.errors import ShipyardError, StateError
from shipyard.state._backend import STALE_PREFIX

_LOCK = "lock.json"
_DENIED = frozenset({"AccessDenied", "403"})
_LOST_RACE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET = "NoSuchBucket"
_OURS_ALREADY = "BucketAlreadyOwnedByYou"  # another operator's first deploy made it just now
_NO_LOCATION_CONSTRAINT = "us-east-1"  # CreateBucket refuses us-east-1 as a LocationConstraint
MANAGED_TAG = ("shipyard:managed", "true")


def s3_client(*, region: str, endpoint_url: str | None = None) -> Any:
    """An S3 client with shipyard's credential chain and retry policy (``shipyard.aws``)."""
    return aws.client("s3", region=region, endpoint_url=endpoint_url)


def default_bucket_name(account: str, region: str) -> str:
    """The account's state bucket in ``region``: S3's names are global, so the account and the
    region make it the account's own (at most 15 + 12 + 1 + 14 characters, of S3's 63)."""
    return f"shipyard-state-{account}-{region}"


class DefaultBucket:
    """The account's state bucket in ``region`` (``default_bucket_name``), used when the
    environment names none: its name asks STS for the account on first use; ``create`` makes
    it as a careful operator would."""

    def __init__(self, sts: Any, region: str) -> None:
        self.sts = sts
        self.region = region

    @cached_property
    def account(self) -> str:
        identity = aws.call("sts", "GetCallerIdentity", self.sts.get_caller_identity)
        return str(identity["Account"])

    @property
    def name(self) -> str:
        return default_bucket_name(self.account, self.region)

    def create(self, s3: Any) -> None:
        """Create the bucket (another operator creating it at the same moment is fine), then
        block all public access, turn versioning on (every earlier record stays recoverable),
        encrypt by default (SSE-S3) and tag it ``shipyard:managed``. Each step is idempotent,
        so the creator that lost a race, or one interrupted halfway, completes the same bucket."""
        bucket = self.name
        where = f"s3://{bucket}"
        location = (
            {}
            if self.region == _NO_LOCATION_CONSTRAINT
            else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        )
        try:
            s3.create_bucket(Bucket=bucket, **location)
        except ClientError as exc:
            if aws.error_code(exc) == "BucketAlreadyExists":  # another account's
                raise StateError(
                    f"{where}: the name of this account's default state bucket is taken by "
                    "another AWS account",
                    hint="name a bucket of this account in providers.aws.state_bucket",
                ) from exc
            if aws.error_code(exc) != _OURS_ALREADY:
                raise aws.translate("s3", "CreateBucket", exc, what=where) from exc
        except BotoCoreError as exc:
            raise aws.translate("s3", "CreateBucket", exc, what=where) from exc
        aws.call(
            "s3", "PutBucketPublicAccessBlock", s3.put_public_access_block, what=where,
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
            },
        )  # fmt: skip
        aws.call(
            "s3", "PutBucketVersioning", s3.put_bucket_versioning, what=where,
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"},
        )  # fmt: skip
        aws.call(
            "s3", "PutEncryptionConfiguration", s3.put_bucket_encryption, what=where,
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )  # fmt: skip
        key, value = MANAGED_TAG
        aws.call(
            "s3", "PutBucketTagging", s3.put_bucket_tagging, what=where,
            Bucket=bucket, Tagging={"TagSet": [{"Key": key, "Value": value}]},
        )  # fmt: skip


class S3State:
    """One environment's state under ``root`` in ``bucket``: a name (a bucket that must exist)
    or the account's ``DefaultBucket`` (see the module)."""

    def __init__(self, client: Any, bucket: str | DefaultBucket, root: PurePosixPath) -> None:
        self.client = client
        self._bucket = bucket
        self._root = root

    @property
    def bucket(self) -> str:
        """The bucket's name (the default's: asked of STS on first use)."""
        return self._bucket if isinstance(self._bucket, str) else self._bucket.name

    @property
    def root(self) -> PurePosixPath:
        return self._root

    def _missing_default(self, exc: ClientError) -> bool:
        """Whether ``exc`` says the bucket is missing, and it is the default (no state yet)."""
        return isinstance(self._bucket, DefaultBucket) and aws.error_code(exc) == _NO_BUCKET

    def _key(self, name: str) -> str:
        return str(self._root / name)

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    # -- requests --------------------------------------------------------------------------------
    def _call(self, action: str, name: str, **params: Any) -> Any:
        """``client.<action>`` on ``name``'s key; a ``ClientError`` is the caller's to judge,
        anything else (an endpoint out of reach) becomes shipyard's error."""
        if isinstance(self._bucket, DefaultBucket):
            # Its name can be guessed: S3 refuses the request unless this account owns it.
            params["ExpectedBucketOwner"] = self._bucket.account
            if action == "copy_object":
                params["ExpectedSourceBucketOwner"] = self._bucket.account
        try:
            return getattr(self.client, action)(Bucket=self.bucket, **params)
        except BotoCoreError as exc:
            raise aws.translate("s3", _permission(action), exc, what=self.where(name)) from exc

    def _failed(self, action: str, name: str, exc: ClientError) -> ShipyardError:
        if aws.error_code(exc) == _NO_BUCKET and isinstance(self._bucket, DefaultBucket):
            return StateError(  # only a write gets here: it created the bucket, then missed it
                f"s3://{self.bucket}: the account's default state bucket, just created, is not "
                f"there yet ({_doing(action)} {self.where(name)})",
                hint="run the command again in a minute",
            )
        if isinstance(self._bucket, DefaultBucket) and aws.error_code(exc) in _DENIED:
            return StateError(
                f"s3://{self.bucket}: access denied ({_doing(action)} {self.where(name)}): the "
                f"IAM policy lacks s3:{_permission(action)}, or another AWS account owns a bucket "
                "of the default state bucket's name",
                hint="see docs/aws-iam-policy.json, or name a bucket of this account in "
                "providers.aws.state_bucket",
            )
        if aws.error_code(exc) == _NO_BUCKET:
            return StateError(
                f"s3://{self.bucket}: no such bucket, named by providers.aws.state_bucket "
                f"({_doing(action)} {self.where(name)})",
                hint="create the bucket, name an existing one in providers.aws.state_bucket, or "
                "leave state_bucket out to keep the state in the account's default bucket, which "
                "the first deploy creates",
            )
        return aws.translate("s3", _permission(action), exc, what=self.where(name))

    def _get(self, name: str) -> tuple[bytes, str] | None:

        try:
            answer = self._call("get_object", name, Key=self._key(name))
        except ClientError as exc:
            if aws.error_code(exc) in _MISSING or self._missing_default(exc):
                return None
            raise self._failed("get_object", name, exc) from exc
        return bytes(answer["Body"].read()), str(answer["ETag"])

    def _put(self, name: str, data: bytes, *, create: bool = True, **conditions: str) -> str | None:
        """Write ``name``; its new ETag, or ``None`` when a condition does not hold. The first
        write to the default bucket, when missing, creates it (``create``: not yet tried)."""

        try:
            answer = self._call("put_object", name, Key=self._key(name), Body=data, **conditions)
        except ClientError as exc:
            if (
                create
                and isinstance(self._bucket, DefaultBucket)
                and aws.error_code(exc) == _NO_BUCKET
            ):
                self._bucket.create(self.client)
                return self._put(name, data, create=False, **conditions)
            if conditions and (
                aws.error_code(exc) in _MISSING or aws.error_code(exc) in _LOST_RACE
            ):
                return None
            raise self._failed("put_object", name, exc) from exc
        return str(answer["ETag"])

    def _delete(self, name: str, **conditions: str) -> bool:

        try:
            self._call("delete_object", name, Key=self._key(name), **conditions)
        except ClientError as exc:
            if (
                aws.error_code(exc) in _MISSING
                or self._missing_default(exc)
                or (conditions and aws.error_code(exc) in _LOST_RACE)
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
            if self._missing_default(exc):
                return []
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
            if (
                aws.error_code(exc) in _LOST_RACE
                or aws.error_code(exc) in _MISSING
                or self._missing_default(exc)
            ):
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


def _doing(action: str) -> str:
    """What an S3 client method was doing, for messages."""
    return {
        "put_object": "writing",
        "copy_object": "writing",
        "delete_object": "removing",
        "delete_objects": "removing",
        "list_objects_v2": "listing",
    }.get(action, "reading")


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
