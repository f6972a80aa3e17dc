"""Several nodes in one environment (FR-023): each an independent Docker host with its own proxy
and database, deployed one after the other (or ``deploy.parallelism`` at a time). The first
failure stops the rollout: nodes not yet started are left alone, nodes already done keep serving
the new version, and the failed node keeps serving its previous one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from shipyard.errors import ShipyardError

__all__ = ["NodeOutcome", "across_nodes", "rollout_error"]

T = TypeVar("T")


@dataclass(frozen=True)
class NodeOutcome(Generic[T]):
    node: str
    result: T | None = None
    error: ShipyardError | None = None
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and self.error is None


def across_nodes(
    nodes: Sequence[str], action: Callable[[str], T], *, parallelism: int = 1
) -> list[NodeOutcome[T]]:
    """Run ``action`` for each node in order, ``parallelism`` at a time; no new node starts after
    a failure. Every node gets an outcome (``started=False`` for the ones never begun)."""
    outcomes: dict[str, NodeOutcome[T]] = {}
    pending = list(nodes)
    failed = False
    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        running: dict[Future[T], str] = {}
        while pending or running:
            while pending and not failed and len(running) < parallelism:
                node = pending.pop(0)
                running[pool.submit(action, node)] = node
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                node = running.pop(future)
                try:
                    outcomes[node] = NodeOutcome(node, result=future.result())
                except ShipyardError as exc:
                    outcomes[node] = NodeOutcome(node, error=exc)
                    failed = True
    for node in pending:
        outcomes[node] = NodeOutcome(node, started=False)
    return [outcomes[node] for node in nodes]


def rollout_error(outcomes: Sequence[NodeOutcome[T]], action: str) -> ShipyardError | None:
    """The first failure, re-raised with every node's fate in its message (same type: same exit code)."""
    first = next((o for o in outcomes if o.error is not None), None)
    if first is None or first.error is None:
        return None
    done = [o.node for o in outcomes if o.ok]
    skipped = [o.node for o in outcomes if not o.started]
    summary = (
        f"{action} stopped at node {first.node}: {first.error.message}\n"
        f"  {action} done on: {', '.join(done) or 'no node'}; not started on: {', '.join(skipped) or 'no node'}"
    )
    error = first.error
    error.message = summary
    error.args = (summary,)
    return error
