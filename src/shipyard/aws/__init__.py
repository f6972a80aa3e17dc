"""AWS as shipyard talks to it: clients from the standard credential chain with one retry policy,
and AWS's errors turned into shipyard's, naming the service, the action and what to do.

Credentials come from boto3's chain (environment, profile, SSO, an instance or task role), never
from shipyard.yml. Every client retries in botocore's adaptive mode (client-side rate limiting
plus exponential backoff with jitter on throttling and transient errors), bounded in attempts and
so in time. What remains after the retries is translated once, here: throttling that outlasted
them, a service quota reached (with the quota to ask for), access denied (with the IAM action),
an endpoint that cannot be reached. ``endpoint_url`` points every client at an endpoint speaking
the AWS APIs (LocalStack; the tests' moto server). Only environments on AWS import this part
(and boto3, the extra ``aws``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from shipyard.errors import ExitCode, HostUnreachable, ShipyardError

__all__ = [
    "ATTEMPTS",
    "ERRORS",
    "AwsError",
    "QuotaExceeded",
    "Throttled",
    "call",
    "client",
    "error_code",
    "translate",
]

# What botocore raises: AWS's answers (``ClientError``) and failures to get one.
ERRORS = (ClientError, BotoCoreError)

ATTEMPTS = 8  # a request and its retries: about 40 s of backoff at most (20 s cap per retry)

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    }
)
QUOTA = frozenset(
    {
        "LimitExceeded",
        "LimitExceededException",
        "ServiceQuotaExceededException",
        "QuotaExceeded",
        "QuotaExceededException",
        "TooManyBuckets",
        "InstanceQuotaExceeded",
        "StorageQuotaExceeded",
        "SnapshotQuotaExceeded",
    }
)
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})

# The quotas shipyard's own actions run into, as Service Quotas names them (service, action).
QUOTAS: dict[tuple[str, str], str] = {
    ("ecs", "CreateCluster"): "Clusters per account",
    ("ecs", "RegisterTaskDefinition"): "Revisions per task definition family",
    ("ecs", "CreateService"): "Services per cluster",
    ("ecs", "RunTask"): "Fargate On-Demand vCPU resource count",
    ("ecr", "CreateRepository"): "Registered repositories",
    ("logs", "CreateLogGroup"): "Log groups",
    ("iam", "CreateRole"): "Roles per account",
    ("secretsmanager", "CreateSecret"): "Secrets per account",
    ("rds", "CreateDBInstance"): "DB instances",
    ("rds", "CreateDBSnapshot"): "Manual DB instance snapshots",
    ("elbv2", "CreateLoadBalancer"): "Application Load Balancers per Region",
    ("elbv2", "CreateTargetGroup"): "Target Groups per Region",
    ("s3", "CreateBucket"): "General purpose buckets",
}


class AwsError(ShipyardError):
    """An AWS request failed after its retries: the service, the action and AWS's answer."""

    def __init__(self, service: str, action: str, code: str, message: str, *, hint: str) -> None:
        super().__init__(f"AWS {service} {action}: {message}", hint=hint)
        self.service, self.action, self.code = service, action, code


class Throttled(AwsError):
    """AWS kept throttling a request through every retry."""


class QuotaExceeded(AwsError):
    """A service quota (limit) of the account or region was reached."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED


def client(
    service: str,
    *,
    region: str,
    endpoint_url: str | None = None,
    attempts: int = ATTEMPTS,
    session: Any = None,
) -> Any:
    """A client of ``service`` with the standard credential chain and the retry policy.
    ``session``: a ``boto3.session.Session`` to share between an operation's clients (one
    credential lookup); by default a new one, so credentials are looked up afresh."""
    config = Config(
        region_name=region,
        retries={"mode": "adaptive", "total_max_attempts": attempts},
        connect_timeout=10,
        read_timeout=60,
    )
    session = session or boto3.session.Session()
    return session.client(service, endpoint_url=endpoint_url, config=config)


def error_code(exc: Any) -> str:
    """The error code of a botocore ``ClientError`` (its HTTP status when it has none)."""
    response = getattr(exc, "response", {}) or {}
    code = response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def translate(service: str, action: str, exc: Exception, *, what: str = "") -> ShipyardError:
    """``exc`` (raised by a botocore client's ``action`` of ``service``) as shipyard's error.
    ``what``: the resource it was about, for the message."""
    about = f" ({what})" if what else ""
    if isinstance(exc, ClientError):
        return _answered(service, action, exc, about)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return HostUnreachable(
            f"AWS {service} {action}{about}: the endpoint cannot be reached ({exc})",
            hint="check the network, the region and providers.aws.endpoint_url",
        )
    if isinstance(exc, NoCredentialsError):
        return AwsError(
            service, action, "NoCredentials", f"no AWS credentials found{about}",
            hint="configure them the standard way (AWS_PROFILE, `aws sso login`, environment "
            "variables or a role); shipyard.yml never holds them",
        )  # fmt: skip
    if isinstance(exc, NoRegionError):
        return AwsError(
            service, action, "NoRegion", f"no region{about}", hint="target: aws://<region>"
        )
    return AwsError(service, action, type(exc).__name__, f"{exc}{about}", hint="try again")


def _answered(service: str, action: str, exc: ClientError, about: str) -> AwsError:
    """An error AWS answered with, after the retries."""
    code = error_code(exc)
    answer = exc.response.get("Error", {}).get("Message", "") or code
    if code in THROTTLING:
        return Throttled(
            service, action, code,
            f"AWS kept throttling the request through every retry ({code}: "
            f"{answer}){about}",
            hint="wait a minute and run the command again; if it keeps happening, another "
            f"tool is using the same account's {service} request rate, or ask AWS for a "
            "higher request rate quota",
        )  # fmt: skip
    if code in QUOTA:
        quota = QUOTAS.get((service, action), f"the {service} quota {action} needs")
        return QuotaExceeded(
            service, action, code,
            f"a service quota was reached: {quota!r} ({code}: {answer}){about}",
            hint=f"ask AWS for more in Service Quotas ({service}: {quota!r}), or remove what "
            "is no longer used; nothing further was created",
        )  # fmt: skip
    if code in DENIED:
        return AwsError(
            service, action, code,
            f"access denied for {service}:{action}{about} ({answer})",
            hint=f"grant {service}:{action} to the credentials' role (docs/aws-iam-policy.json "
            "lists every permission shipyard needs)",
        )  # fmt: skip
    return AwsError(service, action, code, f"{code}: {answer}{about}", hint="see AWS's answer")


def call(
    api: str, action: str, method: Callable[..., Any], /, *, what: str = "", **params: Any
) -> Any:
    """``method(**params)`` (``api``'s ``action``), its errors translated (``translate``).
    Positional-only: a request may have parameters of any name (ECS's ``service``)."""
    try:
        return method(**params)
    except ERRORS as exc:
        raise translate(api, action, exc, what=what) from exc
