"""An environment's Managed PostgreSQL cluster on DigitalOcean (``providers.digitalocean.
database``): shipyard's own (``shipyard-<app>-<environment>``, tagged as the environment's) or
the operator's, named by ``cluster``. In it, ``database.name``; its trusted sources admit the
environment's tag, which the Droplet carries. ``plan`` reads only; ``url`` is the app's
database URL, over the region's private network, as the cluster's admin user."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

from shipyard.config import DoDatabaseSection
from shipyard.errors import ConfigError, ShipyardError
from shipyard.providers._actions import Action
from shipyard.providers.digitalocean._api import DoApi, awaited, tagged_one
from shipyard.waiting import Clock, Interval

_POLL = Interval(5.0, 1.5, 30.0)
# A new cluster takes minutes to come online (DigitalOcean says 5 or more).
ONLINE_TIMEOUT = 1800.0


class ClusterNotReady(ShipyardError):
    """The cluster did not come online in time."""


class DoCluster:
    """The environment's cluster (see the module)."""

    def __init__(
        self,
        section: DoDatabaseSection,
        *,
        name: str,
        tag: str,
        region: str,
        database: str,
        api: DoApi,
        config_file: str = "shipyard.yml",
        clock: Clock | None = None,
    ) -> None:
        self.section = section
        self.name = section.cluster or name
        self.tag = tag
        self.region = region
        self.database = database
        self.api = api
        self.config_file = config_file
        self.clock = clock or Clock()

    @property
    def owned(self) -> bool:
        """Whether shipyard made it (and destroy may delete it)."""
        return self.section.cluster is None

    def find(self) -> dict[str, Any] | None:
        """The cluster: the operator's by name, or shipyard's by the environment's tag (more
        than one is refused)."""
        if not self.owned:
            found = self.api.pages("/v2/databases", "databases")
            return next((c for c in found if c.get("name") == self.name), None)
        found = self.api.pages("/v2/databases", "databases", tag_name=self.tag)
        return tagged_one(found, "database clusters", self.tag)

    def plan(self) -> list[Action]:
        """Every change ``ensure`` would make, in order; reads only."""
        cluster = self.find()
        if cluster is None:
            if not self.owned:
                raise ConfigError.at(
                    self.config_file,
                    "providers.digitalocean.database.cluster",
                    f"no database cluster named {self.name!r} in the account",
                )
            s = self.section
            return [
                Action(
                    "database cluster",
                    f"create (PostgreSQL {s.version}, {s.size}, {s.nodes} node(s), "
                    f"{self.region}; admits {self.tag})",
                    self.name,
                    self._create,
                ),
                Action(
                    "database",
                    f"create in cluster {self.name}, once it is online",
                    self.database,
                    lambda: self._add_database(self.online(ONLINE_TIMEOUT)["id"]),
                ),
            ]
        actions = []
        if self.database not in (cluster.get("db_names") or []):
            actions.append(
                Action(
                    "database",
                    f"create in cluster {self.name}",
                    self.database,
                    functools.partial(self._add_database, cluster["id"]),
                )
            )
        rules = self.api.get(f"/v2/databases/{cluster['id']}/firewall").get("rules") or []
        if not any(r.get("type") == "tag" and r.get("value") == self.tag for r in rules):
            admit = functools.partial(self._admit, cluster["id"], rules)
            actions.append(
                Action("database trusted sources", f"admit {self.tag} to", self.name, admit)
            )
        return actions

    def _create(self) -> None:
        s = self.section
        body = {
            "name": self.name,
            "engine": "pg",
            "version": s.version,
            "region": self.region,
            "size": s.size,
            "num_nodes": s.nodes,
            "tags": [self.tag],
            "rules": [{"type": "tag", "value": self.tag}],
        }
        self.api.post("/v2/databases", body)

    def _add_database(self, cluster_id: str) -> None:
        self.api.post(f"/v2/databases/{cluster_id}/dbs", {"name": self.database})

    def _admit(self, cluster_id: str, rules: list[dict[str, Any]]) -> None:
        kept = [{"type": r["type"], "value": r["value"]} for r in rules]
        self.api.put(
            f"/v2/databases/{cluster_id}/firewall",
            {"rules": [*kept, {"type": "tag", "value": self.tag}]},
        )

    def online(self, timeout: float) -> dict[str, Any]:
        """The cluster, once online (``ClusterNotReady`` after ``timeout`` seconds)."""
        return awaited(
            self.find, lambda cluster: cluster.get("status") == "online",
            timeout=timeout, interval=_POLL, clock=self.clock,
            failure=lambda status: ClusterNotReady(
                f"database cluster {self.name}: {status} after {timeout:g}s, not online",
                hint="see it in DigitalOcean's console; the next `shipyard provision` waits again",
            ),
        )  # fmt: skip

    def url(self) -> str:
        """The app's database URL: the cluster's private address (its public one when it has
        none), its admin user, ``database.name``, TLS required."""
        cluster = self.find()
        if cluster is None:
            raise ShipyardError(
                f"no database cluster {self.name} yet",
                hint="`shipyard provision ENV` creates it",
            )
        if cluster.get("status") in ("creating", "forking"):
            raise ShipyardError(
                f"database cluster {self.name} is {cluster['status']}, not online yet",
                hint="`shipyard provision ENV` waits for it",
            )
        connection = cluster.get("private_connection") or cluster.get("connection") or {}
        user, password = connection.get("user"), connection.get("password")
        host, port = connection.get("host"), connection.get("port")
        if not (user and password and host and port):
            raise ShipyardError(
                f"database cluster {self.name} ({cluster.get('status')}) gives no connection "
                "with its admin's credentials",
                hint="the token needs the database:view_credentials scope; a new cluster "
                "gives them once online",
            )
        return (
            f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
            f"{quote(self.database, safe='')}?sslmode=require"
        )

    def removal(self) -> list[Action]:
        """Delete shipyard's own cluster (the operator's named one stays)."""
        cluster = self.find() if self.owned else None
        if cluster is None or self.tag not in (cluster.get("tags") or []):
            return []
        delete = functools.partial(self.api.delete, f"/v2/databases/{cluster['id']}")
        return [Action("database cluster", "delete (with its data and backups)", self.name, delete)]
