"""The environment's network when ``proxy.subnet`` pins its subnet.

The app sees every request come from the proxy's address on this network; pinned, the subnet is
known before a deploy (``${SHIPYARD_PROXY_CIDR}``), so the app can trust X-Forwarded-For from
it alone. shipyard then creates the network itself (with Compose's labels, so Compose adopts it)
and the compose files name it as external: Compose would otherwise recreate a network whose
definition changed, stopping every container on it. Before anything changes, the subnet is
checked against the host's networks: one it overlaps is named, and the environment's own network,
when it exists with another subnet, is reported and left alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from shipyard.config import Config
from shipyard.docker import Docker
from shipyard.errors import SubnetConflict
from shipyard.providers.docker._names import Names


def subnet_problems(wanted: str, network: str, existing: Mapping[str, list[str]]) -> list[str]:
    """What stands against giving ``network`` the subnet ``wanted`` on a host whose networks are
    ``existing`` (name → subnets): it exists with another subnet, or ``wanted`` overlaps another
    network's. Empty when nothing does."""
    subnet = ipaddress.ip_network(wanted)
    if network in existing:
        have = existing[network]
        if have == [wanted]:
            return []
        return [
            f"proxy.subnet: network {network} exists with subnet {', '.join(have) or '(none)'}, "
            f"not {wanted}: shipyard does not recreate a network its containers are attached to"
        ]
    problems = []
    for name, subnets in sorted(existing.items()):
        for other in subnets:
            try:
                taken = ipaddress.ip_network(other, strict=False)
            except ValueError:
                continue
            if taken.version == subnet.version and taken.overlaps(subnet):
                problems.append(f"proxy.subnet: {wanted} overlaps network {name} ({other})")
    return problems


def subnet_conflict(config: Config, docker: Docker) -> SubnetConflict | None:
    """``SubnetConflict`` for ``proxy.subnet`` on ``docker``'s host, ``None`` when it is free or
    is the environment network's own (or no subnet is pinned). Changes nothing."""
    wanted = config.proxy.subnet
    if wanted is None:
        return None
    names = Names(config.app.name, config.environment.name)
    existing = docker.network_subnets()
    problems = subnet_problems(wanted, names.network, existing)
    if not problems:
        return None
    host = docker.host.name
    if names.network in existing:
        have = existing[names.network]
        hint = (
            f"pin the subnet it has (proxy.subnet: {have[0]}); or, to move the environment to "
            f"{wanted}, remove it first: `shipyard destroy {config.environment.name} --yes` "
            "(the database volume is kept) and deploy again"
            if have
            else f"remove the environment first (`shipyard destroy {config.environment.name} "
            "--yes`, the database volume is kept) and deploy again"
        )
    else:
        hint = (
            f"give proxy.subnet a range no network on {host} uses (`docker network inspect` on "
            "the host lists their subnets)"
        )
    return SubnetConflict([f"{p} on {host}" for p in problems], hint=hint)


def ensure_network(config: Config, docker: Docker) -> str:
    """The environment's network with its pinned subnet, created when missing (``proxy.subnet``
    set; otherwise Compose creates it). Returns what was done."""
    subnet = config.proxy.subnet
    names = Names(config.app.name, config.environment.name)
    if subnet is None or names.network in docker.networks():
        return ""
    docker.create_network(names.network, subnet=subnet, labels=network_labels(names))
    return f"network {names.network} created with subnet {subnet}; "


def network_labels(names: Names) -> dict[str, str]:
    """shipyard's labels, and Compose's, so that Compose adopts the network as the infra
    project's ``app`` network should the subnet be unpinned later."""
    return {
        **names.labels(),
        "com.docker.compose.project": names.infra_project,
        "com.docker.compose.network": "app",
    }
