"""The names of an environment's resources on Google Cloud, from its project, region, app and
environment names, and the labels that mark them as the environment's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

LABEL_APP, LABEL_ENV = "shipyard-app", "shipyard-env"
_RUN_NAME_MAX = 49  # Cloud Run service and job names
_REVISION_MAX = 63


@dataclass(frozen=True)
class GcpNames:
    """App and environment names are lowercase letters, digits and dashes (the config checks
    them), which every Google resource name and label takes."""

    project: str
    region: str
    app: str
    environment: str

    @property
    def stem(self) -> str:
        return f"shipyard-{self.app}-{self.environment}"

    @property
    def parent(self) -> str:
        """The region's resource name, under which Cloud Run and Artifact Registry keep theirs."""
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def service(self) -> str:
        """The Cloud Run service (its revisions are the releases)."""
        return self._run_name("")

    def job(self, purpose: str) -> str:
        """A Cloud Run job: ``migrate`` (golang-migrate), ``release`` (the release commands),
        ``tools`` (psql, for the extensions)."""
        return self._run_name(purpose)

    def revision(self, release_id: str) -> str:
        """The Cloud Run revision of a release: ``<service>-<release id>``, lowercase; where
        that passes Cloud Run's 63 characters, a hash of the release id instead of the id, so
        two releases never share a name."""
        suffix = release_id.lower()
        if len(self.service) + 1 + len(suffix) > _REVISION_MAX:
            suffix = hashlib.sha256(release_id.encode()).hexdigest()[:12]
        return f"{self.service}-{suffix}"

    @property
    def repository(self) -> str:
        """The Artifact Registry repository of the environment's images."""
        return self.stem

    @property
    def instance(self) -> str:
        """The Cloud SQL instance."""
        return self.stem

    def secret(self, key: str) -> str:
        """The Secret Manager secret holding the env file's ``key``."""
        return f"{self.stem}-{key}"

    def labels(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Every resource's labels: the operator's, then shipyard's own (which always win)."""
        return {**(extra or {}), LABEL_APP: self.app, LABEL_ENV: self.environment}

    def owns(self, labels: dict[str, str] | None) -> bool:
        """Whether a resource carrying ``labels`` is this environment's."""
        found = labels or {}
        return found.get(LABEL_APP) == self.app and found.get(LABEL_ENV) == self.environment

    def _run_name(self, suffix: str) -> str:
        """At most 49 characters, as Cloud Run allows: a long name is cut and keeps a hash of
        the whole, so two environments never share one."""
        name = f"{self.stem}-{suffix}" if suffix else self.stem
        if len(name) <= _RUN_NAME_MAX:
            return name
        digest = hashlib.sha256(self.stem.encode()).hexdigest()[:6]
        room = _RUN_NAME_MAX - len(digest) - 1 - (len(suffix) + 1 if suffix else 0)
        head = self.stem[:room].rstrip("-")
        return f"{head}-{digest}-{suffix}" if suffix else f"{head}-{digest}"
