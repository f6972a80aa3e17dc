"""Database passwords: SCRAM-SHA-256 verifiers and logging in as the app does.

A new password reaches PostgreSQL as a verifier computed here (as libpq's
``PQencryptPasswordConn`` does for psql's ``\\password``), never in clear: ``ALTER ROLE …
PASSWORD 'SCRAM-SHA-256$…'`` stores it as given, and a statement the server logs (with
``log_statement``, or on an error) shows no password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "PasswordRotation",
    "password_refused",
    "psql_error",
    "saslprep",
    "scram_verifier",
    "verifier_matches",
]

ITERATIONS = 4096  # PostgreSQL's default scram_iterations
_SALT_LENGTH = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN

# RFC 4013 §2.3: characters SASLprep refuses after mapping and normalising.
_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points
)


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes for ``password`` (its ``pg_saslprep``): pure ASCII as it is;
    otherwise SASLprep (RFC 4013: non-ASCII spaces mapped to a space, characters mapped to
    nothing removed, NFKC); the UTF-8 password as it is when SASLprep refuses it."""
    raw = password.encode("utf-8", "surrogateescape")
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in password
        if not stringprep.in_table_b1(char)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not prepared or any(check(char) for char in prepared for check in _PROHIBITED):
        return raw
    if any(stringprep.in_table_d1(char) for char in prepared) and (
        any(stringprep.in_table_d2(char) for char in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        return raw  # RFC 3454 §6: mixed or badly placed right-to-left characters
    return prepared.encode("utf-8")


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5802, RFC 7677), the
    form PostgreSQL stores a password in; a random salt unless ``salt`` is given."""
    salt = secrets.token_bytes(_SALT_LENGTH) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def verifier_matches(verifier: str | None, password: str) -> bool | None:
    """Whether ``password`` is the one a role's stored ``verifier`` was made from, as PostgreSQL
    decides at a SCRAM login (the verifier's own salt and iteration count). ``None`` when it
    cannot tell: no password, an MD5 verifier, or a form it does not know."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return None
    try:
        head, _keys = verifier.removeprefix("SCRAM-SHA-256$").split("$", 1)
        iterations, salt = head.split(":", 1)
        again = scram_verifier(
            password, salt=base64.b64decode(salt, validate=True), iterations=int(iterations)
        )
    except ValueError:
        return None
    return hmac.compare_digest(again.encode(), verifier.encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def psql_error(stderr: str) -> str:
    """psql's error, without its ``psql: error:`` prefix (the last lines that say something)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    text = " ".join(lines[-3:]) if lines else "psql failed without a message"
    return text.removeprefix("psql: error: ")


def password_refused(error: str) -> bool:
    """Whether psql's ``error`` says the server refused the password (the role exists)."""
    return "password authentication failed" in error


@dataclass
class PasswordRotation:
    """What a password rotation changed, recorded just before each change so that undoing it
    gives back exactly that, even after a failure half-way. Kept in memory only: it holds the
    role's previous verifier and the saved environments' previous contents."""

    altered: bool = False  # the role's password was (or was being) changed
    previous: str | None = field(default=None, repr=False)  # its verifier before; None: none
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # path → previous content
