"""The app's images in the environment's Artifact Registry repository, pushed from this machine's
engine: what ECR is to the AWS provider (``providers.aws._delivery``).

The repository (``shipyard-<app>-<environment>``, in the environment's region) is created when
missing: Docker format, labelled as the environment's, tags immutable (a release's image never
changes under its tag). Creating it is a long-running operation, waited for. An image is pushed
as ``<region>-docker.pkg.dev/<project>/<repository>/<app>:<build tag>`` (the migrations image
under the same name, its tag ending in ``-migrations``), unless the repository has that tag
already. ``docker login`` gets the credentials' OAuth access token as the password of user
``oauth2accesstoken``, on stdin, into a private configuration directory removed after the push
(``shipyard.delivery.push``); the masker learns the token, so no line shows it.

``registry`` (host[:port]) replaces ``<region>-docker.pkg.dev`` in what is pushed: a stand-in
registry whose name does not resolve, as the AWS provider's ``registry`` setting does.

Pruning old images is not offered: in a repository with immutable tags Artifact Registry refuses
to delete a tagged version (deleting it would delete its tags), so a release's image stays until
the repository goes (``remove``, for ``destroy --volumes``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from shipyard.build import Image
from shipyard.delivery import push
from shipyard.errors import CommandFailed, DeliveryError
from shipyard.gcp import OPERATION_POLL, Credentials, GcpApi, wait_operation
from shipyard.hosts import Host
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.gcp._names import GcpNames
from shipyard.secrets import Masker
from shipyard.waiting import Interval, wait_until

USER = "oauth2accesstoken"  # docker login's user name for an OAuth access token
_SERVICE = "artifactregistry"
_NOT_FOUND, _CONFLICT = 404, 409
_DOCKER = "DOCKER"
_WRITER_HINT = (
    "the credentials' account needs roles/artifactregistry.writer on the repository (README: "
    "Deploying to Google Cloud lists the roles shipyard needs)"
)


class ArtifactRegistry:
    """The environment's Artifact Registry repository and the images pushed to it.

    ``api``: a ``GcpApi("artifactregistry", …)``; ``credentials``: where the access token for
    ``docker login`` comes from (the API's own, in practice); ``labels``: the operator's, to
    which shipyard adds its own; ``timeout``/``interval``: how long and how often an operation
    (create, delete) is polled."""

    def __init__(
        self,
        api: GcpApi,
        names: GcpNames,
        local: Host,
        credentials: Credentials,
        *,
        labels: Mapping[str, str] | None = None,
        masker: Masker | None = None,
        registry: str | None = None,
        timeout: float = 300.0,
        interval: Interval = OPERATION_POLL,
    ) -> None:
        self.api = api
        self.names = names
        self.local = local
        self.credentials = credentials
        self.labels = names.labels(dict(labels or {}))
        self.masker = masker  # learns the access token
        self.registry = registry.rstrip("/") if registry else None
        self.timeout = timeout
        self.interval = interval
        self._address: str | None = None

    # -- the repository ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The repository's resource name: ``projects/<p>/locations/<region>/repositories/<id>``."""
        return f"{self.names.parent}/repositories/{self.names.repository}"

    def plan(self) -> list[Action]:
        """The change ``repository`` would make (creating the repository); reads only."""
        if self._find() is not None:
            return []
        return [Action(_SERVICE, "create Docker repository", self.names.repository, self._create)]

    def repository(self) -> str:
        """The repository's address (``<region>-docker.pkg.dev/<project>/<repository>``, or
        under ``registry``), the repository created first when missing."""
        if self._address is None:
            found = self._find()
            if found is None:
                found = self._create()
            self._address = self._address_of(found)
        return self._address

    def removal(self) -> list[Action]:
        """What ``remove`` would delete: the repository and its images, if it is labelled as
        the environment's (one that is not is left alone); reads only."""
        found = self._find(checked=False)
        if found is None or not self.names.owns(found.get("labels")):
            return []
        return [Action(_SERVICE, "delete repository (and its images)", self.names.repository,
                       self._delete)]  # fmt: skip

    def remove(self) -> list[Action]:
        """Delete the repository (``destroy --volumes``), waiting until it is gone."""
        return carry_out(self.removal())

    # -- images ------------------------------------------------------------------------------------
    def reference(self, image: Image | str) -> str:
        """Where ``image`` (or a local tag) is in the repository: ``<repository
        address>/<image>:<its tag>``."""
        path, tag = _parts(image)
        return f"{self.repository()}/{path}:{tag}"

    def deliver(self, image: Image | str) -> str:
        """Push ``image`` (or a local tag) unless the repository has its tag already; what was
        done."""
        started = time.monotonic()
        local = image if isinstance(image, str) else image.tag
        ref = self.reference(image)
        if self._has(image):
            return f"Artifact Registry has {ref} already"
        token = self.credentials.token()
        if self.masker is not None:
            self.masker.add(token)
        try:
            push(local, self.local, ref, login=(ref.split("/", 1)[0], USER, token))
        except CommandFailed as exc:
            said = exc.stderr.strip()[-300:]
            raise DeliveryError(
                f"docker push of {ref} failed: {self.masker(said) if self.masker else said}",
                hint=_WRITER_HINT if "denied" in said.lower() else None,
            ) from exc
        return f"pushed {ref} in {time.monotonic() - started:.1f}s"

    def _has(self, image: Image | str) -> bool:
        """Whether the repository has ``image``'s tag (under the package of its path, whose
        slashes the API's name escapes)."""
        path, tag = _parts(image)
        package = quote(path, safe="")
        found = self.api.json(
            "GET", f"v1/{self.name}/packages/{package}/tags/{quote(tag, safe='-._~:@')}",
            allow=(_NOT_FOUND,), what=f"{path}:{tag} in {self.names.repository}",
        )  # fmt: skip
        return found is not None

    # -- requests ----------------------------------------------------------------------------------
    def _find(self, *, checked: bool = True) -> dict[str, Any] | None:
        """The repository, or ``None``; ``checked``: one that cannot hold images is refused."""
        found = self.api.json(
            "GET", f"v1/{self.name}", allow=(_NOT_FOUND,), what=self._what
        )  # fmt: skip
        if checked and found is not None and found.get("format", _DOCKER) != _DOCKER:
            raise DeliveryError(
                f"{self._what} exists and holds {found.get('format')} packages, not Docker images",
                hint="delete or rename that repository (gcloud artifacts repositories delete "
                f"{self.names.repository} --location {self.names.region}), then deploy again",
            )
        return found

    def _create(self) -> dict[str, Any]:
        """Create the repository and wait for it; the repository. A 409 means another caller
        created it, or is creating it (or this request's earlier answer was lost): it is waited
        for until found."""
        body = {
            "format": _DOCKER,
            "dockerConfig": {"immutableTags": True},
            "labels": self.labels,
            "description": f"shipyard: the images of {self.names.app} ({self.names.environment})",
        }
        operation = self.api.json(
            "POST", f"v1/{self.names.parent}/repositories", body=body,
            query={"repositoryId": self.names.repository},
            idempotent=True, allow=(_CONFLICT,), what=self._what,
        )  # fmt: skip
        if operation is not None:
            created = wait_operation(
                self.api, operation, timeout=self.timeout, what=self._what, interval=self.interval
            )
            if created.get("name"):
                return created
        found = wait_until(
            self._find, timeout=self.timeout, interval=self.interval, clock=self.api.clock,
            done=lambda seen: seen is not None,
        )  # fmt: skip
        if found is None:
            raise DeliveryError(
                f"{self._what} is being created by another caller, and was not there within "
                f"{self.timeout:.0f}s",
                hint="see the repository in the Cloud Console, then run the command again",
            )
        return found

    def _delete(self) -> None:
        self._address = None
        operation = self.api.json(
            "DELETE", f"v1/{self.name}", allow=(_NOT_FOUND,), what=self._what
        )  # fmt: skip
        if operation is not None:
            wait_operation(
                self.api, operation, timeout=self.timeout, what=f"deleting {self._what}",
                interval=self.interval,
            )  # fmt: skip

    # -- names -------------------------------------------------------------------------------------
    @property
    def _what(self) -> str:
        return f"Artifact Registry repository {self.names.repository} ({self.names.region})"

    def _address_of(self, repository: Mapping[str, Any]) -> str:
        """Where images of ``repository`` are pushed: its ``registryUri`` (Google's form, with a
        domain-scoped project's ``:`` as ``/``), its host replaced by ``registry`` when set."""
        project = self.names.project.replace(":", "/")
        uri = str(
            repository.get("registryUri")
            or f"{self.names.region}-docker.pkg.dev/{project}/{self.names.repository}"
        )
        if self.registry is None:
            return uri
        return f"{self.registry}/{uri.split('/', 1)[1]}"


def _parts(image: Image | str) -> tuple[str, str]:
    """The image's path in the repository (its local name, ``<app>``) and its tag."""
    local = image if isinstance(image, str) else image.tag
    name, _, tag = local.rpartition(":")
    return name.rsplit("/", 1)[-1], tag
