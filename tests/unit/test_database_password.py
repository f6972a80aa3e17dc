"""The database password: the app's credentials checked before a slot starts, SCRAM verifiers,
and a rotation that never sends the password in clear (recording host, no engine)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard.config import Config, load_config
from shipyard.database import (
    DatabaseError,
    PasswordRotation,
    password_refused,
    psql_error,
    saslprep,
    scram_verifier,
)
from shipyard.deploy import OperationContext
from shipyard.events import Bus
from shipyard.hosts import CommandResult, LocalHost
from shipyard.providers.docker import DockerSteps
from shipyard.providers.docker._env import compose_env_file_text, with_values
from shipyard.state import Release, StateStore
from tests.bad_configs import VALID, BadConfig, write
from tests.fakes import FakeHost

PASSWORD = "s3cret-password"  # POSTGRES_PASSWORD in tests.bad_configs.ENV_FILE
OLD_PASSWORD = "the-password-it-was-created-with"
ROOT = PurePosixPath("/state/shop/development")

REFUSED = (
    'psql: error: connection to server at "shop-development-db" (172.18.0.2), port 5432 '
    'failed: FATAL:  password authentication failed for user "shop"\n'
)


def _verifies(verifier: str, password: str) -> bool:
    """Whether ``verifier`` (as PostgreSQL stores it) accepts ``password``."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$[^:]+:.+", verifier)
    if match is None:
        return False
    iterations, salt = int(match.group(1)), base64.b64decode(match.group(2))
    return scram_verifier(password, salt=salt, iterations=iterations) == verifier


class DatabaseHost(FakeHost):
    """A Docker host running the environment's database: psql over the database container's
    socket (SQL on stdin) reads and sets the role's stored verifier; a one-off psql container
    (the login check) logs in when its env file's PGPASSWORD matches it. Keeps every
    command's stdin, and the env file of every login check."""

    def __init__(self, role_password: str, containers: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.stored = scram_verifier(role_password)
        self.containers = dict(containers or {})
        self.logins: list[dict[str, str]] = []
        self.login_fails: str | None = None  # psql's stderr for a login failing whatever

    def answer(self, argv: list[str], stdin: str | bytes | None) -> CommandResult | None:  # noqa: PLR0911
        versions = {  # asked before Compose creates the database
            ("docker", "compose", "version"): "2.29.0\n",
            ("docker", "version"): '{"Version": "27.3.1", "Arch": "amd64"}',
        }
        for prefix, stdout in versions.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return CommandResult(tuple(argv), 0, stdout, "")
        if argv[:3] == ["docker", "container", "inspect"]:
            found = self.containers.get(argv[-1])
            if found is not None and "{{json .Config.Env}}" in argv:
                return CommandResult(tuple(argv), 0, json.dumps(found["Config"]["Env"]), "")
            if found is None:
                return CommandResult(tuple(argv), 1, "", "Error: No such container")
            return CommandResult(tuple(argv), 0, json.dumps([found]), "")
        if argv[:2] == ["docker", "exec"] and "psql" in argv:
            sql = stdin.decode() if isinstance(stdin, bytes) else stdin or ""
            return CommandResult(tuple(argv), 0, self._sql(sql), "")
        if argv[:2] == ["docker", "run"] and "psql" in argv:
            return self._login(argv)
        return None

    def _sql(self, sql: str) -> str:
        if "pg_authid" in sql:
            return self.stored + "\n"
        if altered := re.search(r"PASSWORD '([^']*)'", sql):
            self.stored = altered.group(1)
        if "pg_extension" in sql:
            return "postgis|3.5\nvector|0.8\npg_trgm|1.6\npgcrypto|1.3\n"
        return ""

    def _login(self, argv: list[str]) -> CommandResult:
        env_file = PurePosixPath(argv[argv.index("--env-file") + 1])
        lines = (self.get(env_file) or b"").decode().splitlines()
        values = dict(line.split("=", 1) for line in lines)
        self.logins.append(values)
        if self.login_fails is not None:
            return CommandResult(tuple(argv), 2, "", self.login_fails)
        if _verifies(self.stored, values.get("PGPASSWORD", "")):
            return CommandResult(tuple(argv), 0, "1\n", "")
        return CommandResult(tuple(argv), 2, "", REFUSED)


def _config(tmp_path: Path) -> Config:
    return load_config(
        write(tmp_path, BadConfig("ok", VALID, "", "")), "development", process_env={}
    )


def _steps(config: Config, host: DatabaseHost) -> DockerSteps:
    ctx = OperationContext(
        config=config,
        local=LocalHost(),
        store=StateStore.on_host(host, ROOT),
        bus=Bus(config.masker),
        deployment_id="d1",
    )
    return DockerSteps(ctx, host)


def _everything_sent(host: DatabaseHost) -> str:
    """Every argv and stdin the host was given, as one text."""
    stdins = [s.decode() if isinstance(s, bytes) else s or "" for s in host.stdins]
    return "\n".join([*(" ".join(c) for c in host.commands), *stdins])


def test_a_password_the_database_was_not_created_with_is_refused_before_any_slot_starts(
    tmp_path: Path,
) -> None:
    """A re-cloned checkout or a regenerated env file: the extensions pass over the trusted
    local socket, but the app would never connect. The deploy stops at infrastructure, saying
    which role and env-file key, why, and what to do."""
    config = _config(tmp_path)
    host = DatabaseHost(OLD_PASSWORD)
    with pytest.raises(DatabaseError) as refused:
        _steps(config, host).ensure_infrastructure()
    message, hint = refused.value.message, refused.value.hint or ""
    assert "the database refuses the password of role 'shop'" in message
    assert "created with another password than the one 'POSTGRES_PASSWORD'" in message
    assert "(database.password_env) holds in .env.development now" in message
    assert "password authentication failed" in message
    assert "restore its old value in .env.development" in hint
    assert "`shipyard db rotate-password development`" in hint
    masked = config.masker(f"{message}\n{hint}")  # as the CLI prints it: every word stays
    assert "'POSTGRES_PASSWORD' (database.password_env)" in masked and "rotate-password" in masked
    assert PASSWORD not in _everything_sent(host)
    assert str(ROOT / "infra" / "login.env") not in host.files  # removed after the check


def test_the_database_container_keeps_the_password_it_was_created_with(tmp_path: Path) -> None:
    """Compose recreates a container whose env file changed: PostgreSQL would restart under the
    live version for a value it reads only when it creates its data directory."""
    config = _config(tmp_path)
    env = ["PATH=/usr/bin", f"POSTGRES_PASSWORD={OLD_PASSWORD}", "POSTGRES_USER=shop"]
    running = {"Id": "db1", "Name": "/shop-development-db", "State": {"Status": "running"}}
    host = DatabaseHost(OLD_PASSWORD, {"shop-development-db": {**running, "Config": {"Env": env}}})
    created = f"# shipyard: values quoted for Compose\nPOSTGRES_PASSWORD='{OLD_PASSWORD}'\n"
    host.put(ROOT / "infra" / "database.env", created.encode())  # as the container was created
    with pytest.raises(DatabaseError):
        _steps(config, host).ensure_infrastructure()
    written = (host.get(ROOT / "infra" / "database.env") or b"").decode()
    assert written == created  # untouched: no secret is read back from the engine either
    assert not any("{{json .Config.Env}}" in " ".join(c) for c in host.commands)

    fresh = DatabaseHost(PASSWORD)  # no container yet: it is created with the env file's value
    _steps(config, fresh).ensure_infrastructure()
    written = (fresh.get(ROOT / "infra" / "database.env") or b"").decode()
    assert f"POSTGRES_PASSWORD='{PASSWORD}'" in written.splitlines()


def test_the_login_check_logs_in_as_the_app_does_with_the_password_in_an_env_file(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    host = DatabaseHost(PASSWORD)
    summary = _steps(config, host).ensure_infrastructure()
    assert summary.endswith("role shop logs in with the env file's password")
    run = next(c for c in host.commands if c[:2] == ["docker", "run"])
    assert run[run.index("--network") + 1] == "shop-development"  # the app's network, over TCP
    assert run[run.index("--entrypoint") + 1] == "psql"
    assert host.logins == [
        {
            "PGHOST": "shop-development-db",
            "PGPORT": "5432",
            "PGUSER": "shop",
            "PGDATABASE": "shop",
            "PGPASSWORD": PASSWORD,
            "PGSSLMODE": "disable",
            "PGCONNECT_TIMEOUT": "10",
            "PGAPPNAME": "shipyard-login-check",
        }
    ]
    assert PASSWORD not in _everything_sent(host)


def _release(rid: str, slot: str = "blue") -> Release:
    return Release(
        id=rid,
        version=f"1.0.{rid[-1]}",
        commit="a" * 40,
        image=f"shop:{rid}",
        image_id=f"sha256:{rid}",
        slot=slot,
        migration_version=2,
        created_at="t",
        deployed_by="me",
    )


def _saved_env(password: str) -> bytes:
    url = f"postgres://shop:{password}@shop-development-db:5432/shop?sslmode=disable"
    values = {"JWT_SECRET": 'it\'s "quoted" $HOME', "POSTGRES_PASSWORD": password}
    return compose_env_file_text({**values, "DATABASE_URL": url}, source="test").encode()


def test_a_rotation_sends_a_verifier_and_renews_every_retained_release_s_database_url(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    host = DatabaseHost(OLD_PASSWORD)
    store = StateStore.on_host(host, ROOT)
    store.save_releases([_release("r1"), _release("r2")])
    for rid in ("r1", "r2"):
        host.put(ROOT / "releases" / f"{rid}.env", _saved_env(OLD_PASSWORD))
    old_verifier = host.stored
    rotation = PasswordRotation()
    steps = _steps(config, host)

    summary = steps.rotate_password(rotation, _release("r2", slot="green"))

    assert "role shop has the password 'POSTGRES_PASSWORD' holds" in summary
    assert "the database URL of 2 retained release(s) renewed" in summary
    alter = next(s for s in host.stdins if isinstance(s, str) and "ALTER ROLE" in s)
    assert alter.startswith("ALTER ROLE CURRENT_USER PASSWORD 'SCRAM-SHA-256$4096:")
    assert _verifies(host.stored, PASSWORD)
    assert PASSWORD not in _everything_sent(host)  # neither argv nor SQL: a verifier only
    assert [_verifies(host.stored, login["PGPASSWORD"]) for login in host.logins] == [True, True]
    for rid in ("r1", "r2"):
        saved = host.get(ROOT / "releases" / f"{rid}.env")
        assert saved == _saved_env(PASSWORD)  # the other lines exactly as they were
        assert (host.files[str(ROOT / "releases" / f"{rid}.env")][1]) == 0o600
    assert rotation.altered and rotation.previous == old_verifier
    assert config.masker(f"was {old_verifier} now {host.stored}") == "was *** now ***"

    undone = steps.restore_password(rotation)
    assert undone == (
        "2 saved environment(s) as they were; the database role has its previous password again"
    )
    assert host.stored == old_verifier
    assert host.get(ROOT / "releases" / "r1.env") == _saved_env(OLD_PASSWORD)


def test_a_rotation_to_the_password_the_role_has_changes_no_role(tmp_path: Path) -> None:
    """A rotation run again after one was interrupted once the password had changed."""
    host = DatabaseHost(PASSWORD)
    rotation = PasswordRotation()
    summary = _steps(_config(tmp_path), host).rotate_password(rotation, _release("r1", "green"))
    assert summary.startswith("role shop logs in with the env file's password already")
    assert not any(isinstance(s, str) and "ALTER ROLE" in s for s in host.stdins)
    assert not rotation.altered
    assert _steps(_config(tmp_path), host).restore_password(rotation) == "nothing had changed"


def test_a_rotation_changes_no_password_when_the_login_fails_for_another_reason(
    tmp_path: Path,
) -> None:
    host = DatabaseHost(OLD_PASSWORD)
    host.login_fails = (
        'psql: error: connection to server at "shop-development-db" (172.18.0.2), port 5432 '
        'failed: FATAL:  database "shop" does not exist\n'
    )
    rotation = PasswordRotation()
    with pytest.raises(DatabaseError, match=r'for another reason than the password.*"shop" does'):
        _steps(_config(tmp_path), host).rotate_password(rotation, _release("r1", "green"))
    assert not any(isinstance(s, str) and "ALTER ROLE" in s for s in host.stdins)
    assert rotation == PasswordRotation()


def test_a_rotation_removes_the_release_s_kept_container_of_its_slot(tmp_path: Path) -> None:
    """Kept stopped with the old URL, it would be started again as it was (with the old
    password) instead of being created with the renewed one."""
    labels = {"org.shipyard.slot": "green", "org.shipyard.release": "r1"}
    kept = {"Id": "c1", "Name": "/shop-development-green", "State": {"Status": "exited"}}
    host = DatabaseHost(
        PASSWORD, {"shop-development-green": {**kept, "Config": {"Labels": labels}}}
    )
    summary = _steps(_config(tmp_path), host).rotate_password(
        PasswordRotation(), _release("r1", "green")
    )
    assert "removed shop-development-green: it had the old database URL" in summary
    assert ["docker", "compose", "--project-name", "shop-development-green", "down"] == (
        next(c for c in host.commands if "down" in c)[:5]
    )


def test_a_saved_environment_gets_new_values_for_its_keys_only() -> None:
    before = compose_env_file_text(
        {"A": "a'b", "POSTGRES_PASSWORD": "old", "B": "x\\"}, source="test"
    )
    after = with_values(before, {"POSTGRES_PASSWORD": "n$w'", "MISSING": "m"}, source="test")
    assert after == compose_env_file_text(
        {"A": "a'b", "POSTGRES_PASSWORD": "n$w'", "B": "x\\"}, source="test"
    )
    raw = "A=a b\nPOSTGRES_PASSWORD=old\n"  # saved by versions that wrote raw lines
    assert with_values(raw, {"POSTGRES_PASSWORD": "new"}, source="test") == (
        compose_env_file_text({"A": "a b", "POSTGRES_PASSWORD": "new"}, source="test")
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
