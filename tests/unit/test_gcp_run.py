"""Cloud Run as the GCP provider drives it (``providers.gcp._run``), against the GCP stand-in's
Cloud Run (``tests.gcp.run``, held to the run.v2 discovery document): revisions started under a
slot's tag with no traffic, the switch and the switch back, a revision that fails or never
becomes ready leaving the traffic where it was, a change made meanwhile refused, and jobs whose
execution's exit code decides."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.errors import DeployFailed
from shipyard.gcp import GcpError
from shipyard.providers.gcp import GcpNames
from shipyard.providers.gcp._run import CloudRunJobs, CloudRunService, Container, Revision
from shipyard.waiting import Clock, Interval
from tests.gcp.run import Outcome, RunModel, with_run
from tests.gcp.standin import PROJECT, REGION, Session, gcp_session
from tests.unit.fake_clock import FakeClock

NAMES = GcpNames(PROJECT, REGION, "shop", "production")
SECRET = f"projects/{PROJECT}/secrets/{NAMES.secret('API_KEY')}/versions/3"


@dataclass
class World:
    session: Session
    run: RunModel
    clock: FakeClock

    def service(self, *, timeout: float = 600.0) -> CloudRunService:
        api = self.session.api("run", clock=Clock(self.clock, self.clock.sleep))
        return CloudRunService(api, NAMES, labels={"team": "events"}, timeout=timeout,
                               interval=Interval(1.0))  # fmt: skip

    def jobs(self) -> CloudRunJobs:
        api = self.session.api("run", clock=Clock(self.clock, self.clock.sleep))
        return CloudRunJobs(api, NAMES, interval=Interval(1.0))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with gcp_session(tmp_path) as session:
        yield World(session, with_run(session.standin, polls=2), FakeClock())
        assert session.standin.invalid == []


def _revision(release: str) -> Revision:
    container = Container(
        image=f"{REGION}-docker.pkg.dev/{PROJECT}/{NAMES.repository}/shop:{release}",
        env={"APP_ENV": "production"}, secrets={"API_KEY": SECRET}, port=8080,
        cloud_sql=f"{PROJECT}:{REGION}:{NAMES.instance}", health_path="/health",
    )  # fmt: skip
    return Revision(NAMES.revision(release), container, labels={"shipyard-release": release})


def _serving(world: World) -> dict[str, int]:
    return {k.rsplit("/", 1)[-1]: v for k, v in world.run.serving(NAMES.service).items()}


def test_the_first_release_creates_the_service_and_takes_all_traffic(world: World) -> None:
    started = world.service().start("blue", _revision("r1"))
    assert started.revision == NAMES.revision("r1") and started.percent == 100
    assert started.uri.startswith("https://blue---")
    assert _serving(world) == {NAMES.revision("r1"): 100}
    sent = world.run.services[world.run._service_name(NAMES.service)].body
    assert sent["invokerIamDisabled"] is True
    assert sent["labels"] == {
        "team": "events",
        "shipyard-app": "shop",
        "shipyard-env": "production",
    }
    container = sent["template"]["containers"][0]
    assert {"name": "API_KEY", "valueSource": {"secretKeyRef": {
        "secret": f"projects/{PROJECT}/secrets/{NAMES.secret('API_KEY')}", "version": "3"}}} in container["env"]  # fmt: skip
    assert container["volumeMounts"] == [{"name": "cloudsql", "mountPath": "/cloudsql"}]
    assert sent["template"]["volumes"][0]["cloudSqlInstance"]["instances"] == [
        f"{PROJECT}:{REGION}:{NAMES.instance}"
    ]


def test_a_new_release_takes_no_traffic_until_the_switch_and_switches_back(world: World) -> None:
    service = world.service()
    service.start("blue", _revision("r1"))
    candidate = service.start("green", _revision("r2"))
    assert candidate.percent == 0 and candidate.uri.startswith("https://green---")
    assert _serving(world) == {NAMES.revision("r1"): 100, NAMES.revision("r2"): 0}

    service.switch("green")
    assert _serving(world) == {NAMES.revision("r1"): 0, NAMES.revision("r2"): 100}
    assert world.run.tags(NAMES.service) == {
        "blue": f"{world.run._service_name(NAMES.service)}/revisions/{NAMES.revision('r1')}",
        "green": f"{world.run._service_name(NAMES.service)}/revisions/{NAMES.revision('r2')}",
    }
    revisions = len(world.run.revisions)
    service.switch("blue")  # a rollback: no revision made, nothing rebuilt
    assert _serving(world) == {NAMES.revision("r1"): 100, NAMES.revision("r2"): 0}
    assert len(world.run.revisions) == revisions
    assert service.live() is not None and service.live().revision == NAMES.revision("r1")  # type: ignore[union-attr]

    with pytest.raises(DeployFailed, match="live slot"):
        service.start("blue", _revision("r3"))


@pytest.mark.parametrize(
    "outcome", [Outcome("failed", "container exited: code 1"), Outcome("pending")]
)
def test_a_revision_that_is_never_ready_leaves_the_traffic_where_it_was(
    world: World, outcome: Outcome
) -> None:
    service = world.service(timeout=120)
    service.start("blue", _revision("r1"))
    world.run.revision_outcome = lambda revision: outcome
    with pytest.raises(DeployFailed) as failed:
        service.start("green", _revision("r2"))
    assert _serving(world) == {NAMES.revision("r1"): 100}
    if outcome.state == "failed":
        assert (
            "is not ready and cannot serve traffic. container exited: code 1"
            in failed.value.message
        )
    else:
        assert "did not finish within 120s" in failed.value.message and world.clock.now >= 120


def test_a_change_made_meanwhile_is_not_overwritten(world: World) -> None:
    service = world.service()
    service.start("blue", _revision("r1"))
    seen = service.get()
    other = world.service()
    other.start("green", _revision("r2"))  # another operator's change, after our read
    stale = service.api
    body = {"template": seen["template"], "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",  # type: ignore[index]
            "revision": NAMES.revision("r1"), "percent": 100}], "etag": seen["etag"]}  # type: ignore[index]  # fmt: skip
    with pytest.raises(GcpError) as refused:
        stale.json("PATCH", service.path, body=body)
    assert refused.value.status == 409


def test_untag_refuses_the_live_revision_and_drops_a_candidate(world: World) -> None:
    service = world.service()
    service.start("blue", _revision("r1"))
    service.start("green", _revision("r2"))
    with pytest.raises(Exception, match="takes traffic"):
        service.untag("blue")
    assert service.untag("green") == f"{NAMES.revision('r2')} untagged"
    assert world.run.tags(NAMES.service).keys() == {"blue"}
    # The revision the service's template names stays: a traffic change sends it again.
    assert not service.delete_revision(NAMES.revision("r2"))
    service.start("green", _revision("r3"))
    service.untag("green")
    assert service.delete_revision(NAMES.revision("r2"))
    assert service.revision(NAMES.revision("r2")) is None
    assert service.delete() and service.get() is None and not service.delete()


def test_a_job_run_says_how_its_execution_ended(world: World) -> None:
    jobs = world.jobs()
    migrate = Container(image="migrate:r2", args=["up"], cloud_sql=f"{PROJECT}:{REGION}:x")
    ok = jobs.run("migrate", migrate, timeout=300)
    assert ok.succeeded and ok.exit_code is None
    job = world.run.jobs[f"projects/{PROJECT}/locations/{REGION}/jobs/{NAMES.job('migrate')}"]
    assert job["template"]["template"]["maxRetries"] == 0
    assert job["template"]["template"]["containers"][0]["args"] == ["up"]

    world.run.execution_outcome = lambda job, overrides: 3
    failed = jobs.run("migrate", migrate, timeout=300)
    assert not failed.succeeded and failed.exit_code == 3
    assert "exit code 3" in failed.message


def test_a_job_that_outlives_its_time_is_cancelled(world: World) -> None:
    world.run.execution_polls = 10**6
    with pytest.raises(DeployFailed, match="did not end within 30s; it was cancelled"):
        world.jobs().run(
            "release", Container(image="shop:r2", command=["/app", "seed"]), timeout=30
        )
    assert all(e.cancelled for e in world.run.executions.values())


def test_a_withdrawn_candidate_leaves_the_service_as_it_was(world: World) -> None:
    service = world.service()
    service.start("blue", _revision("r1"))
    before = service.get()
    world.run.revision_outcome = lambda revision: Outcome("failed", "exit 1")
    with pytest.raises(DeployFailed):
        service.start("green", _revision("r2"))
    # The failed revision is the service's template now: set back, then deleted.
    assert service.withdraw("green", NAMES.revision("r2"), before["template"]) == (  # type: ignore[index]
        f"{NAMES.revision('r2')} withdrawn"
    )
    assert service.revision(NAMES.revision("r2")) is None
    assert service.get()["template"]["revision"] == NAMES.revision("r1")  # type: ignore[index]
    assert _serving(world) == {NAMES.revision("r1"): 100}
    # A kept release's revision is tagged as it is: no template is sent, no revision is made.
    world.run.revision_outcome = lambda revision: Outcome()
    service.start("green", _revision("r3"))
    service.switch("green")
    service.untag("blue")
    made = len(world.run.revisions)
    again = service.start("blue", NAMES.revision("r1"))
    assert again.revision == NAMES.revision("r1") and again.percent == 0
    service.switch("blue")
    assert len(world.run.revisions) == made and _serving(world)[NAMES.revision("r1")] == 100
    with pytest.raises(DeployFailed, match="is gone"):
        service.start("green", NAMES.revision("r9"))


def test_what_a_failed_first_deploy_left_is_replaced_whole(world: World) -> None:
    service = world.service()
    service.start("blue", _revision("r1"))  # served nothing anyone recorded: no release
    started = service.start("blue", _revision("r2"), take_all=True)
    assert started.percent == 100 and _serving(world) == {NAMES.revision("r2"): 100}


def test_a_long_environment_name_keeps_revision_names_apart() -> None:
    long = GcpNames(PROJECT, REGION, "a" * 32, "staging-eu-west-extra")
    first, second = (
        long.revision("20261205T042503Z-522241"),
        long.revision("20261205T042503Z-9f3c1a"),
    )
    assert first != second and len(first) <= 63 and len(second) <= 63
    assert first.startswith(long.service + "-")
