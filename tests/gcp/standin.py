"""A stand-in of the Google Cloud APIs shipyard uses, for the tests: one local HTTP server on a
loopback port of its own choosing, each API under ``/<api>/`` (shipyard reaches it through
``SHIPYARD_GCP_ENDPOINT``), plus the OAuth 2.0 token endpoint a service account key names.
Google Cloud itself cannot be reached from the test machines.

The stand-in is held to Google's published contract: every request is first checked against the
API's discovery document (``tests.gcp.discovery``): a request no method of the document takes,
or with a parameter or field the method does not declare, is refused with 400
``INVALID_ARGUMENT`` and recorded in ``invalid``, which the tests assert is empty. It then answers
by the method's id, with the model of the API that owns it (``Model``: ``tests.gcp.storage``,
…). Errors take Google's shapes: ``google.rpc.Status`` with ``details`` (``ErrorInfo``,
``QuotaFailure``, ``RetryInfo``, ``Help``) for the newer APIs, the legacy ``{"error": {"code",
"message", "errors": [{"reason"...}]}}`` of Cloud Storage.

The core serves, for every model:

- ``POST /oauth2/token``: the JWT bearer grant of a service account key (RS256 signature checked
  with the key's public half, the claims Google's endpoint checks); the tokens it issues are the
  only ones any API takes (401 ``UNAUTHENTICATED`` otherwise);
- long-running operations (``google.longrunning.Operation``) of the APIs that answer with them
  (Cloud Run, Artifact Registry): a model starts one with ``operation`` and the core answers
  ``<api>.projects.locations.operations.get`` for it, done after the polls the model asks for.

Faults a test can script: ``fail`` (the next requests of a method get a given answer),
``rate_limit`` (429 ``RESOURCE_EXHAUSTED``, with or without ``Retry-After``), ``lose_answer``
(the request takes effect, and the connection closes before the answer).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shipyard.gcp import Credentials, GcpApi, application_default_credentials
from shipyard.state._gcs import DefaultBucket, GcsState
from tests.gcp.discovery import Checked, discovery

PROJECT = "events-standin"
PROJECT_NUMBER = "461803952211"
REGION = "europe-west1"
CLIENT_EMAIL = f"deployer@{PROJECT}.iam.gserviceaccount.com"
_ADC_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the audience Google's endpoint expects


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection instead of answering


class ApiError(Exception):
    """Raised by a model's handler: the answer is ``reply``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def legacy_error(status: int, reason: str, message: str) -> ApiError:
    """Cloud Storage's (and Cloud SQL's) error shape."""
    error = {"code": status, "message": message,
             "errors": [{"message": message, "domain": "global", "reason": reason}]}  # fmt: skip
    return ApiError(Reply(status, {"error": error}))


def rpc_error(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Reply:
    """``google.rpc.Status`` as the newer APIs answer it."""
    error = {"code": status, "message": message, "status": code, "details": details or []}
    return Reply(status, {"error": error})


def not_found(what: str) -> ApiError:
    return ApiError(rpc_error(404, "NOT_FOUND", f"Resource '{what}' was not found"))


def already_exists(what: str) -> ApiError:
    return ApiError(rpc_error(409, "ALREADY_EXISTS", f"Resource '{what}' already exists."))


def quota_details(
    reason: str, quota: str, *, retry_delay: str | None = None
) -> list[dict[str, Any]]:
    """The details of a quota refusal: ErrorInfo, QuotaFailure, RetryInfo, Help."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
         "domain": "googleapis.com",
         "metadata": {"consumer": f"projects/{PROJECT_NUMBER}", "quota_limit": quota}},
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"subject": f"project:{PROJECT_NUMBER}", "quotaId": quota,
                         "description": f"Quota {quota} exhausted"}]},
        {"@type": "type.googleapis.com/google.rpc.Help",
         "links": [{"description": "Request a higher quota limit.",
                    "url": "https://cloud.google.com/docs/quotas/help/request_increase"}]},
    ]  # fmt: skip
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    return details


def now() -> str:
    """A timestamp as Google's APIs write them (RFC 3339, UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Call:
    """One request, as a model's handler receives it."""

    params: dict[str, str]  # the path's variables (``projectsId``…), percent-decoded
    query: dict[str, str]  # the last value of each query parameter
    raw: bytes  # the body

    def json(self) -> Any:
        return json.loads(self.raw) if self.raw.strip() else {}


Handler = Callable[[Call], Reply]


class Model(Protocol):
    """The state and behaviour of one or more APIs: ``routes`` maps discovery method ids
    (``storage.objects.get``) to handlers; ``apis``: the APIs it serves (``/<api>/``)."""

    apis: tuple[str, ...]

    def routes(self) -> dict[str, Handler]: ...


@dataclass(frozen=True)
class Request:
    api: str
    method: str  # the discovery id, or the HTTP method and path when none matched
    query: dict[str, list[str]]
    user_project: str | None = None  # the x-goog-user-project header


@dataclass
class _Fault:
    method: str
    reply: Reply
    times: int
    perform: bool = False  # take effect before answering (a lost answer)


Outcome = tuple[dict[str, Any] | None, dict[str, Any] | None]


@dataclass
class Operation:
    """A long-running operation: done after ``polls`` more reads, then with ``result()``'s
    response, or ``error`` when it returns one (a ``google.rpc.Status``); ``result()`` returns
    ``None`` while the work is not finished (the operation stays running)."""

    name: str
    metadata: dict[str, Any]
    result: Callable[[], Outcome | None]
    polls: int = 0
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        if not self.done and self.polls <= 0:
            ended = self.result()
            if ended is not None:
                self.response, self.error = ended
                self.done = True
        self.polls -= 1
        shown: dict[str, Any] = {"name": self.name, "metadata": self.metadata, "done": self.done}
        if self.done and self.error is not None:
            shown["error"] = self.error
        elif self.done:
            shown["response"] = self.response or {}
        return shown


class GcpStandIn:
    """The APIs' state and behaviour (the core, and each ``Model``); ``gcp_standin`` serves it
    over HTTP."""

    def __init__(self, url: str, public_key: Any) -> None:
        self.url = url
        self.public_key = public_key
        self.requests: list[Request] = []
        self.invalid: list[str] = []
        self.tokens: set[str] = set()
        self.fixed_token: str | None = None  # every grant issues this one (a registry's password)
        self.operations: dict[str, Operation] = {}
        self.lock = threading.RLock()
        self._models: list[Any] = []
        self._routes: dict[str, Handler] = {}
        self._apis: set[str] = set()
        self._faults: list[_Fault] = []
        self._token_ids = itertools.count(1)
        self._operation_ids = itertools.count(1)
        for api in ("run", "artifactregistry"):
            self._routes[f"{api}.projects.locations.operations.get"] = self._operation_get

    def add(self, model: Any) -> Any:
        """Serve ``model``'s APIs (see ``Model``); returns it."""
        self._models.append(model)
        self._routes.update(model.routes())
        self._apis.update(model.apis)
        return model

    def model(self, kind: type[Any]) -> Any:
        """The model of class ``kind`` this stand-in serves."""
        return next(m for m in self._models if isinstance(m, kind))

    # --- what tests script ---
    def fail(self, method: str, reply: Reply, *, times: int = 1) -> None:
        """The next ``times`` requests of discovery method ``method`` get ``reply``."""
        with self.lock:
            self._faults.append(_Fault(method, reply, times))

    def rate_limit(
        self,
        method: str,
        times: int,
        *,
        retry_after: int | None = None,
        retry_delay: str | None = None,
    ) -> None:
        """The next ``times`` requests of ``method`` are refused by a per-minute rate quota."""
        reply = rpc_error(
            429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests' and limit "
            "'Requests per minute'",
            quota_details("RATE_LIMIT_EXCEEDED", "RequestsPerMinutePerProject", retry_delay=retry_delay),
        )  # fmt: skip
        if retry_after is not None:
            reply.headers["retry-after"] = str(retry_after)
        self.fail(method, reply, times=times)

    def lose_answer(self, method: str) -> None:
        """The next request of ``method`` takes effect, and its answer is lost."""
        with self.lock:
            self._faults.append(_Fault(method, Reply(0, drop=True), 1, perform=True))

    # --- long-running operations, for the models ---
    def operation(
        self,
        api: str,
        location: str,
        result: Callable[[], Outcome | None],
        *,
        metadata: dict[str, Any] | None = None,
        polls: int = 0,
    ) -> dict[str, Any]:
        """Start an operation of ``api`` in ``location``; its first view (what the starting
        method answers). ``result``: called once when it is done, ``(response, error)``."""
        name = f"projects/{PROJECT}/locations/{location}/operations/op-{next(self._operation_ids)}"
        operation = Operation(name, metadata or {}, result, polls=polls)
        self.operations[name] = operation
        return {"name": name, "metadata": operation.metadata, "done": False}

    def _operation_get(self, call: Call) -> Reply:
        name = (
            f"projects/{call.params['projectsId']}/locations/{call.params['locationsId']}"
            f"/operations/{call.params['operationsId']}"
        )
        found = self.operations.get(name)
        if found is None:
            raise not_found(name)
        return Reply(200, found.view())

    # --- serving ---
    def handle(self, verb: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        with self.lock:
            return self._answer(verb, target, headers, raw)

    def _answer(self, verb: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        path, _, query_text = target.partition("?")
        if verb == "POST" and path == "/oauth2/token":
            return self._token(raw)
        api, _, rest = path.lstrip("/").partition("/")
        if api not in self._apis:
            return rpc_error(404, "NOT_FOUND", f"no API {api} here")
        inner = "/" + rest + (f"?{query_text}" if query_text else "")
        checked = discovery(api).check(verb, inner, raw)
        query = _parse_query(query_text)
        self.requests.append(
            Request(
                api, checked.method or f"{verb} {path}", query, headers.get("x-goog-user-project")
            )
        )
        refused = self._refusal(checked, f"{verb} {inner}", headers)
        if refused is not None:
            return refused
        fault = self._fault(checked.method)
        if fault is not None and not fault.perform:
            return fault.reply
        call = Call(
            {k: unquote(v) for k, v in checked.parameters.items()},
            {k: v[-1] for k, v in query.items()},
            raw,
        )
        try:
            reply = self._routes[checked.method](call)
        except ApiError as error:
            reply = error.reply
        return fault.reply if fault is not None else reply

    def _refusal(self, checked: Checked, request: str, headers: dict[str, str]) -> Reply | None:
        """The answer that comes before the API's: the contract broken, no valid token, a
        method the stand-in does not model."""
        if checked.problems:
            self.invalid.append(f"{request}: {'; '.join(checked.problems)}")
            return rpc_error(400, "INVALID_ARGUMENT", "; ".join(checked.problems))
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return rpc_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        if checked.method not in self._routes:
            return rpc_error(501, "UNIMPLEMENTED", f"{checked.method} is not part of the stand-in")
        return None

    def _fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # --- OAuth 2.0: the service account's JWT bearer grant ---
    def _token(self, raw: bytes) -> Reply:
        form = {k: v[-1] for k, v in _parse_query(raw.decode()).items()}
        if form.get("grant_type") != _JWT_GRANT or "assertion" not in form:
            return Reply(400, {"error": "unsupported_grant_type"})
        head, payload, signature = form["assertion"].split(".")
        try:
            self.public_key.verify(
                _unb64(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:  # noqa: BLE001 — any verification failure is the same refusal
            return Reply(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
        claims = json.loads(_unb64(payload))
        if (
            claims.get("iss") != CLIENT_EMAIL
            or claims.get("aud") != _GOOGLE_TOKEN_URI
            or _SCOPE not in str(claims.get("scope", "")).split()
            or claims.get("exp", 0) < time.time()
        ):
            return Reply(
                400, {"error": "invalid_grant", "error_description": f"bad claims {claims}"}
            )
        token = self.fixed_token or f"ya29.standin-{next(self._token_ids)}"
        self.tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


def _parse_query(text: str) -> dict[str, list[str]]:
    return parse_qs(text, keep_blank_values=True)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _handler_class(standin: GcpStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: a connection per request, so no client's pooled connection outlives the
        # stand-in (a lock's heartbeat thread may still run after its test, and then finds the
        # stand-in gone: a connection refused, which it tries again at the next beat).

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = standin.handle(self.command, self.path, headers, raw)
            if reply.drop:
                self.close_connection = True
                return
            if reply.body is None:
                payload, kind = b"", None
            elif isinstance(reply.body, bytes):
                payload, kind = reply.body, "application/octet-stream"
            else:
                payload, kind = json.dumps(reply.body).encode(), "application/json; charset=UTF-8"
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if kind:
                self.send_header("content-type", kind)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    return Handler


@contextmanager
def gcp_standin(directory: Path) -> Iterator[tuple[GcpStandIn, Path]]:
    """A running stand-in (with every API model) and the path of a service account key file
    for it (in ``directory``): point ``GOOGLE_APPLICATION_CREDENTIALS`` at the file and
    ``SHIPYARD_GCP_ENDPOINT`` at ``standin.url``. Port 0: the server binds a free port itself."""
    from tests.gcp.storage import StorageModel  # noqa: PLC0415 — the models build on this module

    key_file = directory / "service-account.json"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    standin = GcpStandIn(f"http://{host}:{port}", key.public_key())
    standin.add(StorageModel())
    server.RequestHandlerClass = _handler_class(standin)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "0123456789abcdef",
        "private_key": pem, "client_email": CLIENT_EMAIL, "client_id": "109876543210987654321",
        "token_uri": f"{standin.url}/oauth2/token",
    }))  # fmt: skip
    key_file.chmod(0o600)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="gcp-standin", daemon=True
    )
    thread.start()
    try:
        yield standin, key_file
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Session:
    """A running stand-in with shipyard's clients for it: ``api(name)`` is a ``GcpApi`` that
    authenticates with the stand-in's service account key through Application Default
    Credentials, as on an operator's machine."""

    standin: GcpStandIn
    key_file: Path

    @property
    def storage(self) -> Any:
        """The stand-in's Cloud Storage (``tests.gcp.storage.StorageModel``)."""
        from tests.gcp.storage import StorageModel  # noqa: PLC0415

        return self.standin.model(StorageModel)

    def api(self, name: str, **options: Any) -> GcpApi:
        """A client of API ``name``."""
        return GcpApi(name, self.credentials, endpoint=self.standin.url, **options)

    @cached_property
    def credentials(self) -> Credentials:
        previous = os.environ.get(_ADC_ENV)
        os.environ[_ADC_ENV] = str(self.key_file)
        try:
            return application_default_credentials()
        finally:
            if previous is None:
                del os.environ[_ADC_ENV]
            else:
                os.environ[_ADC_ENV] = previous

    def state(self, bucket: str | None, root: PurePosixPath, **options: Any) -> GcsState:
        """State under ``root`` in ``bucket``, or the project's default bucket (``None``)."""
        storage = self.api("storage", **options)
        if bucket is not None:
            return GcsState(storage, bucket, root)
        projects = self.api("cloudresourcemanager", **options)
        return GcsState(storage, DefaultBucket(PROJECT, REGION, storage, projects), root)


@contextmanager
def gcp_session(directory: Path, *, buckets: tuple[str, ...] = ()) -> Iterator[Session]:
    """``gcp_standin`` with ``buckets`` of the project already made."""
    from tests.gcp.storage import StorageModel  # noqa: PLC0415

    with gcp_standin(directory) as (standin, key_file):
        for name in buckets:
            standin.model(StorageModel).add_bucket(name)
        yield Session(standin, key_file)


def with_every_api(standin: GcpStandIn) -> GcpStandIn:
    """``standin`` serving, beside Cloud Storage, every API the Google Cloud provider calls:
    Cloud Run, Artifact Registry, Cloud SQL Admin, Secret Manager and Cloud Logging."""
    from tests.gcp.logging import LoggingModel  # noqa: PLC0415 — the models build on this module
    from tests.gcp.registry import RegistryModel  # noqa: PLC0415
    from tests.gcp.run import RunModel  # noqa: PLC0415
    from tests.gcp.secrets import SecretsModel  # noqa: PLC0415
    from tests.gcp.sql import SqlModel  # noqa: PLC0415

    standin.add(RunModel(standin))
    standin.add(RegistryModel(standin))
    standin.add(SqlModel(standin))
    standin.add(SecretsModel(standin))
    standin.add(LoggingModel(standin))
    return standin
