"""The reference app's shipyard.yml with a gcp:// target, against the GCP stand-in
(``tests.gcp``: Google's APIs on loopback, every request held to their discovery documents;
Google Cloud itself cannot be reached from here), a registry container standing in for Artifact
Registry's, and the stand-in's data plane answering Cloud Run's URLs as the revision behind each
would (``tests.gcp.dataplane``).

SC-005 for a third provider: only the target changes (and where the credentials and the
stand-in's registry come from, in the environment). The same ``shipyard deploy production`` then
creates the state bucket, the repository, the Cloud SQL instance with its database and user, the
secrets, the extensions' job and the service; a redeploy starts a revision with no traffic,
checks it through its tagged URL and moves the traffic; a revision that cannot become ready
leaves the traffic where it was (exit 6); a rollback moves the traffic back without a build; a
pending migration is preceded by an on-demand Cloud SQL backup, and a failing one stops before
the traffic moves; destroy refuses a protected database before removing anything."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.providers import GcpWorld, on_gcp
from tests.example_app import git
from tests.gcp.run import Outcome
from tests.gcp.standin import PROJECT, REGION
from tests.gcp.storage import StorageModel

DEPLOY_FAILED = 6


@pytest.fixture
def world(tmp_path: Path, docker_engine: None) -> Iterator[GcpWorld]:
    with on_gcp(tmp_path, f"g{secrets.token_hex(3)}") as world:
        yield world


def test_check_names_the_credentials_and_the_state_bucket(world: GcpWorld) -> None:
    checked = world.shipyard("check", "production")
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert (
        f"service account credentials from {world.env['GOOGLE_APPLICATION_CREDENTIALS']}"
        in checked.stderr
    )
    assert f"project {PROJECT}, region {REGION} through {world.standin.url}" in checked.stderr
    assert f"gs://shipyard-state-{PROJECT}" in checked.stderr
    assert world.standin.requests == []  # offline


def test_the_example_deploys_to_cloud_run_redeploys_rolls_back_and_migrates(
    world: GcpWorld,
) -> None:
    names = world.names
    first = world.shipyard("deploy", "production", "--no-watch")
    assert first.returncode == 0, first.stderr + first.stdout
    r1 = _live_revision(world)
    assert world.serving() == {r1: 100}
    made = world.methods()
    for method in (
        "storage.buckets.insert",  # the project's state bucket, made by the first write
        "artifactregistry.projects.locations.repositories.create",
        "sql.instances.insert",
        "sql.databases.insert",
        "sql.users.insert",
        "secretmanager.projects.secrets.create",
        "run.projects.locations.jobs.run",  # the extensions, then golang-migrate
        "sql.backupRuns.insert",  # before the first migrations
        "run.projects.locations.services.create",
    ):
        assert method in made, method
    assert made.index("sql.backupRuns.insert") < made.index(
        "run.projects.locations.services.create"
    )
    status = world.shipyard("status", "production", "--json")
    assert status.returncode == 0, status.stderr
    [report] = json.loads(status.stdout)
    commit = report["commit"]
    assert report["health"] == "healthy" and commit
    assert f"{commit}" in world.plane.answer(f"/{names.service}/-/version")[1]["git_commit"]

    # plan reads only; history and logs --app read the state and Cloud Logging.
    before = len(world.standin.requests)
    planned = world.shipyard("plan", "production", "--json")
    assert planned.returncode == 0, planned.stderr + planned.stdout
    actions = [f"{s['phase']}: {s['action']}" for s in json.loads(planned.stdout)]
    assert (
        f"start: update Cloud Run service {names.service}: the new revision under tag green, "
        "with no traffic" in actions
    ), actions
    assert "watch: watch 30s; switch back to blue on failure" in actions
    assert not [r for r in world.standin.requests[before:] if r.method.split(".")[-1] in
                ("insert", "create", "patch", "run", "delete", "addVersion")]  # fmt: skip
    history = world.shipyard("history", "production", "--json")
    assert history.returncode == 0, history.stderr
    assert [(h["action"], h["result"]) for h in json.loads(history.stdout)] == [
        ("deploy", "succeeded")
    ]
    logs = world.shipyard("logs", "production", "--app")
    assert logs.returncode == 0, logs.stderr
    assert "logging.entries.list" in world.methods()

    # A redeploy: a new revision under the idle tag, no traffic until checked, then all of it.
    git(world.where, "commit", "-q", "--allow-empty", "-m", "second")
    backups = world.methods().count("sql.backupRuns.insert")
    second = world.shipyard("deploy", "production", "--no-watch")
    assert second.returncode == 0, second.stderr + second.stdout
    r2 = _live_revision(world)
    assert r2 != r1 and world.serving() == {r1: 0, r2: 100}
    checked = [path for path in world.plane.requests if path.startswith(f"/{names.service}/green/")]
    assert f"/{names.service}/green/health" in checked  # the gate, through the tagged URL
    assert f"/{names.service}/green/version" in checked  # and the commit, before the switch
    assert world.methods().count("sql.backupRuns.insert") == backups  # nothing was pending

    # A revision that cannot become ready: the traffic stays where it was.
    git(world.where, "commit", "-q", "--allow-empty", "-m", "third")
    world.run.revision_outcome = lambda revision: Outcome("failed", "container exited: code 1")
    failed = world.shipyard("deploy", "production", "--no-watch")
    assert failed.returncode == DEPLOY_FAILED, failed.stderr
    assert "container exited: code 1" in failed.stderr
    assert world.serving() == {r1: 0, r2: 100}
    world.run.revision_outcome = lambda revision: Outcome()

    # A rollback: the previous revision takes every request again; nothing is built, pushed
    # or run, and no revision is made.
    revisions, before = len(world.run.revisions), len(world.standin.requests)
    rolled = world.shipyard("rollback", "production", "--yes", "--no-watch")
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    assert world.serving() == {r1: 100, r2: 0}
    assert len(world.run.revisions) == revisions
    during = [r.method for r in world.standin.requests[before:]]
    assert not [m for m in during if m.endswith((".tags.get", ".jobs.run", "services.create"))]
    assert world.plane.answer(f"/{names.service}/-/version")[1]["git_commit"] == commit

    # A pending migration that fails: a backup first, and the traffic does not move.
    migrations = world.where / "migrations"
    (migrations / "000099_broken.up.sql").write_text("SELECT broken;\n")
    (migrations / "000099_broken.down.sql").write_text("SELECT 1;\n")
    git(world.where, "add", "-A")
    git(world.where, "commit", "-q", "-m", "a migration")
    world.run.execution_outcome = lambda job, overrides: (
        1 if job["name"].endswith("-migrate") else 0
    )
    backups = world.methods().count("sql.backupRuns.insert")
    broken = world.shipyard("deploy", "production", "--no-watch")
    assert broken.returncode == DEPLOY_FAILED, broken.stderr
    assert "golang-migrate exited 1" in broken.stderr
    assert world.methods().count("sql.backupRuns.insert") == backups + 1
    assert world.serving() == {r1: 100, r2: 0}

    # Destroy: the protected database refuses --volumes before anything is removed.
    before = len(world.standin.requests)
    refused = world.shipyard("destroy", "production", "--yes", "--volumes")
    assert refused.returncode != 0
    assert "deletion protection" in refused.stderr + refused.stdout
    removed = [r.method for r in world.standin.requests[before:] if r.method.endswith(".delete")]
    assert removed == ["storage.objects.delete"]  # the lock, released: nothing else
    gone = world.shipyard("destroy", "production", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert names.service not in "".join(world.run.services)
    state = world.standin.model(StorageModel).buckets[f"shipyard-state-{PROJECT}"].objects
    assert not [key for key in state if f"/{names.app}/" in key]


def _live_revision(world: GcpWorld) -> str:
    live = [revision for revision, percent in world.serving().items() if percent == 100]
    assert len(live) == 1, world.serving()
    return live[0]
