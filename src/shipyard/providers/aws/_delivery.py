"""The app's image in the environment's ECR repository, pushed from this machine's engine.

The repository (``shipyard/<app>/<environment>``) is created when missing: tagged as the
environment's, tags immutable (a release's image never changes under its tag), scanned on
push. ``docker login`` gets ECR's registry token on stdin, into a private configuration
directory removed after the push (``shipyard.delivery.push``): never the operator's own
``~/.docker``. The image keeps its build tag (``<version>-<commit>-<inputs>``) and its OCI
labels. An image ECR has under its tag already is not pushed again.
"""

from __future__ import annotations

import base64
import time

from shipyard.build import Image
from shipyard.delivery import push
from shipyard.errors import DeliveryError
from shipyard.hosts import Host
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._settings import AwsNames, AwsSettings
from shipyard.secrets import Masker


class EcrDelivery:
    """Pushes the environment's images to its ECR repository."""

    def __init__(
        self,
        names: AwsNames,
        settings: AwsSettings,
        clients: Clients,
        local: Host,
        *,
        masker: Masker | None = None,
    ) -> None:
        self.names = names
        self.settings = settings
        self.clients = clients
        self.local = local
        self.masker = masker  # learns the registry token's password

    def repository(self) -> str:
        """The repository's URI (``<registry>/<name>``), created when missing."""
        name = self.names.repository
        found = self.clients.find(
            "ecr", "DescribeRepositories", name,
            missing="RepositoryNotFoundException", repositoryNames=[name],
        )  # fmt: skip
        if found is not None:
            uri = str(found["repositories"][0]["repositoryUri"])
        else:
            tags = self.names.tags(self.settings.tags)
            created = self.clients.call(
                "ecr", "CreateRepository", name,
                repositoryName=name, imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )  # fmt: skip
            uri = str(created["repository"]["repositoryUri"])
        if self.settings.registry is not None:
            return f"{self.settings.registry.rstrip('/')}/{name}"
        return uri

    def reference(self, image: Image) -> str:
        """Where ``image`` is in the repository: ``<repository URI>:<its tag>``."""
        return f"{self.repository()}:{_tag_of(image)}"

    def deliver(self, image: Image) -> str:
        """Push ``image`` unless ECR has it under its tag already; what was done."""
        started = time.monotonic()
        ref = self.reference(image)
        tag = _tag_of(image)
        present = self.clients.find(
            "ecr", "DescribeImages", self.names.repository,
            missing="ImageNotFoundException",
            repositoryName=self.names.repository, imageIds=[{"imageTag": tag}],
        )  # fmt: skip
        if present is not None and present.get("imageDetails"):
            return f"ECR has {ref} already"
        push(image.tag, self.local, ref, login=self._login(ref))
        return f"pushed {ref} in {time.monotonic() - started:.1f}s"

    def _login(self, ref: str) -> tuple[str, str, str]:
        """(server, user, password) from ECR's registry token, valid for 12 hours."""
        answer = self.clients.call("ecr", "GetAuthorizationToken", self.names.repository)
        data = answer["authorizationData"][0]
        try:
            user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DeliveryError("ECR answered a registry token shipyard cannot read") from exc
        if self.masker is not None:
            self.masker.add(password)
        return ref.split("/", 1)[0], user, password


def _tag_of(image: Image) -> str:
    return image.tag.rsplit(":", 1)[-1]
