"""Which releases a deploy or rollback keeps (``state.retained``): the newest ``keep``, never
without the live one nor the one that served until it came in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipyard.state import retained

_IDS = st.lists(st.text("abcdefgh", min_size=1, max_size=3), unique=True, min_size=1, max_size=12)


def test_without_rollbacks_the_newest_keep_stay() -> None:
    ids = ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert retained(ids, 3, live="r6", previous="r5") == {"r4", "r5", "r6"}


def test_the_release_a_rollback_brought_back_stays_however_old() -> None:
    # r1 serves again after a rollback, then r5 is deployed over it: r1 is what a rollback brings
    # back now, the oldest by deploy order; r2 goes instead.
    ids = ["r1", "r2", "r3", "r4", "r5"]
    assert retained(ids, 4, live="r5", previous="r1") == {"r1", "r3", "r4", "r5"}


def test_keep_one_keeps_only_the_live_release() -> None:
    assert retained(["r1", "r2", "r3"], 1, live="r3", previous="r1") == {"r3"}


@given(ids=_IDS, keep=st.integers(1, 8), data=st.data())
def test_the_rule(ids: list[str], keep: int, data: st.DataObject) -> None:
    live = data.draw(st.sampled_from(ids))
    previous = data.draw(st.none() | st.sampled_from(ids))
    stay = retained(ids, keep, live=live, previous=previous)
    assert stay <= set(ids)
    assert len(stay) == min(len(ids), keep)
    assert live in stay
    if previous is not None and keep >= 2:  # room for both
        assert previous in stay
    others = [i for i in ids if i not in {live, previous}]
    dropped = [i for i in others if i not in stay]
    kept = [i for i in others if i in stay]
    # Among the others, only older ones go: none dropped is newer than one kept.
    assert not dropped or not kept or others.index(dropped[-1]) < others.index(kept[0])
