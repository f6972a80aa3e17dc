"""Running the real ``shipyard`` entry point in a unit test: stdout, stderr and the exit code
apart, the library reached through a recording host and a scripted provider (no Docker)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipyard import cli
from shipyard import session as library
from shipyard.config import load_config
from shipyard.database import MigrationState, RestoreTest, RetentionPlan, Snapshot
from shipyard.deploy import DeployResult, OperationContext
from shipyard.providers import Destroyed, PlanStep, PruneResult, RestoreResult, Status
from shipyard.state import Maintenance, Release
from tests.bad_configs import VALID, BadConfig, write
from tests.fakes import FakeHost

POSTGRES_PASSWORD = "s3cret-password"  # tests.bad_configs.ENV_FILE's


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def shipyard(monkeypatch: pytest.MonkeyPatch, *argv: str, input: str | None = None) -> Ran:
    """``shipyard *argv`` through ``cli.main``, as the console script runs it."""
    monkeypatch.setattr(sys, "argv", ["shipyard", *argv])
    code: int | str | None = 0
    with CliRunner().isolation(input=input) as (stdout, stderr, _mixed):
        try:
            cli.main()
        except SystemExit as exited:
            code = exited.code
        finally:  # what the process's exit would flush
            sys.stdout.flush()
            sys.stderr.flush()
    assert isinstance(code, int), code
    return Ran(code, stdout.getvalue().decode(), stderr.getvalue().decode())


def snapshot(name: str, *, reason: str = "manual") -> Snapshot:
    return Snapshot(
        name=name,
        database="shop",
        app="shop",
        environment="development",
        version="1.0.0",
        commit="abcdef0123456789",
        deployment_id="20261202T101010Z-abc",
        reason=reason,
        created_at="2026-12-02T10:10:10Z",
        size=2048,
        sha256="0" * 64,
        duration_s=0.5,
        toc_entries=12,
        path=f"/state/snapshots/{name}.dump",
    )


RELEASE = Release(
    id="r1",
    version="1.0.0",
    commit="abcdef0123456789",
    image="shop:abcdef0",
    image_id="sha256:1",
    slot="green",
    migration_version=3,
    created_at="2026-12-02T10:10:10Z",
    deployed_by="ops@laptop",
)


def status_of(node: str, *, drift: str | None = None) -> Status:
    return Status(
        url="http://localhost:18080",
        version="1.0.0",
        commit="abcdef0123456789",
        slot="green",
        release_id="r1",
        deployed_at="2026-12-02T10:10:10Z",
        deployed_by="ops@laptop",
        health="healthy",
        health_detail="200",
        probed=f"http://localhost:18080/health on {node}",
        proxy_upstreams=["shop-development-live:8080"],
        drift=drift,
        containers={"shop-development-live": "running"},
    )


class FakeDatabase:
    """``DatabaseOperations`` with answers instead of pg_dump."""

    def create(self) -> Snapshot:
        return snapshot("shop_20261202T101010Z_abcdef0")

    def snapshots(self) -> list[Snapshot]:
        return [snapshot("shop_2"), snapshot("shop_1", reason="pre-migrate")]

    def verify(
        self, name: str | None, *, restore_test: bool
    ) -> tuple[Snapshot, RestoreTest | None]:
        test = RestoreTest("shipyard_verify", {"events": (3, 3)}) if restore_test else None
        return snapshot(name or "shop_2"), test

    def restore(self, name: str) -> RestoreResult:
        return RestoreResult(
            restored=snapshot(name),
            safety=snapshot("shop_3", reason="pre-restore"),
            restarted=["shop-development-live"],
            health="healthy",
        )

    def prune(self, *, dry_run: bool) -> PruneResult:
        plan = RetentionPlan(
            keep=("shop_2",), delete=("shop_1",), reasons=(("shop_2", "newest"), ("shop_1", "old"))
        )
        return PruneResult(plan=plan, deleted=[] if dry_run else ["shop_1"])


@dataclass
class FakeProvider:
    """A provider whose operations answer at once, or raise what a test sets in ``raises``
    (by method name)."""

    name: str = "docker"
    raises: dict[str, BaseException] = field(default_factory=dict)
    drift: dict[str, str] = field(default_factory=dict)  # target → drift its status reports
    calls: list[str] = field(default_factory=list)

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if method in self.raises:
            raise self.raises[method]

    def _result(self, ctx: OperationContext) -> DeployResult:
        ctx.phases().note(f"{self.calls[-1]} on {ctx.node}")  # an event, as real operations emit
        return DeployResult(ctx.deployment_id, RELEASE, "http://localhost:18080", 1.5)

    def preflight(self, config: object) -> str:
        self._call("preflight")
        return "docker 27.0.0"

    def deploy(self, ctx: OperationContext, options: object) -> DeployResult:
        self._call("deploy")
        return self._result(ctx)

    def rollback(self, ctx: OperationContext, options: object) -> DeployResult:
        self._call("rollback")
        return self._result(ctx)

    def rotate_password(self, ctx: OperationContext, options: object) -> DeployResult:
        self._call("rotate_password")
        return self._result(ctx)

    def repair(self, ctx: OperationContext, *, lock_wait: float = 0.0) -> str:
        self._call("repair")
        ctx.phases().note("nothing to repair")
        return "nothing was interrupted"

    def maintenance(
        self, ctx: OperationContext, maintenance: Maintenance | None, *, lock_wait: float = 0.0
    ) -> str:
        self._call("maintenance")
        ctx.store.set_maintenance(maintenance)
        return f"maintenance {'on' if maintenance else 'off'}"

    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str:
        self._call("app_logs")
        return (
            "2026-12-02T10:10:10.000000001Z listening on :8080\n"
            f"2026-12-02T10:10:11.000000001Z connected with {POSTGRES_PASSWORD}\n"
        )

    def plan(self, ctx: OperationContext, options: object) -> list[PlanStep]:
        self._call("plan")
        return [PlanStep("build", "build shop:abcdef0"), PlanStep("switch", "switch to blue")]

    def plan_rollback(self, ctx: OperationContext, options: object) -> list[PlanStep]:
        self._call("plan_rollback")
        return [PlanStep("choose", "bring back 0.9.0")]

    def health_check(self, ctx: OperationContext) -> Status:
        self._call("health_check")
        target = ctx.config.environment.target
        return status_of(target, drift=self.drift.get(target))

    def render(self, ctx: OperationContext) -> dict[str, str]:
        self._call("render")
        return {
            "/state/compose.yml": f"POSTGRES_PASSWORD: {POSTGRES_PASSWORD}\n",
            "/state/caddy.json": '{"apps": {}}\n',
        }

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed:
        self._call("cleanup")
        return Destroyed(removed=["container shop-development-live"], kept=["image postgres:17"])

    def snapshot_files(self, ctx: OperationContext) -> None:
        return None

    def database(self, ctx: OperationContext) -> FakeDatabase:
        self._call("database")
        return FakeDatabase()

    def migration_state(self, ctx: OperationContext) -> MigrationState:
        self._call("migration_state")
        return MigrationState(version=None, dirty=False)


@dataclass
class Project:
    """A valid project on disk and the fakes its sessions reach."""

    config: Path
    host: FakeHost
    provider: FakeProvider

    def run(self, monkeypatch: pytest.MonkeyPatch, *argv: str, input: str | None = None) -> Ran:
        return shipyard(monkeypatch, *argv, "-c", str(self.config), input=input)


def project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    yaml: str = VALID,
    respond: Callable[[list[str]], Any] | None = None,
) -> Project:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    directory = tmp_path / "project"
    directory.mkdir()
    config = write(directory, BadConfig("ok", yaml, "", ""))
    host, provider = FakeHost(respond), FakeProvider()
    monkeypatch.setattr(library, "connect", lambda _config: host)
    monkeypatch.setattr(library, "get_provider", lambda _name, _host, **_: provider)
    return Project(config, host, provider)


def hold_lock(p: Project, *, heartbeat: float, deployment_id: str = "d9") -> dict[str, Any]:
    """The environment's lock on the fake host, held by this very process (alive), its last
    heartbeat at ``heartbeat``; returns the owner record."""
    config = load_config(p.config, "development")
    directory = library.state_root(config, p.host) / "lock"
    owner = {
        "deployment_id": deployment_id,
        "operation": "deploy",
        "by": "ops@ci",
        "pid": 1,
        "started_at": "2026-12-02T10:10:10Z",
        "heartbeat": heartbeat,
        "ttl": 60,
    }
    p.host.files[str(directory)] = (b"", 0o700)
    p.host.put(directory / "owner.json", json.dumps(owner).encode())
    return owner
