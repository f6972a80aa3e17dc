"""An env file whose DATABASE_URL names a database shipyard does not run (a provider's managed
PostgreSQL; here a server container of its own, reached through a published port): shipyard
runs no database container, and reaches that one through a client container beside the app —
the extensions, the migrations behind a verified snapshot, the schema's state, snapshots and
their restore, all as with its own database. The role is not a superuser, as a provider's is
not: the provider's admin created PostGIS and pgvector, shipyard creates the trusted ones."""

from __future__ import annotations

import json
import secrets
import subprocess

import httpx

from tests.e2e.conftest import AppUnderTest
from tests.e2e.postgres import ExternalPostgres, external_postgres

DEPLOY_FAILED = 6


def _provision(server: ExternalPostgres, password: str) -> None:
    """What a provider's console does: a role owning its database, two extensions its admin
    created (PostGIS and pgvector need a superuser; pg_trgm and pgcrypto do not)."""
    server.sql(
        f"CREATE ROLE app LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE;\n"
        "CREATE DATABASE events OWNER app;\n"
    )
    server.sql("CREATE EXTENSION postgis; CREATE EXTENSION vector;", database="events")


def _containers(app: AppUnderTest) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--all", "--format", "{{.Names}}",
         "--filter", f"label=org.shipyard.app={app.name}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(out.split())


def _env(app: AppUnderTest, url: str) -> None:
    env_file = app.dir / ".env.development"
    env_file.write_text(f"JWT_SECRET={secrets.token_hex(32)}\nDATABASE_URL={url}\n")
    env_file.chmod(0o600)


def test_the_app_deploys_migrates_and_snapshots_against_an_external_database(
    app: AppUnderTest,
) -> None:
    password = secrets.token_hex(12)
    with external_postgres() as server:
        _provision(server, password)
        _env(app, server.url("app", password, "events"))
        first = app.commit("external database")
        deployed = app.shipyard("deploy", "development")
        assert deployed.returncode == 0, deployed.stderr
        assert f"external database events at {server.host}:{server.port}" in deployed.stderr
        assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] == first
        # No database container: a client beside the app, on its network.
        names = _containers(app)
        assert f"{app.name}-development-db" not in names
        assert f"{app.name}-development-dbclient" in names
        mounts = subprocess.run(
            ["docker", "inspect", f"{app.name}-development-dbclient", "--format",
             "{{range .Mounts}}{{.Type}} {{end}}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert "volume" not in mounts  # nothing of it outlives the container
        # The migrations ran there, after a snapshot; shipyard created the trusted extensions.
        version = server.sql("SELECT version, dirty FROM schema_migrations;", database="events")
        assert version.endswith("|f") and int(version.split("|")[0]) >= 1
        installed = server.sql("SELECT extname FROM pg_extension;", database="events").split()
        assert {"postgis", "vector", "pg_trgm", "pgcrypto"} <= set(installed)
        listed = app.shipyard("snapshot", "list", "development", "--json")
        assert listed.returncode == 0, listed.stderr
        [before] = json.loads(listed.stdout)
        assert before["reason"] == "pre-migrate" and before["toc_entries"] > 0
        assert before["server_version"].startswith("PostgreSQL 17")
        status = app.status()
        assert status["health"] == "healthy"

        # A redeploy with nothing pending takes the quick path, through the client.
        app.commit("again")
        again = app.shipyard("deploy", "development", "--no-watch")
        assert again.returncode == 0, again.stderr
        assert "unchanged since" in again.stderr

        # Data written, a snapshot, the data changed, the snapshot restored: as it was.
        server.sql("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept');",
                   database="events")  # fmt: skip
        server.sql("ALTER TABLE notes OWNER TO app;", database="events")
        made = app.shipyard("snapshot", "create", "development", "--json")
        assert made.returncode == 0, made.stderr
        name = json.loads(made.stdout)["name"]
        server.sql("DELETE FROM notes;", database="events")
        restored = app.shipyard("snapshot", "restore", "development", name, "--yes")
        assert restored.returncode == 0, restored.stderr
        assert server.sql("SELECT body FROM notes;", database="events") == "kept"

        # A failing migration: stopped before the switch, the schema as it was.
        (app.dir / "migrations" / "000090_broken.up.sql").write_text(
            "CREATE TABLE half (id int);\nSELECT nope;\n"
        )
        (app.dir / "migrations" / "000090_broken.down.sql").write_text("DROP TABLE half;\n")
        app.commit("a broken migration")
        schema = server.sql("SELECT version FROM schema_migrations;", database="events")
        broken = app.shipyard("deploy", "development", "--no-watch")
        assert broken.returncode == DEPLOY_FAILED, broken.stderr
        assert "000090_broken.up.sql" in broken.stderr
        assert server.sql("SELECT version, dirty FROM schema_migrations;",
                          database="events") == f"{schema}|f"  # fmt: skip
        assert server.sql("SELECT to_regclass('half') IS NULL;", database="events") == "t"
        assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] != ""

        # A URL whose password the database refuses: said, with the host, before any slot.
        (app.dir / "migrations" / "000090_broken.up.sql").unlink()
        (app.dir / "migrations" / "000090_broken.down.sql").unlink()
        _env(app, server.url("app", "not-the-password", "events"))
        app.commit("a wrong password")
        live = app.running_app_containers()
        refused = app.shipyard("deploy", "development", "--no-watch")
        assert refused.returncode != 0
        text = " ".join(refused.stderr.split())
        assert f"{server.host}:{server.port}" in text and "refuses" in text, text
        assert "not-the-password" not in refused.stderr + refused.stdout
        assert app.running_app_containers() == live

        # destroy --volumes removes the client, and leaves the database as it is.
        _env(app, server.url("app", password, "events"))
        gone = app.shipyard("destroy", "development", "--yes", "--volumes")
        assert gone.returncode == 0, gone.stderr
        assert _containers(app) == []
        assert server.sql("SELECT body FROM notes;", database="events") == "kept"
