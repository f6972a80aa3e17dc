"""``shipyard init`` on copies of real repositories (the reference app without its
shipyard.yml, and the Togather server's source): the config it writes loads with shipyard's
own loader and names what the code holds; an existing shipyard.yml is never replaced without
--force; .gitignore and .env.example only gain what they lack."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from shipyard.config import Config, HttpCheck, load_config
from shipyard.scaffold import ignored, inspect_repository
from shipyard.scaffold._go import module_path, string_vars, strip_comments
from tests.e2e.conftest import togather_tarball
from tests.example_app import EXAMPLE
from tests.unit.cli_harness import shipyard

# Locally built: postgis/postgis does not ship pgvector, which the reference app creates.
LOCAL_IMAGES = {"SHIPYARD_POSTGRES_IMAGE": "shipyard-local/postgres:17"}


def events_api(where: Path) -> Path:
    """The reference app without its shipyard.yml and env files (its .env.example kept)."""

    def left_out(_directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "bin" or (n.startswith(".env.") and n != ".env.example")}

    shutil.copytree(EXAMPLE, where, ignore=left_out)
    (where / "shipyard.yml").unlink()
    return where


def load(root: Path, secrets: dict[str, str]) -> Config:
    """The generated config for development, with an env file of dummy secrets."""
    env_file = root / ".env.development"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()), encoding="utf-8")
    env_file.chmod(0o600)
    return load_config(root / "shipyard.yml", "development", process_env=LOCAL_IMAGES)


def test_events_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = events_api(tmp_path / "app")
    ran = shipyard(monkeypatch, "init", "--dir", str(root))
    assert ran.code == 0, ran.stderr
    assert "shipyard check development" in ran.stderr
    assert "shipyard deploy development" in ran.stderr
    config = load(root, {"POSTGRES_PASSWORD": "pw-dummy", "JWT_SECRET": "j" * 40})
    assert config.app.name == "events-api"
    assert config.app.port == 8080
    assert config.app.required_env == ["DATABASE_URL", "JWT_SECRET"]
    assert config.app.env["ENVIRONMENT"] == "development"
    assert config.build.kind == "go"
    assert config.build.package == "./cmd/server"
    assert config.build.ldflags == {
        "example.com/events-api/cmd/server/cmd.Version": "{version}",
        "example.com/events-api/cmd/server/cmd.GitCommit": "{commit}",
        "example.com/events-api/cmd/server/cmd.BuildDate": "{build_date}",
    }
    assert config.database.migrations is not None
    assert config.database.migrations.path == "migrations"
    assert config.database.extensions == ["pgcrypto", "postgis", "vector", "pg_trgm"]
    assert config.database.url_env == "DATABASE_URL"
    checks = [c.path for c in config.health.checks if isinstance(c, HttpCheck)]
    assert checks == ["/health", "/readyz"]
    assert config.deploy.verify_path == "/version"
    text = (root / "shipyard.yml").read_text()
    assert "${SHIPYARD_POSTGRES_IMAGE:-postgis/postgis:17-3.5}" in text
    assert "${SHIPYARD_CADDY_IMAGE:-caddy:2}" in text
    # The app's own .env.example keeps its lines and gains only the name it lacked.
    example = (root / ".env.example").read_text()
    assert example.startswith((EXAMPLE / ".env.example").read_text())
    assert example.count("JWT_SECRET=") == 1
    assert "\nPOSTGRES_PASSWORD=\n" in example
    # Its .gitignore already ignores .env.* (and keeps .env.example): nothing added.
    assert (root / ".gitignore").read_text() == (EXAMPLE / ".gitignore").read_text()


def test_togather(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = togather_tarball()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(tmp_path)], check=True)
    (root,) = (p for p in tmp_path.iterdir() if p.is_dir())
    ran = shipyard(monkeypatch, "init", "--dir", str(root), "--json")
    assert ran.code == 0, ran.stderr
    module = "github.com/Togather-Foundation/server"
    config = load(root, {"POSTGRES_PASSWORD": "pw-dummy", "JWT_SECRET": "j" * 40})
    assert config.build.kind == "go"
    assert config.build.package == "./cmd/server"
    assert config.build.ldflags == {
        f"{module}/cmd/server/cmd.Version": "{version}",
        f"{module}/cmd/server/cmd.GitCommit": "{commit}",
        f"{module}/cmd/server/cmd.BuildDate": "{build_date}",
    }
    assert config.database.migrations is not None
    assert config.database.migrations.path == "internal/storage/postgres/migrations"
    assert sorted(config.database.extensions) == ["pg_trgm", "pgcrypto", "postgis"]
    assert [c.path for c in config.health.checks if isinstance(c, HttpCheck)] == [
        "/health",
        "/readyz",
    ]
    assert config.deploy.verify_path == "/version"
    assert config.app.port == 8080
    found = json.loads(ran.stdout)["found"]
    assert found["module"] == module
    assert found["database_url_env"] == "DATABASE_URL"
    assert {"JWT_SECRET", "CSRF_KEY", "SERVER_PORT"} <= set(found["env"])
    text = (root / "shipyard.yml").read_text()
    assert "./cmd/gentoken" in text  # the other main packages are named, not deployed
    gitignore = (root / ".gitignore").read_text().splitlines()
    assert gitignore[-3:] == [".env.development", ".env.staging", ".env.production"]


def test_refuses_to_replace_without_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = events_api(tmp_path / "app")
    (root / "shipyard.yml").write_text("app: {name: mine}\n")
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    ran = shipyard(monkeypatch, "init", "--dir", str(root))
    assert ran.code == 2
    assert "exists; nothing was changed" in ran.stderr
    assert "--force" in ran.stderr
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
    forced = shipyard(monkeypatch, "init", "--dir", str(root), "--force")
    assert forced.code == 0, forced.stderr
    assert "replaced" in forced.stderr
    assert "events-api" in (root / "shipyard.yml").read_text()


def test_gitignore_and_env_example_gain_only_what_they_lack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = events_api(tmp_path / "app")
    (root / ".gitignore").write_text("bin/\n.env.*\n!.env.development")  # no final newline
    (root / ".env.example").unlink()
    assert shipyard(monkeypatch, "init", "--dir", str(root)).code == 0
    first_ignore = (root / ".gitignore").read_text()
    first_example = (root / ".env.example").read_text()
    assert first_ignore.splitlines()[-1] == ".env.development"
    assert first_ignore.count(".env.staging") == 0  # .env.* ignores it already
    assert "\nPOSTGRES_PASSWORD=\nJWT_SECRET=\n" in first_example
    assert "# CSRF_KEY=" in first_example
    assert "=dummy" not in first_example  # names only, no values
    assert shipyard(monkeypatch, "init", "--dir", str(root), "--force").code == 0
    assert (root / ".gitignore").read_text() == first_ignore
    assert (root / ".env.example").read_text() == first_example


def test_json_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = events_api(tmp_path / "app")
    ran = shipyard(monkeypatch, "init", "--dir", str(root), "--json")
    assert ran.code == 0, ran.stderr
    data = json.loads(ran.stdout)
    assert set(data) == {"config", "replaced", "appended", "found", "next"}
    assert data["config"] == str(root / "shipyard.yml")
    assert data["replaced"] is False
    assert data["appended"] == {".env.example": data["appended"][".env.example"]}
    assert set(data["found"]) == {
        "module", "package", "ldflags", "dockerfile", "migrations", "extensions", "health",
        "version_path", "port", "database_url_env", "required_env", "env",
    }  # fmt: skip
    assert data["found"]["health"] == ["/health", "/healthz", "/readyz"]
    assert data["next"][1:] == ["shipyard check development", "shipyard deploy development"]


def test_nothing_found_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert shipyard(monkeypatch, "init", "--dir", str(tmp_path)).code == 0
    text = (tmp_path / "shipyard.yml").read_text()
    assert "kind: dockerfile" in text
    assert "no directory of NNN_name.up.sql files found" in text
    assert "no /health, /healthz or /readyz route found" in text
    assert "no /version route found" in text
    config = load(tmp_path, {"POSTGRES_PASSWORD": "pw-dummy"})
    assert config.build.kind == "dockerfile"
    assert config.database.migrations is None


GO_SOURCE = """package cmd

import "fmt"

// Version is set with -ldflags "-X …" (var Ignored = "in a comment")
var Version = "dev"

var (
	GitCommit, BuildDate string
	Count                = 3
	Computed             = fmt.Sprint("x")
	url                  = "http://example.org" // a comment after
)

/* var Hidden = "in a block comment" */
var Started string
var n int
"""


def test_string_vars() -> None:
    names = [v.name for v in string_vars(GO_SOURCE)]
    assert names == ["Version", "Started", "GitCommit", "BuildDate", "url"]
    assert "http://example.org" in strip_comments(GO_SOURCE)
    assert "Hidden" not in strip_comments(GO_SOURCE)
    assert module_path("// c\nmodule example.com/x // why\n\ngo 1.22\n") == "example.com/x"


def test_main_package_variables(tmp_path: Path) -> None:
    """Variables of package main are set as main.Name."""
    (tmp_path / "go.mod").write_text("module example.com/tool\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text('package main\n\nvar version = "dev"\nvar commit string\n')
    found = inspect_repository(tmp_path)
    assert found.package == "."
    assert found.ldflags == {"main.version": "{version}", "main.commit": "{commit}"}


@pytest.mark.parametrize(
    ("lines", "name", "expected"),
    [
        ([".env.*"], ".env.staging", True),
        ([".env.*", "!.env.staging"], ".env.staging", False),
        (["*.env"], ".env.staging", False),
        (["/.env.staging"], ".env.staging", True),
        (["deploy/.env.staging"], ".env.staging", False),
        ([], ".env.staging", False),
    ],
)
def test_ignored(lines: list[str], name: str, expected: bool) -> None:
    assert ignored(lines, name) is expected
