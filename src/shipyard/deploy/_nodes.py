"""Several nodes in one environment (FR-023): each an independent Docker host with its own proxy
and database, deployed one after the other (or ``deploy.parallelism`` at a time). The first
failure stops the rollout: nodes not yet started are left alone, nodes already done keep serving
the new version, and the failed node keeps serving its previous one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from shipyard.deploy._phases import signals_noted
from shipyard.errors import Interrupted, RollbackFailed, ShipyardError

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
    pending = list(nodes)
    started: dict[Future[T], str] = {}
    with signals_noted() as note, ThreadPoolExecutor(max_workers=parallelism) as pool:
        failed = False
        while pending and not failed and note.signum is None:
            running = [f for f in started if not f.done()]
            while pending and len(running) < parallelism:
                node = pending.pop(0)
                future = pool.submit(action, node)
                started[future] = node
                running.append(future)
            while note.signum is None and not wait(running, timeout=0.2).done:
                pass
            # After a failure no new node starts.
            failed = any(f.done() and f.exception() is not None for f in started)
    outcomes: dict[str, NodeOutcome[T]] = {}
    for future, node in started.items():  # the pool waited: every started node is done
        error = future.exception()
        if error is None:
            outcomes[node] = NodeOutcome(node, result=future.result())
        elif isinstance(error, ShipyardError):
            outcomes[node] = NodeOutcome(node, error=error)
        else:
            raise error
    if note.signum is not None:
        finished = [n for n in nodes if n in outcomes and outcomes[n].ok]
        skipped = [n for n in nodes if n not in outcomes]
        raise Interrupted(
            f"interrupted by {note.name}: no further node was started; done on: "
            f"{', '.join(finished) or 'no node'}; not started on: {', '.join(skipped) or 'no node'}"
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
