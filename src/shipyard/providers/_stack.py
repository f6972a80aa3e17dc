"""The stack on a Docker host, as Docker Compose v2 projects rendered from the config.

``<app>-<env>-infra`` holds the database and the proxy; ``<app>-<env>-blue`` and ``-green`` hold
one app slot each. All share the network ``<app>-<env>``. The files are written on the host so an
operator can inspect them with ``docker compose ls``, ``ps`` and ``logs``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ruamel.yaml import YAML

from shipyard.config import Config
from shipyard.errors import ConfigError, Issue
from shipyard.proxy import ADMIN_PORT

LABEL = "org.shipyard"
_LOGGING = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}


@dataclass(frozen=True)
class Names:
    """Every name the stack uses, derived from app and environment."""

    app: str
    environment: str

    @property
    def prefix(self) -> str:
        return f"{self.app}-{self.environment}"

    @property
    def network(self) -> str:
        return self.prefix

    @property
    def infra_project(self) -> str:
        return f"{self.prefix}-infra"

    @property
    def database(self) -> str:
        return f"{self.prefix}-db"

    @property
    def proxy(self) -> str:
        return f"{self.prefix}-proxy"

    @property
    def guard(self) -> str:
        return f"{self.prefix}-guard"

    def slot(self, slot: str) -> str:
        """Compose project and container name of an app slot (while it is not live)."""
        return f"{self.prefix}-{slot}"

    @property
    def live(self) -> str:
        """The name the live slot's container carries; the proxy routes to it."""
        return f"{self.prefix}-live"

    @property
    def switching(self) -> str:
        """The name the live container carries for the instant of a switch between giving up the
        live name and taking its slot name back: the proxy's second choice, so it keeps serving
        the old version alone until the new one carries the live name."""
        return f"{self.prefix}-switching"

    @property
    def slots(self) -> str:
        """The network alias every app slot's container answers to: the proxy routes to it only
        while no container carries the live or the switching name (after a switch or a
        container's removal cut short outside shipyard)."""
        return f"{self.prefix}-slots"

    @property
    def routed(self) -> tuple[str, str, str]:
        """The names the proxy routes to, in order of preference."""
        return (self.live, self.switching, self.slots)

    def migrate(self, deployment_id: str) -> str:
        """The one-off golang-migrate container of an operation (kept until its result is read)."""
        return f"{self.prefix}-migrate-{deployment_id}"

    @property
    def volumes(self) -> dict[str, str]:
        return {
            "pgdata": f"{self.prefix}-pgdata",
            "caddy-data": f"{self.prefix}-caddy-data",
            "caddy-config": f"{self.prefix}-caddy-config",
        }

    def labels(self, **extra: str) -> dict[str, str]:
        return {f"{LABEL}.app": self.app, f"{LABEL}.environment": self.environment} | {
            f"{LABEL}.{key}": value for key, value in extra.items()
        }


@dataclass(frozen=True)
class Layout:
    """Where the stack's files live on the host (under the environment's state directory)."""

    root: PurePosixPath

    @property
    def infra_compose(self) -> PurePosixPath:
        return self.root / "infra" / "compose.yml"

    @property
    def database_env(self) -> PurePosixPath:
        return self.root / "infra" / "database.env"

    @property
    def migrate_env(self) -> PurePosixPath:
        return self.root / "infra" / "migrate.env"

    @property
    def infra_verified(self) -> PurePosixPath:
        """What the last full infrastructure check found (``DockerSteps.ensure_infrastructure``)."""
        return self.root / "infra" / "verified.json"

    @property
    def login_env(self) -> PurePosixPath:
        """The app's database credentials for the login check (removed after it)."""
        return self.root / "infra" / "login.env"

    @property
    def proxy_dir(self) -> PurePosixPath:
        return self.root / "proxy"

    @property
    def caddy_config(self) -> PurePosixPath:
        return self.proxy_dir / "caddy.json"

    def slot_compose(self, slot: str) -> PurePosixPath:
        return self.root / "slots" / slot / "compose.yml"

    def slot_env(self, slot: str) -> PurePosixPath:
        return self.root / "slots" / slot / "app.env"

    @property
    def releases(self) -> PurePosixPath:
        return self.root / "releases"

    def release_env(self, release_id: str) -> PurePosixPath:
        """The app environment a release was deployed with (0600; reused by rollbacks)."""
        return self.releases / f"{release_id}.env"

    @property
    def migration_copies(self) -> PurePosixPath:
        return self.root / "migrations"

    def migrations(self, release_id: str) -> PurePosixPath:
        """The migration files a release's deploy ran (read again if it was interrupted)."""
        return self.migration_copies / release_id

    @property
    def snapshots(self) -> PurePosixPath:
        return self.root / "snapshots"

    @property
    def release_commands_env(self) -> PurePosixPath:
        """The app's env file for release commands (one-off containers of the new image)."""
        return self.root / "release" / "app.env"


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


# The guard: every time a container of the environment dies while it carries the live name, it
# waits a second (a crash is restarted by the container's own policy first) and starts it if it
# is still stopped. shipyard itself never stops that container (a switch renames the old one
# first), so such a stop was someone else's: `docker kill`, `docker stop`. When it starts (after a
# reboot, or when the events stream ended with a daemon restart) it looks once.
GUARD_SCRIPT = """\
set -u
revive() {
  sleep 1
  if [ "$(docker inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = false ]; then
    echo "guard: $1 stopped and shipyard did not stop it: starting it again"
    docker start "$1" >/dev/null
  fi
}
# Once the events stream below is open, a stop that happened before is looked for too.
(sleep 2; revive "$GUARD_PREFIX-live") &
docker events --filter type=container --filter event=die \\
  --filter "label=org.shipyard.app=$GUARD_APP" \\
  --filter "label=org.shipyard.environment=$GUARD_ENVIRONMENT" \\
  --format '{{.Actor.Attributes.name}}' |
while read -r name; do
  case "$name" in
    "$GUARD_PREFIX-live") revive "$name" ;;
  esac
done
"""
DOCKER_SOCKET = "/var/run/docker.sock"


def render_infra(
    config: Config, names: Names, layout: Layout, *, docker_socket: str | None = DOCKER_SOCKET
) -> dict[str, Any]:
    """The infra project: database, proxy and (with ``deploy.guard_image`` and the engine's Unix
    socket, ``docker_socket``) the guard."""
    proxy = config.proxy
    ports = [f"{proxy.bind}:{proxy.http_port}:80", f"127.0.0.1::{ADMIN_PORT}"]
    if proxy.domains:
        ports.insert(1, f"{proxy.bind}:{proxy.https_port}:443")
    services: dict[str, Any] = {
        "proxy": {
            "image": proxy.image,
            "container_name": names.proxy,
            "entrypoint": ["caddy"],
            "command": ["run", "--config", f"/etc/caddy/{layout.caddy_config.name}"],
            "ports": ports,
            "volumes": [
                f"{layout.proxy_dir}:/etc/caddy:ro",
                "caddy-data:/data",
                "caddy-config:/config",
            ],
            "networks": ["app"],
            "restart": "unless-stopped",
            # A name no container carries (see shipyard.proxy) is answered by Docker's DNS
            # itself, never forwarded to the host's resolvers.
            "dns_opt": ["ndots:1"],
            "dns_search": ["."],
            "labels": names.labels(role="proxy"),
            "logging": copy.deepcopy(_LOGGING),
        }
    }
    volumes: dict[str, Any] = {
        "caddy-data": {"name": names.volumes["caddy-data"]},
        "caddy-config": {"name": names.volumes["caddy-config"]},
    }
    if config.deploy.guard_image and docker_socket:
        services["guard"] = {
            "image": config.deploy.guard_image,
            "container_name": names.guard,
            "entrypoint": ["sh", "-c", GUARD_SCRIPT.replace("$", "$$")],
            "environment": {
                "GUARD_PREFIX": names.prefix,
                "GUARD_APP": names.app,
                "GUARD_ENVIRONMENT": names.environment,
            },
            "volumes": [f"{docker_socket}:{DOCKER_SOCKET}"],
            "network_mode": "none",
            "restart": "unless-stopped",
            "labels": names.labels(role="guard"),
            "logging": copy.deepcopy(_LOGGING),
        }
    if config.database is not None and managed_database(config):
        db = config.database
        services["db"] = {
            "image": db.image,
            "container_name": names.database,
            "env_file": [str(layout.database_env)],
            "volumes": ["pgdata:/var/lib/postgresql/data"],
            "networks": ["app"],
            "restart": "unless-stopped",
            "shm_size": "256m",
            "stop_grace_period": "60s",
            "healthcheck": {
                # Over TCP: the image's first-start init server listens on the socket only, so
                # a socket check passes before the real server is up.
                "test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", db.user, "-d", db.name],
                "interval": "2s",
                "timeout": "5s",
                "retries": 30,
                "start_period": "10s",
            },
            "labels": names.labels(role="database"),
            "logging": copy.deepcopy(_LOGGING),
        }
        volumes["pgdata"] = {"name": names.volumes["pgdata"]}
    network: dict[str, Any] = {"name": names.network, "driver": "bridge", "labels": names.labels()}
    if proxy.subnet is not None:  # created by shipyard with its subnet (providers._network)
        network = {"name": names.network, "external": True}
    return {
        "name": names.infra_project,
        "services": services,
        "networks": {"app": network},
        "volumes": volumes,
    }


def render_slot(
    config: Config,
    names: Names,
    layout: Layout,
    slot: str,
    *,
    image: str,
    release: str,
    version: str,
    commit: str,
    deployment: str,
) -> dict[str, Any]:
    """The compose project of one app slot. ``deployment``: the operation that creates the
    container (only that operation's cleanup may remove it)."""
    return {
        "name": names.slot(slot),
        "services": {
            "app": {
                "image": image,
                "container_name": names.slot(slot),
                "env_file": [str(layout.slot_env(slot))],
                "environment": {"DEPLOYMENT_SLOT": slot},
                "ports": [f"127.0.0.1::{config.app.port}"],
                "networks": {"app": {"aliases": [names.slots]}},
                "restart": "unless-stopped",
                "stop_grace_period": f"{config.app.stop_grace_period:g}s",
                "labels": names.labels(
                    role="app",
                    slot=slot,
                    release=release,
                    version=version,
                    commit=commit,
                    deployment=deployment,
                ),
                "logging": copy.deepcopy(_LOGGING),
            }
        },
        "networks": {"app": {"name": names.network, "external": True}},
    }


def to_yaml(document: Mapping[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buffer = io.StringIO()
    yaml.dump(dict(document), buffer)
    return buffer.getvalue()
