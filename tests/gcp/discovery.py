"""Google's API discovery documents as the GCP stand-in's contract: every request shipyard sends
must route to a method of the API's document (its HTTP method and path) and carry only the
parameters and body fields the method declares, of the declared types and formats.

The documents are the ones ``google-api-python-client`` ships (``googleapiclient/
discovery_cache/documents/``, read as files: the library itself is never imported), so the
contract is Google's own description of each API at the revision that release carries.

What is checked:

- the route: ``rootUrl``'s path + ``servicePath`` + ``flatPath`` (each ``{var}`` one segment), or
  a media upload's path (``/upload/storage/v1/b/{bucket}/o``); where several match, the one with
  the fewest variables wins (``…/versions/{v}:access`` over ``…/versions/{v}``);
- query parameters: the required ones present, none unknown (the method's and the document's
  global ones: ``alt``, ``uploadType``…), booleans, integers and enums as declared;
- the body, against the method's request schema, recursively: no unknown field, every value of
  its declared type; ``int64`` as a JSON string of digits, ``google-duration`` as ``"30s"``,
  ``date-time`` as RFC 3339, enums as listed. Media upload bodies are bytes, not checked.

Discovery schemas do not say which fields are required (bar a few storage ones): the stand-in
checks those it relies on itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_DOCUMENTS = {
    "storage": "storage.v1.json",
    "cloudresourcemanager": "cloudresourcemanager.v3.json",
    "run": "run.v2.json",
    "sqladmin": "sqladmin.v1.json",
    "artifactregistry": "artifactregistry.v1.json",
    "secretmanager": "secretmanager.v1.json",
    "logging": "logging.v2.json",
}
_FORMATS = {
    "int64": r"-?\d+",
    "uint64": r"\d+",
    "int32": r"-?\d+",
    "uint32": r"\d+",
    "google-duration": r"-?\d+(\.\d{1,9})?s",
    "byte": r"[A-Za-z0-9+/_=-]*",
    "date-time": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
    "google-datetime": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
}


def documents_dir() -> Path:
    """Where google-api-python-client keeps its discovery documents (without importing it)."""
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("google-api-python-client is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "discovery_cache" / "documents"


@dataclass(frozen=True)
class Checked:
    """What a request routed to (``method``: its id, e.g. ``storage.objects.insert``) and what is
    wrong with it."""

    method: str
    problems: list[str]
    parameters: dict[str, str]  # the path's variables, by name


class Discovery:
    """Validates requests against one discovery document (see the module)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        root = "/" + urlsplit(document["rootUrl"]).path.strip("/")
        self.routes: list[tuple[str, re.Pattern[str], dict[str, Any], bool]] = []
        self._walk(document, root.rstrip("/"))
        self.routes.sort(key=lambda r: (r[1].pattern.count("(?P<"), -len(r[1].pattern)))

    def _walk(self, resource: dict[str, Any], root: str) -> None:
        for method in resource.get("methods", {}).values():
            paths = [
                (f"{root}/{self.doc['servicePath']}{method.get('flatPath', method['path'])}", False)
            ]
            for protocol in method.get("mediaUpload", {}).get("protocols", {}).values():
                if protocol["path"].startswith("/upload/"):
                    paths.append((f"{root}{protocol['path']}", True))
            for path, upload in paths:
                pattern = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
                pattern = re.sub(
                    r"{\+?([^}]+)}", lambda m: f"(?P<{_group(m.group(1))}>[^/]+)", pattern
                )
                self.routes.append((method["httpMethod"], re.compile(pattern), method, upload))
        for child in resource.get("resources", {}).values():
            self._walk(child, root)

    def check(self, verb: str, target: str, body: bytes) -> Checked:
        parts = urlsplit(target)
        routed = self._route(verb, parts.path)
        if routed is None:
            return Checked("", [f"no method of {self.doc['name']} for {verb} {parts.path}"], {})
        method, upload, variables = routed
        query = parse_qs(parts.query, keep_blank_values=True)
        problems = self._query_problems(method, query)
        reference = method.get("request", {}).get("$ref")
        if upload:
            if query.get("uploadType") != ["media"]:
                problems.append("a simple upload needs uploadType=media")
        elif reference and body.strip():
            try:
                problems += self._check(json.loads(body), {"$ref": reference}, reference)
            except ValueError:
                problems.append("the body is not JSON")
        elif body.strip() and not reference:
            problems.append(f"a body sent to {method['id']}, which takes none")
        return Checked(method["id"], problems, variables)

    def _route(self, verb: str, path: str) -> tuple[dict[str, Any], bool, dict[str, str]] | None:
        """The method ``verb path`` calls, whether it is a media upload, and the path's
        variables."""
        for method_verb, pattern, method, upload in self.routes:
            matched = pattern.fullmatch(path)
            if method_verb == verb and matched:
                return method, upload, matched.groupdict()
        return None

    def _query_problems(self, method: dict[str, Any], query: dict[str, list[str]]) -> list[str]:
        problems: list[str] = []
        declared = method.get("parameters", {})
        known = {**self.doc.get("parameters", {}), **declared}
        for name, spec in declared.items():
            if spec.get("required") and spec["location"] == "query" and name not in query:
                problems.append(f"missing required query parameter {name}")
        for name, values in query.items():
            spec = known.get(name)
            if spec is None or spec.get("location") == "path":
                problems.append(f"unknown query parameter {name}")
                continue
            for value in values:
                problems += [f"{name}: {e}" for e in _scalar(spec, value, query=True)]
        return problems

    def check_value(self, value: Any, schema: str) -> list[str]:
        """``value`` against schema ``schema`` (an answer the stand-in gives, say)."""
        return self._check(value, {"$ref": schema}, schema)

    def _check(self, value: Any, spec: dict[str, Any], where: str) -> list[str]:
        if "$ref" in spec:
            spec = self.doc["schemas"][spec["$ref"]]
        kind = spec.get("type")
        if kind == "object" and "properties" in spec:
            shape, items = (
                dict,
                [(f"{where}.{k}", v, spec["properties"].get(k)) for k, v in _items(value)],
            )
        elif kind == "object" and "additionalProperties" in spec:
            shape, items = (
                dict,
                [(f"{where}[{k}]", v, spec["additionalProperties"]) for k, v in _items(value)],
            )
        elif kind == "array":
            shape = list
            items = (
                [(f"{where}[{i}]", v, spec["items"]) for i, v in enumerate(value)]
                if isinstance(value, list)
                else []
            )
        else:
            return [f"{where}: {e}" for e in _scalar(spec, value)]
        if not isinstance(value, shape):
            return [
                f"{where}: {'an array' if shape is list else 'an object'} expected, not {value!r}"
            ]
        problems: list[str] = []
        for at, item, item_spec in items:
            problems += (
                [f"{at}: unknown field"] if item_spec is None else self._check(item, item_spec, at)
            )
        return problems


def _items(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def _group(name: str) -> str:
    """A path variable's name as a regex group's."""
    return re.sub(r"\W", "_", name)


def _scalar(spec: dict[str, Any], value: Any, *, query: bool = False) -> list[str]:
    kind, form = spec.get("type"), spec.get("format")
    if query:  # every query value arrives as a string
        ok = {
            "boolean": value in ("true", "false"),
            "integer": re.fullmatch(r"-?\d+", value) is not None,
        }.get(kind, True)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    else:  # "any"
        ok = True
    if ok and kind == "string" and form in _FORMATS:
        ok = re.fullmatch(_FORMATS[form], value) is not None
    problems = [] if ok else [f"{kind}{'/' + form if form else ''} expected, not {value!r}"]
    if ok and "enum" in spec and value not in spec["enum"]:
        problems.append(f"{value!r} is not one of {spec['enum']}")
    return problems


@cache
def discovery(api: str) -> Discovery:
    """The validator of ``api`` (``storage``, ``run``…), its document read once."""
    return Discovery(json.loads((documents_dir() / _DOCUMENTS[api]).read_text()))
