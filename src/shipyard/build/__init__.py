"""The app image, with its version stamped in: git commit, build date, semantic version.

Two ways: a Go build on the operator's machine packed into a ``scratch`` image, or the app's own
Dockerfile with build args. Either way the image is tagged ``<app>:<version>-<short sha>`` and carries
OCI labels, ``org.shipyard.build-inputs`` (the hash of the build settings that made it) and
``org.shipyard.source-tree`` (the git tree it was built from), so that an image is reused only when
it was built the same way from the same source (``plan_build``): from the same commit, or, when
nothing of the commit reaches the image (``commit_in_image``), from another commit of the same tree.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from shipyard.config import Config, DockerfileBuild, GoBuild
from shipyard.docker import Docker, ImageInfo
from shipyard.errors import BuildError, CommandFailed, HostUnreachable, ToolTooOld
from shipyard.hosts import Host

__all__ = [
    "BUILD_INPUTS_LABEL",
    "MIN_GO",
    "SOURCE_TREE_LABEL",
    "BuildPlan",
    "Image",
    "VersionInfo",
    "build_image",
    "build_inputs",
    "commit_in_image",
    "git_ignores",
    "go_toolchain_problem",
    "image_tag",
    "plan_build",
    "read_version",
    "source_at",
]

_SEMVER_TAG = re.compile(r"^v?(?P<v>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$")
_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MIN_GO = (1, 22)
LABEL_PREFIX = "org.shipyard"
BUILD_INPUTS_LABEL = f"{LABEL_PREFIX}.build-inputs"
SOURCE_TREE_LABEL = f"{LABEL_PREFIX}.source-tree"
_REVISION_LABEL = "org.opencontainers.image.revision"
# Part of the build inputs: raise it when shipyard makes a different image from the same settings
# (e.g. the Dockerfile it writes for Go builds), so that images built before are not reused.
_BUILD_FORMAT = 2
# git takes no optional lock (``git status`` refreshing the index writes .git/index.lock): shipyard
# only reads the operator's repository, and a shipyard killed mid-command must not leave a lock
# that makes the operator's next `git add` fail.
GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0"}


@dataclass(frozen=True)
class VersionInfo:
    """What a build is: ``version`` (semver), ``commit`` (full SHA), ``build_date`` (UTC), and
    ``tree``: the git tree of the commit (the same for an empty commit; empty when unknown)."""

    version: str
    commit: str
    build_date: str
    dirty: bool
    tree: str = ""

    @property
    def short(self) -> str:
        return self.commit[:7]

    def fill(self, template: str) -> str:
        """Fill ``{version}``, ``{commit}``, ``{short_commit}``, ``{build_date}`` in a template."""
        return (
            template.replace("{version}", self.version)
            .replace("{commit}", self.commit)
            .replace("{short_commit}", self.short)
            .replace("{build_date}", self.build_date)
        )


@dataclass(frozen=True)
class Image:
    """A built image: its tag, ID and version."""

    tag: str
    id: str
    version: VersionInfo
    reused: bool = False


@contextmanager
def source_at(local: Host, config: Config, ref: str) -> Iterator[Config]:
    """The config rooted in a temporary git worktree of ``ref`` (branch, tag or SHA).

    The operator's checkout is not touched. Build context, migrations and every other path in
    shipyard.yml resolve inside the worktree; the env file already read stays the operator's.
    """

    def git(*args: str, cwd: Path = config.root) -> str:
        return local.run(["git", "-C", str(cwd), *args], env=GIT_ENV, timeout=300).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except CommandFailed as exc:
        raise BuildError(
            f"{ref!r} is not a branch, tag or commit of the repository at {config.root}",
            hint="fetch it first (git fetch --tags), or check the spelling",
        ) from exc
    with tempfile.TemporaryDirectory(prefix="shipyard-ref-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", "--quiet", str(tree), commit, cwd=top)
        try:
            moved = tree / config.path.relative_to(top)
            yield replace(config, path=moved)
        finally:
            local.run(
                ["git", "-C", str(top), "worktree", "remove", "--force", str(tree)], check=False
            )


def read_version(
    local: Host,
    directory: Path,
    *,
    allow_dirty: bool,
    env_files: Sequence[Path] = (),
    now: datetime | None = None,
) -> VersionInfo:
    """Version of the source in ``directory``: the exact git tag, else ``0.0.0+<short sha>``.

    A tree with uncommitted changes (under ``directory``) is refused unless ``allow_dirty``; the
    version then ends in ``.dirty``. ``env_files`` (the environment's secrets, which are not
    part of the build and must never be committed) never count as changes. `shipyard check`
    and the validate phase call this same function, so they refuse what the version phase would.
    """

    def git(*args: str) -> str:
        return local.run(
            ["git", "-C", str(directory), *args], env=GIT_ENV, timeout=60
        ).stdout.rstrip()

    inside = [f.relative_to(directory) for f in env_files if f.is_relative_to(directory)]
    try:
        commit = git("rev-parse", "HEAD")
        tree = git("rev-parse", "HEAD^{tree}")
        status = git(
            "status",
            "--porcelain",
            "--untracked-files=normal",
            "--",
            ".",
            *(f":(exclude,literal){path}" for path in inside),
        )
    except CommandFailed as exc:
        raise BuildError(
            f"{directory} is not inside a git repository with at least one commit",
            hint="shipyard stamps the git commit into every build: `git init && git commit`",
        ) from exc
    dirty = bool(status)
    if dirty and not allow_dirty:
        changed = ", ".join(line[3:] for line in status.splitlines()[:5])
        raise BuildError(
            f"uncommitted changes in {directory}: {changed}",
            hint=_dirty_hint(local, env_files),
        )
    tags = local.run(
        ["git", "-C", str(directory), "tag", "--points-at", "HEAD"], env=GIT_ENV, timeout=60
    ).stdout.split()
    semver = sorted(m.group("v") for t in tags if (m := _SEMVER_TAG.match(t)))
    version = semver[-1] if semver else f"0.0.0+{commit[:7]}"
    if dirty:
        version += ".dirty" if "+" in version else "+dirty"
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return VersionInfo(version=version, commit=commit, build_date=stamp, dirty=dirty, tree=tree)


def _dirty_hint(local: Host, env_files: Sequence[Path]) -> str:
    hint = "commit them, or deploy with --allow-dirty (the version will say .dirty)"
    names = [f.name for f in env_files]
    if names:
        hint += f"; the env file ({', '.join(names)}) is never counted and must never be committed"
    unignored = [f for f in env_files if f.is_file() and not git_ignores(local, f)]
    if unignored:
        hint += ": add " + ", ".join(f.name for f in unignored) + " to .gitignore"
    return hint


def git_ignores(local: Host, path: Path) -> bool:
    """Whether git ignores ``path`` (or it is outside any repository, where git cannot add it)."""
    result = local.run(
        ["git", "-C", str(path.parent), "check-ignore", "--quiet", "--", path.name],
        env=GIT_ENV,
        check=False,
        timeout=60,
    )
    return result.returncode != 1  # 0: ignored; 128: not in a repository; 1: not ignored


def image_tag(app: str, version: VersionInfo, inputs: str) -> str:
    """``<app>:<semver without build metadata>-<short sha>-<build inputs, 7>[-dirty]`` (docker tags
    cannot hold '+'). The build inputs are in the tag because one commit built two ways (staging
    and production generating different files, a Go and a Dockerfile build) makes two images:
    with one tag, a later build would take the tag from under a release that recorded it."""
    base = version.version.split("+", 1)[0]
    tag = f"{base}-{version.short}-{inputs[:7]}"
    if version.dirty:
        tag += "-dirty"
    return f"{app}:{re.sub(r'[^A-Za-z0-9_.-]', '-', tag)}"


def _labels(config: Config, version: VersionInfo) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": config.app.name,
        "org.opencontainers.image.version": version.version,
        _REVISION_LABEL: version.commit,
        "org.opencontainers.image.created": version.build_date,
        f"{LABEL_PREFIX}.app": config.app.name,
    }


# What fills a template with something of the commit: its SHA, or the version (``0.0.0+<sha>``,
# or the tag on the commit). ``{build_date}`` is not: a reused image keeps the date it was built.
_COMMIT_PLACEHOLDERS = ("{commit}", "{short_commit}", "{version}")


def commit_in_image(config: Config) -> str | None:
    """Why the image of a commit is built for that commit, or None when nothing of the commit
    reaches the image, so that another commit of the same source tree (an empty commit, a
    revert) gets the very same image.

    The commit reaches the image when a stamped value (Go ``-X`` ldflags, Dockerfile build args)
    uses ``{commit}``, ``{short_commit}`` or ``{version}``; when ``deploy.verify_path`` is set
    (the deployed app must report the new commit, which an image built from another commit
    cannot: without a stamped value, the app reads Go's embedded VCS information); when
    ``build.generate`` runs (a command may read the commit); or when a Dockerfile's context holds
    ``.git`` that ``.dockerignore`` does not exclude. Go builds without the commit are made with
    ``-buildvcs=false``: the binary then holds nothing of the commit either."""
    spec = config.build
    stamped, key = (
        (spec.ldflags, "build.ldflags") if isinstance(spec, GoBuild) else (spec.args, "build.args")
    )
    for name, template in sorted(stamped.items()):
        if any(placeholder in template for placeholder in _COMMIT_PLACEHOLDERS):
            return f"{key} stamps the commit or version into {name}"
    if config.deploy.verify_path:
        return "deploy.verify_path checks that the app reports the deployed commit"
    if isinstance(spec, GoBuild):
        return "build.generate may read the commit" if spec.generate else None
    context = config.resolve(spec.context)
    if (context / ".git").exists() and not _dockerignore_excludes_git(context):
        return "the Dockerfile's context holds .git (add it to .dockerignore)"
    return None


def _dockerignore_excludes_git(context: Path) -> bool:
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return False
    excluded = False
    for raw in ignore.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().removeprefix("./").removeprefix("/").rstrip("/")
        if pattern in {".git", ".git/**", "**/.git"}:
            excluded = not negated  # the last line that names .git decides, as for Docker
    return excluded


def build_inputs(config: Config) -> str:
    """The sha256 of everything in the configuration that shapes the image beyond the source at
    its commit: the build kind and context; for Go, the package, binary, ``-X`` ldflags
    (templates), files, build tags and the port the image exposes; for a Dockerfile, its path
    and the sha256 of its content, the target and the build args, names and values; and whether
    the image is free of the commit (``commit_in_image``: then a Go build leaves out Go's VCS
    information, and the image is reused for any commit of its tree). Values are hashed before
    they are combined (build args may be secrets read from the env file): the label carries
    only the final hash."""
    spec = config.build
    inputs: dict[str, object] = {
        "format": _BUILD_FORMAT,
        "kind": spec.kind,
        "context": spec.context,
    }
    if commit_in_image(config) is None:
        inputs["commit_free"] = True  # absent otherwise: the hash of earlier builds stays
    if isinstance(spec, GoBuild):
        inputs |= {
            "package": spec.package,
            "binary": spec.binary,
            "ldflags": _hashed(spec.ldflags),
            "files": spec.files,
            "tags": spec.tags,
            "tzdata": spec.tzdata,
            "generate": spec.generate,
            "tools": spec.tools,
            "port": config.app.port,
        }
    else:
        dockerfile = config.resolve(spec.context) / spec.dockerfile
        inputs |= {
            "dockerfile": spec.dockerfile,
            "dockerfile_sha256": _sha256(dockerfile.read_bytes()) if dockerfile.is_file() else None,
            "target": spec.target,
            "args": _hashed(spec.args),
        }
    return _sha256(json.dumps(inputs, sort_keys=True).encode())


def _hashed(values: Mapping[str, str]) -> dict[str, str]:
    return {name: _sha256(value.encode()) for name, value in values.items()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BuildPlan:
    """Whether a deploy builds the image or reuses one built before, and why."""

    tag: str
    inputs: str  # ``build_inputs``: the label the image gets, or carries when reused
    reuse: ImageInfo | None  # the image built before, or None: build
    reason: str
    retag: bool = False  # ``reuse`` was built for another commit of the same tree: tag it

    def describe(self, version: VersionInfo) -> str:
        verb = "reuse" if self.reuse is not None else "build"
        return f"{verb} {self.tag} ({version.version}): {self.reason}"


def plan_build(config: Config, docker: Docker, version: VersionInfo, *, rebuild: bool) -> BuildPlan:
    """The one decision whether to build (``build_image`` and ``plan`` both ask it): an image is
    reused only for a clean commit, without ``rebuild``, when an image on ``docker`` (the
    operator's engine) was built with the same build inputs from that commit (the image of its
    tag) or, when nothing of the commit reaches the image (``commit_in_image``), from any commit
    of the same git tree (found by its labels, then tagged for this commit)."""
    inputs = build_inputs(config)
    tag = image_tag(config.app.name, version, inputs)
    if rebuild:
        return BuildPlan(tag, inputs, None, "--rebuild")
    if version.dirty:
        return BuildPlan(tag, inputs, None, "uncommitted changes are always built")
    keyed_on_commit = commit_in_image(config)
    existing = docker.image(tag)
    if existing is None:
        return _plan_untagged(config, docker, version, tag, inputs, keyed_on_commit)
    same_source = existing.labels.get(_REVISION_LABEL) == version.commit or (
        keyed_on_commit is None
        and bool(version.tree)
        and existing.labels.get(SOURCE_TREE_LABEL) == version.tree
    )
    if not same_source:
        return BuildPlan(tag, inputs, None, "the image of that tag is of another commit")
    if existing.labels.get(BUILD_INPUTS_LABEL) != inputs:
        return BuildPlan(
            tag,
            inputs,
            None,
            "the image of this commit was built with other build settings (kind, Dockerfile, "
            "args, target, ldflags, files or tags)",
        )
    return BuildPlan(tag, inputs, existing, "built before from this commit and these settings")


def _plan_untagged(
    config: Config,
    docker: Docker,
    version: VersionInfo,
    tag: str,
    inputs: str,
    keyed_on_commit: str | None,
) -> BuildPlan:
    """No image has the commit's tag: one of the same tree, when the commit is not in it."""
    same_tree = None if keyed_on_commit else _image_of_tree(config, docker, version, inputs)
    if same_tree is not None:
        built_from = same_tree.labels.get(_REVISION_LABEL, "?")[:7]
        return BuildPlan(
            tag,
            inputs,
            same_tree,
            f"built before from commit {built_from}: the same source tree and settings, "
            "and nothing of the commit is in the image",
            retag=True,
        )
    why = f" (each commit gets its own build: {keyed_on_commit})" if keyed_on_commit else ""
    return BuildPlan(tag, inputs, None, "not built before" + why)


def _image_of_tree(
    config: Config, docker: Docker, version: VersionInfo, inputs: str
) -> ImageInfo | None:
    """The newest image of the app built with ``inputs`` from ``version``'s tree, if any."""
    if not version.tree:
        return None
    labels = {
        f"{LABEL_PREFIX}.app": config.app.name,
        BUILD_INPUTS_LABEL: inputs,
        SOURCE_TREE_LABEL: version.tree,
    }
    for image_id in docker.images(labels):
        found = docker.image(image_id)
        if found is not None:
            return found
    return None


def build_image(
    config: Config, local: Host, version: VersionInfo, *, rebuild: bool = False
) -> Image:
    """Build the app image on the operator's engine.

    An image built before is reused when ``plan_build`` says so (a clean commit, built with the
    same build inputs). Within one command an image is built once: the nodes of an environment,
    deployed in parallel, all get that same build.
    """
    inputs = build_inputs(config)
    tag = image_tag(config.app.name, version, inputs)
    key = (tag, inputs)
    with _BUILDING:
        if key in _BUILT:
            return replace(_BUILT[key], reused=True)
        image = _build(config, local, version, tag, rebuild=rebuild)
        _BUILT[key] = image
        return image


_BUILDING = threading.Lock()
_BUILT: dict[tuple[str, str], Image] = {}  # this process's builds, by tag and build inputs


def _build(config: Config, local: Host, version: VersionInfo, tag: str, *, rebuild: bool) -> Image:
    docker = Docker(local)
    plan = plan_build(config, docker, version, rebuild=rebuild)
    if plan.reuse is not None:
        if plan.retag:
            try:
                docker.tag(plan.reuse.id, tag)
            except CommandFailed as exc:
                raise BuildError(f"tagging {plan.reuse.id} as {tag} failed: {exc.message}") from exc
        built = plan.reuse.labels.get("org.opencontainers.image.created", version.build_date)
        return Image(
            tag=tag, id=plan.reuse.id, version=replace(version, build_date=built), reused=True
        )
    labels = _labels(config, version) | {BUILD_INPUTS_LABEL: plan.inputs}
    if version.tree and not version.dirty:
        labels[SOURCE_TREE_LABEL] = version.tree
    spec = config.build
    try:
        if isinstance(spec, GoBuild):
            _go_build(config, spec, local, docker, version, tag, labels)
        else:
            _dockerfile_build(config, spec, docker, version, tag, labels)
    except CommandFailed as exc:
        raise BuildError(f"building {tag} failed: {exc.message}", hint=exc.hint) from exc
    image = docker.image(tag)
    if image is None:
        raise BuildError(f"the build reported success but image {tag} does not exist")
    missing = docker.missing_paths(tag, config.app.required_files)
    if missing:
        raise BuildError(
            f"image {tag} lacks required file(s): {', '.join(missing)}",
            hint="copy them into the image (app.required_files lists what the server needs at run time)",
        )
    return Image(tag=tag, id=image.id, version=version)


MIGRATIONS_DIR = "/migrations"


def build_migrations_image(config: Config, local: Host, image: Image) -> str | None:
    """The release's migration files in an image of golang-migrate (``database.migrations.
    image``), at ``/migrations``: what runs them where the host's files are not at hand (a one-off
    ECS task). Tagged ``<the app image's tag>-migrations``, with the app image's labels.
    ``None`` when the app has no migrations."""
    section = config.database
    if section is None or section.migrations is None:
        return None
    source = config.resolve(section.migrations.path)
    if not source.is_dir():
        raise BuildError(f"migrations directory {source} not found")
    tag = f"{image.tag}-migrations"
    with tempfile.TemporaryDirectory(prefix="shipyard-migrations-") as scratch:
        dockerfile = Path(scratch) / "Dockerfile"
        dockerfile.write_text(
            f"FROM {section.migrations.image}\nCOPY . {MIGRATIONS_DIR}/\n", encoding="utf-8"
        )
        Docker(local).build(
            str(source),
            tag=tag,
            dockerfile=str(dockerfile),
            labels={**_labels(config, image.version), f"{LABEL_PREFIX}.role": "migrations"},
        )
    return tag


def go_toolchain_problem(local: Host) -> str | None:
    """Why the operator's Go toolchain is too old to build (older than ``MIN_GO``); a missing
    toolchain is reported by the build itself."""
    needed = "go" + ".".join(map(str, MIN_GO))
    try:
        found = local.run(["go", "env", "GOVERSION"], check=False, timeout=60).stdout.strip()
    except HostUnreachable:
        return None
    numbers = tuple(int(n) for n in re.findall(r"\d+", found)[:2])
    if numbers < MIN_GO:
        return f"tool `go`: found {found or 'an unknown version'}, need {needed} or newer"
    return None


def _go_build(
    config: Config,
    spec: GoBuild,
    local: Host,
    docker: Docker,
    version: VersionInfo,
    tag: str,
    labels: Mapping[str, str],
) -> None:
    source = config.resolve(spec.context)
    problem = go_toolchain_problem(local)
    if problem is not None:
        raise ToolTooOld(problem, hint="install a current Go from https://go.dev/dl/")
    if not (source / "go.mod").is_file():
        raise BuildError(
            f"{source} has no go.mod", hint="build.context must point at the Go module"
        )
    arch = docker.info(compose=False).architecture  # the engine only: Compose plays no part
    target = {"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": _goarch(arch)}
    ldflags = ["-s", "-w"] + [
        f"-X={name}={version.fill(value)}" for name, value in spec.ldflags.items()
    ]
    # An image reused for every commit of its tree must not name one of them (vcs.revision).
    vcs = ["-buildvcs=false"] if commit_in_image(config) is None else []
    tags = [*spec.tags, *(["timetzdata"] if spec.tzdata else [])]
    for step in spec.generate:
        _run_go_step(
            local,
            step,
            cwd=source,
            env={"CGO_ENABLED": "0"},  # a `go run` in it shares the build's cache
            what=f"build.generate `{' '.join(step)}`",
        )
    with tempfile.TemporaryDirectory(prefix="shipyard-build-") as tmp:
        context = Path(tmp)
        argv = ["go", "build", "-trimpath", *vcs, "-ldflags", " ".join(ldflags)]
        if tags:
            argv += ["-tags", ",".join(tags)]
        _run_go_step(
            local,
            [*argv, "-o", str(context / spec.binary), spec.package],
            cwd=source,
            env=target,
            what=f"go build {spec.package}",
        )
        for name, tool in sorted(spec.tools.items()):
            _build_tool(config, local, name, tool, context / "tools", target, vcs)
        # What changes least comes first: the engine's build cache keeps those layers, and a
        # new commit that only relinks the server (its version stamped in) rebuilds only the
        # last layer.
        lines = ["FROM scratch"]
        if _CA_BUNDLE.is_file():
            shutil.copy(_CA_BUNDLE, context / "ca-certificates.crt")
            lines.append("COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt")
        for index, (relative, destination) in enumerate(sorted(spec.files.items())):
            item = source / relative
            if not item.exists():
                raise BuildError(f"build.files: {item} does not exist")
            staged = context / f"file{index}"
            if item.is_dir():
                shutil.copytree(item, staged)
            else:
                shutil.copy(item, staged)
            lines.append(f"COPY {staged.name} {destination}")
        lines += [f"COPY tools/{name} /app/{name}" for name in sorted(spec.tools)]
        lines += [
            "WORKDIR /app",
            "USER 1000:1000",
            f"EXPOSE {config.app.port}",
            f'ENTRYPOINT ["/app/{spec.binary}"]',
            f"COPY {spec.binary} /app/{spec.binary}",
            # One instruction: the engine's classic builder makes a step (a container) of each
            # --label, which took longer than the rest of the image.
            "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items()),
        ]
        (context / "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        docker.build(str(context), tag=tag)


def _run_go_step(
    local: Host,
    argv: list[str],
    *,
    cwd: Path,
    what: str,
    env: Mapping[str, str] | None = None,
) -> None:
    try:
        result = local.run(argv, cwd=str(cwd), env=env, timeout=1800, check=False)
    except HostUnreachable as exc:
        raise BuildError(
            f"{what}: `{argv[0]}` is not installed on this machine",
            hint="install Go ≥ 1.22" if argv[0] == "go" else None,
        ) from exc
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise BuildError(
            f"{what} failed (exit {result.returncode}): " + " / ".join(output[-8:]),
            hint=f"run it in {cwd} to see the whole output",
        )


def _build_tool(
    config: Config,
    local: Host,
    name: str,
    tool: str,
    out: Path,
    target: Mapping[str, str],
    vcs: Sequence[str],
) -> None:
    """One of ``build.tools``: ``module/path@version`` is built in module mode, outside the app's
    module (``go install``, which puts it in ``GOBIN``); anything else is a directory of shipyard.yml
    with a main package, built in the module that holds it."""
    out.mkdir(exist_ok=True)
    what = f"build.tools.{name} ({tool})"
    if "@" in tool:
        host = local.run(["go", "env", "GOHOSTOS", "GOHOSTARCH"], timeout=60).stdout.split()
        if host != [target["GOOS"], target["GOARCH"]]:
            raise BuildError(
                f"{what}: this machine builds for {'/'.join(host)}, the engine runs "
                f"{target['GOOS']}/{target['GOARCH']}",
                hint="give the tool as a directory of shipyard.yml (built for the engine), or "
                "build on a machine of the engine's platform",
            )
        with tempfile.TemporaryDirectory(prefix="shipyard-gobin-") as gobin:
            _run_go_step(
                local,
                ["go", "install", "-trimpath", "-ldflags", "-s -w", tool],
                cwd=out,
                env={"CGO_ENABLED": "0", "GOBIN": gobin},
                what=what,
            )
            built = [p for p in Path(gobin).iterdir() if p.is_file()]
            if len(built) != 1:
                raise BuildError(f"{what}: go install made {len(built)} programs, expected one")
            shutil.copy(built[0], out / name)
        return
    directory = config.resolve(tool)
    if not directory.is_dir():
        raise BuildError(f"{what}: {directory} is not a directory")
    _run_go_step(
        local,
        ["go", "build", "-trimpath", *vcs, "-ldflags", "-s -w", "-o", str(out / name), "."],
        cwd=directory,
        env=target,
        what=what,
    )


def _dockerfile_build(
    config: Config,
    spec: DockerfileBuild,
    docker: Docker,
    version: VersionInfo,
    tag: str,
    labels: Mapping[str, str],
) -> None:
    context = config.resolve(spec.context)
    dockerfile = context / spec.dockerfile
    if not dockerfile.is_file():
        raise BuildError(f"Dockerfile {dockerfile} not found")
    docker.build(
        str(context),
        tag=tag,
        dockerfile=str(dockerfile),
        target=spec.target,
        build_args=_fill_all(spec.args, version),
        labels=labels,
    )


def _fill_all(values: Mapping[str, str], version: VersionInfo) -> dict[str, str]:
    return {key: version.fill(value) for key, value in values.items()}


def _goarch(docker_arch: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(docker_arch, docker_arch)
