"""Waiting for a condition: the one polling loop, with a deadline, an interval that may grow,
and a clock that tests replace.

Every wait in shipyard (the health gate, the watch, verify, drain, the proxy's readiness,
the lock, provisioning) goes through ``wait_until``: the condition is tried at once, then after
each interval; no sleep goes past the deadline; and the condition gets one last try at the
deadline, so a slow machine that woke late still sees a condition that came true meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["SYSTEM", "Backoff", "Clock", "Interval", "wait_until"]

T = TypeVar("T")


@dataclass(frozen=True)
class Clock:
    """Where time comes from: ``now`` (monotonic seconds) and ``sleep``."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


SYSTEM = Clock()


@dataclass(frozen=True)
class Interval:
    """Seconds between tries: ``first``, then each one ``factor`` times the last, at most
    ``most`` (a fixed interval: factor 1)."""

    first: float
    factor: float = 1.0
    most: float | None = None

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay *= self.factor
            if self.most is not None:
                delay = min(delay, self.most)


class Backoff:
    """The retries of one request, within a total time (``budget`` seconds from now): each pause
    is what the answer asked for (``Retry-After``), else ``first`` seconds doubling up to
    ``most``. ``pause`` sleeps and says ``True``, or says ``False`` without sleeping when the
    pause would end past the budget (the caller then reports what it got)."""

    def __init__(
        self, budget: float, *, first: float = 1.0, most: float = 30.0, clock: Clock = SYSTEM
    ) -> None:
        self.clock = clock
        self.deadline = clock.now() + budget
        self.first = self.next = first
        self.most = most

    def pause(self, asked: float | None = None) -> bool:
        if asked is None:
            asked, self.next = self.next, min(self.next * 2, self.most)
        asked = max(asked, self.first / 10)  # "retry after 0 s" is not a busy loop
        if self.clock.now() + asked > self.deadline:
            return False
        self.clock.sleep(asked)
        return True


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    interval: float | Interval | Iterator[float],
    clock: Clock = SYSTEM,
    done: Callable[[T], bool] = bool,
) -> T | None:
    """Try ``condition`` until its value is ``done`` (by default: true), and return that value;
    ``None`` when ``timeout`` seconds passed without one (the caller says what did not
    happen). ``interval``: seconds between tries, an ``Interval``, or an iterator of pauses (read
    after each try, so it may depend on how the try went)."""
    if isinstance(interval, Interval):
        delays = interval.delays()
    elif isinstance(interval, float | int):
        delays = Interval(interval).delays()
    else:
        delays = interval
    deadline = clock.now() + timeout
    while True:
        if done(result := condition()):
            return result
        left = deadline - clock.now()
        if left <= 0:
            return None
        clock.sleep(min(next(delays), left))
