"""Writing what ``shipyard init`` generates: shipyard.yml (never over an existing one without
``force``), the names ``.env.example`` lacks and the ``.gitignore`` entries for env files,
appended and never repeated."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.errors import ConfigExists
from shipyard.scaffold._inspect import Repository, inspect_repository
from shipyard.scaffold._render import (
    ENVIRONMENT,
    ENVIRONMENTS,
    next_commands,
    render_config,
    render_env_example,
)

CONFIG = "shipyard.yml"
ENV_EXAMPLE = ".env.example"
GITIGNORE = ".gitignore"


@dataclass(frozen=True)
class Initialised:
    """What ``init_repository`` found and wrote. ``appended``: file → the lines added."""

    repository: Repository
    config: Path
    replaced: bool
    appended: dict[str, list[str]] = field(default_factory=dict)
    next: list[str] = field(default_factory=list)


def init_repository(root: Path, *, force: bool = False) -> Initialised:
    """Inspect ``root`` and write its shipyard.yml, .env.example and .gitignore entries.
    Raises ``ConfigExists`` (nothing written) when shipyard.yml exists and ``force`` is off."""
    config = root / CONFIG
    exists = config.exists()
    if exists and not force:
        raise ConfigExists(
            f"{config} exists; nothing was changed",
            hint="`shipyard init --force` replaces it (.env.example and .gitignore only gain what they lack)",
        )
    repository = inspect_repository(root)
    text = render_config(repository)
    config.write_text(text, encoding="utf-8")
    appended: dict[str, list[str]] = {}
    example = root / ENV_EXAMPLE
    present = env_names(example.read_text(encoding="utf-8")) if example.is_file() else set()
    added = render_env_example(repository, present)
    if added:
        _append(example, added)
        appended[ENV_EXAMPLE] = added
    gitignore = root / GITIGNORE
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.is_file() else []
    missing = [f".env.{name}" for name in ENVIRONMENTS if not ignored(lines, f".env.{name}")]
    if missing:
        _append(gitignore, ["# Env files hold secrets (shipyard init)", *missing])
        appended[GITIGNORE] = missing
    return Initialised(
        repository=repository,
        config=config,
        replaced=exists,
        appended=appended,
        next=next_commands(repository, ENVIRONMENT),
    )


def env_names(text: str) -> set[str]:
    """The keys an env file sets or names in a ``# KEY=`` comment."""
    names = set()
    for raw in text.splitlines():
        line = raw.strip().lstrip("#").strip().removeprefix("export ").strip()
        key, sep, _ = line.partition("=")
        if sep and key.replace("_", "").isalnum() and key[:1].isalpha():
            names.add(key)
    return names


def ignored(lines: list[str], name: str) -> bool:
    """Whether a file ``name`` at the repository's root is ignored by these ``.gitignore``
    lines (patterns without a slash, or anchored with a leading one; the last match wins)."""
    result = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").removeprefix("/")
        if pattern.endswith("/") or "/" in pattern:
            continue  # a directory, or a path below the root
        if fnmatch.fnmatchcase(name, pattern):
            result = not negated
    return result


def _append(path: Path, lines: list[str]) -> None:
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    separator = "" if not existing or existing.endswith("\n") else "\n"
    blank = "\n" if existing.strip() else ""
    path.write_text(existing + separator + blank + "\n".join(lines) + "\n", encoding="utf-8")
