"""``shipyard.yml`` + ``.env.<environment>`` → a validated, immutable ``Config``.

Nothing touches a host before the configuration is valid (FR-008).
"""

from __future__ import annotations

import json
from typing import Any

from shipyard.config._loader import Config, Environment, database_url_problem, load_config
from shipyard.config._models import (
    GCP_TARGET,
    AlertmanagerSection,
    AlertsSection,
    AppSection,
    AwsSection,
    CloudSqlSection,
    CommandCheck,
    ConfigFile,
    DatabaseSection,
    DeploySection,
    DigitalOceanSection,
    DockerfileBuild,
    DoDatabaseSection,
    GcpSection,
    GitHubSection,
    GoBuild,
    GrafanaSection,
    HealthSection,
    HookSpec,
    HooksSection,
    HttpCheck,
    MigrationsSection,
    MonitoringImages,
    MonitoringSection,
    NotificationsSection,
    NtfySink,
    PostgresCheck,
    ProxySection,
    PublishSection,
    RdsSection,
    RegistrySection,
    RetrySection,
    SnapshotsSection,
    SSHSection,
    TcpCheck,
    WebhookSink,
    parse_duration,
)
from shipyard.config._reference import reference_markdown

__all__ = [
    "GCP_TARGET",
    "AlertmanagerSection",
    "AlertsSection",
    "AppSection",
    "AwsSection",
    "CloudSqlSection",
    "CommandCheck",
    "Config",
    "ConfigFile",
    "DatabaseSection",
    "DeploySection",
    "DigitalOceanSection",
    "DoDatabaseSection",
    "DockerfileBuild",
    "Environment",
    "GcpSection",
    "GitHubSection",
    "GoBuild",
    "GrafanaSection",
    "HealthSection",
    "HookSpec",
    "HooksSection",
    "HttpCheck",
    "MigrationsSection",
    "MonitoringImages",
    "MonitoringSection",
    "NotificationsSection",
    "NtfySink",
    "PostgresCheck",
    "ProxySection",
    "PublishSection",
    "RdsSection",
    "RegistrySection",
    "RetrySection",
    "SSHSection",
    "SnapshotsSection",
    "TcpCheck",
    "WebhookSink",
    "database_url_problem",
    "json_schema",
    "load_config",
    "parse_duration",
    "reference_markdown",
]


def json_schema() -> str:
    """The JSON Schema of shipyard.yml, for editors."""
    schema: dict[str, Any] = ConfigFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "shipyard.yml"
    return json.dumps(schema, indent=2, sort_keys=False)
