"""The app's PostgreSQL: extensions, migration state, migrations (golang-migrate), snapshots,
retention and the migration linter.

Every statement runs inside the database container through ``docker exec`` on the local socket (no
password in argv); migrations run in a one-off golang-migrate container on the app's network with
the password in an env file written 0600 on the host. golang-migrate holds a PostgreSQL advisory
lock while it runs, so a second runner waits for the first (up to ``migrations.timeout``) and then
finds nothing left to apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.config import DatabaseSection
from shipyard.database._password import (
    PasswordRotation,
    password_refused,
    psql_error,
    saslprep,
    scram_verifier,
    verifier_matches,
)
from shipyard.database._planning import (
    MigrationPlan,
    MigrationState,
    dirty_recovery,
    local_migration_files,
    local_migration_versions,
    pending_versions,
    plan_migrations,
    protected_snapshots,
)
from shipyard.database._retention import RetentionPlan, SnapshotAge, plan_retention
from shipyard.database._snapshot import (
    RestoreTest,
    Snapshot,
    SnapshotError,
    SnapshotStore,
    parse_copy_counts,
    parse_toc_count,
    snapshot_name,
)
from shipyard.docker import Docker
from shipyard.errors import (
    CommandFailed,
    DatabaseError,
    MigrationError,
    MigrationLintFailed,
)

if TYPE_CHECKING:
    from shipyard.database._lint import (
        Finding,
        lint_file,
        lint_files,
        lint_sql,
    )

# PostgreSQL's own parser (libpg_query through postgast and protobuf) is loaded only when SQL is
# read: an operation with no migration to lint or diagnose never pays for it.
_LINT = frozenset(
    {
        "Finding",
        "lint_file",
        "lint_files",
        "lint_sql",
        "runs_in_one_transaction",
        "statement_at_line",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LINT:
        from shipyard.database import _lint  # noqa: PLC0415 — loaded on first use

        return getattr(_lint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseFacts",
    "Endpoint",
    "Finding",
    "LintReport",
    "MigrationError",
    "MigrationLintFailed",
    "MigrationPlan",
    "MigrationState",
    "PasswordRotation",
    "RestoreTest",
    "RetentionPlan",
    "Snapshot",
    "SnapshotAge",
    "SnapshotError",
    "SnapshotStore",
    "create_extensions_sql",
    "lint_directory",
    "lint_file",
    "lint_files",
    "lint_migrations",
    "lint_sql",
    "local_migration_files",
    "local_migration_versions",
    "migration_url",
    "parse_copy_counts",
    "parse_migrate_failure",
    "parse_toc_count",
    "password_refused",
    "pending_versions",
    "plan_migrations",
    "plan_retention",
    "protected_snapshots",
    "psql_error",
    "saslprep",
    "scram_verifier",
    "snapshot_name",
    "verifier_matches",
    "verify_extensions_sql",
]


@dataclass(frozen=True)
class DatabaseFacts:
    """What a deploy checks of a running database it verified before, read in one query."""

    extensions: Mapping[str, str]  # installed extension → version
    role_password: str | None  # the owner role's stored verifier (never the password)
    migration: MigrationState | None = None  # golang-migrate's, read in the same round trip

    def missing(self, wanted: Sequence[str]) -> list[str]:
        return [name for name in wanted if name not in self.extensions]


def lint_directory(directory: Path, *, after: int | None = None) -> list[Finding]:
    """Lint the ``*.up.sql`` files of ``directory`` (only those newer than ``after``), in order.

    Each file is linted on its own: a table created by an earlier file is taken to exist with
    data (those files were deployed before), unlike ``lint_files`` over the pending ones of a deploy.
    """
    from shipyard.database import _lint  # noqa: PLC0415 — loaded on first use

    files = local_migration_files(directory)
    findings: list[Finding] = []
    for version in sorted(files):
        if after is None or version > after:
            findings.extend(_lint.lint_file(files[version]))
    return findings


@dataclass(frozen=True)
class LintReport:
    """What ``shipyard migrations lint`` linted (file names, in order) and found."""

    directory: Path
    files: tuple[str, ...]
    findings: tuple[Finding, ...]


def lint_migrations(directory: Path, *, applied: int | None, history: bool = False) -> LintReport:
    """Lint the migrations of ``directory`` that are not applied yet: those newer than
    ``applied`` (every one for ``None``), as a deploy lints them — a table created by one of them
    is new to the others. With ``history``, every file instead, each on its own
    (``lint_directory``): a gate in CI lints what is pending, the history is for review."""
    from shipyard.database import _lint  # noqa: PLC0415 — loaded on first use

    files = local_migration_files(directory)
    if history:
        chosen = [files[v] for v in sorted(files)]
        return LintReport(
            directory, tuple(p.name for p in chosen), tuple(lint_directory(directory))
        )
    chosen = [files[v] for v in sorted(files) if applied is None or v > applied]
    return LintReport(directory, tuple(p.name for p in chosen), tuple(_lint.lint_files(chosen)))


@dataclass(frozen=True)
class Endpoint:
    """Where a client on the app's network reaches the database: the database container, or an
    external server (``sslmode`` ``None``: libpq's and golang-migrate's default)."""

    host: str
    port: int = 5432
    sslmode: str | None = "disable"


def migration_url(section: DatabaseSection, endpoint: Endpoint) -> str:
    """golang-migrate's URL: no password (PGPASSWORD comes from an env file); timeouts as options."""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    user, name = quote(section.user, safe=""), quote(section.name, safe="")
    params = [f"sslmode={endpoint.sslmode}"] if endpoint.sslmode else []
    migrations = section.migrations
    if migrations is not None:
        options = (
            f"-c statement_timeout={round(migrations.statement_timeout * 1000)} "
            f"-c lock_timeout={round(migrations.lock_timeout * 1000)}"
        )
        params.append("options=" + quote(options, safe=""))
    query = f"?{'&'.join(params)}" if params else ""
    return f"postgres://{user}@{host}:{endpoint.port}/{name}{query}"


_IN_LINE = re.compile(r"\bin line (?P<line>\d+): ")
_FAILED = re.compile(r"migration failed:?\s*(?P<error>.*?)(?: in line \d+:|\s*\(details:|$)", re.S)
_DETAILS = re.compile(r"\(details: (?P<details>[^\n]*)\)\s*$", re.M)


def parse_migrate_failure(output: str, sql: str | None) -> tuple[str, int | None, str | None]:
    """(error, line in the file, failing statement) from golang-migrate's error output."""
    from shipyard.database import _lint  # noqa: PLC0415 — loaded on first use

    text = output.strip()
    details = _DETAILS.search(text)
    match = _FAILED.search(text)
    error = (details.group("details") if details else match.group("error") if match else "").strip()
    error = error or (text.splitlines()[-1] if text else "migration failed")
    line_match = _IN_LINE.search(text)
    line = int(line_match.group("line")) if line_match else None
    statement = (
        _lint.statement_at_line(sql, line) if (sql is not None and line is not None) else None
    )
    return error, line, statement


class Database:
    """One environment's PostgreSQL: run by shipyard in ``container``, or ``external`` (the env
    file's URL names it), reached through ``container``, a client shipyard runs beside the app
    with libpq's variables for that URL. Either way every statement runs there through ``docker
    exec``; ``section``'s user and database are the ones the client logs in as."""

    def __init__(
        self,
        docker: Docker,
        container: str,
        section: DatabaseSection,
        *,
        external: Endpoint | None = None,
    ) -> None:
        self.docker = docker
        self.container = container
        self.section = section
        self.external = external
        self.endpoint = external or Endpoint(container)

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

    def login_error(
        self,
        *,
        image: str,
        network: str,
        env_file: PurePosixPath,
        labels: Mapping[str, str] | None = None,
    ) -> str | None:
        """Why a client on ``network`` cannot log in with the credentials of ``env_file`` on the
        host (``PGHOST``, ``PGUSER``, ``PGPASSWORD``, … as libpq reads them): psql's error, or
        ``None`` when it logs in. It runs in a one-off container of ``image`` and connects over
        TCP, as the app does: the database container's own socket and loopback may trust any
        password."""
        result = self.docker.run_oneoff(
            image,
            ["-X", "-w", "-q", "-At", "-c", "SELECT 1"],
            entrypoint="psql",
            network=network,
            env_file=env_file,
            labels=labels,
            check=False,
            timeout=120,
        )
        return None if result.ok else psql_error(result.stderr)

    def role_password(self) -> str | None:
        """The owner role's stored password (a SCRAM or MD5 verifier, never the password
        itself; ``None``: it has none), to give back as it was. Read from ``pg_authid``, which
        only a superuser reads: the role the image creates is one (an external database's
        role need not be, and its password is its provider's to change)."""
        if self.external is not None:
            raise DatabaseError(
                "the password of an external database's role is not shipyard's to read or change",
                hint="change it at the database's provider, then the URL in the env file",
            )
        row = self.sql(
            "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = current_user;"
        )
        return row.strip() or None

    def set_role_password(self, verifier: str | None) -> None:
        """``ALTER ROLE … PASSWORD`` of the owner role, on stdin: ``verifier`` is a SCRAM or MD5
        verifier (``scram_verifier``), which PostgreSQL stores as given (``None``: no password).
        Existing sessions stay logged in; new ones need the new password. An error never
        repeats the statement (psql may quote it), so the verifier stays out of messages."""
        literal = "NULL" if verifier is None else "'" + verifier.replace("'", "''") + "'"
        try:
            self.sql(f"ALTER ROLE CURRENT_USER PASSWORD {literal};")
        except DatabaseError as exc:
            message = exc.message.replace(verifier, "***") if verifier else exc.message
            raise DatabaseError(  # not chained: the original message may quote the verifier
                f"the password of role {self.section.user!r} could not be changed: "
                + message.splitlines()[0]
            ) from None

    def ensure_extensions(self, extensions: Sequence[str]) -> dict[str, str]:
        """Create the extensions if missing, then verify each exists; returns name → version."""
        if extensions:
            try:
                self.sql(create_extensions_sql(extensions))
            except DatabaseError as exc:
                available = set(self.sql("SELECT name FROM pg_available_extensions;").split())
                missing = [name for name in extensions if name not in available]
                if missing and self.external is not None:
                    raise DatabaseError(
                        f"the database at {self.external.host}:{self.external.port} does not "
                        f"offer extension(s) {', '.join(missing)}",
                        hint="ask its provider to allow them, or drop them from "
                        "database.extensions",
                    ) from exc
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

    def facts(self) -> DatabaseFacts:
        """The installed extensions, the owner role's stored password verifier (not read on an
        external database) and golang-migrate's state (``migration_state``), in one round trip
        (``ensure_extensions`` creates and verifies; this only reads)."""
        role = (
            ""
            if self.external is not None
            else " UNION ALL SELECT 'role', '', coalesce(rolpassword, '') FROM pg_authid "
            "WHERE rolname = current_user"
        )
        rows = self.sql(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL AS migrated \\gset\n"  # noqa: S608 — constant text
            f"SELECT 'extension', extname, extversion FROM pg_extension{role};\n"
            "\\if :migrated\n"
            "SELECT 'migration', version, dirty FROM schema_migrations LIMIT 1;\n"
            "\\endif\n"
        )
        extensions: dict[str, str] = {}
        verifier: str | None = None
        migration = MigrationState(None, False)
        for line in rows.splitlines():
            kind, name, value = [*line.split("|", 2), "", ""][:3]
            if kind == "extension":
                extensions[name] = value
            elif kind == "role":
                verifier = value or None
            elif kind == "migration":
                migration = MigrationState(int(name), value == "t")
        return DatabaseFacts(extensions, verifier, migration)

    def migration_state(self) -> MigrationState:
        """golang-migrate's version and dirty flag, in one round trip (psql decides whether
        its table exists before reading it)."""
        row = self.sql(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL AS migrated \\gset\n"
            "\\if :migrated\n"
            "SELECT version, dirty FROM schema_migrations LIMIT 1;\n"
            "\\endif\n"
        ).strip()
        if not row:
            return MigrationState(None, False)
        version, dirty = row.split("|")
        return MigrationState(int(version), dirty == "t")

    def migrate(
        self,
        *,
        migrations: PurePosixPath,
        source: Path,
        network: str,
        env_file: PurePosixPath,
        timeout: float,
        image: str,
        name: str,
        labels: Mapping[str, str],
        snapshot: str | None = None,
    ) -> str:
        """Apply pending migrations with golang-migrate; returns its output.

        ``env_file`` on the host holds ``PGPASSWORD``; the URL carries no password. The one-off
        container ``name`` (with ``labels``) runs detached and is removed only once its result is
        read, so if shipyard dies meanwhile the next operation still learns how it ended
        (``migration_outcome``). On failure the message names the file, the failing statement,
        the schema's state and the snapshot; when the failed file ran in one transaction (nothing
        of it remains) the version is reset to the last applied one, so the schema is exactly as
        before and clean.
        """
        url = migration_url(self.section, self.endpoint)
        argv = ["-path", "/migrations", "-database", url]
        argv += ["-lock-timeout", str(max(1, round(timeout))), "up"]
        try:
            self.docker.run_detached(
                image,
                argv,
                name=name,
                network=network,
                env_file=env_file,
                mounts=[(migrations, "/migrations")],
                labels=labels,
            )
            code = self.docker.wait(name, timeout=timeout + 60)
        except CommandFailed as exc:
            raise MigrationError(
                f"golang-migrate ({name}) did not run to the end: {exc.stderr.strip()[-300:]}",
                hint="its container is kept: the next deploy (or `shipyard repair ENV`) waits "
                "for it and reads how it ended",
            ) from exc
        output = self.docker.logs(name, tail=200)
        if code != 0:
            failure = self._failure(output, source, snapshot)
            self.docker.remove(name)
            raise failure
        self.docker.remove(name)
        return output

    def migration_outcome(
        self, name: str, files: Mapping[int, str], *, timeout: float
    ) -> str | None:
        """How the kept golang-migrate container ``name`` of an interrupted operation ended
        (waiting for it while it still runs), with the schema made clean where that is safe: a
        failed file that ran in one transaction left nothing behind, so the version is reset to
        the one before it. ``files``: version → SQL of the migrations that container ran.
        Returns what was found and done; ``None`` when the container is gone. It is removed."""
        from shipyard.database import _lint  # noqa: PLC0415 — loaded on first use

        info = self.docker.container(name)
        if info is None:
            return None
        code = info.exit_code
        if info.running:
            try:
                code = self.docker.wait(name, timeout=timeout)
            except CommandFailed:
                return f"{name} is still running after {timeout:g}s; left running"
        if code == 0:
            self.docker.remove(name)
            return f"{name} had finished: the migrations applied"
        output = self.docker.logs(name, tail=200)
        state = self.migration_state()
        found = f"{name} had failed (exit {code})"
        if not state.dirty or state.version is None:
            note = f"{found}; the schema is clean at version {state.version}"
        elif state.version in files and _lint.runs_in_one_transaction(files[state.version]):
            previous = max((v for v in files if v < state.version), default=None)
            self.force_version(previous)
            error, _, _ = parse_migrate_failure(output, files[state.version])
            note = (
                f"{found} in migration {state.version} ({error}); that file ran in one "
                f"transaction, so nothing of it was applied: the dirty flag was reset to "
                f"version {previous} (clean)"
            )
        else:
            note = f"{found}; the schema is DIRTY at version {state.version}: left for a person"
        self.docker.remove(name)
        return note

    def _failure(self, output: str, source: Path, snapshot: str | None) -> MigrationError:
        from shipyard.database import _lint  # noqa: PLC0415 — loaded on first use

        files = local_migration_files(source)
        try:
            state = self.migration_state()
        except DatabaseError:
            state = None
        failing = files.get(state.version) if state and state.dirty and state.version else None
        sql = failing.read_text(encoding="utf-8") if failing else None
        error, line, statement = parse_migrate_failure(output, sql)
        where = f"{failing.name}{f':{line}' if line else ''}" if failing else "a migration"
        lines = [f"{where} failed: {error}"]
        if statement:
            lines.append(f"  statement: {' '.join(statement.split())[:400]}")
        snapshot_note = (
            f"snapshot {snapshot} holds the data from before this deploy"
            if snapshot
            else "no snapshot was taken"
        )
        if "can't acquire lock" in output or "can't acquire database lock" in output:
            return MigrationError(
                "another migration runner holds the database's migration lock (golang-migrate advisory lock): "
                + error,
                hint="wait for the other deploy to finish, then deploy again",
            )
        if state is not None and state.dirty and failing is not None and sql is not None:
            if _lint.runs_in_one_transaction(sql):
                previous = max((v for v in files if v < (state.version or 0)), default=None)
                self.force_version(previous)
                lines.append(
                    f"  the file ran in one transaction and was rolled back; schema version reset to {previous} (clean)"
                )
                hint = f"the app was not changed; fix {failing.name} and deploy again ({snapshot_note})"
            else:
                lines.append(
                    f"  the schema is DIRTY at version {state.version}: part of the file may have run"
                )
                hint = dirty_recovery(
                    state.version,
                    files,
                    restore=f"the snapshot: `shipyard snapshot restore ENV {snapshot}`"
                    if snapshot
                    else "no snapshot was taken",
                )
        elif state is not None:
            lines.append(f"  schema at version {state.version}{' (dirty)' if state.dirty else ''}")
            hint = f"the app was not changed; {snapshot_note}"
        else:
            hint = f"the app was not changed; {snapshot_note}"
        lines.append(f"  {snapshot_note}")
        return MigrationError("migration failed: " + "\n".join(lines), hint=hint)

    def force_version(self, version: int | None) -> None:
        """Mark the schema clean at ``version`` (``None``: no migration applied), like ``migrate force``."""
        insert = (
            f"INSERT INTO schema_migrations (version, dirty) VALUES ({int(version)}, false);"  # noqa: S608 — an int
            if version is not None
            else ""
        )
        self.sql(f"BEGIN; DELETE FROM schema_migrations; {insert} COMMIT;")  # noqa: S608

    def run_release_command(
        self,
        argv: Sequence[str],
        *,
        image: str,
        network: str,
        env_file: PurePosixPath,
        timeout: float,
    ) -> str:
        """Run one release step in a one-off container of the new app image."""
        try:
            result = self.docker.run_oneoff(
                image,
                list(argv[1:]),
                entrypoint=argv[0],
                network=network,
                env_file=env_file,
                timeout=timeout,
            )
        except CommandFailed as exc:
            raise MigrationError(
                f"release command `{' '.join(argv)}` failed (exit {exc.returncode}): "
                + " / ".join(exc.stderr.strip().splitlines()[-6:]),
                hint="the app was not changed; fix the command or the image and deploy again",
            ) from exc
        return (result.stdout + result.stderr).strip()


def create_extensions_sql(extensions: Sequence[str]) -> str:
    """``CREATE EXTENSION IF NOT EXISTS`` of each of ``extensions`` (names as the config
    validated them, quoted as identifiers)."""
    return "".join(f'CREATE EXTENSION IF NOT EXISTS "{name}";\n' for name in extensions)


def verify_extensions_sql(extensions: Sequence[str]) -> str:
    """A statement that fails, naming them, unless every one of ``extensions`` is installed:
    for a client that reports only success or failure (a one-off task's exit code)."""
    names = ", ".join("'" + name.replace("'", "''") + "'" for name in extensions)
    return (
        "DO $$ DECLARE missing text; BEGIN "  # noqa: S608 — names are quoted literals
        f"SELECT string_agg(n, ', ') INTO missing FROM unnest(ARRAY[{names}]::text[]) AS n "
        "WHERE n NOT IN (SELECT extname FROM pg_extension); "
        "IF missing IS NOT NULL THEN "
        "RAISE EXCEPTION 'extensions missing after CREATE EXTENSION: %', missing; END IF; END $$;"
    )
