"""The files ``shipyard init`` writes, as text: a commented ``shipyard.yml`` and the lines of
``.env.example``. Every value comes from a finding; what was not found is said in a comment."""

from __future__ import annotations

import json
import re

from shipyard.scaffold._inspect import Repository

ENVIRONMENT = "development"
"""The environment init configures (on this machine's engine); staging and production are
sketched in comments."""

ENVIRONMENTS = ("development", "staging", "production")
PASSWORD_ENV = "POSTGRES_PASSWORD"  # noqa: S105 — a variable name, not a password
DEFAULT_URL_ENV = "DATABASE_URL"
_WIDTH = 96  # of a comment line listing names
_PLAIN = re.compile(r"^[A-Za-z0-9_./@:-]+$")


def render_config(repo: Repository) -> str:
    """``shipyard.yml`` for ``repo``."""
    sections = [
        _header(repo),
        _app(repo),
        _build(repo),
        _database(repo),
        _proxy(),
        _health(repo),
        _deploy(repo),
        _environments(),
    ]
    return "\n".join(sections)


def env_example_names(repo: Repository) -> list[str]:
    """The env-file keys the config needs: the database password and every required env var
    shipyard does not set itself."""
    url_env = repo.database_url_env or DEFAULT_URL_ENV
    return [PASSWORD_ENV, *(n for n in repo.required_env if n != url_env)]


def render_env_example(repo: Repository, present: set[str]) -> list[str]:
    """Lines for ``.env.example``: each needed name (no value), then the secrets the app reads
    as comments; a name already ``present`` is left out."""
    needed = [n for n in env_example_names(repo) if n not in present]
    url_env = repo.database_url_env or DEFAULT_URL_ENV
    optional = [n for n in repo.secret_env if n not in present and n not in needed and n != url_env]
    lines: list[str] = []
    if needed:
        lines += [
            "# What shipyard.yml needs in .env.<environment> (chmod 600, never committed), each",
            "# with a value. The database password is yours to choose (e.g. `openssl rand -hex",
            "# 24`); shipyard gives the app the URL of the database it runs.",
            *(f"{n}=" for n in needed),
        ]
    if optional:
        lines += ["# Secrets the app reads that are not required (set those it should have):"]
        lines += [f"# {n}=" for n in optional]
    if url_env not in present:
        lines += ["# An external database instead of the one shipyard runs:", f"# {url_env}="]
    return lines


def next_commands(repo: Repository, environment: str = ENVIRONMENT) -> list[str]:
    """What to do after init: fill the env file, check, deploy."""
    names = ", ".join(env_example_names(repo))
    return [
        f"fill .env.{environment} (chmod 600) with {names} (see .env.example)",
        f"shipyard check {environment}",
        f"shipyard deploy {environment}",
    ]


def _q(value: str) -> str:
    """A YAML scalar: plain when safe, else double-quoted (a JSON string is valid YAML)."""
    return value if _PLAIN.match(value) and not value[0].isdigit() else json.dumps(value)


def _comment_list(title: str, names: tuple[str, ...] | list[str], indent: str = "") -> list[str]:
    """``names`` as comment lines of at most ~96 characters."""
    lines = [f"{indent}# {title}"]
    line = f"{indent}#  "
    for name in names:
        if len(line) + len(name) + 2 > _WIDTH:
            lines.append(line.rstrip(","))
            line = f"{indent}#  "
        line += f" {name},"
    lines.append(line.rstrip(","))
    return lines


def _header(repo: Repository) -> str:
    found = [f"go.mod ({repo.module})" if repo.module else "no go.mod"]
    if repo.migrations:
        found.append(f"migrations in {repo.migrations}")
    lines = [
        "# shipyard.yml written by `shipyard init` from what it found in this repository:",
        f"# {', '.join(found)}.",
        "# Review it: each section says where its values come from.",
        "# Next to it, one env file per environment (.env.development, .env.staging, …) with a",
        "# value for each name .env.example lists for shipyard.yml: chmod 600, never commit it.",
        "# Then `shipyard check development` and `shipyard deploy development`.",
        "# `shipyard schema --markdown` documents every key.",
        "#",
        "# The images can be chosen with environment variables (SHIPYARD_POSTGRES_IMAGE,",
        "# SHIPYARD_MIGRATE_IMAGE, SHIPYARD_CADDY_IMAGE, SHIPYARD_DOCKER_CLI_IMAGE), e.g. for",
        "# images built locally; unset, the public ones below are used.",
    ]
    return "\n".join(lines) + "\n"


def _app(repo: Repository) -> str:
    source = (
        f"the last element of the module path {repo.module}"
        if repo.module
        else "the directory's name"
    )
    lines = ["app:", f"  name: {repo.name}    # from {source}; rename freely"]
    if repo.port is not None:
        via = f" ({repo.port_env})" if repo.port_env else ""
        lines.append(
            f"  port: {repo.port}    # the app's default listen port{via}, found in its code"
        )
    else:
        lines.append(
            "  port: 8080    # not found in the code: shipyard's default; set the app's port"
        )
    url_env = repo.database_url_env or DEFAULT_URL_ENV
    if repo.required_env:
        lines.append('  required_env:    # the code says each is required ("… is required")')
        for name in repo.required_env:
            note = "    # shipyard sets it for its own database" if name == url_env else ""
            lines.append(f"    - {name}{note}")
    else:
        lines.append('  required_env: []    # no "X is required" message found in the code')
    env: dict[str, tuple[str, str]] = {}
    if "ENVIRONMENT" in repo.env:
        env["ENVIRONMENT"] = ("${SHIPYARD_ENVIRONMENT}", "development, staging or production")
    if repo.host_env:
        env[repo.host_env] = ("0.0.0.0", "its default is loopback: the proxy could not reach it")  # noqa: S104
    if repo.port is not None and repo.port_env and repo.port_env not in env:
        env[repo.port_env] = (str(repo.port), "the port above")
    if env:
        lines.append("  env:")
        for key, (value, note) in env.items():
            lines.append(f"    {key}: {_q(value) if value[0] != '$' else value}    # {note}")
    others = [n for n in repo.env if n not in env and n not in repo.required_env]
    if others:
        lines += _comment_list(
            "Other env vars the code reads (set them in app.env, or in the env file for secrets):",
            others,
            "  ",
        )
    else:
        lines.append("  # No other env var read with os.Getenv/getEnv was found in the code.")
    return "\n".join(lines) + "\n"


def _build(repo: Repository) -> str:
    if repo.module is None and repo.dockerfile:
        return (
            "build:    # no go.mod found: the repository's own Dockerfile\n"
            "  kind: dockerfile\n"
            "  context: .\n"
            f"  dockerfile: {repo.dockerfile}\n"
        )
    lines = ["build:"]
    if repo.module is None:
        lines.append(
            "  # No go.mod and no Dockerfile found: set build.package to the main package."
        )
    lines += [
        "  kind: go    # CGO_ENABLED=0 into a scratch image with CA certificates",
        "  context: .",
    ]
    if repo.package:
        lines.append(f"  package: {repo.package}    # the main package")
        if repo.other_packages:
            lines.append(f"  # Other main packages, not deployed: {', '.join(repo.other_packages)}")
    else:
        lines.append(
            "  package: ./cmd/server    # no main package found (cmd/*/main.go or ./main.go)"
        )
    lines.append(f"  binary: {_q(repo.binary)}")
    if repo.ldflags:
        lines.append("  ldflags:    # the version variables found in the main package's tree")
        for var, placeholder in repo.ldflags.items():
            lines.append(f'    {var}: "{placeholder}"')
    missing = [
        label
        for placeholder, label in (
            ("{version}", "version"),
            ("{commit}", "commit"),
            ("{build_date}", "build date"),
        )
        if placeholder not in repo.ldflags.values()
    ]
    if missing:
        lines.append(
            f"  # No string variable for the {', '.join(missing)} found in the main package's "
            "tree (e.g. `var Version string`): -X sets only variables that exist."
        )
    if repo.dockerfile:
        lines.append(
            f"  # A {repo.dockerfile} exists too: `kind: dockerfile` would build with it instead."
        )
    return "\n".join(lines) + "\n"


def _database(repo: Repository) -> str:
    url_env = repo.database_url_env or DEFAULT_URL_ENV
    name = repo.name.replace("-", "_")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        name = "app"
    lines = [
        "database:",
        "  image: ${SHIPYARD_POSTGRES_IMAGE:-postgis/postgis:17-3.5}",
    ]
    if "vector" in repo.extensions:
        lines += [
            "  # The migrations create `vector` (pgvector): postgis/postgis ships PostGIS,",
            "  # pg_trgm and pgcrypto, not pgvector: name an image that has both here or in",
            '  # SHIPYARD_POSTGRES_IMAGE (README: "A database image with PostGIS and pgvector").',
        ]
    lines += [
        f"  name: {name}",
        f"  user: {name}",
        f"  password_env: {PASSWORD_ENV}    # in the env file",
    ]
    if repo.database_url_env:
        lines.append(f"  url_env: {url_env}    # the variable the code reads the database URL from")
    else:
        lines.append(f"  url_env: {url_env}    # no database URL variable found in the code")
    if repo.extensions:
        lines.append(
            f"  extensions: [{', '.join(repo.extensions)}]    # what the migrations create"
        )
    else:
        lines.append("  extensions: []    # no CREATE EXTENSION found in the migrations")
    if repo.unlisted_extensions:
        lines.append(
            f"  # Also created by the migrations, not listed (not a plain name): "
            f"{', '.join(repo.unlisted_extensions)}"
        )
    if repo.migrations:
        lines += [
            "  migrations:",
            f"    path: {_q(repo.migrations)}",
            "    image: ${SHIPYARD_MIGRATE_IMAGE:-migrate/migrate:v4.18.3}",
        ]
        if repo.other_migrations:
            lines.append(f"    # Other migration directories: {', '.join(repo.other_migrations)}")
    else:
        lines.append("  migrations: null    # no directory of NNN_name.up.sql files found")
    return "\n".join(lines) + "\n"


def _proxy() -> str:
    return (
        "proxy:\n"
        "  image: ${SHIPYARD_CADDY_IMAGE:-caddy:2}\n"
        "  http_port: 80\n"
        "  # domains: [app.example.org]    # with domains, Caddy obtains certificates (HTTPS)\n"
    )


def _health(repo: Repository) -> str:
    lines = ["health:", "  checks:"]
    chosen: list[str] = [p for p in ("/health", "/readyz") if p in repo.health_paths]
    if not chosen and repo.health_paths:
        chosen = [repo.health_paths[0]]
    if chosen:
        lines[-1] += "    # the routes the code registers"
        for path in chosen:
            name = "readiness" if path == "/readyz" else "http"
            lines += [
                "    - kind: http",
                *([f"      name: {name}"] if name != "http" else []),
                f"      path: {path}",
                "      status: [200]",
            ]
        rest = [p for p in repo.health_paths if p not in chosen]
        if rest:
            lines.append(f"  # Also registered: {', '.join(rest)}")
    else:
        lines[-1] += "    # no /health, /healthz or /readyz route found: a TCP connect"
        lines.append("    - kind: tcp")
    lines += ["  interval: 2s", "  passes: 3", "  start_timeout: 60s"]
    return "\n".join(lines) + "\n"


def _deploy(repo: Repository) -> str:
    lines = ["deploy:"]
    if repo.version_path and repo.ldflags:
        lines.append(
            f"  verify_path: {repo.version_path}    # the proxy must serve the deployed commit"
        )
    elif repo.version_path:
        lines.append(
            f"  # verify_path: {repo.version_path}    # a route exists, but no commit variable to stamp"
        )
    else:
        lines.append("  # verify_path: /version    # no /version route found")
    lines.append("  guard_image: ${SHIPYARD_DOCKER_CLI_IMAGE:-docker:27-cli}")
    return "\n".join(lines) + "\n"


def _environments() -> str:
    return (
        "environments:\n"
        "  development:    # this machine's Docker engine\n"
        "    target: local\n"
        "    proxy:\n"
        "      http_port: ${SHIPYARD_HTTP_PORT:-8080}\n"
        "    deploy:\n"
        "      allow_dirty: true    # a working copy may be deployed here; not in staging or production\n"
        "  # staging:\n"
        "  #   target: ssh://deploy@staging.example.org\n"
        "  # production:\n"
        "  #   target: ssh://deploy@example.org\n"
        "  #   proxy:\n"
        "  #     domains: [example.org]\n"
    )
