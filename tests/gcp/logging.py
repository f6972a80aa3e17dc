"""The GCP stand-in's Cloud Logging API v2 (``tests.gcp.standin``): log entries a test adds, and
the search shipyard makes of them (``providers.gcp._logs``).

=========================================  ==================================================
Method (discovery id)                      What the stand-in does
=========================================  ==================================================
``logging.entries.list``                   ``resourceNames`` required, the project only (else
                                           403); ``orderBy`` ``timestamp asc`` (default) or
                                           ``timestamp desc``; ``pageSize`` (default 50, at
                                           most 1000; negative: 400); ``pageToken`` only with
                                           the request it came from (else 400); ``filter``:
                                           the subset of the logging query language shipyard
                                           writes, parsed, anything else 400
                                           ``INVALID_ARGUMENT`` (so a typo fails a test);
                                           ``empty_pages``: the next searches' pages come back
                                           empty with a token, as a search that ran out of
                                           time does
=========================================  ==================================================

The filter subset: comparisons joined by ``AND``; a comparison is a field, an operator
(``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) and a double-quoted string, or for ``=`` a
parenthesised list of strings joined by ``OR``. The fields: ``resource.type``,
``resource.labels.<key>``, ``labels.<key>`` (or ``labels."<key>"``), ``logName``,
``severity``, ``timestamp`` (compared as instants; the value must be RFC 3339).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.gcp.standin import PROJECT, ApiError, Call, GcpStandIn, Handler, Reply, rpc_error

_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|>=|<=|=|<|>)|(?P<punct>[().])'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT",
               "EMERGENCY")  # fmt: skip
Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class _Search:
    """What a page token belongs to: the request's filter and order, and where it resumes."""

    key: str
    offset: int


class LoggingModel:
    """The project's log entries, and what a test scripts of its searches."""

    apis = ("logging",)

    def __init__(self, standin: GcpStandIn) -> None:
        self.standin = standin
        self.entries: list[dict[str, Any]] = []
        self.searches: list[dict[str, Any]] = []  # each entries.list body, as received
        self.empty_pages = 0
        self._ids = itertools.count(1)

    def routes(self) -> dict[str, Handler]:
        return {"logging.entries.list": self._list}

    # --- what tests script ---
    def add_entry(
        self,
        *,
        resource_type: str,
        resource_labels: dict[str, str],
        timestamp: str,
        text: str | None = None,
        json_payload: dict[str, Any] | None = None,
        severity: str = "DEFAULT",
        labels: dict[str, str] | None = None,
        log: str = "run.googleapis.com/stdout",
    ) -> dict[str, Any]:
        """An entry, as Cloud Run's agent writes one (``timestamp`` RFC 3339)."""
        entry: dict[str, Any] = {
            "logName": f"projects/{PROJECT}/logs/{log.replace('/', '%2F')}",
            "resource": {"type": resource_type,
                         "labels": {"project_id": PROJECT, **resource_labels}},
            "timestamp": timestamp, "receiveTimestamp": timestamp, "severity": severity,
            "insertId": f"{next(self._ids):012x}", "labels": labels or {},
        }  # fmt: skip
        if text is not None:
            entry["textPayload"] = text
        if json_payload is not None:
            entry["jsonPayload"] = json_payload
        self.entries.append(entry)
        return entry

    # --- logging.entries.list ---
    def _list(self, call: Call) -> Reply:
        body = call.json()
        names = body.get("resourceNames") or []
        if not names:
            raise _invalid("resourceNames: Required.")
        foreign = [n for n in names if n != f"projects/{PROJECT}"]
        if foreign:
            raise ApiError(rpc_error(403, "PERMISSION_DENIED",
                                     f"The caller does not have permission on {foreign[0]}"))  # fmt: skip
        order = body.get("orderBy", "timestamp asc") or "timestamp asc"
        if order not in ("timestamp asc", "timestamp desc"):
            raise _invalid(f"Invalid orderBy {order!r}: 'timestamp asc' or 'timestamp desc'")
        size = int(body.get("pageSize", 50))
        if size < 0:
            raise _invalid("pageSize must not be negative")
        size = min(size or 50, 1000)
        self.searches.append(body)
        matches = _parse(str(body.get("filter") or ""))
        key = hashlib.sha256(json.dumps([names, body.get("filter"), order]).encode()).hexdigest()
        offset = _resumed(body.get("pageToken"), key)
        if self.empty_pages > 0:
            self.empty_pages -= 1
            return Reply(200, {"nextPageToken": _token(key, offset)})
        found = sorted(
            (e for e in self.entries if matches(e)),
            key=lambda e: (_instant(e["timestamp"]), e["insertId"]),
            reverse=order == "timestamp desc",
        )
        page = found[offset : offset + size]
        answer: dict[str, Any] = {"entries": page} if page else {}
        if offset + size < len(found):
            answer["nextPageToken"] = _token(key, offset + size)
        return Reply(200, answer)


def _token(key: str, offset: int) -> str:
    return f"{key[:16]}-{offset}"


def _resumed(token: Any, key: str) -> int:
    if not token:
        return 0
    prefix, _, offset = str(token).partition("-")
    if prefix != key[:16] or not offset.isdigit():
        raise _invalid("The page token does not belong to this request's parameters.")
    return int(offset)


def _invalid(message: str) -> ApiError:
    return ApiError(rpc_error(400, "INVALID_ARGUMENT", message))


def _instant(stamp: str) -> datetime:
    """An RFC 3339 timestamp (nanoseconds cut to microseconds); 400 when it is not one."""
    matched = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", stamp
    )
    if matched is None:
        raise _invalid(f"Unparseable filter: invalid timestamp {stamp!r}")
    whole, fraction, zone = matched.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    parsed = datetime.fromisoformat(f"{whole}.{micros}{zone.replace('Z', '+00:00')}")
    return parsed.astimezone(UTC)


# --- the filter subset --------------------------------------------------------------------------
def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        matched = _TOKEN.match(text, position)
        if matched is None:
            raise _invalid(f"Unparseable filter: {text!r} at {position}")
        kind = str(matched.lastgroup)
        tokens.append((kind, matched.group(kind)))
        position = matched.end()
    return tokens


def _parse(text: str) -> Predicate:
    """A predicate of the entries ``text`` matches (see the module); 400 for what it cannot
    read."""
    tokens = _tokens(text)
    if not tokens:
        return lambda entry: True
    clauses: list[Predicate] = []
    position = 0
    while True:
        clause, position = _comparison(tokens, position, text)
        clauses.append(clause)
        if position == len(tokens):
            return lambda entry: all(clause(entry) for clause in clauses)
        if tokens[position] != ("word", "AND"):
            raise _invalid(f"Unparseable filter: {text!r} (AND expected)")
        position += 1


def _comparison(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[Predicate, int]:
    field, position = _field(tokens, position, text)
    if position >= len(tokens) or tokens[position][0] != "op":
        raise _invalid(f"Unparseable filter: {text!r} (an operator after {'.'.join(field)})")
    operator = tokens[position][1]
    values, position = _values(tokens, position + 1, text)
    if len(values) > 1 and operator != "=":
        raise _invalid(f"Unparseable filter: {text!r} (a list takes =)")
    read = _reader(field, text)
    compare = _OPERATORS[operator]
    if field == ("timestamp",):
        instants = [_instant(v) for v in values]
        return (lambda e: any(compare(_instant(e["timestamp"]), i) for i in instants)), position
    if field == ("severity",):
        ranks = [_severity(v, text) for v in values]
        return (lambda e: any(compare(_severity(read(e), text), r) for r in ranks)), position
    return (lambda e: any(compare(read(e), v) for v in values)), position


def _field(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[tuple[str, ...], int]:
    parts: list[str] = []
    while position < len(tokens):
        kind, value = tokens[position]
        if kind == "word" or (kind == "string" and parts):
            parts.append(json.loads(value) if kind == "string" else value)
        else:
            raise _invalid(f"Unparseable filter: {text!r} (a field expected)")
        position += 1
        if position < len(tokens) and tokens[position] == ("punct", "."):
            position += 1
            continue
        return tuple(parts), position
    raise _invalid(f"Unparseable filter: {text!r} (it ends in a field)")


def _values(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[list[str], int]:
    if position < len(tokens) and tokens[position][0] == "string":
        return [json.loads(tokens[position][1])], position + 1
    if position >= len(tokens) or tokens[position] != ("punct", "("):
        raise _invalid(f"Unparseable filter: {text!r} (a quoted value expected)")
    values: list[str] = []
    position += 1
    while position < len(tokens) and tokens[position][0] == "string":
        values.append(json.loads(tokens[position][1]))
        position += 1
        if position < len(tokens) and tokens[position] == ("word", "OR"):
            position += 1
            continue
        if position < len(tokens) and tokens[position] == ("punct", ")"):
            return values, position + 1
    raise _invalid(f"Unparseable filter: {text!r} (a list of quoted values joined by OR)")


def _reader(field: tuple[str, ...], text: str) -> Callable[[dict[str, Any]], Any]:
    """How to read ``field`` of an entry; 400 for a field the stand-in does not know."""
    if field in (("resource", "type"), ("logName",), ("severity",), ("timestamp",)):
        return lambda e: _dig(e, field)
    if len(field) == 3 and field[:2] == ("resource", "labels"):
        return lambda e: (e["resource"].get("labels") or {}).get(field[2])
    if len(field) == 2 and field[0] == "labels":
        return lambda e: (e.get("labels") or {}).get(field[1])
    raise _invalid(f"Unparseable filter: {text!r} (the stand-in does not know the field "
                   f"{'.'.join(field)})")  # fmt: skip


def _dig(entry: dict[str, Any], field: tuple[str, ...]) -> Any:
    value: Any = entry
    for part in field:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _severity(value: Any, text: str) -> int:
    if value not in _SEVERITIES:
        raise _invalid(f"Unparseable filter: {text!r} (no severity {value!r})")
    return _SEVERITIES.index(value)
