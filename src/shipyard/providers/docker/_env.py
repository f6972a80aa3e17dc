"""The env files of the stack (app, database, login check, release commands): their text,
quoted for ``docker run --env-file`` or Compose, and the values that go in them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from shipyard.config import Config, DatabaseSection, database_url_problem
from shipyard.database import Endpoint
from shipyard.errors import ConfigError, Issue
from shipyard.providers.docker._names import Names


def env_file_text(values: Mapping[str, str], *, source: str) -> str:
    """``KEY=value`` lines, read verbatim by ``docker run --env-file``."""
    return _env_lines(values, source, lambda value: value)


def compose_env_file_text(values: Mapping[str, str], *, source: str) -> str:
    """``KEY='value'`` lines that Compose's ``env_file`` reads back exactly.

    Compose parses env files like a shell: unquoted and double-quoted values are interpolated.
    A single-quoted value is literal, but cannot hold a quote nor end in a backslash (it would
    escape the closing quote); those go double-quoted with ``\\``, ``\"`` and ``$$`` escaped.
    (``format: raw`` would do without quoting, but Debian 13's Compose 2.26 refuses it.)
    """
    return COMPOSE_ENV_HEADER + _env_lines(values, source, _compose_quote)


COMPOSE_ENV_HEADER = "# shipyard: values quoted for Compose\n"


def as_compose_env(text: str, *, source: str) -> str:
    """A saved env file in Compose's quoting. Files saved as raw ``KEY=value`` lines (by versions
    that used Compose's ``format: raw``) are re-quoted, so a release deployed then still gets
    exactly its values back."""
    if text.startswith(COMPOSE_ENV_HEADER):
        return text
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return compose_env_file_text(values, source=source)


def compose_env_values(text: str) -> dict[str, str]:
    """The values of an env file in Compose's quoting as ``compose_env_file_text`` writes it
    (its inverse): a single-quoted value is literal, a double-quoted one has ``\\``, ``\"``
    and ``$$`` escaped. Comments and blank lines are skipped."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, quoted = line.split("=", 1)
        if len(quoted) >= 2 and quoted[0] == quoted[-1] == "'":  # noqa: PLR2004
            values[key] = quoted[1:-1]
        elif len(quoted) >= 2 and quoted[0] == quoted[-1] == '"':  # noqa: PLR2004
            values[key] = _DOUBLE_QUOTED_ESCAPE.sub(lambda m: m[0][1], quoted[1:-1])
        else:  # not written by shipyard: taken as it stands
            values[key] = quoted
    return values


# The escapes of a double-quoted value: ``\\`` → ``\``, ``\"`` → ``"``, ``$$`` → ``$``.
_DOUBLE_QUOTED_ESCAPE = re.compile(r'\\\\|\\"|\$\$')


def _compose_quote(value: str) -> str:
    if "'" not in value and not value.endswith("\\"):
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'


def _env_lines(values: Mapping[str, str], source: str, render: Callable[[str], str]) -> str:
    lines = []
    issues = []
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            issues.append(Issue(source, None, None, key, "values cannot span several lines"))
            continue
        lines.append(f"{key}={render(value)}")
    if issues:
        raise ConfigError(issues)
    return "\n".join(lines) + "\n"


def managed_database(config: Config) -> bool:
    """True when shipyard runs the database (configured, and the env file gives no external URL)."""
    return config.database is not None and config.secrets.get(config.database.url_env) is None


def external_database(config: Config) -> tuple[DatabaseSection, Endpoint, dict[str, str]] | None:
    """The database the env file's URL names (``None``: none, or shipyard runs it): the
    database section with the URL's user and database, where it answers, and libpq's variables
    for it (what its client container connects with). A URL that does not say where and as whom
    to connect is refused, naming the env file and key."""
    section = config.database
    if section is None or managed_database(config):
        return None
    url = config.secrets.get(section.url_env) or ""
    problem = database_url_problem(url)
    if problem is not None:
        env_file = config.environment.env_file
        raise ConfigError.at(
            str(env_file) if env_file is not None else "the env file", section.url_env, problem
        )
    login = libpq_env(url)
    port = int(login.get("PGPORT") or 5432)
    endpoint = Endpoint(login["PGHOST"], port, login.get("PGSSLMODE"))
    as_section = section.model_copy(update={"user": login["PGUSER"], "name": login["PGDATABASE"]})
    return as_section, endpoint, login | {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "shipyard"}


def database_env(config: Config) -> dict[str, str]:
    assert config.database is not None  # noqa: S101 — only called with a managed database
    password = config.secrets.get(config.database.password_env) or ""
    return {
        "POSTGRES_USER": config.database.user,
        "POSTGRES_DB": config.database.name,
        "POSTGRES_PASSWORD": password,
    }


def database_url(config: Config, names: Names) -> str:
    """The URL the app uses for the managed database (on the private network)."""
    assert config.database is not None  # noqa: S101
    password = quote(config.secrets.get(config.database.password_env) or "", safe="")
    db = config.database
    return f"postgres://{db.user}:{password}@{names.database}:5432/{db.name}?sslmode=disable"


def database_login_env(config: Config, names: Names) -> dict[str, str]:
    """libpq's variables for what ``database_url`` says: a client logs in with them as the app
    does (the password in the environment, never in argv)."""
    assert config.database is not None  # noqa: S101
    db = config.database
    return {
        "PGHOST": names.database,
        "PGPORT": "5432",
        "PGUSER": db.user,
        "PGDATABASE": db.name,
        "PGPASSWORD": config.secrets.get(db.password_env) or "",
        "PGSSLMODE": "disable",
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": "shipyard-login-check",
    }


def with_values(text: str, values: Mapping[str, str], *, source: str) -> str:
    """A saved env file (``compose_env_file_text``) with ``values`` in place of the values of
    those keys it has, and every line of the others kept byte for byte."""
    lines = as_compose_env(text, source=source).splitlines(keepends=True)
    for index, line in enumerate(lines):
        key = line.split("=", 1)[0]
        if "=" in line and key in values:
            lines[index] = _env_lines({key: values[key]}, source, _compose_quote)
    return "".join(lines)


def app_env(config: Config, names: Names) -> dict[str, str]:
    """The app's environment: the env file, ``app.env``, and the database URL when shipyard runs it."""
    values = dict(config.secrets.items())
    values.update(config.app.env)
    if config.database is not None and managed_database(config):
        values[config.database.url_env] = database_url(config, names)
    return values


def release_command_env(config: Config, names: Names) -> dict[str, str]:
    """A release command's environment: the app's, plus libpq's ``PG*`` variables for the same
    database (many tools — psql, River's CLI, goose — read those rather than ``DATABASE_URL``), so
    no password is ever written into a command's argv. Values the env file sets win."""
    values = app_env(config, names)
    if config.database is None:
        return values
    if managed_database(config):
        login = database_login_env(config, names) | {"PGAPPNAME": "shipyard-release-command"}
    else:
        login = libpq_env(config.secrets.get(config.database.url_env) or "")
    return login | values


def libpq_env(url: str) -> dict[str, str]:
    """libpq's variables for a ``postgres://user:password@host:port/db?sslmode=…`` URL (what it
    does not say is left out)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        return {}
    query = dict(parse_qsl(parts.query))
    values = {
        "PGHOST": parts.hostname or "",
        "PGPORT": str(parts.port) if parts.port else "",
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": unquote(parts.path.lstrip("/")),
        "PGSSLMODE": query.get("sslmode", ""),
    }
    return {key: value for key, value in values.items() if value}
