"""Every name the stack on a Docker host uses (containers, projects, network, volumes,
labels), and where its files live on the host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

LABEL = "org.shipyard"


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
    def database_client(self) -> str:
        """The client beside the app through which shipyard reaches an external database."""
        return f"{self.prefix}-dbclient"

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
    def routed(self) -> tuple[str, str]:
        """The names the proxy routes to, in order of preference. A slot's container answers to
        no other name the proxy looks up (no network alias), so a candidate gets no request
        before it carries the live name."""
        return (self.live, self.switching)

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

    @property
    def monitoring_project(self) -> str:
        return f"{self.prefix}-monitoring"

    def monitoring(self, service: str) -> str:
        """The container of a monitoring service (prometheus, alertmanager, grafana, …)."""
        return f"{self.prefix}-{service}"

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
    def database_client_env(self) -> PurePosixPath:
        """libpq's variables for the external database's URL, for its client container."""
        return self.root / "infra" / "database-client.env"

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
