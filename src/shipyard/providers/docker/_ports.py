"""The proxy's host ports: free, or held by this environment's own proxy, before it is started.

Docker reports a port something else holds only when the proxy is started, as "driver failed
programming external connectivity … address already in use", half way through a deploy. This
finds it first, and names what holds it: another container (``docker container inspect`` of the
running ones publishing it), or a process (``ss -ltnp`` on the host; without ss,
``/proc/net/tcp`` says the port is taken but not by whom).
"""

from __future__ import annotations

from shipyard.config import Config
from shipyard.docker import ContainerInfo, Docker
from shipyard.hosts import Listener, addresses_overlap, listeners
from shipyard.providers.docker._names import Names


def proxy_ports(config: Config) -> list[tuple[str, int]]:
    """The host ports the proxy publishes, with the config key that chooses each."""
    proxy = config.proxy
    ports = [("proxy.http_port", proxy.http_port)]
    if proxy.domains:
        ports.append(("proxy.https_port", proxy.https_port))
    return ports


def taken_ports(config: Config, docker: Docker) -> list[str]:
    """One line per proxy port that something other than this environment's own proxy holds on
    ``docker``'s host, naming the port, its config key and the holder. Changes nothing."""
    names = Names(config.app.name, config.environment.name)
    bind, host = config.proxy.bind, docker.host
    ports = proxy_ports(config)
    running = docker.running(publishing=[port for _, port in ports])
    sockets: list[Listener] | None = None  # read once, when a port is not explained by Docker
    problems = []
    for key, port in ports:
        holders = [
            info
            for info in running
            if any(p == port and addresses_overlap(bind, a) for a, p in info.bindings)
        ]
        if any(_own_proxy(info, names) for info in holders):
            continue  # this environment's proxy: it keeps its port when it is recreated
        if holders:
            held_by = f"container {', '.join(info.name for info in holders)}"
        else:
            if sockets is None:
                sockets = listeners(host) or []
            held = [s for s in sockets if s.port == port and addresses_overlap(bind, s.address)]
            if not held:
                continue
            held_by = _processes(held, port)
        problems.append(f"{key}: port {port} on {host.name} is already in use by {held_by}")
    return problems


def _own_proxy(info: ContainerInfo, names: Names) -> bool:
    """This environment's proxy, also while Compose recreates it (under a temporary name)."""
    labels = info.labels
    return info.name == names.proxy or (
        labels.get("com.docker.compose.project") == names.infra_project
        and labels.get("com.docker.compose.service") == "proxy"
    )


def _processes(held: list[Listener], port: int) -> str:
    names = list(dict.fromkeys(name for socket in held for name in socket.processes))
    if names:
        return ", ".join(names)
    return f"a process shipyard cannot see (`sudo ss -ltnp 'sport = :{port}'` on the host names it)"
