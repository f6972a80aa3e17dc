"""The GCP stand-in's Secret Manager API v1 (``tests.gcp.standin``): global secrets, their
versions and IAM policies, as ``providers.gcp._secrets`` uses them.

=================================================  ============================================
Method (discovery id, under                        What the stand-in does
``secretmanager.projects.secrets.``)
=================================================  ============================================
``create``                                         ``secretId`` checked (``[A-Za-z0-9_-]``, at
                                                   most 255), labels and annotations checked
                                                   as Google does, output-only fields refused;
                                                   409 ``ALREADY_EXISTS``; another project: 403
``get`` / ``delete``                               the secret, its name with the project's
                                                   number as Google answers; 404; ``delete``
                                                   checks ``etag`` when given, takes the
                                                   versions with it
``patch``                                          ``updateMask`` required and limited to the
                                                   fields the API lets change (``labels``,
                                                   ``annotations``…); a stale body ``etag``:
                                                   409 ``ABORTED``
``list``                                           pages of ``page_size``; ``filter``: the
                                                   ``labels.<key>=<value>`` terms joined by
                                                   ``AND`` that shipyard sends, anything else
                                                   400 ``INVALID_ARGUMENT`` (so a typo fails)
``addVersion``                                     ``payload.data`` required (an empty value
                                                   is refused as Google does, "Field [payload]
                                                   is required."), at most 64 KiB;
                                                   ``dataCrc32c`` checked when sent
``versions.get`` / ``list``                        a version's metadata (never its data);
                                                   ``latest`` is the newest ENABLED one
``versions.access``                                the data of an ENABLED version (shipyard
                                                   must never call it: tests check the log)
``versions.destroy``                               DESTROYED, its data gone; again: 400
                                                   ``FAILED_PRECONDITION``
``getIamPolicy`` / ``setIamPolicy``                a policy with a base64 ``etag``; a stale
                                                   etag: 409 ``ABORTED``; conditional bindings
                                                   need version 3, read and written;
                                                   ``concurrent_edits`` makes another tool
                                                   write the policy just before shipyard does
=================================================  ============================================

Every call is recorded (``calls``), bodies included, so a test can check where a value went.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from tests.gcp.standin import (
    PROJECT,
    PROJECT_NUMBER,
    ApiError,
    Call,
    GcpStandIn,
    Handler,
    Reply,
    now,
    rpc_error,
)

_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_FILTER_TERM = re.compile(r"labels\.([a-z][a-z0-9_-]{0,62})=([a-z0-9_-]{0,63})")
_MEMBER = re.compile(r"(user|serviceAccount|group|domain|principal|principalSet):\S+")
_OUTPUT_ONLY = ("name", "createTime", "policyMember")
_PATCHABLE = frozenset(
    {"labels", "annotations", "versionAliases", "expireTime", "ttl", "topics", "rotation",
     "versionDestroyTtl"}
)  # fmt: skip
_MAX_PAYLOAD = 64 * 1024
_ANNOTATIONS_MAX = 16 * 1024
_CONCURRENT = (
    "There were concurrent policy changes. Please retry the whole read-modify-write with "
    "exponential backoff."
)
ANOTHER_TOOL = "user:someone-else@example.com"


@dataclass
class Version:
    number: int
    data: bytes
    state: str  # ENABLED, DISABLED, DESTROYED
    created: str
    checksum: bool  # the client sent dataCrc32c
    destroyed: str | None = None


@dataclass
class Secret:
    secret_id: str
    resource: dict[str, Any]  # labels, annotations, replication…, and the output-only fields
    versions: list[Version] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)  # bindings (and version), no etag
    policy_etag: int = 1

    def version(self, number: int) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)


class SecretsModel:
    """The project's secrets by id, and what a test scripts of them."""

    apis = ("secretmanager",)

    def __init__(self, standin: GcpStandIn) -> None:
        self.standin = standin
        self.secrets: dict[str, Secret] = {}
        self.calls: list[tuple[str, Call]] = []  # (method id, the request), bodies included
        self.page_size = 100
        self.concurrent_edits = 0  # the next setIamPolicy calls each find the policy changed
        self._etags = itertools.count(1)

    def routes(self) -> dict[str, Handler]:
        prefix = "secretmanager.projects.secrets"
        handlers: dict[str, Handler] = {
            f"{prefix}.create": self._create,
            f"{prefix}.get": self._get,
            f"{prefix}.patch": self._patch,
            f"{prefix}.delete": self._delete,
            f"{prefix}.list": self._list,
            f"{prefix}.addVersion": self._add_version,
            f"{prefix}.versions.get": self._version_get,
            f"{prefix}.versions.list": self._version_list,
            f"{prefix}.versions.access": self._access,
            f"{prefix}.versions.destroy": self._destroy,
            f"{prefix}.getIamPolicy": self._get_policy,
            f"{prefix}.setIamPolicy": self._set_policy,
        }
        return {method: self._recorded(method, handler) for method, handler in handlers.items()}

    def _recorded(self, method: str, handler: Handler) -> Handler:
        def recording(call: Call) -> Reply:
            self.calls.append((method, call))
            return handler(call)

        return recording

    # --- what tests script and read ---
    def add_secret(
        self,
        secret_id: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        values: tuple[bytes, ...] = (),
    ) -> Secret:
        """A secret made before the test (by shipyard earlier, or by someone else)."""
        made = Secret(secret_id, self._resource(secret_id, {
            "replication": {"automatic": {}}, "labels": labels or {},
            "annotations": annotations or {},
        }))  # fmt: skip
        self.secrets[secret_id] = made
        for data in values:
            self._append(made, data, checksum=False)
        return made

    def data(self, secret_id: str) -> list[tuple[int, str, bytes]]:
        """Each version of a secret: its number, state and data (empty once destroyed)."""
        return [(v.number, v.state, v.data) for v in self.secrets[secret_id].versions]

    def members(self, secret_id: str, role: str) -> list[str]:
        """The members of a secret's unconditional binding of ``role``."""
        bindings = self.secrets[secret_id].policy.get("bindings") or []
        return [m for b in bindings if b["role"] == role and not b.get("condition")
                for m in b.get("members", [])]  # fmt: skip

    def view(self, secret: Secret) -> dict[str, Any]:
        """A secret as the API answers it."""
        return dict(secret.resource)

    # --- secrets ---
    @staticmethod
    def _name(secret_id: str) -> str:
        return f"projects/{PROJECT_NUMBER}/secrets/{secret_id}"

    def _resource(self, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        resource = {key: value for key, value in body.items() if value not in (None, {}, [])}
        resource.setdefault("replication", {"automatic": {}})
        return {**resource, "name": self._name(secret_id), "createTime": now(),
                "etag": self._etag()}  # fmt: skip

    def _etag(self) -> str:
        return f'"{next(self._etags):016x}"'

    @staticmethod
    def _project(call: Call) -> None:
        if call.params["projectsId"] not in (PROJECT, PROJECT_NUMBER):
            raise ApiError(rpc_error(
                403, "PERMISSION_DENIED",
                f"Permission 'secretmanager.secrets.list' denied for resource "
                f"'projects/{call.params['projectsId']}' (or it may not exist).",
            ))  # fmt: skip

    def _secret(self, call: Call) -> Secret:
        self._project(call)
        found = self.secrets.get(call.params["secretsId"])
        if found is None:
            raise _not_found(f"Secret [{self._name(call.params['secretsId'])}] not found.")
        return found

    def _create(self, call: Call) -> Reply:
        self._project(call)
        secret_id = call.query.get("secretId", "")
        if not _ID.fullmatch(secret_id):
            raise _invalid(f"Invalid secret id {secret_id!r}: [a-zA-Z0-9_-]{{1,255}} expected.")
        body = call.json()
        problems = [f"{key} is output only" for key in _OUTPUT_ONLY if key in body]
        problems += _metadata_problems(body)
        replication = body.get("replication") or {"automatic": {}}
        if len(replication) != 1:
            problems.append("replication: exactly one of automatic and userManaged")
        if problems:
            raise _invalid("; ".join(problems))
        if secret_id in self.secrets:
            raise ApiError(rpc_error(409, "ALREADY_EXISTS",
                                     f"Secret [{self._name(secret_id)}] already exists."))  # fmt: skip
        made = Secret(secret_id, self._resource(secret_id, body))
        self.secrets[secret_id] = made
        return Reply(200, self.view(made))

    def _get(self, call: Call) -> Reply:
        return Reply(200, self.view(self._secret(call)))

    def _patch(self, call: Call) -> Reply:
        found = self._secret(call)
        mask = [path for path in call.query.get("updateMask", "").split(",") if path]
        if not mask:
            raise _invalid("update_mask is required.")
        unknown = [path for path in mask if path not in _PATCHABLE]
        if unknown:
            raise _invalid(f"Invalid update_mask paths: {', '.join(unknown)}")
        body = call.json()
        if body.get("etag") not in (None, found.resource["etag"]):
            raise ApiError(rpc_error(409, "ABORTED", "The etag does not match the secret's."))
        problems = _metadata_problems({path: body.get(path) for path in mask})
        if problems:
            raise _invalid("; ".join(problems))
        for path in mask:
            if body.get(path) in (None, {}, []):
                found.resource.pop(path, None)
            else:
                found.resource[path] = body[path]
        found.resource["etag"] = self._etag()
        return Reply(200, self.view(found))

    def _delete(self, call: Call) -> Reply:
        found = self._secret(call)
        if call.query.get("etag") not in (None, found.resource["etag"]):
            raise ApiError(rpc_error(409, "ABORTED", "The etag does not match the secret's."))
        del self.secrets[found.secret_id]
        return Reply(200, {})

    def _list(self, call: Call) -> Reply:
        self._project(call)
        wanted = _label_filter(call.query.get("filter", ""))
        matching = [
            s for s in sorted(self.secrets.values(), key=lambda s: s.secret_id)
            if all((s.resource.get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]  # fmt: skip
        page, token = _page(matching, call, self.page_size)
        answer: dict[str, Any] = {"secrets": [self.view(s) for s in page],
                                  "totalSize": len(matching)}  # fmt: skip
        if token:
            answer["nextPageToken"] = token
        return Reply(200, answer)

    # --- versions ---
    def _append(self, secret: Secret, data: bytes, *, checksum: bool) -> Version:
        number = max((v.number for v in secret.versions), default=0) + 1
        version = Version(number, data, "ENABLED", now(), checksum)
        secret.versions.append(version)
        return version

    def _version_view(self, secret: Secret, version: Version) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "name": f"{self._name(secret.secret_id)}/versions/{version.number}",
            "createTime": version.created, "state": version.state,
            "replicationStatus": {"automatic": {}}, "etag": f'"{version.number:016x}"',
            "clientSpecifiedPayloadChecksum": version.checksum,
        }  # fmt: skip
        if version.destroyed:
            shown["destroyTime"] = version.destroyed
        return shown

    def _add_version(self, call: Call) -> Reply:
        found = self._secret(call)
        payload = call.json().get("payload") or {}
        try:
            data = base64.b64decode(str(payload.get("data", "")).encode(), altchars=b"-_")
        except (binascii.Error, ValueError) as exc:
            raise _invalid("payload.data is not base64") from exc
        if not data:
            raise _invalid("Field [payload] is required.")
        if len(data) > _MAX_PAYLOAD:
            raise _invalid("Secret payload data must be no larger than 65536 bytes.")
        sent = payload.get("dataCrc32c")
        if sent is not None and int(sent) != _crc32c(data):
            raise _invalid("Checksum mismatch: the data's CRC32C is not the one sent.")
        version = self._append(found, data, checksum=sent is not None)
        return Reply(200, self._version_view(found, version))

    def _version(self, call: Call) -> tuple[Secret, Version]:
        found = self._secret(call)
        wanted = call.params["versionsId"]
        if wanted == "latest":
            enabled = [v for v in found.versions if v.state == "ENABLED"]
            version = enabled[-1] if enabled else None
        else:
            version = found.version(int(wanted)) if wanted.isdigit() else None
        if version is None:
            raise _not_found(
                f"Secret Version [{self._name(found.secret_id)}/versions/{wanted}] not found."
            )
        return found, version

    def _version_get(self, call: Call) -> Reply:
        return Reply(200, self._version_view(*self._version(call)))

    def _version_list(self, call: Call) -> Reply:
        found = self._secret(call)
        if call.query.get("filter"):
            raise _invalid("the stand-in takes no filter on versions")
        newest_first = sorted(found.versions, key=lambda v: -v.number)  # as Google lists them
        page, token = _page(newest_first, call, self.page_size)
        answer: dict[str, Any] = {"versions": [self._version_view(found, v) for v in page],
                                  "totalSize": len(found.versions)}  # fmt: skip
        if token:
            answer["nextPageToken"] = token
        return Reply(200, answer)

    def _access(self, call: Call) -> Reply:
        found, version = self._version(call)
        if version.state != "ENABLED":
            raise ApiError(rpc_error(400, "FAILED_PRECONDITION",
                                     f"Secret Version is in {version.state} state."))  # fmt: skip
        name = f"{self._name(found.secret_id)}/versions/{version.number}"
        return Reply(200, {"name": name, "payload": {
            "data": base64.b64encode(version.data).decode(),
            "dataCrc32c": str(_crc32c(version.data)),
        }})  # fmt: skip

    def _destroy(self, call: Call) -> Reply:
        found, version = self._version(call)
        if version.state == "DESTROYED":
            raise ApiError(rpc_error(400, "FAILED_PRECONDITION",
                                     "Secret Version is already in DESTROYED state."))  # fmt: skip
        version.state, version.data, version.destroyed = "DESTROYED", b"", now()
        return Reply(200, self._version_view(found, version))

    # --- IAM ---
    def _policy_view(self, secret: Secret) -> dict[str, Any]:
        shown = {key: value for key, value in secret.policy.items() if value}
        etag = base64.b64encode(f"BwY{secret.policy_etag:08d}".encode()).decode()
        return {"version": shown.pop("version", 1), **shown, "etag": etag}

    def _get_policy(self, call: Call) -> Reply:
        found = self._secret(call)
        requested = int(call.query.get("options.requestedPolicyVersion") or 1)
        conditional = any(b.get("condition") for b in found.policy.get("bindings") or [])
        if conditional and requested < 3:
            raise _invalid(f"The policy of {self._name(found.secret_id)} has conditional role "
                           "bindings: request policy version 3.")  # fmt: skip
        return Reply(200, self._policy_view(found))

    def _set_policy(self, call: Call) -> Reply:
        found = self._secret(call)
        if self.concurrent_edits > 0:  # another tool's read-modify-write lands first
            self.concurrent_edits -= 1
            bindings = found.policy.setdefault("bindings", [])
            bindings.append({"role": "roles/secretmanager.viewer", "members": [ANOTHER_TOOL]})
            found.policy_etag += 1
        policy = call.json().get("policy")
        if not isinstance(policy, dict):
            raise _invalid("policy is required.")
        if policy.get("etag") not in (None, self._policy_view(found)["etag"]):
            raise ApiError(rpc_error(409, "ABORTED", _CONCURRENT))
        problems = _policy_problems(policy)
        if problems:
            raise _invalid("; ".join(problems))
        found.policy = {"version": policy.get("version", 1),
                        "bindings": policy.get("bindings") or []}  # fmt: skip
        found.policy_etag += 1
        return Reply(200, self._policy_view(found))


def _not_found(message: str) -> ApiError:
    return ApiError(rpc_error(404, "NOT_FOUND", message))


def _invalid(message: str) -> ApiError:
    return ApiError(rpc_error(400, "INVALID_ARGUMENT", message))


def _metadata_problems(body: dict[str, Any]) -> list[str]:
    """What Secret Manager refuses in a secret's labels and annotations."""
    problems: list[str] = []
    labels = body.get("labels") or {}
    if len(labels) > 64:
        problems.append("at most 64 labels")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(str(value)):
            problems.append(f"invalid label {key}={value}")
    annotations = body.get("annotations") or {}
    for key in annotations:
        if not _ANNOTATION_KEY.fullmatch(key):
            problems.append(f"invalid annotation key {key!r}")
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) >= _ANNOTATIONS_MAX:
        problems.append("the annotations must total less than 16 KiB")
    return problems


def _policy_problems(policy: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    bindings = policy.get("bindings") or []
    if any(b.get("condition") for b in bindings) and policy.get("version", 1) < 3:
        problems.append("conditional role bindings need policy version 3")
    for binding in bindings:
        if not str(binding.get("role", "")).startswith("roles/"):
            problems.append(f"invalid role {binding.get('role')!r}")
        problems += [f"invalid member {m!r}" for m in binding.get("members") or []
                     if not _MEMBER.fullmatch(m)]  # fmt: skip
    return problems


def _label_filter(text: str) -> dict[str, str]:
    """The labels a list filter asks for (``labels.<key>=<value>`` joined by ``AND``); 400 for
    anything else."""
    wanted: dict[str, str] = {}
    for term in text.split(" AND ") if text else []:
        matched = _FILTER_TERM.fullmatch(term.strip())
        if matched is None:
            raise _invalid(f"Invalid filter {text!r}: the stand-in reads labels.<key>=<value> "
                           "terms joined by AND")  # fmt: skip
        wanted[matched.group(1)] = matched.group(2)
    return wanted


def _page(items: list[Any], call: Call, most: int) -> tuple[list[Any], str]:
    size = min(int(call.query.get("pageSize") or most), most)
    start = int(call.query.get("pageToken") or 0)
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""


def _crc32c(data: bytes) -> int:
    """CRC32C bit by bit (a check of shipyard's table-driven one, written another way)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF
