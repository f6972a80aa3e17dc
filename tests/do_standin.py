"""A stand-in of the DigitalOcean API (https://api.digitalocean.com/v2) for the tests: a local HTTP
server on a loopback port of its own choosing, speaking the subset of the API shipyard uses.
DigitalOcean itself cannot be reached from the test machines.

The stand-in is held to DigitalOcean's published contract: the official client pydo (0.44.0) is
generated from DigitalOcean's OpenAPI description, and its operations carry each request's body
template and each answer's shape. Where pydo's template is empty (a ``oneOf`` body), the fields
come from the OpenAPI description itself (github.com/digitalocean/openapi, ``specification/``).

=================================================  ==========================================
Endpoint                                           pydo operation (``pydo.operations``)
=================================================  ==========================================
GET    /v2/account/keys                            SshKeysOperations.list
POST   /v2/account/keys                            SshKeysOperations.create
GET    /v2/account/keys/{id or fingerprint}        SshKeysOperations.get
DELETE /v2/account/keys/{id or fingerprint}        SshKeysOperations.delete
GET    /v2/droplets[?tag_name=T]                   DropletsOperations.list
POST   /v2/droplets                                DropletsOperations.create (body:
                                                   models/droplet_single_create.yml)
GET    /v2/droplets/{id}                           DropletsOperations.get
DELETE /v2/droplets/{id}                           DropletsOperations.destroy
GET    /v2/firewalls                               FirewallsOperations.list
POST   /v2/firewalls                               FirewallsOperations.create
GET    /v2/firewalls/{id}                          FirewallsOperations.get
PUT    /v2/firewalls/{id}                          FirewallsOperations.update
DELETE /v2/firewalls/{id}                          FirewallsOperations.delete
GET    /v2/reserved_ips                            ReservedIPsOperations.list
POST   /v2/reserved_ips                            ReservedIPsOperations.create (body:
                                                   models/reserved_ip_create.yml)
GET    /v2/reserved_ips/{ip}                       ReservedIPsOperations.get
DELETE /v2/reserved_ips/{ip}                       ReservedIPsOperations.delete
POST   /v2/reserved_ips/{ip}/actions               ReservedIPsActionsOperations.post
GET    /v2/actions/{id}                            ActionsOperations.get
GET    /v2/databases[?tag_name=T]                  DatabasesOperations.list_clusters
POST   /v2/databases                               DatabasesOperations.create_cluster (body:
                                                   models/database_cluster.yml)
GET    /v2/databases/{uuid}                        DatabasesOperations.get_cluster
DELETE /v2/databases/{uuid}                        DatabasesOperations.destroy_cluster
POST   /v2/databases/{uuid}/dbs                    DatabasesOperations.add
GET    /v2/databases/{uuid}/firewall               DatabasesOperations.list_firewall_rules
PUT    /v2/databases/{uuid}/firewall               DatabasesOperations.update_firewall_rules
=================================================  ==========================================

A database cluster is backed by a real PostgreSQL server the test gives (``database_server``):
creating one makes its admin role, ``doadmin``, with a generated password, and adding a
database creates it there, so what connects to the cluster's ``connection`` reaches that
server. DigitalOcean's ``doadmin`` is no superuser, yet may create the extensions its clusters
allow; here it is a superuser, which allows them all.

Every answer carries ``ratelimit-limit``, ``ratelimit-remaining`` and ``ratelimit-reset``. Errors
are ``{"id": ..., "message": ...}``: 401 ``unauthorized`` without the token, 404 ``not_found``,
422 ``unprocessable_entity`` for a bad body (400 ``bad_request`` for firewalls: pydo documents
400 as their only refusal). Stricter than DigitalOcean on purpose: a field the operation does not
know is refused (DigitalOcean ignores it), so a typo in shipyard's requests fails the tests.

Choices where the contract is silent or contradicts itself:

- Droplet names: letters, digits, ``.`` and ``-`` (up to 255), as DigitalOcean's refusal says
  ("Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"); the OpenAPI
  description's pattern ``^[a-z][a-z0-9-]{0,30}[a-z0-9]$`` rejects its own example, example.com.
- Tags: letters, digits, ``:``, ``-`` and ``_``, at most 255 characters (TagsOperations).
- Firewall rules: pydo marks ``ports`` Required, yet DigitalOcean takes tcp and udp rules with
  ``"all"`` and icmp rules without ports, and answers ``"0"`` for both (its own Terraform
  provider, ``digitalocean/firewall/firewalls.go``, reads them back so): the stand-in does too.
- Messages are the stand-in's own, naming the field, except DigitalOcean's words for the droplet
  limit, a key already in use, a malformed key and unknown key identifiers.
- Deleting a reserved IP that is assigned unassigns it, as DigitalOcean's documentation says;
  unassigning one twice is refused (422), which pydo does not document.
- Several Droplets at once (``names``) are refused: not modelled.
- An action answers "in-progress" when started and "completed" at its first GET.
- A new cluster is "creating" in the first ``online_after`` GETs that show it, "online" from
  then on; adding a database to a cluster that is not online is refused (422), which the
  contract does not say either way.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import ipaddress
import itertools
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

TOKEN = "do-standin-token"
RATE_LIMIT = 5000
USER_DATA_LIMIT = 64 * 1024
NOT_FOUND = "The resource you were accessing could not be found."
DROPLET_LIMIT = "creating this/these droplet(s) will exceed your droplet limit"
KEY_IN_USE = "SSH Key is already in use on your account"
KEY_INVALID = "Key invalid, key should be of the format `type key [comment]`"
DROPLET_NAME = re.compile(r"^[a-zA-Z0-9.-]{1,255}$")
FIREWALL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]+$")
TAG = re.compile(r"^[a-zA-Z0-9:_-]{1,255}$")
PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it; ``body`` is the parsed JSON (None when empty)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.reply = _Reply(status, {"id": error_id, "message": message})


def _unprocessable(message: str) -> _ApiError:
    return _ApiError(422, "unprocessable_entity", message)


def _bad_request(message: str) -> _ApiError:
    return _ApiError(400, "bad_request", message)


def _not_found() -> _ApiError:
    return _ApiError(404, "not_found", NOT_FOUND)


# --- The request bodies' fields, as pydo's templates and the OpenAPI description give them ---


@dataclass(frozen=True)
class _Kind:
    """A JSON type a field accepts; ``name`` completes "must be ..." in a refusal."""

    name: str
    accepts: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


STR = _Kind("a string", lambda v: isinstance(v, str))
INT = _Kind("an integer", _is_int)
BOOL = _Kind("a boolean", lambda v: isinstance(v, bool))
OBJECT = _Kind("an object", lambda v: isinstance(v, dict))
ANY = _Kind("any value", lambda v: True)
STR_OR_INT = _Kind("a string or an integer", lambda v: isinstance(v, str) or _is_int(v))


def _list_of(item: _Kind, items: str, *, nullable: bool = False) -> _Kind:
    def accepts(value: Any) -> bool:
        if value is None:
            return nullable
        return isinstance(value, list) and all(item.accepts(v) for v in value)

    return _Kind(f"a list of {items}", accepts)


@dataclass(frozen=True)
class _Field:
    kind: _Kind
    required: bool = False


def _check_fields(
    body: Any,
    fields: Mapping[str, _Field],
    *,
    where: str = "",
    refuse: Callable[[str], _ApiError] = _unprocessable,
) -> dict[str, Any]:
    """``body`` as a JSON object holding only ``fields``, each of its kind; else the refusal
    naming the first field at fault (``where``: the path to the object, e.g. ``inbound_rules[0].``)."""
    if not isinstance(body, dict):
        raise refuse(f"{where or 'the request body '}must be a JSON object")
    for key in body:
        if key not in fields:
            raise refuse(f"{where}{key} is not a field of this request")
    for key, spec in fields.items():
        if key not in body:
            if spec.required:
                raise refuse(f"{where}{key} is required")
        elif not spec.kind.accepts(body[key]):
            raise refuse(f"{where}{key} must be {spec.kind.name}")
    return body


def _check_tags(tags: list[str] | None, where: str, refuse: Callable[[str], _ApiError]) -> None:
    for i, tag in enumerate(tags or []):
        if not TAG.match(tag):
            raise refuse(
                f"{where}tags[{i}] {tag!r} is not a valid tag: tags may contain letters, "
                "numbers, colons, dashes and underscores, at most 255 characters"
            )


# SshKeysOperations.create: id and fingerprint are in the template but read-only (ignored).
KEY_FIELDS = {
    "name": _Field(STR, required=True),
    "public_key": _Field(STR, required=True),
    "fingerprint": _Field(STR),
    "id": _Field(INT),
}
# models/droplet_single_create.yml (allOf name + droplet_create.yml). ``names`` is the multiple
# create's (droplet_multi_create.yml), known so that its refusal says what it is.
DROPLET_FIELDS = {
    "name": _Field(STR, required=True),
    "names": _Field(ANY),
    "region": _Field(STR, required=True),
    "size": _Field(STR, required=True),
    "image": _Field(STR_OR_INT, required=True),
    "ssh_keys": _Field(_list_of(STR_OR_INT, "strings or integers")),
    "backups": _Field(BOOL),
    "backup_policy": _Field(OBJECT),
    "ipv6": _Field(BOOL),
    "monitoring": _Field(BOOL),
    "tags": _Field(_list_of(STR, "strings", nullable=True)),
    "user_data": _Field(STR),
    "private_networking": _Field(BOOL),
    "vpc_uuid": _Field(STR),
    "with_droplet_agent": _Field(BOOL),
}
# FirewallsOperations.create/update; id, status, created_at and pending_changes are read-only.
FIREWALL_FIELDS = {
    "name": _Field(STR, required=True),
    "inbound_rules": _Field(_list_of(OBJECT, "objects", nullable=True)),
    "outbound_rules": _Field(_list_of(OBJECT, "objects", nullable=True)),
    "droplet_ids": _Field(_list_of(INT, "integers")),
    "tags": _Field(_list_of(STR, "strings")),
    "id": _Field(STR),
    "status": _Field(STR),
    "created_at": _Field(STR),
    "pending_changes": _Field(_list_of(OBJECT, "objects")),
}
# ``ports``: required of tcp and udp rules only (see _ports).
RULE_FIELDS = {"protocol": _Field(STR, required=True), "ports": _Field(STR), "action": _Field(STR)}
TARGET_FIELDS = {
    "addresses": _Field(_list_of(STR, "strings")),
    "droplet_ids": _Field(_list_of(INT, "integers")),
    "load_balancer_uids": _Field(_list_of(STR, "strings")),
    "kubernetes_ids": _Field(_list_of(STR, "strings")),
    "tags": _Field(_list_of(STR, "strings")),
}
# models/database_cluster.yml (the fields that are not readOnly) + backup_restore.
DATABASE_CLUSTER_FIELDS = {
    "name": _Field(STR, required=True),
    "engine": _Field(STR, required=True),
    "version": _Field(STR),
    "num_nodes": _Field(INT, required=True),
    "size": _Field(STR, required=True),
    "region": _Field(STR, required=True),
    "private_network_uuid": _Field(STR),
    "tags": _Field(_list_of(STR, "strings", nullable=True)),
    "project_id": _Field(STR),
    "rules": _Field(_list_of(OBJECT, "objects")),
    "storage_size_mib": _Field(INT),
    "backup_restore": _Field(OBJECT),
}
# models/firewall_rule.yml: type and value required; uuid, cluster_uuid and created_at too.
DATABASE_RULE_FIELDS = {
    "uuid": _Field(STR),
    "cluster_uuid": _Field(STR),
    "type": _Field(STR, required=True),
    "value": _Field(STR, required=True),
    "description": _Field(STR),
    "created_at": _Field(STR),
}
DATABASE_RULE_TYPES = ("droplet", "k8s", "ip_addr", "tag")
# DatabasesOperations.add: models/database.yml.
DATABASE_FIELDS = {"name": _Field(STR, required=True)}
DATABASE_ENGINES = ("pg", "mysql", "redis", "mongodb", "kafka", "opensearch")


# models/reserved_ip_create.yml: oneOf {droplet_id} | {region}.
RESERVED_IP_FIELDS = {"droplet_id": _Field(INT), "region": _Field(STR)}
# reservedIPsActions_post.yml: {type: unassign} | {type: assign, droplet_id}.
RESERVED_IP_ACTION_FIELDS = {"type": _Field(STR, required=True), "droplet_id": _Field(INT)}


def _fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint: the MD5 of the key's blob, as colon-separated hex."""
    parts = public_key.split()
    if len(parts) < 2:
        raise _unprocessable(KEY_INVALID)
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise _unprocessable(KEY_INVALID) from exc
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _region(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug,
        "features": ["backups", "ipv6", "metadata", "install_agent", "storage"],
        "available": True,
        "sizes": [],
    }


# --- The stand-in ---

_Route = Callable[[re.Match[str], dict[str, str], Any], _Reply]


@dataclass
class _Failure:
    method: str
    path_prefix: str
    reply: _Reply
    times: int


class DoStandIn:
    """The API's state and behaviour; ``do_standin`` serves it over HTTP. A new Droplet is
    "new" in the first ``active_after`` GETs that show it (of it, or a list page with it) and
    "active", with ``address`` as its public IPv4, from then on (0: as soon as it is created)."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        address: str,
        active_after: int,
        droplet_limit: int,
        database_server: DatabaseServer | None = None,
        online_after: int = 1,
    ) -> None:
        self.database_server = database_server
        self.online_after = online_after
        self.clusters: dict[str, dict[str, Any]] = {}
        self._cluster_gets: dict[str, int] = {}
        self._rules_of: dict[str, list[dict[str, Any]]] = {}
        self.url = url
        self.token = token
        self.address = address
        self.active_after = active_after
        self.droplet_limit = droplet_limit
        self.requests: list[Request] = []
        self.droplets: dict[int, dict[str, Any]] = {}
        self.keys: dict[int, dict[str, Any]] = {}
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.reserved_ips: dict[str, dict[str, Any]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._rate_limited = 0
        self._retry_after: int | None = None
        self._never_active = False
        # Per Droplet: the GETs still answered "new" (None: forever) and the address it gets.
        self._gets_before_active: dict[int, int | None] = {}
        self._addresses: dict[int, str] = {}
        self._droplet_ids = itertools.count(3164444)
        self._key_ids = itertools.count(512189)
        self._action_ids = itertools.count(36804636)
        self._reserved_hosts = itertools.count(10)
        self._routes: list[tuple[str, re.Pattern[str], _Route]] = [
            ("GET", re.compile(r"/v2/account/keys"), self._list_keys),
            ("POST", re.compile(r"/v2/account/keys"), self._create_key),
            ("GET", re.compile(r"/v2/account/keys/([^/]+)"), self._get_key),
            ("DELETE", re.compile(r"/v2/account/keys/([^/]+)"), self._delete_key),
            ("GET", re.compile(r"/v2/droplets"), self._list_droplets),
            ("POST", re.compile(r"/v2/droplets"), self._create_droplet),
            ("GET", re.compile(r"/v2/droplets/(\d+)"), self._get_droplet),
            ("DELETE", re.compile(r"/v2/droplets/(\d+)"), self._delete_droplet),
            ("GET", re.compile(r"/v2/firewalls"), self._list_firewalls),
            ("POST", re.compile(r"/v2/firewalls"), self._create_firewall),
            ("GET", re.compile(r"/v2/firewalls/([^/]+)"), self._get_firewall),
            ("PUT", re.compile(r"/v2/firewalls/([^/]+)"), self._update_firewall),
            ("DELETE", re.compile(r"/v2/firewalls/([^/]+)"), self._delete_firewall),
            ("GET", re.compile(r"/v2/reserved_ips"), self._list_reserved_ips),
            ("POST", re.compile(r"/v2/reserved_ips"), self._create_reserved_ip),
            ("GET", re.compile(r"/v2/reserved_ips/([^/]+)"), self._get_reserved_ip),
            ("DELETE", re.compile(r"/v2/reserved_ips/([^/]+)"), self._delete_reserved_ip),
            ("POST", re.compile(r"/v2/reserved_ips/([^/]+)/actions"), self._reserved_ip_action),
            ("GET", re.compile(r"/v2/actions/(\d+)"), self._get_action),
            ("GET", re.compile(r"/v2/databases"), self._list_clusters),
            ("POST", re.compile(r"/v2/databases"), self._create_cluster),
            ("GET", re.compile(r"/v2/databases/([0-9a-f-]{36})"), self._get_cluster),
            ("DELETE", re.compile(r"/v2/databases/([0-9a-f-]{36})"), self._delete_cluster),
            ("POST", re.compile(r"/v2/databases/([0-9a-f-]{36})/dbs"), self._add_database),
            ("GET", re.compile(r"/v2/databases/([0-9a-f-]{36})/firewall"), self._cluster_rules),
            ("PUT", re.compile(r"/v2/databases/([0-9a-f-]{36})/firewall"), self._set_cluster_rules),
        ]

    # --- What tests script ---

    def fail(
        self,
        method: str,
        path_prefix: str,
        status: int,
        body: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests of ``method`` whose path starts with ``path_prefix`` get
        this answer instead of the API's."""
        with self._lock:
            reply = _Reply(status, body, headers or {})
            self._failures.append(_Failure(method.upper(), path_prefix, reply, times))

    def rate_limit(self, times: int, *, retry_after: int | None = 1) -> None:
        """The next ``times`` requests get 429, as DigitalOcean answers past its rate limit."""
        with self._lock:
            self._rate_limited = times
            self._retry_after = retry_after

    def never_active(self) -> None:
        """Droplets created from now on stay "new" forever."""
        with self._lock:
            self._never_active = True

    # --- Serving one request ---

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the answer to one request; every answer carries the
        rate limit headers. The body is serialized under the lock: the state changes."""
        with self._lock:
            reply = self._answer(method, target, headers, raw)
            remaining = 0 if reply.status == 429 else max(0, RATE_LIMIT - len(self.requests))
            empty = reply.body is None or reply.status == 204
            payload = b"" if empty else json.dumps(reply.body).encode()
        limits = {
            "ratelimit-limit": str(RATE_LIMIT),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(int(time.time()) + 60),
        }
        if payload:
            limits["content-type"] = "application/json; charset=utf-8"
        return reply.status, {**limits, **reply.headers}, payload

    def _answer(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query))
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self.requests.append(Request(method, path, query, raw.decode(errors="replace")))
            return _bad_request("the request body is not valid JSON").reply
        self.requests.append(Request(method, path, query, body))
        refused = self._refusal(method, path, headers)
        if refused is not None:
            return refused
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                try:
                    return handler(match, query, body)
                except _ApiError as error:
                    return error.reply
        return _not_found().reply

    def _refusal(self, method: str, path: str, headers: Mapping[str, str]) -> _Reply | None:
        """The answer that comes before the API's: the rate limit, a scripted failure, 401."""
        if self._rate_limited:
            return self._too_many_requests()
        scripted = self._scripted(method, path)
        if scripted is not None:
            return scripted
        if headers.get("authorization") != f"Bearer {self.token}":
            return _ApiError(401, "unauthorized", "Unable to authenticate you").reply
        return None

    def _too_many_requests(self) -> _Reply:
        self._rate_limited -= 1
        retry = {} if self._retry_after is None else {"retry-after": str(self._retry_after)}
        body = {"id": "too_many_requests", "message": "API Rate limit exceeded."}
        return _Reply(429, body, retry)

    def _scripted(self, method: str, path: str) -> _Reply | None:
        for failure in self._failures:
            if failure.method == method and path.startswith(failure.path_prefix):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure.reply
        return None

    def _page(
        self, items: list[dict[str, Any]], key: str, path: str, query: dict[str, str]
    ) -> _Reply:
        """One page of ``items`` as DigitalOcean lists them: links.pages and meta.total."""
        page = _positive(query, "page", 1)
        per_page = min(_positive(query, "per_page", 20), 200)
        last = max(1, math.ceil(len(items) / per_page))

        def link(number: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'page': number, 'per_page': per_page})}"

        pages: dict[str, str] = {}
        if page > 1:
            pages |= {"first": link(1), "prev": link(min(page - 1, last))}
        if page < last:
            pages |= {"last": link(last), "next": link(page + 1)}
        start = (page - 1) * per_page
        body = {
            key: items[start : start + per_page],
            "links": {"pages": pages},
            "meta": {"total": len(items)},
        }
        return _Reply(200, body)

    # --- SSH keys ---

    def _list_keys(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        return self._page(list(self.keys.values()), "ssh_keys", "/v2/account/keys", query)

    def _create_key(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        sent = _check_fields(body, KEY_FIELDS)
        fingerprint = _fingerprint(sent["public_key"])
        if any(key["fingerprint"] == fingerprint for key in self.keys.values()):
            raise _unprocessable(KEY_IN_USE)
        key_id = next(self._key_ids)
        key = {
            "id": key_id,
            "fingerprint": fingerprint,
            "public_key": sent["public_key"],
            "name": sent["name"],
        }
        self.keys[key_id] = key
        return _Reply(201, {"ssh_key": key})

    def _key(self, identifier: str) -> dict[str, Any]:
        for key in self.keys.values():
            if identifier in (str(key["id"]), key["fingerprint"]):
                return key
        raise _not_found()

    def _get_key(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        return _Reply(200, {"ssh_key": self._key(match[1])})

    def _delete_key(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        del self.keys[self._key(match[1])["id"]]
        return _Reply(204)

    # --- Droplets ---

    def _list_droplets(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        droplets = [
            copy.deepcopy(d)
            for d in self.droplets.values()
            if "tag_name" not in query or query["tag_name"] in d["tags"]
        ]
        reply = self._page(droplets, "droplets", "/v2/droplets", query)
        for shown in reply.body["droplets"]:
            self._count_get(self.droplets[shown["id"]], 1)
        return reply

    def _create_droplet(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        sent = _check_fields(body, DROPLET_FIELDS)
        if "names" in sent:
            raise _unprocessable("names: creating several Droplets at once is not modelled")
        if not DROPLET_NAME.match(sent["name"]):
            raise _unprocessable(
                "Name Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
            )
        _check_tags(sent.get("tags"), "", _unprocessable)
        if len(sent.get("user_data", "").encode()) > USER_DATA_LIMIT:
            raise _unprocessable("user_data may not exceed 64 KiB")
        unknown = [str(k) for k in sent.get("ssh_keys", []) if not self._has_key(k)]
        if unknown:
            raise _unprocessable(
                f"{', '.join(unknown)} are invalid key identifiers for Droplet creation."
            )
        if len(self.droplets) >= self.droplet_limit:
            raise _unprocessable(DROPLET_LIMIT)
        droplet_id = next(self._droplet_ids)
        droplet = _droplet(droplet_id, sent, _now())
        answer = copy.deepcopy(droplet)
        self.droplets[droplet_id] = droplet
        self._addresses[droplet_id] = self.address
        self._gets_before_active[droplet_id] = None if self._never_active else self.active_after
        self._count_get(droplet, 0)
        action = self._action("create", droplet_id, "droplet", sent["region"])
        link = {"id": action["id"], "rel": "create", "href": self._href("actions", action["id"])}
        return _Reply(202, {"droplet": answer, "links": {"actions": [link]}})

    def _has_key(self, identifier: str | int) -> bool:
        return any(
            str(identifier) in (str(key["id"]), key["fingerprint"]) for key in self.keys.values()
        )

    def _droplet(self, droplet_id: str | int) -> dict[str, Any]:
        droplet = self.droplets.get(int(droplet_id))
        if droplet is None:
            raise _not_found()
        return droplet

    def _get_droplet(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        droplet = self._droplet(match[1])
        answer = copy.deepcopy(droplet)
        self._count_get(droplet, 1)
        return _Reply(200, {"droplet": answer})

    def _count_get(self, droplet: dict[str, Any], gets: int) -> None:
        """The Droplet turns active once ``active_after`` answers have shown it "new": GETs of
        it and list pages with it alike (DigitalOcean's Droplets start whoever polls)."""
        left = self._gets_before_active.get(droplet["id"])  # None too for Droplets tests put in
        if left is None:
            return
        self._gets_before_active[droplet["id"]] = left - gets
        if left - gets <= 0 and droplet["status"] == "new":
            self._activate(droplet)

    def _activate(self, droplet: dict[str, Any]) -> None:
        host = droplet["id"] % 250 + 2
        droplet["status"] = "active"
        droplet["networks"]["v4"] = [
            {
                "ip_address": f"10.110.0.{host}",
                "netmask": "255.255.240.0",
                "gateway": "10.110.0.1",
                "type": "private",
            },
            {
                "ip_address": self._addresses[droplet["id"]],
                "netmask": "255.255.240.0",
                "gateway": "203.0.113.1",
                "type": "public",
            },
        ]
        if "ipv6" in droplet["features"]:
            droplet["networks"]["v6"] = [
                {
                    "ip_address": f"2001:db8::{host:x}",
                    "netmask": 64,
                    "gateway": "2001:db8::1",
                    "type": "public",
                }
            ]

    def _delete_droplet(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        droplet = self._droplet(match[1])
        del self.droplets[droplet["id"]]
        for reserved in self.reserved_ips.values():
            if reserved["droplet"] is droplet:
                reserved["droplet"] = None
        for firewall in self.firewalls.values():
            if droplet["id"] in firewall["droplet_ids"]:
                firewall["droplet_ids"].remove(droplet["id"])
        return _Reply(204)

    # --- Firewalls ---

    def _list_firewalls(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        return self._page(list(self.firewalls.values()), "firewalls", "/v2/firewalls", query)

    def _create_firewall(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        firewall_id = str(uuid.uuid4())
        firewall = {"id": firewall_id, "status": "succeeded", "created_at": _now()}
        firewall |= _firewall_fields(body)
        self.firewalls[firewall_id] = firewall
        return _Reply(202, {"firewall": firewall})

    def _firewall(self, firewall_id: str) -> dict[str, Any]:
        firewall = self.firewalls.get(firewall_id)
        if firewall is None:
            raise _not_found()
        return firewall

    def _get_firewall(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        return _Reply(200, {"firewall": self._firewall(match[1])})

    def _update_firewall(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        firewall = self._firewall(match[1])
        firewall |= _firewall_fields(body)
        return _Reply(200, {"firewall": firewall})

    def _delete_firewall(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        del self.firewalls[self._firewall(match[1])["id"]]
        return _Reply(204)

    # --- Reserved IPs and their actions ---

    def _list_reserved_ips(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        ips = list(self.reserved_ips.values())
        return self._page(ips, "reserved_ips", "/v2/reserved_ips", query)

    def _create_reserved_ip(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        sent = _check_fields(body, RESERVED_IP_FIELDS)
        if len(sent) != 1:
            raise _unprocessable("give exactly one of droplet_id (assign) or region (reserve)")
        ip = f"198.51.100.{next(self._reserved_hosts)}"
        if "region" in sent:
            reserved = _reserved_ip(ip, sent["region"], None)
            self.reserved_ips[ip] = reserved
            return _Reply(202, {"reserved_ip": reserved, "links": {}})
        droplet = self._assignable(sent["droplet_id"])
        reserved = _reserved_ip(ip, droplet["region"]["slug"], droplet)
        self.reserved_ips[ip] = reserved
        resource_id = int(ipaddress.ip_address(ip))
        action = self._action("assign_ip", resource_id, "reserved_ip", droplet["region"]["slug"])
        # The answer shows the assignment under way, as DigitalOcean's example does.
        answer = {**reserved, "droplet": None, "locked": True}
        links = {
            "droplets": [
                {
                    "id": droplet["id"],
                    "rel": "droplet",
                    "href": self._href("droplets", droplet["id"]),
                }
            ],
            "actions": [
                {
                    "id": action["id"],
                    "rel": "assign_ip",
                    "href": self._href("actions", action["id"]),
                }
            ],
        }
        return _Reply(202, {"reserved_ip": answer, "links": links})

    def _href(self, collection: str, resource_id: int) -> str:
        return f"{self.url}/v2/{collection}/{resource_id}"

    def _assignable(self, droplet_id: int) -> dict[str, Any]:
        droplet = self.droplets.get(droplet_id)
        if droplet is None:
            raise _unprocessable(f"droplet_id {droplet_id} is not a Droplet of this account")
        return droplet

    def _reserved(self, ip: str) -> dict[str, Any]:
        reserved = self.reserved_ips.get(ip)
        if reserved is None:
            raise _not_found()
        return reserved

    def _get_reserved_ip(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        return _Reply(200, {"reserved_ip": self._reserved(match[1])})

    def _delete_reserved_ip(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        # "Deleting a reserved IP unassigns it and permanently removes it from your account"
        # (docs.digitalocean.com, How to Delete Reserved IPs).
        reserved = self._reserved(match[1])
        del self.reserved_ips[reserved["ip"]]
        return _Reply(204)

    def _reserved_ip_action(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        reserved = self._reserved(match[1])
        sent = _check_fields(body, RESERVED_IP_ACTION_FIELDS)
        if sent["type"] == "assign":
            if "droplet_id" not in sent:
                raise _unprocessable("droplet_id is required")
            reserved["droplet"] = self._assignable(sent["droplet_id"])
        elif sent["type"] == "unassign":
            if "droplet_id" in sent:
                raise _unprocessable("droplet_id is not a field of this request")
            if reserved["droplet"] is None:
                raise _unprocessable("the reserved IP is not assigned to a Droplet")
            reserved["droplet"] = None
        else:
            raise _unprocessable(f"type must be assign or unassign, not {sent['type']!r}")
        resource_id = int(ipaddress.ip_address(reserved["ip"]))
        slug = reserved["region"]["slug"]
        action = self._action(f"{sent['type']}_ip", resource_id, "reserved_ip", slug)
        return _Reply(201, {"action": action})

    def _action(
        self, kind: str, resource_id: int, resource_type: str, region: str
    ) -> dict[str, Any]:
        """An action under way; GET /v2/actions/{id} answers it completed."""
        action_id = next(self._action_ids)
        action = {
            "id": action_id,
            "status": "in-progress",
            "type": kind,
            "started_at": _now(),
            "completed_at": None,
            "resource_id": resource_id,
            "resource_type": resource_type,
            "region": _region(region) if region else None,
            "region_slug": region or None,
        }
        self.actions[action_id] = action
        return dict(action)

    def _get_action(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        action = self.actions.get(int(match[1]))
        if action is None:
            raise _not_found()
        if action["status"] == "in-progress":
            action |= {"status": "completed", "completed_at": _now()}
        return _Reply(200, {"action": action})

    # --- Database clusters ---

    def _shown(self, cluster: dict[str, Any]) -> dict[str, Any]:
        """A cluster as a GET shows it: "creating" for its first ``online_after`` GETs."""
        seen = self._cluster_gets.get(cluster["id"], 0) + 1
        self._cluster_gets[cluster["id"]] = seen
        if cluster["status"] == "creating" and seen > self.online_after:
            cluster["status"] = "online"
        return copy.deepcopy(cluster)

    def _cluster(self, cluster_id: str) -> dict[str, Any]:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise _not_found()
        return cluster

    def _list_clusters(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        shown = [
            self._shown(c)
            for c in self.clusters.values()
            if "tag_name" not in query or query["tag_name"] in (c["tags"] or [])
        ]
        return self._page(shown, "databases", "/v2/databases", query)

    def _create_cluster(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        sent = _check_fields(body, DATABASE_CLUSTER_FIELDS)
        if sent["engine"] not in DATABASE_ENGINES:
            raise _unprocessable(f"engine must be one of {', '.join(DATABASE_ENGINES)}")
        _check_tags(sent.get("tags"), "", _unprocessable)
        if any(c["name"] == sent["name"] for c in self.clusters.values()):
            raise _unprocessable(f"a cluster named {sent['name']} already exists")
        server = self.database_server
        if server is None:
            raise _unprocessable("this stand-in was given no database server")
        password = secrets.token_urlsafe(18)
        server.sql(
            "DO $$ BEGIN CREATE ROLE doadmin LOGIN SUPERUSER; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n"
            f"ALTER ROLE doadmin PASSWORD '{password}';\n"
        )
        cluster_id = str(uuid.uuid4())
        connection = {
            "database": "defaultdb", "host": server.host, "port": server.port,
            "user": "doadmin", "password": password, "ssl": True,
            "uri": f"postgres://doadmin:{password}@{server.host}:{server.port}/defaultdb?sslmode=require",
        }  # fmt: skip
        cluster = {
            "id": cluster_id,
            "name": sent["name"],
            "engine": sent["engine"],
            "version": sent.get("version", "17"),
            "semantic_version": f"{sent.get('version', '17')}.2",
            "num_nodes": sent["num_nodes"],
            "size": sent["size"],
            "region": sent["region"],
            "status": "creating",
            "created_at": _now(),
            "private_network_uuid": sent.get("private_network_uuid", str(uuid.uuid4())),
            "tags": sent.get("tags"),
            "db_names": ["defaultdb"],
            "connection": connection,
            "private_connection": {**connection, "host": f"private-{server.host}"}
            if server.private_host is None
            else {**connection, "host": server.private_host},
            "users": [{"name": "doadmin", "role": "primary", "password": password}],
            "maintenance_window": None,
            "project_id": sent.get("project_id", str(uuid.uuid5(uuid.NAMESPACE_DNS, "project"))),
        }
        self._rules_of[cluster_id] = [
            self._rule(cluster_id, _check_fields(rule, DATABASE_RULE_FIELDS, where=f"rules[{i}]."))
            for i, rule in enumerate(sent.get("rules") or [])
        ]
        self.clusters[cluster_id] = cluster
        return _Reply(201, {"database": copy.deepcopy(cluster)})

    def _rule(self, cluster_id: str, sent: dict[str, Any]) -> dict[str, Any]:
        if sent["type"] not in DATABASE_RULE_TYPES:
            raise _unprocessable(f"type must be one of {', '.join(DATABASE_RULE_TYPES)}")
        return {
            "uuid": str(uuid.uuid4()),
            "cluster_uuid": cluster_id,
            "type": sent["type"],
            "value": sent["value"],
            "created_at": _now(),
        }

    def _get_cluster(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        return _Reply(200, {"database": self._shown(self._cluster(match[1]))})

    def _delete_cluster(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        self._cluster(match[1])
        del self.clusters[match[1]]
        self._rules_of.pop(match[1], None)
        return _Reply(204)

    def _add_database(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        cluster = self._cluster(match[1])
        sent = _check_fields(body, DATABASE_FIELDS)
        if cluster["status"] != "online":
            raise _unprocessable(f"the cluster is {cluster['status']}, not online")
        if sent["name"] in cluster["db_names"]:
            raise _unprocessable(f"database {sent['name']} already exists")
        assert self.database_server is not None
        self.database_server.sql(f'CREATE DATABASE "{sent["name"]}";')
        cluster["db_names"].append(sent["name"])
        return _Reply(201, {"db": {"name": sent["name"]}})

    def _cluster_rules(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        self._cluster(match[1])
        return _Reply(200, {"rules": copy.deepcopy(self._rules_of.get(match[1], []))})

    def _set_cluster_rules(self, match: re.Match[str], query: dict[str, str], body: Any) -> _Reply:
        self._cluster(match[1])
        sent = _check_fields(body, {"rules": _Field(_list_of(OBJECT, "objects"), required=True)})
        self._rules_of[match[1]] = [
            self._rule(match[1], _check_fields(rule, DATABASE_RULE_FIELDS, where=f"rules[{i}]."))
            for i, rule in enumerate(sent["rules"])
        ]
        return _Reply(204)


class DatabaseServer(Protocol):
    """The PostgreSQL server behind the stand-in's clusters."""

    host: str  # the clusters' public address
    port: int
    private_host: str | None  # their private one (None: "private-" + host)

    def sql(self, statements: str, *, database: str = "postgres") -> str: ...


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise _bad_request(f"{name} must be a positive integer")
    return int(value)


def _droplet(droplet_id: int, sent: Mapping[str, Any], created_at: str) -> dict[str, Any]:
    """A new Droplet in DropletsOperations.get's shape: status "new", no networks yet."""
    features = ["private_networking"] + [
        feature for feature in ("backups", "ipv6", "monitoring") if sent.get(feature)
    ]
    image = sent["image"]
    region = sent["region"]
    size = {
        "slug": sent["size"],
        "memory": 1024,
        "vcpus": 1,
        "disk": 25,
        "transfer": 1.0,
        "price_monthly": 6.0,
        "price_hourly": 0.00893,
        "regions": [region],
        "available": True,
        "description": "Basic",
    }
    return {
        "id": droplet_id,
        "name": sent["name"],
        "memory": 1024,
        "vcpus": 1,
        "disk": 25,
        "locked": False,
        "status": "new",
        "kernel": None,
        "created_at": created_at,
        "features": features,
        "backup_ids": [],
        "next_backup_window": None,
        "snapshot_ids": [],
        "image": {
            "id": image if isinstance(image, int) else 0,
            "slug": image if isinstance(image, str) else None,
            "name": str(image),
            "type": "base" if isinstance(image, str) else "snapshot",
            "distribution": "Unknown",
            "public": isinstance(image, str),
            "regions": [region],
            "status": "available",
        },
        "volume_ids": [],
        "size": size,
        "size_slug": sent["size"],
        "networks": {"v4": [], "v6": []},
        "region": _region(region),
        "tags": list(sent.get("tags") or []),
        "vpc_uuid": sent.get("vpc_uuid", str(uuid.uuid5(uuid.NAMESPACE_DNS, f"vpc.{region}"))),
    }


def _firewall_fields(body: Any) -> dict[str, Any]:
    """The firewall a create or a full update describes; a refusal is 400 (pydo: firewalls
    answer bad input with 400 only). Rules get their default action, "allow"."""
    sent = _check_fields(body, FIREWALL_FIELDS, refuse=_bad_request)
    if not FIREWALL_NAME.match(sent["name"]):
        raise _bad_request(
            "name must begin with a letter or digit, then letters, digits, '.' or '-'"
        )
    if "inbound_rules" not in sent and "outbound_rules" not in sent:
        raise _bad_request("a firewall needs inbound_rules or outbound_rules")
    _check_tags(sent.get("tags"), "", _bad_request)
    return {
        "name": sent["name"],
        "inbound_rules": _rules(sent.get("inbound_rules") or [], "inbound_rules", "sources"),
        "outbound_rules": _rules(
            sent.get("outbound_rules") or [], "outbound_rules", "destinations"
        ),
        "droplet_ids": list(sent.get("droplet_ids", [])),
        "tags": list(sent.get("tags", [])),
        "pending_changes": [],
    }


def _rules(rules: list[dict[str, Any]], name: str, target: str) -> list[dict[str, Any]]:
    checked = []
    for i, rule in enumerate(rules):
        where = f"{name}[{i}]."
        fields = {**RULE_FIELDS, target: _Field(OBJECT, required=True)}
        _check_fields(rule, fields, where=where, refuse=_bad_request)
        if rule["protocol"] not in ("tcp", "udp", "icmp"):
            raise _bad_request(f"{where}protocol must be tcp, udp or icmp")
        if rule.get("action", "allow") not in ("allow", "deny"):
            raise _bad_request(f"{where}action must be allow or deny")
        _check_fields(rule[target], TARGET_FIELDS, where=f"{where}{target}.", refuse=_bad_request)
        _check_tags(rule[target].get("tags"), f"{where}{target}.", _bad_request)
        checked.append({"action": "allow", **rule, "ports": _ports(rule, where)})
    return checked


def _ports(rule: Mapping[str, Any], where: str) -> str:
    """The rule's ports as DigitalOcean answers them: "0" for all ports ("all" or "0") and for
    icmp, which needs none (DigitalOcean's Terraform provider reads them back this way)."""
    if rule["protocol"] == "icmp":
        return "0"
    if "ports" not in rule:
        raise _bad_request(f"{where}ports is required of a {rule['protocol']} rule")
    if rule["ports"] == "all":
        return "0"
    ports = PORTS.match(rule["ports"])
    if ports is None or any(int(p) > 65535 for p in ports.groups() if p):
        raise _bad_request(f"{where}ports must be a port, a range like 8000-9000, 0 or all")
    return str(rule["ports"])


def _reserved_ip(ip: str, region: str, droplet: dict[str, Any] | None) -> dict[str, Any]:
    """A reserved IP in ReservedIPsOperations.get's shape; ``droplet`` is the live Droplet."""
    return {
        "ip": ip,
        "region": _region(region),
        "droplet": droplet,
        "locked": False,
        "project_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "project.do-standin")),
    }


def _handler_class(standin: DoStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back some 40 ms.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer_headers, payload = standin.handle(self.command, self.path, headers, raw)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            if status != 204:
                self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read ``standin.requests``."""

    return Handler


@contextmanager
def do_standin(
    *,
    token: str = TOKEN,
    address: str = "203.0.113.10",
    active_after: int = 1,
    droplet_limit: int = 10,
    database_server: DatabaseServer | None = None,
) -> Iterator[DoStandIn]:
    """A running stand-in on 127.0.0.1; stopped on exit. ``active_after``: the GETs showing a
    new Droplet "new" before it is "active" (``DoStandIn``); ``address``: the public IPv4 the
    next Droplet gets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    standin = DoStandIn(
        url=f"http://{host!s}:{port}",
        token=token,
        address=address,
        active_after=active_after,
        droplet_limit=droplet_limit,
        database_server=database_server,
    )
    server.RequestHandlerClass = _handler_class(standin)
    # The loop checks for shutdown every poll_interval: short, so that each test stops it fast.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="do-standin", daemon=True
    )
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
