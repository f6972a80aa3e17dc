"""Loading ``shipyard.yml`` for one environment: YAML with positions, overrides, env file, ``${VAR}``.

Every problem is collected and reported at once as ``file:line:col key.path: message``. A value
that ``${VAR}`` filled in (from the environment or the env file) is never quoted in a message: the
message names the variable instead.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml.comments import CommentedMap

from shipyard.config._extensions import (
    known_extension,
    missing_from_image,
    nearest_extension,
)
from shipyard.config._models import (
    AppSection,
    AwsSection,
    ConfigFile,
    DatabaseSection,
    DeploySection,
    DigitalOceanSection,
    DockerfileBuild,
    EnvironmentSection,
    GcpSection,
    GoBuild,
    HealthSection,
    HooksSection,
    InvalidValue,
    MonitoringSection,
    NotificationsSection,
    ProxySection,
    SSHSection,
    parse_subnet,
)
from shipyard.config._yaml import Path_, Positions, dotted, key_positions, read_yaml
from shipyard.errors import ConfigError, Issue
from shipyard.secrets import (
    EnvFileBackend,
    Masker,
    decode_webhook_secret,
    is_secret_key,
    looks_generated,
    read_env_file,
)

_OVERRIDE_DEPTH = 3  # environments.<name>.<section>
_PRODUCTION_TASKS = 2  # an environment named production on AWS: two availability zones
_SECTIONS = (
    "app",
    "build",
    "database",
    "proxy",
    "health",
    "deploy",
    "notifications",
    "hooks",
    "monitoring",
    "providers",
)
# ``${NAME}``, ``${NAME:-default}``, ``$$``; last, any other ``${`` (refused when never closed).
_VAR = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\$|(?P<open>\$\{)"
)
_NAME_START = re.compile(r"[A-Za-z0-9_]*")


@dataclass(frozen=True)
class Environment:
    """The selected environment: its name, target, provider and env file."""

    name: str
    target: str
    provider: str
    env_file: Path | None
    targets: tuple[str, ...] = ()  # further nodes, after `target`

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node of the environment, ``target`` first."""
        return (self.target, *(t for t in self.targets if t != self.target))


@dataclass(frozen=True)
class Config:
    """A validated configuration, resolved for one environment. Immutable."""

    path: Path
    environment: Environment
    app: AppSection
    build: GoBuild | DockerfileBuild
    database: DatabaseSection | None
    proxy: ProxySection
    health: HealthSection
    deploy: DeploySection
    providers: Mapping[str, Mapping[str, Any]]
    secrets: EnvFileBackend
    masker: Masker = field(compare=False)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    hooks: HooksSection = field(default_factory=HooksSection)
    monitoring: MonitoringSection = field(default_factory=MonitoringSection)
    # What is valid but probably wrong (an unknown extension, a secret written in app.env):
    # `check` prints them, a deploy emits them as warning events. They never fail anything.
    warnings: tuple[Issue, ...] = ()

    @property
    def root(self) -> Path:
        """Directory of shipyard.yml; relative paths in the file are relative to it."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()


def _plain(node: Any) -> Any:
    """ruamel containers → plain dicts and lists (keys as strings)."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _merge(base: Any, override: Any) -> Any:
    """Deep-merge ``override`` onto ``base``: mappings merge, everything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


class _Locator:
    """Turns a key path into ``file:line:col``: the environment's override first, then the base."""

    def __init__(self, file: str, positions: Positions, environment: str | None):
        self.file = file
        self.positions = positions
        self.environment = environment

    def issue(self, path: Path_, message: str) -> Issue:
        candidates: list[Path_] = []
        if self.environment is not None and path and path[0] in _SECTIONS:
            candidates.append(("environments", self.environment, *path))
        candidates.append(path)
        for candidate in candidates:
            for cut in range(len(candidate), 0, -1):
                position = self.positions.get(candidate[:cut])
                # An override is only "the place" if the key itself (or a part below the
                # environment's section) is written there; else fall back to the base file.
                if position is not None and (candidate is path or cut > _OVERRIDE_DEPTH):
                    line, col = position
                    return Issue(self.file, line, col, dotted(candidate), message)
        return Issue(self.file, None, None, dotted(path), message)


@dataclass(frozen=True)
class _Interpolated:
    """A string of the file that ``${VAR}`` references filled in: their names, and the result."""

    names: tuple[str, ...]
    value: str

    @property
    def references(self) -> str:
        return _references(self.names)


def _references(names: tuple[str, ...]) -> str:
    """``${A}``, ``${A} and ${B}``, ``${A}, ${B} and ${C}``."""
    refs = [f"${{{name}}}" for name in names]
    return refs[0] if len(refs) == 1 else f"{', '.join(refs[:-1])} and {refs[-1]}"


Interpolations = Mapping[Path_, _Interpolated]

# pydantic errors whose message is made from the schema alone, never from the input.
_INPUT_FREE = frozenset(
    {
        "bool_parsing",
        "bool_type",
        "dict_type",
        "enum",
        "finite_number",
        "float_parsing",
        "float_type",
        "greater_than",
        "greater_than_equal",
        "int_from_float",
        "int_parsing",
        "int_parsing_size",
        "int_type",
        "less_than",
        "less_than_equal",
        "list_type",
        "literal_error",
        "model_attributes_type",
        "model_type",
        "multiple_of",
        "none_required",
        "string_pattern_mismatch",
        "string_too_long",
        "string_too_short",
        "string_type",
        "too_long",
        "too_short",
    }
)
# Errors the loader words itself, from keys and the schema alone.
_WORDED_HERE = frozenset({"extra_forbidden", "missing", "union_tag_invalid", "union_tag_not_found"})


def _pydantic_issues(
    exc: ValidationError,
    locator: _Locator,
    prefix: Path_ = (),
    *,
    interpolated: Interpolations | None = None,
    secrets_file: str = "the env file",
) -> list[Issue]:
    issues = []
    below = _by_prefix(interpolated) if interpolated else {}
    for error in exc.errors(include_url=False):
        loc = _drop_union_tags(tuple(error["loc"]))
        message = error["msg"]
        if error["type"] == "value_error":
            # A validator's own error: its message, not pydantic's wording around it.
            message = str(error.get("ctx", {}).get("error", message))
        elif error["type"] == "extra_forbidden":
            message = _unknown_key((*prefix, *loc), secrets_file)
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "union_tag_invalid":
            loc = (*loc, "kind")
            message = f"kind must be one of {error.get('ctx', {}).get('expected_tags', '?')}"
        elif error["type"] == "union_tag_not_found":
            message = "missing key 'kind'"
        path = (*prefix, *loc)
        if interpolated and error["type"] not in _WORDED_HERE:
            message = _without_values(error, path, message, interpolated, below.get(path, []))
        issues.append(locator.issue(path, message))
    return issues


# The keys allowed in each mapping where a misspelt name is likely: the top level, a section,
# an environment. Others are only called unknown.
_SECTION_MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    "app": (AppSection,),
    "build": (GoBuild, DockerfileBuild),
    "database": (DatabaseSection,),
    "proxy": (ProxySection,),
    "health": (HealthSection,),
    "deploy": (DeploySection,),
    "notifications": (NotificationsSection,),
    "hooks": (HooksSection,),
    "monitoring": (MonitoringSection,),
}


def _allowed_keys(parent: Path_) -> list[str]:
    if not parent:
        models: tuple[type[BaseModel], ...] = (ConfigFile,)
    elif len(parent) == 2 and parent[0] == "environments":  # noqa: PLR2004 — environments.<name>
        models = (EnvironmentSection,)
    elif len(parent) == 1:
        models = _SECTION_MODELS.get(str(parent[0]), ())
    else:
        models = ()
    return sorted({name for model in models for name in model.model_fields})


def _unknown_key(path: Path_, secrets_file: str) -> str:
    """``unknown key``, with the allowed key it most likely misspells; for a key named like a
    secret, where secrets go instead."""
    key = str(path[-1])
    if path[0] == "environments" and len(path) > 2:  # noqa: PLR2004 — in environments.<name>
        secrets_file = f".env.{path[1]}"
    if is_secret_key(key):
        # Starts with the quoted key: "KEY: word" would read as an assignment to the masker.
        return f"{key!r} is an unknown key: secrets belong in the env file {secrets_file}, not in shipyard.yml; {_where_secret_goes(path, secrets_file)}"
    close = difflib.get_close_matches(key, _allowed_keys(path[:-1]), n=1, cutoff=0.75)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _where_secret_goes(path: Path_, secrets_file: str) -> str:
    """How a secret written at ``path`` reaches shipyard from the env file: the key naming it."""
    key = str(path[-1])
    parent = tuple(part for part in path[:-1] if not isinstance(part, int))
    if parent[-1:] == ("database",) or key.upper() == "POSTGRES_PASSWORD":
        return "put the password there under the name POSTGRES_PASSWORD (the key database.password_env names)"
    if parent[-2:] == ("deploy", "registry"):
        return "put the password there and name its key in deploy.registry.password_env"
    if parent[-2:] == ("deploy", "github") or key.upper() == "GITHUB_TOKEN":
        return "put the token there under the name GITHUB_TOKEN (the key deploy.github.token_env names)"
    if parent[-2:] == ("notifications", "sinks"):
        return "put it there and name its key in secret_env (webhook) or token_env (ntfy)"
    name = key.upper() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else "NAME"
    return f"put it there under the name {name} and list it in app.required_env (the app receives every key of {secrets_file})"


def _by_prefix(interpolated: Interpolations) -> dict[Path_, list[_Interpolated]]:
    """Every key path → the filled-in strings at or below it (one pass, not one per error)."""
    below: dict[Path_, list[_Interpolated]] = {}
    for at, source in interpolated.items():
        for cut in range(len(at) + 1):
            below.setdefault(at[:cut], []).append(source)
    return below


def _without_values(
    error: ErrorDetails,
    path: Path_,
    message: str,
    interpolated: Interpolations,
    involved: list[_Interpolated],
) -> str:
    """``message``, or a wording of it that quotes no value ``${VAR}`` filled in at or below
    ``path`` (``involved``: those values)."""
    if not involved:
        return message
    refused = error.get("ctx", {}).get("error")
    if isinstance(refused, InvalidValue):
        for source in involved:
            if source.value == refused.value:
                return f"value from {source.references} {refused.reason}"
    if path in interpolated and error["type"] in _INPUT_FREE:
        source = interpolated[path]
        subject, _, rest = message.partition(" ")
        if subject in {"Input", "String"} and rest.startswith("should "):
            return f"value from {source.references} {rest}"
        return f"value from {source.references}: {message}"
    if not any(_quotes(message, source.value) for source in involved):
        return message
    names = tuple(dict.fromkeys(name for source in involved for name in source.names))
    return f"invalid value from {_references(names)}"


def _quotes(message: str, value: str) -> bool:
    """Whether ``message`` contains ``value``, as is or as ``repr`` writes it."""
    return bool(value) and (value in message or repr(value)[1:-1] in message)


_TAGS = {"go", "dockerfile", "http", "tcp", "postgres", "command", "webhook", "ntfy"}


def _drop_union_tags(loc: Path_) -> Path_:
    """pydantic puts the discriminator value into error locations; the file has no such key."""
    out: list[str | int] = []
    for index, part in enumerate(loc):
        previous = loc[index - 1] if index else None
        if (
            isinstance(part, str)
            and part in _TAGS
            and (previous in {"build"} or isinstance(previous, int))
        ):
            continue
        out.append(part)
    return tuple(out)


PROXY_CIDR = "SHIPYARD_PROXY_CIDR"

# Variables shipyard itself provides, when they are not available: why.
_UNSET = {
    PROXY_CIDR: f"${{{PROXY_CIDR}}} is the proxy's network (proxy.subnet) and proxy.subnet is not "
    "set, or not valid: pin the environment network's subnet, e.g. proxy.subnet: 10.201.7.0/24",
}


def _provided(
    merged: Mapping[str, Any], values: Mapping[str, str], locator: _Locator
) -> dict[str, str]:
    """What shipyard provides for ``${VAR}`` beside the environment and the env file:
    ``SHIPYARD_PROXY_CIDR``, the pinned ``proxy.subnet`` (itself interpolated first), never a
    value of the same name from the environment."""
    proxy = merged.get("proxy")
    subnet = proxy.get("subnet") if isinstance(proxy, dict) else None
    if not isinstance(subnet, str):
        return {}
    filled = _interpolate(subnet, ("proxy", "subnet"), values, locator, [], {})
    try:
        return {PROXY_CIDR: str(parse_subnet(filled))}
    except ValueError:  # reported where proxy.subnet is validated
        return {}


def _interpolate(
    node: Any,
    path: Path_,
    values: Mapping[str, str],
    locator: _Locator,
    issues: list[Issue],
    interpolated: dict[Path_, _Interpolated],
) -> Any:
    """Fill in ``${VAR}`` (and ``${VAR:-default}``, ``$$``); record in ``interpolated`` the
    strings that received a value, so that no message quotes them."""
    if isinstance(node, dict):
        return {
            k: _interpolate(v, (*path, k), values, locator, issues, interpolated)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            _interpolate(v, (*path, i), values, locator, issues, interpolated)
            for i, v in enumerate(node)
        ]
    if not isinstance(node, str) or "$" not in node:
        return node
    filled: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("open") is not None:
            if "}" not in node[match.end() :]:
                start = _NAME_START.match(node, match.end())
                written = "${" + (start.group(0) if start else "")
                issues.append(
                    locator.issue(
                        path,
                        f"{written} is not closed: write ${{NAME}} or ${{NAME:-default}} ($$ for a literal $)",
                    )
                )
            return match.group(0)
        name = match.group("name")
        if name in values:
            filled.append(name)
            return values[name]
        if match.group("default") is not None:
            return match.group("default")
        issues.append(
            locator.issue(
                path, _UNSET.get(name, f"${{{name}}} is not set (environment or env file)")
            )
        )
        return ""

    result = _VAR.sub(replace, node)
    if filled:
        interpolated[path] = _Interpolated(tuple(dict.fromkeys(filled)), result)
    return result


def load_config(  # noqa: C901, PLR0912, PLR0915 — one linear pass that collects every issue
    path: Path, environment: str, *, process_env: Mapping[str, str] | None = None
) -> Config:
    """Read, merge, interpolate and validate ``shipyard.yml`` for ``environment``.

    Raises ``ConfigError`` with every problem found. Touches no host.
    """
    process_env = os.environ if process_env is None else process_env
    path = path.resolve()
    file = str(path)
    if not path.is_file():
        raise ConfigError([Issue(file, None, None, "", "file not found")])
    document = read_yaml(path)
    if not isinstance(document, CommentedMap):
        raise ConfigError(
            [Issue(file, 1, 1, "", "expected a mapping of sections (app, build, environments, …)")]
        )
    positions = key_positions(document)
    raw: dict[str, Any] = _plain(document)
    top = _Locator(file, positions, None)

    environments = raw.get("environments")
    if not isinstance(environments, dict) or environment not in environments:
        raise ConfigError(_without_environment(raw, top, environment))

    issues: list[Issue] = []
    # The environments section as written, every environment included (unknown keys are errors
    # in all of them); the sections themselves are validated below, merged for this environment.
    try:
        ConfigFile.model_validate(raw)
    except ValidationError as exc:
        issues.extend(
            i
            for i in _pydantic_issues(exc, top, secrets_file=f".env.{environment}")
            if i.key_path.startswith("environments")
        )

    env_raw = environments[environment] if isinstance(environments[environment], dict) else {}
    env_file_value = env_raw.get("env_file", f".env.{environment}")
    secrets_file = env_file_value if isinstance(env_file_value, str) else "the env file"
    env_file: Path | None = None
    file_values: dict[str, str] = {}
    if env_file_value is not None and isinstance(env_file_value, str):
        env_file = (path.parent / env_file_value).resolve()
        if env_file.is_file():
            file_values = read_env_file(env_file)
        else:
            issues.append(
                top.issue(
                    ("environments", environment, "env_file"),
                    f"env file {env_file} not found (create it; env files are never shared between environments)",
                )
            )

    merged: dict[str, Any] = {k: v for k, v in raw.items() if k != "environments"}
    for section in _SECTIONS:
        override = env_raw.get(section)
        if isinstance(override, dict):
            merged[section] = _merge(merged.get(section) or {}, override)

    values = {**file_values, **process_env, "SHIPYARD_ENVIRONMENT": environment}
    values.pop(PROXY_CIDR, None)
    env_locator = _Locator(file, positions, environment)
    values.update(_provided(merged, values, env_locator))
    interpolated: dict[Path_, _Interpolated] = {}
    written = merged
    merged = _interpolate(merged, (), values, env_locator, issues, interpolated)

    sections: dict[str, Any] = {}
    try:
        validated = ConfigFile.model_validate(
            {**merged, "environments": {environment: {"target": "local"}}}
        )
        sections = {name: getattr(validated, name) for name in _SECTIONS}
    except ValidationError as exc:  # an issue found twice is reported once, by _dedupe
        issues.extend(
            _pydantic_issues(exc, env_locator, interpolated=interpolated, secrets_file=secrets_file)
        )
        sections = _valid_sections(merged)  # the env file is checked against these all the same

    issues.extend(
        _required_env_issues(
            sections,
            merged,
            env_locator,
            file_values,
            env_file,
            interpolated,
            on_aws=_rds_on_aws(env_raw, merged),
            cloud=_cloud_database(env_raw),
            on_host=not str(env_raw.get("target", "")).startswith(("aws://", "gcp://")),
        )
    )
    if "notifications" in sections:
        issues.extend(
            _notification_issues(sections["notifications"], env_locator, file_values, interpolated)
        )
    issues.extend(_transport_issues(sections, env_locator, file_values, interpolated))
    issues.extend(_provider_issues(env_raw, sections, env_locator, environment, interpolated))
    if not str(env_raw.get("target", "")).startswith(("aws://", "gcp://")):  # not run there
        issues.extend(_monitoring_issues(sections, env_locator, file_values, interpolated))
    issues.extend(_image_extension_issues(sections.get("database"), env_locator))
    if "proxy" in sections:
        issues.extend(_tls_file_issues(sections["proxy"], env_locator, path.parent))
    warnings = [
        *_secrets_in_app_env(written, env_locator, secrets_file),
        *_extension_warnings(sections.get("database"), env_locator, interpolated),
        *_unused_on_aws(env_raw, sections, env_locator),
    ]
    if issues:
        raise ConfigError(_dedupe(issues), warnings=warnings)

    env_section = EnvironmentSection.model_validate(env_raw)
    masker = Masker()
    masker.add_env(file_values, all_values=False)
    database, deploy = sections["database"], sections["deploy"]
    github, registry = deploy.github, deploy.registry
    named_secrets = [
        *sections["app"].secret_env,
        *_notification_secret_keys(sections["notifications"]),
        sections["monitoring"].grafana.admin_password_env,
        sections["monitoring"].publish.password_env,
        *([database.password_env] if database is not None else []),
        *([github.token_env] if github is not None else []),
        *([registry.password_env] if registry is not None and registry.password_env else []),
    ]
    for key in named_secrets:
        if key in file_values:
            masker.add(file_values[key])
    for value in file_values.values():
        if value.startswith(_NOTIFICATION_SECRET_PREFIXES):  # whatever the key is named
            masker.add(value)
    return Config(
        path=path,
        environment=Environment(
            name=environment,
            target=env_section.target,
            targets=tuple(env_section.targets),
            provider=env_section.provider or _provider_of(env_section.target),
            env_file=env_file,
        ),
        secrets=EnvFileBackend(file_values),
        masker=masker,
        warnings=tuple(warnings),
        **sections,
    )


# A URL is a secret through its password only (as the masker sees it): scheme://user:password@
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:[^@/\s]+@")


def _secret_written(key: str, value: object) -> str | None:
    """Why ``app.env.<key>`` as written in shipyard.yml looks like a secret, by the masker's rules
    for env-file values: a key named like a secret, a value of 16 or more characters without
    spaces, a password in a URL. ``None`` when it does not, or when ``${VAR}`` references bring
    the value in (from the env file, where secrets belong). Worded from the quoted key, which
    the masker does not read as ``KEY: value``."""
    if not isinstance(value, str):
        return None
    references = [m for m in _VAR.finditer(value) if m.group("name")]
    literal = _VAR.sub(lambda m: "" if m.group("name") else m.group(0), value)
    if is_secret_key(key) and not references and literal.strip():
        return f"{key!r} is named like a secret"
    if _URL_PASSWORD.match(literal):
        return f"{key!r} holds a password in a URL"
    if not _URL.match(literal) and looks_generated(literal):
        return f"{key!r} has a value that looks like a generated secret (16 or more characters without spaces)"
    return None


def _secrets_in_app_env(
    written: Mapping[str, Any], locator: _Locator, env_file: str
) -> list[Issue]:
    """A secret written into ``app.env`` (in the file, or in an environment's override)."""
    app = written.get("app")
    env = app.get("env") if isinstance(app, dict) else None
    if not isinstance(env, dict):
        return []
    warnings = []
    for key, value in env.items():
        why = _secret_written(str(key), value)
        if why is not None:
            warnings.append(
                locator.issue(
                    ("app", "env", str(key)),
                    f"{why}: move it to the env file {env_file}, which the app receives whole "
                    "(shipyard.yml is committed, and only the env file's values are masked)",
                )
            )
    return warnings


def _tls_file_issues(proxy: ProxySection, locator: _Locator, root: Path) -> list[Issue]:
    """The PEM files ``proxy`` names (relative to ``root``) that are missing or hold no
    certificate (a key file: no private key). A key's content is never quoted."""
    wanted: list[tuple[Path_, str, str]] = []
    if proxy.acme_ca_root is not None:
        wanted.append((("proxy", "acme_ca_root"), proxy.acme_ca_root, "CERTIFICATE"))
    wanted += [
        (("proxy", "trusted_roots", i), f, "CERTIFICATE") for i, f in enumerate(proxy.trusted_roots)
    ]
    for i, pair in enumerate(proxy.certificates):
        wanted.append((("proxy", "certificates", i, "cert"), pair.cert, "CERTIFICATE"))
        wanted.append((("proxy", "certificates", i, "key"), pair.key, "PRIVATE KEY"))
    issues = []
    for key_path, name, kind in wanted:
        file = (root / name).resolve()
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            issues.append(locator.issue(key_path, f"{file} cannot be read: {exc.strerror}"))
            continue
        if not re.search(rf"-----BEGIN [A-Z ]*{kind}-----", text):
            issues.append(locator.issue(key_path, f"{file} holds no PEM {kind.lower()}"))
    return issues


def _image_extension_issues(database: DatabaseSection | None, locator: _Locator) -> list[Issue]:
    """An extension the database image is known not to ship: CREATE EXTENSION would fail after
    the database started, so it fails here."""
    if database is None:
        return []
    found = missing_from_image(database.image, database.extensions)
    if found is None:
        return []
    ships, missing = found
    issues = []
    for name in missing:
        index = database.extensions.index(name)
        issues.append(
            locator.issue(
                ("database", "extensions", index),
                f"{name!r} is not in the {database.image} image (it ships {ships} and "
                "PostgreSQL's own modules): set database.image to an image that ships "
                f'{"pgvector" if name == "vector" else name} too (README: "A database image '
                f'with PostGIS and pgvector"), or remove {name!r}',
            )
        )
    return issues


def _unused_on_aws(
    env_raw: Mapping[str, Any], sections: dict[str, Any], locator: _Locator
) -> list[Issue]:
    """Settings of a host that an aws:// or gcp:// environment does not use: said, not refused,
    so one file serves every target."""
    target = env_raw.get("target")
    monitoring = sections.get("monitoring")
    if not isinstance(target, str) or not target.startswith(("aws://", "gcp://")):
        return []
    if monitoring is None or not monitoring.enabled:
        return []
    where = (
        "on AWS the load balancer's and ECS's metrics are in CloudWatch"
        if target.startswith("aws://")
        else "on Google Cloud, Cloud Run's metrics are in Cloud Monitoring"
    )
    return [
        locator.issue(
            ("monitoring", "enabled"),
            f"not used on {target}: the Prometheus stack runs beside the app on a host; {where}",
        )
    ]


def _extension_warnings(
    database: DatabaseSection | None, locator: _Locator, interpolated: Interpolations
) -> list[Issue]:
    """An extension no PostgreSQL image is known to ship: most likely a typo."""
    if database is None:
        return []
    warnings = []
    for index, name in enumerate(database.extensions):
        if known_extension(name):
            continue
        path: Path_ = ("database", "extensions", index)
        source = interpolated.get(path)
        shown = repr(name) if source is None else f"the value from {source.references}"
        nearest = nearest_extension(name)
        guess = f" (did you mean {nearest!r}?)" if nearest else ""
        warnings.append(
            locator.issue(
                path,
                f"{shown} is not an extension that PostgreSQL, PostGIS or pgvector ship{guess}; "
                "fine if the image is a custom one that ships it",
            )
        )
    return warnings


@functools.cache
def _section_adapter(name: str) -> TypeAdapter[Any]:
    """Validation of one section alone, exactly as ``ConfigFile`` declares it."""
    field_info = ConfigFile.model_fields[name]
    declared: Any = Annotated[field_info.annotation, field_info]  # a type built at run time
    return TypeAdapter(declared)


def _valid_sections(merged: Mapping[str, Any]) -> dict[str, Any]:
    """What can be made of each section of an invalid ``merged``: the section, valid on its own
    or once its refused keys are left out (they take their defaults), or an absent section's
    default. The env file is checked against these beside the errors of the rest."""
    sections: dict[str, Any] = {}
    for name in _SECTIONS:
        field_info = ConfigFile.model_fields[name]
        if name not in merged:
            if not field_info.is_required():
                sections[name] = field_info.get_default(call_default_factory=True)
            continue
        value = merged[name]
        adapter = _section_adapter(name)
        try:
            sections[name] = adapter.validate_python(value)
        except ValidationError as exc:
            refused = {
                key
                for error in exc.errors()
                for key in _drop_union_tags((name, *error["loc"]))[1:2]
            }
            if not isinstance(value, dict) or not refused:
                continue
            try:
                rest = {key: item for key, item in value.items() if key not in refused}
                sections[name] = adapter.validate_python(rest)
            except ValidationError:
                continue
    return sections


def _without_environment(raw: dict[str, Any], locator: _Locator, environment: str) -> list[Issue]:
    """The problems of a file that does not define ``environment``: that, and whatever is wrong
    whichever environment it is for (unknown keys; the environments as written)."""
    environments = raw.get("environments")
    if isinstance(environments, dict) and environments:
        names = ", ".join(sorted(str(n) for n in environments))
        missing = f"no environment named {environment!r} (defined: {names})"
    else:
        missing = "at least one environment is required"
    issues = [locator.issue(("environments",), missing)]
    try:
        ConfigFile.model_validate(raw)
    except ValidationError as exc:
        # Other values may be completed by an environment's overrides and ${VAR}: not judged here.
        issues.extend(
            issue
            for issue, error in zip(
                _pydantic_issues(exc, locator, secrets_file=f".env.{environment}"),
                exc.errors(),
                strict=True,
            )
            if error["type"] == "extra_forbidden" or issue.key_path.startswith("environments.")
        )
    return _dedupe(issues)


def _key_named(key: str, path: Path_, interpolated: Interpolations) -> str:
    """An env-var name at ``path`` as a message shows it: by its ``${VAR}`` if one filled it in."""
    source = interpolated.get(path)
    return key if source is None else f"the variable named by {source.references}"


def database_url_problem(url: str | None, *, login: bool = True) -> str | None:
    """What keeps ``url`` from naming a PostgreSQL database to connect to (``None``: nothing,
    or no URL): the scheme, the host (or libpq's ``?host=``), the database, a numeric port;
    with ``login`` (shipyard logs in with it from a container, over TCP), the user, the
    password and a host that is not a socket directory. Never quotes the URL (it holds a
    password)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        return "not a postgres://user:password@host[:port]/database URL"
    try:
        parts.port  # noqa: B018 — raises for a port that is not a number
    except ValueError:
        return "its port is not a number"
    host = parts.hostname or dict(parse_qsl(parts.query)).get("host", "")
    wanted: list[tuple[str, str | None]] = [("host", host), ("database", parts.path.lstrip("/"))]
    if login:
        wanted += [("user", parts.username), ("password", parts.password)]
    missing = [name for name, value in wanted if not value]
    if missing:
        return f"a postgres://user:password@host[:port]/database URL without {', '.join(missing)}"
    if login and host.startswith("/"):
        return "a socket directory as its host: shipyard connects over TCP, from a container"
    return None


def _required_env_issues(
    sections: Mapping[str, Any],
    merged: Mapping[str, Any],
    locator: _Locator,
    file_values: Mapping[str, str],
    env_file: Path | None,
    interpolated: Interpolations,
    *,
    on_aws: bool | None = None,
    cloud: tuple[str, str, str] = ("aws", "rds", "AWS"),
    on_host: bool = True,
) -> list[Issue]:
    """The database password and ``app.required_env`` must be in the env file. ``sections``
    may lack an invalid section: what can be checked without it still is. ``on_aws``: the
    target is aws://, with (True) or without (False) an RDS instance of shipyard's, whose
    password RDS keeps; without one (or on gcp:// without a Cloud SQL instance of shipyard's:
    False, ``cloud`` naming the setting), the env file names the database. ``on_host``: the
    Docker provider runs the environment, and logs in with an env file's database URL."""
    database: DatabaseSection | None = sections.get("database")
    issues: list[Issue] = []
    derived: set[str] = set()  # set by shipyard itself
    if database is not None and on_aws is False and database.url_env not in file_values:
        name, setting, where = cloud
        issues.append(
            locator.issue(
                ("database", "url_env"),
                f"{database.url_env} must be set in {env_file or 'the env file'}: on {where} "
                f"without providers.{name}.{setting}, the app's database is an existing one",
            )
        )
    elif database is not None:
        derived.add(database.url_env)
        problem = database_url_problem(file_values.get(database.url_env), login=on_host)
        if problem is not None:
            issues.append(
                locator.issue(
                    ("database", "url_env"),
                    f"{database.url_env} in {env_file or 'the env file'}: {problem}",
                )
            )
        if on_aws and cloud[0] == "digitalocean" and database.url_env in file_values:
            issues.append(
                locator.issue(
                    ("providers", "digitalocean", "database"),
                    f"the cluster is the app's database, yet {env_file or 'the env file'} sets "
                    f"{database.url_env} too: remove one of them",
                )
            )
        elif on_aws:
            pass  # the cloud keeps the password (providers.aws.rds, providers.digitalocean.database)
        elif database.url_env not in file_values and not file_values.get(database.password_env):
            path: Path_ = ("database", "password_env")
            key = _key_named(database.password_env, path, interpolated)
            issues.append(
                locator.issue(
                    path,
                    f"{key} must be set in {env_file or 'the env file'} (the database password)",
                )
            )
    elif "database" not in sections and isinstance(merged.get("database"), dict):
        url_env = merged["database"].get("url_env", DatabaseSection.model_fields["url_env"].default)
        derived.add(str(url_env))  # the database section is invalid, but written
    app: AppSection | None = sections.get("app")
    if app is None:
        return issues
    provided = set(file_values) | set(app.env)
    for index, name in enumerate(app.required_env):
        if name in provided or name in derived:
            continue
        path = ("app", "required_env", index)
        issues.append(
            locator.issue(
                path,
                f"{_key_named(name, path, interpolated)} is required by the app but not set in {env_file or 'the env file'}",
            )
        )
    return issues


# Webhook signing secrets (Standard Webhooks) and ntfy access tokens look like this.
_NOTIFICATION_SECRET_PREFIXES = ("whsec_", "tk_")


def _notification_secret_keys(section: NotificationsSection) -> list[str]:
    keys = []
    for sink in section.sinks:
        key = sink.secret_env if sink.kind == "webhook" else sink.token_env
        if key:
            keys.append(key)
    return keys


def _notification_issues(
    section: NotificationsSection,
    locator: _Locator,
    file_values: Mapping[str, str],
    interpolated: Interpolations,
) -> list[Issue]:
    """Every secret a sink names must be in the env file, and a webhook secret well-formed."""
    issues = []
    for index, sink in enumerate(section.sinks):
        field_name = "secret_env" if sink.kind == "webhook" else "token_env"
        key = sink.secret_env if sink.kind == "webhook" else sink.token_env
        path: Path_ = ("notifications", "sinks", index, field_name)
        if key is None:
            continue
        shown = _key_named(key, path, interpolated)
        if not file_values.get(key):
            issues.append(locator.issue(path, f"{shown} is not set in the env file"))
        elif sink.kind == "webhook":
            try:
                decode_webhook_secret(file_values[key])
            except ValueError as exc:
                issues.append(locator.issue(path, f"the value of {shown} is not usable: {exc}"))
    return issues


def _monitoring_issues(
    sections: dict[str, Any],
    locator: _Locator,
    file_values: Mapping[str, str],
    interpolated: Interpolations,
) -> list[Issue]:
    """Alerts go to sinks that exist; Grafana's admin password is in the env file."""
    monitoring, notifications = sections.get("monitoring"), sections.get("notifications")
    if monitoring is None:
        return []
    issues = []
    grafana = monitoring.grafana
    if monitoring.enabled and grafana.enabled and not file_values.get(grafana.admin_password_env):
        grafana_path: Path_ = ("monitoring", "grafana", "admin_password_env")
        shown = _key_named(grafana.admin_password_env, grafana_path, interpolated)
        issues.append(
            locator.issue(
                grafana_path, f"{shown} is not set in the env file (Grafana's admin password)"
            )
        )
    published = monitoring.publish.domains()
    proxy = sections.get("proxy")
    if monitoring.enabled and published:
        where: Path_ = ("monitoring", "publish")
        if proxy is not None and not proxy.domains:
            issues.append(
                locator.issue(
                    where,
                    "publishing needs proxy.domains (HTTPS: basic auth is never sent in clear)",
                )
            )
        if "grafana" in published and not grafana.enabled:
            issues.append(
                locator.issue(
                    (*where, "grafana"),
                    "Grafana does not run (monitoring.grafana.enabled is false)",
                )
            )
        key = monitoring.publish.password_env
        if not file_values.get(key):
            path: Path_ = (*where, "password_env")
            shown = _key_named(key, path, interpolated)
            issues.append(
                locator.issue(path, f"{shown} is not set in the env file (the basic auth password)")
            )
    if notifications is None or monitoring.alertmanager.sinks is None:
        return issues
    known = [sink.name or sink.kind for sink in notifications.sinks]
    return issues + [
        locator.issue(
            ("monitoring", "alertmanager", "sinks", index),
            f"no sink named {name!r} in notifications.sinks (named: {', '.join(known) or 'none'})",
        )
        for index, name in enumerate(monitoring.alertmanager.sinks)
        if name not in known
    ]


def _transport_issues(
    sections: dict[str, Any],
    locator: _Locator,
    file_values: Mapping[str, str],
    interpolated: Interpolations,
) -> list[Issue]:
    """``providers.ssh`` must be valid SSH settings; a registry's password must be in the env file."""
    issues: list[Issue] = []
    ssh = sections.get("providers", {}).get("ssh")
    if ssh is not None:
        try:
            SSHSection.model_validate(ssh)
        except ValidationError as exc:
            issues.extend(
                _pydantic_issues(exc, locator, ("providers", "ssh"), interpolated=interpolated)
            )
    registry = sections["deploy"].registry if "deploy" in sections else None
    if (
        registry is not None
        and registry.password_env
        and not file_values.get(registry.password_env)
    ):
        path: Path_ = ("deploy", "registry", "password_env")
        key = _key_named(registry.password_env, path, interpolated)
        issues.append(
            locator.issue(path, f"{key} is not set in the env file (the registry password)")
        )
    return issues


# A cloud's own database setting, by target: with it, shipyard makes the database and the app's
# URL; without it, the env file names an existing database.
_MANAGED_DATABASES = {
    "aws://": ("aws", "rds", "AWS"),
    "gcp://": ("gcp", "cloud_sql", "Google Cloud"),
}


def _rds_on_aws(env_raw: Mapping[str, Any], merged: Mapping[str, Any]) -> bool | None:
    """For an aws:// target, whether ``providers.aws.rds`` is set (RDS keeps the password);
    for a gcp:// one, False without ``providers.gcp.cloud_sql`` (the env file names the
    database); for a do:// one, True with ``providers.digitalocean.database`` (the cluster's
    admin password is DigitalOcean's); None otherwise (a Cloud SQL instance's password is the
    env file's, as a host's)."""
    target = env_raw.get("target")
    cloud = _cloud_database(env_raw)
    if not isinstance(target, str) or not target.startswith(("aws://", "gcp://", "do://")):
        return None
    name, setting, _ = cloud
    providers = merged.get("providers")
    section = providers.get(name) if isinstance(providers, dict) else None
    managed = isinstance(section, dict) and section.get(setting) is not None
    if name == "gcp":
        return None if managed else False
    if name == "digitalocean":
        return True if managed else None
    return managed


def _cloud_database(env_raw: Mapping[str, Any]) -> tuple[str, str, str]:
    """(provider, its database setting, the cloud's name) for the target's cloud."""
    target = str(env_raw.get("target", ""))
    if target.startswith("gcp://"):
        return "gcp", "cloud_sql", "Google Cloud"
    if target.startswith("do://"):
        return "digitalocean", "database", "DigitalOcean"
    return "aws", "rds", "AWS"


# The providers a kind of target implies, with their settings: a cloud's target names a region,
# and its settings (`providers.<name>`) all have defaults.
_CLOUDS = {
    "aws://": ("aws", "<region>"),
    "gcp://": ("gcp", "<project>/<region>"),
    "do://": ("digitalocean", "<region>"),
}


# Clouds whose environments have no further nodes (`targets`), and why.
_NO_NODES = {
    "aws": "an aws:// target has no further nodes: ECS runs `providers.aws.desired_count` tasks",
    "gcp": "a gcp:// target has no further nodes: Cloud Run scales the service itself",
}


def _provider_of(target: str) -> str:
    """The provider a target implies when ``provider`` is not given."""
    return next((name for kind, (name, _) in _CLOUDS.items() if target.startswith(kind)), "docker")


def _provider_issues(
    env_raw: Mapping[str, Any],
    sections: dict[str, Any],
    locator: _Locator,
    environment: str,
    interpolated: Interpolations,
) -> list[Issue]:
    """An environment's target and provider agree, and a cloud's target has valid settings for
    it (``providers.aws``: its region the target's, 2 tasks or more in production;
    ``providers.digitalocean``)."""
    target, provider = env_raw.get("target"), env_raw.get("provider")
    if not isinstance(target, str):
        return []  # reported with the environment as written
    here: Path_ = ("environments", environment)
    implied = _provider_of(target)
    issues: list[Issue] = []
    for kind, (name, region) in _CLOUDS.items():
        if provider == name and implied != name:
            issues.append(
                locator.issue((*here, "provider"), f"provider {name} needs target {kind}{region}")
            )
    if implied != "docker" and provider not in (None, implied):
        issues.append(
            locator.issue(
                (*here, "provider"),
                f"target {target} is run by provider {implied}, not {provider!r} (leave `provider` out)",
            )
        )
    if implied == "digitalocean":
        return issues + _section_issues(
            DigitalOceanSection, "digitalocean", sections, locator, interpolated
        )
    if implied in _NO_NODES and env_raw.get("targets"):
        issues.append(locator.issue((*here, "targets"), _NO_NODES[implied]))
    if implied == "gcp":
        return issues + _section_issues(GcpSection, "gcp", sections, locator, interpolated)
    if implied != "aws":
        return issues
    # Every setting has a default: an environment may name no more than its target.
    settings = sections.get("providers", {}).get("aws") or {}
    where: Path_ = ("providers", "aws")
    try:
        aws = AwsSection.model_validate(settings)
    except ValidationError as exc:
        return issues + _pydantic_issues(exc, locator, where, interpolated=interpolated)
    region = target.removeprefix("aws://")
    if aws.region is not None and aws.region != region:
        issues.append(
            locator.issue(
                (*where, "region"),
                f"region {aws.region} is not the target's ({target}): give one region, in the target",
            )
        )
    if (
        environment == "production"
        and aws.desired_count is not None
        and aws.desired_count < _PRODUCTION_TASKS
    ):
        issues.append(
            locator.issue(
                (*where, "desired_count"),
                f"production runs 2 tasks or more (in two availability zones), not {aws.desired_count}",
            )
        )
    return issues


def _section_issues(
    model: type[BaseModel],
    name: str,
    sections: dict[str, Any],
    locator: _Locator,
    interpolated: Interpolations,
) -> list[Issue]:
    """``providers.<name>`` must be valid settings of ``model`` (every one has a default)."""
    settings = sections.get("providers", {}).get(name) or {}
    try:
        model.model_validate(settings)
    except ValidationError as exc:
        where: Path_ = ("providers", name)
        return _pydantic_issues(exc, locator, where, interpolated=interpolated)
    return []


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[str] = set()
    out = []
    for issue in issues:
        text = str(issue)
        if text not in seen:
            seen.add(text)
            out.append(issue)
    return out
