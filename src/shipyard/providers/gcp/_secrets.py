"""The env file's values in Secret Manager, one secret per key: what Secrets Manager is to the
AWS provider (``providers.aws._infrastructure``), with one difference: a value's versions are
kept, and each release pins the exact versions it was deployed with, so a rollback brings back
the values it ran with.

Each key's secret (``GcpNames.secret``: ``shipyard-<app>-<environment>-<KEY>``) is created when
missing, replicated automatically and labelled as the environment's; a secret of that name that
is not labelled so is someone else's, and is refused. A new version is added only when the value
changed. shipyard never reads a value back (``versions.access`` is never called): it records, in
the secret's annotations, a digest of the value it stored and the number of that version. The
digest is PBKDF2-HMAC-SHA256 salted with the secret's resource name, so equal values do not
share a digest and anyone who may read the secret's metadata (a project viewer) but not its
value cannot cheaply test guesses of it. The annotations are written after the version is added:
an interruption between the two adds the version again next time, which is harmless.

A value travels only in the body of ``addVersion``, base64-encoded with its CRC32C (which
Google checks); no message, action or error names it. Secret Manager cannot hold an empty value:
an empty key is refused before anything changes.

Versions of the environment's secrets that no kept release pins are destroyed by ``prune`` (the
one each secret records as its latest is always kept); ``remove_all`` deletes the secrets
(``destroy``). ``grant`` lets a service account read each of them (Cloud Run's revisions and
jobs run as it).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Collection, Iterator, Mapping
from functools import partial
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.gcp import GcpApi, GcpError
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.gcp._names import LABEL_APP, LABEL_ENV, GcpNames

ACCESSOR = "roles/secretmanager.secretAccessor"
DIGEST_ANNOTATION = "shipyard-digest"
VERSION_ANNOTATION = "shipyard-version"
_SERVICE = "secretmanager"
_NOT_FOUND, _CONFLICT = 404, 409
_ITERATIONS = 100_000
_POLICY_VERSION = 3  # read conditional bindings as they are, so writing them back keeps them
_POLICY_TRIES = 5
_VERSION = re.compile(r"projects/[^/]+/secrets/([^/]+)/versions/(\d+)")
_DESTROYED = "DESTROYED"
_ENABLED = "ENABLED"


class SecretsError(ShipyardError):
    """A secret shipyard would write is not the environment's, or a value cannot be stored."""


class SecretManager:
    """The environment's secrets in Secret Manager (see the module).

    ``api``: a ``GcpApi("secretmanager", …)``; ``labels``: the operator's, to which shipyard
    adds its own."""

    def __init__(
        self, api: GcpApi, names: GcpNames, *, labels: Mapping[str, str] | None = None
    ) -> None:
        self.api = api
        self.names = names
        self.labels = names.labels(dict(labels or {}))
        self._digests: dict[tuple[str, str], str] = {}

    # -- values ------------------------------------------------------------------------------------
    def plan(self, values: Mapping[str, str]) -> list[Action]:
        """The changes ``ensure`` would make for ``values`` (the env file's keys and values):
        the secrets to create, the versions to add; reads only."""
        return self._changes(values)[0]

    def ensure(self, values: Mapping[str, str]) -> dict[str, str]:
        """Store ``values``: each key's secret created when missing, a version added when its
        value changed. Returns each key's pinned version,
        ``projects/<project>/secrets/<id>/versions/<n>``, for the release to record."""
        actions, pinned = self._changes(values)
        carry_out(actions)
        return dict(sorted(pinned.items()))

    def _changes(self, values: Mapping[str, str]) -> tuple[list[Action], dict[str, str]]:
        """The actions that store ``values``, and the versions pinned: those already stored
        now, the others as the actions add them."""
        empty = sorted(key for key, value in values.items() if not value)
        if empty:
            raise SecretsError(
                f"{', '.join(empty)}: empty in the env file; Secret Manager cannot hold an "
                "empty value",
                hint="give each a value, or remove it from the env file",
            )
        actions: list[Action] = []
        pinned: dict[str, str] = {}
        for key in sorted(values):
            secret_id = self.names.secret(key)
            found = self._get(secret_id)
            if found is None:
                create = partial(self._create, secret_id)
                actions.append(Action(_SERVICE, "create secret", secret_id, create))
            elif not self.names.owns(found.get("labels")):
                raise self._foreign(secret_id)
            digest = self._digest(secret_id, values[key])
            number = self._stored(secret_id, found, digest)
            if number is not None:
                pinned[key] = self._version_name(secret_id, number)
                continue
            add = partial(self._add, key, values[key], digest, found, pinned)
            verb = (
                "add a version of secret (its value changed)"
                if found is not None
                else "add the first version of secret"
            )
            actions.append(Action(_SERVICE, verb, secret_id, add))
        return actions, pinned

    def _stored(self, secret_id: str, found: Mapping[str, Any] | None, digest: str) -> str | None:
        """The number of the version that holds the value whose digest is ``digest``, if the
        secret records it and that version can still be read; else ``None``."""
        annotations = (found or {}).get("annotations") or {}
        number = str(annotations.get(VERSION_ANNOTATION, ""))
        if annotations.get(DIGEST_ANNOTATION) != digest or not number.isdigit():
            return None
        version = self.api.json(
            "GET", f"v1/{self._version_name(secret_id, number)}", allow=(_NOT_FOUND,),
            what=f"version {number} of secret {secret_id}",
        )  # fmt: skip
        return number if version is not None and version.get("state") == _ENABLED else None

    def _create(self, secret_id: str) -> dict[str, Any]:
        """Create the secret; 409: another caller did (or this request's lost answer), then it
        must be the environment's."""
        body = {"replication": {"automatic": {}}, "labels": self.labels}
        created = self.api.json(
            "POST", f"v1/projects/{self.names.project}/secrets", body=body,
            query={"secretId": secret_id}, idempotent=True, allow=(_CONFLICT,),
            what=f"secret {secret_id}",
        )  # fmt: skip
        if created is not None:
            return created
        found = self._get(secret_id)
        if found is None or not self.names.owns(found.get("labels")):
            raise self._foreign(secret_id)
        return found

    def _add(
        self,
        key: str,
        value: str,
        digest: str,
        found: Mapping[str, Any] | None,
        pinned: dict[str, str],
    ) -> None:
        """Add ``value`` as a new version of ``key``'s secret, record its digest and number in
        the secret's annotations, and pin it."""
        secret_id = self.names.secret(key)
        secret = found if found is not None else self._get(secret_id) or {}
        data = value.encode()
        payload = {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc32c(data))}
        added = self.api.json(
            "POST", f"v1/{self._name(secret_id)}:addVersion", body={"payload": payload},
            what=f"a new version of secret {secret_id}",
        ) or {}  # fmt: skip
        matched = _VERSION.fullmatch(str(added.get("name", "")))
        if matched is None:
            raise GcpError(
                _SERVICE, f"addVersion ({secret_id})", 0,
                f"Secret Manager answered without the new version's name: {added.get('name')!r}",
                hint="see the secret's versions in the Cloud Console, then deploy again",
            )  # fmt: skip
        number = matched.group(2)
        annotations = {
            **(secret.get("annotations") or {}),
            DIGEST_ANNOTATION: digest,
            VERSION_ANNOTATION: number,
        }
        self.api.json(
            "PATCH", f"v1/{self._name(secret_id)}", body={"annotations": annotations},
            query={"updateMask": "annotations"}, what=f"secret {secret_id}",
        )  # fmt: skip
        pinned[key] = self._version_name(secret_id, number)

    # -- access ------------------------------------------------------------------------------------
    def grant(self, member: str) -> list[Action]:
        """Let ``member`` (``serviceAccount:<email>``) read each of the environment's secrets
        (``roles/secretmanager.secretAccessor`` on the secret, the policy's other bindings
        kept); what it changed (nothing when every secret grants it already)."""
        done: list[Action] = []
        for secret in self._owned():
            secret_id = _secret_id(secret)
            if self._grant(secret_id, member):
                done.append(Action(_SERVICE, f"grant {ACCESSOR} to {member} on", secret_id))
        return done

    def _grant(self, secret_id: str, member: str) -> bool:
        """Add ``member`` to the secret's accessor binding, read-modify-write on the policy's
        etag (a concurrent change is read again); whether it changed anything."""
        resource = f"v1/{self._name(secret_id)}"
        what = f"IAM policy of secret {secret_id}"
        for _ in range(_POLICY_TRIES):
            policy = self.api.json(
                "GET", f"{resource}:getIamPolicy",
                query={"options.requestedPolicyVersion": _POLICY_VERSION}, what=what,
            ) or {}  # fmt: skip
            changed = _with_member(policy, ACCESSOR, member)
            if changed is None:
                return False
            written = self.api.json(
                "POST", f"{resource}:setIamPolicy", body={"policy": changed}, idempotent=True,
                allow=(_CONFLICT,), what=what,
            )  # fmt: skip
            if written is not None:
                return True
        raise GcpError(
            _SERVICE, f"setIamPolicy ({secret_id})", _CONFLICT,
            f"the {what} kept changing while shipyard granted {ACCESSOR} to {member}",
            hint="another tool is editing it: wait for it, then run the command again",
        )  # fmt: skip

    # -- clean-up ----------------------------------------------------------------------------------
    def pruning(self, keep: Collection[str]) -> list[Action]:
        """What ``prune`` would destroy: every version of the environment's secrets that is
        neither in ``keep`` (the versions kept releases pin, in either project form) nor the
        one its secret records as the latest value; reads only."""
        kept = {matched.groups() for name in keep if (matched := _VERSION.fullmatch(name))}
        actions: list[Action] = []
        for secret in self._owned():
            secret_id = _secret_id(secret)
            latest = str((secret.get("annotations") or {}).get(VERSION_ANNOTATION, ""))
            for version in self._versions(secret_id):
                matched = _VERSION.fullmatch(str(version.get("name", "")))
                if matched is None or version.get("state") == _DESTROYED:
                    continue
                number = matched.group(2)
                if number == latest or (secret_id, number) in kept:
                    continue
                name = self._version_name(secret_id, number)
                destroy = partial(self._destroy, name)
                actions.append(Action(_SERVICE, "destroy secret version", name, destroy))
        return actions

    def prune(self, keep: Collection[str]) -> list[Action]:
        """Destroy the versions no kept release pins (see ``pruning``); what was done."""
        return carry_out(self.pruning(keep))

    def removal(self) -> list[Action]:
        """What ``remove_all`` would delete: every secret labelled as the environment's (one
        that is not is left alone); reads only."""
        return [
            Action(_SERVICE, "delete secret", secret_id, partial(self._delete, secret_id))
            for secret_id in (_secret_id(secret) for secret in self._owned())
        ]

    def remove_all(self) -> list[Action]:
        """Delete the environment's secrets and their versions (``destroy``); what was done."""
        return carry_out(self.removal())

    # -- requests ----------------------------------------------------------------------------------
    def _name(self, secret_id: str) -> str:
        return f"projects/{self.names.project}/secrets/{secret_id}"

    def _version_name(self, secret_id: str, number: str) -> str:
        """A version's resource name with the project's ID (Google answers with its number)."""
        return f"{self._name(secret_id)}/versions/{number}"

    def _get(self, secret_id: str) -> dict[str, Any] | None:
        return self.api.json(
            "GET", f"v1/{self._name(secret_id)}", allow=(_NOT_FOUND,), what=f"secret {secret_id}"
        )

    def _owned(self) -> list[dict[str, Any]]:
        """The environment's secrets: listed by its labels, each checked again here."""
        labels = (
            f"labels.{LABEL_APP}={self.names.app} AND labels.{LABEL_ENV}={self.names.environment}"
        )
        path = f"v1/projects/{self.names.project}/secrets"
        found = self._pages(path, "secrets", {"filter": labels}, what="the environment's secrets")
        return [secret for secret in found if self.names.owns(secret.get("labels"))]

    def _versions(self, secret_id: str) -> Iterator[dict[str, Any]]:
        return self._pages(
            f"v1/{self._name(secret_id)}/versions", "versions", {},
            what=f"the versions of secret {secret_id}",
        )  # fmt: skip

    def _pages(
        self, path: str, field: str, query: Mapping[str, str], *, what: str
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, str | int] = {**query, "pageSize": 250}
        while True:
            page = self.api.json("GET", path, query=params, what=what) or {}
            yield from page.get(field) or []
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = str(token)

    def _delete(self, secret_id: str) -> None:
        self.api.json(
            "DELETE", f"v1/{self._name(secret_id)}", allow=(_NOT_FOUND,),
            what=f"secret {secret_id}",
        )  # fmt: skip

    def _destroy(self, version: str) -> None:
        self.api.json(
            "POST", f"v1/{version}:destroy", body={}, idempotent=True, allow=(_NOT_FOUND,),
            what=f"secret version {version}",
        )  # fmt: skip

    def _digest(self, secret_id: str, value: str) -> str:
        """The digest recorded of ``value`` in the secret ``secret_id`` (see the module)."""
        name = self._name(secret_id)
        cached = self._digests.get((name, value))
        if cached is None:
            cached = value_digest(name, value)
            self._digests[(name, value)] = cached
        return cached

    def _foreign(self, secret_id: str) -> SecretsError:
        return SecretsError(
            f"Secret Manager secret {secret_id} exists and is not labelled as this "
            f"environment's ({LABEL_APP}={self.names.app}, {LABEL_ENV}={self.names.environment})",
            hint="shipyard does not write to a secret it did not create: delete or rename that "
            "secret, or rename the key in the env file",
        )


def value_digest(secret_name: str, value: str) -> str:
    """What a secret's ``shipyard-digest`` annotation records of ``value``:
    ``pbkdf2-sha256$<iterations>$<hex>``, salted with the secret's resource name."""
    derived = hashlib.pbkdf2_hmac("sha256", value.encode(), secret_name.encode(), _ITERATIONS)
    return f"pbkdf2-sha256${_ITERATIONS}${derived.hex()}"


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli) of ``data``, which Secret Manager checks a payload against."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _secret_id(secret: Mapping[str, Any]) -> str:
    return str(secret.get("name", "")).rsplit("/", 1)[-1]


def _with_member(policy: Mapping[str, Any], role: str, member: str) -> dict[str, Any] | None:
    """``policy`` with ``member`` in its unconditional binding of ``role`` (added when
    missing), the other bindings and the etag as they are; ``None`` when it is there already."""
    bindings = [dict(binding) for binding in policy.get("bindings") or []]
    plain = [b for b in bindings if b.get("role") == role and not b.get("condition")]
    if any(member in (b.get("members") or []) for b in plain):
        return None
    if plain:
        plain[0]["members"] = [*(plain[0].get("members") or []), member]
    else:
        bindings.append({"role": role, "members": [member]})
    conditional = any(b.get("condition") for b in bindings)
    version = _POLICY_VERSION if conditional else policy.get("version") or 1
    return {**policy, "bindings": bindings, "version": version}
