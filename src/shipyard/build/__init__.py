"""The app image, with its version stamped in: git commit, build date, semantic version.

Two ways: a Go build on the operator's machine packed into a ``scratch`` image, or the app's own
Dockerfile with build args. Either way the image is tagged ``<app>:<version>-<short sha>`` and carries
OCI labels.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from shipyard.config import Config, DockerfileBuild, GoBuild
from shipyard.docker import Docker
from shipyard.errors import BuildError, CommandFailed, HostUnreachable, ToolTooOld
from shipyard.hosts import Host

__all__ = [
    "MIN_GO",
    "Image",
    "VersionInfo",
    "build_image",
    "go_toolchain_problem",
    "image_tag",
    "read_version",
    "source_at",
]

_SEMVER_TAG = re.compile(r"^v?(?P<v>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$")
_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MIN_GO = (1, 22)
LABEL_PREFIX = "org.shipyard"


@dataclass(frozen=True)
class VersionInfo:
    """What a build is: ``version`` (semver), ``commit`` (full SHA), ``build_date`` (UTC)."""

    version: str
    commit: str
    build_date: str
    dirty: bool

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
        return local.run(["git", "-C", str(cwd), *args], timeout=300).stdout.strip()

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
    local: Host, directory: Path, *, allow_dirty: bool, now: datetime | None = None
) -> VersionInfo:
    """Version of the source in ``directory``: the exact git tag, else ``0.0.0+<short sha>``.

    A tree with uncommitted changes (under ``directory``) is refused unless ``allow_dirty``; the
    version then ends in ``.dirty``.
    """

    def git(*args: str) -> str:
        return local.run(["git", "-C", str(directory), *args], timeout=60).stdout.rstrip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
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
            hint="commit them, or deploy with --allow-dirty (the version will say .dirty)",
        )
    tags = local.run(
        ["git", "-C", str(directory), "tag", "--points-at", "HEAD"], timeout=60
    ).stdout.split()
    semver = sorted(m.group("v") for t in tags if (m := _SEMVER_TAG.match(t)))
    version = semver[-1] if semver else f"0.0.0+{commit[:7]}"
    if dirty:
        version += ".dirty" if "+" in version else "+dirty"
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return VersionInfo(version=version, commit=commit, build_date=stamp, dirty=dirty)


def image_tag(app: str, version: VersionInfo) -> str:
    """``<app>:<semver without build metadata>-<short sha>[-dirty]`` (docker tags cannot hold '+')."""
    base = version.version.split("+", 1)[0]
    tag = f"{base}-{version.short}"
    if version.dirty:
        tag += "-dirty"
    return f"{app}:{re.sub(r'[^A-Za-z0-9_.-]', '-', tag)}"


def _labels(config: Config, version: VersionInfo) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": config.app.name,
        "org.opencontainers.image.version": version.version,
        "org.opencontainers.image.revision": version.commit,
        "org.opencontainers.image.created": version.build_date,
        f"{LABEL_PREFIX}.app": config.app.name,
    }


def build_image(
    config: Config, local: Host, version: VersionInfo, *, rebuild: bool = False
) -> Image:
    """Build the app image on the operator's engine.

    A clean commit that was built before is not built again (same tag, same revision label)
    unless ``rebuild``. Within one command an image is built once: the nodes of an environment,
    deployed in parallel, all get that same build.
    """
    tag = image_tag(config.app.name, version)
    with _BUILDING:
        if tag in _BUILT:
            return replace(_BUILT[tag], reused=True)
        image = _build(config, local, version, tag, rebuild=rebuild)
        _BUILT[tag] = image
        return image


_BUILDING = threading.Lock()
_BUILT: dict[str, Image] = {}  # this process's builds, by tag


def _build(config: Config, local: Host, version: VersionInfo, tag: str, *, rebuild: bool) -> Image:
    docker = Docker(local)
    existing = docker.image(tag)
    if (
        existing is not None
        and not rebuild
        and not version.dirty
        and existing.labels.get("org.opencontainers.image.revision") == version.commit
    ):
        built = existing.labels.get("org.opencontainers.image.created", version.build_date)
        return Image(
            tag=tag, id=existing.id, version=replace(version, build_date=built), reused=True
        )
    spec = config.build
    try:
        if isinstance(spec, GoBuild):
            _go_build(config, spec, local, docker, version, tag)
        else:
            _dockerfile_build(config, spec, docker, version, tag)
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
    config: Config, spec: GoBuild, local: Host, docker: Docker, version: VersionInfo, tag: str
) -> None:
    source = config.resolve(spec.context)
    problem = go_toolchain_problem(local)
    if problem is not None:
        raise ToolTooOld(problem, hint="install a current Go from https://go.dev/dl/")
    if not (source / "go.mod").is_file():
        raise BuildError(
            f"{source} has no go.mod", hint="build.context must point at the Go module"
        )
    arch = docker.info().architecture
    ldflags = ["-s", "-w"] + [
        f"-X={name}={version.fill(value)}" for name, value in spec.ldflags.items()
    ]
    with tempfile.TemporaryDirectory(prefix="shipyard-build-") as tmp:
        context = Path(tmp)
        argv = [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            " ".join(ldflags),
            "-o",
            str(context / spec.binary),
        ]
        if spec.tags:
            argv += ["-tags", ",".join(spec.tags)]
        try:
            local.run(
                [*argv, spec.package],
                cwd=str(source),
                env={"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": _goarch(arch)},
                timeout=1800,
            )
        except HostUnreachable as exc:
            raise BuildError(
                "the Go toolchain (`go`) is not installed", hint="install Go ≥ 1.22"
            ) from exc
        lines = ["FROM scratch"]
        if _CA_BUNDLE.is_file():
            shutil.copy(_CA_BUNDLE, context / "ca-certificates.crt")
            lines.append("COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt")
        lines.append(f"COPY {spec.binary} /app/{spec.binary}")
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
        lines += [
            "WORKDIR /app",
            "USER 1000:1000",
            f"EXPOSE {config.app.port}",
            f'ENTRYPOINT ["/app/{spec.binary}"]',
        ]
        (context / "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        docker.build(str(context), tag=tag, labels=_labels(config, version))


def _dockerfile_build(
    config: Config, spec: DockerfileBuild, docker: Docker, version: VersionInfo, tag: str
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
        labels=_labels(config, version),
    )


def _fill_all(values: Mapping[str, str], version: VersionInfo) -> dict[str, str]:
    return {key: version.fill(value) for key, value in values.items()}


def _goarch(docker_arch: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(docker_arch, docker_arch)
