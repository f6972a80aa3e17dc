"""What a repository shows about the app it holds: each finding read from a real file, and
nothing assumed where the file is absent (the rendering says what was not found)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.scaffold._go import module_path, package_name, string_vars, strip_comments

# Directories never read: dependencies, generated trees, test data.
_SKIPPED_DIRS = frozenset({".git", "vendor", "node_modules", "testdata", "tests", "test"})

# Package-level string variables by the value the build stamps into them (lowercase names).
_ROLES: dict[str, frozenset[str]] = {
    "{version}": frozenset({"version", "appversion", "buildversion"}),
    "{commit}": frozenset(
        {"gitcommit", "commit", "gitsha", "commitsha", "commithash", "githash", "revision"}
    ),
    "{build_date}": frozenset({"builddate", "buildtime", "date", "buildtimestamp"}),
}

_MIGRATION = re.compile(r"^\d+_\w[\w.-]*\.up\.sql$")
_EXTENSION = re.compile(
    r'\bCREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?("[^"]+"|[A-Za-z_][\w-]*)', re.IGNORECASE
)
_EXTENSION_NAME = re.compile(r"[a-z_][a-z0-9_]*")  # what database.extensions accepts

HEALTH_PATHS = ("/health", "/healthz", "/readyz", "/livez")
VERSION_PATH = "/version"
# A route registered by a call: mux.HandleFunc("GET /health", …), r.Get("/healthz", …).
_ROUTE = re.compile(
    r'\.\s*\w+\(\s*"(?:(?:GET|HEAD)\s+)?(/(?:health|healthz|readyz|livez|version))/?"'
)
# An env var read: os.Getenv("X"), os.LookupEnv("X"), getEnv("X", …), getenv("X"), get("X").
_ENV_READ = re.compile(r'\b(?:\w*[Gg]et[Ee]nv\w*|LookupEnv|get)\(\s*"([A-Z][A-Z0-9_]+)"')
_PORT_ENV_NAMES = ("PORT", "SERVER_PORT", "HTTP_PORT", "APP_PORT", "LISTEN_PORT")
_PORT_DEFAULT_READ = re.compile(r'\b\w*[Gg]et[Ee]nv\w*\(\s*"(\w*PORT)"\s*,\s*"?:?(\d{2,5})"?\s*\)')
_PORT_CONSTANT = re.compile(r"\b[Dd]efault\w*Port\w*\s*(?:int\s*)?=\s*\"?:?(\d{2,5})\"?")
_PORT_LISTEN = re.compile(
    r'(?:ListenAndServe\w*\(|Listen\(\s*"tcp"\s*,|Addr:)\s*"(?:0\.0\.0\.0)?:(\d{2,5})"'
)
_LOOPBACK_HOST = re.compile(
    r'\b\w*[Gg]et[Ee]nv\w*\(\s*"(\w*HOST)"\s*,\s*"(?:localhost|127\.0\.0\.1)"\s*\)'
)
# "JWT_SECRET is required (…)": required without a condition (not "… is required when …").
_REQUIRED = re.compile(r'"([A-Z][A-Z0-9_]+) (?:is|are) required(?:["(;:,.]| \()')
_URL_NAMES = ("DATABASE_URL", "POSTGRES_URL", "POSTGRESQL_URL", "PG_URL", "DB_URL", "DATABASE_DSN")
_SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY")


@dataclass(frozen=True)
class Repository:
    """What ``inspect_repository`` found. A None or empty field: not found."""

    root: Path
    name: str
    module: str | None = None
    package: str | None = None
    other_packages: tuple[str, ...] = ()
    ldflags: dict[str, str] = field(default_factory=dict)
    dockerfile: str | None = None
    migrations: str | None = None
    other_migrations: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    unlisted_extensions: tuple[str, ...] = ()
    health_paths: tuple[str, ...] = ()
    version_path: str | None = None
    port: int | None = None
    port_env: str | None = None
    host_env: str | None = None
    env: tuple[str, ...] = ()
    required_env: tuple[str, ...] = ()
    database_url_env: str | None = None

    @property
    def binary(self) -> str:
        if self.package in (None, "."):
            return self.name
        return Path(self.package or "").name

    @property
    def secret_env(self) -> tuple[str, ...]:
        """The env vars read whose names say they hold a secret."""
        return tuple(n for n in self.env if n.endswith(_SECRET_WORDS))


def inspect_repository(root: Path) -> Repository:
    """Read ``root``: go.mod, the main package and its version variables, a Dockerfile, the
    migrations and the extensions they create, the routes, the port and the env vars read."""
    root = root.resolve()
    module = _read_module(root)
    name = app_name(module.rsplit("/", 1)[-1] if module else root.name)
    mains = _main_packages(root) if module else []
    package = _pick_main(mains, name)
    others = tuple(m for m in mains if m != package)
    sources = list(_go_sources(root, exclude=[root / m for m in others]))
    code = {path: strip_comments(_read(path)) for path in sources}
    env = _ordered(m[1] for text in code.values() for m in _ENV_READ.finditer(text))
    migrations, other_migrations = _migrations(root)
    extensions = _extensions(root / migrations) if migrations else []
    port, port_env = _port(list(code.values()), env)
    routes = {m[1] for text in code.values() for m in _ROUTE.finditer(text)}
    raw = "\n".join(code.values())
    return Repository(
        root=root,
        name=name,
        module=module,
        package=package,
        other_packages=others,
        ldflags=_ldflags(root, module, package, others) if module and package else {},
        dockerfile="Dockerfile" if (root / "Dockerfile").is_file() else None,
        migrations=migrations,
        other_migrations=other_migrations,
        extensions=tuple(e for e in extensions if _EXTENSION_NAME.fullmatch(e)),
        unlisted_extensions=tuple(e for e in extensions if not _EXTENSION_NAME.fullmatch(e)),
        health_paths=tuple(p for p in HEALTH_PATHS if p in routes),
        version_path=VERSION_PATH if VERSION_PATH in routes else None,
        port=port,
        port_env=port_env,
        host_env=next((m[1] for m in _LOOPBACK_HOST.finditer(raw) if m[1] in env), None),
        env=tuple(env),
        required_env=tuple(_ordered(m[1] for m in _REQUIRED.finditer(raw) if m[1] in env)),
        database_url_env=_database_url_env(env),
    )


def app_name(text: str) -> str:
    """``text`` as an app name: lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name or "app"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _read_module(root: Path) -> str | None:
    go_mod = root / "go.mod"
    return module_path(_read(go_mod)) if go_mod.is_file() else None


def _walk(root: Path, exclude: list[Path] | None = None) -> Iterator[tuple[Path, list[str]]]:
    """Each directory under ``root`` (sorted) with its file names, skipping hidden ones,
    dependencies, test data and the ``exclude`` trees."""
    excluded = set(exclude or ())
    for top, dirs, files in os.walk(root):
        here = Path(top)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in _SKIPPED_DIRS and here / d not in excluded
        )
        yield here, sorted(files)


def _go_sources(root: Path, exclude: list[Path]) -> Iterator[Path]:
    for here, files in _walk(root, exclude):
        for name in files:
            if name.endswith(".go") and not name.endswith("_test.go"):
                yield here / name


def _is_main(directory: Path) -> bool:
    return any(
        package_name(_read(f)) == "main"
        for f in sorted(directory.glob("*.go"))
        if not f.name.endswith("_test.go")
    )


def _main_packages(root: Path) -> list[str]:
    """``./cmd/<name>`` for each main package under cmd/, and ``.`` for one at the root."""
    found = [
        f"./cmd/{d.name}" for d in sorted((root / "cmd").glob("*")) if d.is_dir() and _is_main(d)
    ]
    if _is_main(root):
        found.append(".")
    return found


def _pick_main(mains: list[str], name: str) -> str | None:
    for preferred in (f"./cmd/{name}", "./cmd/server", "."):
        if preferred in mains:
            return preferred
    return mains[0] if mains else None


def _ldflags(root: Path, module: str, package: str, others: tuple[str, ...]) -> dict[str, str]:
    """``-X`` variable path → placeholder for the version, commit and build-date variables of
    the main package's tree (the first of each role, in path order)."""
    tree = root / package
    found: dict[str, str] = {}
    taken: set[str] = set()
    for path in _go_sources(tree, exclude=[root / o for o in others if o != "."]):
        source = _read(path)
        package_of = package_name(source)
        if package_of is None:
            continue
        relative = path.parent.relative_to(root).as_posix()
        import_path = "main" if package_of == "main" else f"{module}/{relative}".rstrip("/.")
        for var in string_vars(source):
            for placeholder, names in _ROLES.items():
                if var.name.lower() in names and placeholder not in taken:
                    taken.add(placeholder)
                    found[f"{import_path}.{var.name}"] = placeholder
    order = list(_ROLES)
    return dict(sorted(found.items(), key=lambda item: order.index(item[1])))


def _migrations(root: Path) -> tuple[str | None, tuple[str, ...]]:
    """The directory with the most ``NNN_name.up.sql`` files, and any others found."""
    counts: list[tuple[int, str]] = []
    for here, files in _walk(root):
        count = sum(1 for f in files if _MIGRATION.match(f))
        if count:
            counts.append((-count, here.relative_to(root).as_posix()))
    counts.sort()
    if not counts:
        return None, ()
    return counts[0][1], tuple(path for _, path in counts[1:])


def _extensions(directory: Path) -> list[str]:
    """The extensions the up migrations create, in the order first created."""
    names: list[str] = []
    for path in sorted(directory.glob("*.up.sql")):
        if not _MIGRATION.match(path.name):
            continue
        sql = re.sub(r"--[^\n]*|/\*.*?\*/", " ", _read(path), flags=re.DOTALL)
        names += [m[1].strip('"').lower() for m in _EXTENSION.finditer(sql)]
    return _ordered(names)


def _port(texts: list[str], env: list[str]) -> tuple[int | None, str | None]:
    for text in texts:
        for m in _PORT_DEFAULT_READ.finditer(text):
            if m[1] in _PORT_ENV_NAMES:
                return int(m[2]), m[1]
    port_env = next((n for n in _PORT_ENV_NAMES if n in env), None)
    for pattern in (_PORT_CONSTANT, _PORT_LISTEN):
        for text in texts:
            found = pattern.search(text)
            if found is not None:
                return int(found[1]), port_env
    return None, port_env


def _database_url_env(env: list[str]) -> str | None:
    for name in _URL_NAMES:
        if name in env:
            return name
    return next((n for n in env if n.endswith("DATABASE_URL")), None)


def _ordered(items: Iterable[str]) -> list[str]:
    """Unique items in first-seen order."""
    return list(dict.fromkeys(items))
