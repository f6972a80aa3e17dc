"""The env file's values in Secret Manager (``providers.gcp._secrets``), against the GCP
stand-in's Secret Manager (``tests.gcp.secrets``, held to the secretmanager.v1 discovery
document): a secret created once, a version added only when a value changed and pinned per
release, values never read back and never in any request but ``addVersion``'s body, nor in a
message; access granted to the runtime's service account keeping the policy's other bindings;
pruning and removal limited to the environment's own."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.gcp import GcpError
from shipyard.providers.gcp import GcpNames
from shipyard.providers.gcp._secrets import (
    ACCESSOR,
    DIGEST_ANNOTATION,
    VERSION_ANNOTATION,
    SecretManager,
    SecretsError,
    crc32c,
)
from shipyard.waiting import Clock
from tests.gcp.discovery import discovery
from tests.gcp.secrets import ANOTHER_TOOL, SecretsModel
from tests.gcp.standin import PROJECT, PROJECT_NUMBER, Session, gcp_session, rpc_error
from tests.unit.fake_clock import FakeClock

NAMES = GcpNames(PROJECT, "europe-west1", "shop", "production")
LABELS = {"team": "web", "shipyard-app": "shop", "shipyard-env": "production"}
RUNTIME = f"serviceAccount:shop-runtime@{PROJECT}.iam.gserviceaccount.com"
VALUES = {"API_KEY": "k-7Qx9-first-api-key", "SESSION_SECRET": "s3ss10n-Zr2-secret"}
PREFIX = "secretmanager.projects.secrets."
WRITES = ("create", "addVersion", "patch", "delete", "setIamPolicy", "versions.destroy")


def _pin(key: str, number: int) -> str:
    return f"projects/{PROJECT}/secrets/{NAMES.secret(key)}/versions/{number}"


@dataclass
class World:
    session: Session
    model: SecretsModel
    clock: FakeClock

    def manager(self) -> SecretManager:
        api = self.session.api("secretmanager", clock=Clock(self.clock, self.clock.sleep))
        return SecretManager(api, NAMES, labels={"team": "web"})

    def sent(self, *methods: str) -> list[str]:
        """The calls made of ``methods`` (short ids: ``create``, ``versions.get``…)."""
        wanted = {PREFIX + m for m in methods}
        return [m.removeprefix(PREFIX) for m, _ in self.model.calls if m in wanted]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with gcp_session(tmp_path) as session:
        yield World(session, session.standin.add(SecretsModel(session.standin)), FakeClock())
        assert session.standin.invalid == []
        accessed = [r for r in session.standin.requests if r.method.endswith("versions.access")]
        assert accessed == []  # shipyard never reads a value back


def test_the_first_ensure_creates_each_secret_with_its_value(world: World) -> None:
    manager = world.manager()
    assert [str(a) for a in manager.plan(VALUES)] == [
        f"secretmanager: create secret {NAMES.secret('API_KEY')}",
        f"secretmanager: add the first version of secret {NAMES.secret('API_KEY')}",
        f"secretmanager: create secret {NAMES.secret('SESSION_SECRET')}",
        f"secretmanager: add the first version of secret {NAMES.secret('SESSION_SECRET')}",
    ]
    assert world.sent(*WRITES) == []  # plan reads only

    assert manager.ensure(VALUES) == {"API_KEY": _pin("API_KEY", 1),
                                      "SESSION_SECRET": _pin("SESSION_SECRET", 1)}  # fmt: skip
    secret = world.model.secrets[NAMES.secret("API_KEY")]
    assert secret.resource["replication"] == {"automatic": {}}
    assert secret.resource["labels"] == LABELS
    assert secret.resource["annotations"][VERSION_ANNOTATION] == "1"
    assert world.model.data(NAMES.secret("API_KEY")) == [(1, "ENABLED", VALUES["API_KEY"].encode())]
    assert all(c.query.get("updateMask") == "annotations"
               for m, c in world.model.calls if m.endswith(".patch"))  # fmt: skip


def test_a_second_ensure_changes_nothing(world: World) -> None:
    pinned = world.manager().ensure(VALUES)
    before = len(world.sent(*WRITES))
    again = world.manager()  # the next deploy
    assert again.plan(VALUES) == []
    assert again.ensure(VALUES) == pinned
    assert len(world.sent(*WRITES)) == before


def test_a_changed_value_adds_exactly_one_version_and_moves_its_pin(world: World) -> None:
    world.manager().ensure(VALUES)
    changed = {**VALUES, "API_KEY": "k-7Qx9-rotated-api-key"}
    manager = world.manager()
    assert [str(a) for a in manager.plan(changed)] == [
        f"secretmanager: add a version of secret (its value changed) {NAMES.secret('API_KEY')}"
    ]
    assert manager.ensure(changed) == {"API_KEY": _pin("API_KEY", 2),
                                       "SESSION_SECRET": _pin("SESSION_SECRET", 1)}  # fmt: skip
    assert world.sent("create", "addVersion") == ["create", "addVersion", "create", "addVersion",
                                                  "addVersion"]  # fmt: skip
    # The first release's version stays readable: a rollback brings that value back.
    assert [(n, state) for n, state, _ in world.model.data(NAMES.secret("API_KEY"))] == [
        (1, "ENABLED"), (2, "ENABLED")]  # fmt: skip
    assert world.manager().ensure(changed)["API_KEY"] == _pin("API_KEY", 2)
    # Back to the first value: a new version (shipyard cannot know an older one holds it).
    assert world.manager().ensure(VALUES)["API_KEY"] == _pin("API_KEY", 3)


def test_equal_values_do_not_share_a_digest(world: World) -> None:
    world.manager().ensure({"A": "the-same-value", "B": "the-same-value"})
    digests = [world.model.secrets[NAMES.secret(k)].resource["annotations"][DIGEST_ANNOTATION]
               for k in ("A", "B")]  # fmt: skip
    assert digests[0] != digests[1]
    assert all(d.startswith("pbkdf2-sha256$") for d in digests)


def test_a_pinned_version_destroyed_meanwhile_is_stored_again(world: World) -> None:
    world.manager().ensure(VALUES)
    world.model.secrets[NAMES.secret("API_KEY")].versions[0].state = "DESTROYED"
    assert world.manager().ensure(VALUES)["API_KEY"] == _pin("API_KEY", 2)


def test_a_secret_of_that_name_that_is_not_the_environments_is_refused(world: World) -> None:
    world.model.add_secret(NAMES.secret("API_KEY"), labels={"owner": "billing"}, values=(b"x",))
    with pytest.raises(SecretsError) as refused:
        world.manager().plan(VALUES)
    assert f"secret {NAMES.secret('API_KEY')} exists and is not labelled" in refused.value.message
    assert "delete or rename that secret" in (refused.value.hint or "")
    with pytest.raises(SecretsError):
        world.manager().ensure(VALUES)
    assert world.sent(*WRITES) == []
    assert world.model.data(NAMES.secret("API_KEY")) == [(1, "ENABLED", b"x")]


def test_an_empty_value_is_refused_before_anything_changes(world: World) -> None:
    with pytest.raises(SecretsError) as refused:
        world.manager().ensure({**VALUES, "SENTRY_DSN": ""})
    assert refused.value.message.startswith("SENTRY_DSN: empty in the env file")
    assert world.model.calls == []


def test_a_create_whose_answer_was_lost_finds_the_secret(world: World) -> None:
    world.session.standin.lose_answer(PREFIX + "create")
    pinned = world.manager().ensure({"API_KEY": VALUES["API_KEY"]})
    assert pinned == {"API_KEY": _pin("API_KEY", 1)}
    assert world.sent("create") == ["create", "create"]  # the repeat: 409, then found


def test_a_rate_limited_add_version_waits_and_adds_one_version(world: World) -> None:
    world.session.standin.rate_limit(PREFIX + "addVersion", 2, retry_delay="7s")
    assert world.manager().ensure({"API_KEY": VALUES["API_KEY"]})["API_KEY"] == _pin("API_KEY", 1)
    assert world.clock.sleeps == [7.0, 7.0]
    assert len(world.model.data(NAMES.secret("API_KEY"))) == 1


def test_no_value_is_sent_anywhere_but_in_an_add_version_body(world: World) -> None:
    manager = world.manager()
    values = {**VALUES, "DATABASE_URL": "postgres://shop:pa55-W0rd@/shop?host=/cloudsql/x"}
    shown = [str(a) for a in manager.plan(values)]
    manager.ensure(values)
    manager.grant(RUNTIME)
    manager.ensure({**values, "API_KEY": "k-7Qx9-rotated-api-key"})
    manager.prune(set())
    world.session.standin.fail(PREFIX + "addVersion", rpc_error(
        400, "INVALID_ARGUMENT", "Invalid resource field value in the request."))  # fmt: skip
    with pytest.raises(GcpError) as failed:
        manager.ensure({**values, "API_KEY": "k-7Qx9-third-api-key"})

    secrets = [*values.values(), "k-7Qx9-rotated-api-key", "k-7Qx9-third-api-key"]
    forms = [f for v in secrets for f in (v, base64.b64encode(v.encode()).decode())]
    added = 0
    for method, call in world.model.calls:
        seen = call.raw.decode() + repr(call.query) + repr(call.params)
        if method == PREFIX + "addVersion":
            added += 1
            assert not any(v in seen for v in secrets)  # base64 only
            continue
        assert not any(f in seen for f in forms), method
    assert added == 4
    queries = repr([r.query for r in world.session.standin.requests])
    messages = " ".join([*shown, failed.value.message, failed.value.hint or "", str(failed.value)])
    assert not any(f in queries or f in messages for f in forms)


def test_grant_adds_the_accessor_keeping_other_bindings_and_is_idempotent(world: World) -> None:
    manager = world.manager()
    manager.ensure(VALUES)
    secret = world.model.secrets[NAMES.secret("API_KEY")]
    conditional = {"role": ACCESSOR, "members": ["group:oncall@example.com"],
                   "condition": {"title": "office hours", "expression": "request.time < x"}}  # fmt: skip
    viewer = {"role": "roles/secretmanager.viewer", "members": ["user:ana@example.com"]}
    secret.policy = {"version": 3, "bindings": [conditional, viewer]}

    done = manager.grant(RUNTIME)
    assert [str(a) for a in done] == [
        f"secretmanager: grant {ACCESSOR} to {RUNTIME} on {NAMES.secret(key)}" for key in VALUES
    ]
    assert secret.policy["bindings"][:2] == [conditional, viewer]
    assert secret.policy["version"] == 3
    for key in VALUES:
        assert world.model.members(NAMES.secret(key), ACCESSOR) == [RUNTIME]

    writes = len(world.sent("setIamPolicy"))
    assert world.manager().grant(RUNTIME) == []
    assert len(world.sent("setIamPolicy")) == writes


def test_grant_reads_the_policy_again_after_a_concurrent_change(world: World) -> None:
    manager = world.manager()
    manager.ensure({"API_KEY": VALUES["API_KEY"]})
    world.model.concurrent_edits = 1
    assert len(manager.grant(RUNTIME)) == 1
    secret = NAMES.secret("API_KEY")
    assert world.model.members(secret, ACCESSOR) == [RUNTIME]
    assert world.model.members(secret, "roles/secretmanager.viewer") == [ANOTHER_TOOL]
    assert world.sent("setIamPolicy") == ["setIamPolicy", "setIamPolicy"]


def test_a_policy_that_keeps_changing_is_reported(world: World) -> None:
    manager = world.manager()
    manager.ensure({"API_KEY": VALUES["API_KEY"]})
    world.model.concurrent_edits = 100
    with pytest.raises(GcpError) as failed:
        manager.grant(RUNTIME)
    assert "kept changing" in failed.value.message
    assert "another tool is editing it" in (failed.value.hint or "")


def test_remove_all_deletes_only_the_environments_secrets(world: World) -> None:
    world.model.page_size = 1  # the list spans pages
    world.manager().ensure(VALUES)
    staging = {**LABELS, "shipyard-env": "staging"}
    world.model.add_secret("shipyard-shop-staging-API_KEY", labels=staging, values=(b"s",))
    world.model.add_secret("shipyard-shop-production-MANUAL", values=(b"m",))  # not labelled
    removal = world.manager().removal()
    assert [str(a) for a in removal] == [
        f"secretmanager: delete secret {NAMES.secret(key)}" for key in sorted(VALUES)
    ]
    assert len(world.model.secrets) == 4  # removal reads only
    world.manager().remove_all()
    assert sorted(world.model.secrets) == [
        "shipyard-shop-production-MANUAL", "shipyard-shop-staging-API_KEY"]  # fmt: skip
    assert world.manager().remove_all() == []
    filters = {c.query.get("filter") for m, c in world.model.calls if m == PREFIX + "list"}
    assert filters == {"labels.shipyard-app=shop AND labels.shipyard-env=production"}


def test_prune_destroys_the_versions_no_kept_release_pins(world: World) -> None:
    world.model.page_size = 2
    for value in ("v1-value", "v2-value", "v3-value", "v4-value"):
        world.manager().ensure({"API_KEY": value})
    # Releases keep version 1 (named as Google answers, with the project's number) and 3;
    # 4 is the latest value, kept whatever the releases say.
    keep = {f"projects/{PROJECT_NUMBER}/secrets/{NAMES.secret('API_KEY')}/versions/1",
            _pin("API_KEY", 3)}  # fmt: skip
    manager = world.manager()
    assert [str(a) for a in manager.pruning(keep)] == [
        f"secretmanager: destroy secret version {_pin('API_KEY', 2)}"
    ]
    manager.prune(keep)
    assert [(n, state) for n, state, _ in world.model.data(NAMES.secret("API_KEY"))] == [
        (1, "ENABLED"), (2, "DESTROYED"), (3, "ENABLED"), (4, "ENABLED")]  # fmt: skip
    assert manager.pruning(keep) == []  # a destroyed version is not destroyed again


def test_the_crc32c_is_castagnolis() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_the_models_answers_follow_the_document(world: World) -> None:
    """The stand-in answers in the schemas of Google's document."""
    world.manager().ensure(VALUES)
    world.manager().grant(RUNTIME)
    api = world.session.api("secretmanager")
    secret = f"v1/projects/{PROJECT}/secrets/{NAMES.secret('API_KEY')}"
    document = discovery("secretmanager")
    answers: dict[str, Any] = {
        "Secret": api.json("GET", secret),
        "SecretVersion": api.json("GET", f"{secret}/versions/1"),
        "ListSecretsResponse": api.json("GET", f"v1/projects/{PROJECT}/secrets"),
        "ListSecretVersionsResponse": api.json("GET", f"{secret}/versions"),
        "Policy": api.json("GET", f"{secret}:getIamPolicy"),
    }
    for schema, answer in answers.items():
        assert answer, schema
        assert document.check_value(answer, schema) == [], schema
    assert answers["Secret"]["name"].startswith(f"projects/{PROJECT_NUMBER}/")
