"""Every error shipyard raises on purpose, with the exit code the CLI gives it.

    ShipyardError                 an expected failure with a message an operator can act on  8
    ├── ConfigError               shipyard.yml or an env file is invalid (all problems at once)  3
    ├── CheckFailed               the checks of `shipyard check` (run first by deploy, rollback   3
    │                             and plan too) found problems beyond the config itself
    ├── HostConflict              the target holds something the config needs, taken or set up   3
    │   │                         otherwise (found before anything changed)
    │   ├── PortInUse             a host port the proxy is configured with is held by another
    │   │                         process or container
    │   └── SubnetConflict        `proxy.subnet` overlaps another network, or the environment's
    │                             network exists with another subnet
    ├── HostError                 running a command or moving a file on a target failed          8
    │   ├── HostUnreachable       the target cannot be reached at all                            5
    │   │   └── HostKeyRejected   its SSH host key is unknown or changed: refused
    │   ├── CommandFailed         a command ran and exited non-zero
    │   └── DeliveryError         the image could not be copied to the host
    ├── BuildError                the app image could not be built
    ├── ToolTooOld                a tool here or on the host is older than shipyard needs        9
    ├── LockHeld                  another operation holds the environment's lock                 4
    │   └── LockLost              an operation lost its lock (it was unresponsive past the TTL)
    ├── StateError                the recorded state is missing or unreadable
    ├── NeedsConfirmation         the operation is risky and was not confirmed (--yes)           2
    │   └── ConfigExists          `init` would replace an existing shipyard.yml (--force)
    ├── UnknownNode               --node names no node of the environment                        2
    ├── HookFailed                a deploy hook exited non-zero, timed out or could not start
    ├── CiNotPassed               the commit's CI failed, is running, or never ran
    ├── ProxyError                the proxy's admin API refused or failed a request
    ├── ProvisionError            a host cannot be provisioned
    ├── DatabaseError             unreachable, missing extension, refused SQL
    │   └── MigrationError        a migration failed or the schema is dirty
    │       └── MigrationLintFailed  pending migrations are unsafe and lint is `block`
    ├── SnapshotError             a snapshot could not be taken, verified, found, restored or
    │                             pruned
    ├── DeployFailed              a deploy failed; the previous version keeps serving            6
    └── RollbackFailed            restoring the previous version failed: a person must act       7

    Interrupted (a BaseException) SIGINT or SIGTERM during an operation                        130

A class without a number has its parent's. Lower layers' exceptions are translated at the
boundary with ``raise ... from exc``. Only the CLI turns these into output; ``exit_code`` is the
one table of exit codes (README's "Exit codes").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

_SHOWN_ARGS = 4


class ExitCode(IntEnum):
    """shipyard's exit codes (README's "Exit codes")."""

    OK = 0
    UNEXPECTED = 1  # a bug: the traceback goes to the crash log
    USAGE = 2  # also: a risky operation that needs --yes
    INVALID_CONFIG = 3  # also: a check failed, the host holds what the config needs
    LOCK_HELD = 4
    HOST_UNREACHABLE = 5
    DEPLOY_FAILED = 6  # the previous version keeps serving
    ROLLBACK_FAILED = 7  # a person must act
    FAILED = 8  # any other expected failure
    TOOL_TOO_OLD = 9  # a tool here or on the host is older than needed
    INTERRUPTED = 130  # SIGINT or SIGTERM outside an operation's own clean-up


class ShipyardError(Exception):
    """An expected failure. ``hint`` tells the operator what to do next; ``exit_code`` is the
    code the CLI exits with."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Issue:
    """One problem found in a file: ``file:line:col key.path: message``."""

    file: str
    line: int | None
    column: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key_path}" if self.key_path else ""
        return f"{where}{key}: {self.message}"


class ConfigError(ShipyardError):
    """The configuration is invalid. Carries every issue found, not just the first, and the
    warnings found with them (``Config.warnings`` of a valid configuration)."""

    exit_code = ExitCode.INVALID_CONFIG

    def __init__(self, issues: Sequence[Issue], *, warnings: Sequence[Issue] = ()) -> None:
        self.issues = list(issues)
        self.warnings = list(warnings)
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(
            f"configuration is invalid ({count} problem{'s' if count != 1 else ''}):\n{lines}"
        )

    @classmethod
    def at(cls, file: str, key: str, message: str) -> ConfigError:
        """One issue with ``key`` of ``file``, found after loading (what a cloud answers about
        a setting), where no line is known."""
        return cls([Issue(file, None, None, key, message)])


class CheckFailed(ShipyardError):
    """The checks found problems: config issues and environment problems together (`shipyard
    check`, and the validate phase of deploy, rollback and plan, before anything changes)."""

    exit_code = ExitCode.INVALID_CONFIG

    def __init__(self, problems: Sequence[str], *, warnings: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings)
        lines = "\n".join(f"  {p}" for p in self.problems)
        count = len(self.problems)
        message = f"check failed ({count} problem{'s' if count != 1 else ''}):\n{lines}"
        if self.warnings:
            listed = "\n".join(f"  {w}" for w in self.warnings)
            message += f"\nand {len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}:\n{listed}"
        super().__init__(message)


class HostConflict(ShipyardError):
    """The target host holds something the config needs, taken or set up otherwise: found
    before anything changed (exit 3, like an invalid config)."""

    exit_code = ExitCode.INVALID_CONFIG


class SubnetConflict(HostConflict):
    """``proxy.subnet`` overlaps another network on the host, or the environment's network
    exists with another subnet (it is never recreated under its containers). ``problems``: one
    line each."""

    def __init__(self, problems: Sequence[str], *, hint: str) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems), hint=hint)


class PortInUse(HostConflict):
    """A host port the config gives the proxy (``proxy.http_port``; ``proxy.https_port`` with
    domains) is held by another process or container. Found before the proxy is created or
    started, so nothing was changed. ``problems``: one line per port, naming what holds it."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "; ".join(self.problems),
            hint="stop what holds the port, or give the proxy another one in shipyard.yml",
        )


class HostError(ShipyardError):
    """Running a command or moving a file on a target failed."""


class HostUnreachable(HostError):
    """The target host cannot be reached (connection refused, DNS, engine down)."""

    exit_code = ExitCode.HOST_UNREACHABLE


class HostKeyRejected(HostUnreachable):
    """The target's SSH host key is not trusted (unknown or changed); the message shows its fingerprint."""


class CommandFailed(HostError):
    """A command exited non-zero. ``argv`` is already masked."""

    def __init__(
        self,
        host: str,
        argv: Sequence[str],
        returncode: int,
        stderr: str,
        *,
        hint: str | None = None,
    ) -> None:
        self.host = host
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-8:]
        detail = ("\n    " + "\n    ".join(tail)) if tail else ""
        super().__init__(
            f"on {host}: `{' '.join(self.argv[:4])}{' …' if len(self.argv) > _SHOWN_ARGS else ''}` "
            f"exited {returncode}{detail}",
            hint=hint,
        )


class DeliveryError(HostError):
    """The image could not be copied to the host."""


class BuildError(ShipyardError):
    """The app could not be built into an image."""


class ToolTooOld(ShipyardError):
    """A tool on this machine or on the host is older than shipyard needs; the message names the
    version found and the version needed. Raised before anything changes."""

    exit_code = ExitCode.TOOL_TOO_OLD


class LockHeld(ShipyardError):
    """Another deploy (or rollback, restore) holds the environment's lock."""

    exit_code = ExitCode.LOCK_HELD


class LockLost(LockHeld):
    """An operation no longer holds its lock: it was unresponsive (paused, suspended) for longer
    than the lock's TTL, so another operation may have taken it over. It stops without changing
    anything more; whoever holds the lock next repairs what it left."""


class StateError(ShipyardError):
    """Recorded state is missing or unreadable."""


class UnknownNode(ShipyardError):
    """``--node`` names no node of the environment (a usage error: nothing was touched)."""

    exit_code = ExitCode.USAGE


class NeedsConfirmation(ShipyardError):
    """A risky operation needs the operator's explicit confirmation (``--yes``)."""

    exit_code = ExitCode.USAGE


class ConfigExists(NeedsConfirmation):
    """``shipyard init`` found a shipyard.yml and was not told to replace it (``--force``):
    nothing was written."""


class HookFailed(ShipyardError):
    """A hook command failed. Before the switch this stops the deploy; after it, a warning."""


class CiNotPassed(ShipyardError):
    """The commit's CI has failed, is still running, or never ran."""


class ProxyError(ShipyardError):
    """The proxy's admin API refused or failed a request."""


class MonitoringError(ShipyardError):
    """The monitoring stack did not come up, or Prometheus or Alertmanager did not answer."""


class ProvisionError(ShipyardError):
    """The host cannot be provisioned (unsupported system, no root, a step that others need failed)."""


class DatabaseError(ShipyardError):
    """The database is unreachable, lacks an extension, or refused a statement."""


class MigrationError(DatabaseError):
    """A migration failed or the schema is dirty."""


class MigrationLintFailed(MigrationError):
    """Pending migrations have lint findings and ``database.migrations.lint`` is ``block``."""


class SnapshotError(ShipyardError):
    """A snapshot could not be taken, verified, found, restored or pruned."""


class DeployFailed(ShipyardError):
    """A deploy failed in ``phase``; the candidate was removed and the previous version serves."""

    exit_code = ExitCode.DEPLOY_FAILED

    def __init__(
        self, phase: str, message: str, *, hint: str | None = None, after_switch: bool = False
    ) -> None:
        self.phase = phase
        self.after_switch = after_switch
        super().__init__(f"deploy failed in phase '{phase}': {message}", hint=hint)


class RollbackFailed(ShipyardError):
    """Restoring the previous version failed. The service may be down: a person must act."""

    exit_code = ExitCode.ROLLBACK_FAILED


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during an operation.

    Like ``KeyboardInterrupt`` it is not an ``Exception``: no ``except Exception`` (a failing
    event sink, a hook, a helper that tolerates errors) and no ``except ShipyardError`` can
    swallow it, so it always ends the operation through its cleanups with a non-zero exit."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERRUPTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint: str | None = None

    def __str__(self) -> str:
        return self.message
