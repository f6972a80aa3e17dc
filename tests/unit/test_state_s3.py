"""An environment's state kept in S3 (``state._s3``): the same records as on a host, against the
AWS stand-in (moto's server on loopback); errors S3 answers with, from botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest
from botocore.stub import Stubber

from shipyard.errors import HostUnreachable, ShipyardError, StateError
from shipyard.state import Current, HistoryEntry, Intent, Lock, Release, StateStore
from shipyard.state._s3 import S3State, s3_client
from tests.aws_standin import REGION, client, moto_server, moto_with_bucket

BUCKET = "shipyard-state-records"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_with_bucket(BUCKET) as url:
        yield url


def _state(endpoint: str, environment: str, app: str = "shop") -> S3State:
    return S3State(client("s3", endpoint), BUCKET, PurePosixPath("shipyard", app, environment))


def _release(release_id: str) -> Release:
    return Release(
        id=release_id, version="1.0.0", commit="c" * 40, image=f"shop:{release_id}",
        image_id="sha256:1", slot="blue", migration_version=3, created_at="2026-12-04T00:00:00Z",
        deployed_by="op@laptop",
    )  # fmt: skip


def test_the_records_round_trip_through_the_bucket(endpoint: str) -> None:
    store = StateStore(_state(endpoint, "records"))
    assert store.current() is None and store.releases() == [] and store.history() == []
    store.set_current(Current(slot="blue", release_id="r1", switched_at="t"))
    store.save_releases([_release("r1"), _release("r2")])
    entry = HistoryEntry(
        deployment_id="d1", action="deploy", result="succeeded", version="1.0.0", commit="c",
        slot="blue", started_at="2026-12-04T00:00:00Z", duration_s=1.0, by="op@laptop",
    )  # fmt: skip
    store.append_history(entry)
    store.append_history(entry)
    store.write_intent(
        Intent(
            deployment_id="d2", action="deploy", release=_release("r2"), previous=None,
            step="start", by="op@laptop", started_at="t", updated_at="t",
        )
    )  # fmt: skip
    store.backend.write("logs/20261204T000000-aaaa.jsonl", b"{}\n")
    store.backend.write("logs/20261203T000000-bbbb.jsonl", b"{}\n")

    again = StateStore(_state(endpoint, "records"))  # another operator's machine reads the same
    assert again.current() == Current(slot="blue", release_id="r1", switched_at="t")
    assert [r.id for r in again.releases()] == ["r1", "r2"]
    assert again.history() == [entry, entry]
    assert again.intent() is not None and again.intent().deployment_id == "d2"  # type: ignore[union-attr]
    assert again.log_ids() == ["20261203T000000-bbbb", "20261204T000000-aaaa"]
    assert again.log("20261204T000000-aaaa") == "{}\n"
    again.clear_intent()
    assert store.intent() is None
    assert (
        again.backend.where("current.json") == f"s3://{BUCKET}/shipyard/shop/records/current.json"
    )


def test_removing_an_environment_leaves_every_other_object(endpoint: str) -> None:
    gone, other = _state(endpoint, "gone"), _state(endpoint, "kept")
    for name in ("current.json", "logs/a.jsonl", "snapshots/s1.json", "snapshots/s2.json"):
        gone.write(name, b"x")
    other.write("current.json", b"y")
    neighbour = S3State(client("s3", endpoint), BUCKET, PurePosixPath("shipyard", "shop", "gone2"))
    neighbour.write("current.json", b"z")  # a prefix of the same start is another environment

    gone.remove_all(keep="snapshots")
    assert gone.read("current.json") is None and gone.names("logs") == []
    assert sorted(gone.names("snapshots")) == ["s1.json", "s2.json"]
    gone.remove_all()
    assert gone.names("snapshots") == []
    assert other.read("current.json") == b"y" and neighbour.read("current.json") == b"z"


def test_a_takeover_keeps_the_stale_record_and_a_stale_token_refreshes_nothing(
    endpoint: str,
) -> None:
    state = _state(endpoint, "takeover")
    first = state.lock_create("first", b'{"deployment_id": "first"}')
    assert first is not None
    assert state.lock_create("second", b'{"deployment_id": "second"}') is None
    second = state.lock_take_over(first, "first", "second", b'{"deployment_id": "second"}')
    assert second is not None
    assert state.read("lock.stale-first.json") == b'{"deployment_id": "first"}'
    # The first holder's heartbeat with its old token is refused: S3 tells it lost the lock.
    assert state.lock_refresh(first, b'{"deployment_id": "first"}') is None
    assert state.lock_take_over(first, "first", "third", b"{}") is None  # already taken over
    state.lock_delete(first)  # not its lock any more: nothing removed
    assert state.lock_read() == (b'{"deployment_id": "second"}', second)
    state.lock_prune(0)  # kept records older than now: the stale one goes, the lock stays
    assert state.read("lock.stale-first.json") is None
    assert state.lock_read() is not None
    state.lock_delete(second)
    assert state.lock_read() is None


def test_a_heartbeat_after_a_takeover_fences_the_old_holder(endpoint: str) -> None:
    store = StateStore(_state(endpoint, "fenced"))
    holder = Lock(store, "slow", "deploy", ttl=60)
    assert holder.try_acquire()
    holder._stop.set()
    holder._beat.join()  # type: ignore[union-attr]
    store.backend.lock_delete(None)  # someone broke it (--force) and another deploy took it
    taker = Lock(store, "other", "deploy", ttl=60)
    assert taker.try_acquire()
    assert store.backend.lock_refresh(holder._token or "", holder._record()) is None
    with pytest.raises(Exception, match="belongs to deploy by"):
        holder.ensure_held()
    taker.release()


def test_a_missing_bucket_is_named() -> None:
    with moto_server() as url:
        state = S3State(client("s3", url), "no-such-bucket-here", PurePosixPath("shipyard/a/b"))
        with pytest.raises(StateError) as caught:
            state.read("current.json")
    assert "s3://no-such-bucket-here: no such bucket" in caught.value.message
    assert caught.value.hint


def test_an_unreachable_endpoint_is_the_hosts_exit_code() -> None:
    unreachable = client(
        "s3", "http://127.0.0.1:1", retries={"total_max_attempts": 1}, connect_timeout=2
    )
    state = S3State(unreachable, BUCKET, PurePosixPath("shipyard/a/b"))
    with pytest.raises(HostUnreachable, match=r"s3://shipyard-state-records/shipyard/a/b/current"):
        state.read("current.json")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, "AWS kept throttling the request through every retry (SlowDown"),
        ("AccessDenied", 403, "access denied for s3:GetObject"),
    ],
)
def test_errors_s3_answers_with_say_what_to_do(code: str, status: int, expected: str) -> None:
    s3 = s3_client(region=REGION, endpoint_url="http://127.0.0.1:1")
    state = S3State(s3, BUCKET, PurePosixPath("shipyard/a/b"))
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(ShipyardError) as caught:
            state.read("current.json")
    assert expected in caught.value.message
    assert "s3://shipyard-state-records/shipyard/a/b/current.json" in caught.value.message
    assert caught.value.hint
