"""What a cloud provider changes: actions listed by ``plan`` and the same actions run by
``ensure`` or ``remove``, so that what is planned is what is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Action:
    """One change in a cloud: ``service: verb resource`` (what ``plan`` lists and ``ensure``
    did)."""

    service: str
    verb: str
    resource: str
    run: Callable[[], Any] = field(compare=False, repr=False, default=lambda: None)

    def __str__(self) -> str:
        return f"{self.service}: {self.verb} {self.resource}"


def carry_out(actions: list[Action]) -> list[Action]:
    """Run ``actions`` in order; returns them (what was done)."""
    for action in actions:
        action.run()
    return actions
