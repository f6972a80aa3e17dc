"""The AWS provider: ``target: aws://<region>`` on ECS (Fargate) behind an ALB, with RDS, ECR,
Secrets Manager and CloudWatch Logs (``_provider``, whose deploy runs the common pipeline over
``_steps``). Its parts: the settings and names (``_settings``), one environment's parts from its
config (``_environment``), base resources (``_infrastructure``), the RDS instance
(``_database``) and its snapshots (``_snapshots``), task definitions (``_tasks``), one-off tasks
(``_oneoff``), the image in ECR (``_delivery``) and blue-green between two ECS services behind
one listener (``_traffic``). Only AWS environments import it (and boto3, the extra ``aws``)."""

from __future__ import annotations

from shipyard.config import RdsSection
from shipyard.providers._actions import Action
from shipyard.providers.aws._database import Connection, DatabaseNotReady, RdsDatabase
from shipyard.providers.aws._delivery import EcrDelivery
from shipyard.providers.aws._environment import AwsEnvironment, NotOnAws, state_store
from shipyard.providers.aws._infrastructure import AwsInfrastructure, Clients
from shipyard.providers.aws._oneoff import OneOffFailed, OneOffResult, OneOffTasks
from shipyard.providers.aws._provider import AwsProvider
from shipyard.providers.aws._settings import AwsNames, AwsSettings, Network
from shipyard.providers.aws._snapshots import RdsSnapshot, RdsSnapshots, SnapshotFailed
from shipyard.providers.aws._steps import AwsSteps
from shipyard.providers.aws._tasks import TaskDefinitions, TaskSpec
from shipyard.providers.aws._traffic import AwsTraffic, Health

__all__ = [
    "Action",
    "AwsEnvironment",
    "AwsInfrastructure",
    "AwsNames",
    "AwsProvider",
    "AwsSettings",
    "AwsSteps",
    "AwsTraffic",
    "Clients",
    "Connection",
    "DatabaseNotReady",
    "EcrDelivery",
    "Health",
    "Network",
    "NotOnAws",
    "OneOffFailed",
    "OneOffResult",
    "OneOffTasks",
    "RdsDatabase",
    "RdsSection",
    "RdsSnapshot",
    "RdsSnapshots",
    "SnapshotFailed",
    "TaskDefinitions",
    "TaskSpec",
    "state_store",
]
