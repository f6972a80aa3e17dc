"""The RDS for PostgreSQL instance shipyard creates for an environment (``providers.aws.rds``).

The instance ``<stem>`` runs in a DB subnet group of the environment's subnets, behind its
database security group (``AwsNetwork``), with a parameter group of its own (``postgres<major>``),
encrypted storage, automated backups kept ``backup_retention_days``, tags copied to its
snapshots, and its master password managed by RDS in Secrets Manager
(``ManageMasterUserPassword``): shipyard never sees nor stores it. ``plan`` lists what
``ensure`` would create, and what differs from the settings on an existing instance (``ensure``
applies that at the next maintenance window, never at once). ``removal`` never includes the
instance unless asked (destroy's ``--volumes``), and then RDS takes a final snapshot first; the
subnet and parameter groups go once no instance uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shipyard.config import RdsSection
from shipyard.errors import ShipyardError
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._network import AwsNetwork
from shipyard.providers.aws._settings import AwsNames, AwsSettings
from shipyard.waiting import Clock, Interval, wait_until

POLL = Interval(10.0, 1.5, 30.0)  # an instance takes minutes: no need to ask often


@dataclass(frozen=True)
class Connection:
    """What a task needs to reach the database: plain variables, and variables ECS reads from
    Secrets Manager (name → ``valueFrom``); ``secret_arn``: the secret the execution role must
    be allowed to read."""

    env: Mapping[str, str]
    secrets: Mapping[str, str]
    secret_arn: str


class DatabaseNotReady(ShipyardError):
    """The instance did not become available in time, or ended in a state it cannot serve from."""


class RdsDatabase:
    """The environment's RDS instance (see the module)."""

    def __init__(
        self,
        names: AwsNames,
        settings: AwsSettings,
        rds: RdsSection,
        clients: Clients,
        network: AwsNetwork,
        *,
        database: str,
        user: str,
        clock: Clock | None = None,
    ) -> None:
        self.names = names
        self.settings = settings
        self.rds = rds
        self.clients = clients
        self.network = network
        self.database = database
        self.user = user
        self.clock = clock or Clock()
        self.tags = [{"Key": k, "Value": v} for k, v in names.tags(settings.tags).items()]

    def _call(self, action: str, what: str, /, **params: Any) -> Any:
        return self.clients.call("rds", action, what, **params)

    def instance(self) -> dict[str, Any] | None:
        name = self.names.database
        found = self.clients.find(
            "rds", "DescribeDBInstances", name, missing="DBInstanceNotFound",
            DBInstanceIdentifier=name,
        )  # fmt: skip
        if found is None:
            return None
        instance: dict[str, Any] = found["DBInstances"][0]
        return instance

    def _exists(self, action: str, key: str, not_found: str, listed: str) -> bool:
        """Whether the group ``key`` names exists (AWS answers ``not_found``; some endpoints
        answer an empty ``listed`` instead)."""
        name = self.names.database
        found = self.clients.find("rds", action, name, missing=not_found, **{key: name})
        return found is not None and bool(found.get(listed))

    def plan(self) -> list[Action]:
        name, family = self.names.database, f"postgres{self.rds.engine_version.split('.')[0]}"
        actions = []
        if not self._exists(
            "DescribeDBSubnetGroups",
            "DBSubnetGroupName",
            "DBSubnetGroupNotFoundFault",
            "DBSubnetGroups",
        ):
            actions.append(Action("rds", "create DB subnet group", name, self._create_subnet_group))
        if not self._exists(
            "DescribeDBParameterGroups",
            "DBParameterGroupName",
            "DBParameterGroupNotFound",
            "DBParameterGroups",
        ):
            create_parameters = self.clients.later(
                "rds", "CreateDBParameterGroup", name, DBParameterGroupName=name,
                DBParameterGroupFamily=family, Tags=self.tags,
                Description=f"shipyard {self.names.app} {self.names.environment}",
            )  # fmt: skip
            actions.append(
                Action("rds", f"create DB parameter group ({family})", name, create_parameters)
            )
        instance = self.instance()
        if instance is None:
            actions.append(
                Action(
                    "rds",
                    f"create PostgreSQL {self.rds.engine_version} instance ({self.rds.instance_class}, "
                    f"{self.rds.storage_gb} GiB, multi-AZ {'on' if self.rds.multi_az else 'off'}, "
                    f"backups {self.rds.backup_retention_days} days)",
                    name,
                    self._create,
                )
            )
        else:
            actions += self._drift(instance)
        return actions

    def _create_subnet_group(self) -> None:
        name = self.names.database
        self._call(
            "CreateDBSubnetGroup", name, DBSubnetGroupName=name,
            DBSubnetGroupDescription=f"shipyard {self.names.app} {self.names.environment}",
            SubnetIds=self.network.subnets(), Tags=self.tags,
        )  # fmt: skip

    def _create(self) -> None:
        name = self.names.database
        self._call(
            "CreateDBInstance", name, DBInstanceIdentifier=name, Engine="postgres",
            EngineVersion=self.rds.engine_version, DBInstanceClass=self.rds.instance_class,
            AllocatedStorage=self.rds.storage_gb, StorageType="gp3", StorageEncrypted=True,
            MultiAZ=self.rds.multi_az, BackupRetentionPeriod=self.rds.backup_retention_days,
            DBName=self.database, MasterUsername=self.user, ManageMasterUserPassword=True,
            DBSubnetGroupName=name, DBParameterGroupName=name,
            VpcSecurityGroupIds=self.network.security_groups("database"), PubliclyAccessible=False,
            CopyTagsToSnapshot=True, DeletionProtection=self.rds.deletion_protection,
            Tags=self.tags,
        )  # fmt: skip

    def _drift(self, instance: dict[str, Any]) -> list[Action]:
        wanted = {
            "DBInstanceClass": self.rds.instance_class,
            "AllocatedStorage": self.rds.storage_gb,
            "MultiAZ": self.rds.multi_az,
            "BackupRetentionPeriod": self.rds.backup_retention_days,
            "DeletionProtection": self.rds.deletion_protection,
        }
        changed = {key: value for key, value in wanted.items() if instance.get(key) != value}
        if not changed:
            return []
        name = self.names.database
        described = ", ".join(f"{k} {instance.get(k)} → {v}" for k, v in changed.items())
        modify = self.clients.later(
            "rds", "ModifyDBInstance", name, DBInstanceIdentifier=name, ApplyImmediately=False,
            **changed,
        )  # fmt: skip
        return [Action("rds", f"modify instance at its next maintenance window ({described})",
                       name, modify)]  # fmt: skip

    def ensure(self, *, timeout: float = 3600) -> list[Action]:
        """Make the planned changes, then wait until the instance is available."""
        actions = carry_out(self.plan())
        self.wait_available(timeout)
        return actions

    def wait_available(self, timeout: float) -> dict[str, Any]:
        name = self.names.database
        found = wait_until(
            self.instance, timeout=timeout, interval=POLL, clock=self.clock,
            done=lambda i: i is not None and i.get("DBInstanceStatus") in _SETTLED,
        )  # fmt: skip
        if found is None or found.get("DBInstanceStatus") != "available":
            state = found.get("DBInstanceStatus") if found else "not available"
            raise DatabaseNotReady(
                f"RDS instance {name}: {state} after {timeout:g}s",
                hint="see its events in the RDS console; the next deploy waits for it again",
            )
        return found

    def endpoint(self) -> tuple[str, int]:
        instance = self.instance() or {}
        endpoint = instance.get("Endpoint") or {}
        return str(endpoint.get("Address", "")), int(endpoint.get("Port", 5432))

    def master_secret_arn(self) -> str | None:
        """The Secrets Manager secret RDS keeps the master password in."""
        secret = (self.instance() or {}).get("MasterUserSecret") or {}
        arn = secret.get("SecretArn")
        return str(arn) if arn else None

    def connection(self) -> Connection:
        """How the app's tasks reach the instance without shipyard ever reading its password:
        ``DATABASE_URL`` names host, port, user and database (no password; TLS required), and
        ``PGPASSWORD`` is the ``password`` key of the secret RDS keeps it in, which ECS reads at
        start (libpq, pgx and golang-migrate take the password from it when the URL has none).
        ``DatabaseNotReady`` before the instance has an endpoint and its secret."""
        instance = self.instance() or {}
        endpoint = instance.get("Endpoint") or {}
        arn = (instance.get("MasterUserSecret") or {}).get("SecretArn")
        if not endpoint.get("Address") or not arn:
            raise DatabaseNotReady(
                f"RDS instance {self.names.database} has no endpoint or password secret yet",
                hint="the next deploy waits for it again",
            )
        host, port = endpoint["Address"], int(endpoint.get("Port", 5432))
        url = f"postgres://{self.user}@{host}:{port}/{self.database}?sslmode=require"
        return Connection(
            env={"DATABASE_URL": url}, secrets={"PGPASSWORD": f"{arn}:password::"}, secret_arn=arn
        )

    def removal(self, *, instance: bool) -> list[Action]:
        """What destroy removes: with ``instance``, the instance (after a final snapshot)."""
        found = self.instance()
        if not instance or found is None or found.get("DBInstanceStatus") == "deleting":
            return []  # (an earlier destroy asked already: RDS is deleting it)
        tags = {t["Key"]: t["Value"] for t in found.get("TagList", [])}
        if not self.names.owns(tags):
            return []
        name = self.names.database
        if found.get("DeletionProtection"):
            raise ShipyardError(
                f"RDS instance {name} has deletion protection: it was kept",
                hint="set providers.aws.rds.deletion_protection: false, deploy, then destroy",
            )
        final = f"{name}-final-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        delete = self.clients.later(
            "rds", "DeleteDBInstance", name, DBInstanceIdentifier=name,
            SkipFinalSnapshot=False, FinalDBSnapshotIdentifier=final,
            DeleteAutomatedBackups=False,
        )  # fmt: skip
        return [Action("rds", f"delete instance (final snapshot {final})", name, delete)]

    def remove_groups(self) -> list[Action]:
        """Delete the subnet and parameter groups tagged as this environment's (once no
        instance uses them); returns what was deleted."""
        name, actions = self.names.database, []
        for kind, api, key, missing, listed, arn in (
            ("subnet", "DBSubnetGroup", "DBSubnetGroupName", "DBSubnetGroupNotFoundFault",
             "DBSubnetGroups", "DBSubnetGroupArn"),
            ("parameter", "DBParameterGroup", "DBParameterGroupName", "DBParameterGroupNotFound",
             "DBParameterGroups", "DBParameterGroupArn"),
        ):  # fmt: skip
            found = self.clients.find(
                "rds", f"Describe{api}s", name, missing=missing, **{key: name}
            )
            groups = (found or {}).get(listed, [])
            if not groups:
                continue
            tags = self._call("ListTagsForResource", name, ResourceName=groups[0][arn])
            if self.names.owns({t["Key"]: t["Value"] for t in tags.get("TagList", [])}):
                delete = self.clients.later("rds", f"Delete{api}", name, **{key: name})
                actions.append(Action("rds", f"delete DB {kind} group", name, delete))
        return carry_out(actions)


_SETTLED = frozenset(
    {"available", "failed", "incompatible-parameters", "incompatible-network", "storage-full"}
)
