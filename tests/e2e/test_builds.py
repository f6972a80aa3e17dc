"""Builds on the real engine: a Dockerfile that is not there refuses the deploy before any change,
and an image is reused only when it was built from the same commit the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from tests.e2e.conftest import AppUnderTest, engine_snapshot, git
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
    tags = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Tag}}", f"{app.name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
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
