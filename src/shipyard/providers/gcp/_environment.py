"""One Google Cloud environment's parts, made from its config: settings, names, one client per
API (sharing the Application Default Credentials), each resource's manager; where its state is
kept."""

from __future__ import annotations

from functools import cached_property
from pathlib import PurePosixPath

from shipyard.config import Config
from shipyard.errors import ExitCode, ShipyardError
from shipyard.gcp import Credentials, GcpApi, application_default_credentials
from shipyard.hosts import Host
from shipyard.providers.gcp._logs import CloudLogging
from shipyard.providers.gcp._names import GcpNames
from shipyard.providers.gcp._registry import ArtifactRegistry
from shipyard.providers.gcp._run import CloudRunJobs, CloudRunService
from shipyard.providers.gcp._secrets import SecretManager
from shipyard.providers.gcp._settings import GcpSettings
from shipyard.providers.gcp._sql import CloudSql
from shipyard.state import StateStore
from shipyard.state._gcs import DefaultBucket, GcsState, default_bucket_name

_STATE_PREFIX = "shipyard"


class NotOnGcp(ShipyardError):
    """An operation the Google Cloud provider does not run."""

    exit_code = ExitCode.USAGE


def state_store(config: Config, credentials: Credentials | None = None) -> StateStore:
    """The environment's state and lock: ``shipyard/<app>/<environment>/`` in the state bucket,
    ``providers.gcp.state_bucket`` or else the project's default (checked, or created, when the
    state is first touched: making the store asks nothing of Google)."""
    settings = GcpSettings.of(config)
    credentials = credentials or _LazyCredentials()
    storage = GcpApi("storage", credentials)
    root = PurePosixPath(_STATE_PREFIX, config.app.name, config.environment.name)
    bucket = settings.state_bucket or DefaultBucket(
        settings.project, settings.region, storage, GcpApi("cloudresourcemanager", credentials)
    )
    return StateStore(GcsState(storage, bucket, root))


def state_location(settings: GcpSettings) -> str:
    """Where the state is kept, as ``check`` says it."""
    if settings.state_bucket is not None:
        return f"gs://{settings.state_bucket}"
    return (
        f"gs://{default_bucket_name(settings.project)} (the project's, created by the first deploy)"
    )


class _LazyCredentials:
    """Application Default Credentials looked up on the first request, not before (``status``
    of an environment never deployed, ``check``, print no credential error of their own)."""

    @cached_property
    def _credentials(self) -> Credentials:
        return application_default_credentials()

    def token(self) -> str:
        return self._credentials.token()

    @property
    def quota_project(self) -> str | None:
        return self._credentials.quota_project


class GcpEnvironment:
    """One environment's parts on Google Cloud, from its config; ``local``: this machine (where
    images are built and pushed from)."""

    def __init__(
        self, config: Config, local: Host, *, credentials: Credentials | None = None
    ) -> None:
        self.config = config
        self.local = local
        self.settings = GcpSettings.of(config)
        self.names = GcpNames(
            self.settings.project, self.settings.region, config.app.name, config.environment.name
        )
        self.credentials = credentials or _LazyCredentials()
        self._apis: dict[str, GcpApi] = {}

    def api(self, name: str) -> GcpApi:
        """The client of API ``name`` (one per API, kept for the operation)."""
        if name not in self._apis:
            self._apis[name] = GcpApi(name, self.credentials)
        return self._apis[name]

    @property
    def labels(self) -> dict[str, str]:
        return self.names.labels(self.settings.labels)

    def service(self) -> CloudRunService:
        return CloudRunService(
            self.api("run"), self.names, labels=self.settings.labels,
            timeout=self.config.health.start_timeout + 300,
        )  # fmt: skip

    def jobs(self) -> CloudRunJobs:
        return CloudRunJobs(
            self.api("run"), self.names, labels=self.settings.labels,
            service_account=self.settings.service_account,
        )  # fmt: skip

    def registry(self) -> ArtifactRegistry:
        return ArtifactRegistry(
            self.api("artifactregistry"), self.names, self.local, self.credentials,
            labels=self.settings.labels, masker=self.config.masker,
            registry=self.settings.registry,
        )  # fmt: skip

    def secrets(self) -> SecretManager:
        return SecretManager(self.api("secretmanager"), self.names, labels=self.settings.labels)

    def logging(self) -> CloudLogging:
        return CloudLogging(self.api("logging"), self.names)

    def database(self) -> CloudSql | None:
        """The Cloud SQL instance (``providers.gcp.cloud_sql``), or ``None``: the env file's
        DATABASE_URL names an existing database."""
        sql, section = self.settings.cloud_sql, self.config.database
        if sql is None or section is None:
            return None
        return CloudSql(
            self.api("sqladmin"), self.names,
            tier=sql.tier, edition=sql.edition, version=sql.version, disk_gb=sql.disk_gb,
            database=section.name, user=section.user, private_network=sql.private_network,
            deletion_protection=sql.deletion_protection, labels=self.settings.labels,
            instance=sql.instance, backup_timeout=section.snapshots.timeout,
        )  # fmt: skip

    def runtime_account(self) -> str:
        """The service account the revisions and jobs run as: ``providers.gcp.service_account``,
        else the project's Compute Engine default one (its number asked of Resource Manager)."""
        if self.settings.service_account:
            return self.settings.service_account
        found = self.api("cloudresourcemanager").json(
            "GET", f"v3/projects/{self.settings.project}", what=self.settings.project
        ) or {}  # fmt: skip
        number = str(found.get("name", "")).removeprefix("projects/")
        return f"{number}-compute@developer.gserviceaccount.com"

    def close(self) -> None:
        for api in self._apis.values():
            api.close()
