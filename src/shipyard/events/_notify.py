"""Building an environment's notifiers from its ``notifications`` section, and `notify test`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shipyard.event_kinds import LIFECYCLE, EventKind
from shipyard.events._delivery import DeliveryResult, Dispatcher, Notifier, RetryPolicy
from shipyard.events._event import Event, mask_event
from shipyard.events._ntfy import NtfyNotifier
from shipyard.events._webhook import WebhookNotifier
from shipyard.secrets import decode_webhook_secret

if TYPE_CHECKING:  # config imports events (the event kinds); no cycle at run time
    from shipyard.config import Config


def notifiers_from_config(config: Config) -> list[Notifier]:
    """One notifier per configured sink; secrets are read from the env file by key name.

    The loader has already checked that every named key is set and every secret well-formed.
    """
    notifiers: list[Notifier] = []
    for sink in config.notifications.sinks:
        kinds = sink.events if sink.events is not None else sorted(LIFECYCLE)
        policy = RetryPolicy(
            attempts=sink.retry.attempts,
            initial_delay=sink.retry.initial_delay,
            max_delay=sink.retry.max_delay,
            total=sink.retry.total,
            timeout=sink.timeout,
        )
        name = sink.name or sink.kind
        if sink.kind == "webhook":
            key = decode_webhook_secret(config.secrets.get(sink.secret_env) or "")
            notifiers.append(WebhookNotifier(name, sink.url, key, kinds, policy, config.masker))
        else:
            token = config.secrets.get(sink.token_env) if sink.token_env else None
            notifiers.append(
                NtfyNotifier(name, sink.server, sink.topic, token, kinds, policy, config.masker)
            )
    return notifiers


def dispatcher_for(config: Config) -> Dispatcher | None:
    """The bus sink delivering to the environment's notifiers, or ``None`` without any."""
    notifiers = notifiers_from_config(config)
    if not notifiers:
        return None
    section = config.notifications
    return Dispatcher(notifiers, queue_size=section.queue_size, flush_timeout=section.flush_timeout)


def send_test(
    config: Config, deployment_id: str, node: str, notifiers: Sequence[Notifier] | None = None
) -> list[DeliveryResult]:
    """Send a ``notify.test`` event to every configured sink, whatever its filter; wait for each."""
    event = mask_event(
        config.masker,
        Event(
            kind=EventKind.NOTIFY_TEST,
            deployment_id=deployment_id,
            app=config.app.name,
            environment=config.environment.name,
            node=node,
            message=f"test notification for {config.app.name} {config.environment.name}",
        ),
    )
    targets = notifiers_from_config(config) if notifiers is None else notifiers
    results = []
    for notifier in targets:
        try:
            results.append(notifier.send(event))
        except Exception as exc:  # noqa: BLE001 — one broken sink must not hide the others' results
            detail = config.masker(f"{type(exc).__name__}: {exc}")
            results.append(DeliveryResult(notifier.name, False, detail, 0, str(event.kind)))
    return results
