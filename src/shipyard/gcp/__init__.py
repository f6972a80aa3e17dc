"""Google Cloud as shipyard talks to it: REST over HTTPS with httpx, credentials from Application
Default Credentials, one retry policy, and Google's errors turned into shipyard's, naming the API,
the request and what to do.

Credentials come from ADC (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, the metadata server of a VM or a CI runner with workload identity),
through ``google-auth`` (the extra ``gcp``), never from shipyard.yml; a token is refreshed before
it expires and sent in a header only, so it never appears in a message.

The policy, for every API: a 429 or a 403 ``rateLimitExceeded`` (a per-minute rate quota) waits
for ``Retry-After``, else the answer's ``RetryInfo``, else backs off (1 s doubling to 30 s); a 5xx
or a lost connection backs off; all within a total time (``budget``). A request that is not
idempotent (``idempotent=False``: running a job, a backup) is repeated only when Google cannot
have acted on it: a 429, or a connection never made. An allocation quota
(``RESOURCE_QUOTA_EXCEEDED``: instances, repositories) is not retried: the error names the quota
and where to ask for more. What remains after the budget names the rate quota and what to do.

``SHIPYARD_GCP_ENDPOINT`` points every API at one base URL, each API under ``<base>/<api>/`` (the
tests' stand-in; a proxy); unset, each API is ``https://<api>.googleapis.com/``. Only environments
on Google Cloud import this part (and google-auth).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx

from shipyard.errors import ExitCode, HostUnreachable, ShipyardError
from shipyard.waiting import Backoff, Clock, Interval, wait_until

__all__ = [
    "ENDPOINT_ENV",
    "OPERATION_POLL",
    "SCOPE",
    "Credentials",
    "GcpApi",
    "GcpError",
    "OperationFailed",
    "QuotaExceeded",
    "RateLimited",
    "adc_source",
    "application_default_credentials",
    "wait_operation",
]

ENDPOINT_ENV = "SHIPYARD_GCP_ENDPOINT"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_BACKOFF_CAP = 30.0
_TOO_MANY = 429
_FORBIDDEN = 403
_SERVER_ERRORS = frozenset({500, 502, 503, 504})
_TRANSIENT = _SERVER_ERRORS | {408}  # Cloud Storage's guidance retries a request timeout too
# Legacy-shaped answers (Cloud Storage, Cloud SQL) name a per-minute rate this way, with a 403.
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
_QUOTA_REASONS = frozenset({"RESOURCE_QUOTA_EXCEEDED", "quotaExceeded"})
_TYPE = "@type"
_QUOTA_HELP = "https://console.cloud.google.com/iam-admin/quotas"


class Credentials(Protocol):
    """What a request needs of credentials: a valid access token, refreshed when needed, and
    the project its requests bill their quota to, when the credentials name one (a person's
    ``gcloud`` login does; APIs refuse such requests without it)."""

    def token(self) -> str: ...

    @property
    def quota_project(self) -> str | None: ...


class GcpError(ShipyardError):
    """A request to a Google API failed after its retries: the API, the request, the answer."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED

    def __init__(
        self, api: str, request: str, status: int, message: str, *, hint: str, reason: str = ""
    ) -> None:
        super().__init__(f"Google Cloud {api} API, {request}: {message}", hint=hint)
        self.api, self.request, self.status, self.reason = api, request, status, reason


class RateLimited(GcpError):
    """A per-minute rate quota stayed spent for longer than the request may wait."""


class QuotaExceeded(GcpError):
    """An allocation quota of the project (instances, repositories…) refuses what was asked."""


class OperationFailed(GcpError):
    """A long-running operation ended in an error, or did not end in its time."""


OPERATION_POLL = Interval(0.5, 1.5, 10.0)


@dataclass(frozen=True)
class Answer:
    """What Google said about a failed request (``google.rpc.Status`` or the legacy shape)."""

    status: int
    code: str  # RESOURCE_EXHAUSTED, PERMISSION_DENIED… (or the legacy first reason)
    message: str
    reason: str  # ErrorInfo's reason, else the legacy ``errors[0].reason``
    metadata: Mapping[str, str]
    retry_delay: float | None  # RetryInfo's, in seconds
    quota: str  # the quota named by QuotaFailure or ErrorInfo, "" when none
    help_url: str

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        try:
            document = response.json()
        except ValueError:
            document = {}
        error = document.get("error") if isinstance(document, dict) else None
        if not isinstance(error, dict):
            error = {}
        details = [d for d in error.get("details") or [] if isinstance(d, dict)]
        legacy = [e for e in error.get("errors") or [] if isinstance(e, dict)]
        info = _detail(details, "google.rpc.ErrorInfo")
        metadata = {str(k): str(v) for k, v in (info.get("metadata") or {}).items()}
        violations = _detail(details, "google.rpc.QuotaFailure").get("violations") or [{}]
        violation = violations[0] if isinstance(violations[0], dict) else {}
        quota = str(
            violation.get("quotaId")
            or violation.get("quotaMetric")
            or metadata.get("quota_limit")
            or metadata.get("quota_metric")
            or ""
        )
        links = _detail(details, "google.rpc.Help").get("links") or [{}]
        reason = str(info.get("reason") or (legacy[0].get("reason") if legacy else "") or "")
        return cls(
            status=response.status_code,
            code=str(error.get("status") or reason),
            message=str(error.get("message") or response.reason_phrase),
            reason=reason,
            metadata=metadata,
            retry_delay=_seconds(_detail(details, "google.rpc.RetryInfo").get("retryDelay")),
            quota=quota,
            help_url=str(links[0].get("url", "")) if isinstance(links[0], dict) else "",
        )

    @property
    def rate_limited(self) -> bool:
        return self.reason not in _QUOTA_REASONS and (
            self.status == _TOO_MANY or (self.status == _FORBIDDEN and self.reason in _RATE_REASONS)
        )


class GcpApi:
    """Requests to one Google API (``api``: ``run``, ``sqladmin``, ``storage``…; see the
    module). ``budget``: seconds one request may spend on its retries."""

    def __init__(
        self,
        api: str,
        credentials: Credentials,
        *,
        endpoint: str | None = None,
        budget: float = 120.0,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api = api
        self.credentials = credentials
        endpoint = endpoint if endpoint is not None else self.endpoint()
        self.url = (
            f"{endpoint.rstrip('/')}/{api}/" if endpoint else f"https://{api}.googleapis.com/"
        )
        self.budget = budget
        self.clock = clock or Clock()
        self._client = httpx.Client(base_url=self.url, timeout=60.0, transport=transport)

    @staticmethod
    def endpoint() -> str:
        """``SHIPYARD_GCP_ENDPOINT`` (every API under one base URL), or ``""``: Google's."""
        return os.environ.get(ENDPOINT_ENV, "")

    def close(self) -> None:
        self._client.close()

    def json(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str | int | bool] | None = None,
        idempotent: bool | None = None,
        allow: Collection[int] = (),
        what: str = "",
    ) -> dict[str, Any] | None:
        """The JSON answer to ``method path``; ``None`` when its status is one of ``allow``
        (404 for "not there", 409 for "exists already": the caller's to judge)."""
        response = self.request(
            method, path, body=body, query=query, idempotent=idempotent, allow=allow, what=what
        )
        if response.status_code in allow:
            return None
        if not response.content:
            return {}
        answer: dict[str, Any] = response.json()
        return answer

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str | int | bool] | None = None,
        idempotent: bool | None = None,
        allow: Collection[int] = (),
        what: str = "",
    ) -> httpx.Response:
        """``method path`` (relative to the API's base) with the retry policy; a status in
        ``allow`` is returned, any other error raised as ``GcpError``. ``idempotent``: whether a
        repeat is harmless (by default, every method but POST; a create that names what it
        creates is, since its repeat answers 409). ``what``: the resource, for messages."""
        request = f"{method} {path}" + (f" ({what})" if what else "")
        repeatable = method != "POST" if idempotent is None else idempotent
        retries = Backoff(self.budget, most=_BACKOFF_CAP, clock=self.clock)
        params = {k: _query_value(v) for k, v in (query or {}).items()}
        while True:
            headers = {"Authorization": f"Bearer {self.credentials.token()}"}
            if self.credentials.quota_project:
                headers["x-goog-user-project"] = self.credentials.quota_project
            if body is not None or content is not None:
                headers["Content-Type"] = content_type
            try:
                response = self._client.request(
                    method, path, json=body, content=content, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (sent and not repeatable) or not retries.pause():
                    raise HostUnreachable(
                        f"Google Cloud {self.api} API, {request}: {self.url} is out of reach "
                        f"({exc})",
                        hint="check the network (and SHIPYARD_GCP_ENDPOINT when it is set)",
                    ) from exc
                continue
            status = response.status_code
            if not response.is_error:
                return response
            answer = Answer.of(response)
            if answer.rate_limited:  # even where the caller takes the status (a 403) as an answer
                if retries.pause(_retry_after(response) or answer.retry_delay):
                    continue
            elif status in allow:
                return response
            elif status in _TRANSIENT and repeatable and retries.pause():
                continue
            raise _failed(self.api, request, answer)


def wait_operation(
    api: GcpApi,
    operation: Mapping[str, Any],
    *,
    timeout: float,
    what: str,
    interval: Interval = OPERATION_POLL,
) -> dict[str, Any]:
    """The response of a long-running operation (``google.longrunning.Operation``, as Cloud
    Run and Artifact Registry answer a change), polled with ``operations.get`` until done: its
    ``response`` (``{}`` when it has none); ``OperationFailed`` naming ``what`` with Google's
    error when it ended in one, or when ``timeout`` seconds passed first (the change may still
    complete: the caller finds what exists next time)."""
    name = str(operation.get("name", ""))
    current: dict[str, Any] = dict(operation)

    def poll() -> dict[str, Any]:
        nonlocal current
        if not current.get("done"):
            current = api.json("GET", f"{_VERSIONS[api.api]}/{name}", what=what) or {}
        return current

    done = wait_until(poll, timeout=timeout, interval=interval, clock=api.clock,
                      done=lambda seen: bool(seen.get("done")))  # fmt: skip
    if done is None:
        raise OperationFailed(
            api.api, f"operation {name}", 0,
            f"{what} did not finish within {timeout:.0f}s",
            hint="it may still finish: see the Cloud Console, then run the command again",
        )  # fmt: skip
    error = done.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        return_code = int(error.get("code") or 0)
        raise OperationFailed(
            api.api, f"operation {name}", return_code, f"{what} failed: {message}",
            hint="see Google's message; nothing after this step was done",
        )  # fmt: skip
    response = done.get("response")
    return dict(response) if isinstance(response, dict) else {}


# The version prefix of each API whose operations ``wait_operation`` polls.
_VERSIONS = {"run": "v2", "artifactregistry": "v1"}


def _failed(api: str, request: str, answer: Answer) -> GcpError:
    """Google's answer as shipyard's error, with what to do about it named."""
    kind, message, hint = _explained(api, answer)
    return kind(api, request, answer.status, message, hint=hint, reason=answer.reason)


def _explained(api: str, answer: Answer) -> tuple[type[GcpError], str, str]:
    """The error's class, message and hint for ``answer``."""
    said = answer.message
    quota = f" {answer.quota!r}" if answer.quota else ""
    where = answer.help_url or _QUOTA_HELP
    if answer.reason in _QUOTA_REASONS:
        return (
            QuotaExceeded,
            f"a quota of the project was reached{quota}: {said}",
            f"ask for more at {where}, or remove what is no longer used; nothing further was "
            "created",
        )
    if answer.rate_limited:
        return (
            RateLimited,
            f"the API's rate quota{quota} stayed spent through every retry: {said}",
            "wait a minute and run the command again; if it keeps happening, another tool uses "
            f"the project's {api} quota, or ask for a higher rate at {where}",
        )
    if answer.reason == "SERVICE_DISABLED" or "has not been used in project" in said:
        return (
            GcpError,
            f"the API is not enabled in the project: {said}",
            f"enable it: gcloud services enable {api}.googleapis.com",
        )
    permission = answer.metadata.get("permission", "")
    explained = {
        401: (
            f"the credentials are refused: {said}",
            "renew them (gcloud auth application-default login), or point "
            "GOOGLE_APPLICATION_CREDENTIALS at a valid key; shipyard.yml never holds them",
        ),
        _FORBIDDEN: (
            f"permission denied{f' ({permission})' if permission else ''}: {said}",
            "grant the credentials' account the role that holds it (README: Deploying to Google "
            "Cloud lists the roles shipyard needs)",
        ),
    }
    for status in _SERVER_ERRORS:
        explained[status] = (
            f"Google answered {status} ({said})",
            "try again; https://status.cloud.google.com says whether the API is down",
        )
    message, hint = explained.get(
        answer.status, (f"{answer.code or answer.status}: {said}", "see Google's answer")
    )
    return GcpError, message, hint


def _detail(details: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The first detail of ``kind`` (``google.rpc.ErrorInfo``…) of an error, or ``{}``."""
    for detail in details:
        if str(detail.get(_TYPE, "")).endswith(f"/{kind}"):
            return detail
    return {}


def _seconds(duration: Any) -> float | None:
    """A protobuf Duration in JSON (``"30s"``, ``"1.5s"``) in seconds."""
    matched = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(duration or ""))
    return float(matched.group(1)) if matched else None


def _retry_after(response: httpx.Response) -> float | None:
    after = response.headers.get("retry-after", "")
    return float(after) if after.isdigit() else None


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- credentials ------------------------------------------------------------------------------------
class _Transport:
    """google-auth's transport (``google.auth.transport.Request``) over httpx, for refreshing
    tokens without the ``requests`` library: a connection per refresh (about one an hour)."""

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        from google.auth import exceptions  # noqa: PLC0415 — google-auth loads with its credentials

        try:
            with httpx.Client() as client:
                response = client.request(
                    method, url, content=body, headers=dict(headers or {}), timeout=timeout or 60.0
                )
        except httpx.HTTPError as exc:
            raise exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        return _TransportResponse(response)


class _TransportResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = dict(response.headers)
        self.data = response.content


class _AdcCredentials:
    """Application Default Credentials, refreshed through httpx when missing or expiring."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials
        self._transport = _Transport()

    @property
    def quota_project(self) -> str | None:
        return getattr(self._credentials, "quota_project_id", None) or None

    def token(self) -> str:
        from google.auth import exceptions  # noqa: PLC0415

        if not self._credentials.valid:
            try:
                self._credentials.refresh(self._transport)
            except exceptions.GoogleAuthError as exc:
                raise GcpError(
                    "IAM", "token refresh", 0,
                    f"the Application Default Credentials could not be refreshed ({exc})",
                    hint="renew them: gcloud auth application-default login (or point "
                    "GOOGLE_APPLICATION_CREDENTIALS at a valid service account key)",
                ) from exc  # fmt: skip
        return str(self._credentials.token)


def application_default_credentials() -> Credentials:
    """The machine's Application Default Credentials (see the module), for the cloud-platform
    scope; an error naming how to set them up when there are none."""
    import google.auth  # noqa: PLC0415 — only environments on Google Cloud load google-auth
    from google.auth import exceptions  # noqa: PLC0415

    try:
        credentials, _ = google.auth.default(scopes=[SCOPE])
    except exceptions.DefaultCredentialsError as exc:
        raise GcpError(
            "IAM", "Application Default Credentials", 0, f"none found ({exc})",
            hint="run `gcloud auth application-default login`, or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service account key file; shipyard.yml never "
            "holds credentials",
        ) from exc  # fmt: skip
    return _AdcCredentials(credentials)


def adc_source(environ: Mapping[str, str] | None = None) -> str | None:
    """Where the Application Default Credentials come from, read offline (their kind and file,
    never their values): ``GOOGLE_APPLICATION_CREDENTIALS``, else gcloud's
    ``application_default_credentials.json``; ``None`` when neither exists (on Google Cloud,
    the metadata server may still give some, which only a request can tell)."""
    env = os.environ if environ is None else environ
    named = env.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    config_dir = env.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    path = Path(named) if named else Path(config_dir) / "application_default_credentials.json"
    try:
        kind = str(json.loads(path.read_text()).get("type", "unknown"))
    except (OSError, ValueError, AttributeError):
        if named:
            return f"GOOGLE_APPLICATION_CREDENTIALS names {path}, which cannot be read"
        return None
    return f"{kind.replace('_', ' ')} credentials from {path}"
