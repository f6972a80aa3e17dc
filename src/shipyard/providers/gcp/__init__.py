"""The Google Cloud provider: ``target: gcp://<project>/<region>`` on Cloud Run, with Cloud SQL,
Artifact Registry, Secret Manager and Cloud Logging, each over Google's REST APIs
(``shipyard.gcp``), its state and lock in Cloud Storage (``state._gcs``). ``_provider``'s deploy
runs the common pipeline over ``_steps``. Its parts: the settings (``_settings``) and names
(``_names``), one environment's parts from its config (``_environment``), the service and jobs
(``_run``), the instance and its backups (``_sql``), the images (``_registry``), the secrets
(``_secrets``) and the log lines (``_logs``). Only Google Cloud environments import it (and
google-auth, the extra ``gcp``)."""

from __future__ import annotations

from shipyard.providers.gcp._environment import GcpEnvironment, NotOnGcp, state_store
from shipyard.providers.gcp._logs import CloudLogging, LogLine
from shipyard.providers.gcp._names import GcpNames
from shipyard.providers.gcp._provider import GcpProvider
from shipyard.providers.gcp._registry import ArtifactRegistry
from shipyard.providers.gcp._run import CloudRunJobs, CloudRunService, Container, Revision
from shipyard.providers.gcp._secrets import SecretManager
from shipyard.providers.gcp._settings import GcpSettings
from shipyard.providers.gcp._sql import CloudSql, CloudSqlBackup
from shipyard.providers.gcp._steps import GcpSteps

__all__ = [
    "ArtifactRegistry",
    "CloudLogging",
    "CloudRunJobs",
    "CloudRunService",
    "CloudSql",
    "CloudSqlBackup",
    "Container",
    "GcpEnvironment",
    "GcpNames",
    "GcpProvider",
    "GcpSettings",
    "GcpSteps",
    "LogLine",
    "NotOnGcp",
    "Revision",
    "SecretManager",
    "state_store",
]
