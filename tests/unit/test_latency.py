"""The proxy's latency histogram (Caddy's request-duration buckets) and the comparison of two
versions' p95 that the watch makes."""

from __future__ import annotations

import math

import pytest

from shipyard.providers.docker._observation import Comparison
from shipyard.proxy import Latency, parse_latency, parse_observed, regression

METRICS = """\
# TYPE caddy_http_request_duration_seconds histogram
caddy_http_request_duration_seconds_bucket{code="200",handler="reverse_proxy",method="GET",server="shipyard",le="0.1"} 90
caddy_http_request_duration_seconds_bucket{code="200",handler="reverse_proxy",method="GET",server="shipyard",le="0.5"} 95
caddy_http_request_duration_seconds_bucket{code="200",handler="reverse_proxy",method="GET",server="shipyard",le="+Inf"} 100
caddy_http_request_duration_seconds_bucket{code="500",handler="reverse_proxy",method="POST",server="shipyard",le="0.1"} 10
caddy_http_request_duration_seconds_bucket{code="500",handler="reverse_proxy",method="POST",server="shipyard",le="0.5"} 10
caddy_http_request_duration_seconds_bucket{code="500",handler="reverse_proxy",method="POST",server="shipyard",le="+Inf"} 10
caddy_http_request_duration_seconds_bucket{code="503",handler="static_response",method="GET",server="shipyard",le="0.1"} 500
caddy_http_request_duration_seconds_bucket{code="503",handler="static_response",method="GET",server="shipyard",le="0.5"} 500
caddy_http_request_duration_seconds_bucket{code="503",handler="static_response",method="GET",server="shipyard",le="+Inf"} 500
caddy_http_request_duration_seconds_bucket{code="200",handler="reverse_proxy",method="GET",server="other",le="0.1"} 7
caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",method="GET",server="shipyard"} 100
caddy_http_request_duration_seconds_count{code="500",handler="reverse_proxy",method="POST",server="shipyard"} 10
process_start_time_seconds 1.7961e+09
"""


def test_the_histogram_sums_the_apps_answers_of_the_server_over_methods_and_codes() -> None:
    latency = parse_latency(METRICS, "shipyard")

    # The maintenance page and another server's requests are not the app's.
    assert latency.buckets == ((0.1, 100.0), (0.5, 105.0), (math.inf, 110.0))
    assert latency.count == 110
    observed = parse_observed(METRICS)
    assert (observed.traffic.total, observed.traffic.errors) == (110, 10)
    assert observed.started == 1.7961e09


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.1 * 55 / 100), (0.9, 0.099), (0.95, 0.1 + 0.4 * (104.5 - 100) / 5), (0.99, 0.5)],
)
def test_quantiles_interpolate_within_a_bucket_as_prometheus_does(
    q: float, expected: float
) -> None:
    latency = Latency(((0.1, 100.0), (0.5, 105.0), (math.inf, 110.0)))

    assert latency.quantile(q) == pytest.approx(expected)


def test_the_requests_between_two_reads_and_a_restart_in_between() -> None:
    before = Latency(((0.1, 100.0), (0.5, 105.0), (math.inf, 110.0)))
    after = Latency(((0.1, 100.0), (0.5, 125.0), (math.inf, 130.0)))

    between = after.since(before)
    assert between is not None
    assert between.buckets == ((0.1, 0.0), (0.5, 20.0), (math.inf, 20.0))
    assert between.quantile(0.95) == pytest.approx(0.1 + 0.4 * 0.95)
    assert before.since(after) is None  # counts went down: the proxy started again
    assert Latency(()).quantile(0.95) is None
    assert Latency.from_dict(after.to_dict()) == after


def test_a_version_more_than_the_allowed_share_slower_is_a_regression() -> None:
    assert regression(0.16, 0.10, 0.5)
    assert not regression(0.15, 0.10, 0.5)
    assert not regression(None, 0.10, 0.5)

    slower = Comparison(
        0.2, 0.1, current_requests=50, previous_requests=500, previous_version="1.0"
    )
    assert slower.regressed(min_requests=20, allowed=0.5)
    assert not slower.regressed(min_requests=60, allowed=0.5)  # too few requests yet
    assert slower.said(0.5) == (
        "p95 latency 200 ms over 50 request(s) since the switch, 100 ms for 1.0 before it: "
        "more than 50% slower"
    )
