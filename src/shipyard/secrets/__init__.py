"""Secret values: where they come from, and keeping them out of every line shipyard writes.

``SecretsBackend`` is the seam (``get``/``list``); ``EnvFileBackend`` reads ``.env.<environment>``.
``Masker`` replaces every known secret value, passwords inside URLs and values of secret-looking keys
with ``***`` in any text (console, logs, state, events, errors, argv).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from dotenv import dotenv_values

from shipyard.secrets._webhook import decode_webhook_secret

__all__ = [
    "MASK",
    "EnvFileBackend",
    "Masker",
    "SecretsBackend",
    "decode_webhook_secret",
    "is_secret_key",
    "looks_generated",
    "read_env_file",
]

MASK = "***"

_SECRET_KEY = re.compile(
    r"(^|_)(SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIALS?|DSN)$|^DATABASE_URL$"
)
# scheme://user:password@host — mask the password whatever the scheme.
_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@/\s]+)(?=@)")
# KEY=value or "KEY": "value" where KEY looks secret.
_ASSIGNMENT = re.compile(
    r"(?P<key>\b[A-Z][A-Z0-9_]*(?:SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIALS?))"
    r"(?P<sep>\"?\s*[=:]\s*\"?)(?P<value>[^\s\"',]+)"
)
# Values shorter than this are not masked on their own (they would mask ordinary words);
# they are still masked as URL passwords and as values of secret-looking keys.
_MIN_MASKED_LENGTH = 6
_GENERATED_LENGTH = 16


def looks_generated(value: str) -> bool:
    """A token, key or password as tools generate them: 16+ characters without spaces."""
    return len(value) >= _GENERATED_LENGTH and not any(c.isspace() for c in value)


def is_secret_key(key: str) -> bool:
    """True for keys named like secrets: *_SECRET, *_PASSWORD, *_TOKEN, *_KEY, DATABASE_URL."""
    return bool(_SECRET_KEY.search(key.upper()))


class Masker:
    """Replaces secrets in text. Add values as they become known; masking is idempotent."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        if len(value) >= _MIN_MASKED_LENGTH:
            self._values.add(value)

    def add_env(self, env: Mapping[str, str], *, all_values: bool = False) -> None:
        """Register the secret values of an environment mapping.

        Keys named like secrets always count, and so do values that look like generated secrets
        (long, no spaces) whatever their key; ``all_values`` counts every value.
        """
        for key, value in env.items():
            if all_values or is_secret_key(key) or looks_generated(value):
                self.add(value)
            for match in _URL_PASSWORD.finditer(value):
                self.add(match.group("pw"))

    def __call__(self, text: str) -> str:
        # Longest first, so a value containing another is masked whole.
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        if "://" in text:  # else no URL: the pattern would scan a long word from each letter
            text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)
        return _ASSIGNMENT.sub(lambda m: m.group("key") + m.group("sep") + MASK, text)

    def argv(self, argv: Iterable[str]) -> list[str]:
        return [self(arg) for arg in argv]


class SecretsBackend(Protocol):
    """Where secret values come from."""

    def get(self, key: str) -> str | None: ...

    def list(self, prefix: str = "") -> list[str]: ...


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file (python-dotenv syntax). Keys without a value map to ``""``."""
    return {key: value or "" for key, value in dotenv_values(path, interpolate=False).items()}


class EnvFileBackend:
    """Secrets read from one environment's env file."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    @classmethod
    def from_file(cls, path: Path) -> EnvFileBackend:
        return cls(read_env_file(path))

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self._values if key.startswith(prefix))

    def items(self) -> dict[str, str]:
        return dict(self._values)
