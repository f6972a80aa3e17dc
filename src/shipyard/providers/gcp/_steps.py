"""``GcpSteps``: what the deploy pipeline asks of an environment on Cloud Run, made of this
package's parts (``deploy._steps`` names the capabilities).

A release is an image pushed to the environment's Artifact Registry repository (and, with
migrations, an image of golang-migrate holding its migration files) and a Cloud Run revision of
it. Before traffic moves: the repository, the env file's values in Secret Manager (each release's
revision pins the versions it was deployed with), the Cloud SQL instance with its database and
user (``ensure``), the extensions (a job of ``database.image``'s psql, which also verifies them),
an on-demand Cloud SQL backup when migrations are pending, golang-migrate and the release
commands as job executions whose exit code decides. The revision then starts in the idle slot
(a traffic tag) with no traffic; its readiness, then the health checks through its tagged URL,
are the gate; the switch moves every request; ``/version`` through the service's URL (or
``providers.gcp.url``) must name the release's commit. The revision that served before keeps its
tag at 0% for a rollback, which moves the traffic back without rebuilding.

The app reaches Cloud SQL through the Cloud SQL connector's socket (``/cloudsql/<connection
name>``); its DATABASE_URL, which holds the password, is a secret like the env file's values.
The schema version a deploy starts from is the one the state recorded with the live release:
golang-migrate itself applies only what the database lacks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from shipyard.build import MIGRATIONS_DIR, Image, build_migrations_image
from shipyard.config import Config, HttpCheck
from shipyard.database import (
    MigrationPlan,
    Snapshot,
    create_extensions_sql,
    verify_extensions_sql,
)
from shipyard.deploy import OperationContext
from shipyard.docker import Docker
from shipyard.errors import DeployFailed, ShipyardError
from shipyard.health import Target, build_checks, reports_commit, wait_healthy
from shipyard.hosts import Host
from shipyard.providers._recorded import plan_from_record, recorded_version
from shipyard.providers.gcp._environment import GcpEnvironment, NotOnGcp
from shipyard.providers.gcp._registry import ArtifactRegistry
from shipyard.providers.gcp._run import Container, Revision
from shipyard.state import Maintenance, Release

SLOTS = ("blue", "green")
_LOG_LINES = 30


class GcpSteps:
    """The pipeline's steps for one operation on a Google Cloud environment."""

    def __init__(self, ctx: OperationContext, local: Host, env: GcpEnvironment) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.local = local
        self.env = env
        self.names = env.names
        self.settings = env.settings
        self._migrations_ref: str | None = None
        self._tools_ref: str | None = None
        self._secrets: dict[str, str] | None = None  # key → the version this operation pinned
        # slot → (revision, made by this operation, the service's template before it)
        self._started: dict[str, tuple[str, bool, dict[str, Any] | None]] = {}
        self._releases: dict[str, Release] = {}  # slot → the release started in it

    # -- parts -------------------------------------------------------------------------------
    @functools.cached_property
    def registry(self) -> ArtifactRegistry:
        return self.env.registry()

    # -- Delivery ------------------------------------------------------------------------------
    def preflight(self) -> str:
        from shipyard.providers.gcp._provider import GcpProvider  # noqa: PLC0415 — one module up

        return GcpProvider(self.local).preflight(self.config)

    def deliver(self, image: Image) -> str:
        """The app's image, and with migrations the image holding them, in Artifact Registry."""
        done = [self.registry.deliver(image)]
        migrations = build_migrations_image(self.config, self.local, image)
        if migrations is not None:
            built = Image(migrations, "", image.version)
            done.append(self.registry.deliver(built))
            self._migrations_ref = self.registry.reference(built)
        return "; ".join(done)

    # -- Infrastructure --------------------------------------------------------------------------
    def ensure_infrastructure(self) -> str:
        """The repository, the Cloud SQL instance (its database and user), the env file's
        values and the database's URL in Secret Manager, then the extensions."""
        done = [str(a) for a in self.registry.plan()]
        self.registry.repository()
        database = self.env.database()
        if database is not None:
            done += [str(a) for a in database.ensure(password=self._database_password())]
        secrets = self.env.secrets()
        self._secrets = secrets.ensure(self._secret_values())
        secrets.grant(f"serviceAccount:{self.env.runtime_account()}")
        done.append(f"{len(self._secrets)} secret(s) in Secret Manager")
        if database is not None:
            done.append(self._extensions())
        return "; ".join(done)

    def _database_password(self) -> str:
        section = self.config.database
        assert section is not None  # noqa: S101 — a Cloud SQL instance comes with a database
        password = self.config.secrets.get(section.password_env) or ""
        if not password:
            raise ShipyardError(
                f"{section.password_env} is not set in the env file: the Cloud SQL user's password"
            )
        return password

    def _secret_values(self) -> dict[str, str]:
        """What the app reads from Secret Manager: the env file's values, and with a Cloud SQL
        instance of shipyard's the database's URL through the connector's socket."""
        values = {k: v for k, v in self.config.secrets.items().items() if v}  # none can be empty
        database, section = self.env.database(), self.config.database
        if database is not None and section is not None:
            password = quote(self._database_password(), safe="")
            values[section.url_env] = (
                f"postgres://{section.user}:{password}@/{section.name}"
                f"?host=/cloudsql/{database.connection_name}&sslmode=disable"
            )
        return values

    def _pinned(self) -> dict[str, str]:
        """The secret versions this operation's revisions and jobs read (``ensure`` pinned them;
        a rollback or repair that did not run it reads the latest)."""
        if self._secrets is None:
            self._secrets = self.env.secrets().ensure(self._secret_values())
        return self._secrets

    def _extensions(self) -> str:
        """Create the extensions and verify them, from a job of the database image's psql."""
        section = self.config.database
        if section is None or not section.extensions:
            return "no extensions"
        sql = [create_extensions_sql(section.extensions), verify_extensions_sql(section.extensions)]
        command = ["sh", "-c", f'exec psql "${section.url_env}" -v ON_ERROR_STOP=1 -c "$1" -c "$2"',
                   "psql", *sql]  # fmt: skip
        image = self._tools_image()
        timeout = section.migrations.timeout if section.migrations else 600
        ended = self._run_job("tools", image, command, timeout)
        if not ended:
            raise DeployFailed(
                "infrastructure",
                f"creating extensions {', '.join(section.extensions)} failed: {ended.detail}",
                hint="Cloud SQL for PostgreSQL offers postgis, vector and pg_trgm; nothing serves "
                "differently",
            )
        return f"extensions {', '.join(section.extensions)} created and verified"

    def _tools_image(self) -> str:
        """``database.image`` (psql) in the repository: Cloud Run runs only images it can pull."""
        section = self.config.database
        assert section is not None  # noqa: S101
        if self._tools_ref is None:
            docker = Docker(self.local)
            found = docker.image(section.image)
            if found is None:
                docker.pull(section.image)
                found = docker.image(section.image)
            image_id = found.id if found is not None else section.image
            local = (
                f"{section.image.rsplit(':', 1)[0]}:tools-{image_id.removeprefix('sha256:')[:12]}"
            )
            docker.tag(section.image, local)
            try:
                self.registry.deliver(local)
            finally:
                docker.untag(local)
            self._tools_ref = self.registry.reference(local)
        return self._tools_ref

    def url(self) -> str:
        if self.settings.url is not None:
            return self.settings.url.rstrip("/")
        found = self.env.service().url()
        return found.rstrip("/") if found else "(no Cloud Run service yet)"

    def leftovers(self) -> list[str]:
        left = []
        if self.env.service().get() is not None:
            left.append(f"Cloud Run service {self.names.service}")
        left += [f"{a.service} {a.resource}" for a in self.registry.removal()]
        return left

    # -- jobs ------------------------------------------------------------------------------------
    def _container(
        self,
        image: str,
        *,
        command: list[str] | None = None,
        port: int | None = None,
        health_path: str | None = None,
    ) -> Container:
        """A container of the app's environment: its plain variables and its secrets."""
        database = self.env.database()
        empty = {
            k: "" for k, v in self.config.secrets.items().items() if not v
        }  # Secret Manager's refusal
        env = {**empty, **self.config.app.env, "SHIPYARD_ENVIRONMENT": self.names.environment}
        return Container(
            image=image, env=env, secrets=self._pinned(), port=port, command=command or (),
            health_path=health_path,
            cloud_sql=database.connection_name if database is not None else None,
            cpu=self.settings.cpu, memory=self.settings.memory,
            startup_seconds=self.config.health.start_timeout,
            network=self.settings.cloud_sql.private_network if self.settings.cloud_sql else None,
        )  # fmt: skip

    def _run_job(self, purpose: str, image: str, command: list[str], timeout: float) -> _Ended:
        execution = self.env.jobs().run(purpose, self._container(image, command=command),
                                        timeout=timeout)  # fmt: skip
        if execution.succeeded:
            return _Ended(True, "")
        code = f"exited {execution.exit_code}" if execution.exit_code is not None else "failed"
        lines = self.env.logging().execution_lines(
            self.names.job(purpose), execution.name.rsplit("/", 1)[-1], limit=_LOG_LINES
        )
        log = "\n".join(f"    {line}" for line in lines) or "    (no log lines)"
        return _Ended(False, f"{code} ({execution.message})\n  log:\n{log}")

    # -- Schema --------------------------------------------------------------------------------
    def _recorded_version(self) -> int | None:
        return recorded_version(self.ctx.store)

    def plan_migrations(self) -> MigrationPlan:
        own = "Cloud SQL" if self.env.database() is not None else None
        return plan_from_record(self.config, self.ctx.store, own_database=own)

    def snapshot(self, release: Release) -> Snapshot:
        """An on-demand Cloud SQL backup, waited for; then retention (the newest
        ``snapshots.keep_min`` and those younger than ``snapshots.retention_days`` are kept)."""
        section, database = self.config.database, self.env.database()
        assert section is not None and database is not None  # noqa: S101 — planned only then
        started = time.monotonic()
        backup = database.backup(
            f"{release.version} {release.commit[:12]} {release.id} pre-migrate"
        )
        kept = [*self.ctx.store.releases(), release]
        protected = {r.snapshot.rsplit("/", 1)[-1] for r in kept if r.snapshot}
        try:
            pruned = database.prune(
                keep_days=section.snapshots.retention_days,
                keep_newest=section.snapshots.keep_min,
                protected=protected,
            )
        except ShipyardError as exc:
            self.ctx.phases().warn(f"pruning old Cloud SQL backups failed: {exc.message}")
        else:
            if pruned:
                self.ctx.phases().note(f"pruned {len(pruned)} old Cloud SQL backup(s)")
        return Snapshot(
            name=f"{database.name}/backupRuns/{backup.id}",
            database=section.name,
            app=self.names.app,
            environment=self.names.environment,
            version=release.version,
            commit=release.commit,
            deployment_id=release.id,
            reason="pre-migrate",
            created_at=backup.created_at,
            size=0,
            sha256="",
            duration_s=round(time.monotonic() - started, 3),
        )

    def migrate(self, release: Release) -> int | None:
        section = self.config.database
        if section is None:
            return None
        version = self._recorded_version()
        migrations = section.migrations
        timeout = migrations.timeout if migrations else 600
        if migrations is not None:
            plan = self.plan_migrations()
            if plan.pending:
                self._migrate_up(release, timeout)
                version = max(int(n.split("_", 1)[0]) for n in plan.pending)
        for argv in section.release_commands:
            ended = self._run_job("release", self._image_of(release), list(argv), timeout)
            if not ended:
                raise DeployFailed(
                    "migrate", f"release command {' '.join(argv)} {ended.detail}",
                    hint="the previous version kept serving",
                )  # fmt: skip
        return version

    def _migrate_up(self, release: Release, timeout: float) -> None:
        section = self.config.database
        assert section is not None  # noqa: S101
        if self._migrations_ref is None:
            raise ShipyardError("the migrations image was not delivered before migrating")
        command = ["sh", "-c",
                   f'exec migrate -path {MIGRATIONS_DIR} -database "${section.url_env}" up']  # fmt: skip
        ended = self._run_job("migrate", self._migrations_ref, command, timeout)
        if not ended:
            backup = release.snapshot or "none (no backup was taken)"
            raise DeployFailed(
                "migrate",
                f"golang-migrate {ended.detail}\n  the previous version kept serving; Cloud SQL "
                f"backup before it: {backup}",
                hint="fix the migration; restore the backup if the schema was changed half-way",
            )

    def schema_version(self) -> int | None:
        return self._recorded_version()

    def newest_snapshot(self) -> str | None:
        database = self.env.database()
        if database is None:
            return None
        found = database.backups()
        return found[-1].created_at if found else None

    # -- Candidates ----------------------------------------------------------------------------
    def _image_of(self, release: Release) -> str:
        return self.registry.reference(release.image)

    def _revision(self, release: Release) -> Revision:
        checks = [c for c in self.config.health.checks if isinstance(c, HttpCheck)]
        container = self._container(
            self._image_of(release), port=self.config.app.port,
            health_path=checks[0].path if checks else None,
        )  # fmt: skip
        labels = {
            "shipyard-release": release.id.lower(),
            "shipyard-commit": release.commit[:40].lower(),
            "shipyard-deployment": self.ctx.deployment_id.lower()[:63],
        }
        return Revision(
            self.names.revision(release.id), container, labels=labels,
            service_account=self.settings.service_account,
            min_instances=self.settings.min_instances, max_instances=self.settings.max_instances,
        )  # fmt: skip

    def start_slot(self, slot: str, release: Release) -> str:
        """The release's revision under tag ``slot``: deployed when it does not exist (all the
        traffic to it when nothing served before), tagged as it is when it does (a rollback:
        its template, secrets and settings are the ones it was deployed with)."""
        service = self.env.service()
        name = self.names.revision(release.id)
        found = service.get()
        exists = found is not None and service.revision(name) is not None
        previous = dict(found["template"]) if found is not None else None
        self._started[slot] = (name, not exists, previous)
        self._releases[slot] = release
        revision: Revision | str = name if exists else self._revision(release)
        started = service.start(slot, revision, take_all=self.ctx.store.current() is None)
        return f"revision {started.revision} ready under tag {slot} ({started.percent}% of traffic)"

    def remove_slot(self, slot: str) -> None:
        """Take back what this operation started in ``slot``: a revision it made (a failed one
        among them) is withdrawn, the service's template set back first; a kept release's is
        only untagged; never one that takes traffic."""
        if slot not in self._started:
            return
        name, made, previous = self._started.pop(slot)
        service = self.env.service()
        if made:
            service.withdraw(slot, name, previous)
            return
        tagged = service.tagged(slot)
        if tagged is not None and tagged.revision == name and not tagged.percent:
            service.untag(slot)

    def gate(self, slot: str) -> str:
        """The health checks (``health.checks``' HTTP ones) through the revision's tagged URL,
        ``health.passes`` rounds in a row; then ``deploy.verify_path`` there must name the
        release's commit, before any request is moved to it."""
        tagged = self.env.service().tagged(slot)
        if tagged is None or not tagged.uri:
            raise DeployFailed("health", f"no revision is tagged {slot}, or it has no URL")
        health = self.config.health
        http = [c for c in health.checks if isinstance(c, HttpCheck)]
        section = health.model_copy(update={"checks": http})
        target = Target(base_url=tagged.uri.rstrip("/"), port=443, container=tagged.revision,
                        docker=Docker(self.local))  # fmt: skip
        result = wait_healthy(build_checks(section), target, section)
        if not result.ok:
            answers = "\n".join(f"    {r.name}: {r.detail}" for r in result.last) or "    (none)"
            raise DeployFailed(
                "health",
                f"revision {tagged.revision} never became healthy: {result.reason}\n"
                f"  last answers:\n{answers}",
                hint="the previous version kept serving; fix the app or its config and deploy again",
            )
        release = self._releases.get(slot)
        if release is not None:
            self._reports(release, tagged.uri.rstrip("/"), phase="health")
        return f"{health.passes} consecutive passes through {tagged.uri}"

    # -- Traffic ---------------------------------------------------------------------------------
    def switch(self, slot: str) -> str:
        moved = self.env.service().switch(slot)
        return f"every request to {moved.revision} ({slot})"

    def switch_back(self, slot: str) -> str:
        return self.switch(slot)  # the revision is kept ready: Cloud Run starts instances itself

    def retire(self, slot: str) -> str:
        tagged = self.env.service().tagged(slot)
        name = tagged.revision if tagged is not None else slot
        return f"{name} takes no traffic; Cloud Run scales it to zero (kept tagged {slot} for a rollback)"

    # -- Observation ---------------------------------------------------------------------------
    def verify(self, release: Release) -> str:
        """``deploy.verify_path`` through the service's URL (or ``providers.gcp.url``) reports
        the release's commit."""
        return self._reports(release, self.url(), phase="verify")

    def _reports(self, release: Release, base: str, *, phase: str) -> str:
        """``deploy.verify_path`` under ``base`` reports the release's commit, within the
        verification's time; ``DeployFailed`` in ``phase`` with the last answer otherwise."""
        path = self.config.deploy.verify_path
        if path is None:
            return "deploy.verify_path is null: not verified"
        url = f"{base}{path}"
        reported, last = reports_commit(
            url, release.commit, request_timeout=self.config.health.timeout,
            timeout=self.config.deploy.verify_timeout + self.config.health.start_timeout,
        )  # fmt: skip
        if not reported:
            raise DeployFailed(
                phase,
                f"GET {url} did not report {release.commit[:7]}: last answer {last}",
                hint="the switch was undone"
                if phase == "verify"
                else "the previous version kept serving",
            )
        return f"GET {url} reports {release.commit[:7]}"

    def watch(self, slot: str, seconds: float) -> str:
        """The health checks through the service's URL for ``seconds``: a failing round fails
        the watch (and the pipeline switches back)."""
        health = self.config.health
        http = [c for c in health.checks if isinstance(c, HttpCheck)]
        section = health.model_copy(update={"checks": http})
        checks = build_checks(section)
        target = Target(base_url=self.url(), port=443, container=slot, docker=Docker(self.local))
        end = time.monotonic() + seconds
        rounds = 0
        while True:
            results = [check.run(target, health.timeout) for check in checks]
            rounds += 1
            failed = [r for r in results if not r.ok]
            if failed:
                raise DeployFailed(
                    "watch", "; ".join(f"{r.name}: {r.detail}" for r in failed),
                    hint="switched back to the previous version",
                )  # fmt: skip
            if time.monotonic() >= end:
                return f"{len(checks)} check(s) passed for {seconds:g}s ({rounds} rounds)"
            time.sleep(min(health.interval, max(0.0, end - time.monotonic())))

    # -- Retention -----------------------------------------------------------------------------
    def prune(self, dropped: list[Release], kept: list[Release]) -> None:
        for release in dropped:
            self.discard(release, image=True)

    # -- Repair --------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        return []  # job executions end by themselves, bounded by their timeout

    def serve(self, slot: str) -> str:
        live = self.env.service().live()
        tagged = self.env.service().tagged(slot)
        if live is not None and tagged is not None and live.revision == tagged.revision:
            return f"{live.revision} (slot {slot}) serves"
        return self.switch(slot)

    def park(self, slot: str, *, remove_if_from: str | None = None) -> str:
        """Take ``slot`` out of service: Cloud Run sends it no traffic already; a candidate of
        operation ``remove_if_from`` (an interrupted deploy's) is withdrawn."""
        service = self.env.service()
        tagged = service.tagged(slot)
        if tagged is None:
            return f"no revision is tagged {slot}"
        if tagged.percent:
            raise ShipyardError(f"refusing to take {tagged.revision} out of service: it serves")
        revision = service.revision(tagged.revision) or {}
        labels: Mapping[str, str] = revision.get("labels") or {}
        if (
            remove_if_from is not None
            and labels.get("shipyard-deployment") == remove_if_from.lower()
        ):
            found = service.get() or {}
            live = service.live()
            template = None
            if (
                live is not None
                and (found.get("template") or {}).get("revision") == tagged.revision
            ):
                kept = service.revision(live.revision)
                template = _template_of(kept) if kept else None
            return service.withdraw(slot, tagged.revision, template)
        return f"{tagged.revision} takes no traffic"

    def tidy(self, current: str | None) -> list[str]:
        service = self.env.service()
        if service.get() is None:
            return []
        done = []
        live = service.live()
        if current is not None and (live is None or live.tag != current):
            done.append(self.serve(current))
        return done

    def live_release(self) -> Release | None:
        live = self.env.service().live()
        if live is None:
            return None
        revision = self.env.service().revision(live.revision) or {}
        labels: Mapping[str, str] = revision.get("labels") or {}
        wanted = labels.get("shipyard-release", "")
        known = next((r for r in self.ctx.store.releases() if r.id.lower() == wanted), None)
        if known is None:
            return None
        return Release(**{**known.__dict__, "slot": live.tag or known.slot})

    def discard(self, release: Release, *, image: bool) -> str:
        """Delete a release's revision unless it is retained or takes traffic or a tag. Its
        image stays: the repository's tags are immutable (``destroy --volumes`` removes it)."""
        del image
        if any(r.id == release.id for r in self.ctx.store.releases()):
            return f"release {release.id} is retained"
        service = self.env.service()
        name = self.names.revision(release.id)
        if any(t.revision == name for t in service.traffic()):
            return f"release {release.id}'s revision is still tagged"
        service.delete_revision(name)
        return f"release {release.id} forgotten"

    def set_maintenance(self, maintenance: Maintenance | None) -> str:
        raise NotOnGcp(
            "maintenance mode is not built for Google Cloud environments",
            hint="deploy without --maintenance",
        )


def _template_of(revision: Mapping[str, Any]) -> dict[str, Any]:
    """A service template naming ``revision`` (as Cloud Run answers it), so that a change sending
    it makes no revision."""
    keys = ("containers", "volumes", "scaling", "serviceAccount", "labels", "vpcAccess", "timeout")
    template = {k: revision[k] for k in keys if revision.get(k)}
    template["revision"] = str(revision.get("name", "")).rsplit("/", 1)[-1]
    return template


class _Ended:
    """How a job ended: truthy when it succeeded; ``detail`` says how it did not."""

    def __init__(self, ok: bool, detail: str) -> None:
        self.ok = ok
        self.detail = detail

    def __bool__(self) -> bool:
        return self.ok
