"""The stack on a Docker host, as Docker Compose v2 projects rendered from the config.

``<app>-<env>-infra`` holds the database and the proxy; ``<app>-<env>-blue`` and ``-green`` hold
one app slot each. All share the network ``<app>-<env>``. The files are written on the host so an
operator can inspect them with ``docker compose ls``, ``ps`` and ``logs``. On this machine's engine
a slot's container is created over the engine's socket from its compose project
(``slot_container_body``), with the labels by which Compose counts it as the project's.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from ruamel.yaml import YAML

from shipyard.config import Config
from shipyard.providers.docker._env import external_database, managed_database
from shipyard.providers.docker._names import LABEL, Layout, Names
from shipyard.proxy import ADMIN_PORT, PROXY_DIR

_LOGGING = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}


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
            "command": ["run", "--config", f"{PROXY_DIR}/{layout.caddy_config.name}"],
            "ports": ports,
            "volumes": [
                f"{layout.proxy_dir}:{PROXY_DIR}:ro",
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
    elif (external := external_database(config)) is not None:
        # The env file's URL names the database: a client beside the app (the database image
        # has psql, pg_dump and pg_restore of its version) through which shipyard creates the
        # extensions, reads and migrates the schema and takes snapshots. Its label carries a
        # digest of where the URL points (not of its password), so that pointing it elsewhere
        # changes this definition; Compose recreates it when its env file changes.
        where = {k: v for k, v in external[2].items() if k != "PGPASSWORD"}
        digest = hashlib.sha256(json.dumps(where, sort_keys=True).encode()).hexdigest()[:16]
        services["dbclient"] = {
            "image": external[0].image,
            "container_name": names.database_client,
            "entrypoint": ["sleep", "infinity"],
            "init": True,
            # Over the image's data volume: it holds no data, and Compose would otherwise make
            # an anonymous volume there that outlives the container.
            "tmpfs": ["/var/lib/postgresql/data"],
            "env_file": [str(layout.database_client_env)],
            "networks": ["app"],
            "restart": "unless-stopped",
            "healthcheck": {
                "test": ["CMD", "pg_isready", "-q"],
                "interval": "2s",
                "timeout": "12s",
                "retries": 30,
                "start_period": "5s",
            },
            "labels": {**names.labels(role="database-client"), f"{LABEL}.login": digest},
            "logging": copy.deepcopy(_LOGGING),
        }
    network: dict[str, Any] = {"name": names.network, "driver": "bridge", "labels": names.labels()}
    if proxy.subnet is not None:  # created by shipyard with its subnet (_network)
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
                # No alias: a name all slots answered to would be a name the proxy could
                # reach a candidate by (shipyard.proxy).
                "networks": {"app": {}},
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


# The keys of a service ``render_slot`` writes, all of which ``slot_container_body`` carries.
_SLOT_KEYS = frozenset(
    {
        "image", "container_name", "env_file", "environment", "ports", "networks", "restart",
        "stop_grace_period", "labels", "logging",
    }
)  # fmt: skip


def slot_container_body(
    project: Mapping[str, Any], file: PurePosixPath, env: Mapping[str, str]
) -> dict[str, Any]:
    """The Engine API's create body (``POST /containers/create``) of the container ``docker
    compose --file file up`` would create for the slot ``project`` (``render_slot``'s), whose
    env file holds ``env``: the same settings, and the labels Compose gives its containers, so
    that ``docker compose ls``, ``ps``, ``logs`` and ``down`` know it as the project's."""
    [(service_name, service)] = project["services"].items()
    unknown = set(service) - _SLOT_KEYS
    if unknown:  # a key render_slot gained must be carried here too
        raise ValueError(f"slot_container_body does not carry {sorted(unknown)}")
    [(network_key, attached)] = service["networks"].items()
    network = project["networks"][network_key]["name"]
    bindings: dict[str, list[dict[str, str]]] = {}
    for published in service["ports"]:  # "127.0.0.1::8080": an address, any host port
        address, host_port, container_port = published.rsplit(":", 2)
        bindings.setdefault(f"{container_port}/tcp", []).append(
            {"HostIp": address, "HostPort": host_port}
        )
    labels = {
        **service["labels"],
        "com.docker.compose.project": project["name"],
        "com.docker.compose.service": service_name,
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.depends_on": "",
        "com.docker.compose.project.config_files": str(file),
        "com.docker.compose.project.working_dir": str(file.parent),
    }
    # Compose lists and removes only containers carrying a config hash. This one is a digest of
    # the definition (without the environment's values), not Compose's own: `docker compose up`
    # on the file would recreate the container, which is all a differing hash means to it.
    labels["com.docker.compose.config-hash"] = hashlib.sha256(
        json.dumps([service, project["networks"]], sort_keys=True).encode()
    ).hexdigest()
    environment = {**env, **service.get("environment", {})}
    return {
        "Image": service["image"],
        "Env": [f"{key}={value}" for key, value in environment.items()],
        "Labels": labels,
        "ExposedPorts": {key: {} for key in bindings},
        "StopTimeout": math.ceil(float(service["stop_grace_period"].removesuffix("s"))),
        "HostConfig": {
            "NetworkMode": network,
            "PortBindings": bindings,
            "RestartPolicy": {"Name": service["restart"]},
            "LogConfig": {
                "Type": service["logging"]["driver"],
                "Config": dict(service["logging"]["options"]),
            },
        },
        "NetworkingConfig": {
            "EndpointsConfig": {
                network: {
                    "Aliases": [
                        service["container_name"],
                        service_name,
                        *(attached or {}).get("aliases", []),
                    ]
                }
            }
        },
    }


def to_yaml(document: Mapping[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buffer = io.StringIO()
    yaml.dump(dict(document), buffer)
    return buffer.getvalue()
