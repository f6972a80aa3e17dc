"""``shipyard provision``: idempotent set-up of a fresh Debian 12/13 or Ubuntu 24.04 host.

Run over SSH as root (or a user with sudo). Each step checks before it acts and reports
``changed``, ``unchanged`` or ``failed``; a second run reports no changes. The steps:

1. ``os``: Debian 12, Debian 13 or Ubuntu 24.04, else nothing is touched.
2. ``packages``: Docker engine and CLI, Compose v2, nftables (Debian 13 and Ubuntu from the
   distribution; Debian 12 from Docker's apt repository, the only source of Compose v2 there).
3. ``docker-service``: docker.service enabled and running (systemd).
4. ``tools``: docker and compose versions on the host against the minimums shipyard needs.
5. ``docker-daemon``: /etc/docker/daemon.json (other settings kept) with json-file log rotation
   and ``"live-restore": true``, so that containers keep running while dockerd restarts (an
   upgrade, a crash). docker.service is restarted to apply the log rotation only while no
   container runs, else it applies at the next restart. live-restore is one of the settings
   dockerd rereads on SIGHUP: when no restart is due, ``systemctl reload docker.service``
   applies it and the containers keep running. It is skipped, with a note, on an engine in
   swarm mode (Swarm.LocalNodeState other than ``inactive``), which does not support it, and on
   one that does not answer ``docker info``.
6. ``journald``: a size limit for the journal.
7. ``deploy-user``: the deploy user, in the docker group; no sudo rights are granted. It is given
   the login keys it lacks from the authorized_keys of the user provision connects as (root's, or
   the sudoer's own), never a key with a forced command (cloud images' "Please login as the user
   …" lines for root); its own keys are kept, and when provision connects as the deploy user
   itself its keys are left alone. ~/.ssh is made its own, 0700, and authorized_keys 0600.
8. ``state-dirs``: /var/lib/shipyard (0750) and its snapshots directory (0700), owned by it.
9. ``firewall``: an nftables table of its own allowing inbound TCP on SSH, 80 and 443 only,
   loaded now and at boot by ``shipyard-firewall.service``.
10. ``image-prune``: a daily systemd timer pruning unused images except shipyard's releases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from shipyard.docker import MIN_COMPOSE, MIN_DOCKER, version_problems
from shipyard.errors import ProvisionError, ShipyardError
from shipyard.hosts import Host
from shipyard.provision import _files as files
from shipyard.waiting import wait_until

__all__ = [
    "ProvisionError",
    "ProvisionOptions",
    "StepResult",
    "provision",
]

Status = Literal["changed", "unchanged", "failed"]

_PACKAGES: dict[tuple[str, str], list[str]] = {
    ("debian", "13"): ["docker.io", "docker-cli", "docker-compose", "nftables", "ca-certificates"],
    ("ubuntu", "24.04"): ["docker.io", "docker-compose-v2", "nftables", "ca-certificates"],
    ("debian", "12"): [
        "docker-ce",
        "docker-ce-cli",
        "containerd.io",
        "docker-compose-plugin",
        "nftables",
        "ca-certificates",
    ],
}
_DOCKER_APT = {  # Debian 12 only: its own repositories have no Compose v2
    "key_url": "https://download.docker.com/linux/debian/gpg",
    "key": "/etc/apt/keyrings/docker.asc",
    "sources": "/etc/apt/sources.list.d/docker.sources",
}


@dataclass(frozen=True)
class ProvisionOptions:
    deploy_user: str = "deploy"
    connected_as: str = "root"  # the SSH user provision runs as: its login keys go to deploy_user
    ssh_port: int = 22
    state_dir: str = "/var/lib/shipyard"
    journal_max_use: str = "500M"
    journal_max_file: str = "50M"
    docker_log_max_size: str = "10m"
    docker_log_max_file: int = 5
    prune_schedule: str = "daily"
    prune_until: str = "168h"
    docker_reload_timeout: float = 30.0  # for dockerd to take daemon.json after a reload
    poll_interval: float = 0.2


@dataclass(frozen=True)
class StepResult:
    step: str
    status: Status
    detail: str


class _Provisioner:
    def __init__(self, host: Host, options: ProvisionOptions) -> None:
        self.host = host
        self.options = options
        self.system: tuple[str, str] = ("", "")
        self.systemd = False

    # -- helpers ----------------------------------------------------------------------------------
    def ok(self, *argv: str) -> bool:
        return self.host.run(list(argv), check=False, timeout=120).ok

    def out(self, *argv: str) -> str:
        return self.host.run(list(argv), check=False, timeout=120).stdout.strip()

    def file(self, path: str, content: str, mode: int = 0o644) -> bool:
        """Write ``path`` when its content differs; True when it changed."""
        if self.host.get(PurePosixPath(path)) == content.encode():
            return False
        self.host.put(PurePosixPath(path), content.encode(), mode=mode)
        return True

    def enable(self, unit: str, *, start: bool) -> list[str]:
        """Enable (and with systemd running, start) ``unit``; what was done."""
        done = []
        if self.out("systemctl", "is-enabled", unit) != "enabled":
            self.host.run(["systemctl", "enable", unit], timeout=120)
            done.append(f"enabled {unit}")
        if start and self.systemd and self.out("systemctl", "is-active", unit) != "active":
            self.host.run(["systemctl", "start", unit], timeout=300)
            done.append(f"started {unit}")
        return done

    def reload_units(self) -> None:
        if self.systemd:
            self.host.run(["systemctl", "daemon-reload"], timeout=120)

    # -- steps ------------------------------------------------------------------------------------
    def os(self) -> tuple[Status, str]:
        text = (self.host.get(PurePosixPath("/etc/os-release")) or b"").decode()
        fields = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', text, re.MULTILINE))
        self.system = (fields.get("ID", "?"), fields.get("VERSION_ID", "?"))
        if self.system not in _PACKAGES:
            raise ProvisionError(
                f"{self.host.name} runs {fields.get('PRETTY_NAME', 'an unknown system')}; "
                "provision supports Debian 12, Debian 13 and Ubuntu 24.04",
                hint=f"set the host up by hand: Docker ≥ {_dotted(MIN_DOCKER)}, "
                f"Compose v2 ≥ {_dotted(MIN_COMPOSE)}",
            )
        self.systemd = self.ok("test", "-d", "/run/systemd/system")
        init = "systemd running" if self.systemd else "systemd NOT running"
        return "unchanged", f"{fields.get('PRETTY_NAME', '?')}; {init}"

    def packages(self) -> tuple[Status, str]:
        wanted = _PACKAGES[self.system]
        status = self.host.run(
            ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\\n", *wanted],
            check=False,
            timeout=120,
        ).stdout
        installed = {line.split()[0] for line in status.splitlines() if line.split()[1:2] == ["ii"]}
        missing = [p for p in wanted if p not in installed]
        if not missing:
            return "unchanged", "installed: " + ", ".join(wanted)
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        self.host.run([*env, "apt-get", "update", "-q"], timeout=900)
        if self.system == ("debian", "12"):
            self._docker_apt_repository()
            self.host.run([*env, "apt-get", "update", "-q"], timeout=900)
        self.host.run(
            [*env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            timeout=1800,
        )
        return "changed", "installed " + ", ".join(missing)

    def _docker_apt_repository(self) -> None:
        self.host.run(
            [
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "curl",
                "ca-certificates",
            ],
            timeout=900,
        )
        self.host.run(["install", "-d", "-m", "0755", "/etc/apt/keyrings"])
        self.host.run(
            ["curl", "-fsSL", "-o", _DOCKER_APT["key"], _DOCKER_APT["key_url"]], timeout=120
        )
        codename = self.out("sh", "-c", '. /etc/os-release && printf %s "$VERSION_CODENAME"')
        arch = self.out("dpkg", "--print-architecture")
        sources = (
            "Types: deb\nURIs: https://download.docker.com/linux/debian\n"
            f"Suites: {codename}\nComponents: stable\nArchitectures: {arch}\n"
            f"Signed-By: {_DOCKER_APT['key']}\n"
        )
        self.file(_DOCKER_APT["sources"], sources)

    def docker_service(self) -> tuple[Status, str]:
        done = self.enable("docker.service", start=True)
        if not self.systemd:
            raise ProvisionError(
                "systemd is not running on this host (PID 1 is "
                f"{self.out('cat', '/proc/1/comm') or '?'}): docker.service is enabled for the next "
                "boot but cannot be started now"
            )
        return ("changed" if done else "unchanged"), "; ".join(done) or "enabled and running"

    def tools(self) -> tuple[Status, str]:
        client = self.out("docker", "version", "--format", "{{.Client.Version}}")
        compose = self.out("docker", "compose", "version", "--short")
        problems = version_problems(client, compose)
        if problems:
            raise ProvisionError("; ".join(problems))
        return "unchanged", f"docker {client}, compose {compose}"

    def docker_daemon(self) -> tuple[Status, str]:
        current = self.host.get(PurePosixPath(files.DAEMON_JSON))
        try:
            existing = json.loads(current) if current else {}
        except json.JSONDecodeError as exc:
            raise ProvisionError(f"{files.DAEMON_JSON} is not valid JSON: {exc}") from exc
        size, count = self.options.docker_log_max_size, self.options.docker_log_max_file
        swarm, live = self.engine_state()
        # Docker refuses live-restore in swarm mode; an engine that does not answer is not guessed at.
        live_restore = swarm == "inactive"
        content = files.docker_daemon(existing, size, count, live_restore=live_restore)
        wanted = json.loads(content)
        done = [f"json-file, {size} x {count}"]
        if live_restore:
            done.append("live-restore on")
        elif swarm:
            done.append(f"live-restore skipped: Docker does not support it in swarm mode ({swarm})")
        else:
            done.append("live-restore skipped: the engine did not answer `docker info`")
        written = current is None or wanted != existing
        if written:
            self.file(files.DAEMON_JSON, content)
        if not self.systemd or self.out("systemctl", "is-active", "docker.service") != "active":
            return ("changed" if written else "unchanged"), "; ".join(done)
        logs_changed = _without_live_restore(wanted) != _without_live_restore(existing)
        # A restart stops every container: only an idle engine is restarted. live-restore is one
        # of the settings dockerd rereads on SIGHUP, so an engine with containers takes it running.
        restart = logs_changed and self.idle()
        reload = not restart and live_restore and live != "true"
        if restart:
            self.host.run(["systemctl", "restart", "docker.service"], timeout=300)
            done.append("docker restarted")
        if reload:
            self.reload_docker()
            done.append("docker reloaded")
        if logs_changed and not restart:
            done.append(
                f"log rotation written to {files.DAEMON_JSON}, applies at the next restart of "
                "docker.service (not restarted now: containers are running), to containers "
                "created after it"
            )
        return ("changed" if written or restart or reload else "unchanged"), "; ".join(done)

    def engine_state(self) -> tuple[str, str]:
        """The engine's swarm state (``inactive`` outside a swarm) and whether live-restore is on
        (``true``/``false``); two empty strings when it does not answer."""
        result = self.host.run(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.LiveRestoreEnabled}}"],
            check=False,
            timeout=120,
        )
        fields = result.stdout.split() if result.ok else []
        return (fields[0], fields[1]) if len(fields) == 2 else ("", "")  # noqa: PLR2004

    def idle(self) -> bool:
        """Whether the engine runs no container (False when it cannot tell)."""
        running = self.host.run(["docker", "ps", "--quiet"], check=False, timeout=120)
        return running.ok and not running.stdout.strip()

    def reload_docker(self) -> None:
        """``systemctl reload docker.service`` (SIGHUP to dockerd), then wait until the engine
        reports live-restore on: dockerd rereads daemon.json after the signal, not before it."""
        result = self.host.run(["systemctl", "reload", "docker.service"], check=False, timeout=120)
        if not result.ok:
            raise ProvisionError(
                f"`systemctl reload docker.service` failed: {result.stderr.strip()[-300:]} "
                f"(live-restore is written to {files.DAEMON_JSON} and applies at the next restart)",
                hint="send dockerd a SIGHUP: systemctl kill --signal=HUP --kill-whom=main docker",
            )
        if not wait_until(
            lambda: self.engine_state()[1] == "true",
            timeout=self.options.docker_reload_timeout,
            interval=self.options.poll_interval,
        ):
            raise ProvisionError(
                "docker.service was reloaded but the engine still reports live-restore off "
                f"after {self.options.docker_reload_timeout:g}s",
                hint="`journalctl -u docker.service` shows why dockerd did not take "
                f"{files.DAEMON_JSON}",
            )

    def journald(self) -> tuple[Status, str]:
        content = files.journald_limits(self.options.journal_max_use, self.options.journal_max_file)
        if not self.file(files.JOURNALD_FILE, content):
            return "unchanged", f"SystemMaxUse={self.options.journal_max_use}"
        if self.systemd:
            self.host.run(["systemctl", "restart", "systemd-journald.service"], timeout=120)
        return "changed", f"SystemMaxUse={self.options.journal_max_use}"

    def deploy_user(self) -> tuple[Status, str]:
        user = self.options.deploy_user
        done = []
        if not self.ok("id", "-u", user):
            self.host.run(
                ["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", user]
            )
            done.append(f"created {user}")
        if "docker" not in self.out("id", "-nG", user).split():
            self.host.run(["usermod", "--append", "--groups", "docker", user])
            done.append("added to the docker group")
        kept = []
        if user == self.options.connected_as:  # the keys provision came in with: left alone
            kept.append(f"authorized keys of {user} left as they are (provision connects as it)")
        else:
            done += self.authorized_keys(user)
        status: Status = "changed" if done else "unchanged"
        return status, "; ".join((done or [f"{user} in group docker, no sudo"]) + kept)

    def authorized_keys(self, user: str) -> list[str]:
        """Add the login keys of the user provision connects as that ``user`` lacks; what was done."""
        source_user = self.options.connected_as
        source, home = self.home_of(source_user), self.home_of(user)
        ssh_dir = home / ".ssh"
        target = ssh_dir / "authorized_keys"
        if "symbolic link" in self.out("stat", "-c", "%F", str(ssh_dir), str(target)):
            raise ProvisionError(
                f"{ssh_dir} or {target} is a symbolic link: provision does not write through it",
                hint=f"replace it with a directory and a file owned by {user}",
            )
        offered = self.host.get(source / ".ssh" / "authorized_keys") or b""
        current = self.host.get(target)
        content, added = files.authorized_keys(current, offered)
        done = []
        if added:
            self.host.put(target, content, mode=0o600)
            done.append(f"{added} authorized key(s) of {source_user} added")
        elif current is None:
            raise ProvisionError(
                f"{user} has no authorized keys and {source / '.ssh/authorized_keys'} has no "
                "login key to give it (keys with a forced command are not copied)",
                hint=f"add the key deploys use to {target}, owned by {user}, mode 0600",
            )
        wanted = f"{user}:{user} 700\n{user}:{user} 600"
        if self.out("stat", "-c", "%U:%G %a", str(ssh_dir), str(target)) != wanted:
            self.host.run(["chown", f"{user}:{user}", str(ssh_dir), str(target)])
            self.host.run(["chmod", "0700", str(ssh_dir)])
            self.host.run(["chmod", "0600", str(target)])
            if not added:
                done.append(f"{target} set to {user}:{user} 0600")
        return done

    def home_of(self, user: str) -> PurePosixPath:
        entry = self.out("getent", "passwd", user).split(":")  # name:pw:uid:gid:gecos:home:shell
        if len(entry) != 7 or not entry[5].startswith("/"):  # noqa: PLR2004
            raise ProvisionError(f"{user} has no home directory in the password database")
        return PurePosixPath(entry[5])

    def state_dirs(self) -> tuple[Status, str]:
        user = self.options.deploy_user
        done = []
        for path, mode in (
            (self.options.state_dir, "750"),
            (f"{self.options.state_dir}/snapshots", "700"),
        ):
            if self.out("stat", "-c", "%U:%G %a", path) != f"{user}:{user} {mode}":
                self.host.run(["install", "-d", "-o", user, "-g", user, "-m", f"0{mode}", path])
                done.append(f"{path} {mode}")
        return ("changed" if done else "unchanged"), ", ".join(done) or "in place"

    def firewall(self) -> tuple[Status, str]:
        # 22 always, and the port shipyard reached SSH on (never lock the operator out).
        ports = sorted({22, 80, 443, self.options.ssh_port})
        changed = self.file(files.FIREWALL_FILE, files.firewall_rules(ports), mode=0o644)
        changed |= self.file(f"{files.UNIT_DIR}/{files.FIREWALL_UNIT}", files.firewall_unit())
        if changed:
            self.reload_units()
        done = self.enable(files.FIREWALL_UNIT, start=False)
        loaded = self.ok("nft", "list", "table", "inet", files.FIREWALL_TABLE)
        if changed or not loaded:
            result = self.host.run(["nft", "-f", files.FIREWALL_FILE], check=False, timeout=60)
            if not result.ok:
                raise ProvisionError(
                    f"`nft -f {files.FIREWALL_FILE}` failed: {result.stderr.strip()[-300:]} "
                    "(the rules are written and load at boot)"
                )
            done.append("rules loaded")
        allowed = "/".join(str(p) for p in sorted(set(ports)))
        if changed:
            done.insert(0, "rules written")
        return ("changed" if done else "unchanged"), "; ".join(
            done
        ) or f"inbound TCP {allowed} only"

    def image_prune(self) -> tuple[Status, str]:
        changed = self.file(
            f"{files.UNIT_DIR}/{files.PRUNE_SERVICE}", files.prune_service(self.options.prune_until)
        )
        changed |= self.file(
            f"{files.UNIT_DIR}/{files.PRUNE_TIMER}", files.prune_timer(self.options.prune_schedule)
        )
        if changed:
            self.reload_units()
        done = self.enable(files.PRUNE_TIMER, start=True)
        detail = f"{self.options.prune_schedule}, unused images older than {self.options.prune_until}, never label {files.APP_LABEL}"
        return ("changed" if changed or done else "unchanged"), detail


def provision(
    host: Host,
    options: ProvisionOptions,
    *,
    report: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run every step on ``host`` (as root: wrap a sudo user's host in ``SudoHost``)."""
    p = _Provisioner(host, options)
    steps: list[tuple[str, Callable[[], tuple[Status, str]]]] = [
        ("os", p.os),
        ("packages", p.packages),
        ("docker-service", p.docker_service),
        ("tools", p.tools),
        ("docker-daemon", p.docker_daemon),
        ("journald", p.journald),
        ("deploy-user", p.deploy_user),
        ("state-dirs", p.state_dirs),
        ("firewall", p.firewall),
        ("image-prune", p.image_prune),
    ]
    fatal = {"os", "packages"}  # the others need them
    results: list[StepResult] = []
    if host.run(["id", "-u"], check=False).stdout.strip() != "0":
        raise ProvisionError(
            f"provision needs root on {host.name}",
            hint="connect as root (--user root) or as a user with passwordless sudo (--sudo)",
        )
    for name, step in steps:
        try:
            status, detail = step()
        except ShipyardError as exc:
            if name in fatal:
                raise
            status, detail = "failed", exc.message
        result = StepResult(name, status, detail)
        results.append(result)
        if report is not None:
            report(result)
    return results


def _without_live_restore(document: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in document.items() if key != "live-restore"}


def _dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))
