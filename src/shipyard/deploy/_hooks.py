"""Hooks: the operator's commands at fixed points of a deploy, with its facts in the environment.

``before_deploy`` and ``before_switch`` hooks gate the deploy (a failure stops it before any
change, or removes the candidate); ``after_switch``, ``after_deploy`` and ``on_failure`` hooks only
report. Each hook is an argv list run on the operator's machine (``where: local``, in shipyard.yml's
directory) or on the environment's host (``where: target``), with a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from shipyard.config import HookSpec, HooksSection
from shipyard.errors import HookFailed, ShipyardError
from shipyard.hosts import Host

_TAIL = 6  # output lines quoted when a hook fails


class HookPoint(StrEnum):
    BEFORE_DEPLOY = "before_deploy"
    BEFORE_SWITCH = "before_switch"
    AFTER_SWITCH = "after_switch"
    AFTER_DEPLOY = "after_deploy"
    ON_FAILURE = "on_failure"


@dataclass(frozen=True)
class HookFacts:
    """What a hook learns about the operation (none of it secret; errors are masked)."""

    app: str
    environment: str
    deployment_id: str
    action: str  # deploy or rollback
    node: str
    version: str | None = None
    commit: str | None = None
    slot: str | None = None
    previous_slot: str | None = None
    phase: str | None = None  # the pipeline phase the hook runs at, or the one that failed
    error: str | None = None
    url: str | None = None


def hook_env(facts: HookFacts, point: HookPoint) -> dict[str, str]:
    """``SHIPYARD_*`` variables for one hook; unknown facts are empty strings, never missing."""
    values = {
        "APP": facts.app,
        "ENVIRONMENT": facts.environment,
        "DEPLOYMENT_ID": facts.deployment_id,
        "ACTION": facts.action,
        "NODE": facts.node,
        "HOOK": str(point),
        "VERSION": facts.version,
        "COMMIT": facts.commit,
        "SLOT": facts.slot,
        "PREVIOUS_SLOT": facts.previous_slot,
        "PHASE": facts.phase or str(point),
        "ERROR": facts.error,
        "URL": facts.url,
    }
    return {f"SHIPYARD_{key}": value or "" for key, value in values.items()}


class Hooks:
    """Runs the hooks of one environment."""

    def __init__(
        self, section: HooksSection, local: Host, target: Host | None, directory: Path
    ) -> None:
        self.section = section
        self.local = local
        self.target = target
        self.directory = directory

    def at(self, point: HookPoint) -> list[HookSpec]:
        section = self.section
        return {
            HookPoint.BEFORE_DEPLOY: section.before_deploy,
            HookPoint.BEFORE_SWITCH: section.before_switch,
            HookPoint.AFTER_SWITCH: section.after_switch,
            HookPoint.AFTER_DEPLOY: section.after_deploy,
            HookPoint.ON_FAILURE: section.on_failure,
        }[point]

    def run(self, point: HookPoint, facts: HookFacts) -> str:
        """Run every hook of ``point`` in order; the first failure raises ``HookFailed``."""
        env = hook_env(facts, point)
        done = []
        for hook in self.at(point):
            done.append(self._one(hook, env))
        return "; ".join(done)

    def _one(self, hook: HookSpec, env: dict[str, str]) -> str:
        name = hook.name or " ".join(hook.argv)
        local = hook.where == "local"
        host = self.local if local else self.target
        if host is None:
            raise HookFailed(f"hook {name!r}: this operation has no target host to run it on")
        timeout = hook.timeout if hook.timeout is not None else self.section.timeout
        try:
            result = host.run(
                hook.argv,
                env=env,
                timeout=timeout,
                check=False,
                cwd=str(self.directory) if local else None,
            )
        except ShipyardError as exc:
            raise HookFailed(f"hook {name!r} on {host.name}: {exc.message}") from exc
        if not result.ok:
            output = (result.stderr.strip() or result.stdout.strip()).splitlines()[-_TAIL:]
            detail = ("\n    " + "\n    ".join(output)) if output else ""
            raise HookFailed(
                f"hook {name!r} on {host.name} exited {result.returncode}{detail}",
                hint="fix the hook or its command, then deploy again",
            )
        return f"{name} ok"
