"""The AWS provider, being built: an environment's base resources on AWS (``_infrastructure``)
from its settings (``_settings``), and its database's RDS snapshots (``_snapshots``) and the app's task definitions (``_tasks``). No ``target`` reaches it yet; the Docker provider stays the
default. Only AWS environments import it (and boto3, the extra ``aws``)."""

from __future__ import annotations

from shipyard.providers.aws._infrastructure import Action, AwsInfrastructure, Clients
from shipyard.providers.aws._settings import AwsNames, AwsSettings
from shipyard.providers.aws._snapshots import RdsSnapshot, RdsSnapshots, SnapshotFailed
from shipyard.providers.aws._tasks import TaskDefinitions, TaskSpec

__all__ = [
    "Action",
    "AwsInfrastructure",
    "AwsNames",
    "AwsSettings",
    "Clients",
    "RdsSnapshot",
    "RdsSnapshots",
    "SnapshotFailed",
    "TaskDefinitions",
    "TaskSpec",
]
