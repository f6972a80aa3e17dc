"""Webhook signing secrets (``whsec_<base64>``, the Standard Webhooks format).

Dependency free: the config checks a secret's shape when it loads, the webhook notifier signs
with the key.
"""

from __future__ import annotations

import base64
import binascii

_PREFIX = "whsec_"
_MIN_KEY_BYTES = 24
_MAX_KEY_BYTES = 64


def decode_webhook_secret(secret: str) -> bytes:
    """``whsec_<base64>`` → the key bytes. Raises ``ValueError`` (never echoing the secret)."""
    if not secret.startswith(_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_' followed by base64")
    try:
        key = base64.b64decode(secret.removeprefix(_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after 'whsec_' is not valid base64") from None
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise ValueError(
            f"a webhook secret decodes to {_MIN_KEY_BYTES}-{_MAX_KEY_BYTES} bytes, this one to {len(key)}"
        )
    return key
