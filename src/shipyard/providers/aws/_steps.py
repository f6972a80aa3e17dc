"""``AwsSteps``: what the deploy pipeline asks of an environment on ECS, made of this package's
parts (``deploy._steps`` names the capabilities).

A release is an image pushed to the environment's ECR repository (and, with migrations, an
image of golang-migrate holding its migration files), and a revision of the app's task
definition. Before traffic moves: the base resources and the RDS instance (``ensure``), the
extensions (a one-off task of ``database.image``'s psql, which also verifies them), an RDS
snapshot when migrations are pending, golang-migrate and the release commands as one-off tasks
whose exit code decides. The idle slot's ECS service then runs the revision; its deployment and
its targets' health are the gate; the listener's switch moves every request; ``/version``
through the load balancer (or ``providers.aws.url``) must name the release's commit. The slot
that served before keeps its service, scaled to 0 when it is retired, for a rollback that
starts it again.

The schema version a deploy starts from is the one the state recorded with the live release
(the database is inside the VPC, out of this machine's reach): golang-migrate itself applies
only what the database lacks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

from shipyard.build import MIGRATIONS_DIR, Image, build_migrations_image
from shipyard.config import Config
from shipyard.database import (
    MigrationPlan,
    Snapshot,
    create_extensions_sql,
    protected_snapshots,
    verify_extensions_sql,
)
from shipyard.deploy import OperationContext
from shipyard.errors import DeployFailed, ShipyardError
from shipyard.health import reports_commit
from shipyard.hosts import Host
from shipyard.providers._recorded import plan_from_record, recorded_version
from shipyard.providers.aws._database import Connection, RdsDatabase
from shipyard.providers.aws._delivery import EcrDelivery
from shipyard.providers.aws._environment import AwsEnvironment, NotOnAws
from shipyard.providers.aws._oneoff import OneOffTasks
from shipyard.providers.aws._snapshots import RdsSnapshots
from shipyard.providers.aws._tasks import TaskDefinitions, TaskSpec
from shipyard.providers.aws._traffic import SLOTS, AwsTraffic
from shipyard.state import Maintenance, Release


class AwsSteps:
    """The pipeline's steps for one operation on an AWS environment."""

    def __init__(self, ctx: OperationContext, local: Host, env: AwsEnvironment) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.local = local
        self.env = env
        self.names = env.names
        self.settings = env.settings
        self._revisions: dict[str, str] = {}  # release id → its task definition ARN
        self._migrations_ref: str | None = None

    # -- parts -------------------------------------------------------------------------------
    @functools.cached_property
    def delivery(self) -> EcrDelivery:
        return EcrDelivery(
            self.names, self.settings, self.env.clients, self.local, masker=self.config.masker
        )

    def _traffic(self) -> AwsTraffic:
        traffic = self.env.traffic()
        if traffic is None:
            raise ShipyardError(
                f"the load balancer's listener or target groups of {self.names.stem} are missing",
                hint="the next deploy creates them",
            )
        return traffic

    def _oneoff(self) -> OneOffTasks:
        return OneOffTasks(
            self.names, self.env.cluster, self.env.network().tasks(), self.env.clients
        )

    def _connection(self) -> Connection | None:
        database = self.env.database()
        return database.connection() if database is not None else None

    # -- Delivery ------------------------------------------------------------------------------
    def preflight(self) -> str:
        from shipyard.providers.aws._provider import AwsProvider  # noqa: PLC0415 — one module up

        return AwsProvider(self.local).preflight(self.config)

    def deliver(self, image: Image) -> str:
        """The app's image, and with migrations the image holding them, in ECR."""
        done = [self.delivery.deliver(image)]
        migrations = build_migrations_image(self.config, self.local, image)
        if migrations is not None:
            built = Image(migrations, "", image.version)
            done.append(self.delivery.deliver(built))
            self._migrations_ref = self.delivery.reference(built)
        return "; ".join(done)

    # -- Infrastructure --------------------------------------------------------------------------
    def ensure_infrastructure(self) -> str:
        """The base resources, the RDS instance, then the extensions. The execution role keeps
        reading RDS's password secret throughout (tasks ECS starts meanwhile need it): it is
        named from the first ``ensure`` on once the instance exists."""
        database = self.env.database()
        readable = self._readable(database)
        done = [str(a) for a in self.env.infrastructure(readable=readable).ensure()]
        if database is not None:
            done += [str(a) for a in database.ensure()]
            now = self._readable(database)
            if now != readable:  # the instance was just created
                done += [str(a) for a in self.env.infrastructure(readable=now).ensure()]
            done.append(self._extensions())
        return "; ".join(done) or "every resource in place"

    @staticmethod
    def _readable(database: RdsDatabase | None) -> tuple[str, ...]:
        """The secrets beyond the env file's the tasks read: RDS's password, once it exists."""
        arn = database.master_secret_arn() if database is not None else None
        return (arn,) if arn else ()

    def _extensions(self) -> str:
        """Create the extensions and verify them, from a one-off task of the database image."""
        section = self.config.database
        if section is None or not section.extensions:
            return "no extensions"
        command = extensions_command(section.extensions)
        arn = self._register_oneoff("tools", section.image)
        timeout = section.migrations.timeout if section.migrations else 600
        result = self._oneoff().run(arn, command, what="create the extensions", timeout=timeout)
        if not result.ok:
            raise DeployFailed(
                "infrastructure",
                f"creating extensions {', '.join(section.extensions)} exited "
                f"{result.exit_code}:\n{result.output}",
                hint="the database image must ship them (postgis, pgvector); nothing serves differently",
            )
        return f"extensions {', '.join(section.extensions)} created and verified"

    def url(self) -> str:
        if self.settings.url is not None:
            return self.settings.url.rstrip("/")
        dns = self.env.load_balancer_dns()
        return f"http://{dns}" if dns else "(no load balancer yet)"

    def leftovers(self) -> list[str]:
        return [f"{a.service} {a.resource}" for a in self.env.infrastructure().removal()]

    # -- Schema --------------------------------------------------------------------------------
    def _recorded_version(self) -> int | None:
        return recorded_version(self.ctx.store)

    def plan_migrations(self) -> MigrationPlan:
        own = "RDS" if self.env.database() is not None else None
        return plan_from_record(self.config, self.ctx.store, own_database=own)

    def snapshot(self, release: Release) -> Snapshot:
        section = self.config.database
        assert section is not None  # noqa: S101 — planned only with a database
        started = time.monotonic()
        snapshots = self.env.snapshots()
        taken = snapshots.take(
            version=release.version,
            commit=release.commit,
            deployment_id=release.id,
            reason="pre-migrate",
            timeout=section.snapshots.timeout,
        )
        self._retain(snapshots, release)
        return Snapshot(
            name=taken.name,
            database=section.name,
            app=self.names.app,
            environment=self.names.environment,
            version=release.version,
            commit=release.commit,
            deployment_id=release.id,
            reason="pre-migrate",
            created_at=taken.created_at.isoformat(),
            size=taken.size,
            sha256="",
            duration_s=round(time.monotonic() - started, 3),
        )

    def _retain(self, snapshots: RdsSnapshots, release: Release) -> None:
        """Retention, as on a host: the newest ``keep_min`` and those younger than
        ``retention_days`` are kept, and each retained release's own; a failed prune only
        warns (the next snapshot's retention runs again)."""
        section = self.config.database
        assert section is not None  # noqa: S101
        try:
            plan = snapshots.retention(
                retention_days=section.snapshots.retention_days,
                keep_min=section.snapshots.keep_min,
                protected=protected_snapshots([*self.ctx.store.releases(), release]),
            )
            pruned = snapshots.prune(plan)
        except ShipyardError as exc:
            self.ctx.phases().warn(f"pruning old RDS snapshots failed: {exc.message}")
            return
        if pruned:
            self.ctx.phases().note(f"pruned {len(pruned)} old RDS snapshot(s): {', '.join(pruned)}")

    def migrate(self, release: Release) -> int | None:
        section = self.config.database
        if section is None:
            return None
        version = self._recorded_version()
        migrations = section.migrations
        if migrations is not None:
            plan = self.plan_migrations()
            if plan.pending:
                self._migrate_up(release, migrations.timeout)
                version = max(int(n.split("_", 1)[0]) for n in plan.pending)
        for argv in section.release_commands:
            result = self._oneoff().run(
                self._revision(release), argv, what=f"release command {' '.join(argv)}",
                timeout=migrations.timeout if migrations else 600,
            )  # fmt: skip
            if not result.ok:
                raise DeployFailed(
                    "migrate",
                    f"release command {' '.join(argv)} exited {result.exit_code}:\n{result.output}",
                    hint="the previous version kept serving",
                )
        return version

    def _migrate_up(self, release: Release, timeout: float) -> None:
        if self._migrations_ref is None:
            raise ShipyardError("the migrations image was not delivered before migrating")
        arn = self._register_oneoff("migrate", self._migrations_ref)
        command = ["sh", "-c", f'exec migrate -path {MIGRATIONS_DIR} -database "$DATABASE_URL" up']
        result = self._oneoff().run(arn, command, what="golang-migrate up", timeout=timeout)
        if not result.ok:
            snapshot = release.snapshot or "none (no snapshot was taken)"
            raise DeployFailed(
                "migrate",
                f"golang-migrate exited {result.exit_code}; the previous version kept serving; "
                f"snapshot before it: {snapshot}\n{result.output}",
                hint="fix the migration; restore the snapshot if the schema was changed half-way",
            )

    def schema_version(self) -> int | None:
        return self._recorded_version()

    def newest_snapshot(self) -> str | None:
        if self.env.database() is None:
            return None
        found = self.env.snapshots().snapshots()
        return found[-1].created_at.isoformat() if found else None

    # -- task definitions --------------------------------------------------------------------
    def _task_environment(self) -> tuple[dict[str, str], dict[str, str]]:
        """(plain variables, secret variables → their ``valueFrom``) of every task."""
        infrastructure = self.env.infrastructure()
        env = {**self.config.app.env, "SHIPYARD_ENVIRONMENT": self.names.environment}
        secrets = dict(infrastructure.secret_arns())
        connection = self._connection()
        if connection is not None:
            env.update(connection.env)
            secrets.update(connection.secrets)
            secrets.pop("DATABASE_URL", None)  # RDS's, not the env file's
        return env, secrets

    def _spec(self, release: Release, image: str, port: int) -> TaskSpec:
        env, secrets = self._task_environment()
        return TaskSpec(
            image=image,
            port=port,
            version=release.version,
            commit=release.commit,
            release_id=release.id,
            execution_role_arn=self.env.infrastructure().execution_role_arn(),
            env=env,
            secret_arns=secrets,
        )

    def _revision(self, release: Release) -> str:
        """The app's task definition revision of ``release`` (registered once)."""
        if release.id not in self._revisions:
            tasks = self.env.tasks()
            found = tasks.of_release(release.id)
            if found is None:
                image = f"{self.delivery.repository()}:{release.image.rsplit(':', 1)[-1]}"
                found = tasks.register(self._spec(release, image, self.config.app.port))
            self._revisions[release.id] = found
        return self._revisions[release.id]

    def _register_oneoff(self, purpose: str, image: str) -> str:
        release = Release(
            id=self.ctx.deployment_id, version="-", commit="-", image=image, image_id="",
            slot="-", migration_version=None, created_at="", deployed_by="",
        )  # fmt: skip
        family = f"{self.names.family}-{purpose}"
        tasks = TaskDefinitions(self.names, self.settings, self.env.clients, family=family)
        spec = self._spec(release, image, 0)
        revisions = tasks.revisions()
        if revisions and not tasks.changes(spec):
            return revisions[0]  # the same image, variables and role: no revision for nothing
        return tasks.register(spec)

    # -- Candidates ----------------------------------------------------------------------------
    def start_slot(self, slot: str, release: Release) -> str:
        revision = self._revision(release)
        traffic = self._traffic()
        desired = self.settings.desired(self.names.environment)
        if slot in traffic.missing_services():
            return traffic.create_service(
                slot, revision, port=self.config.app.port, network=self.env.network().tasks(),
                desired=desired,
            )  # fmt: skip
        traffic.deploy_slot(slot, revision, desired)
        return f"{self.names.service(slot)} runs {revision.rsplit('/', 1)[-1]} ({desired} task(s))"

    def remove_slot(self, slot: str) -> None:
        self._scale(slot, 0)

    def gate(self, slot: str) -> str:
        traffic = self._traffic()
        timeout = self.config.health.start_timeout
        deployed = traffic.wait_deployed(slot, timeout)
        healthy = traffic.wait_healthy(slot, timeout)
        return f"{deployed}; {healthy}"

    def _scale(self, slot: str, desired: int) -> None:
        traffic = self.env.traffic()
        if traffic is None or slot in traffic.missing_services():
            return
        service = self.names.service(slot)
        self.env.clients.call("ecs", "UpdateService", service,
                              cluster=self.env.cluster, service=service, desiredCount=desired)  # fmt: skip

    def _desired(self, slot: str) -> int:
        service = self.names.service(slot)
        found = self.env.clients.call("ecs", "DescribeServices", service,
                                      cluster=self.env.cluster, services=[service])  # fmt: skip
        services = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
        return int(services[0].get("desiredCount", 0)) if services else 0

    # -- Traffic ---------------------------------------------------------------------------------
    def switch(self, slot: str) -> str:
        return self._traffic().switch(slot)

    def switch_back(self, slot: str) -> str:
        started = ""
        if self._desired(slot) == 0:
            self._scale(slot, self.settings.desired(self.names.environment))
            started = f"{self.gate(slot)}; "
        return started + self._traffic().switch(slot)

    def retire(self, slot: str) -> str:
        self._scale(slot, 0)
        return f"{self.names.service(slot)} scaled to 0 (its revision kept for a rollback)"

    # -- Observation ---------------------------------------------------------------------------
    def verify(self, release: Release) -> str:
        """``deploy.verify_path`` through the load balancer (or ``providers.aws.url``) reports
        the release's commit (in the JSON key ``git_commit``, or anywhere in the answer)."""
        path = self.config.deploy.verify_path
        if path is None:
            return "deploy.verify_path is null: not verified"
        url = f"{self.url()}{path}"
        reported, last = reports_commit(
            url, release.commit, request_timeout=self.config.health.timeout,
            timeout=self.config.deploy.verify_timeout + self.config.health.start_timeout,
        )  # fmt: skip
        if not reported:
            raise DeployFailed(
                "verify",
                f"GET {url} did not report {release.commit[:7]}: last answer {last}",
                hint="the switch was undone",
            )
        return f"GET {url} reports {release.commit[:7]}"

    def watch(self, slot: str, seconds: float) -> str:
        traffic = self._traffic()
        end = time.monotonic() + seconds
        rounds = 0
        while True:
            health = traffic.health(slot)
            rounds += 1
            if health.unhealthy or not health.healthy:
                raise DeployFailed(
                    "watch",
                    f"{self.names.target_group(slot)}: "
                    + ("; ".join(health.unhealthy) or "no healthy target"),
                    hint="switched back to the previous version",
                )
            if time.monotonic() >= end:
                return f"{health.healthy} healthy target(s) for {seconds:g}s ({rounds} rounds)"
            time.sleep(min(self.config.health.interval, max(0.0, end - time.monotonic())))

    # -- Retention -----------------------------------------------------------------------------
    def prune(self, dropped: list[Release], kept: list[Release]) -> None:
        for release in dropped:
            self.discard(release, image=True)

    # -- Repair --------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        return []  # one-off tasks end by themselves, bounded by their timeout

    def serve(self, slot: str) -> str:
        traffic = self._traffic()
        if traffic.live_slot() == slot and self._desired(slot) > 0:
            return f"{self.names.service(slot)} (slot {slot}) serves"
        return self.switch_back(slot)

    def park(self, slot: str, *, remove_if_from: str | None = None) -> str:
        self._scale(slot, 0)
        return f"{self.names.service(slot)} scaled to 0"

    def tidy(self, current: str | None) -> list[str]:
        traffic = self.env.traffic()
        if traffic is None:
            return []
        done = []
        if current is not None and traffic.live_slot() != current:
            done.append(self.serve(current))
        for slot in SLOTS:
            if slot != current and slot not in traffic.missing_services() and self._desired(slot):
                self._scale(slot, 0)
                done.append(f"{self.names.service(slot)}: a candidate left running, scaled to 0")
        return done

    def live_release(self) -> Release | None:
        traffic = self.env.traffic()
        live = traffic.live_slot() if traffic is not None else None
        if live is None:
            return None
        service = self.names.service(live)
        found = self.env.clients.call("ecs", "DescribeServices", service,
                                      cluster=self.env.cluster, services=[service])  # fmt: skip
        services = found.get("services") or []
        if not services:
            return None
        labels = self.env.tasks().labels(services[0]["taskDefinition"])
        known = self.ctx.store.release(labels.get("org.shipyard.release", ""))
        if known is None:
            return None
        return Release(**{**known.__dict__, "slot": live})

    def discard(self, release: Release, *, image: bool) -> str:
        if any(r.id == release.id for r in self.ctx.store.releases()):
            return f"release {release.id} is retained"
        tasks = self.env.tasks()
        arn = tasks.of_release(release.id)
        if arn is not None:
            tasks.deregister(arn)
        if image:
            tag = release.image.rsplit(":", 1)[-1]
            self.env.clients.find(
                "ecr", "BatchDeleteImage", self.names.repository,
                missing="RepositoryNotFoundException", repositoryName=self.names.repository,
                imageIds=[{"imageTag": tag}, {"imageTag": f"{tag}-migrations"}],
            )  # fmt: skip
        return f"release {release.id} forgotten"

    def set_maintenance(self, maintenance: Maintenance | None) -> str:
        raise NotOnAws(
            "maintenance mode is not built yet for AWS environments",
            hint="deploy without --maintenance",
        )


def extensions_command(extensions: Sequence[str]) -> list[str]:
    """psql creating ``extensions`` then failing unless each is installed, against
    ``$DATABASE_URL`` (the password from ``$PGPASSWORD``). The SQL goes as positional
    arguments: nothing in it is read by the shell."""
    return [
        "sh", "-c", 'exec psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "$1" -c "$2"', "psql",
        create_extensions_sql(extensions), verify_extensions_sql(extensions),
    ]  # fmt: skip
