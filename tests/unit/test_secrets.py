from __future__ import annotations

import pytest

from shipyard.secrets import MASK, Masker, is_secret_key


@pytest.mark.parametrize(
    "text",
    [
        "postgres://app:hunter2hunter2@db:5432/app",
        "postgresql://app:hunter2hunter2@db/app?sslmode=require",
        "https://user:hunter2hunter2@example.com/hook",
    ],
)
def test_passwords_inside_urls_are_masked(text: str) -> None:
    masked = Masker()(text)
    assert "hunter2hunter2" not in masked
    assert MASK in masked


def test_known_values_and_secret_keys_are_masked() -> None:
    masker = Masker()
    masker.add_env({"JWT_SECRET": "a-very-secret-value", "ENVIRONMENT": "production"})
    line = 'JWT_SECRET=a-very-secret-value "API_TOKEN": "tok-123456789" env production'
    masked = masker(line)
    assert "a-very-secret-value" not in masked
    assert "tok-123456789" not in masked
    assert "production" in masked  # not a secret


def test_short_values_are_not_masked_on_their_own() -> None:
    masker = Masker(["abc"])
    assert masker("abc def") == "abc def"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("JWT_SECRET", True),
        ("POSTGRES_PASSWORD", True),
        ("GITHUB_TOKEN", True),
        ("API_KEY", True),
        ("DATABASE_URL", True),
        ("ENVIRONMENT", False),
        ("PORT", False),
        ("KEYBOARD", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_argv_is_masked_elementwise() -> None:
    masker = Masker(["s3cret-value"])
    assert masker.argv(["psql", "password=s3cret-value"]) == ["psql", f"password={MASK}"]
