"""Generic webhooks, signed per the Standard Webhooks scheme.

Each event is POSTed as ``{"type": <kind>, "timestamp": <ISO 8601>, "data": <the event>}`` with
``webhook-id`` (the same on every retry, so receivers can drop duplicates), ``webhook-timestamp``
(seconds since the epoch, of this attempt) and ``webhook-signature``: ``v1,`` + base64 of
HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``, keyed with the secret's bytes (``whsec_<base64>``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict
from typing import Unpack

import httpx

from shipyard import __version__
from shipyard.events._delivery import DeliveryResult, HttpNotifier, NotifierOptions, RetryPolicy
from shipyard.events._event import Event
from shipyard.secrets import Masker


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_body(event: Event) -> bytes:
    """The JSON payload of a (masked) event."""
    data = {k: v for k, v in asdict(event).items() if v not in (None, {}, "")}
    document = {"type": str(event.kind), "timestamp": event.timestamp, "data": data}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class WebhookNotifier(HttpNotifier):
    """POSTs events to one URL, signed, retried within ``policy``."""

    def __init__(
        self,
        name: str,
        url: str,
        key: bytes,
        kinds: Collection[str],
        policy: RetryPolicy,
        masker: Masker,
        *,
        wall_clock: Callable[[], float] = time.time,
        **shared: Unpack[NotifierOptions],
    ) -> None:
        super().__init__(name, kinds, policy, masker, **shared)
        self.url = url
        self._key = key
        self._wall_clock = wall_clock

    def send(self, event: Event) -> DeliveryResult:
        body = webhook_body(event)
        message_id = f"msg_{uuid.uuid4().hex}"

        def attempt(timeout: float) -> httpx.Response:
            timestamp = int(self._wall_clock())
            headers = {
                "content-type": "application/json",
                "user-agent": f"shipyard/{__version__}",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, message_id, timestamp, body),
            }
            return self._client.post(self.url, content=body, headers=headers, timeout=timeout)

        return self._post(event, attempt)
