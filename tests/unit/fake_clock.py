"""A clock for unit tests of code that waits: time moves only when that code sleeps (or when a
test moves ``now``), so nothing really sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Pass the clock itself where the code reads the time (a ``() -> float``) and its ``sleep``
    where it pauses; ``sleeps`` lists the pauses in order."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    # Each pause is recorded rounded to this many decimals, so that pauses computed by
    # subtraction compare equal to the numbers a test writes; None records them as slept.
    digits: int | None = 6

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds if self.digits is None else round(seconds, self.digits))
        self.now += seconds
