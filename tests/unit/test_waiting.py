"""The one polling loop: tries, intervals, the deadline and the last try, on a fake clock."""

from __future__ import annotations

from shipyard.waiting import Backoff, Clock, Interval, wait_until


class FakeClock:
    """Time that passes only when slept (or when a test moves it)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    @property
    def clock(self) -> Clock:
        return Clock(now=lambda: self.now, sleep=self.sleep)


def test_a_true_condition_returns_at_once_without_sleeping() -> None:
    fake = FakeClock()
    assert wait_until(lambda: "ready", timeout=10, interval=1, clock=fake.clock) == "ready"
    assert fake.slept == []


def test_the_value_that_came_true_is_returned_after_the_intervals() -> None:
    fake = FakeClock()
    answers = iter([None, None, 0, {"slot": "blue"}])
    found = wait_until(lambda: next(answers), timeout=10, interval=0.5, clock=fake.clock)
    assert found == {"slot": "blue"}
    assert fake.slept == [0.5, 0.5, 0.5]


def test_a_growing_interval_is_capped() -> None:
    fake = FakeClock()
    assert (
        wait_until(lambda: None, timeout=10, interval=Interval(0.1, 2, 1.0), clock=fake.clock)
        is None
    )
    assert fake.slept[:6] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_no_sleep_goes_past_the_deadline_and_the_deadline_gets_a_last_try() -> None:
    fake = FakeClock()
    tried_at: list[float] = []

    def condition() -> bool:
        tried_at.append(fake.now)
        return fake.now >= 2.5

    assert wait_until(condition, timeout=2.5, interval=1, clock=fake.clock) is True
    assert tried_at == [0.0, 1.0, 2.0, 2.5]
    assert fake.slept == [1, 1, 0.5]


def test_a_condition_never_true_gives_none_at_the_deadline() -> None:
    fake = FakeClock()
    assert wait_until(lambda: False, timeout=3, interval=1, clock=fake.clock) is None
    assert fake.now == 3


def test_a_zero_timeout_tries_once() -> None:
    fake = FakeClock()
    tries: list[int] = []
    assert wait_until(lambda: tries.append(1), timeout=0, interval=1, clock=fake.clock) is None
    assert tries == [1] and fake.slept == []


def test_done_decides_when_a_falsy_answer_counts() -> None:
    fake = FakeClock()
    answers = iter([None, {}, {"apps": {}}])
    found = wait_until(
        lambda: next(answers), timeout=5, interval=1, clock=fake.clock, done=lambda a: a is not None
    )
    assert found == {} and fake.slept == [1]
    counts = iter([3, 1, 0, 5])
    assert (
        wait_until(
            lambda: next(counts), timeout=5, interval=1, clock=fake.clock, done=lambda n: n == 0
        )
        == 0
    )


def test_backoff_pauses_as_asked_else_doubling_and_never_past_its_budget() -> None:
    fake = FakeClock()
    retries = Backoff(10, first=1, most=4, clock=fake.clock)
    assert retries.pause() and retries.pause() and retries.pause(0.5) and retries.pause()
    assert fake.slept == [1, 2, 0.5, 4]
    assert not retries.pause()  # 4 more would end at 11.5, past the budget: no sleep
    assert retries.pause(2.5) and not retries.pause(0.1)
    assert fake.slept == [1, 2, 0.5, 4, 2.5] and fake.now == 10
