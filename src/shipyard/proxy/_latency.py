"""How long the app took to answer through the proxy: Caddy's request-duration histogram, read
from its metrics, compared between two moments and between two versions.

Only the requests the proxy passed to the app count (``handler="reverse_proxy"``): the answers
it makes itself (the maintenance page, the blocked /metrics) say nothing of the app.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_BUCKET = re.compile(
    r"^caddy_http_request_duration_seconds_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$"
)


@dataclass(frozen=True)
class Latency:
    """A cumulative histogram: for each upper bound (seconds, ``inf`` last), the requests that
    took at most that long."""

    buckets: tuple[tuple[float, float], ...]

    @property
    def count(self) -> int:
        return int(self.buckets[-1][1]) if self.buckets else 0

    def since(self, earlier: Latency) -> Latency | None:
        """The requests between ``earlier`` and this one; ``None`` when a count went down (the
        proxy restarted in between: its counts began again) or the bounds differ."""
        before = dict(earlier.buckets)
        if set(before) != {bound for bound, _ in self.buckets}:
            return None if earlier.buckets else self
        delta = tuple((bound, count - before[bound]) for bound, count in self.buckets)
        if any(count < 0 for _, count in delta):
            return None
        return Latency(delta)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated within its bucket as Prometheus's
        ``histogram_quantile`` does; ``None`` without requests."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if math.isinf(bound):
                    return lower  # beyond the largest bound: the largest bound is all we know
                inside = count - below
                share = (rank - below) / inside if inside else 0.0
                return lower + (bound - lower) * share
            lower, below = bound, count
        return lower

    def to_dict(self) -> dict[str, Any]:
        return {"buckets": [[_bound_text(b), c] for b, c in self.buckets]}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Latency:
        return Latency(tuple((float(b), float(c)) for b, c in data["buckets"]))


def _bound_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def parse_latency(metrics: str, server: str) -> Latency:
    """The histogram of ``server``'s proxied requests, summed over method and status, from
    Caddy's Prometheus text output."""
    sums: dict[float, float] = {}
    for line in metrics.splitlines():
        match = _BUCKET.match(line.strip())
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("server") != server or labels.get("handler") != "reverse_proxy":
            continue
        bound = float(labels["le"].replace("+Inf", "inf"))
        sums[bound] = sums.get(bound, 0.0) + float(match.group("value"))
    return Latency(tuple(sorted(sums.items())))


def regression(current: float | None, previous: float | None, allowed: float) -> bool:
    """Whether ``current`` is more than ``allowed`` (a fraction) above ``previous``."""
    return current is not None and previous is not None and current > previous * (1 + allowed)
