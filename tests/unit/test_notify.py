"""Notifications without a network: signing, retries (fake clock and sleep), filters, workers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import httpx
import pytest

from shipyard.config import Config, load_config
from shipyard.errors import ConfigError
from shipyard.events import (
    LIFECYCLE,
    DeliveryResult,
    Dispatcher,
    Event,
    EventKind,
    NtfyNotifier,
    RetryPolicy,
    WebhookNotifier,
    decode_secret,
    deliver,
    notifiers_from_config,
    sign,
    webhook_body,
)
from shipyard.events._ntfy import ntfy_message
from shipyard.secrets import Masker
from tests.bad_configs import ENV_FILE, VALID
from tests.unit.fake_clock import FakeClock

# The reference vector published with the Standard Webhooks specification and its libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

EVENT = Event(
    kind=EventKind.DEPLOY_FAILED,
    deployment_id="20260101T000000Z-abc123",
    app="shop",
    environment="production",
    node="web-1",
    version="1.2.3",
    commit="0123456789abcdef0123456789abcdef01234567",
    phase="health",
    error="slot green never became healthy",
)


def answering(*answers: int | Exception) -> tuple[Callable[[float], httpx.Response], list[float]]:
    """An attempt function that answers the given statuses (or raises) in turn."""
    timeouts: list[float] = []
    remaining = list(answers)

    def attempt(timeout: float) -> httpx.Response:
        timeouts.append(timeout)
        answer = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    return attempt, timeouts


# -- signing ----------------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    key = decode_secret(SPEC_SECRET)
    assert sign(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_signature_changes_with_body_id_and_timestamp() -> None:
    key = decode_secret(SPEC_SECRET)
    assert sign(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY + b" ") != SPEC_SIGNATURE
    assert sign(key, SPEC_ID + "x", SPEC_TIMESTAMP, SPEC_BODY) != SPEC_SIGNATURE
    assert sign(key, SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY) != SPEC_SIGNATURE


@pytest.mark.parametrize(
    "secret",
    ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64!", "whsec_" + "QUJD"],
)
def test_malformed_secrets_are_refused_without_echoing_them(secret: str) -> None:
    with pytest.raises(ValueError, match=r"whsec_|base64|bytes") as caught:
        decode_secret(secret)
    assert secret not in str(caught.value)


def test_webhook_request_carries_a_verifiable_signature() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    notifier = WebhookNotifier(
        "ops",
        "http://hooks.invalid/shipyard",
        decode_secret(SPEC_SECRET),
        LIFECYCLE,
        RetryPolicy(),
        Masker(),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        wall_clock=lambda: 1_700_000_000.0,
    )
    result = notifier.send(EVENT)

    assert result == DeliveryResult("ops", True, "HTTP 204", 1, "deploy.failed")
    request = seen[0]
    assert request.headers["webhook-timestamp"] == "1700000000"
    assert request.headers["webhook-id"].startswith("msg_")
    # Verified independently of shipyard's own `sign`, as a receiver would.
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.1700000000.".encode() + request.content
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{expected}"
    body = json.loads(request.content)
    assert body["type"] == "deploy.failed"
    assert body["data"]["node"] == "web-1"
    assert body["data"]["error"] == "slot green never became healthy"
    assert request.content == webhook_body(EVENT)


# -- retries ----------------------------------------------------------------------------------


def test_retries_5xx_with_growing_jittered_waits_until_success() -> None:
    fake = FakeClock(digits=None)
    attempt, _ = answering(503, 502, 500, 200)
    policy = RetryPolicy(attempts=5, initial_delay=1.0, max_delay=30.0, total=60.0)

    outcome = deliver(attempt, policy, sleep=fake.sleep, clock=fake)

    assert outcome.ok
    assert outcome.attempts == 4
    assert len(fake.sleeps) == 3
    for n, waited in enumerate(fake.sleeps):
        base = 1.0 * 2**n
        assert base <= waited <= base + 1.0  # exponential, plus up to initial_delay of jitter


def test_gives_up_after_the_attempt_limit() -> None:
    fake = FakeClock(digits=None)
    attempt, _ = answering(503)
    outcome = deliver(
        attempt, RetryPolicy(attempts=3, initial_delay=0.1), sleep=fake.sleep, clock=fake
    )
    assert not outcome.ok
    assert outcome.attempts == 3
    assert outcome.describe() == "HTTP 503"


def test_timeouts_and_connection_errors_are_retried_but_4xx_is_not() -> None:
    fake = FakeClock(digits=None)
    attempt, _ = answering(httpx.ConnectTimeout("slow"), httpx.ConnectError("refused"), 204)
    assert deliver(attempt, RetryPolicy(), sleep=fake.sleep, clock=fake).attempts == 3

    attempt, _ = answering(400)
    outcome = deliver(attempt, RetryPolicy(), sleep=fake.sleep, clock=fake)
    assert (outcome.ok, outcome.attempts) == (False, 1)

    attempt, _ = answering(httpx.ConnectError("refused"))
    outcome = deliver(attempt, RetryPolicy(attempts=2), sleep=fake.sleep, clock=fake)
    assert not outcome.ok
    assert outcome.describe() == "ConnectError: refused"


def test_total_time_bounds_attempts_waits_and_each_timeout() -> None:
    fake = FakeClock(digits=None)
    attempt, timeouts = answering(503)
    policy = RetryPolicy(attempts=10, initial_delay=1.0, max_delay=4.0, total=6.0, timeout=5.0)

    outcome = deliver(attempt, policy, sleep=fake.sleep, clock=fake)

    assert not outcome.ok
    assert sum(fake.sleeps) < policy.total
    assert outcome.attempts < policy.attempts
    assert timeouts[0] == 5.0
    slept = 0.0
    for timeout, wait in zip(timeouts[1:], fake.sleeps, strict=True):
        slept += wait
        assert timeout == pytest.approx(min(policy.timeout, policy.total - slept))


def test_a_receiver_that_failed_gets_one_attempt_until_it_answers_again() -> None:
    fake = FakeClock(digits=None)
    answers = [503] * 3 + [503] + [200] + [200]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(answers.pop(0))

    notifier = WebhookNotifier(
        "ops",
        "http://hooks.invalid/",
        decode_secret(SPEC_SECRET),
        LIFECYCLE,
        RetryPolicy(attempts=3, initial_delay=0.1),
        Masker(),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=fake.sleep,
        clock=fake,
    )
    assert notifier.send(EVENT).attempts == 3  # down: every attempt used
    assert notifier.send(EVENT).attempts == 1  # still down: one try, no waiting
    assert notifier.send(EVENT).ok  # back: one try was enough
    assert notifier.send(EVENT).attempts == 1 and len(calls) == 6


def test_failure_detail_is_masked() -> None:
    masker = Masker(["tok-0123456789"])
    fake = FakeClock(digits=None)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("cannot reach https://x.invalid/?t=tok-0123456789")

    notifier = NtfyNotifier(
        "phone",
        "https://x.invalid",
        "ops",
        "tok-0123456789",
        LIFECYCLE,
        RetryPolicy(attempts=1),
        masker,
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=fake.sleep,
        clock=fake,
    )
    result = notifier.send(EVENT)
    assert not result.ok
    assert "tok-0123456789" not in result.detail
    assert "***" in result.detail


# -- ntfy -------------------------------------------------------------------------------------


def test_ntfy_failures_are_high_priority_with_a_warning_tag_and_success_is_default() -> None:
    failed = ntfy_message("ops", EVENT)
    assert failed["priority"] == 4
    assert "warning" in failed["tags"]
    assert failed["title"] == "shop production: deploy FAILED 1.2.3"
    assert "slot green never became healthy" in failed["message"]
    assert "node: web-1" in failed["message"]
    done = ntfy_message("ops", Event(**{**EVENT.__dict__, "kind": "deploy.completed"}))
    assert done["priority"] == 3
    assert "warning" not in done["tags"]


def test_ntfy_sends_the_token_as_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "x"})

    notifier = NtfyNotifier(
        "phone",
        "http://ntfy.invalid/",
        "ops",
        "tk_abc",
        LIFECYCLE,
        RetryPolicy(),
        Masker(),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    assert notifier.send(EVENT).ok
    assert seen[0].url == "http://ntfy.invalid/"
    assert seen[0].headers["authorization"] == "Bearer tk_abc"
    assert json.loads(seen[0].content)["topic"] == "ops"


# -- configuration and filters ----------------------------------------------------------------

NOTIFY = """\
notifications:
  sinks:
    - kind: webhook
      name: ops
      url: http://127.0.0.1:9/hook
      secret_env: SIGNING
      events: [deploy.failed, deploy.rolled_back]
    - kind: ntfy
      server: http://127.0.0.1:9
      topic: shop
      token_env: PHONE
"""


def _config(tmp_path: Path, extra_env: str = "") -> Config:
    (tmp_path / "shipyard.yml").write_text(VALID + NOTIFY)
    env = ENV_FILE + f"SIGNING={SPEC_SECRET}\nPHONE=tk_phone_canary_42\n" + extra_env
    (tmp_path / ".env.development").write_text(env)
    return load_config(tmp_path / "shipyard.yml", "development", process_env={})


def test_filters_choose_kinds_per_sink(tmp_path: Path) -> None:
    ops, phone = notifiers_from_config(_config(tmp_path))
    assert ops.name == "ops" and phone.name == "ntfy"
    assert ops.accepts("deploy.failed")
    assert not ops.accepts("deploy.completed")
    assert phone.accepts("deploy.completed")  # default: every lifecycle event
    assert phone.accepts("lock.blocked")
    assert not phone.accepts("phase.finished")
    assert not phone.accepts("operation.note")


def test_notification_secrets_are_masked_even_with_plain_key_names(tmp_path: Path) -> None:
    config = _config(tmp_path, "SPARE=whsec_c3BhcmUtc2VjcmV0LXZhbHVlLTEyMzQ1\n")
    text = f"signing {SPEC_SECRET} token tk_phone_canary_42"
    assert config.masker(text) == "signing *** token ***"
    # A webhook secret no sink names yet is still recognised by its form.
    assert config.masker("whsec_c3BhcmUtc2VjcmV0LXZhbHVlLTEyMzQ1") == "***"


def test_duplicate_sink_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yml").write_text(VALID + NOTIFY.replace("name: ops", "name: ntfy"))
    (tmp_path / ".env.development").write_text(ENV_FILE + f"SIGNING={SPEC_SECRET}\nPHONE=x\n")
    with pytest.raises(ConfigError, match="sink names must be unique"):
        load_config(tmp_path / "shipyard.yml", "development", process_env={})


def test_malformed_webhook_secret_is_a_config_error_without_its_value(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yml").write_text(VALID + NOTIFY)
    (tmp_path / ".env.development").write_text(
        ENV_FILE + "SIGNING=whsec_short-and-wrong-canary\nPHONE=x\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "shipyard.yml", "development", process_env={})
    assert "notifications.sinks[0].secret_env" in str(caught.value)
    assert "short-and-wrong-canary" not in str(caught.value)


# -- the dispatcher ---------------------------------------------------------------------------


class BlockingNotifier:
    """Blocks in ``send`` until released; records what it was sent."""

    def __init__(self, kinds: set[str]) -> None:
        self.kinds = kinds
        self.release = threading.Event()
        self.sent: list[str] = []
        self.entered = threading.Event()

    @property
    def name(self) -> str:
        return "slow"

    def accepts(self, kind: str) -> bool:
        return kind in self.kinds

    def send(self, event: Event) -> DeliveryResult:
        self.entered.set()
        self.release.wait(timeout=30)
        self.sent.append(event.kind)
        return DeliveryResult(self.name, True, "HTTP 200", 1, event.kind)


def test_dispatcher_filters_and_delivers_in_the_background() -> None:
    notifier = BlockingNotifier({"deploy.failed"})
    dispatcher = Dispatcher([notifier], flush_timeout=10)
    dispatcher(EVENT)  # returns at once although send blocks
    dispatcher(Event(**{**EVENT.__dict__, "kind": "phase.started"}))
    assert notifier.entered.wait(timeout=10)
    assert notifier.sent == []
    notifier.release.set()
    dispatcher.close()
    assert notifier.sent == ["deploy.failed"]
    assert [r.ok for r in dispatcher.results] == [True]


def test_close_gives_up_at_its_deadline_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    notifier = BlockingNotifier({"deploy.failed"})
    dispatcher = Dispatcher([notifier], queue_size=2, flush_timeout=0.2)
    dispatcher(EVENT)
    assert notifier.entered.wait(timeout=10)  # one in flight
    with caplog.at_level(logging.WARNING, logger="shipyard.notify"):
        dispatcher(EVENT)
        dispatcher(EVENT)  # two queued: the queue is full
        dispatcher(EVENT)
        dispatcher.close()
    (worker,) = [t for t in threading.enumerate() if t.name == "notify-slow"]
    notifier.release.set()
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "dropped" in messages
    assert "gave up after 0.2s" in messages
    assert "not delivered" in messages
    worker.join(timeout=30)  # its stop did not fit in the full queue: it ends once it is empty
    assert not worker.is_alive()
    assert notifier.sent == ["deploy.failed"] * 3


def test_each_environment_sets_its_own_sinks(tmp_path: Path) -> None:
    text = VALID.replace(
        "      http_port: 18081\n",
        "      http_port: 18081\n    notifications:\n      sinks:\n"
        "        - kind: ntfy\n          name: pager\n          topic: prod-pages\n"
        "          events: [deploy.failed]\n",
    )
    (tmp_path / "shipyard.yml").write_text(text + NOTIFY)
    env = ENV_FILE + f"SIGNING={SPEC_SECRET}\nPHONE=tk_x\n"
    (tmp_path / ".env.development").write_text(env)
    (tmp_path / ".env.production").write_text(env)
    development = notifiers_from_config(
        load_config(tmp_path / "shipyard.yml", "development", process_env={})
    )
    production = notifiers_from_config(
        load_config(tmp_path / "shipyard.yml", "production", process_env={})
    )
    assert [n.name for n in development] == ["ops", "ntfy"]
    assert [n.name for n in production] == ["pager"]
    assert production[0].accepts("deploy.failed")
    assert not production[0].accepts("deploy.completed")


def test_deployment_logs_are_kept_by_count_here_and_on_the_host(tmp_path: Path) -> None:
    from shipyard.events import DeploymentLog  # noqa: PLC0415
    from shipyard.hosts import LocalHost  # noqa: PLC0415
    from shipyard.state import HostState  # noqa: PLC0415

    here, there = tmp_path / "here", tmp_path / "logs"
    for directory in (here, there):
        directory.mkdir()
        for n in range(5):
            (directory / f"20260101T00000{n}Z-aaaaaa.jsonl").write_text("{}\n")
    log = DeploymentLog(
        here / "20260102T000000Z-bbbbbb.jsonl",
        HostState(LocalHost(), PurePosixPath(tmp_path)),  # its logs: ``there``
        keep=3,
    )
    log(Event(kind="deploy.started", deployment_id="d", app="a", environment="e"))
    log.close()
    for directory in (here, there):
        kept = sorted(p.name for p in directory.iterdir())
        assert kept == [
            "20260101T000003Z-aaaaaa.jsonl",
            "20260101T000004Z-aaaaaa.jsonl",
            "20260102T000000Z-bbbbbb.jsonl",
        ]
