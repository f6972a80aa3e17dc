"""The GCP stand-in's Artifact Registry API v1 (``tests.gcp.standin``): Docker repositories and
the images in them, as ``providers.gcp._registry`` uses them.

=================================================  ============================================
Method (discovery id, under ``artifactregistry.    What the stand-in does
projects.locations.``)
=================================================  ============================================
``repositories.create``                            a long-running operation (answered by the
                                                   core's ``operations.get``): done after
                                                   ``create_polls`` reads with the repository,
                                                   or ending in ``create_error``, or never
                                                   (``create_never_done``); the repository exists
                                                   once it is done. ``repositoryId`` missing or
                                                   not a valid id: 400; an id taken (or being
                                                   created): 409 ``ALREADY_EXISTS``; another
                                                   project: 403; ``repository_quota`` spent: 429
                                                   ``RESOURCE_EXHAUSTED`` with
                                                   ``RESOURCE_QUOTA_EXCEEDED``
``repositories.get``                               the repository with its output-only fields
                                                   (``registryUri``, ``createTime``…); 404
``repositories.delete``                            an operation; the repository and its images
                                                   go when it is done
``repositories.packages.tags.get``                 a tag of a package (the image's path, its
                                                   slashes escaped in the name); 404
``repositories.dockerImages.get`` / ``list``       an image by ``<path>@<digest>``; the list in
                                                   pages of ``page_size``
=================================================  ============================================

Images arrive by ``docker push`` to the registry's Docker endpoint, which is not this API: a test
adds them with ``add_image``. Tags are immutable, as shipyard creates its repositories
(``dockerConfig.immutableTags``): adding a tag that points at another image is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from tests.gcp.standin import (
    PROJECT,
    ApiError,
    Call,
    GcpStandIn,
    Handler,
    Reply,
    already_exists,
    not_found,
    now,
    quota_details,
    rpc_error,
)

_TYPE = "type.googleapis.com/google.devtools.artifactregistry.v1."
_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class _Image:
    path: str  # the image's name in the repository (``shop``)
    digest: str
    tags: list[str]
    uploaded: str


@dataclass
class _Repository:
    name: str  # projects/<p>/locations/<l>/repositories/<id>
    body: dict[str, Any]  # what was sent, and the output-only fields
    images: list[_Image] = field(default_factory=list)


class RegistryModel:
    """Repositories by resource name, their images, and what a test scripts of them."""

    apis = ("artifactregistry",)

    def __init__(self, standin: GcpStandIn) -> None:
        self.standin = standin
        self.repositories: dict[str, _Repository] = {}
        self.creating: dict[str, str] = {}  # a repository's name → its create operation's
        self.create_polls = 0  # reads of its operation before a create is done
        self.create_error: dict[str, Any] | None = None  # the next creates end in this Status
        self.create_never_done = False  # the next creates' operations never end
        self.delete_polls = 0
        self.repository_quota: int | None = None  # repositories the project may still create
        self.page_size = 100

    def routes(self) -> dict[str, Handler]:
        prefix = "artifactregistry.projects.locations.repositories"
        return {
            f"{prefix}.create": self._create,
            f"{prefix}.get": self._get,
            f"{prefix}.delete": self._delete,
            f"{prefix}.packages.tags.get": self._tag_get,
            f"{prefix}.dockerImages.get": self._image_get,
            f"{prefix}.dockerImages.list": self._image_list,
        }

    # --- what tests script ---
    def add_repository(
        self, repository_id: str, location: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A repository made before the test (by shipyard earlier, or by someone else)."""
        name = f"projects/{PROJECT}/locations/{location}/repositories/{repository_id}"
        made = _Repository(name, self._resource(name, body or {"format": "DOCKER"}))
        self.repositories[name] = made
        return self.view(made)

    def add_image(
        self, repository: str, path: str, tags: list[str], *, digest: str | None = None
    ) -> str:
        """An image pushed to ``repository`` (its resource name) as ``path`` with ``tags``;
        its digest."""
        found = self.repositories[repository]
        digest = digest or "sha256:" + hashlib.sha256(f"{path}{tags}".encode()).hexdigest()
        for image in found.images:
            moved = [t for t in tags if t in image.tags and image.digest != digest]
            if image.path == path and moved:
                raise ValueError(f"tags {moved} of {path} are immutable in {repository}")
        same = next((i for i in found.images if i.path == path and i.digest == digest), None)
        if same is None:
            found.images.append(_Image(path, digest, list(tags), now()))
        else:
            same.tags += [t for t in tags if t not in same.tags]
        return digest

    def view(self, repository: _Repository) -> dict[str, Any]:
        """A repository as the API answers it."""
        return dict(repository.body)

    # --- repositories ---
    def _resource(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        _, project, _, location, _, ident = name.split("/")
        stamp = now()
        return {**body, "name": name, "createTime": stamp, "updateTime": stamp,
                "registryUri": f"{location}-docker.pkg.dev/{project}/{ident}",
                "mode": body.get("mode", "STANDARD_REPOSITORY"), "sizeBytes": "0",
                "satisfiesPzs": False, "satisfiesPzi": False}  # fmt: skip

    def _repository(self, call: Call) -> _Repository:
        name = _repository_name(call)
        if name in self.creating:  # time passes for an operation nobody polls (its answer lost)
            self.standin.operations[self.creating[name]].view()
        found = self.repositories.get(name)
        if found is None:
            raise not_found(name)
        return found

    def _create(self, call: Call) -> Reply:
        project, location = call.params["projectsId"], call.params["locationsId"]
        if project != PROJECT:
            raise ApiError(rpc_error(403, "PERMISSION_DENIED", "Permission "
                                     "'artifactregistry.repositories.create' denied on resource"))  # fmt: skip
        ident = call.query.get("repositoryId", "")
        if not _ID.fullmatch(ident):
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", f"Invalid repository id {ident!r}"))
        body = call.json()
        problems = _body_problems(body)
        if problems:
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", "; ".join(problems)))
        name = f"projects/{project}/locations/{location}/repositories/{ident}"
        if name in self.repositories or name in self.creating:
            raise already_exists(name)
        if self.repository_quota is not None and self.repository_quota <= 0:
            raise ApiError(rpc_error(
                429, "RESOURCE_EXHAUSTED",
                f"Quota exceeded for quota metric 'Repositories' in region {location}",
                quota_details("RESOURCE_QUOTA_EXCEEDED", "RepositoriesPerProjectPerRegion"),
            ))  # fmt: skip
        if self.repository_quota is not None:
            self.repository_quota -= 1
        error = self.create_error

        def result() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            self.creating.pop(name, None)
            if error is not None:
                return None, error
            made = _Repository(name, self._resource(name, body))
            self.repositories[name] = made
            return {"@type": f"{_TYPE}Repository", **self.view(made)}, None

        polls = 10**9 if self.create_never_done else self.create_polls
        operation = self.standin.operation("artifactregistry", location, result, polls=polls,
                                           metadata={"@type": f"{_TYPE}OperationMetadata"})  # fmt: skip
        self.creating[name] = operation["name"]
        return Reply(200, operation)

    def _get(self, call: Call) -> Reply:
        return Reply(200, self.view(self._repository(call)))

    def _delete(self, call: Call) -> Reply:
        found = self._repository(call)

        def result() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            self.repositories.pop(found.name, None)
            return {"@type": "type.googleapis.com/google.protobuf.Empty"}, None

        operation = self.standin.operation(
            "artifactregistry", call.params["locationsId"], result, polls=self.delete_polls,
            metadata={"@type": f"{_TYPE}OperationMetadata"},
        )  # fmt: skip
        return Reply(200, operation)

    # --- images ---
    def _tag_get(self, call: Call) -> Reply:
        found = self._repository(call)
        path, tag = call.params["packagesId"], call.params["tagsId"]
        for image in found.images:
            if image.path == path and tag in image.tags:
                package = f"{found.name}/packages/{_escaped(path)}"
                return Reply(200, {"name": f"{package}/tags/{tag}",
                                   "version": f"{package}/versions/{image.digest}"})  # fmt: skip
        raise not_found(f"{found.name}/packages/{_escaped(path)}/tags/{tag}")

    def _image_get(self, call: Call) -> Reply:
        found = self._repository(call)
        path, _, digest = call.params["dockerImagesId"].partition("@")
        for image in found.images:
            if image.path == path and image.digest == digest:
                return Reply(200, _image_view(found, image))
        raise not_found(f"{found.name}/dockerImages/{_escaped(path)}@{digest}")

    def _image_list(self, call: Call) -> Reply:
        found = self._repository(call)
        size = int(call.query.get("pageSize") or self.page_size)
        start = int(call.query.get("pageToken") or 0)
        page = found.images[start : start + size]
        answer: dict[str, Any] = {"dockerImages": [_image_view(found, i) for i in page]}
        if start + size < len(found.images):
            answer["nextPageToken"] = str(start + size)
        return Reply(200, answer)


def _repository_name(call: Call) -> str:
    return (
        f"projects/{call.params['projectsId']}/locations/{call.params['locationsId']}"
        f"/repositories/{call.params['repositoriesId']}"
    )


def _escaped(path: str) -> str:
    return path.replace("/", "%2F")


def _image_view(repository: _Repository, image: _Image) -> dict[str, Any]:
    uri = f"{repository.body['registryUri']}/{image.path}@{image.digest}"
    return {"name": f"{repository.name}/dockerImages/{_escaped(image.path)}@{image.digest}",
            "uri": uri, "tags": list(image.tags), "imageSizeBytes": "28311552",
            "uploadTime": image.uploaded, "updateTime": image.uploaded, "buildTime": image.uploaded,
            "mediaType": _MANIFEST}  # fmt: skip


def _body_problems(body: dict[str, Any]) -> list[str]:
    """What Artifact Registry refuses in a repository: output-only fields, a format it does
    not know, labels it does not take."""
    problems = [f"{key} is output only" for key in ("registryUri", "createTime", "updateTime",
                                                    "sizeBytes") if key in body]  # fmt: skip
    if body.get("format") in (None, "FORMAT_UNSPECIFIED"):
        problems.append("format is required")
    labels = body.get("labels") or {}
    if len(labels) > 64:  # Google's limit
        problems.append("at most 64 labels")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(str(value)):
            problems.append(f"invalid label {key}={value}")
    return problems
