"""Everything a deploy needs, checked before anything changes.

`shipyard check` runs these checks and nothing else; deploy, rollback and plan run the very same
ones first (their ``validate`` phase), so no operation goes ahead on a tree that `check` refuses.
The checks read files and ask tools for their versions on the operator's machine and the engine
of the target; they change nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from shipyard.build import VersionInfo, git_ignores, go_toolchain_problem, read_version
from shipyard.config import Config, GoBuild, load_config
from shipyard.errors import (
    BuildError,
    CheckFailed,
    ConfigError,
    HostUnreachable,
    ShipyardError,
    ToolTooOld,
)
from shipyard.hosts import MIN_OPENSSH, Host, LocalHost, openssh_version


@dataclass(frozen=True)
class Checked:
    """What the checks found when nothing failed: what passed, and warnings."""

    passed: list[str]
    warnings: list[str]
    # The source's version as the check read it (the version phase's own function), for the
    # version phase right after: ``None`` when the source was not read (nothing is built).
    source: VersionInfo | None = None

    def summary(self) -> str:
        """One line for the ``validate`` phase (the config line is implied by getting there)."""
        return "; ".join(["every check passed", *self.passed[1:]])


@dataclass(frozen=True)
class _Problem:
    message: str
    too_old: bool = False  # a tool older than shipyard needs (not missing, not misconfigured)


def check_file(
    config_path: Path,
    environment: str,
    *,
    engine: Callable[[Config], str],
    allow_dirty: bool = False,
) -> Checked:
    """`shipyard check`: load the configuration for ``environment`` and run every check.

    A configuration that does not load is reported with the tools this machine lacks, all at
    once. ``engine(config)`` checks the target's engine (see ``run_checks``); the source tree is
    checked as a deploy with ``allow_dirty`` (or ``deploy.allow_dirty``) would check it."""
    try:
        config = load_config(config_path, environment)
    except ConfigError as exc:
        problems = [str(issue) for issue in exc.issues]
        problems += [p.message for p in _tool_problems(None, LocalHost())]
        raise CheckFailed(problems, warnings=[str(w) for w in exc.warnings]) from exc
    return run_checks(
        config,
        lambda: engine(config),
        local=LocalHost(config.masker),
        allow_dirty=allow_dirty or config.deploy.allow_dirty,
    )


def run_checks(
    config: Config,
    engine: Callable[[], str],
    *,
    local: Host,
    operation: bool = False,
    allow_dirty: bool | None = None,
) -> Checked:
    """Every check of a valid configuration, every problem collected: the build context, the
    Dockerfile or Go module and its files, the migrations directory, the env file (not
    world-readable, not tracked by git; a warning when git does not ignore it), the source tree
    unless ``allow_dirty`` is None (an operation that builds nothing: no uncommitted changes
    but the env file's, unless allowed — the version phase's own function), the tools on this
    machine (``local``) and their versions, then — when nothing else failed — ``engine()``, the
    target's Docker engine and Compose (it returns what it found, or raises).

    Raises ``CheckFailed`` listing every problem. For an ``operation`` (deploy, rollback, plan) a
    problem that has an exit code of its own stops it with that error instead, when it is the
    only kind found: tools older than needed (``ToolTooOld``), and whatever the engine check
    raises (``HostUnreachable`` for an engine that cannot be reached, ``ToolTooOld``)."""
    # An operation that builds nothing (a rollback) needs no Go toolchain: its check is the
    # slowest of these (``go env``) and is left to `shipyard check`, deploy and plan.
    builds = not operation or allow_dirty is not None
    # The checks on this machine are a dozen short git and go processes: three run side by side.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="check") as pool:
        tools = pool.submit(_tool_problems, config, local, builds=builds)
        read = (
            pool.submit(_tree, config, local, allow_dirty=allow_dirty)
            if allow_dirty is not None
            else None
        )
        files = _file_problems(config, local)
        warned = _env_file_warnings(config, local)
        problems = [*files, *tools.result()]
        tree = read.result() if read is not None else None
    warnings = [str(warning) for warning in config.warnings] + warned
    if not operation:  # DNS is `check`'s question only: a deploy does not wait on resolvers
        warnings += domain_warnings(config, resolve=_resolve)
    passed = [f"{config.path}: valid for environment {config.environment.name!r}"]
    source = None
    if allow_dirty is not None:
        problems += [tree] if isinstance(tree, _Problem) else []
        if isinstance(tree, VersionInfo):
            source = tree
            dirty = " with uncommitted changes (allowed)" if tree.dirty else ""
            passed.append(f"source: version {tree.version} at commit {tree.short}{dirty}")
    if operation and problems and all(p.too_old for p in problems):
        raise ToolTooOld("; ".join(p.message for p in problems), hint=_UPGRADE)
    if not problems:
        try:
            passed.append(engine())
        except ShipyardError as exc:
            if operation:
                raise
            problems.append(_Problem(exc.message))
    if problems:
        raise CheckFailed([p.message for p in problems], warnings=warnings)
    return Checked(passed, warnings, source)


_UPGRADE = "upgrade it (`shipyard check ENV` lists every problem), then run the command again"


def _file_problems(config: Config, local: Host) -> list[_Problem]:
    problems = []
    file = str(config.path)
    context = config.resolve(config.build.context)
    if not context.is_dir():
        problems.append(f"{file} build.context: directory {context} does not exist")
    elif isinstance(config.build, GoBuild):
        if not (context / "go.mod").is_file():
            problems.append(f"{file} build.context: {context} has no go.mod")
        for relative in config.build.files:
            if not (context / relative).exists():
                problems.append(
                    f"{file} build.files.{relative}: {context / relative} does not exist"
                )
    elif not (context / config.build.dockerfile).is_file():
        problems.append(
            f"{file} build.dockerfile: {context / config.build.dockerfile} does not exist"
        )
    if config.database and config.database.migrations:
        migrations = config.resolve(config.database.migrations.path)
        if not migrations.is_dir():
            problems.append(
                f"{file} database.migrations.path: directory {migrations} does not exist"
            )
    env_file = config.environment.env_file
    if env_file is not None and env_file.is_file():
        mode = env_file.stat().st_mode
        if mode & 0o004:
            problems.append(
                f"{env_file}: world-readable (mode {oct(mode & 0o777)}); run chmod 600 {env_file}"
            )
        if _tracked_by_git(local, env_file):
            problems.append(
                f"{env_file}: tracked by git; secrets must never be committed (git rm --cached)"
            )
    return [_Problem(message) for message in problems]


def _tree(config: Config, local: Host, *, allow_dirty: bool) -> _Problem | VersionInfo | None:
    """The source tree as the version phase reads it (the same function): a repository with a
    commit, and no uncommitted change but the env file's unless allowed. Its version, or the
    problem (``None``: not looked at, for a problem reported as such)."""
    context = config.resolve(config.build.context)
    if not context.is_dir() or shutil.which("git", path=os.environ.get("PATH")) is None:
        return None
    try:
        version = read_version(local, context, allow_dirty=allow_dirty, env_files=env_files(config))
    except BuildError as exc:
        return _Problem(f"{exc.message} — {exc.hint}" if exc.hint else exc.message)
    return version


def env_files(config: Config) -> list[Path]:
    """The env files the environment uses: secrets, never part of the build nor of a commit."""
    return [config.environment.env_file] if config.environment.env_file is not None else []


def _env_file_warnings(config: Config, local: Host) -> list[str]:
    if shutil.which("git", path=os.environ.get("PATH")) is None:
        return []
    return [
        f"{path}: not ignored by git, so `git add -A` would commit its secrets; add "
        f"{path.name} to .gitignore"
        for path in env_files(config)
        if path.is_file() and not _tracked_by_git(local, path) and not git_ignores(local, path)
    ]


def _tracked_by_git(local: Host, path: Path) -> bool:
    try:
        result = local.run(
            ["git", "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
            check=False,
            timeout=60,
        )
    except HostUnreachable:  # no git here: reported among the tools
        return False
    return result.ok


def _tool_problems(config: Config | None, local: Host, *, builds: bool = True) -> list[_Problem]:
    needed = ["docker", "git"]
    if builds and config is not None and isinstance(config.build, GoBuild):
        needed.append("go")
    remote = config is not None and any(n.startswith("ssh://") for n in config.environment.nodes)
    if remote:
        needed.append("ssh")
    path = os.environ.get("PATH")
    problems = [
        _Problem(f"tool `{tool}` not found on PATH")
        for tool in needed
        if shutil.which(tool, path=path) is None
    ]
    if "go" in needed and shutil.which("go", path=path) is not None:
        go_problem = go_toolchain_problem(local)
        if go_problem is not None:
            problems.append(_Problem(go_problem, too_old=True))
    if remote and shutil.which("ssh", path=path) is not None:
        version = openssh_version()
        if version is None or version < MIN_OPENSSH:
            found = "OpenSSH " + ".".join(map(str, version)) if version else "an unknown OpenSSH"
            problems.append(
                _Problem(
                    f"tool `ssh`: {found} found on this machine; "
                    f"{'.'.join(map(str, MIN_OPENSSH))} or newer is needed",
                    too_old=True,
                )
            )
    return problems


_RESOLVE_TIMEOUT = 5.0


def _resolve(names: list[str]) -> dict[str, set[str] | str]:
    """Each of ``names``' addresses, or why it has none; bounded by ``_RESOLVE_TIMEOUT``
    altogether (a machine without DNS answers late or never)."""

    def lookup(name: str) -> set[str]:
        return {str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}

    found: dict[str, set[str] | str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(names)))
    try:
        futures = {name: pool.submit(lookup, name) for name in names}
        wait(futures.values(), timeout=_RESOLVE_TIMEOUT)
        for name, future in futures.items():
            if not future.done():
                found[name] = f"no answer within {_RESOLVE_TIMEOUT:g}s"
            elif isinstance(error := future.exception(), OSError):
                found[name] = f"does not resolve ({error.strerror or error})"
            else:
                found[name] = future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return found


def domain_warnings(
    config: Config, *, resolve: Callable[[list[str]], dict[str, set[str] | str]]
) -> list[str]:
    """``proxy.domains`` that do not resolve to the target's address (ACME validation reaches
    the host through them): warnings, never problems — DNS may not be switched over yet, or
    not be reachable from here. A target reached by name (``ssh://``) is compared by its
    addresses; for ``local`` (and providers that create their host) only resolution is
    checked. ``resolve``: names → addresses, or why there are none."""
    domains = [d for d in config.proxy.domains if not d.startswith("*.")]
    if not domains:
        return []
    target = config.environment.target
    host = None
    if target.startswith("ssh://"):
        host = target.removeprefix("ssh://").rsplit("@", 1)[-1]
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host.strip("[]")
    found = resolve([*domains, *([host] if host else [])])
    expected = found.get(host) if host else None
    warnings = []
    for domain in domains:
        addresses = found[domain]
        if isinstance(addresses, str):
            warnings.append(f"proxy.domains: {domain} {addresses}; its certificate cannot be "
                            "obtained until it resolves to the target")  # fmt: skip
        elif isinstance(expected, set) and not addresses & expected:
            warnings.append(
                f"proxy.domains: {domain} resolves to {', '.join(sorted(addresses))}, not to "
                f"{host} ({', '.join(sorted(expected))}): its certificate cannot be obtained "
                "there until it does"
            )
    return warnings
