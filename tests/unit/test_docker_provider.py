"""The docker provider's `destroy`, `plan --rollback` and blue-green switch against a recording fake
engine."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath

import bcrypt
import pytest

from shipyard.config import Config, load_config
from shipyard.database import MigrationState, Snapshot
from shipyard.deploy import OperationContext, RollbackOptions
from shipyard.docker import ContainerInfo
from shipyard.errors import CommandFailed
from shipyard.events import Bus
from shipyard.hosts import CommandResult
from shipyard.providers import DockerProvider, SnapshotFiles
from shipyard.providers.docker._status import schema_problem
from shipyard.proxy import Latency, Observed, Traffic
from shipyard.state import Current, HistoryEntry, Release, StateStore
from tests.bad_configs import VALID, committed_config, committed_repository
from tests.fakes import FakeHost

STATE = PurePosixPath("/state/shop")


@dataclass
class _Container:
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    status: str = "exited"
    id: str = ""  # the name it was created with, unless given


class EngineHost(FakeHost):
    """A host whose Docker engine is a few dictionaries: containers by name (with the image
    they were created from) and images by reference."""

    def __init__(self) -> None:
        super().__init__(respond=self._engine)
        self.containers: dict[str, _Container] = {}
        self.images: dict[str, str] = {}  # reference → image ID

    def _engine(self, argv: list[str]) -> CommandResult | None:
        handlers = {
            ("docker", "container", "inspect"): self._inspect_container,
            ("docker", "image", "inspect"): self._inspect_image,
            ("docker", "image", "rm"): self._remove_image,
            ("docker", "ps", "--all"): self._ps,
            ("docker", "rm", "--force"): self._remove_container,
            ("docker", "rename", ""): self._rename,
            ("ls", "-1", "-A"): self._ls,
        }
        if argv[:2] == ["docker", "compose"] and "down" in argv:
            return self._compose_down(argv)
        if argv[0] == "find" and argv[argv.index("-name") + 1] == "*.json":
            prefix = argv[1].rstrip("/") + "/"
            found = [f for f in self.files if f.startswith(prefix) and f.endswith(".json")]
            return _answer(argv, "\n".join(found))
        handler = handlers.get(tuple(argv[:3])) or handlers.get((*argv[:2], ""))
        return handler(argv) if handler is not None else None

    def _inspect_container(self, argv: list[str]) -> CommandResult:
        names = argv[3:]
        documents = [
            {
                "Id": found.id or name,
                "Name": f"/{name}",
                "Image": self.images.get(found.image, found.image),
                "State": {"Status": found.status},
                "Config": {"Labels": found.labels},
            }
            for name in names
            if (found := self.containers.get(name)) is not None
        ]
        missing = [name for name in names if name not in self.containers]
        stderr = "".join(f"Error: No such container: {name}\n" for name in missing)
        return _answer(argv, json.dumps(documents), code=1 if missing else 0, stderr=stderr)

    def _rename(self, argv: list[str]) -> CommandResult:
        old, new = argv[2:4]
        if old not in self.containers or new in self.containers:
            return _answer(argv, code=1, stderr=f"Error: cannot rename {old} to {new}")
        found = self.containers.pop(old)
        found.id = found.id or old
        self.containers[new] = found
        return _answer(argv)

    def _inspect_image(self, argv: list[str]) -> CommandResult:
        image = self.images.get(argv[-1])
        if image is None:
            return _answer(argv, code=1, stderr=f"Error: No such image: {argv[-1]}")
        return _answer(argv, json.dumps([{"Id": image, "Config": {"Labels": {}}}]))

    def _remove_image(self, argv: list[str]) -> CommandResult:
        ref = argv[-1]
        if ref not in self.images:
            return _answer(argv, code=1, stderr=f"Error: No such image: {ref}")
        if any(self.images.get(c.image) == self.images[ref] for c in self.containers.values()):
            return _answer(argv, code=1, stderr=f"Error: conflict: unable to remove {ref}")
        del self.images[ref]
        return _answer(argv)

    def _ps(self, argv: list[str]) -> CommandResult:
        ancestor = next(
            (a.removeprefix("ancestor=") for a in argv if a.startswith("ancestor=")), ""
        )
        names = [
            name
            for name, c in self.containers.items()
            if not ancestor or self.images.get(c.image) == self.images.get(ancestor)
        ]
        return _answer(argv, "\n".join(names))

    def _remove_container(self, argv: list[str]) -> CommandResult:
        self.containers.pop(argv[-1], None)
        return _answer(argv)

    def _compose_down(self, argv: list[str]) -> CommandResult:
        project = argv[argv.index("--project-name") + 1]
        for name, found in list(self.containers.items()):
            if found.labels.get("com.docker.compose.project") == project:
                del self.containers[name]
        return _answer(argv)

    def _ls(self, argv: list[str]) -> CommandResult:
        prefix = argv[-1].rstrip("/") + "/"
        names = {f[len(prefix) :].split("/")[0] for f in self.files if f.startswith(prefix)}
        return _answer(argv, "\n".join(sorted(names)), code=0 if names else 2)


def _answer(argv: list[str], stdout: str = "", *, code: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(tuple(argv), code, stdout, stderr)


def _release(rid: str, version: str) -> Release:
    return Release(
        id=rid,
        version=version,
        commit=rid * 40,
        image=f"shop:{version}",
        image_id=f"sha256:{rid}",
        slot="blue",
        migration_version=None,
        created_at=f"2026-01-01T00:00:0{len(version)}Z",
        deployed_by="me",
    )


def _context(config: Config, host: FakeHost, environment: str = "development") -> OperationContext:
    return OperationContext(
        config=config,
        local=host,  # type: ignore[arg-type]
        store=StateStore.on_host(host, STATE / environment),  # type: ignore[arg-type]
        bus=Bus(config.masker),
        deployment_id="op",
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return committed_config(tmp_path, VALID)


def test_destroy_removes_the_environments_images_unless_something_else_uses_them(
    config: Config,
) -> None:
    host = EngineHost()
    releases = [_release(r, f"1.0.{n}") for n, r in enumerate("abcd")]
    for release in releases:
        host.images[release.image] = release.image_id
    host.images["caddy:2"] = "sha256:caddy"
    project = "com.docker.compose.project"
    infra = {project: "shop-development-infra"}
    host.containers = {
        "shop-development-live": _Container(
            "shop:1.0.3", {project: "shop-development-green", "org.shipyard.slot": "green"}
        ),
        "shop-development-blue": _Container("shop:1.0.2", {project: "shop-development-blue"}),
        "shop-development-db": _Container("postgres:17", infra),
        "shop-development-proxy": _Container("caddy:2", infra),
        "shop-development-guard": _Container("docker:27-cli", infra),
        "elsewhere": _Container("shop:1.0.1"),  # some other container runs 1.0.1
    }
    store = StateStore.on_host(host, STATE / "development")  # type: ignore[arg-type]
    store.save_releases(releases)
    StateStore.on_host(host, STATE / "production").save_releases([releases[2]])  # type: ignore[arg-type]
    destroyed = DockerProvider(host).cleanup(_context(config, host), volumes=True)  # type: ignore[arg-type]

    assert sorted(host.images) == ["caddy:2", "shop:1.0.1", "shop:1.0.2"]
    assert "image shop:1.0.0" in destroyed.removed and "image shop:1.0.3" in destroyed.removed
    assert destroyed.kept == [
        "image shop:1.0.1: used by container elsewhere",
        "image shop:1.0.2: a release of environment production",
    ]
    rm = [argv for argv in host.commands if argv[:3] == ["docker", "image", "rm"]]
    assert all("--force" not in argv for argv in rm)
    guard = host.commands.index(["docker", "rm", "--force", "--volumes", "shop-development-guard"])
    assert guard < host.commands.index(rm[0])  # the guard goes first, the images last
    assert store.releases() == []


def _history(*operations: tuple[str, Release]) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            deployment_id=f"op{n}",
            action=action,
            result="succeeded",
            version=release.version,
            commit=release.commit,
            slot="blue",
            started_at=f"2026-01-01T00:00:{n:02d}Z",
            duration_s=1.0,
            by="me",
            release_id=release.id,
        )
        for n, (action, release) in enumerate(operations)
    ]


def test_plan_of_a_rollback_names_the_release_it_brings_back_and_why(config: Config) -> None:
    host = EngineHost()
    a, b, c = (_release(r, f"1.0.{n}") for n, r in enumerate("abc"))
    host.images = {r.image: r.image_id for r in (a, c)}  # B's image is gone: no matter
    store = StateStore.on_host(host, STATE / "development")  # type: ignore[arg-type]
    store.save_releases([a, b, c])
    store.set_current(Current(slot="green", release_id="c", switched_at="t"))
    for entry in _history(("deploy", a), ("deploy", b), ("rollback", a), ("deploy", c)):
        store.append_history(entry)
    provider = DockerProvider(host)  # type: ignore[arg-type]

    steps = [asdict(s) for s in provider.plan_rollback(_context(config, host), RollbackOptions())]
    choose = [s["action"] for s in steps if s["phase"] == "choose"]
    assert (
        choose[0]
        == "bring back 1.0.0 (aaaaaaa, release a): it served before 1.0.2, the live release, came in"
    )
    assert (
        choose[1]
        == "1.0.1 (b), deployed just before 1.0.2, is passed over: rollback op2 replaced it"
    )
    assert choose[2].startswith("the rule: a rollback returns to the release that served before")
    assert [s["phase"] for s in steps][len(choose) :] == [
        "start",
        "health",
        "switch",
        "watch",
        "retire",
    ]
    assert steps[len(choose)]["action"].startswith(
        "start slot blue (shop-development-blue) from shop:1.0.0"
    )

    named = provider.plan_rollback(_context(config, host), RollbackOptions(to="1.0.1"))
    assert named[0].action == "bring back 1.0.1 (bbbbbbb, release b): named by --to 1.0.1"
    assert "shop:1.0.1 is not on fake: the start would fail" in named[1].action

    # With monitoring on, the plan ends with the stack brought up.
    monitored = replace(config, monitoring=config.monitoring.model_copy(update={"enabled": True}))
    last = provider.plan_rollback(_context(monitored, host), RollbackOptions())[-1]
    assert (last.phase, last.action.split(" (")[0]) == (
        "record",
        "then bring the monitoring stack shop-development-monitoring up",
    )


def _snapshot(
    host: FakeHost,
    directory: PurePosixPath,
    name: str,
    size: int,
    environment: str = "development",
) -> None:
    host.put(directory / f"{name}.dump", b"x" * size)
    document = Snapshot(
        name=name,
        database="shop",
        app="shop",
        environment=environment,
        version="1.0.0",
        commit="a" * 40,
        deployment_id="op",
        reason="pre-migrate",
        created_at=f"2026-01-0{size % 9 + 1}T00:00:00Z",
        size=size,
        sha256="0" * 64,
        duration_s=1.0,
    ).to_dict()
    host.put(directory / f"{name}.json", json.dumps(document).encode())


def test_destroy_keeps_the_environments_snapshots_where_a_later_deploy_finds_them(
    config: Config,
) -> None:
    """Snapshots are backups: `destroy` (with --volumes too) removes the rest of the state and
    keeps them in place; only --snapshots deletes them."""
    host = EngineHost()
    root = STATE / "development"
    StateStore.on_host(host, root).save_releases([_release("a", "1.0.0")])  # type: ignore[arg-type]
    snapshots = root / "snapshots"
    _snapshot(host, snapshots, "shop_20260101T000000Z_aaaaaaa", 100)
    _snapshot(host, snapshots, "shop_20260102T000000Z_bbbbbbb", 50)
    kept = {f for f in host.files if f.startswith(f"{snapshots}/")}
    provider = DockerProvider(host)  # type: ignore[arg-type]
    assert provider.snapshot_files(_context(config, host)) == SnapshotFiles(
        f"fake:{snapshots}", 2, 150
    )

    destroyed = provider.cleanup(_context(config, host), volumes=True)

    assert destroyed.snapshots == SnapshotFiles(f"fake:{snapshots}", 2, 150)
    assert not destroyed.snapshots_removed
    assert {f for f in host.files if f.startswith(f"{root}/")} == kept  # the rest is gone
    store = provider.steps(_context(config, host))._snapshots()
    assert store is not None
    assert [s.name for s in store.snapshots()] == [
        "shop_20260102T000000Z_bbbbbbb",
        "shop_20260101T000000Z_aaaaaaa",
    ]

    destroyed = provider.cleanup(_context(config, host), volumes=False, snapshots=True)
    assert destroyed.snapshots_removed
    assert destroyed.snapshots == SnapshotFiles(f"fake:{snapshots}", 2, 150)
    assert not [f for f in host.files if f.startswith(f"{root}/")]


def test_retention_in_a_shared_snapshot_directory_prunes_only_the_environments_own(
    tmp_path: Path,
) -> None:
    """``database.snapshots.dir`` shared by two environments: one's retention (after its deploy,
    or `snapshot prune`) never deletes, nor counts, the other's snapshots."""
    shared = VALID.replace(
        "  user: shop\n",
        "  user: shop\n  snapshots:\n    dir: /backups\n    retention_days: 0\n    keep_min: 1\n",
    )
    config = committed_config(tmp_path, shared)
    host = EngineHost()
    backups = PurePosixPath("/backups")
    _snapshot(host, backups, "shop_20260101T000000Z_aaaaaaa", 100)  # development, older
    _snapshot(host, backups, "shop_20260102T000000Z_bbbbbbb", 50)  # development, newer
    _snapshot(host, backups, "shop_20260103T000000Z_ccccccc", 70, environment="production")
    store = DockerProvider(host).steps(_context(config, host))._snapshots()  # type: ignore[arg-type]
    assert store is not None and store.directory == backups

    plan = store.plan_prune(())

    assert plan.delete == ("shop_20260101T000000Z_aaaaaaa",)
    assert plan.keep == ("shop_20260102T000000Z_bbbbbbb",)


def _slots_engine(**names: str) -> EngineHost:
    """An engine running the slots ``names`` maps to container names (``live``, ``switching`` or
    the slot's own), with a running proxy."""
    host = EngineHost()
    for slot, suffix in names.items():
        host.containers[f"shop-development-{suffix}"] = _Container(
            f"shop:{slot}", {"org.shipyard.slot": slot}, status="running", id=slot
        )
    return host


class _Metrics:
    """The proxy's metrics as its admin API gives them: 5 requests, all under 100 ms."""

    def observe(self) -> Observed:
        return Observed(Traffic(5, 0), Latency(((0.1, 5.0), (math.inf, 5.0))), 1.0)


def _switched(config: Config, host: EngineHost, slot: str) -> list[list[str]]:
    """Switch to ``slot``; the renames it made."""
    steps = DockerProvider(host).steps(_context(config, host))  # type: ignore[arg-type]
    steps._ensure_proxy = _Metrics  # type: ignore[method-assign,assignment]
    before = len(host.commands)
    steps.switch(slot)
    return [argv[2:] for argv in host.commands[before:] if argv[:2] == ["docker", "rename"]]


def _named(host: EngineHost) -> dict[str, str]:
    return {name: c.labels["org.shipyard.slot"] for name, c in sorted(host.containers.items())}


def test_a_switch_hands_the_live_name_over_through_the_switching_name(config: Config) -> None:
    """The proxy tries the live name, then the switching name: the old container holds one of
    them until the new one carries the live name, so no request reaches the new version before
    the old one stops getting them."""
    host = _slots_engine(blue="live", green="green")
    renames = _switched(config, host, "green")
    assert renames == [
        ["shop-development-live", "shop-development-switching"],
        ["shop-development-green", "shop-development-live"],
        ["shop-development-switching", "shop-development-blue"],
    ]
    # What the proxy had counted is noted as the switch's mark (the watch compares latencies).
    [mark] = _context(config, host).store.switch_marks()
    assert mark["proxy_started"] == 1.0
    assert Latency.from_dict(mark["latency"]).count == 5
    assert _named(host) == {"shop-development-blue": "blue", "shop-development-live": "green"}
    assert _switched(config, host, "green") == []  # already live: nothing to do


@pytest.mark.parametrize(
    ("to", "renames", "live"),
    [
        # Undone: the old container takes the live name back.
        ("blue", [["shop-development-switching", "shop-development-live"]], "blue"),
        # Finished: the candidate takes it, the old container its slot name.
        (
            "green",
            [
                ["shop-development-green", "shop-development-live"],
                ["shop-development-switching", "shop-development-blue"],
            ],
            "green",
        ),
    ],
)
def test_a_switch_cut_short_after_its_first_rename_is_undone_or_finished(
    config: Config, to: str, renames: list[list[str]], live: str
) -> None:
    host = _slots_engine(blue="switching", green="green")
    assert _switched(config, host, to) == renames
    assert _named(host)["shop-development-live"] == live
    assert "shop-development-switching" not in host.containers
    assert sorted(_named(host).values()) == ["blue", "green"]


def test_a_switch_cut_short_after_its_second_rename_is_undone(config: Config) -> None:
    host = _slots_engine(blue="switching", green="live")
    assert _switched(config, host, "blue") == [
        ["shop-development-switching", "shop-development-blue"],
        ["shop-development-live", "shop-development-switching"],
        ["shop-development-blue", "shop-development-live"],
        ["shop-development-switching", "shop-development-green"],
    ]
    assert _named(host) == {"shop-development-green": "green", "shop-development-live": "blue"}


def test_tidying_after_a_switch_cut_short_after_its_second_rename_gives_the_old_slot_its_name(
    config: Config,
) -> None:
    host = _slots_engine(blue="switching", green="live")
    steps = DockerProvider(host).steps(_context(config, host))  # type: ignore[arg-type]
    steps.retire = lambda slot: f"{slot} retired"  # type: ignore[method-assign,assignment,return-value]
    done = steps.tidy("green")
    assert _named(host) == {"shop-development-blue": "blue", "shop-development-live": "green"}
    assert done == ["blue retired: it ran beside the live version"]


def test_render_writes_nothing_for_published_uis_and_shows_the_kept_hash(tmp_path: Path) -> None:
    yaml = VALID.replace(
        "proxy:\n  http_port: 18080\n",
        "proxy:\n  http_port: 18080\n  domains: [shop.example.com]\n  tls: internal\n",
    )
    yaml += "monitoring:\n  enabled: true\n  grafana: {enabled: false}\n"
    yaml += "  publish: {prometheus: prom.example.com}\n"
    path = committed_repository(tmp_path, yaml)
    with (path.parent / ".env.development").open("a") as env:
        env.write("MONITORING_PASSWORD=watch-it-all\n")
    config = load_config(path, "development", process_env={})
    host = EngineHost()
    provider = DockerProvider(host)  # type: ignore[arg-type]

    def accounts() -> list[dict[str, str]]:
        files = provider.render(_context(config, host))
        caddy = json.loads(next(text for name, text in files.items() if name.endswith(".json")))
        first = caddy["apps"]["http"]["servers"]["shipyard"]["routes"][0]
        return first["handle"][0]["providers"]["http_basic"]["accounts"]  # type: ignore[no-any-return]

    written = dict(host.files)
    [account] = accounts()
    assert bcrypt.checkpw(b"watch-it-all", account["password"].encode())
    assert host.files == written  # render wrote nothing, the hash neither

    # A changing operation keeps the hash; render then shows that one.
    provider.steps(_context(config, host)).caddy_config()
    [kept] = [v for k, (v, _) in host.files.items() if k.endswith("monitoring.hash")]
    assert accounts() == [{"username": "monitoring", "password": kept.decode()}]


def _db_container(status: str) -> ContainerInfo:
    return ContainerInfo("id", "shop-development-db", "sha256:pg", status, None, 0, {})


@pytest.mark.parametrize(
    ("status", "read", "problem"),
    [
        ("running", MigrationState(3, False), None),
        ("running", MigrationState(3, True), "the schema is dirty at version 3"),
        ("running", CommandFailed("local", ["docker", "exec"], 1, "boom"), "cannot be read"),
        # Read before the stack was inspected: a stopped database's failed read says nothing.
        ("exited", CommandFailed("local", ["docker", "exec"], 1, "boom"), None),
        ("exited", MigrationState(3, True), None),
    ],
)
def test_status_counts_the_schema_read_only_where_the_database_runs(
    config: Config, status: str, read: MigrationState | CommandFailed, problem: str | None
) -> None:
    host = EngineHost()
    steps = DockerProvider(host).steps(_context(config, host))  # type: ignore[arg-type]
    found = {steps.names.database: _db_container(status)}
    said = schema_problem(steps, found, read)
    assert (said is None) if problem is None else (said is not None and problem in said), said
    assert schema_problem(steps, {steps.names.database: None}, read) is None  # absent
