"""The database password: SCRAM verifiers computed as PostgreSQL stores them, and psql's
login errors."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shipyard.database import password_refused, psql_error, saslprep, scram_verifier

REFUSED = (
    'psql: error: connection to server at "shop-development-db" (172.18.0.2), port 5432 '
    'failed: FATAL:  password authentication failed for user "shop"\n'
)


def test_the_scram_verifier_matches_rfc_7677s_example() -> None:
    """RFC 7677 §3: user "user", password "pencil"; the server checks the client's proof with
    the StoredKey and signs with the ServerKey, both from the verifier."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt=salt)
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    stored_b64, server_b64 = verifier.rsplit("$", 1)[1].split(":")
    stored, server = base64.b64decode(stored_b64), base64.b64decode(server_b64)
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        f"c=biws,r={nonce}"
    ).encode()
    signature = hmac.new(server, auth, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(
        a ^ b for a, b in zip(proof, hmac.new(stored, auth, hashlib.sha256).digest(), strict=True)
    )
    assert hashlib.sha256(client_key).digest() == stored
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time


@pytest.mark.parametrize(
    ("password", "hashed"),
    [
        ("pa ss\tw0rd$'\\", b"pa ss\tw0rd$'\\"),  # ASCII: as it is, as PostgreSQL does
        ("I\u00adX", b"IX"),  # RFC 4013 §3: soft hyphen mapped to nothing
        ("\u00aa", b"a"),  # NFKC
        ("\u2168", b"IX"),
        ("a\u00a0b", b"a b"),  # a non-ASCII space is a space
        ("\u0627\u0031", "\u0627\u0031".encode()),  # bidi rule broken: the password as it is
        ("caf\u00e9\u0007", "caf\u00e9\u0007".encode()),  # a control character: as it is
    ],
)
def test_passwords_are_prepared_as_postgresql_prepares_them(password: str, hashed: bytes) -> None:
    assert saslprep(password) == hashed


def test_psql_s_error_says_when_the_password_was_refused() -> None:
    error = psql_error(REFUSED)
    assert error.startswith('connection to server at "shop-development-db"')
    assert password_refused(error)
    other = psql_error(
        'psql: error: connection to server at "x", port 5432 failed: FATAL:  '
        'database "shop" does not exist\n'
    )
    assert not password_refused(other)
    assert psql_error("") == "psql failed without a message"
