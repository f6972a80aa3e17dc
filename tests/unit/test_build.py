"""Building the app image, and the one decision whether to reuse an image built before, against a
recording fake engine (no Docker, no Go)."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard import build
from shipyard.build import (
    BUILD_INPUTS_LABEL,
    SOURCE_TREE_LABEL,
    VersionInfo,
    build_image,
    build_inputs,
    image_tag,
)
from shipyard.config import Config
from shipyard.deploy import DeployOptions, OperationContext
from shipyard.docker import Docker
from shipyard.events import Bus
from shipyard.hosts import CommandResult
from shipyard.providers import DockerProvider
from shipyard.state import StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.test_checks import _tools
from tests.unit.test_docker_steps import engine

COMMIT = "a" * 40
TREE = "7" * 40
VERSION = VersionInfo("0.0.0+aaaaaaa", COMMIT, "2026-01-01T00:00:00Z", dirty=False, tree=TREE)
GO_BUILD = '  kind: go\n  context: .\n  ldflags:\n    example.com/shop/cmd.Version: "{version}"\n'
TOKEN = "tok-0123456789abcdef"  # a build arg that is a secret
DOCKERFILE_BUILD = f"  kind: dockerfile\n  args:\n    API_TOKEN: {TOKEN}\n"


class Machine:
    """The operator's machine: a Docker engine that keeps the images it builds (with the labels
    of the build, given as --label or in the Dockerfile's LABEL line) and their tags, git at a
    clean ``COMMIT`` of tree ``TREE``, and Go 1.26."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}  # image ID → labels
        self.tags: dict[str, str] = {}  # tag → image ID
        self.builds: list[list[str]] = []
        self.dockerfiles: list[str] = []  # of the builds whose context has one
        self.host = FakeHost(self.respond)

    @property
    def images(self) -> dict[str, dict[str, str]]:
        """Labels by tag."""
        return {tag: self.labels[image] for tag, image in self.tags.items()}

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
            return self._build(argv)
        if argv[:3] == ["docker", "image", "inspect"]:
            image = self._id(argv[3])
            if image is None:
                return CommandResult(tuple(argv), 1, "", f"Error: No such image: {argv[3]}")
            document = {"Id": image, "Config": {"Labels": self.labels[image]}}
            return _ok(argv, json.dumps([document]))
        if argv[:3] == ["docker", "image", "ls"]:
            wanted = {
                argv[i + 1].removeprefix("label=") for i, a in enumerate(argv) if a == "--filter"
            }
            found = [
                image
                for image in self.tags.values()
                if wanted <= {f"{key}={value}" for key, value in self.labels[image].items()}
            ]
            return _ok(argv, "".join(f"{image}\n" for image in found))
        if argv[:2] == ["docker", "tag"]:
            image = self._id(argv[2])
            assert image is not None, argv
            self.tags[argv[3]] = image
            return _ok(argv)
        return None

    def _build(self, argv: list[str]) -> CommandResult:
        self.builds.append(argv)
        labels = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--label")
        dockerfile = Path(argv[-1]) / "Dockerfile"
        if "--file" not in argv and dockerfile.is_file():
            text = dockerfile.read_text(encoding="utf-8")
            self.dockerfiles.append(text)
            for line in text.splitlines():
                if line.startswith("LABEL "):
                    pairs = shlex.split(line.removeprefix("LABEL "))
                    labels |= dict(pair.split("=", 1) for pair in pairs)
        image = f"sha256:{len(self.builds)}"
        self.labels[image] = labels
        self.tags[argv[argv.index("--tag") + 1]] = image
        return _ok(argv)

    def _id(self, ref: str) -> str | None:
        return ref if ref in self.labels else self.tags.get(ref)

    @staticmethod
    def _git(argv: list[str]) -> CommandResult:
        if "HEAD^{tree}" in argv:
            return _ok(argv, TREE + "\n")
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
            store=StateStore.on_host(target, PurePosixPath("/state/shop/development")),
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


# A Go build that stamps nothing of the commit, for an app whose deploys do not verify it.
COMMIT_FREE = (
    '  kind: go\n  context: .\n  ldflags:\n    example.com/shop/cmd.BuildDate: "{build_date}"\n'
    "deploy:\n  verify_path: null\n"
)
# An empty commit on top of ``COMMIT``: another SHA, the same tree.
EMPTY = replace(VERSION, commit="b" * 40, version="0.0.0+bbbbbbb")


@pytest.mark.parametrize(
    ("section", "why"),
    [
        (COMMIT_FREE, None),
        (COMMIT_FREE.replace("{build_date}", "{commit}"), "build.ldflags stamps the commit"),
        (COMMIT_FREE.replace("{build_date}", "{short_commit}"), "build.ldflags stamps the commit"),
        (COMMIT_FREE.replace("{build_date}", "{version}"), "build.ldflags stamps the commit"),
        (COMMIT_FREE.replace("null", "/version"), "deploy.verify_path checks"),
        (
            COMMIT_FREE.replace("deploy:", "  generate: [[make, webfiles]]\ndeploy:"),
            "build.generate may read",
        ),
        (GO_BUILD, "build.ldflags stamps the commit or version into example.com/shop/cmd.Version"),
        (
            "  kind: dockerfile\n  args:\n    REV: '{commit}'\ndeploy:\n  verify_path: null\n",
            "build.args stamps the commit or version into REV",
        ),
        (
            "  kind: dockerfile\n  args:\n    MODE: fast\ndeploy:\n  verify_path: null\n",
            "the Dockerfile's context holds .git",  # committed_config makes it a repository
        ),
    ],
)
def test_what_puts_the_commit_in_the_image(tmp_path: Path, section: str, why: str | None) -> None:
    """An image is reused for another commit of its tree only when nothing of the commit can be
    in it: a stamped value, a deploy that verifies the commit, a generate step, a Dockerfile
    build that can read .git."""
    config = _config(tmp_path, section, dockerfile="FROM scratch\n")
    found = build.commit_in_image(config)
    assert (found is None) if why is None else (found is not None and why in found), found


@pytest.mark.parametrize(
    ("ignore", "excluded"),
    [("bin\n.git\n", True), ("/.git/\n", True), (".git\n!.git\n", False), ("gitignore\n", False)],
)
def test_a_dockerfile_context_without_git_is_free_of_the_commit(
    tmp_path: Path, ignore: str, excluded: bool
) -> None:
    section = "  kind: dockerfile\n  args:\n    MODE: fast\ndeploy:\n  verify_path: null\n"
    config = _config(tmp_path, section, dockerfile="FROM scratch\n")
    (tmp_path / ".dockerignore").write_text(ignore, encoding="utf-8")
    assert (build.commit_in_image(config) is None) == excluded


def test_an_empty_commit_reuses_the_image_of_its_tree_when_the_commit_is_not_in_it(
    tmp_path: Path,
) -> None:
    machine = Machine()
    config = _config(tmp_path, COMMIT_FREE)
    first = build_image(config, machine.host, VERSION)
    assert not first.reused and machine.images[first.tag][SOURCE_TREE_LABEL] == TREE
    (server,) = [argv for argv in machine.host.commands if argv[:2] == ["go", "build"]]
    assert "-buildvcs=false" in server  # the binary does not name the commit either

    plan = build.plan_build(config, Docker(machine.host), EMPTY, rebuild=False)
    assert plan.reuse is not None and plan.retag
    assert plan.describe(EMPTY) == (
        f"reuse {plan.tag} (0.0.0+bbbbbbb): built before from commit aaaaaaa: the same source "
        "tree and settings, and nothing of the commit is in the image"
    )
    reused = build_image(config, machine.host, EMPTY)
    assert reused.reused and reused.id == first.id and len(machine.builds) == 1
    assert reused.tag == image_tag("shop", EMPTY, build_inputs(config)) != first.tag
    assert ["docker", "tag", first.id, reused.tag] in machine.host.commands
    assert reused.version.commit == EMPTY.commit
    assert (
        reused.version.build_date == machine.images[first.tag]["org.opencontainers.image.created"]
    )
    # The next deploy of that commit finds its own tag (whose revision label is the first commit).
    again = build.plan_build(config, Docker(machine.host), EMPTY, rebuild=False)
    assert again.reuse is not None and not again.retag

    other_tree = replace(EMPTY, commit="c" * 40, version="0.0.0+ccccccc", tree="8" * 40)
    assert not build_image(config, machine.host, other_tree).reused
    assert len(machine.builds) == 2
    assert not build_image(
        config, machine.host, replace(EMPTY, commit="d" * 40), rebuild=True
    ).reused


def test_an_empty_commit_is_built_when_the_commit_is_in_the_image(tmp_path: Path) -> None:
    """The reference app stamps the commit and deploys verify it: an image of another commit of
    the same tree would report the wrong one, so the new commit gets its own build (Go's cache
    makes that a relink). Go builds keep Go's VCS information then."""
    machine = Machine()
    config = _config(tmp_path, GO_BUILD)
    build_image(config, machine.host, VERSION)
    plan = build.plan_build(config, Docker(machine.host), EMPTY, rebuild=False)
    assert plan.reuse is None and "build.ldflags stamps the commit" in plan.reason
    assert not build_image(config, machine.host, EMPTY).reused
    assert len(machine.builds) == 2
    servers = [argv for argv in machine.host.commands if argv[:2] == ["go", "build"]]
    assert servers and not any("-buildvcs=false" in argv for argv in servers)


def test_inputs_built_another_way_are_not_reused_for_the_same_tree(tmp_path: Path) -> None:
    """Same tree, other build inputs (here another ldflags variable): built."""
    machine = Machine()
    build_image(_config(tmp_path / "a", COMMIT_FREE), machine.host, VERSION)
    changed = _config(tmp_path / "b", COMMIT_FREE.replace("BuildDate", "Built"))
    assert not build_image(changed, machine.host, EMPTY).reused
    assert len(machine.builds) == 2


def test_the_server_binary_is_the_last_layer_and_labels_are_one_instruction(
    tmp_path: Path,
) -> None:
    """What a new commit changes (the relinked server, the labels) comes last, after the files
    and tools, so the engine's build cache keeps everything else."""
    machine = Machine()
    (tmp_path / "contexts").mkdir(parents=True)
    config = _config(tmp_path, GO_BUILD + "  files: {contexts: /app/contexts}\n")
    build_image(config, machine.host, VERSION)
    (dockerfile,) = machine.dockerfiles
    lines = dockerfile.splitlines()
    assert lines[-2] == "COPY server /app/server"
    assert lines.index("COPY file0 /app/contexts") < len(lines) - 2
    assert [line for line in lines if line.startswith("LABEL")] == [lines[-1]]
    assert not any("--label" in argv for argv in machine.builds)
    labels = machine.images[image_tag("shop", VERSION, build_inputs(config))]
    assert labels["org.opencontainers.image.revision"] == COMMIT
    assert labels[BUILD_INPUTS_LABEL] == build_inputs(config)
