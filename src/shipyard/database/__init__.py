"""The app's PostgreSQL: extensions, migration state, migrations (golang-migrate).

Every statement runs inside the database container through ``docker exec`` on the local socket (no
password in argv); migrations run in a one-off golang-migrate container on the app's network with
the password in an env file written 0600 on the host.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.config import DatabaseSection
from shipyard.docker import Docker
from shipyard.errors import CommandFailed, ShipyardError

__all__ = [
    "Database",
    "DatabaseError",
    "MigrationError",
    "MigrationState",
    "local_migration_versions",
]

_MIGRATION_FILE = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.up\.sql$")


class DatabaseError(ShipyardError):
    """The database is unreachable, lacks an extension, or refused a statement."""


class MigrationError(DatabaseError):
    """A migration failed or the schema is dirty."""


@dataclass(frozen=True)
class MigrationState:
    version: int | None  # None: no migration ever ran
    dirty: bool


def local_migration_versions(directory: Path) -> list[int]:
    """Versions of the ``*.up.sql`` files in ``directory``, ascending."""
    if not directory.is_dir():
        return []
    return sorted(
        int(m.group("version")) for p in directory.iterdir() if (m := _MIGRATION_FILE.match(p.name))
    )


class Database:
    """One environment's PostgreSQL, running in ``container``."""

    def __init__(self, docker: Docker, container: str, section: DatabaseSection) -> None:
        self.docker = docker
        self.container = container
        self.section = section

    def sql(self, statements: str, *, timeout: float = 120) -> str:
        """Run SQL as the owner over the container's local socket; rows as ``a|b`` lines."""
        try:
            result = self.docker.exec(
                self.container,
                [
                    "psql",
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    self.section.user,
                    "-d",
                    self.section.name,
                ],
                stdin=statements,
                timeout=timeout,
            )
        except CommandFailed as exc:
            raise DatabaseError(
                f"database {self.section.name}: {exc.stderr.strip()[-500:]}"
            ) from exc
        return result.stdout

    def ensure_extensions(self, extensions: Sequence[str]) -> dict[str, str]:
        """Create the extensions if missing, then verify each exists; returns name → version."""
        if extensions:
            create = "".join(f'CREATE EXTENSION IF NOT EXISTS "{name}";\n' for name in extensions)
            try:
                self.sql(create)
            except DatabaseError as exc:
                available = set(self.sql("SELECT name FROM pg_available_extensions;").split())
                missing = [name for name in extensions if name not in available]
                if missing:
                    raise DatabaseError(
                        f"the database image lacks extension(s) {', '.join(missing)}",
                        hint=f"use an image that ships them (database.image is {self.section.image})",
                    ) from exc
                raise
        installed = dict(
            line.split("|", 1)
            for line in self.sql("SELECT extname, extversion FROM pg_extension;").splitlines()
            if "|" in line
        )
        missing = [name for name in extensions if name not in installed]
        if missing:
            raise DatabaseError(f"extensions missing after CREATE EXTENSION: {', '.join(missing)}")
        return {name: installed[name] for name in extensions}

    def migration_state(self) -> MigrationState:
        exists = self.sql("SELECT to_regclass('public.schema_migrations') IS NOT NULL;").strip()
        if exists != "t":
            return MigrationState(None, False)
        row = self.sql("SELECT version, dirty FROM schema_migrations LIMIT 1;").strip()
        if not row:
            return MigrationState(None, False)
        version, dirty = row.split("|")
        return MigrationState(int(version), dirty == "t")

    def migrate(
        self,
        *,
        migrations: PurePosixPath,
        network: str,
        env_file: PurePosixPath,
        timeout: float,
        image: str,
    ) -> str:
        """Apply pending migrations with golang-migrate; returns its output.

        ``env_file`` on the host holds ``PGPASSWORD``; the URL carries no password.
        """
        url = f"postgres://{self.section.user}@{self.container}:5432/{self.section.name}?sslmode=disable"
        try:
            result = self.docker.run_oneoff(
                image,
                ["-path", "/migrations", "-database", url, "up"],
                network=network,
                env_file=env_file,
                mounts=[(migrations, "/migrations")],
                timeout=timeout,
            )
        except CommandFailed as exc:
            state = self._state_after_failure()
            raise MigrationError(
                f"migration failed: {exc.stderr.strip()[-800:]}{state}",
                hint="the app was not changed; fix the migration (and `migrate force` if dirty) then deploy again",
            ) from exc
        return (result.stdout + result.stderr).strip()

    def _state_after_failure(self) -> str:
        try:
            state = self.migration_state()
        except DatabaseError:
            return ""
        if state.dirty:
            return f" (schema is dirty at version {state.version})"
        return f" (schema at version {state.version})"
