"""Traffic: the proxy's routing config (maintenance mode included), the switch onto the live
name and back, and draining and stopping the old slot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import bcrypt

from shipyard.config import HttpCheck
from shipyard.docker import ContainerInfo
from shipyard.errors import ShipyardError
from shipyard.providers.docker._base import _BACK_OFF, StepsBase, _poll
from shipyard.providers.docker._names import LABEL
from shipyard.providers.docker._ports import taken_ports
from shipyard.proxy import (
    LOOKUP_REFRESH_S,
    MAINTENANCE_FLAG,
    CaddyAdmin,
    MaintenanceRoutes,
    Published,
    keeping_running_lookups,
    lookup_refresh,
    maintenance_files,
    proxy_files,
    render_caddy,
)
from shipyard.state import Maintenance, now_iso
from shipyard.waiting import Clock, wait_until


class Traffic(StepsBase):
    """The ``switch``, ``switch_back``, ``retire`` and ``set_maintenance`` steps."""

    def caddy_config(self, *, read_only: bool = False) -> dict[str, Any]:
        """The proxy's config, rendered from the config and the recorded state (maintenance
        mode's allowed networks): every render — a switch, a repair, a re-created proxy — keeps
        what is recorded. ``read_only`` (status, render): nothing is written on the host, and
        a kept basic auth hash is used as it is (see ``_password_hash``)."""
        recorded = self.ctx.store.maintenance()
        routes = MaintenanceRoutes(
            tuple(self.open_paths()), recorded.allow if recorded is not None else ()
        )
        return render_caddy(
            self.config.proxy,
            self.names.routed,
            self.config.app.port,
            routes,
            admin_host=self.names.proxy,
            published=self.published(read_only=read_only),
        )

    def published(self, *, read_only: bool = False) -> tuple[Published, ...]:
        """The monitoring UIs ``monitoring.publish`` serves through the proxy (with
        ``monitoring.enabled`` and ``proxy.domains``), behind basic auth."""
        monitoring = self.config.monitoring
        domains = monitoring.publish.domains()
        if not (monitoring.enabled and domains and self.config.proxy.domains):
            return ()
        password = self.config.secrets.get(monitoring.publish.password_env) or ""
        hashed = self._password_hash(password, read_only=read_only)
        ports = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093}
        return tuple(
            Published(
                domain, f"{self.names.monitoring(ui)}:{ports[ui]}", monitoring.publish.user, hashed
            )
            for ui, domain in domains.items()
        )

    def _password_hash(self, password: str, *, read_only: bool = False) -> str:
        """The basic auth password's bcrypt hash: the one kept in the proxy's directory while
        it matches the password (a new salt at each render would change the proxy's config at
        each switch, and a config load drops requests), else a new one, kept. ``read_only``:
        the kept one unchecked (a check costs a bcrypt round, and status compares routes, not
        passwords), else a new one that is not kept."""
        path = self.layout.proxy_dir / "monitoring.hash"
        kept = self.host.get(path)
        if kept and (read_only or bcrypt.checkpw(password.encode(), kept.strip())):
            return kept.decode().strip()
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
        if not read_only:
            self._write(path, hashed)
        return hashed

    def open_paths(self) -> list[str]:
        """The paths maintenance mode still passes to the app: the http health checks' and
        ``deploy.verify_path`` (shipyard's own verify and status, and monitors, reach the app)."""
        paths = [c.path for c in self.config.health.checks if isinstance(c, HttpCheck)]
        if self.config.deploy.verify_path:
            paths.append(self.config.deploy.verify_path)
        return paths

    def maintenance_flagged(self) -> bool:
        """Whether the proxy's flag file says maintenance mode is on."""
        flag = self.layout.proxy_dir / "maintenance" / MAINTENANCE_FLAG
        return self.host.get(flag) is not None

    def set_maintenance(self, maintenance: Maintenance | None) -> str:
        """Record maintenance mode on (``maintenance``) or off in the state, then make the proxy
        answer so: on, the page's files, the config (loaded only when it changes: the allowed
        networks or the health paths differ from the running config's), then the flag file the
        routes look for on every request; off, the flag removed first. Turning it on or off thus
        loads no config and closes no connection (``shipyard.proxy.maintenance_routes``). A proxy
        that is not running reads both when it starts."""
        self._fence()
        self.ctx.store.set_maintenance(maintenance)
        directory = self.layout.proxy_dir / "maintenance"
        flag = directory / MAINTENANCE_FLAG
        if maintenance is None:
            self.host.run(["rm", "-f", str(flag)])
        else:
            for name, text in maintenance_files(maintenance).items():
                self._write(directory / name, text)
        config = self.caddy_config()
        proxy = self.docker.container(self.names.proxy)
        loaded = False
        if proxy is not None and proxy.running:
            config, loaded = self._load_if_changed(self.admin(proxy), config)
        if not loaded:  # the file on the host is the config the proxy runs, or starts with
            self._write(self.layout.caddy_config, json.dumps(config, indent=2))
        if maintenance is not None:
            self._write(flag, maintenance.since)
        state = "on" if maintenance is not None else "off"
        if proxy is None or not proxy.running:
            return f"maintenance {state} (recorded; the proxy is not running: it starts with it)"
        if loaded:
            return f"maintenance {state} (the proxy's config loaded: its allowed networks or paths changed)"
        return f"maintenance {state}"

    def _ensure_proxy(self) -> CaddyAdmin:
        """The proxy running with the rendered config: written to the host and loaded only when
        the running config differs (a switch then costs one inspection and one admin request)."""
        config = self.caddy_config()
        proxy = self.docker.container(self.names.proxy)
        if proxy is None or not proxy.running:
            taken = taken_ports(self.config, self.docker)
            if taken:  # taken since the infrastructure phase: this operation's changes are undone
                raise ShipyardError("the proxy cannot start: " + "; ".join(taken))
            self.compose_ready()
            self._write_proxy_files()
            self._write(self.layout.caddy_config, json.dumps(config, indent=2))
            self.docker.compose_up(
                self.names.infra_project,
                self.layout.infra_compose,
                services=["proxy"],
                wait_timeout=60,
            )
            proxy = None
        admin = self.admin(proxy)
        config, _ = self._load_if_changed(admin, config)
        self._lookup_refresh_s = lookup_refresh(config) or LOOKUP_REFRESH_S
        return admin

    def _load_if_changed(
        self, admin: CaddyAdmin, rendered: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The config the running proxy behind ``admin`` is to run (``rendered``, keeping the
        proxy's own name lookups: ``keeping_running_lookups``) and whether it had to be loaded:
        only when the running config differs, after writing the files it names and the config
        itself to the host."""
        running = _poll(admin.config_if_ready, seconds=30, what="the proxy's admin API")
        config = keeping_running_lookups(rendered, running)
        if running == config:
            return config, False
        self._write_proxy_files()
        self._write(self.layout.caddy_config, json.dumps(config, indent=2))
        admin.load(config)
        return config, True

    def _write_proxy_files(self) -> None:
        """The files Caddy's config names (an ACME server's root, certificates and their keys)
        copied into the proxy's directory, readable by the owner only."""
        for name, source in proxy_files(self.config.proxy).items():
            self.host.put(
                self.layout.proxy_dir / name, self.config.resolve(source).read_bytes(), mode=0o600
            )

    def switch(self, slot: str) -> str:
        """Make ``slot`` live (see shipyard.proxy): the live container takes the switching name
        (the proxy's second choice: it alone still serves), ``slot``'s container the live name,
        and the old one its slot name back. No client sees the old version after the new one,
        and a switch interrupted between two renames still leaves the site served (and is
        finished or undone by the next operation, which calls this again). The lock is checked
        once before the renames: they follow each other at once."""
        admin = self._ensure_proxy()
        names = self.names
        live, switching = names.live, names.switching
        found = self.docker.containers_named([live, switching, names.slot(slot)])
        current, left = found[live], found[switching]
        target = next(
            (
                info
                for info in (found[names.slot(slot)], current, left)
                if info is not None and info.labels.get(f"{LABEL}.slot") == slot
            ),
            None,
        )
        if target is None:
            raise ShipyardError(f"slot {slot} has no container to switch to")
        if current is not None and left is not None:
            # Cut short after its second rename: the old container takes its slot name back.
            self._fence()
            self.docker.rename(switching, self._slot_name(left))
            if target.id == left.id:
                target = replace(left, name=self._slot_name(left))
            left = None
        if target.name == live:
            return f"{live} is already slot {slot}"
        self._mark_switch(admin, target)
        self._fence()
        if current is not None:
            self.docker.rename(live, switching)
        previous = current or left
        self.docker.rename(target.name, live)
        if previous is not None and previous.id != target.id:
            self.docker.rename(switching, self._slot_name(previous))
        self._switched_at = time.monotonic()
        return f"{live} → slot {slot} ({target.labels.get(f'{LABEL}.version', '?')})"

    def _mark_switch(self, admin: CaddyAdmin, target: ContainerInfo) -> None:
        """What the proxy has counted as ``target`` goes live (``StateStore.switch_marks``):
        where the previous version's requests end and this one's begin, for comparing their
        latency. Without it (the proxy's metrics or the state not reached) that comparison is
        not made; the switch goes on."""
        try:
            seen = admin.observe()
            self.ctx.store.add_switch_mark(
                {
                    "release_id": target.labels.get(f"{LABEL}.release", ""),
                    "version": target.labels.get(f"{LABEL}.version", ""),
                    "at": now_iso(),
                    "proxy_started": seen.started,
                    "latency": seen.latency.to_dict(),
                }
            )
        except ShipyardError:
            pass

    def _slot_name(self, info: ContainerInfo) -> str:
        return self.names.slot(info.labels.get(f"{LABEL}.slot", "old"))

    def _settle_switching(self) -> None:
        """A container left with the switching name while another carries the live name (a
        switch cut short after its second rename) gets its slot name back."""
        left = self.docker.container(self.names.switching)
        if left is not None:
            self._fence()
            self.docker.rename(left.name, self._slot_name(left))

    def switch_back(self, slot: str) -> str:
        """After a failed watch (or verify): make ``slot``, the version the switch replaced,
        live again. Stopped right after the switch (``deploy.old_version: stop``), it is started
        and must pass the health gate before the proxy goes back to it; until then the new
        version keeps serving."""
        info = self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container to switch back to")
        if info.running:
            return self.switch(slot)
        self._fence()
        self.docker.start(info.name)
        gated = self.gate(slot)
        return f"{info.name} started, health-gated ({gated}); {self.switch(slot)}"

    def retire(self, slot: str) -> str:
        """Drain the old slot (no new requests reach it; wait for its in-flight ones, no longer
        than ``deploy.drain_timeout``), then stop it."""
        info = self.slot_container(slot)
        if info is None or not info.running:
            return f"slot {slot} was not running"
        if info.name == self.names.live:
            raise ShipyardError(f"refusing to stop {info.name}: the proxy routes to it")
        container = info.name
        address = info.addresses.get(self.names.network, container)
        drained = self._drain(f"{address}:{self.config.app.port}")
        self._fence()
        self.docker.stop(container, timeout=self.config.app.stop_grace_period)
        left = f", {drained} request(s) still in flight at the drain timeout" if drained else ""
        return f"{container} drained and stopped (kept for rollback){left}"

    def _drain(
        self,
        upstream: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Wait until the proxy has no request in flight to ``upstream`` (Caddy's
        ``/reverse_proxy/upstreams``), for up to ``deploy.drain_timeout``: asked at once, then
        after pauses doubling from 20 ms up to 250 ms. Returns the requests still in flight."""
        admin = self.admin()
        # Right after a switch (``deploy.old_version: stop``, ``--no-watch``) the proxy may still
        # hold the old container's address for one lookup: no request is counted in flight
        # before it looked the live name up again (its refresh, read as the switch ensured the
        # proxy). Long after it (the watch ran in between) this waits nothing.
        if self._switched_at is not None:
            if (early := self._switched_at + 2 * self._lookup_refresh_s - clock()) > 0:
                sleep(early)
        counts: list[int] = []

        def in_flight() -> int:
            counts.append(admin.in_flight(upstream))
            return counts[-1]

        wait_until(
            in_flight,
            timeout=self.config.deploy.drain_timeout,
            interval=_BACK_OFF,
            clock=Clock(clock, sleep),
            done=lambda count: count == 0,
        )
        return counts[-1]
