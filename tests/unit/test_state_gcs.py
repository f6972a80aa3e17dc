"""An environment's state kept in Cloud Storage (``state._gcs``), against the GCP stand-in (held
to Google's discovery documents): the same records as on a host; the project's default bucket,
created by the first write as an operator would and never by a read, and refused when another
project took its name; a conditional write whose answer was lost. The lock's semantics on this
backend are in ``test_lock`` (its ``gcs`` cases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from shipyard.errors import StateError
from shipyard.state import Current, StateStore
from shipyard.state._gcs import default_bucket_name
from shipyard.waiting import Clock
from tests.gcp.standin import PROJECT, REGION, Reply, Session, gcp_session
from tests.unit.fake_clock import FakeClock

BUCKET = "shop-state"
ROOT = PurePosixPath("shipyard", "shop", "production")
DEFAULT = default_bucket_name(PROJECT)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with gcp_session(tmp_path, buckets=(BUCKET,)) as running:
        yield running
        assert running.standin.invalid == []


def test_the_records_round_trip_and_list_across_pages(session: Session) -> None:
    session.storage.page_size = 2
    store = StateStore(session.state(BUCKET, ROOT))
    assert store.current() is None and store.log_ids() == []
    store.set_current(Current(slot="blue", release_id="r1", switched_at="t"))
    for day in range(1, 6):
        store.backend.write(f"logs/2026120{day}T000000-aaaa.jsonl", b"{}\n")
    again = StateStore(session.state(BUCKET, ROOT))  # another operator's machine
    assert again.current() == Current(slot="blue", release_id="r1", switched_at="t")
    assert len(again.log_ids()) == 5
    assert session.storage.object(BUCKET, f"{ROOT}/current.json") is not None

    again.backend.remove_all(keep="logs")
    assert session.storage.object(BUCKET, f"{ROOT}/current.json") is None
    assert len(again.log_ids()) == 5
    again.backend.remove_all()
    assert again.log_ids() == []


def test_the_default_bucket_is_made_by_the_first_write_never_by_a_read(session: Session) -> None:
    store = StateStore(session.state(None, ROOT))
    assert store.current() is None and store.history() == []
    assert DEFAULT not in session.storage.buckets  # reads found no state and made nothing

    store.set_current(Current(slot="green", release_id="r2", switched_at="t"))
    made = session.storage.buckets[DEFAULT].resource
    assert made["location"] == REGION
    assert made["versioning"] == {"enabled": True}
    assert made["iamConfiguration"] == {
        "uniformBucketLevelAccess": {"enabled": True},
        "publicAccessPrevention": "enforced",
    }
    assert made["labels"] == {"shipyard-managed": "true"}
    # Another operator's machine finds it, checked to be the project's.
    assert StateStore(session.state(None, ROOT)).current() is not None


def test_two_first_writes_at_once_share_one_bucket(session: Session) -> None:
    first, second = session.state(None, ROOT), session.state(None, ROOT)
    assert first.read("current.json") is None and second.read("current.json") is None
    first.write("current.json", b"1")
    second.write("history.jsonl", b"2")  # its create answers 409: it checks the owner, goes on
    assert session.storage.object(DEFAULT, f"{ROOT}/history.jsonl") == b"2"


@pytest.mark.parametrize("open_to_all", [True, False])
def test_a_default_bucket_name_another_project_took_is_refused(
    session: Session, open_to_all: bool
) -> None:
    session.storage.foreign_bucket(DEFAULT, open_to_all=open_to_all)
    store = session.state(None, ROOT)
    with pytest.raises(StateError) as refused:
        store.write("current.json", b"{}")
    assert "owned by another project" in refused.value.message
    assert "providers.gcp.state_bucket" in (refused.value.hint or "")
    with pytest.raises(StateError):
        store.read("current.json")
    assert session.storage.buckets[DEFAULT].objects == {}


def test_a_named_bucket_that_is_missing_is_named_with_the_setting(session: Session) -> None:
    for act in (
        lambda store: store.read("current.json"),  # never "nothing deployed yet"
        lambda store: store.lock_read(),
        lambda store: store.write("current.json", b"{}"),
    ):
        with pytest.raises(StateError) as refused:
            act(session.state("nobody-made-this", ROOT))
        assert "gs://nobody-made-this: no such bucket" in refused.value.message
        assert "providers.gcp.state_bucket" in refused.value.message
    assert "nobody-made-this" not in session.storage.buckets


def test_a_rate_limited_bucket_check_is_waited_out_not_taken_for_a_refusal(
    session: Session,
) -> None:
    StateStore(session.state(None, ROOT)).set_current(
        Current(slot="blue", release_id="r1", switched_at="t")
    )
    error = {"code": 403, "message": "Rate Limit Exceeded",
             "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded"}]}  # fmt: skip
    session.standin.fail("storage.buckets.get", Reply(403, {"error": error}))
    clock = FakeClock()
    store = StateStore(session.state(None, ROOT, clock=Clock(clock, clock.sleep)))
    assert store.current() is not None
    assert clock.sleeps == [1.0]


def test_a_lock_replaced_between_its_two_reads_is_read_again(session: Session) -> None:
    store = session.state(BUCKET, ROOT)
    token = store.lock_create("me", b'{"beat": 1}')
    assert token is not None
    first_read = store._generation

    def then_the_heartbeat_beats(name: str) -> str | None:
        found = first_read(name)
        if found == token:  # the holder's heartbeat replaces the record between the reads
            store.lock_refresh(token, b'{"beat": 2}')
        return found

    store._generation = then_the_heartbeat_beats  # type: ignore[method-assign]
    found = store.lock_read()
    assert found is not None and found[0] == b'{"beat": 2}' and found[1] != token


def test_a_lock_whose_answer_was_lost_is_still_its_takers(session: Session) -> None:
    store = session.state(BUCKET, ROOT)
    session.standin.lose_answer("storage.objects.insert")
    token = store.lock_create("me", b'{"id": "me"}')
    assert token is not None  # the repeat was refused (412), and the record read back is ours
    assert store.lock_read() == (b'{"id": "me"}', token)
    assert store.lock_create("you", b'{"id": "you"}') is None
    session.standin.lose_answer("storage.objects.insert")
    refreshed = store.lock_refresh(token, b'{"id": "me", "beat": 2}')
    assert refreshed is not None and refreshed != token
    assert store.lock_refresh(token, b'{"id": "me", "beat": 3}') is None  # an old token: refused
