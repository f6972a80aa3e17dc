"""The health gate's pace and verdicts (``shipyard.health.wait_healthy``) on a fake clock: no
sleeps, no network."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from shipyard.config import HealthSection
from shipyard.docker import Docker
from shipyard.health import CheckResult, Target, wait_healthy
from shipyard.hosts import LocalHost

PASS = CheckResult("http", True, "GET /health → 200", answered=True)
SILENT = CheckResult("http", False, "GET /health: ConnectError: connection refused")
UNHEALTHY = CheckResult("http", False, 'GET /health → 503 {"status":"unhealthy"}', answered=True)
TARGET = Target("http://127.0.0.1:1", 1, "shop-development-green", Docker(LocalHost()))


@dataclass
class Clock:
    """Time that moves only when the gate sleeps (or a check takes ``check_s``)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@dataclass
class Scripted:
    """A check answering from a script (its last answer repeats); each run takes ``check_s``."""

    clock: Clock
    script: list[CheckResult]
    check_s: float = 0.0
    runs: list[float] = field(default_factory=list)  # the clock at each run
    name: str = "http"

    def __post_init__(self) -> None:
        self._answers: Iterator[CheckResult] = iter(self.script)

    def run(self, target: Target, timeout: float) -> CheckResult:
        self.runs.append(self.clock.now)
        self.clock.now += self.check_s
        answer = next(self._answers, self.script[-1])
        return answer


def section(**overrides: object) -> HealthSection:
    values: dict[str, object] = {
        "interval": "1s",
        "first_interval": "100ms",
        "passes": 3,
        "start_timeout": "60s",
        "unhealthy_grace": "5s",
    }
    values.update(overrides)
    return HealthSection.model_validate(values)


def test_the_first_round_runs_at_once_and_passes_follow_each_other_at_the_first_interval() -> None:
    clock = Clock()
    check = Scripted(clock, [PASS])
    result = wait_healthy([check], TARGET, section(), clock=clock, sleep=clock.sleep)
    assert result.ok and result.rounds == 3
    assert check.runs[0] == 1000.0  # no wait before the first probe
    assert clock.sleeps == [0.1, 0.1]  # not interval (1s) between passes


def test_a_starting_slot_is_probed_with_a_backing_off_pause_capped_at_interval() -> None:
    clock = Clock()
    check = Scripted(clock, [SILENT] * 7 + [PASS])
    result = wait_healthy([check], TARGET, section(), clock=clock, sleep=clock.sleep)
    assert result.ok and result.rounds == 10
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.1, 0.1]


def test_a_failing_round_breaks_the_streak_and_the_back_off_starts_again() -> None:
    clock = Clock()
    check = Scripted(clock, [PASS, PASS, SILENT, SILENT, PASS, PASS, PASS])
    result = wait_healthy([check], TARGET, section(), clock=clock, sleep=clock.sleep)
    assert result.ok and result.rounds == 7  # three passes in a row, not three in total
    assert clock.sleeps == [0.1, 0.1, 0.1, 0.2, 0.1, 0.1]


def test_a_slot_answering_unhealthy_fails_after_the_grace_with_its_answer() -> None:
    clock = Clock()
    check = Scripted(clock, [SILENT, SILENT, UNHEALTHY])
    result = wait_healthy([check], TARGET, section(), clock=clock, sleep=clock.sleep)
    assert not result.ok
    assert result.last == [UNHEALTHY]
    assert "answered unhealthy for 5.2s (health.unhealthy_grace: 5s)" in result.reason
    assert "503" in result.reason
    first_unhealthy = check.runs[2]
    assert 5 <= clock.now - first_unhealthy < 6  # the grace, not the 60s start timeout


def test_a_slot_that_does_not_answer_gets_the_whole_start_timeout() -> None:
    clock = Clock()
    check = Scripted(clock, [SILENT])
    result = wait_healthy(
        [check], TARGET, section(start_timeout="20s"), clock=clock, sleep=clock.sleep
    )
    assert not result.ok
    assert result.reason.startswith("not healthy within 20s: GET /health: ConnectError")
    assert clock.now == pytest.approx(1020.0)  # the last pause is cut at the deadline


def test_a_passing_round_resets_the_grace() -> None:
    clock = Clock()
    # Unhealthy for 3.1s, one pass, unhealthy again: 5s more are granted from then.
    script = [UNHEALTHY] * 6 + [PASS] + [UNHEALTHY] * 30
    check = Scripted(clock, script)
    result = wait_healthy([check], TARGET, section(), clock=clock, sleep=clock.sleep)
    assert not result.ok and "answered unhealthy" in result.reason
    assert clock.now - check.runs[7] >= 5


def test_a_slot_not_answering_after_an_unhealthy_answer_is_still_within_its_grace() -> None:
    clock = Clock()
    check = Scripted(clock, [UNHEALTHY, SILENT, SILENT, SILENT, SILENT, SILENT, SILENT, SILENT])
    result = wait_healthy([check], TARGET, section(), clock=clock, sleep=clock.sleep)
    # The grace is judged on rounds that answered: silence alone waits for start_timeout.
    assert not result.ok and result.reason.startswith("not healthy within 60s")


def test_a_zero_grace_fails_at_the_first_unhealthy_answer() -> None:
    clock = Clock()
    check = Scripted(clock, [SILENT, UNHEALTHY, PASS])
    result = wait_healthy(
        [check], TARGET, section(unhealthy_grace=0), clock=clock, sleep=clock.sleep
    )
    assert not result.ok and result.rounds == 2


def test_a_container_that_exits_fails_the_gate_once_its_liveness_is_asked_again() -> None:
    clock = Clock()
    check = Scripted(clock, [SILENT])
    states = iter([None, None, "container shop-development-green exited with code 1"])
    asked: list[float] = []

    def alive() -> str | None:
        asked.append(clock.now - 1000.0)
        return next(states)

    result = wait_healthy([check], TARGET, section(), alive=alive, clock=clock, sleep=clock.sleep)
    assert not result.ok
    assert result.reason == "container shop-development-green exited with code 1"
    # Asked after failing rounds at most once per interval (1s): at 0, 1.5 and 2.5s.
    assert asked == pytest.approx([0.0, 1.5, 2.5])
    assert result.rounds == 6


def test_a_restart_during_the_streak_fails_the_gate() -> None:
    clock = Clock()
    check = Scripted(clock, [PASS])
    asked: list[int] = []

    def alive() -> str | None:
        asked.append(len(check.runs))
        return "container shop-development-green restarted (restart policy)"

    result = wait_healthy([check], TARGET, section(), alive=alive, clock=clock, sleep=clock.sleep)
    assert not result.ok and "restarted" in result.reason
    assert asked == [3]  # passing rounds cost no inspection until the streak is complete


def test_checks_of_a_round_stop_at_the_first_failure() -> None:
    clock = Clock()
    first = Scripted(clock, [UNHEALTHY], name="first")
    second = Scripted(clock, [PASS], name="second")
    result = wait_healthy(
        [first, second], TARGET, section(unhealthy_grace=0), clock=clock, sleep=clock.sleep
    )
    assert not result.ok and second.runs == []


def test_slow_checks_count_against_the_start_timeout() -> None:
    clock = Clock()
    check = Scripted(clock, [SILENT], check_s=5.0)
    result = wait_healthy(
        [check], TARGET, section(start_timeout="12s"), clock=clock, sleep=clock.sleep
    )
    assert not result.ok and result.rounds == 3
    assert clock.now - 1000.0 < 12 + 5 + 1


def test_first_interval_above_interval_is_capped() -> None:
    clock = Clock()
    check = Scripted(clock, [PASS])
    wait_healthy(
        [check],
        TARGET,
        section(interval="250ms", first_interval="2s"),
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.sleeps == [0.25, 0.25]
