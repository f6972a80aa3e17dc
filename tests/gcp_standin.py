"""A stand-in of the Google Cloud APIs shipyard uses, for the tests: one local HTTP server on a
loopback port of its own choosing, each API under ``/<api>/`` (shipyard reaches it through
``SHIPYARD_GCP_ENDPOINT``), plus the OAuth 2.0 token endpoint a service account key names.
Google Cloud itself cannot be reached from the test machines.

The stand-in is held to Google's published contract: every request is first checked against the
API's discovery document (``tests.gcp_discovery``): a request no method of the document takes,
or with a parameter or field the method does not declare, is refused with 400
``INVALID_ARGUMENT`` and recorded in ``invalid``, which the tests assert is empty. It then answers
by the method's id. Errors take Google's shapes: ``google.rpc.Status`` with ``details``
(``ErrorInfo``, ``QuotaFailure``, ``RetryInfo``, ``Help``) for 429s, the legacy
``{"error": {"code", "message", "errors": [{"reason"...}]}}`` of Cloud Storage elsewhere.

=========================================  ==================================================
Method (discovery id)                      What the stand-in does
=========================================  ==================================================
``storage.buckets.get``/``insert``         buckets with a project number; 409 when taken;
                                           403 for a bucket of another project, unless that
                                           bucket is open to all (``foreign_bucket``)
``storage.objects.get``                    metadata, or the bytes with ``alt=media``; a
                                           ``generation`` other than the live one: 404
``storage.objects.insert`` (simple upload) ``ifGenerationMatch`` (``0``: none live), 412
``storage.objects.delete``/``copy``        ``ifGenerationMatch`` / ``ifSourceGenerationMatch``
``storage.objects.list``                   ``prefix``, ``delimiter``, pages of ``page_size``
``cloudresourcemanager.projects.get``      the project's number; 403 for any other project
``POST /oauth2/token``                     the JWT bearer grant of a service account key
                                           (RS256 signature checked with the key's public
                                           half); the token it issues is the only one taken
=========================================  ==================================================

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shipyard.gcp import Credentials, GcpApi, application_default_credentials
from shipyard.state._gcs import DefaultBucket, GcsState
from tests.gcp_discovery import discovery

PROJECT = "events-standin"
REGION = "europe-west1"
_ADC_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
PROJECT_NUMBER = "461803952211"
CLIENT_EMAIL = f"deployer@{PROJECT}.iam.gserviceaccount.com"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection instead of answering


class ApiError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def legacy_error(status: int, reason: str, message: str) -> ApiError:
    """Cloud Storage's error shape."""
    error = {"code": status, "message": message,
             "errors": [{"message": message, "domain": "global", "reason": reason}]}  # fmt: skip
    return ApiError(Reply(status, {"error": error}))


def rpc_error(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Reply:
    """``google.rpc.Status`` as the newer APIs answer it."""
    error = {"code": status, "message": message, "status": code, "details": details or []}
    return Reply(status, {"error": error})


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


@dataclass(frozen=True)
class Request:
    api: str
    method: str  # the discovery id, or the HTTP method and path when none matched
    query: dict[str, list[str]]
    user_project: str | None = None  # the x-goog-user-project header


@dataclass
class _Object:
    data: bytes
    generation: int
    updated: str


@dataclass
class _Bucket:
    name: str
    project_number: str
    resource: dict[str, Any]
    open_to_all: bool = False
    objects: dict[str, _Object] = field(default_factory=dict)


@dataclass
class _Fault:
    method: str
    reply: Reply
    times: int
    perform: bool = False  # take effect before answering (a lost answer)


class GcpStandIn:
    """The APIs' state and behaviour; ``gcp_standin`` serves it over HTTP."""

    def __init__(self, url: str, public_key: Any) -> None:
        self.url = url
        self.public_key = public_key
        self.page_size = 1000
        self.requests: list[Request] = []
        self.invalid: list[str] = []
        self.tokens: set[str] = set()
        self.buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._generations = itertools.count(1733400000000001)
        self._token_ids = itertools.count(1)

    # --- what tests script ---
    def fail(self, method: str, reply: Reply, *, times: int = 1) -> None:
        """The next ``times`` requests of discovery method ``method`` get ``reply``."""
        with self._lock:
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
        with self._lock:
            self._faults.append(_Fault(method, Reply(0, drop=True), 1, perform=True))

    def foreign_bucket(self, name: str, *, open_to_all: bool) -> None:
        """A bucket another project created first (a squatted name)."""
        with self._lock:
            self.buckets[name] = _Bucket(name, "999999999999", {"name": name}, open_to_all)

    def object(self, bucket: str, name: str) -> bytes | None:
        found = self.buckets.get(bucket)
        item = found.objects.get(name) if found else None
        return item.data if item else None

    # --- serving ---
    def handle(self, verb: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        with self._lock:
            return self._answer(verb, target, headers, raw)

    def _answer(self, verb: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        path = urlsplit(target).path
        if verb == "POST" and path == "/oauth2/token":
            return self._token(raw)
        api, _, rest = path.lstrip("/").partition("/")
        if api not in {"storage", "cloudresourcemanager"}:
            return rpc_error(404, "NOT_FOUND", f"no API {api} here")
        inner = "/" + rest + (f"?{urlsplit(target).query}" if urlsplit(target).query else "")
        checked = discovery(api).check(verb, inner, raw)
        query = parse_qs(urlsplit(target).query, keep_blank_values=True)
        self.requests.append(
            Request(
                api, checked.method or f"{verb} {path}", query, headers.get("x-goog-user-project")
            )
        )
        if checked.problems:
            self.invalid.append(f"{verb} {inner}: {'; '.join(checked.problems)}")
            return rpc_error(400, "INVALID_ARGUMENT", "; ".join(checked.problems))
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return rpc_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        fault = self._fault(checked.method)
        if fault is not None and not fault.perform:
            return fault.reply
        params = {k: unquote(v) for k, v in checked.parameters.items()}
        single = {k: v[-1] for k, v in query.items()}
        try:
            reply = self._route(checked.method, params, single, raw)
        except ApiError as error:
            reply = error.reply
        return fault.reply if fault is not None else reply

    def _fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _route(
        self, method: str, params: dict[str, str], query: dict[str, str], raw: bytes
    ) -> Reply:
        routes = {
            "storage.buckets.get": self._bucket_get,
            "storage.buckets.insert": self._bucket_insert,
            "storage.objects.get": self._object_get,
            "storage.objects.insert": self._object_insert,
            "storage.objects.delete": self._object_delete,
            "storage.objects.list": self._object_list,
            "storage.objects.copy": self._object_copy,
            "cloudresourcemanager.projects.get": self._project_get,
        }
        handler = routes.get(method)
        if handler is None:
            return rpc_error(501, "UNIMPLEMENTED", f"{method} is not part of the stand-in")
        return handler(params, query, raw)

    # --- OAuth 2.0: the service account's JWT bearer grant ---
    def _token(self, raw: bytes) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
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
            or claims.get("aud") != _GOOGLE_TOKEN_URI  # the audience Google's endpoint expects
            or _SCOPE not in str(claims.get("scope", "")).split()
            or claims.get("exp", 0) < time.time()
        ):
            return Reply(
                400, {"error": "invalid_grant", "error_description": f"bad claims {claims}"}
            )
        token = f"ya29.standin-{next(self._token_ids)}"
        self.tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # --- Cloud Resource Manager ---
    def _project_get(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        if params["projectsId"] != PROJECT:
            raise ApiError(
                rpc_error(403, "PERMISSION_DENIED", "The caller does not have permission")
            )
        return Reply(200, {"name": f"projects/{PROJECT_NUMBER}", "projectId": PROJECT,
                           "state": "ACTIVE", "displayName": PROJECT, "parent": "organizations/1"})  # fmt: skip

    # --- Cloud Storage ---
    def _bucket(self, name: str) -> _Bucket:
        found = self.buckets.get(name)
        if found is None:
            raise legacy_error(404, "notFound", "The specified bucket does not exist.")
        if found.project_number != PROJECT_NUMBER and not found.open_to_all:
            raise legacy_error(
                403, "forbidden", f"{CLIENT_EMAIL} does not have storage.buckets.get access"
            )
        return found

    def _bucket_get(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        found = self._bucket(params["bucket"])
        return Reply(200, {**found.resource, "projectNumber": found.project_number})

    def _bucket_insert(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        body = json.loads(raw or b"{}")
        if query.get("project") != PROJECT:
            raise ApiError(
                rpc_error(403, "PERMISSION_DENIED", "The caller does not have permission")
            )
        name = body.get("name", "")
        if not name:
            raise legacy_error(400, "required", "Required")
        if name in self.buckets:
            raise legacy_error(409, "conflict", "Your previous request to create the named bucket succeeded and you already own it."
                               if self.buckets[name].project_number == PROJECT_NUMBER
                               else "The requested bucket name is not available.")  # fmt: skip
        now = _now()
        resource = {"kind": "storage#bucket", "id": name, "name": name, "metageneration": "1",
                    "timeCreated": now, "updated": now, "storageClass": "STANDARD", **body}  # fmt: skip
        self.buckets[name] = _Bucket(name, PROJECT_NUMBER, resource)
        return Reply(200, {**resource, "projectNumber": PROJECT_NUMBER})

    def _metadata(self, bucket: str, name: str, item: _Object) -> dict[str, Any]:
        return {"kind": "storage#object", "id": f"{bucket}/{name}/{item.generation}",
                "name": name, "bucket": bucket, "generation": str(item.generation),
                "metageneration": "1", "contentType": "application/octet-stream",
                "size": str(len(item.data)), "updated": item.updated, "timeCreated": item.updated}  # fmt: skip

    def _live(self, bucket: _Bucket, name: str, query: dict[str, str]) -> _Object:
        item = bucket.objects.get(name)
        if item is None or ("generation" in query and query["generation"] != str(item.generation)):
            raise legacy_error(404, "notFound", f"No such object: {bucket.name}/{name}")
        return item

    @staticmethod
    def _precondition(item: _Object | None, wanted: str | None) -> None:
        if wanted is None:
            return
        live = str(item.generation) if item is not None else "0"
        if wanted != live:
            raise legacy_error(
                412,
                "conditionNotMet",
                "At least one of the pre-conditions you specified did not hold.",
            )

    def _object_get(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        bucket = self._bucket(params["bucket"])
        item = self._live(bucket, params["object"], query)
        if query.get("alt") == "media":
            return Reply(200, item.data, {"x-goog-generation": str(item.generation)})
        return Reply(200, self._metadata(bucket.name, params["object"], item))

    def _write(self, bucket: _Bucket, name: str, data: bytes) -> Reply:
        item = _Object(data, next(self._generations), _now())
        bucket.objects[name] = item
        return Reply(200, self._metadata(bucket.name, name, item))

    def _object_insert(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        bucket = self._bucket(params["bucket"])
        name = query.get("name", "")
        if not name:
            raise legacy_error(400, "required", "Required parameter: name")
        self._precondition(bucket.objects.get(name), query.get("ifGenerationMatch"))
        return self._write(bucket, name, raw)

    def _object_delete(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        bucket = self._bucket(params["bucket"])
        item = self._live(bucket, params["object"], {})
        self._precondition(item, query.get("ifGenerationMatch"))
        del bucket.objects[params["object"]]
        return Reply(204)

    def _object_copy(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        source = self._bucket(params["sourceBucket"])
        item = self._live(source, params["sourceObject"], {})
        self._precondition(item, query.get("ifSourceGenerationMatch"))
        target = self._bucket(params["destinationBucket"])
        self._precondition(
            target.objects.get(params["destinationObject"]), query.get("ifGenerationMatch")
        )
        return self._write(target, params["destinationObject"], item.data)

    def _object_list(self, params: dict[str, str], query: dict[str, str], raw: bytes) -> Reply:
        bucket = self._bucket(params["bucket"])
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter")
        items, prefixes = [], set()
        for name in sorted(bucket.objects):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            items.append(self._metadata(bucket.name, name, bucket.objects[name]))
        start = int(query.get("pageToken", "0"))
        page: dict[str, Any] = {"kind": "storage#objects"}
        if items[start : start + self.page_size]:
            page["items"] = items[start : start + self.page_size]
        if prefixes:
            page["prefixes"] = sorted(prefixes)
        if start + self.page_size < len(items):
            page["nextPageToken"] = str(start + self.page_size)
        return Reply(200, page)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    """A running stand-in and the path of a service account key file for it (in ``directory``):
    point ``GOOGLE_APPLICATION_CREDENTIALS`` at the file and ``SHIPYARD_GCP_ENDPOINT`` at
    ``standin.url``. Port 0: the server binds a free port itself."""
    key_file = directory / "service-account.json"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    standin = GcpStandIn(f"http://{host}:{port}", key.public_key())
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
    with gcp_standin(directory) as (standin, key_file):
        for name in buckets:
            standin.buckets[name] = _Bucket(name, PROJECT_NUMBER, {"name": name})
        yield Session(standin, key_file)
