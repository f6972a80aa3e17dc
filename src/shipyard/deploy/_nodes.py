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

from shipyard.deploy._phases import Interrupted, signals_raise
from shipyard.errors import RollbackFailed, ShipyardError

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
    a failure. Every node gets an outcome (``started=False`` for the ones never begun).

    One at a time, the nodes run on the calling thread, so Ctrl-C and SIGTERM reach the running
    deploy (which cleans up and releases its lock) as they do with a single node."""
    if parallelism <= 1:
        outcomes = _one_at_a_time(nodes, action)
    else:
        outcomes = _in_parallel(nodes, action, parallelism)
    return [outcomes.get(node) or NodeOutcome(node, started=False) for node in nodes]


def _one_at_a_time(nodes: Sequence[str], action: Callable[[str], T]) -> dict[str, NodeOutcome[T]]:
    outcomes: dict[str, NodeOutcome[T]] = {}
    for node in nodes:
        try:
            outcomes[node] = NodeOutcome(node, result=action(node))
        except ShipyardError as exc:
            outcomes[node] = NodeOutcome(node, error=exc)
            break
    return outcomes


def _in_parallel(
    nodes: Sequence[str], action: Callable[[str], T], parallelism: int
) -> dict[str, NodeOutcome[T]]:
    """Worker threads, which signals never reach: a signal here stops new nodes from starting,
    lets the running ones finish (each undoes its own failure and releases its lock), then ends
    the rollout with ``Interrupted``."""
    outcomes: dict[str, NodeOutcome[T]] = {}
    pending = list(nodes)
    stop: ShipyardError | None = None  # a failed node, or the interruption
    interrupted: Interrupted | None = None
    with signals_raise(), ThreadPoolExecutor(max_workers=parallelism) as pool:
        running: dict[Future[T], str] = {}
        while pending or running:
            try:
                while pending and stop is None and len(running) < parallelism:
                    node = pending.pop(0)
                    running[pool.submit(action, node)] = node
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
            except Interrupted as exc:
                stop = interrupted = exc
                continue
            for future in done:
                node = running.pop(future)
                try:
                    outcomes[node] = NodeOutcome(node, result=future.result())
                except ShipyardError as exc:
                    outcomes[node] = NodeOutcome(node, error=exc)
                    stop = stop or exc
    if interrupted is not None:
        finished = [n for n in nodes if n in outcomes and outcomes[n].ok]
        raise Interrupted(
            f"{interrupted.message}: no further node was started; done on: "
            f"{', '.join(finished) or 'no node'}; not started on: {', '.join(pending) or 'no node'}"
        )
    return outcomes


def rollout_error(outcomes: Sequence[NodeOutcome[T]], action: str) -> ShipyardError | None:
    """The most severe failure (``RollbackFailed`` first: a person must act), re-raised with every
    node's fate in its message (same type: same exit code)."""
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return None
    worst = next((o for o in failed if isinstance(o.error, RollbackFailed)), failed[0])
    assert worst.error is not None  # noqa: S101
    done = [o.node for o in outcomes if o.ok]
    skipped = [o.node for o in outcomes if not o.started]
    others = [
        f"  also failed on {o.node}: {o.error.message}"
        for o in failed
        if o is not worst and o.error
    ]
    summary = "\n".join(
        [
            f"{action} stopped at node {worst.node}: {worst.error.message}",
            *others,
            f"  {action} done on: {', '.join(done) or 'no node'}; "
            f"not started on: {', '.join(skipped) or 'no node'}",
        ]
    )
    error = worst.error
    error.message = summary
    error.args = (summary,)
    return error
