"""The GCP stand-in's Cloud Storage and Cloud Resource Manager (``tests.gcp.standin``): what the
state and the lock in a bucket (``state._gcs``) use.

=========================================  ==================================================
Method (discovery id)                      What the stand-in does
=========================================  ==================================================
``storage.buckets.get``/``insert``         buckets with a project number; 409 when taken;
                                           403 for a bucket of another project, unless that
                                           bucket is open to all (``foreign_bucket``)
``storage.objects.get``                    metadata, or the bytes with ``alt=media``; a
                                           ``generation`` other than the live one: 404
``storage.objects.insert`` (simple upload) ``ifGenerationMatch`` (``0``: none live), 412
``storage.objects.delete``/``copy``        ``ifGenerationMatch`` / ``ifSourceGenerationMatch``
``storage.objects.list``                   ``prefix``, ``delimiter``, pages of ``page_size``
``cloudresourcemanager.projects.get``      the project's number; 403 for any other project
=========================================  ==================================================

Only live generations are kept (a versioned bucket's older ones are not modelled).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.gcp.standin import (
    CLIENT_EMAIL,
    PROJECT,
    PROJECT_NUMBER,
    ApiError,
    Call,
    Handler,
    Reply,
    legacy_error,
    now,
    rpc_error,
)


@dataclass
class _Object:
    data: bytes
    generation: int
    updated: str


@dataclass
class Bucket:
    name: str
    project_number: str
    resource: dict[str, Any]
    open_to_all: bool = False
    objects: dict[str, _Object] = field(default_factory=dict)


class StorageModel:
    """Buckets and their objects, and the one project the credentials belong to."""

    apis = ("storage", "cloudresourcemanager")

    def __init__(self) -> None:
        self.page_size = 1000
        self.buckets: dict[str, Bucket] = {}
        self._generations = itertools.count(1733400000000001)

    def routes(self) -> dict[str, Handler]:
        return {
            "storage.buckets.get": self._bucket_get,
            "storage.buckets.insert": self._bucket_insert,
            "storage.objects.get": self._object_get,
            "storage.objects.insert": self._object_insert,
            "storage.objects.delete": self._object_delete,
            "storage.objects.list": self._object_list,
            "storage.objects.copy": self._object_copy,
            "cloudresourcemanager.projects.get": self._project_get,
        }

    # --- what tests script ---
    def add_bucket(self, name: str) -> None:
        """A bucket of the project, made before the test."""
        self.buckets[name] = Bucket(name, PROJECT_NUMBER, {"name": name})

    def foreign_bucket(self, name: str, *, open_to_all: bool) -> None:
        """A bucket another project created first (a squatted name)."""
        self.buckets[name] = Bucket(name, "999999999999", {"name": name}, open_to_all)

    def object(self, bucket: str, name: str) -> bytes | None:
        found = self.buckets.get(bucket)
        item = found.objects.get(name) if found else None
        return item.data if item else None

    # --- Cloud Resource Manager ---
    def _project_get(self, call: Call) -> Reply:
        if call.params["projectsId"] != PROJECT:
            raise ApiError(
                rpc_error(403, "PERMISSION_DENIED", "The caller does not have permission")
            )
        return Reply(200, {"name": f"projects/{PROJECT_NUMBER}", "projectId": PROJECT,
                           "state": "ACTIVE", "displayName": PROJECT, "parent": "organizations/1"})  # fmt: skip

    # --- Cloud Storage ---
    def _bucket(self, name: str) -> Bucket:
        found = self.buckets.get(name)
        if found is None:
            raise legacy_error(404, "notFound", "The specified bucket does not exist.")
        if found.project_number != PROJECT_NUMBER and not found.open_to_all:
            raise legacy_error(
                403, "forbidden", f"{CLIENT_EMAIL} does not have storage.buckets.get access"
            )
        return found

    def _bucket_get(self, call: Call) -> Reply:
        found = self._bucket(call.params["bucket"])
        return Reply(200, {**found.resource, "projectNumber": found.project_number})

    def _bucket_insert(self, call: Call) -> Reply:
        body = call.json()
        if call.query.get("project") != PROJECT:
            raise ApiError(
                rpc_error(403, "PERMISSION_DENIED", "The caller does not have permission")
            )
        name = body.get("name", "")
        if not name:
            raise legacy_error(400, "required", "Required")
        if name in self.buckets:
            ours = self.buckets[name].project_number == PROJECT_NUMBER
            raise legacy_error(
                409, "conflict",
                "Your previous request to create the named bucket succeeded and you already own it."
                if ours else "The requested bucket name is not available.",
            )  # fmt: skip
        stamp = now()
        resource = {"kind": "storage#bucket", "id": name, "name": name, "metageneration": "1",
                    "timeCreated": stamp, "updated": stamp, "storageClass": "STANDARD", **body}  # fmt: skip
        self.buckets[name] = Bucket(name, PROJECT_NUMBER, resource)
        return Reply(200, {**resource, "projectNumber": PROJECT_NUMBER})

    @staticmethod
    def _metadata(bucket: str, name: str, item: _Object) -> dict[str, Any]:
        return {"kind": "storage#object", "id": f"{bucket}/{name}/{item.generation}",
                "name": name, "bucket": bucket, "generation": str(item.generation),
                "metageneration": "1", "contentType": "application/octet-stream",
                "size": str(len(item.data)), "updated": item.updated, "timeCreated": item.updated}  # fmt: skip

    @staticmethod
    def _live(bucket: Bucket, name: str, query: dict[str, str]) -> _Object:
        item = bucket.objects.get(name)
        if item is None or ("generation" in query and query["generation"] != str(item.generation)):
            raise legacy_error(404, "notFound", f"No such object: {bucket.name}/{name}")
        return item

    @staticmethod
    def _precondition(item: _Object | None, wanted: str | None) -> None:
        if wanted is None:
            return
        live = str(item.generation) if item is not None else "0"
        if wanted != live:
            raise legacy_error(
                412, "conditionNotMet",
                "At least one of the pre-conditions you specified did not hold.",
            )  # fmt: skip

    def _object_get(self, call: Call) -> Reply:
        bucket = self._bucket(call.params["bucket"])
        item = self._live(bucket, call.params["object"], call.query)
        if call.query.get("alt") == "media":
            return Reply(200, item.data, {"x-goog-generation": str(item.generation)})
        return Reply(200, self._metadata(bucket.name, call.params["object"], item))

    def _write(self, bucket: Bucket, name: str, data: bytes) -> Reply:
        item = _Object(data, next(self._generations), now())
        bucket.objects[name] = item
        return Reply(200, self._metadata(bucket.name, name, item))

    def _object_insert(self, call: Call) -> Reply:
        bucket = self._bucket(call.params["bucket"])
        name = call.query.get("name", "")
        if not name:
            raise legacy_error(400, "required", "Required parameter: name")
        self._precondition(bucket.objects.get(name), call.query.get("ifGenerationMatch"))
        return self._write(bucket, name, call.raw)

    def _object_delete(self, call: Call) -> Reply:
        bucket = self._bucket(call.params["bucket"])
        item = self._live(bucket, call.params["object"], {})
        self._precondition(item, call.query.get("ifGenerationMatch"))
        del bucket.objects[call.params["object"]]
        return Reply(204)

    def _object_copy(self, call: Call) -> Reply:
        source = self._bucket(call.params["sourceBucket"])
        item = self._live(source, call.params["sourceObject"], {})
        self._precondition(item, call.query.get("ifSourceGenerationMatch"))
        target = self._bucket(call.params["destinationBucket"])
        destination = call.params["destinationObject"]
        self._precondition(target.objects.get(destination), call.query.get("ifGenerationMatch"))
        return self._write(target, destination, item.data)

    def _object_list(self, call: Call) -> Reply:
        bucket = self._bucket(call.params["bucket"])
        prefix, delimiter = call.query.get("prefix", ""), call.query.get("delimiter")
        items, prefixes = [], set()
        for name in sorted(bucket.objects):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            items.append(self._metadata(bucket.name, name, bucket.objects[name]))
        start = int(call.query.get("pageToken", "0"))
        page: dict[str, Any] = {"kind": "storage#objects"}
        if items[start : start + self.page_size]:
            page["items"] = items[start : start + self.page_size]
        if prefixes:
            page["prefixes"] = sorted(prefixes)
        if start + self.page_size < len(items):
            page["nextPageToken"] = str(start + self.page_size)
        return Reply(200, page)
