"""Benchmark: the build step of a deploy for an empty commit (unchanged source tree and build
inputs), three ways, on the reference app with a warm Go build cache. Not a test.

- ``before``: the recipe shipyard used before images were keyed on the tree: ``go build`` with
  the version stamped in, then ``docker build`` of a scratch image whose Dockerfile copies the
  server first and gets its labels as ``--label`` flags (the classic builder runs one step per
  label), replayed here step for step;
- ``relink``: ``build_image`` for the reference app as it is (it stamps ``{commit}`` and its
  deploys verify it, so the commit gets its own build: Go relinks, the engine's cache keeps every
  layer but the server's);
- ``reuse``: ``build_image`` for the same app stamping nothing of the commit, with
  ``deploy.verify_path: null``: the image of the same tree is tagged for the new commit.

Each round makes a new empty commit in each copy and times the three, in rotating order; the
script prints each run, the medians and the ratios against ``before`` from the same run.

    .venv/bin/python bench/build_reuse.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.docker_cli import remove_found
from tests.example_app import copy_example, git

from shipyard import build
from shipyard.config import Config, GoBuild, load_config
from shipyard.hosts import LocalHost

CMD = "example.com/events-api/cmd/server/cmd"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def copy_of_the_app(where: Path, name: str, *, commit_free: bool) -> Config:
    def settings(document: dict[str, Any]) -> None:
        document["environments"]["development"]["deploy"]["allow_dirty"] = False
        if commit_free:
            document["build"]["ldflags"] = {f"{CMD}.BuildDate": "{build_date}"}
            document["deploy"]["verify_path"] = None

    copy_example(where, name, settings)
    return load_config(where / "shipyard.yml", "development")


def shipyard_build(config: Config) -> str:
    local = LocalHost()
    version = build.read_version(local, config.root, allow_dirty=False)
    image = build.build_image(config, local, version)
    return f"{image.tag}{' (reused)' if image.reused else ''}"


def before_build(config: Config) -> str:
    """The earlier recipe: the same ``go build``, the scratch image assembled with the server
    copied first and one ``--label`` flag per label."""
    spec = config.build
    assert isinstance(spec, GoBuild)
    source = config.root
    commit = git(source, "rev-parse", "HEAD")
    version = build.VersionInfo(f"0.0.0+{commit[:7]}", commit, "2026-01-01T00:00:00Z", False)
    tag = f"{config.app.name}:before-{commit[:7]}"
    ldflags = ["-s", "-w"] + [f"-X={k}={version.fill(v)}" for k, v in spec.ldflags.items()]
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        context = Path(tmp)
        argv = ["go", "build", "-trimpath", "-ldflags", " ".join(ldflags), "-tags", "timetzdata"]
        subprocess.run(
            [*argv, "-o", str(context / spec.binary), spec.package],
            cwd=source,
            env={**os.environ, "CGO_ENABLED": "0", "GOOS": "linux"},  # the engine is this machine's
            check=True,
        )
        shutil.copy(CA_BUNDLE, context / "ca-certificates.crt")
        lines = [
            "FROM scratch",
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
            f"COPY {spec.binary} /app/{spec.binary}",
        ]
        for index, (relative, destination) in enumerate(sorted(spec.files.items())):
            shutil.copytree(source / relative, context / f"file{index}")
            lines.append(f"COPY file{index} {destination}")
        lines += [
            "WORKDIR /app",
            "USER 1000:1000",
            f"EXPOSE {config.app.port}",
            f'ENTRYPOINT ["/app/{spec.binary}"]',
        ]
        (context / "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        labels = {
            "org.opencontainers.image.title": config.app.name,
            "org.opencontainers.image.version": version.version,
            "org.opencontainers.image.revision": commit,
            "org.opencontainers.image.created": version.build_date,
            "org.shipyard.app": config.app.name,
            build.BUILD_INPUTS_LABEL: build.build_inputs(config),
        }
        argv = ["docker", "build", "--quiet", "--tag", tag]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]  # one classic-builder step each
        subprocess.run([*argv, str(context)], capture_output=True, check=True)
    return tag


def remove_images(app: str) -> None:
    remove_found(
        ["image", "ls", "--quiet", "--no-trunc", "--filter", f"label=org.shipyard.app={app}"],
        ["image", "rm", "--force"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    name = f"bench-build-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="bench-build-reuse-") as tmp:
        stamped = copy_of_the_app(Path(tmp) / "stamped", name, commit_free=False)
        free = copy_of_the_app(Path(tmp) / "free", name, commit_free=True)
        ways: dict[str, tuple[Config, Callable[[Config], str]]] = {
            "before": (stamped, before_build),
            "relink": (stamped, shipyard_build),
            "reuse": (free, shipyard_build),
        }
        try:
            for config, how in ways.values():
                how(config)  # warm the Go cache and the engine's layer cache
            times: dict[str, list[float]] = {way: [] for way in ways}
            order = list(ways)
            for run in range(args.runs):
                for way in order[run % 3 :] + order[: run % 3]:
                    config, how = ways[way]
                    git(config.root, "commit", "-q", "--allow-empty", "-m", f"{way} {run}")
                    started = time.perf_counter()
                    result = how(config)
                    times[way].append(time.perf_counter() - started)
                    print(
                        f"run {run + 1} {way:6} {times[way][-1]:6.2f}s  {result}", file=sys.stderr
                    )
        finally:
            remove_images(name)
    medians = {way: statistics.median(values) for way, values in times.items()}
    summary = {
        "runs": args.runs,
        "median_s": {way: round(value, 3) for way, value in medians.items()},
        "ratio_to_before": {
            way: round(value / medians["before"], 3) for way, value in medians.items()
        },
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
