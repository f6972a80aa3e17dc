"""The files ``shipyard provision`` writes on a host, rendered from its options (pure functions)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

FIREWALL_TABLE = "shipyard_filter"
FIREWALL_FILE = "/etc/shipyard/firewall.nft"
FIREWALL_UNIT = "shipyard-firewall.service"
PRUNE_SERVICE = "shipyard-image-prune.service"
PRUNE_TIMER = "shipyard-image-prune.timer"
JOURNALD_FILE = "/etc/systemd/journald.conf.d/shipyard.conf"
DAEMON_JSON = "/etc/docker/daemon.json"
UNIT_DIR = "/etc/systemd/system"
APP_LABEL = "org.shipyard.app"  # carried by every image shipyard builds
_KEY_TYPE = re.compile(r"(ssh|ecdsa|sk)-[A-Za-z0-9@.+-]+")


def firewall_rules(ports: Sequence[int]) -> str:
    """An nftables table of its own: inbound only on ``ports`` (TCP), loopback, replies, ICMP
    (IPv6 neighbour discovery included) and DHCPv6 replies from the link (conntrack does not
    relate them to the multicast solicit, so "established,related" misses them).

    It lives beside Docker's own tables (never ``flush ruleset``), and is replaced atomically.
    """
    allowed = ", ".join(str(p) for p in sorted(set(ports)))
    return f"""#!/usr/sbin/nft -f
# Written by `shipyard provision`: inbound traffic only on TCP {allowed}.
# Docker's published ports are forwarded, not input: shipyard binds everything but the proxy to
# 127.0.0.1, so the proxy's 80/443 are the only public ones.
table inet {FIREWALL_TABLE}
delete table inet {FIREWALL_TABLE}
table inet {FIREWALL_TABLE} {{
	chain input {{
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		ct state invalid drop
		meta l4proto {{ icmp, ipv6-icmp }} accept
		ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept
		tcp dport {{ {allowed} }} accept
	}}
}}
"""


def firewall_unit() -> str:
    """Loads the rules before any network is up, ordered as Debian's ``nftables.service``: with
    systemd's default dependencies (after ``sysinit.target``), ``Before=network-pre.target`` makes
    an ordering cycle on hosts whose early boot brings up the network (cloud-init)."""
    return f"""[Unit]
Description=shipyard firewall (inbound SSH, HTTP and HTTPS only)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {FIREWALL_FILE}
ExecStop=/usr/sbin/nft delete table inet {FIREWALL_TABLE}

[Install]
WantedBy=multi-user.target
"""


def prune_service(until: str) -> str:
    """Prune unused images older than ``until``, sparing every image shipyard built.

    Releases kept for rollback are app images (label ``org.shipyard.app``); shipyard removes the
    ones beyond ``deploy.keep_releases`` itself after each deploy.
    """
    return f"""[Unit]
Description=shipyard: remove unused Docker images (never shipyard-built releases)
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
ExecStart=/usr/bin/docker image prune --all --force --filter until={until} --filter label!={APP_LABEL}
"""


def prune_timer(schedule: str) -> str:
    return f"""[Unit]
Description=shipyard: scheduled Docker image prune

[Timer]
OnCalendar={schedule}
RandomizedDelaySec=1h
Persistent=true

[Install]
WantedBy=timers.target
"""


def journald_limits(max_use: str, max_file: str) -> str:
    return f"""# Written by `shipyard provision`: bound the journal's disk use.
[Journal]
SystemMaxUse={max_use}
SystemMaxFileSize={max_file}
"""


def docker_daemon(
    existing: Mapping[str, Any] | None, max_size: str, max_file: int, *, live_restore: bool
) -> str:
    """``/etc/docker/daemon.json`` with log rotation and, when ``live_restore``, containers kept
    running while dockerd restarts (``"live-restore": true``); every other setting there is kept,
    a ``live-restore`` already set included when ``live_restore`` is false."""
    document = dict(existing or {})
    if live_restore:
        document["live-restore"] = True
    document["log-driver"] = "json-file"
    document["log-opts"] = {
        **dict(document.get("log-opts") or {}),
        "max-size": max_size,
        "max-file": str(max_file),
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def authorized_keys(current: bytes | None, offered: bytes) -> tuple[bytes, int]:
    """``current`` (an authorized_keys file, or None) with the keys of ``offered`` it lacks
    appended, and how many were added. Lines already there are kept byte for byte.

    Only login keys are offered: a line with a forced command is skipped (cloud images give root
    ``command="echo 'Please login as the user \\"ubuntu\\"…';exit 142"`` lines).
    """
    present = set()
    for line in (current or b"").decode(errors="replace").splitlines():
        if (parsed := _key_line(line)) is not None:
            present.add(parsed[1])
    added = []
    for line in offered.decode(errors="replace").splitlines():
        parsed = _key_line(line)
        if parsed is None or parsed[0] or parsed[1] in present:
            continue
        present.add(parsed[1])
        added.append(line.strip() + "\n")
    if not added:
        return current or b"", 0
    head = current or b""
    if head and not head.endswith(b"\n"):
        head += b"\n"
    return head + "".join(added).encode(), len(added)


def _key_line(line: str) -> tuple[bool, str] | None:
    """Whether an authorized_keys line forces a command, and its key (base64); None for blanks,
    comments and lines without a key."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    names = set()
    if not _KEY_TYPE.fullmatch(text.split(maxsplit=1)[0]):  # options come first (sshd(8))
        quoted, start, end = False, 0, 0
        while end < len(text) and (quoted or not text[end].isspace()):
            if quoted and text[end] == "\\":
                end += 1
            elif text[end] == '"':
                quoted = not quoted
            elif text[end] == "," and not quoted:
                names.add(text[start:end].split("=", 1)[0].lower())
                start = end + 1
            end += 1
        names.add(text[start:end].split("=", 1)[0].lower())
        text = text[end:]
    key = text.split()
    if not key[1:] or not _KEY_TYPE.fullmatch(key[0]):  # a type and its base64 at least
        return None
    return "command" in names, key[1]
