"""What a deploy will do to the schema, decided before anything changes, for every provider:
the migration files, which are pending, their lint, whether to snapshot first, a dirty schema's
recovery steps, and the snapshots retention must keep."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.config import DatabaseSection
from shipyard.errors import MigrationError, MigrationLintFailed
from shipyard.state import Release

if TYPE_CHECKING:
    from shipyard.database._lint import Finding

_MIGRATION_FILE = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.up\.sql$")


@dataclass(frozen=True)
class MigrationState:
    version: int | None  # None: no migration ever ran
    dirty: bool


@dataclass(frozen=True)
class MigrationPlan:
    """What a deploy will do to the schema, decided before anything changes."""

    current: int | None
    pending: tuple[str, ...]  # file names, in order
    findings: tuple[Finding, ...] = ()
    snapshot: bool = False  # take a snapshot before migrating
    snapshot_skip: str = ""  # why not, when ``snapshot`` is False

    def summary(self) -> str:
        at = f"schema at version {self.current}" if self.current is not None else "empty schema"
        if not self.pending:
            return f"{at}; no pending migrations"
        lint = f"; {len(self.findings)} lint finding(s)" if self.findings else ""
        return f"{at}; pending: {', '.join(self.pending)}{lint}"


def local_migration_files(directory: Path) -> dict[int, Path]:
    """``*.up.sql`` files in ``directory`` by version. A directory that does not exist is an
    error, not "no migrations": a deploy would start the app on a schema it never got."""
    if not directory.is_dir():
        raise MigrationError(
            f"the migrations directory {directory} does not exist",
            hint="point database.migrations.path at the directory of NNN_name.up.sql files, "
            "or set database.migrations: null when the app has none",
        )
    return {
        int(m.group("version")): p
        for p in directory.iterdir()
        if (m := _MIGRATION_FILE.match(p.name))
    }


def local_migration_versions(directory: Path) -> list[int]:
    """Versions of the ``*.up.sql`` files in ``directory``, ascending."""
    return sorted(local_migration_files(directory))


def pending_versions(directory: Path, current: int | None) -> list[int]:
    """The versions of ``directory``'s migrations newer than ``current`` (all for ``None``)."""
    return [v for v in local_migration_versions(directory) if current is None or v > current]


def plan_migrations(
    section: DatabaseSection, directory: Path, state: MigrationState
) -> MigrationPlan:
    """What migrating a schema in ``state`` to ``directory``'s files would do: the pending
    files, their lint findings (``MigrationLintFailed`` when ``lint: block`` finds any), and
    whether to snapshot first. A dirty schema is refused with its recovery steps."""
    assert section.migrations is not None  # noqa: S101 — the caller has migrations
    files = local_migration_files(directory)
    if state.dirty:
        raise MigrationError(
            f"the schema is dirty at version {state.version} ({_file_name(state.version, files)}): "
            "a previous migration failed half-way",
            hint=dirty_recovery(
                state.version, files, restore="a snapshot: `shipyard snapshot list ENV`"
            ),
        )
    pending = [files[v] for v in sorted(files) if state.version is None or v > state.version]
    findings: tuple[Finding, ...] = ()
    if pending and section.migrations.lint != "off":
        # PostgreSQL's parser loads only when there is SQL to lint.
        from shipyard.database._lint import lint_files  # noqa: PLC0415

        findings = tuple(lint_files(pending))
        if findings and section.migrations.lint == "block":
            raise MigrationLintFailed(
                f"{len(findings)} unsafe statement(s) in pending migrations:\n"
                + "\n".join(f"  {f}" for f in findings),
                hint="rewrite them the safe way shown, or set database.migrations.lint: warn",
            )
    if not pending:
        skip = "no pending migrations"
    elif not section.snapshots.enabled:
        skip = "database.snapshots.enabled is false"
    else:
        skip = ""
    return MigrationPlan(
        state.version,
        tuple(p.name for p in pending),
        findings,
        snapshot=not skip,
        snapshot_skip=skip,
    )


def dirty_recovery(version: int | None, files: dict[int, Path], *, restore: str) -> str:
    """The steps that bring a schema left dirty at ``version`` back to a clean one; ``restore``:
    what to restore instead of undoing by hand."""
    previous = max((v for v in files if v < (version or 0)), default=None)
    steps = [
        f"inspect what {_file_name(version, files)} changed",
        f"undo or complete it by hand (or restore {restore})",
        f"mark the schema clean with `migrate force {version}` if you completed it, or "
        f"`migrate force {previous if previous is not None else -1}` if you undid it",
        "fix the migration and deploy again",
    ]
    return "; ".join(f"{i}. {step}" for i, step in enumerate(steps, 1))


def protected_snapshots(releases: Iterable[Release]) -> set[str]:
    """What snapshot retention keeps whatever its age: the snapshot taken before each retained
    release's migrations (by name, and by the release's deployment id)."""
    kept = list(releases)
    return {r.snapshot for r in kept if r.snapshot} | {r.id for r in kept}


def _file_name(version: int | None, files: dict[int, Path]) -> str:
    return files[version].name if version in files else f"version {version}"
