"""Builds on the real engine: a Dockerfile that is not there refuses the deploy before any change;
an image is reused only when it was built the same way from the same commit, or from another
commit of the same tree when nothing of the commit is in it; an app that reports its commit gets
a build of every commit."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.config import load_config
from shipyard.hosts import LocalHost
from tests.e2e.conftest import AppUnderTest, engine_snapshot, git
from tests.e2e.docker_cli import docker, docker_inspect
from tests.e2e.ports import reserve_port

# The reference app's server, built by the test, on the local Debian image (no registry needed).
DOCKERFILE = """\
FROM shipyard-local/debian:trixie
COPY bin/server /app/server
COPY contexts /app/contexts
WORKDIR /app
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["/app/server"]
"""
CMD = "example.com/events-api/cmd/server/cmd"


def test_a_dockerfile_that_does_not_exist_refuses_the_deploy(app: AppUnderTest) -> None:
    def dockerfile(document: Any) -> None:
        document["build"] = {"kind": "dockerfile", "dockerfile": "deploy/Dockerfile"}

    app.edit(dockerfile)
    app.commit("build with a Dockerfile that was never added")
    before = engine_snapshot(app.name)
    refused = app.shipyard("deploy", "development")
    assert refused.returncode == 3, refused.stderr
    assert f"build.dockerfile: {app.dir / 'deploy' / 'Dockerfile'} does not exist" in refused.stderr
    assert engine_snapshot(app.name) == before


def test_an_image_of_the_same_commit_built_another_way_is_not_reused(app: AppUnderTest) -> None:
    """development builds with Go, staging with a Dockerfile, from one commit: staging gets its own
    build (and tag), not the Go scratch image as "built before"."""
    staging_port = reserve_port()

    def two_kinds(document: Any) -> None:
        go = dict(document["build"])
        document["build"] = {"kind": "dockerfile"}
        document["environments"]["development"]["build"] = go
        document["environments"]["staging"]["proxy"]["http_port"] = staging_port
        # Builds are the subject here: no monitoring stack (the example's staging has one).
        document["environments"]["staging"]["monitoring"]["enabled"] = False

    app.edit(two_kinds)
    (app.dir / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    commit = app.commit("staging builds with a Dockerfile")
    staging_env = app.dir / ".env.staging"
    shutil.copy(app.dir / ".env.development", staging_env)
    staging_env.chmod(0o600)
    ldflags = f"-X {CMD}.GitCommit={commit} -X {CMD}.Version=0.0.0+{commit[:7]}"
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", "bin/server", "./cmd/server"],
        cwd=app.dir,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=True,
        capture_output=True,
    )
    assert git(app.dir, "status", "--porcelain") == ""  # bin/ is ignored: a clean commit

    developed = app.shipyard("deploy", "development")
    assert developed.returncode == 0, developed.stderr
    assert "(built before)" not in developed.stderr

    staged = app.shipyard("deploy", "staging")
    assert staged.returncode == 0, staged.stderr
    assert "(built before)" not in staged.stderr, staged.stderr
    debian = subprocess.run(
        ["docker", "exec", f"{app.name}-staging-live", "cat", "/etc/debian_version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert debian.returncode == 0, debian.stderr  # the Dockerfile's image, not a scratch one

    planned = app.shipyard("plan", "development", "--json")
    assert planned.returncode == 0, planned.stderr
    build = next(a["action"] for a in json.loads(planned.stdout) if a["phase"] == "build")
    # Each build has its own tag: the Dockerfile build did not take the Go image's from under
    # the development release that recorded it.
    assert build.startswith(f"reuse {app.name}:0.0.0-{commit[:7]}-"), build
    tags = docker("image", "ls", "--format", "{{.Tag}}", f"{app.name}").split()
    assert len([t for t in tags if t.startswith(f"0.0.0-{commit[:7]}-")]) == 2, tags

    destroyed = app.shipyard("destroy", "staging", "--yes", "--volumes")
    assert destroyed.returncode == 0, destroyed.stderr


def test_a_go_build_puts_its_tools_in_the_image(app: AppUnderTest) -> None:
    """A tool given as module@version is built by `go install` from the Go module proxy (outside
    the app's module) and lands at /app/<name>, runnable in the scratch image."""
    app.edit(
        lambda d: d["build"].update(
            {"tools": {"stringer": "golang.org/x/tools/cmd/stringer@v0.52.0"}}
        )
    )
    app.commit("a tool in the image")
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    ran = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "/app/stringer", app.live_image(), "-help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Usage of stringer" in ran.stderr, ran.stderr


def _image_id(app: AppUnderTest) -> str:
    return docker_inspect(f"{app.name}-{app.environment}-live", "{{.Image}}")


def _build_action(app: AppUnderTest) -> str:
    planned = app.shipyard("plan", "development", "--json")
    assert planned.returncode == 0, planned.stderr
    return str(next(a["action"] for a in json.loads(planned.stdout) if a["phase"] == "build"))


def _server_build_info(image: str, into: Path) -> str:
    """``go version -m`` of the image's server: the build settings Go embedded in it."""
    created = docker("create", image).strip()
    try:
        subprocess.run(["docker", "cp", f"{created}:/app/server", str(into)], check=True)
    finally:
        subprocess.run(["docker", "rm", created], capture_output=True, check=False)
    return subprocess.run(
        ["go", "version", "-m", str(into)], capture_output=True, text=True, check=True
    ).stdout


def test_an_empty_commit_reuses_the_image_when_nothing_of_the_commit_is_in_it(
    app: AppUnderTest,
) -> None:
    """No ldflags name the commit or version and deploys do not verify the commit: the image is
    keyed on the tree, so an empty commit deploys the very same image (tagged for it), while
    another build input or another tree builds."""

    def commit_free(document: Any) -> None:
        document["build"]["ldflags"] = {
            f"{CMD}.BuildDate": "{build_date}",
            f"{CMD}.Version": "${BUILD_FLAVOUR:-plain}",  # an input the tree does not hold
        }
        document["deploy"]["verify_path"] = None

    app.edit(commit_free)
    first = app.commit("stamp no commit")
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    assert "(built before)" not in deployed.stderr
    image = _image_id(app)
    info = _server_build_info(app.live_image(), app.dir.parent / "server")
    assert "vcs.revision" not in info and first not in info, info  # -buildvcs=false

    empty = app.commit("nothing changed")
    assert git(app.dir, "rev-parse", f"{first}^{{tree}}") == git(
        app.dir, "rev-parse", "HEAD^{tree}"
    )
    assert _build_action(app).startswith(f"reuse {app.name}:0.0.0-{empty[:7]}-"), (
        f"the plan for an empty commit: {_build_action(app)}"
    )
    again = app.shipyard("deploy", "development", "--no-watch")
    assert again.returncode == 0, again.stderr
    assert "(built before)" in again.stderr, again.stderr
    assert _image_id(app) == image  # the same image, not a build of the same thing
    assert app.live_image().startswith(f"{app.name}:0.0.0-{empty[:7]}-")
    history = app.shipyard("history", "development", "--json")
    assert history.returncode == 0, history.stderr
    assert empty in history.stdout  # the release is recorded as the new commit

    app.extra_env["BUILD_FLAVOUR"] = "spicy"  # same tree, another build input
    assert _build_action(app).startswith(f"build {app.name}:0.0.0-{empty[:7]}-")
    del app.extra_env["BUILD_FLAVOUR"]
    (app.dir / "NOTES").write_text("a change to the tree\n", encoding="utf-8")
    changed = app.commit("another tree")
    assert _build_action(app).startswith(f"build {app.name}:0.0.0-{changed[:7]}-")


def test_an_empty_commit_is_built_again_when_the_app_reports_its_commit(app: AppUnderTest) -> None:
    """The reference app stamps its commit and deploys verify it at /version: the image of the
    previous commit would report the wrong one, so an empty commit gets its own build (a
    relink), and verify sees the new commit."""
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    image = _image_id(app)

    empty = app.commit("nothing changed")
    action = _build_action(app)
    assert action.startswith(f"build {app.name}:0.0.0-{empty[:7]}-"), action
    assert "build.ldflags stamps the commit" in action, action
    again = app.shipyard("deploy", "development", "--no-watch")
    assert again.returncode == 0, again.stderr
    assert "(built before)" not in again.stderr
    assert _image_id(app) != image
    assert empty in httpx.get(app.url("/version"), timeout=10).text


def test_the_migrations_image_holds_the_releases_files_under_golang_migrate(
    tmp_path: Path, docker_engine: None
) -> None:
    from shipyard.build import Image, VersionInfo, build_migrations_image  # noqa: PLC0415
    from shipyard.errors import BuildError  # noqa: PLC0415
    from tests.example_app import copy_example  # noqa: PLC0415

    name = f"m{secrets.token_hex(3)}"
    where = copy_example(tmp_path / "app", name)
    config = load_config(where / "shipyard.yml", "development")
    version = VersionInfo("1.2.3", "f" * 40, "2026-12-04T00:00:00Z", False)
    image = Image(f"{name}:1.2.3-fffffff-0123456", "sha256:unused", version)
    tag = build_migrations_image(config, LocalHost(), image)
    try:
        assert tag == f"{name}:1.2.3-fffffff-0123456-migrations"
        created = docker("create", tag).strip()  # the image has no shell nor ls
        try:
            exported = subprocess.run(
                ["docker", "export", created], capture_output=True, check=True
            )
        finally:
            docker("rm", created)
        with tarfile.open(fileobj=io.BytesIO(exported.stdout)) as tar:
            listed = [
                n.removeprefix("migrations/") for n in tar.getnames() if n.startswith("migrations/")
            ]
        wanted = sorted(p.name for p in (where / "migrations").iterdir())
        assert sorted(listed) == wanted
        labels = json.loads(docker_inspect(tag, "{{json .Config.Labels}}"))
        assert labels["org.opencontainers.image.revision"] == "f" * 40
        assert labels["org.shipyard.role"] == "migrations"
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
    shutil.rmtree(where / "migrations")
    with pytest.raises(BuildError, match=r"migrations directory .* not found"):
        build_migrations_image(config, LocalHost(), image)
