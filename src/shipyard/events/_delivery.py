"""Delivering events over the network: retries with backoff, and background workers.

``deliver`` runs one HTTP request with bounded retries (tenacity: exponential backoff with jitter,
on timeouts, connection errors, 429 and 5xx; at most ``attempts`` tries and ``total`` seconds).
A ``Dispatcher`` is the bus sink in front of the notifiers: one worker thread and one bounded queue
per notifier, so the operation never waits for the network and a slow receiver delays no other.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

import httpx

from shipyard.events._event import Event
from shipyard.secrets import Masker

log = logging.getLogger("shipyard.notify")

_SERVER_ERROR = 500
_TOO_MANY_REQUESTS = 429


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of one delivery: tries, waits between them, time for one try and for all."""

    attempts: int = 4
    initial_delay: float = 0.5
    max_delay: float = 8.0
    total: float = 30.0
    timeout: float = 5.0

    def once(self) -> RetryPolicy:
        """The same bounds with a single attempt (for a receiver known to be down)."""
        return RetryPolicy(1, self.initial_delay, self.max_delay, self.total, self.timeout)


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery ended. ``detail`` is masked."""

    sink: str
    ok: bool
    detail: str
    attempts: int = 1
    event: str = ""


class Notifier(Protocol):
    """Something that sends an event over the network, retrying within its policy."""

    @property
    def name(self) -> str: ...

    def accepts(self, kind: str) -> bool:
        """Whether this notifier's filter lets ``kind`` through."""
        ...

    def send(self, event: Event) -> DeliveryResult:
        """Deliver one (masked) event. Never raises for network problems."""
        ...


def _retryable(response: httpx.Response) -> bool:
    return response.status_code >= _SERVER_ERROR or response.status_code == _TOO_MANY_REQUESTS


@dataclass(frozen=True)
class Attempted:
    """The last answer (or error) of a delivery and how many attempts it took."""

    response: httpx.Response | None
    error: httpx.HTTPError | None
    attempts: int

    def describe(self) -> str:
        if self.response is not None:
            return f"HTTP {self.response.status_code}"
        return f"{type(self.error).__name__}: {self.error}" if self.error else "no attempt"

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.is_success


def deliver(
    attempt: Callable[[float], httpx.Response],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Attempted:
    """Call ``attempt(timeout)`` until it answers below 500 (not 429) or the policy gives up.

    Timeouts and connection errors (``httpx.TransportError``) are retried; the wait doubles from
    ``initial_delay`` up to ``max_delay``, plus up to ``initial_delay`` of random jitter; no wait
    runs past ``total``, and each attempt's timeout is cut to the time left.
    """
    # tenacity (and its asyncio support) loads on the first delivery, not with every command.
    from tenacity import (  # noqa: PLC0415
        RetryCallState,
        Retrying,
        retry_if_exception_type,
        retry_if_result,
        stop_after_attempt,
        wait_exponential,
        wait_random,
    )
    from tenacity.stop import stop_base  # noqa: PLC0415

    deadline = clock() + policy.total
    count = 0

    class past_deadline(stop_base):
        def __call__(self, state: RetryCallState) -> bool:
            return clock() + state.upcoming_sleep >= deadline

    def one(_: object = None) -> httpx.Response:
        nonlocal count
        count += 1
        remaining = max(0.1, deadline - clock())
        return attempt(min(policy.timeout, remaining))

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts) | past_deadline(),
        wait=wait_exponential(multiplier=policy.initial_delay, max=policy.max_delay)
        + wait_random(0, policy.initial_delay),
        retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(_retryable),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    try:
        response = retrying(one)
    except httpx.HTTPError as exc:
        return Attempted(None, exc, count)
    return Attempted(response, None, count)


class _Worker:
    """One notifier's queue and thread. The thread ends at ``_STOP`` or, once ``stop`` found
    the queue full, when the queue runs empty: it never outlives the events it was given."""

    _STOP = object()

    def __init__(self, notifier: Notifier, queue_size: int, results: list[DeliveryResult]):
        self.notifier = notifier
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.results = results
        self.thread = threading.Thread(
            target=self._loop, name=f"notify-{notifier.name}", daemon=True
        )
        self._draining = False

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end after the events queued; whether ``_STOP`` is queued behind
        them (otherwise the thread ends when it finds the queue empty)."""
        try:
            self.queue.put(self._STOP, timeout=timeout)
        except queue.Full:
            self._draining = True
            try:  # the queue may have emptied meanwhile, with the thread waiting on it
                self.queue.put_nowait(self._STOP)
            except queue.Full:
                return False  # still full: the thread looks at _draining after each event
        return True

    def put(self, event: Event) -> None:
        """Queue ``event``, starting the thread on first use; raises ``queue.Full``."""
        self.queue.put_nowait(event)
        if self.thread.ident is None:
            self.thread.start()

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is self._STOP:
                return
            assert isinstance(item, Event)  # noqa: S101 — only events and _STOP are queued
            try:
                result = self.notifier.send(item)
            except Exception as exc:  # noqa: BLE001 — a broken notifier never stops the worker
                result = DeliveryResult(self.notifier.name, False, f"{type(exc).__name__}: {exc}")
            self.results.append(result)
            _log_result(result)
            if self._draining and self.queue.empty():
                return

    def pending(self) -> int:
        return self.queue.qsize()


def _log_result(result: DeliveryResult) -> None:
    tries = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
    if result.ok:
        log.info("notification %s → %s delivered (%s)", result.event, result.sink, tries)
    else:
        log.warning(
            "notification %s → %s failed after %s: %s",
            result.event,
            result.sink,
            tries,
            result.detail,
        )


class Dispatcher:
    """Bus sink: queues each event for the notifiers whose filter accepts it.

    ``close`` waits for queued deliveries up to ``flush_timeout`` seconds; whatever is still
    undelivered then is given up and logged (the worker threads are daemons).
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        queue_size: int = 100,
        flush_timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.results: list[DeliveryResult] = []
        self.flush_timeout = flush_timeout
        self._clock = clock
        self._workers = [_Worker(n, queue_size, self.results) for n in notifiers]
        self._closed = False

    def __call__(self, event: Event) -> None:
        if self._closed:
            return
        for worker in self._workers:
            if not worker.notifier.accepts(event.kind):
                continue
            try:
                worker.put(event)
            except queue.Full:
                log.warning(
                    "notification %s → %s dropped: %d events already waiting",
                    event.kind,
                    worker.notifier.name,
                    worker.pending(),
                )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        deadline = self._clock() + self.flush_timeout
        stopping = []
        started = [w for w in self._workers if w.thread.ident is not None]
        for worker in started:
            if worker.stop(timeout=max(0.0, deadline - self._clock())):
                stopping.append(worker)
        for worker in started:
            worker.thread.join(timeout=max(0.0, deadline - self._clock()))
            if worker.thread.is_alive():
                waiting = worker.pending() - (1 if worker in stopping else 0)
                log.warning(
                    "notifications → %s: gave up after %gs; %d event(s) not delivered",
                    worker.notifier.name,
                    self.flush_timeout,
                    waiting + 1,
                )


class NotifierOptions(TypedDict, total=False):
    """What a test gives an ``HttpNotifier`` instead of the network and the clock."""

    client: httpx.Client | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]


class HttpNotifier:
    """What every notifier that POSTs events shares: its name, its filter (``kinds``), its retry
    ``policy`` and the memory of a failed delivery (until one succeeds, each event is tried
    once, so a receiver that is down does not hold every event for the whole policy)."""

    def __init__(
        self,
        name: str,
        kinds: Collection[str],
        policy: RetryPolicy,
        masker: Masker,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self.kinds = frozenset(kinds)
        self.policy = policy
        self._masker = masker
        self._client = client or httpx.Client(follow_redirects=False)
        self._sleep = sleep
        self._clock = clock
        self._down = False

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, kind: str) -> bool:
        return kind in self.kinds

    def _post(self, event: Event, attempt: Callable[[float], httpx.Response]) -> DeliveryResult:
        """Deliver ``event`` by ``attempt`` (one request, given its timeout) within the policy."""
        policy = self.policy.once() if self._down else self.policy
        attempted = deliver(attempt, policy, sleep=self._sleep, clock=self._clock)
        self._down = not attempted.ok
        return DeliveryResult(
            sink=self.name,
            ok=attempted.ok,
            detail=masked_detail(self._masker, attempted),
            attempts=attempted.attempts,
            event=str(event.kind),
        )


def masked_detail(masker: Masker, attempted: Attempted) -> str:
    """What went wrong, without secrets (URLs may carry tokens)."""
    return masker(attempted.describe())
