"""The deploy lock: atomic, heartbeated, stale takeover with exactly one winner."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from shipyard.errors import HostUnreachable, LockHeld, LockLost
from shipyard.hosts import LocalHost
from shipyard.state import (
    STALE_KEEP_DAYS,
    Lock,
    StateStore,
    _pid_space,
    _process_start,
    deployer,
    holder_is_gone,
)
from shipyard.state._s3 import S3State
from shipyard.waiting import wait_until
from tests.aws_standin import client, moto_with_bucket
from tests.gcp.standin import Session, gcp_session

BUCKET = "shipyard-state-test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_with_bucket(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with gcp_session(tmp_path_factory.mktemp("gcp"), buckets=(BUCKET,)) as session:
        yield session
        assert session.standin.invalid == []


@pytest.fixture
def host_store(tmp_path: Path) -> StateStore:
    return StateStore.on_host(LocalHost(), PurePosixPath(tmp_path / "state"))


@pytest.fixture(params=["host", "s3", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    """The lock on each backend: a directory on a host, an S3 bucket and a Cloud Storage bucket
    (on their stand-ins)."""
    if request.param == "host":
        return StateStore.on_host(LocalHost(), PurePosixPath(tmp_path / "state"))
    root = PurePosixPath("shipyard", tmp_path.name, "production")
    if request.param == "gcs":
        session: Session = request.getfixturevalue("gcs")
        return StateStore(session.state(BUCKET, root))
    endpoint = request.getfixturevalue("s3_endpoint")
    return StateStore(S3State(client("s3", endpoint), BUCKET, root))


def test_second_taker_is_refused_with_the_owner(store: StateStore) -> None:
    first = Lock(store, "d1", "deploy", ttl=60)
    first.acquire()
    with pytest.raises(LockHeld) as caught:
        Lock(store, "d2", "deploy", ttl=60).acquire()
    assert "d1" in caught.value.message
    assert "deploy by" in caught.value.message
    first.release()
    third = Lock(store, "d3", "deploy", ttl=60)
    third.acquire()
    third.release()


def test_owner_record_has_identity_and_heartbeat(host_store: StateStore) -> None:
    store = host_store
    lock = Lock(store, "d1", "rollback", ttl=60)
    lock.acquire()
    owner = json.loads(Path(store.path("lock", "owner.json")).read_text())
    assert {"deployment_id", "operation", "by", "pid", "started_at", "heartbeat", "ttl"} <= set(
        owner
    )
    assert owner["operation"] == "rollback"
    lock.release()
    assert not Path(store.path("lock")).exists()


def test_stale_lock_is_taken_over(store: StateStore) -> None:
    clock = Clock()
    dead = Lock(store, "dead", "deploy", ttl=10, clock=clock)
    assert dead.try_acquire()
    dead._stop.set()  # the holder died: no more heartbeats
    clock.now += 11
    taker = Lock(store, "alive", "deploy", ttl=10, clock=clock)
    assert taker.try_acquire()
    assert taker.holder()["deployment_id"] == "alive"  # type: ignore[index]
    assert taker.owner["took_over_from"] == "dead"
    taker.release()


def test_fresh_lock_is_not_taken_over(store: StateStore) -> None:
    clock = Clock()
    holder = Lock(store, "holder", "deploy", ttl=10, clock=clock)
    assert holder.try_acquire()
    clock.now += 5
    assert not Lock(store, "other", "deploy", ttl=10, clock=clock).try_acquire()
    holder.release()


def test_two_takers_of_one_stale_lock_never_both_win(store: StateStore) -> None:
    for round_ in range(20):
        clock = Clock()
        dead = Lock(store, f"dead{round_}", "deploy", ttl=10, clock=clock)
        assert dead.try_acquire()
        dead._stop.set()
        clock.now += 11
        takers = [Lock(store, f"t{round_}-{i}", "deploy", ttl=10, clock=clock) for i in range(4)]
        outcomes: list[tuple[Lock, bool]] = []
        barrier = threading.Barrier(len(takers))

        def take(
            lock: Lock,
            barrier: threading.Barrier = barrier,
            outcomes: list[tuple[Lock, bool]] = outcomes,
        ) -> None:
            barrier.wait()
            outcomes.append((lock, lock.try_acquire()))

        threads = [threading.Thread(target=take, args=(t,)) for t in takers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [lock for lock, ok in outcomes if ok]
        assert len(winners) == 1, [ok for _, ok in outcomes]
        winner = winners[0]
        assert store.lock("x", "y").holder()["deployment_id"] == winner.owner["deployment_id"]  # type: ignore[index]
        winner.release()


def _taken_over(store: StateStore) -> tuple[Lock, Lock]:
    """A lock "first" took and stopped beating for longer than its ttl, then "second" took
    over: (first, second)."""
    clock = Clock()
    first = Lock(store, "first", "deploy", ttl=10, clock=clock)
    assert first.try_acquire()
    first._stop.set()
    clock.now += 11
    second = Lock(store, "second", "deploy", ttl=10, clock=clock)
    assert second.try_acquire()
    return first, second


def test_release_never_removes_someone_elses_lock(store: StateStore) -> None:
    first, second = _taken_over(store)
    first.release()  # the slow first holder comes back and lets go
    assert second.holder()["deployment_id"] == "second"  # type: ignore[index]
    second.release()


def test_break_lock_reports_whose_it_was(store: StateStore) -> None:
    held = Lock(store, "held", "deploy", ttl=60)
    held.acquire()
    broken = Lock(store, "op", "release").break_lock()
    assert broken is not None and broken["deployment_id"] == "held"
    after = Lock(store, "next", "deploy")
    assert after.try_acquire()
    held.release()  # its lock was broken: it removes nothing
    assert after.holder()["deployment_id"] == "next"  # type: ignore[index]
    after.release()


def test_taken_over_locks_are_kept_a_week(host_store: StateStore) -> None:
    store = host_store
    root = Path(str(store.root))
    old, recent = root / "lock.stale-old", root / "lock.stale-recent"
    for graveyard in (old, recent):
        graveyard.mkdir(parents=True)
        (graveyard / "owner.json").write_text("{}")
    week_ago = time.time() - (STALE_KEEP_DAYS + 1) * 86400
    os.utime(old, (week_ago, week_ago))
    lock = Lock(store, "now", "deploy", ttl=10)
    assert lock.try_acquire()
    lock.release()
    assert not old.exists()
    assert recent.exists()


def test_a_holder_silent_past_the_ttl_is_fenced_even_before_anyone_takes_over(
    store: StateStore,
) -> None:
    clock = Clock()
    holder = Lock(store, "paused", "deploy", ttl=10, clock=clock)
    assert holder.try_acquire()
    holder.ensure_held()  # fresh: still ours
    holder._stop.set()  # no heartbeat while "suspended"
    clock.now += 11
    with pytest.raises(LockLost, match="no heartbeat for 11s"):
        holder.ensure_held()
    holder.release()  # nobody took it over: its own lock is removed
    assert holder.holder() is None


def test_a_holder_whose_lock_was_taken_over_is_fenced(store: StateStore) -> None:
    first, second = _taken_over(store)
    assert second.took_over is not None and second.took_over["deployment_id"] == "first"
    first._beaten("")  # even a holder that believes it beat just now
    with pytest.raises(LockLost, match="belongs to deploy by"):
        first.ensure_held()
    first.release()
    assert second.holder()["deployment_id"] == "second"  # type: ignore[index]
    second.ensure_held()
    second.release()


def test_a_lock_whose_holder_process_is_gone_is_taken_over_at_once(host_store: StateStore) -> None:
    store = host_store
    gone = subprocess.Popen(["sleep", "30"])
    owner = {
        "deployment_id": "killed",
        "operation": "deploy",
        "by": deployer(),
        "pid": gone.pid,
        "pid_start": _process_start(gone.pid),
        "pid_space": _pid_space(),
        "started_at": "2026-01-01T00:00:00Z",
        "heartbeat": time.time(),  # fresh: only its process tells it is gone
        "ttl": 600,
    }
    lock_dir = Path(str(store.path("lock")))
    lock_dir.mkdir(parents=True)
    (lock_dir / "owner.json").write_text(json.dumps(owner))
    assert not holder_is_gone(owner)
    assert not Lock(store, "next", "deploy", ttl=600).try_acquire()
    gone.kill()
    gone.wait()
    assert holder_is_gone(owner)
    taker = Lock(store, "next", "deploy", ttl=600)
    assert taker.try_acquire()
    assert taker.owner["took_over_from"] == "killed"
    taker.release()


def test_a_lock_held_elsewhere_is_never_judged_by_local_processes() -> None:
    here = {"by": deployer(), "pid_space": _pid_space()}
    assert not holder_is_gone({"by": "someone@another-machine", "pid": 1, "pid_start": 1})
    # The same user@machine name in another container or after a reboot: another pid space.
    assert not holder_is_gone({**here, "pid": 999_999, "pid_start": 1, "pid_space": "x/pid:[1]"})
    assert holder_is_gone({**here, "pid": 999_999, "pid_start": 1})  # here, and gone
    assert not holder_is_gone({**here, "pid": os.getpid(), "pid_start": 0})


def test_a_heartbeat_that_cannot_reach_the_lock_tries_again(store: StateStore) -> None:
    lock = Lock(store, "flaky", "deploy", ttl=6)  # beats every 1.5 s; 2 failures leave 1.5 s
    assert lock.try_acquire()
    real = lock.backend.lock_read
    calls = {"failed": 0}

    def flaky() -> tuple[bytes, str] | None:
        if calls["failed"] < 2:
            calls["failed"] += 1
            raise HostUnreachable("the lock's storage cannot be reached")
        return real()

    lock.backend.lock_read = flaky  # type: ignore[method-assign]
    try:
        assert wait_until(lambda: calls["failed"] == 2, timeout=30, interval=0.05)
        assert lock._beat is not None and lock._beat.is_alive()  # it survived the failures
        beat = lock._beat_at
        assert wait_until(lambda: lock._beat_at != beat, timeout=30, interval=0.05)
    finally:
        lock.backend.lock_read = real  # type: ignore[method-assign]
        lock.release()
    assert lock.holder() is None
