"""When the warm start is on: SHIPYARD_WARM decides when set; else at a terminal, not in CI."""

from __future__ import annotations

import pytest

from shipyard.warm import enabled


@pytest.mark.parametrize(
    ("environ", "terminal", "expected"),
    [
        ({}, True, (True, True)),  # an operator at a terminal: on, by default (it says so)
        ({}, False, (False, False)),  # a script or a pipe
        ({"CI": "true"}, True, (False, False)),  # a CI job, even on a pseudo-terminal
        ({"SHIPYARD_WARM": "1"}, False, (True, False)),  # asked for: on anywhere, quietly
        ({"SHIPYARD_WARM": "1", "CI": "true"}, False, (True, False)),
        ({"SHIPYARD_WARM": "0"}, True, (False, False)),  # turned off at a terminal
        ({"SHIPYARD_WARM": "off"}, True, (False, False)),
        ({"SHIPYARD_WARM": ""}, True, (False, False)),
        ({"SHIPYARD_WARM": " Yes "}, False, (True, False)),
    ],
)
def test_the_choice(environ: dict[str, str], terminal: bool, expected: tuple[bool, bool]) -> None:
    assert enabled(environ, terminal=terminal) == expected
