"""Building the app image, and the one decision whether to reuse an image built before, against a
recording fake engine (no Docker, no Go)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard import build
from shipyard.build import (
    BUILD_INPUTS_LABEL,
    VersionInfo,
    build_image,
    build_inputs,
    image_tag,
)
from shipyard.config import Config
from shipyard.deploy import DeployOptions, OperationContext
from shipyard.events import Bus
from shipyard.hosts import CommandResult
from shipyard.providers import DockerProvider
from shipyard.state import StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.test_checks import _tools
from tests.unit.test_docker_steps import engine

COMMIT = "a" * 40
VERSION = VersionInfo("0.0.0+aaaaaaa", COMMIT, "2026-01-01T00:00:00Z", dirty=False)
GO_BUILD = '  kind: go\n  context: .\n  ldflags:\n    example.com/shop/cmd.Version: "{version}"\n'
TOKEN = "tok-0123456789abcdef"  # a build arg that is a secret
DOCKERFILE_BUILD = f"  kind: dockerfile\n  args:\n    API_TOKEN: {TOKEN}\n"


class Machine:
    """The operator's machine: a Docker engine that keeps the images it builds (with the labels
    of the build), git at a clean ``COMMIT``, and Go 1.26."""

    def __init__(self) -> None:
        self.images: dict[str, dict[str, str]] = {}
        self.builds: list[list[str]] = []
        self.host = FakeHost(self.respond)

    def respond(self, argv: list[str]) -> CommandResult | None:
        if argv[:1] == ["git"]:
            return self._git(argv)
        if argv[:3] == ["go", "env", "GOVERSION"]:
            return _ok(argv, "go1.26.0\n")
        if argv[:2] == ["docker", "version"]:
            return _ok(argv, '{"Version": "27.0.0", "Arch": "amd64", "Os": "linux"}')
        return self._images(argv)

    def _images(self, argv: list[str]) -> CommandResult | None:
        if argv[:2] == ["docker", "build"]:
            self.builds.append(argv)
            labels = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--label"]
            tag = argv[argv.index("--tag") + 1]
            self.images[tag] = dict(label.split("=", 1) for label in labels)
            return _ok(argv)
        if argv[:3] == ["docker", "image", "inspect"]:
            labels = self.images.get(argv[3])
            if labels is None:
                return CommandResult(tuple(argv), 1, "", f"Error: No such image: {argv[3]}")
            document = {"Id": f"sha256:{len(self.builds)}", "Config": {"Labels": labels}}
            return _ok(argv, json.dumps([document]))
        return None

    @staticmethod
    def _git(argv: list[str]) -> CommandResult:
        if "rev-parse" in argv:
            return _ok(argv, COMMIT + "\n")
        if "ls-files" in argv:  # nothing is tracked (the env file is not)
            return CommandResult(tuple(argv), 1, "", "did not match any file(s)")
        return _ok(argv)  # a clean tree (status) without tags (tag --points-at)


def _ok(argv: list[str], stdout: str = "") -> CommandResult:
    return CommandResult(tuple(argv), 0, stdout, "")


@pytest.fixture(autouse=True)
def _no_builds_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "_BUILT", {})  # each build_image call asks the engine


def _config(tmp_path: Path, build_section: str, *, dockerfile: str | None = None) -> Config:
    yaml = VALID.replace(GO_BUILD, build_section)
    assert yaml != VALID or build_section == GO_BUILD
    tmp_path.mkdir(parents=True, exist_ok=True)
    if dockerfile is not None:
        (tmp_path / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    return committed_config(tmp_path, yaml)


def test_an_image_of_the_same_commit_built_another_way_is_not_reused(tmp_path: Path) -> None:
    """A Go scratch image of this commit exists; the config now asks for a Dockerfile build: it is
    built, not shipped as "built before"."""
    machine = Machine()
    go = _config(tmp_path / "go", GO_BUILD)
    first = build_image(go, machine.host, VERSION)
    go_tag = image_tag("shop", VERSION, build_inputs(go))
    assert first.tag == go_tag and go_tag.startswith("shop:0.0.0-aaaaaaa-")
    assert not first.reused and len(machine.builds) == 1
    assert machine.images[go_tag][BUILD_INPUTS_LABEL] == build_inputs(go)
    assert build_image(go, machine.host, VERSION).reused  # same inputs: built before

    dockerfile = _config(tmp_path / "df", DOCKERFILE_BUILD, dockerfile="FROM scratch\n")
    switched = build_image(dockerfile, machine.host, VERSION)
    assert not switched.reused
    assert len(machine.builds) == 2 and "--file" in machine.builds[-1]
    # Its own tag: the Go image a release may have recorded keeps its tag.
    assert switched.tag != go_tag
    assert machine.images[switched.tag][BUILD_INPUTS_LABEL] == build_inputs(dockerfile)
    assert machine.images[go_tag][BUILD_INPUTS_LABEL] == build_inputs(go)
    assert build_image(dockerfile, machine.host, VERSION).reused
    assert build_image(go, machine.host, VERSION).reused
    assert not any(TOKEN in " ".join(argv) for argv in machine.host.commands)  # not in argv


def test_build_inputs_change_with_everything_that_shapes_the_image(tmp_path: Path) -> None:
    def inputs(name: str, section: str, dockerfile: str = "FROM scratch\n") -> str:
        return build_inputs(_config(tmp_path / name, section, dockerfile=dockerfile))

    base = inputs("base", DOCKERFILE_BUILD)
    assert inputs("same", DOCKERFILE_BUILD) == base
    variants = {
        "content": inputs("content", DOCKERFILE_BUILD, "FROM scratch\nUSER 1000\n"),
        "target": inputs("target", DOCKERFILE_BUILD + "  target: runtime\n"),
        "arg-value": inputs("arg", DOCKERFILE_BUILD.replace(TOKEN, "other")),
        "arg-name": inputs("name", DOCKERFILE_BUILD.replace("API_TOKEN:", "TOKEN:")),
        "path": inputs("path", DOCKERFILE_BUILD + "  dockerfile: Containerfile\n"),
        "go": inputs("go", GO_BUILD),
        "ldflags": inputs("ldflags", GO_BUILD.replace("{version}", "{commit}")),
        "tags": inputs("tags", GO_BUILD + "  tags: [netgo]\n"),
        "files": inputs("files", GO_BUILD + "  files: {go.mod: /app/go.mod}\n"),
        "package": inputs("package", GO_BUILD + "  package: ./cmd/other\n"),
        "tzdata": inputs("tzdata", GO_BUILD + "  tzdata: false\n"),
        "generate": inputs("generate", GO_BUILD + "  generate: [[make, webfiles]]\n"),
        "tools": inputs("tools", GO_BUILD + "  tools: {river: example.com/river@v1.0.0}\n"),
    }
    assert len({base, *variants.values()}) == len(variants) + 1, variants
    assert all(len(value) == 64 and TOKEN not in value for value in variants.values())


def test_plan_makes_the_same_decision_as_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine()
    go = _config(tmp_path / "go", GO_BUILD)
    build_image(go, machine.host, VERSION)
    dockerfile = _config(tmp_path / "df", DOCKERFILE_BUILD, dockerfile="FROM scratch\n")
    monkeypatch.setenv("PATH", _tools(tmp_path / "bin", "go1.26.0"))

    def plan(config: Config) -> str:
        target = FakeHost(engine({}))
        ctx = OperationContext(
            config=config,
            local=machine.host,
            store=StateStore(target, PurePosixPath("/state/shop/development")),
            bus=Bus(config.masker),
            deployment_id="d1",
        )
        target.respond = _with_engine_versions(target.respond)
        steps = DockerProvider(target).plan(ctx, DeployOptions())
        return next(step.action for step in steps if step.phase == "build")

    go_tag = image_tag("shop", VERSION, build_inputs(go))
    df_tag = image_tag("shop", VERSION, build_inputs(dockerfile))
    assert (
        plan(go)
        == f"reuse {go_tag} (0.0.0+aaaaaaa): built before from this commit and these settings"
    )
    assert plan(dockerfile) == (
        f"build {df_tag} (0.0.0+aaaaaaa): not built before (each commit gets its own build: "
        "deploy.verify_path checks that the app reports the deployed commit)"
    )


def _with_engine_versions(respond: Any) -> Any:
    def answer(argv: list[str]) -> CommandResult | None:
        if argv[:2] == ["docker", "version"]:
            return _ok(argv, '{"Version": "27.0.0"}')
        if argv[:3] == ["docker", "compose", "version"]:
            return _ok(argv, "2.29.0\n")
        result: CommandResult | None = respond(argv)
        return result

    return answer


def test_a_go_build_generates_first_then_builds_the_server_and_its_tools(tmp_path: Path) -> None:
    """``generate`` runs in the context before the build (CGO off, so a ``go run`` shares the
    cache); the server is built with Go's embedded time-zone database; each tool lands at
    /app/<name>: a module@version by ``go install`` outside the app's module, a directory by
    ``go build`` in it."""
    machine = Machine()
    dockerfiles: list[str] = []
    fallback = machine.respond

    def respond(argv: list[str]) -> CommandResult | None:
        if argv[:3] == ["go", "env", "GOHOSTOS"]:
            return _ok(argv, "linux\namd64\n")
        if argv[:2] == ["go", "install"]:
            gobin = machine.host.contexts[-1][0]["GOBIN"]
            (Path(gobin) / "river").write_bytes(b"ELF")
        if argv[:2] == ["go", "build"]:
            Path(argv[argv.index("-o") + 1]).write_bytes(b"ELF")
        if argv[:2] == ["docker", "build"]:
            dockerfiles.append((Path(argv[-1]) / "Dockerfile").read_text(encoding="utf-8"))
        return fallback(argv)

    machine.host.respond = respond
    (tmp_path / "app" / "tools" / "seed").mkdir(parents=True)
    config = _config(
        tmp_path / "app",
        GO_BUILD
        + "  generate:\n    - [make, webfiles-bootstrap]\n    - [go, run, ./cmd/server, webfiles]\n"
        + "  tools:\n    river: github.com/riverqueue/river/cmd/river@v0.30.2\n"
        + "    seed: tools/seed\n",
    )
    build_image(config, machine.host, VERSION)
    go = [
        (argv, env, cwd)
        for argv, (env, cwd) in zip(machine.host.commands, machine.host.contexts, strict=True)
        if argv[0] in {"make", "go"} and argv[:2] not in (["go", "env"],)
    ]
    root = str(tmp_path / "app")
    assert [argv[:2] for argv, _, _ in go] == [
        ["make", "webfiles-bootstrap"],
        ["go", "run"],
        ["go", "build"],
        ["go", "install"],
        ["go", "build"],
    ]
    assert [(env.get("CGO_ENABLED"), cwd) for _, env, cwd in go[:2]] == [("0", root)] * 2
    server, river, seed = go[2], go[3], go[4]
    assert server[1]["CGO_ENABLED"] == "0" and server[1]["GOOS"] == "linux"
    assert server[0][server[0].index("-tags") + 1] == "timetzdata"
    assert river[0][-1] == "github.com/riverqueue/river/cmd/river@v0.30.2"
    assert river[2] != root  # outside the app's module
    assert seed[2] == str(tmp_path / "app" / "tools" / "seed") and seed[0][-1] == "."
    (dockerfile,) = dockerfiles
    assert "COPY tools/river /app/river" in dockerfile
    assert "COPY tools/seed /app/seed" in dockerfile


def test_a_failing_generate_step_is_a_build_error_naming_it(tmp_path: Path) -> None:
    machine = Machine()
    fallback = machine.respond

    def respond(argv: list[str]) -> CommandResult | None:
        if argv[:1] == ["make"]:
            return CommandResult(tuple(argv), 2, "", "make: *** No rule to make target 'webfiles'")
        return fallback(argv)

    machine.host.respond = respond
    config = _config(tmp_path / "app", GO_BUILD + "  generate: [[make, webfiles]]\n")
    with pytest.raises(build.BuildError) as raised:
        build_image(config, machine.host, VERSION)
    assert "build.generate `make webfiles` failed (exit 2)" in raised.value.message
    assert "No rule to make target" in raised.value.message
    assert not machine.builds


def test_git_is_asked_to_take_no_optional_lock(tmp_path: Path) -> None:
    """A shipyard killed during `git status` must not leave .git/index.lock in the operator's
    repository: every git command it runs to read the version takes no optional lock."""
    machine = Machine()
    _config(tmp_path / "go", GO_BUILD)
    build.read_version(machine.host, tmp_path / "go", allow_dirty=False)
    git = [
        env
        for argv, (env, _) in zip(machine.host.commands, machine.host.contexts, strict=True)
        if argv[0] == "git"
    ]
    assert git and all(env.get("GIT_OPTIONAL_LOCKS") == "0" for env in git)
