"""The environment's images in Artifact Registry (``providers.gcp._registry``), against the GCP
stand-in (held to Google's discovery documents; ``tests.gcp.registry``): the repository created
once and found afterwards, its operation failing or never ending, an image pushed only when its
tag is missing, through ``docker login`` with the access token on stdin and never in argv, the
registry override, and removal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.build import Image, VersionInfo
from shipyard.errors import CommandFailed, DeliveryError
from shipyard.gcp import OperationFailed, QuotaExceeded
from shipyard.hosts import CommandResult
from shipyard.providers.gcp._names import GcpNames
from shipyard.providers.gcp._registry import ArtifactRegistry
from shipyard.secrets import Masker
from shipyard.waiting import Clock
from tests.fakes import FakeHost
from tests.gcp.discovery import discovery
from tests.gcp.registry import RegistryModel
from tests.gcp.standin import PROJECT, REGION, Session, gcp_session
from tests.unit.fake_clock import FakeClock

NAMES = GcpNames(PROJECT, REGION, "shop", "production")
REPOSITORY = f"projects/{PROJECT}/locations/{REGION}/repositories/shipyard-shop-production"
ADDRESS = f"{REGION}-docker.pkg.dev/{PROJECT}/shipyard-shop-production"
TAG = "1.4.0-abc1234-9f8e7d6"
IMAGE = Image(f"shop:{TAG}", "sha256:abc", VersionInfo("1.4.0", "abc1234" * 5, "2026-01-01", False))
DIRECTORY = "/tmp/tmp.docker0"
CREATE = "artifactregistry.projects.locations.repositories.create"


@dataclass
class World:
    session: Session
    model: RegistryModel
    clock: FakeClock
    local: _Engine
    masker: Masker

    def registry(self, **options: Any) -> ArtifactRegistry:
        api = self.session.api("artifactregistry", clock=Clock(self.clock, self.clock.sleep))
        return ArtifactRegistry(
            api, NAMES, self.local, self.session.credentials,
            labels={"team": "web"}, masker=self.masker, **options,
        )  # fmt: skip

    def sent(self, method: str) -> int:
        return sum(1 for r in self.session.standin.requests if r.method.endswith(method))


class _Engine(FakeHost):
    """This machine: `mktemp -d` makes the private Docker configuration directory, the current
    Docker context is the default one, and `docker push` fails when told to."""

    def __init__(self, push_error: str = "") -> None:
        super().__init__()
        self.push_error = push_error

    def answer(self, command: list[str], stdin: str | bytes | None) -> CommandResult | None:
        if command == ["mktemp", "-d"]:
            self.files[DIRECTORY] = (b"", 0o700)
            return CommandResult(tuple(command), 0, DIRECTORY + "\n", "")
        if command[:3] == ["docker", "context", "inspect"]:
            return CommandResult(tuple(command), 0, "default unix:///var/run/docker.sock\n", "")
        if "push" in command and self.push_error:
            raise CommandFailed("local", command, 1, self.push_error)
        return None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with gcp_session(tmp_path) as session:
        model = session.standin.add(RegistryModel(session.standin))
        yield World(session, model, FakeClock(), _Engine(), Masker())
        assert session.standin.invalid == []


def test_the_repository_is_created_once_then_found(world: World) -> None:
    world.model.create_polls = 2
    registry = world.registry()
    [planned] = registry.plan()
    assert str(planned) == "artifactregistry: create Docker repository shipyard-shop-production"
    assert world.sent(CREATE) == 0  # plan reads only

    assert registry.repository() == ADDRESS
    made = world.model.repositories[REPOSITORY].body
    assert made["format"] == "DOCKER"
    assert made["dockerConfig"] == {"immutableTags": True}
    assert made["labels"] == {"team": "web", "shipyard-app": "shop", "shipyard-env": "production"}
    assert made["description"] == "shipyard: the images of shop (production)"
    assert len(world.clock.sleeps) == 2  # the operation was polled until done, on the fake clock

    again = world.registry()  # the next deploy
    assert again.plan() == []
    assert again.repository() == ADDRESS
    assert world.sent(CREATE) == 1


def test_a_repository_created_meanwhile_by_another_operator_is_taken(world: World) -> None:
    registry = world.registry()
    [planned] = registry.plan()
    world.model.add_repository("shipyard-shop-production", REGION)
    planned.run()  # 409: found, not an error
    assert registry.repository() == ADDRESS


def test_a_create_whose_answer_was_lost_waits_for_the_repository(world: World) -> None:
    """The repeat is refused (409: it is being created): the repository is waited for."""
    world.model.create_polls = 3
    world.session.standin.lose_answer(CREATE)
    assert world.registry().repository() == ADDRESS
    assert world.sent(CREATE) == 2
    assert world.model.repositories[REPOSITORY].body["dockerConfig"] == {"immutableTags": True}


@pytest.mark.parametrize("ending", ["error", "never"])
def test_a_create_that_fails_or_never_ends_names_the_repository(world: World, ending: str) -> None:
    if ending == "error":
        world.model.create_error = {"code": 9, "message": "Location europe-west1 is unavailable"}
    else:
        world.model.create_never_done = True
    with pytest.raises(OperationFailed) as failed:
        world.registry(timeout=60).repository()
    message = failed.value.message
    assert "Artifact Registry repository shipyard-shop-production (europe-west1)" in message
    if ending == "error":
        assert "failed: Location europe-west1 is unavailable" in message
    else:
        assert "did not finish within 60s" in message
        assert world.clock.now == pytest.approx(60)  # waited on the fake clock, never for real
    assert REPOSITORY not in world.model.repositories


def test_a_spent_repository_quota_is_not_retried_and_says_where_to_ask(world: World) -> None:
    world.model.repository_quota = 0
    with pytest.raises(QuotaExceeded) as refused:
        world.registry().repository()
    assert "RepositoriesPerProjectPerRegion" in refused.value.message
    assert world.sent(CREATE) == 1 and world.clock.sleeps == []


def test_a_repository_of_another_format_is_refused(world: World) -> None:
    world.model.add_repository("shipyard-shop-production", REGION, {"format": "NPM"})
    with pytest.raises(DeliveryError) as refused:
        world.registry().plan()
    assert "holds NPM packages, not Docker images" in refused.value.message
    assert "gcloud artifacts repositories delete shipyard-shop-production" in (
        refused.value.hint or ""
    )


def test_an_image_the_registry_has_under_its_tag_is_not_pushed(world: World) -> None:
    world.model.add_repository("shipyard-shop-production", REGION)
    world.model.add_image(REPOSITORY, "shop", [TAG])
    done = world.registry().deliver(IMAGE)
    assert done == f"Artifact Registry has {ADDRESS}/shop:{TAG} already"
    assert world.local.commands == []


def test_a_missing_tag_is_pushed_with_the_token_on_stdin_only(world: World) -> None:
    world.model.add_image(  # another release's image: the same package, another tag
        world.model.add_repository("shipyard-shop-production", REGION)["name"], "shop", ["0.9.0"]
    )
    done = world.registry().deliver(IMAGE)
    ref = f"{ADDRESS}/shop:{TAG}"
    assert done.startswith(f"pushed {ref} in ")
    token = world.session.credentials.token()
    private = ["docker", "--config", DIRECTORY]
    assert world.local.commands == [
        ["mktemp", "-d"],
        ["docker", "context", "inspect", "--format", "{{.Name}} {{.Endpoints.docker.Host}}"],
        [*private, "login", "--username", "oauth2accesstoken", "--password-stdin",
         f"{REGION}-docker.pkg.dev"],
        [*private, "tag", f"shop:{TAG}", ref],
        [*private, "push", "--quiet", ref],
        [*private, "image", "rm", ref],
        ["rm", "-rf", DIRECTORY],
    ]  # fmt: skip
    assert world.local.stdins[2] == token
    assert not any(token in " ".join(command) for command in world.local.commands)
    assert token not in world.masker(f"login with {token}")
    assert DIRECTORY not in world.local.files  # the credentials do not stay on disk


def test_the_migrations_image_goes_under_the_apps_name(world: World) -> None:
    migrations = Image(f"shop:{TAG}-migrations", "", IMAGE.version)
    assert world.registry().reference(migrations) == f"{ADDRESS}/shop:{TAG}-migrations"


def test_the_registry_override_replaces_the_host_only(world: World) -> None:
    registry = world.registry(registry="127.0.0.1:5000/")
    ref = f"127.0.0.1:5000/{PROJECT}/shipyard-shop-production/shop:{TAG}"
    assert registry.reference(IMAGE) == ref
    registry.deliver(IMAGE)
    login = next(c for c in world.local.commands if "login" in c)
    assert login[-1] == "127.0.0.1:5000"
    assert [*["docker", "--config", DIRECTORY], "push", "--quiet", ref] in world.local.commands


def test_a_refused_push_says_which_role_is_missing(world: World) -> None:
    world.local.push_error = (
        'denied: Permission "artifactregistry.repositories.uploadArtifacts" denied on resource'
    )
    with pytest.raises(DeliveryError) as refused:
        world.registry().deliver(IMAGE)
    assert f"docker push of {ADDRESS}/shop:{TAG} failed: denied" in refused.value.message
    assert "roles/artifactregistry.writer" in (refused.value.hint or "")
    assert world.local.commands[-1] == ["rm", "-rf", DIRECTORY]  # cleaned up all the same


def test_remove_deletes_the_environments_repository_and_waits(world: World) -> None:
    world.model.delete_polls = 1
    registry = world.registry()
    registry.repository()
    world.model.add_image(REPOSITORY, "shop", [TAG])
    [removed] = registry.remove()
    assert str(removed) == (
        "artifactregistry: delete repository (and its images) shipyard-shop-production"
    )
    assert REPOSITORY not in world.model.repositories
    assert world.registry().remove() == []  # nothing left to remove


def test_remove_leaves_a_repository_that_is_not_the_environments(world: World) -> None:
    world.model.add_repository("shipyard-shop-production", REGION, {"format": "DOCKER"})
    assert world.registry().removal() == []
    assert REPOSITORY in world.model.repositories


def test_the_models_answers_follow_the_document(world: World) -> None:
    """The stand-in answers in the schemas of Google's document."""
    registry = world.registry()
    registry.repository()
    digest = world.model.add_image(REPOSITORY, "shop", [TAG, "extra"])
    api = world.session.api("artifactregistry")
    document = discovery("artifactregistry")
    answers = {
        "Repository": api.json("GET", f"v1/{REPOSITORY}"),
        "Tag": api.json("GET", f"v1/{REPOSITORY}/packages/shop/tags/{TAG}"),
        "DockerImage": api.json("GET", f"v1/{REPOSITORY}/dockerImages/shop@{digest}"),
        "ListDockerImagesResponse": api.json("GET", f"v1/{REPOSITORY}/dockerImages"),
        "Operation": api.json("DELETE", f"v1/{REPOSITORY}"),
    }
    for schema, answer in answers.items():
        assert answer, schema
        assert document.check_value(answer, schema) == [], schema
    assert answers["Repository"]["registryUri"] == ADDRESS  # type: ignore[index]
