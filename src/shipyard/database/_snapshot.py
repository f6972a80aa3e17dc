"""Snapshots: ``pg_dump -Fc`` inside the database container (or, for an external database, the
client container beside the app), streamed to a file on the host.

Each ``<name>.dump`` has a ``<name>.json`` beside it (app, environment, version, commit,
deployment id, reason, size, sha256, duration). Every file operation goes through the ``Host`` seam
(``mkdir``, ``sha256sum``, ``stat``, ``rm`` and streaming ``docker exec``), so the same code works on
a remote host.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from shipyard.config import DatabaseSection
from shipyard.database._retention import RetentionPlan, SnapshotAge, plan_retention
from shipyard.docker import Docker
from shipyard.errors import CommandFailed, ShipyardError, SnapshotError

__all__ = [
    "RestoreTest",
    "Snapshot",
    "SnapshotError",
    "SnapshotStore",
    "parse_copy_counts",
    "parse_toc_count",
    "snapshot_name",
]

_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*_\d{8}T\d{6}Z_[0-9a-f]{1,12}(?:_\d+)?$")

# Counts data rows per table in a plain-SQL data stream (pg_restore --data-only -f -). A constant
# program: no value is ever formatted into it.
_COUNT_COPY_ROWS = (
    "pg_restore --data-only --file=- | awk '"
    "/^COPY / { table = $2; rows = 0; counting = 1; next } "
    '/^\\\\\\.$/ { if (counting) print table "|" rows; counting = 0; next } '
    "counting { rows++ }'"
)


# A TOC entry of ``pg_restore --list`` for an extension or its comment ("3; 3079 16385
# EXTENSION - vector", "4520; 0 0 COMMENT - EXTENSION vector").
_EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:EXTENSION|COMMENT - EXTENSION) ")


# Schema and name of every extension's configuration table, as ``schema|name`` rows.
_EXTENSION_CONFIG_TABLES = (
    "SELECT n.nspname, c.relname FROM pg_extension e CROSS JOIN unnest(e.extconfig) AS t(oid) "
    "JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace;"
)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot file and what is known about it."""

    name: str
    database: str
    app: str
    environment: str
    version: str
    commit: str
    deployment_id: str | None
    reason: str
    created_at: str  # ISO 8601 UTC
    size: int
    sha256: str
    duration_s: float
    toc_entries: int = 0
    server_version: str = ""
    path: str = field(default="", compare=False)

    @property
    def file(self) -> str:
        return f"{self.name}.dump"

    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RestoreTest:
    """Rows per table in the dump's data and in the scratch database it was restored into."""

    database: str
    tables: dict[str, tuple[int, int]]

    @property
    def ok(self) -> bool:
        return all(dumped == restored for dumped, restored in self.tables.values())

    @property
    def rows(self) -> int:
        return sum(restored for _, restored in self.tables.values())


def snapshot_name(database: str, when: datetime, commit: str) -> str:
    """``{database}_{UTC timestamp}_{short commit}``."""
    short = re.sub(r"[^0-9a-f]", "", commit.lower())[:7] or "0000000"
    return f"{database}_{when.astimezone(UTC).strftime(_STAMP)}_{short}"


def parse_toc_count(listing: str) -> int:
    """Number of TOC entries in ``pg_restore --list`` output (raises when it is not a listing)."""
    match = re.search(r"^;\s+TOC Entries:\s+(\d+)", listing, re.MULTILINE)
    if match is None:
        raise ValueError("not a pg_restore listing")
    return int(match.group(1))


def parse_copy_counts(output: str) -> dict[str, int]:
    """``table|rows`` lines → {table: rows}."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        table, sep, rows = line.rpartition("|")
        if sep and rows.strip().isdigit():
            counts[table.strip()] = counts.get(table.strip(), 0) + int(rows)
    return counts


class SnapshotStore:
    """The snapshots of one environment's database: create, list, verify, restore, prune."""

    def __init__(
        self,
        docker: Docker,
        container: str,
        section: DatabaseSection,
        directory: PurePosixPath,
        *,
        app: str,
        environment: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        keep_extensions: bool = False,
    ) -> None:
        """``keep_extensions``: a restore leaves the database's extensions as they are (an
        external database, whose provider's admin owns them)."""
        self.docker = docker
        self.keep_extensions = keep_extensions
        self.host = docker.host
        self.container = container
        self.section = section
        self.directory = directory
        self.app = app
        self.environment = environment
        self.clock = clock

    # -- files ---------------------------------------------------------------------------------
    def _path(self, name: str, suffix: str) -> PurePosixPath:
        return self.directory / f"{name}{suffix}"

    def _ensure_directory(self) -> None:
        self.host.run(["mkdir", "-p", "-m", "0700", str(self.directory)], timeout=30)
        self.host.run(["chmod", "0700", str(self.directory)], timeout=30)

    def _sha256(self, path: PurePosixPath) -> str:
        result = self.host.run(["sha256sum", str(path)], timeout=None)
        return result.stdout.split()[0]

    def _size(self, path: PurePosixPath) -> int:
        return int(self.host.run(["stat", "-c", "%s", str(path)], timeout=30).stdout.strip())

    def _partial(self, name: str) -> PurePosixPath:
        """Where ``name`` is dumped until it is complete (named after the app and environment,
        so a directory shared by several environments keeps each one's apart)."""
        return self._path(name, f".dump.{self.app}-{self.environment}.partial")

    def _remove(self, name: str) -> None:
        self.host.run(
            [
                "rm",
                "-f",
                str(self._path(name, ".dump")),
                str(self._path(name, ".json")),
                str(self._partial(name)),
            ],
            timeout=60,
        )

    def remove_partial(self) -> list[str]:
        """Remove this environment's dumps that were cut short (their writer is gone: call it
        holding the environment's lock, which every snapshot is taken under)."""
        result = self.host.run(
            [
                "find", str(self.directory), "-maxdepth", "1", "-type", "f",
                "-name", f"*.dump.{self.app}-{self.environment}.partial", "-print", "-delete",
            ],
            check=False,
            timeout=60,
        )  # fmt: skip
        return [PurePosixPath(line).name for line in result.stdout.splitlines() if line.strip()]

    # -- create -------------------------------------------------------------------------------------
    def create(
        self, *, reason: str, version: str, commit: str, deployment_id: str | None
    ) -> Snapshot:
        """Dump, checksum, verify and describe the database. On any failure nothing is left behind."""
        self._ensure_directory()
        now = self.clock()
        name = snapshot_name(self.section.name, now, commit)
        existing = set(self._names())
        suffix = 2
        base = name
        while name in existing:
            name, suffix = f"{base}_{suffix}", suffix + 1
        dump = self._path(name, ".dump")
        # Written under a name no listing shows, renamed once complete and verified: a dump cut
        # short (shipyard killed meanwhile) is never taken for a snapshot, and the next operation
        # removes it (``remove_partial``).
        partial = self._partial(name)
        started = time.monotonic()
        try:
            self.docker.exec_streaming(
                self.container,
                [
                    "pg_dump",
                    "--format=custom",
                    f"--compress={self.section.snapshots.compression}",
                    "--no-password",
                    "-U",
                    self.section.user,
                    "-d",
                    self.section.name,
                ],
                stdout_path=partial,
                timeout=self.section.snapshots.timeout,
            )
        except CommandFailed as exc:
            self._remove(name)
            raise SnapshotError(
                f"snapshot of database {self.section.name} to {self.host.name}:{dump} failed: "
                f"{_tail(exc.stderr)}",
                hint=_space_hint(exc.stderr, self.directory),
            ) from exc
        try:
            toc = self._list(partial)
            snapshot = Snapshot(
                name=name,
                database=self.section.name,
                app=self.app,
                environment=self.environment,
                version=version,
                commit=commit,
                deployment_id=deployment_id,
                reason=reason,
                created_at=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                size=self._size(partial),
                sha256=self._sha256(partial),
                duration_s=round(time.monotonic() - started, 3),
                toc_entries=toc,
                server_version=self._server_version(),
                path=str(dump),
            )
            self.host.run(["mv", "-f", str(partial), str(dump)], timeout=60)
            self.host.put(
                self._path(name, ".json"),
                (json.dumps(snapshot.to_dict(), indent=2) + "\n").encode(),
                mode=0o600,
            )
        except (ShipyardError, OSError) as exc:
            self._remove(name)
            message = exc.message if isinstance(exc, ShipyardError) else str(exc)
            raise SnapshotError(
                f"snapshot {name} could not be verified or recorded: {message}",
                hint=_space_hint(message, self.directory),
            ) from exc
        return snapshot

    def _server_version(self) -> str:
        """The server's version, as it says it (the container may be a client of another)."""
        result = self.docker.exec(
            self.container,
            ["psql", "-X", "-At", "-U", self.section.user, "-d", self.section.name, "-c",
             "SELECT 'PostgreSQL ' || current_setting('server_version')"],
            check=False, timeout=30,
        )  # fmt: skip
        return result.stdout.strip()

    def _list(self, dump: PurePosixPath) -> int:
        try:
            result = self.docker.exec_streaming(
                self.container, ["pg_restore", "--list"], stdin_path=dump, timeout=600
            )
        except CommandFailed as exc:
            raise SnapshotError(
                f"{dump} is not a readable pg_dump archive: {_tail(exc.stderr)}"
            ) from exc
        try:
            return parse_toc_count(result.stdout)
        except ValueError as exc:
            raise SnapshotError(f"pg_restore --list of {dump} printed no TOC") from exc

    # -- read -------------------------------------------------------------------------------------------
    def _names(self) -> list[str]:
        result = self.host.run(
            ["find", str(self.directory), "-maxdepth", "1", "-name", "*.json"],
            check=False,
            timeout=60,
        )
        if not result.ok:
            return []
        return sorted(
            PurePosixPath(line).stem
            for line in result.stdout.splitlines()
            if _NAME.match(PurePosixPath(line).stem)
        )

    def snapshots(self) -> list[Snapshot]:
        """Snapshots with metadata, newest first."""
        found = []
        for name in self._names():
            data = self.host.get(self._path(name, ".json"))
            if data is None:
                continue
            try:
                document = json.loads(data)
                document["path"] = str(self._path(name, ".dump"))
                found.append(Snapshot(**document))
            except (ValueError, TypeError):
                continue
        return sorted(found, key=lambda s: (s.created_at, s.name), reverse=True)

    def owned(self) -> list[Snapshot]:
        """This environment's snapshots, newest first (a ``snapshots.dir`` may be shared)."""
        return [
            s for s in self.snapshots() if s.app == self.app and s.environment == self.environment
        ]

    def delete(self, snapshots: Iterable[Snapshot]) -> list[str]:
        """Delete these snapshots and this environment's cut-short dumps; the directory too
        once nothing is left in it."""
        deleted = [s.name for s in snapshots]
        for name in deleted:
            self._remove(name)
        self.remove_partial()
        self.host.run(["rmdir", str(self.directory)], check=False, timeout=30)
        return deleted

    def get(self, name: str) -> Snapshot:
        wanted = name.removesuffix(".dump").removesuffix(".json")
        wanted = PurePosixPath(wanted).name
        for snapshot in self.snapshots():
            if snapshot.name == wanted:
                return snapshot
        raise SnapshotError(
            f"no snapshot named {wanted!r} in {self.host.name}:{self.directory}",
            hint="`shipyard snapshot list ENV` shows the snapshots",
        )

    # -- verify -------------------------------------------------------------------------------------------
    def verify(self, snapshot: Snapshot) -> Snapshot:
        """Checksum and archive listing still match what was recorded."""
        dump = self._path(snapshot.name, ".dump")
        if self.host.get(self._path(snapshot.name, ".json")) is None:
            raise SnapshotError(f"metadata of {snapshot.name} is missing")
        actual = self._sha256(dump)
        if actual != snapshot.sha256:
            raise SnapshotError(
                f"snapshot {snapshot.name} is corrupt: sha256 {actual[:12]}… but {snapshot.sha256[:12]}… was recorded",
                hint="use an older snapshot; this one cannot be trusted",
            )
        toc = self._list(dump)
        if snapshot.toc_entries and toc != snapshot.toc_entries:
            raise SnapshotError(
                f"snapshot {snapshot.name} lists {toc} TOC entries, {snapshot.toc_entries} were recorded"
            )
        return snapshot

    def restore_test(self, snapshot: Snapshot, extensions: Iterable[str]) -> RestoreTest:
        """Restore into a scratch database (with the extensions) and compare rows per table with
        the dump's data; the scratch database is dropped afterwards."""
        self.verify(snapshot)
        dump = self._path(snapshot.name, ".dump")
        scratch = f"{self.section.name[:40]}_restore_test_{secrets.token_hex(3)}"
        self._psql(f'CREATE DATABASE "{scratch}";', database="postgres")
        try:
            create = "".join(f'CREATE EXTENSION IF NOT EXISTS "{e}";\n' for e in extensions)
            if create:
                self._psql(create, database=scratch)
            self._restore(dump, scratch, clean=False)
            counted = self.docker.exec_streaming(
                self.container, ["sh", "-c", _COUNT_COPY_ROWS], stdin_path=dump, timeout=3600
            )
            dumped = parse_copy_counts(counted.stdout)
            query = "".join(
                f"SELECT '{table}', count(*) FROM {table};\n"  # noqa: S608 — names from the dump's own COPY lines
                for table in sorted(dumped)
            )
            restored = parse_copy_counts(self._psql(query, database=scratch)) if query else {}
            # Extension configuration tables (PostGIS's spatial_ref_sys) are dumped filtered.
            config_tables = {
                _unqualified(t)
                for t in self._psql(
                    "SELECT unnest(extconfig)::regclass::text FROM pg_extension;", database=scratch
                ).split()
            }
            tables = {
                t: (dumped[t], restored.get(t, -1))
                for t in sorted(dumped)
                if _unqualified(t) not in config_tables
            }
        finally:
            self._psql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE);', database="postgres")
        return RestoreTest(scratch, tables)

    # -- restore ----------------------------------------------------------------------------------------------
    def restore(self, snapshot: Snapshot) -> None:
        """Replace the database's objects with the snapshot's, in one transaction."""
        self.verify(snapshot)
        self._restore(self._path(snapshot.name, ".dump"), self.section.name, clean=True)

    def _restore(self, dump: PurePosixPath, database: str, *, clean: bool) -> None:
        argv = ["pg_restore", "--single-transaction", "--exit-on-error", "--no-password"]
        if clean:
            argv += ["--clean", "--if-exists"]
        if self.keep_extensions:
            argv += ["--use-list", self._without_extensions(dump, database)]
        argv += ["-U", self.section.user, "-d", database]
        try:
            self.docker.exec_streaming(self.container, argv, stdin_path=dump, timeout=None)
        except CommandFailed as exc:
            raise SnapshotError(
                f"restoring {dump.name} into {database} failed (rolled back, nothing changed): "
                f"{_tail(exc.stderr)}"
            ) from exc

    def _without_extensions(self, dump: PurePosixPath, database: str) -> str:
        """A restore list of ``dump`` without its extensions, their comments and the rows of
        their configuration tables (PostGIS's spatial_ref_sys), written in the container: on a
        database whose extensions its provider's admin owns, the role restoring may neither
        drop nor create them, nor write those tables; shipyard verified they are there."""
        listing = self.docker.exec_streaming(
            self.container, ["pg_restore", "--list"], stdin_path=dump, timeout=600
        ).stdout
        config_tables = tuple(
            f"TABLE DATA {row.replace('|', ' ')} "
            for row in self._psql(_EXTENSION_CONFIG_TABLES, database=database).split()
        )
        kept = "".join(
            line + "\n"
            for line in listing.splitlines()
            if not _EXTENSION_ENTRY.match(line)
            and not any(entry in line for entry in config_tables)
        )
        path = "/tmp/shipyard-restore.list"  # noqa: S108 — inside the client container
        self.docker.exec(self.container, ["sh", "-c", f"cat > {path}"], stdin=kept, timeout=60)
        return path

    def _psql(self, sql: str, *, database: str) -> str:
        argv = ["psql", "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1"]
        argv += ["-U", self.section.user, "-d", database]
        try:
            return self.docker.exec(self.container, argv, stdin=sql, timeout=600).stdout
        except CommandFailed as exc:
            raise SnapshotError(f"database {database}: {_tail(exc.stderr)}") from exc

    # -- retention ---------------------------------------------------------------------------------------------
    def plan_prune(self, protected: Iterable[str]) -> RetentionPlan:
        section = self.section.snapshots
        return plan_retention(  # another environment's, in a shared directory, are its own
            (SnapshotAge(s.name, s.created(), s.deployment_id) for s in self.owned()),
            now=self.clock(),
            retention_days=section.retention_days,
            keep_min=section.keep_min,
            protected=protected,
        )

    def prune(self, plan: RetentionPlan) -> list[str]:
        for name in plan.delete:
            self._remove(name)
        return list(plan.delete)


def _unqualified(table: str) -> str:
    return table.removeprefix("public.").strip('"')


def _tail(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return " / ".join(lines[-4:]) or "no output"


def _space_hint(text: str, directory: PurePosixPath) -> str:
    if "no space left" in text.lower():
        return f"free space in {directory} (or point database.snapshots.dir elsewhere), then deploy again"
    return "the deploy stopped before migrating; nothing was changed"
