"""An environment's resources on DigitalOcean, each found by the environment's tag
(``shipyard:<app>:<environment>``): the operator's SSH key in the account, the Droplet, its cloud
firewall and, when asked, a reserved IP.

The Droplet is created from ``providers.digitalocean``'s image and size with the operator's key
for root, and with a host key shipyard generates for it (cloud-init installs it, the image's own
are deleted): its public half goes into known_hosts before the first connection, so that
connection is verified like every other (an unknown host key is never accepted). The firewall
admits SSH from ``ssh_sources`` and HTTP and HTTPS from anywhere, nothing else. With
``database``, a Managed PostgreSQL cluster too (``_cluster``). ``plan`` reads only; ``ensure``
makes what is missing, then waits for the Droplet to be active with an address; ``removal``
lists what destroy deletes: only what carries the environment's tag.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.config import DigitalOceanSection
from shipyard.errors import ConfigError, ShipyardError
from shipyard.hosts import Host
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.digitalocean._api import DoApi, awaited, tagged_one
from shipyard.providers.digitalocean._cluster import ONLINE_TIMEOUT, DoCluster
from shipyard.waiting import Clock, Interval, wait_until

_POLL = Interval(2.0, 1.5, 10.0)
_ANYWHERE = ["0.0.0.0/0", "::/0"]


@dataclass(frozen=True)
class DoNames:
    """The names of an environment's resources on DigitalOcean."""

    app: str
    environment: str

    @property
    def tag(self) -> str:
        return f"shipyard:{self.app}:{self.environment}"

    @property
    def droplet(self) -> str:
        return f"shipyard-{self.app}-{self.environment}"

    @property
    def firewall(self) -> str:
        return self.droplet


class DropletNotReady(ShipyardError):
    """The Droplet did not become active with an address in time."""


class DoResources:
    """The environment's resources on DigitalOcean (see the module)."""

    def __init__(
        self,
        names: DoNames,
        settings: DigitalOceanSection,
        region: str,
        api: DoApi,
        *,
        public_key: Path,
        known_hosts: Path,
        config_file: str = "shipyard.yml",
        clock: Clock | None = None,
        cluster: DoCluster | None = None,
    ) -> None:
        self.names = names
        self.cluster = cluster
        self.settings = settings
        self.region = region
        self.api = api
        self.public_key = public_key
        self.known_hosts = known_hosts
        self.config_file = config_file
        self.clock = clock or Clock()

    # -- what exists ---------------------------------------------------------------------------
    def _droplets(self) -> list[dict[str, Any]]:
        return self.api.pages("/v2/droplets", "droplets", tag_name=self.names.tag)

    def droplet(self) -> dict[str, Any] | None:
        """The environment's Droplet; more than one tagged as its own is refused."""
        return tagged_one(self._droplets(), "Droplets", self.names.tag)

    def address(self, droplet: dict[str, Any] | None = None) -> str | None:
        """Where the Droplet answers: its reserved IP when it has one, else its public IPv4."""
        droplet = droplet if droplet is not None else self.droplet()
        if droplet is None:
            return None
        reserved = self._reserved(droplet["id"]) if self.settings.reserved_ip else None
        return reserved["ip"] if reserved else _public_v4(droplet)

    def _key(self) -> tuple[str, str]:
        """The operator's public key and its fingerprint (MD5, as DigitalOcean names keys)."""
        try:
            text = self.public_key.expanduser().read_text(encoding="utf-8").strip()
            blob = base64.b64decode(text.split()[1], validate=True)
        except (OSError, IndexError, ValueError) as exc:
            raise ConfigError.at(
                self.config_file, "providers.digitalocean.ssh_public_key",
                f"{self.public_key}: not a readable OpenSSH public key ({exc})",
            ) from exc  # fmt: skip
        digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        return text, ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    def _firewall(self) -> dict[str, Any] | None:
        found = self.api.pages("/v2/firewalls", "firewalls")
        return next((f for f in found if f.get("name") == self.names.firewall), None)

    def _reserved(self, droplet_id: int) -> dict[str, Any] | None:
        found = self.api.pages("/v2/reserved_ips", "reserved_ips")
        return next((r for r in found if (r.get("droplet") or {}).get("id") == droplet_id), None)

    # -- what a deploy needs -------------------------------------------------------------------
    def plan(self) -> list[Action]:
        """Every change ``ensure`` would make, in order; reads only. A cluster to create is
        asked for first (it takes minutes to come online) and its database made last."""
        cluster = self.cluster.plan() if self.cluster is not None else []
        first = [a for a in cluster if a.service == "database cluster"]
        return first + self._plan_droplet() + [a for a in cluster if a not in first]

    def _plan_droplet(self) -> list[Action]:
        actions = []
        key, fingerprint = self._key()
        keys = self.api.pages("/v2/account/keys", "ssh_keys")
        if fingerprint not in [k.get("fingerprint") for k in keys]:
            create = functools.partial(self.api.post, "/v2/account/keys",
                                       {"name": f"shipyard {self.public_key.name}", "public_key": key})  # fmt: skip
            actions.append(Action("ssh key", "import into the account", fingerprint, create))
        droplet = self.droplet()
        if droplet is None:
            s = self.settings
            actions.append(
                Action(
                    "droplet", f"create ({s.size}, {s.image}, {self.region}; root's key {fingerprint})",
                    self.names.droplet, functools.partial(self._create_droplet, fingerprint),
                )
            )  # fmt: skip
        if self.settings.firewall:
            firewall = self._firewall()
            if firewall is None:
                create = functools.partial(self.api.post, "/v2/firewalls", self._firewall_body())
                actions.append(
                    Action("firewall", "create (in: 22, 80, 443)", self.names.firewall, create)
                )
            elif _rules(firewall) != _rules(self._firewall_body()):
                update = functools.partial(
                    self.api.put, f"/v2/firewalls/{firewall['id']}", self._firewall_body()
                )
                actions.append(Action("firewall", "set the rules of", self.names.firewall, update))
        if self.settings.reserved_ip and (droplet is None or self._reserved(droplet["id"]) is None):
            actions.append(
                Action(
                    "reserved ip",
                    "reserve and assign to the Droplet",
                    self.names.droplet,
                    self._reserve,
                )
            )
        return actions

    def ensure(self, *, timeout: float = 600.0) -> list[Action]:
        """Make the planned changes; then the Droplet is active and has its address, and the
        cluster (if any) online."""
        actions = carry_out(self.plan())
        self._active(timeout)
        if self.cluster is not None:
            self.cluster.online(ONLINE_TIMEOUT)
        return actions

    def _firewall_body(self) -> dict[str, Any]:
        def inbound(port: str, sources: list[str]) -> dict[str, Any]:
            return {"protocol": "tcp", "ports": port, "sources": {"addresses": sources}}

        def outbound(protocol: str) -> dict[str, Any]:
            rule: dict[str, Any] = {"protocol": protocol, "destinations": {"addresses": _ANYWHERE}}
            if protocol != "icmp":
                rule["ports"] = "all"
            return rule

        return {
            "name": self.names.firewall,
            "inbound_rules": [
                inbound("22", list(self.settings.ssh_sources)),
                inbound("80", _ANYWHERE),
                inbound("443", _ANYWHERE),
            ],
            "outbound_rules": [outbound("tcp"), outbound("udp"), outbound("icmp")],
            "tags": [self.names.tag],
        }

    @property
    def host_key_alias(self) -> str:
        """The name the Droplet's host key is known by in known_hosts, whatever its address
        (ssh's HostKeyAlias): trusted before the Droplet exists, kept across a reserved IP."""
        return self.names.droplet

    def _create_droplet(self, fingerprint: str) -> None:
        private, public = _host_key()
        # Trusted first: a run stopped after the request still knows the key of the Droplet.
        self._trust(public)
        body = {
            "name": self.names.droplet,
            "region": self.region,
            "size": self.settings.size,
            "image": self.settings.image,
            "ssh_keys": [fingerprint],
            "tags": [self.names.tag, *self.settings.tags],
            "ipv6": True,
            "monitoring": True,
            "user_data": _cloud_config(private, public),
        }
        self.api.post("/v2/droplets", body)
        droplet = self._active(600.0)
        address = _public_v4(droplet)
        if address:
            self._serving(address, public, 300.0)

    def _serving(self, address: str, public: str, timeout: float) -> None:
        """Wait until SSH at ``address`` presents ``public``: cloud-init has installed it (the
        image's own key answers before that, and would be refused)."""

        def presented() -> bool:
            scan = subprocess.run(
                ["ssh-keyscan", "-T", "5", "-t", "ed25519", address],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return any(line.split(" ", 1)[-1] == public for line in scan.stdout.splitlines())

        if not wait_until(presented, timeout=timeout, interval=_POLL, clock=self.clock):
            raise DropletNotReady(
                f"Droplet {self.names.droplet} at {address}: SSH does not present the host key "
                f"shipyard gave it after {timeout:g}s",
                hint="cloud-init may still be running: `shipyard provision` again waits again",
            )

    def _reserve(self) -> None:
        droplet = self._active(600.0)
        self.api.post("/v2/reserved_ips", {"droplet_id": droplet["id"]})

    def _active(self, timeout: float) -> dict[str, Any]:
        """The Droplet, once active with a public address (``DropletNotReady`` after ``timeout``)."""
        return awaited(
            self.droplet, lambda d: d.get("status") == "active" and bool(_public_v4(d)),
            timeout=timeout, interval=_POLL, clock=self.clock,
            failure=lambda status: DropletNotReady(
                f"Droplet {self.names.droplet}: {status} after {timeout:g}s, not active",
                hint="see it in DigitalOcean's console; the next `shipyard provision` waits again",
            ),
        )  # fmt: skip

    # -- known hosts ---------------------------------------------------------------------------
    def _trust(self, *keys: str) -> None:
        """The Droplet presents one of ``keys``: known_hosts says so under its alias, in place
        of what it said before."""
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = []
        if self.known_hosts.exists():
            lines = [
                line
                for line in self.known_hosts.read_text(encoding="utf-8").splitlines()
                if line.split(" ", 1)[0] != self.host_key_alias
            ]
        lines += [f"{self.host_key_alias} {key}" for key in keys]
        self.known_hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def rotate_host_key(self, host: Host) -> None:
        """Replace the host key the Droplet got through ``user_data`` (which its metadata
        service keeps serving to any process on it) with one made on the Droplet, read over
        the connection the first key verified. Both are trusted while sshd changes over."""
        made = host.run(["sh", "-c", _NEW_HOST_KEY], check=True)
        public = " ".join(made.stdout.split()[:2])
        before = self._known_keys()
        self._trust(*before, public)
        host.run(["sh", "-c", _USE_NEW_HOST_KEY], check=True)
        self._trust(public)

    def _known_keys(self) -> list[str]:
        if not self.known_hosts.exists():
            return []
        lines = self.known_hosts.read_text(encoding="utf-8").splitlines()
        return [
            line.split(" ", 1)[1] for line in lines if line.split(" ", 1)[0] == self.host_key_alias
        ]

    # -- destroy -------------------------------------------------------------------------------
    def removal(self) -> list[Action]:
        """Shipyard's cluster, the reserved IP, the firewall and the Droplet, when tagged as
        this environment's (the account's SSH key stays: other Droplets may use it)."""
        actions = self.cluster.removal() if self.cluster is not None else []
        droplets = self._droplets()
        for droplet in droplets:
            reserved = self._reserved(droplet["id"])
            if reserved is not None:  # deleting it unassigns it
                release = functools.partial(self.api.delete, f"/v2/reserved_ips/{reserved['ip']}")
                actions.append(Action("reserved ip", "release", reserved["ip"], release))
        firewall = self._firewall()
        if firewall is not None and self.names.tag in firewall.get("tags", []):
            delete = functools.partial(self.api.delete, f"/v2/firewalls/{firewall['id']}")
            actions.append(Action("firewall", "delete", self.names.firewall, delete))
        for droplet in droplets:
            delete = functools.partial(self.api.delete, f"/v2/droplets/{droplet['id']}")
            actions.append(Action("droplet", "delete (with its disk)", self.names.droplet, delete))
        return actions


def _public_v4(droplet: dict[str, Any]) -> str | None:
    for network in (droplet.get("networks") or {}).get("v4", []):
        if network.get("type") == "public":
            return str(network["ip_address"])
    return None


def _rules(firewall: dict[str, Any]) -> tuple[Any, ...]:
    """A firewall's rules as a comparable value (what DigitalOcean adds aside)."""

    def rule(r: dict[str, Any], side: str) -> tuple[str, str, tuple[str, ...]]:
        # "all" and no ports at all (icmp) are answered as "0".
        ports = str(r.get("ports") or "0").replace("all", "0")
        return (r["protocol"], ports, tuple(sorted(r[side].get("addresses", []))))

    return (
        sorted(rule(r, "sources") for r in firewall.get("inbound_rules", [])),
        sorted(rule(r, "destinations") for r in firewall.get("outbound_rules", [])),
    )


def _host_key() -> tuple[str, str]:
    """A new ed25519 host key: its private and public halves."""
    with tempfile.TemporaryDirectory(prefix="shipyard-hostkey-") as where:
        path = Path(where) / "key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shipyard", "-f", str(path)],
            check=True, capture_output=True,
        )  # fmt: skip
        private = path.read_text(encoding="utf-8")
        public = " ".join(path.with_suffix(".pub").read_text(encoding="utf-8").split()[:2])
    return private, public


# On the Droplet: a new ed25519 host key beside the one in use (its public half printed), then
# put in its place and sshd told to reread it (Ubuntu's socket-activated sshd reads it anew
# for each connection).
_NEW_HOST_KEY = (
    "set -e; umask 077; rm -f /etc/ssh/shipyard_host_key /etc/ssh/shipyard_host_key.pub; "
    "ssh-keygen -q -t ed25519 -N '' -C shipyard -f /etc/ssh/shipyard_host_key; "
    "cat /etc/ssh/shipyard_host_key.pub"
)
_USE_NEW_HOST_KEY = (
    "set -e; mv /etc/ssh/shipyard_host_key /etc/ssh/ssh_host_ed25519_key; "
    "mv /etc/ssh/shipyard_host_key.pub /etc/ssh/ssh_host_ed25519_key.pub; "
    "systemctl reload ssh.service 2>/dev/null || systemctl reload sshd.service 2>/dev/null || true"
)


def _cloud_config(private: str, public: str) -> str:
    """cloud-init's configuration: the image's host keys replaced by shipyard's."""
    indented = "".join(f"    {line}\n" for line in private.strip().splitlines())
    return (
        "#cloud-config\n"
        "ssh_deletekeys: true\n"
        "ssh_genkeytypes: []\n"
        "ssh_keys:\n"
        "  ed25519_private: |\n"
        f"{indented}"
        f"  ed25519_public: {public}\n"
    )
