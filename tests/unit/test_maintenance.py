"""Maintenance mode: its routes in the proxy's config, its record in the state, the CLI's
validation, and how a deploy with ``--maintenance`` and the repair turn it on and off."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shipyard.build import Image
from shipyard.config import Config, ProxySection
from shipyard.deploy import DeployOptions, run_deploy, run_repair
from shipyard.errors import DeployFailed, ExitCode
from shipyard.events import Event, EventKind
from shipyard.proxy import (
    LOOKUP_REFRESH_S,
    MaintenanceRoutes,
    lookup_refresh,
    maintenance_files,
    maintenance_routes,
    parse_traffic,
    render_caddy,
    running_maintenance_routes,
)
from shipyard.state import Intent, Maintenance, StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.cli_harness import project
from tests.unit.pipeline_harness import STATE, operation_context, recording_bus
from tests.unit.test_pipeline import OLD_IN_BLUE, RecordingSteps

NAMES = ("shop-prod-live", "shop-prod-switching")
ON = Maintenance(
    message='Back at <b>noon</b> {http.request.uri} "quoted"',
    allow=("10.1.0.0/16", "2001:db8::/32"),
    retry_after=120,
    since="2026-12-03T10:00:00.000000Z",
    by="ops@laptop",
)
ROUTES = MaintenanceRoutes(("/health", "/version?full=1"), ON.allow)
FLAG = {"file": {"root": "/etc/caddy/maintenance", "try_files": ["/on"]}}


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = config["apps"]["http"]["servers"]["shipyard"]["routes"]
    return routes


def _answer(route: dict[str, Any]) -> dict[str, Any]:
    [handler] = route["handle"]
    assert handler["handler"] == "static_response"
    return handler  # type: ignore[no-any-return]


# -- the proxy's routes ---------------------------------------------------------------------------
def test_without_maintenance_routes_the_config_is_as_before() -> None:
    plain = render_caddy(ProxySection(), NAMES, 8080)
    assert render_caddy(ProxySection(), NAMES, 8080, None) == plain
    assert maintenance_routes(None) == []
    assert running_maintenance_routes(plain) == []


def test_the_routes_answer_503_while_the_flag_file_exists_between_metrics_and_the_app() -> None:
    config = render_caddy(ProxySection(), NAMES, 8080, ROUTES)
    routes = _routes(config)
    assert routes[0]["match"] == [{"path": ["/metrics", "/metrics/*"]}]  # still blocked first
    json_route, html_route = routes[1], routes[2]
    assert routes[3]["handle"][0]["handler"] == "reverse_proxy"
    for route in (json_route, html_route):
        # The flag is looked for on every request: on and off load no config.
        assert route["match"][0]["file"] == FLAG["file"]
        answer = _answer(route)
        assert answer["status_code"] == 503
        assert answer["headers"]["Retry-After"] == ["{file./etc/caddy/maintenance/retry-after}"]
        assert answer["headers"]["Cache-Control"] == ["no-store"]
        assert route["terminal"] is True
    assert _answer(json_route)["body"] == "{file./etc/caddy/maintenance/page.json}"
    assert _answer(html_route)["body"] == "{file./etc/caddy/maintenance/page.html}"
    assert running_maintenance_routes(config) == [json_route, html_route]


def test_the_health_paths_and_allowed_networks_pass_to_the_app() -> None:
    for route in maintenance_routes(ROUTES):
        [matcher] = route["match"]
        assert matcher["not"] == [
            {"path": ["/health", "/version"]},  # exact paths, the query left out
            {"remote_ip": {"ranges": ["10.1.0.0/16", "2001:db8::/32"]}},
        ]
    # Without allowed networks only the paths pass.
    [route, _] = maintenance_routes(MaintenanceRoutes(("/health",)))
    assert route["match"][0]["not"] == [{"path": ["/health"]}]


def test_json_for_a_client_that_asks_for_it_html_otherwise() -> None:
    [json_route, html_route] = maintenance_routes(ROUTES)
    pattern = json_route["match"][0]["header_regexp"]["Accept"]["pattern"]
    for accept in ("application/json", "application/problem+json", "text/html, Application/JSON"):
        assert re.search(pattern, accept), accept
    for accept in ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "*/*"):
        assert not re.search(pattern, accept), accept
    assert "header_regexp" not in html_route["match"][0]
    assert _answer(json_route)["headers"]["Content-Type"] == ["application/json"]
    assert _answer(html_route)["headers"]["Content-Type"] == ["text/html; charset=utf-8"]


def test_the_page_files_hold_the_message_escaped_and_the_retry_after() -> None:
    files = maintenance_files(ON)
    assert json.loads(files["page.json"]) == {"status": "maintenance", "message": ON.message}
    assert files["retry-after"] == "120"
    page = files["page.html"]
    assert "Back at &lt;b&gt;noon&lt;/b&gt; {http.request.uri} &quot;quoted&quot;" in page
    assert "<b>" not in page


def test_with_domains_the_maintenance_routes_match_the_domains_too() -> None:
    proxy = ProxySection(domains=["shop.example"], tls="internal")
    routes = _routes(render_caddy(proxy, NAMES, 8080, ROUTES))
    for route in routes[1:3]:
        assert route["match"][0]["host"] == ["shop.example"]
        assert route["match"][0]["file"] and route["match"][0]["not"]


def test_the_watch_does_not_count_the_proxys_own_answers_as_the_apps_errors() -> None:
    metrics = "\n".join(
        [
            'caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",method="GET",server="shipyard"} 10',
            'caddy_http_request_duration_seconds_count{code="502",handler="reverse_proxy",method="GET",server="shipyard"} 1',
            'caddy_http_request_duration_seconds_count{code="503",handler="static_response",method="GET",server="shipyard"} 500',
        ]
    )
    traffic = parse_traffic(metrics)
    assert (traffic.total, traffic.errors) == (11, 1)


# -- the state --------------------------------------------------------------------------------------
def test_the_state_records_it_and_forgets_it() -> None:
    store = StateStore.on_host(FakeHost(), STATE)
    assert store.maintenance() is None
    store.set_maintenance(ON)
    assert store.maintenance() == ON
    written = json.loads(store.backend.read("maintenance.json") or b"{}")
    assert written["on"] is True and written["allow"] == list(ON.allow)
    by_deploy = Maintenance("m", (), 60, "t", "deploy d7", deployment="d7")
    store.set_maintenance(by_deploy)
    assert store.maintenance() == by_deploy
    store.set_maintenance(None)
    assert store.maintenance() is None


# -- the CLI -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["300.1.2.3/8", "10.0.0.0/33", "example.com", ""])
def test_a_bad_allow_is_refused_naming_the_option_before_anything_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    p = project(tmp_path, monkeypatch)
    ran = p.run(monkeypatch, "maintenance", "on", "development", "--allow", bad)
    assert ran.code == ExitCode.USAGE, ran
    assert "--allow" in ran.stderr and "is not a CIDR" in ran.stderr
    assert p.provider.calls == []


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "86401"])
def test_a_bad_retry_after_is_refused_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    p = project(tmp_path, monkeypatch)
    ran = p.run(monkeypatch, "maintenance", "on", "development", "--retry-after", bad)
    assert ran.code == ExitCode.USAGE, ran
    assert "--retry-after" in ran.stderr
    assert p.provider.calls == []


def test_on_and_off_report_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, monkeypatch)
    ran = p.run(
        monkeypatch, "maintenance", "on", "development", "--message", "brb",
        "--allow", "10.1.2.3", "--allow", "2001:db8::/32", "--allow", "10.1.2.3/32",
        "--retry-after", "30", "--json",
    )  # fmt: skip
    assert ran.code == ExitCode.OK, ran
    [record] = json.loads(ran.stdout)
    assert record["on"] is True
    assert (record["message"], record["retry_after"]) == ("brb", 30)
    assert record["allow"] == ["10.1.2.3/32", "2001:db8::/32"]  # a bare address, each once
    assert record["deployment"] is None and "@" in record["by"]
    off = p.run(monkeypatch, "maintenance", "off", "development", "--json")
    assert off.code == ExitCode.OK, off
    assert json.loads(off.stdout) == [{"node": "local", "on": False, "summary": "maintenance off"}]
    assert p.provider.calls == ["maintenance", "maintenance"]


# -- deploy --maintenance and the repair ---------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Config:
    return committed_config(tmp_path, VALID)


class MaintenanceSteps(RecordingSteps):
    """Recording steps that keep maintenance mode in the operation's state, as the Docker steps
    do (the state first, then the proxy)."""

    def __init__(self, store: StateStore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store

    def set_maintenance(self, maintenance: Maintenance | None) -> str:
        self.store.set_maintenance(maintenance)
        return self._do("maintenance on" if maintenance else "maintenance off")


def _deploy(
    config: Config, host: FakeHost, steps: RecordingSteps, monkeypatch: pytest.MonkeyPatch
) -> list[Event]:
    bus, events = recording_bus(config)
    monkeypatch.setattr(
        "shipyard.deploy.build_image",
        lambda cfg, local, version, rebuild=False: Image(
            tag="shop:x", id="sha256:1", version=version
        ),
    )
    ctx = operation_context(config, host, bus=bus, deployment_id="d2")
    try:
        run_deploy(ctx, steps, DeployOptions(allow_dirty=True, maintenance=True))
    finally:
        assert not any(path.endswith("/lock") for path in host.files), "lock left behind"
    return events


def _store() -> tuple[FakeHost, StateStore]:
    host = FakeHost()
    store = StateStore.on_host(host, STATE)
    store.set_current(OLD_IN_BLUE)
    return host, store


def test_deploy_turns_it_on_before_migrating_and_off_once_the_switch_is_verified(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, store = _store()
    steps = MaintenanceSteps(store)
    events = _deploy(config, host, steps, monkeypatch)
    calls = steps.calls
    assert calls.index("plan") < calls.index("maintenance on") < calls.index("migrate")
    assert calls.index("verify") < calls.index("maintenance off") < calls.index("watch green")
    assert store.maintenance() is None
    kinds = [e.kind for e in events]
    assert kinds.index(EventKind.MAINTENANCE_ON) < kinds.index(EventKind.MAINTENANCE_OFF)


@pytest.mark.parametrize("fail_at", ["migrate", "gate green", "watch green"])
def test_a_failed_deploy_turns_off_what_it_turned_on(
    config: Config, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    host, store = _store()
    steps = MaintenanceSteps(store, fail_at=fail_at)
    with pytest.raises(DeployFailed):
        _deploy(config, host, steps, monkeypatch)
    assert "maintenance on" in steps.calls
    assert store.maintenance() is None


def test_a_deploy_leaves_an_operators_maintenance_on(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    for fail_at in (None, "migrate"):
        host, store = _store()
        store.set_maintenance(ON)
        steps = MaintenanceSteps(store, fail_at=fail_at)
        if fail_at is None:
            _deploy(config, host, steps, monkeypatch)
        else:
            with pytest.raises(DeployFailed):
                _deploy(config, host, steps, monkeypatch)
        assert not any(c.startswith("maintenance") for c in steps.calls), steps.calls
        assert store.maintenance() == ON


def test_the_repair_turns_off_what_a_killed_deploy_turned_on_and_nothing_else(
    config: Config,
) -> None:
    host, store = _store()
    store.write_intent(
        Intent(
            deployment_id="d1",
            action="deploy",
            release=None,
            previous=OLD_IN_BLUE,
            step="migrate",
            by="me",
            started_at="t",
            updated_at="t",
        )
    )
    store.set_maintenance(Maintenance("m", (), 60, "t", "deploy d1", deployment="d1"))
    steps = MaintenanceSteps(store)
    summary = run_repair(operation_context(config, host, deployment_id="d3"), steps)
    assert "maintenance off" in steps.calls
    assert "turned maintenance mode off: deploy d1" in summary
    assert store.maintenance() is None

    store.set_maintenance(ON)  # an operator's
    steps = MaintenanceSteps(store)
    run_repair(operation_context(config, host, deployment_id="d4"), steps)
    assert steps.calls == []
    assert store.maintenance() == ON


# -- the Docker step --------------------------------------------------------------------------------
class _Admin:
    """The proxy's admin API: its running config, and the configs loaded into it."""

    def __init__(self) -> None:
        self.running: dict[str, Any] | None = None
        self.loaded: list[dict[str, Any]] = []

    def config_if_ready(self) -> dict[str, Any] | None:
        return self.running

    def config(self) -> dict[str, Any]:
        assert self.running is not None
        return self.running

    def load(self, config: dict[str, Any]) -> None:
        self.loaded.append(config)
        self.running = config


def _docker_steps(config: Config, *, proxy: bool) -> tuple[Any, FakeHost, _Admin]:
    from shipyard.providers.docker import DockerSteps  # noqa: PLC0415
    from tests.unit.test_docker_steps import engine  # noqa: PLC0415

    host = FakeHost(engine({"shop-development-proxy": ""} if proxy else {}))
    steps = DockerSteps(operation_context(config, host), host)
    admin = _Admin()
    steps.admin = lambda _proxy=None: admin
    return steps, host, admin


def _maintenance_dir(host: FakeHost) -> dict[str, str]:
    prefix = f"{STATE}/proxy/maintenance/"
    return {
        path.removeprefix(prefix): data.decode()
        for path, (data, _) in host.files.items()
        if path.startswith(prefix)
    }


def test_on_and_off_write_and_remove_the_flag_and_load_no_config(config: Config) -> None:
    steps, host, admin = _docker_steps(config, proxy=True)
    admin.running = steps.caddy_config()  # what the last switch loaded
    on = Maintenance("brb", (), 30, "2026-12-03T10:00:00Z", "me")

    assert steps.set_maintenance(on) == "maintenance on"
    files = _maintenance_dir(host)
    assert files["on"] == on.since
    assert json.loads(files["page.json"])["message"] == "brb"
    assert files["retry-after"] == "30"
    assert list(files)[-1] == "on"  # the flag last, once the page is there
    assert StateStore.on_host(host, STATE).maintenance() == on
    assert admin.loaded == []

    assert steps.set_maintenance(None) == "maintenance off"
    assert "on" not in _maintenance_dir(host)
    assert StateStore.on_host(host, STATE).maintenance() is None
    assert admin.loaded == []


def test_a_change_of_the_allowed_networks_loads_the_config(config: Config) -> None:
    steps, host, admin = _docker_steps(config, proxy=True)
    admin.running = steps.caddy_config()
    summary = steps.set_maintenance(Maintenance("m", ("10.0.0.0/8",), 30, "t", "me"))
    assert "config loaded" in summary
    [loaded] = admin.loaded
    assert running_maintenance_routes(loaded)[0]["match"][0]["not"][1] == {
        "remote_ip": {"ranges": ["10.0.0.0/8"]}
    }
    written = json.loads(host.files[f"{STATE}/proxy/caddy.json"][0])
    assert written == loaded


def test_without_a_running_proxy_it_is_recorded_for_when_it_starts(config: Config) -> None:
    steps, host, _ = _docker_steps(config, proxy=False)
    summary = steps.set_maintenance(Maintenance("m", (), 30, "t", "me"))
    assert "the proxy is not running" in summary
    assert "on" in _maintenance_dir(host)
    assert running_maintenance_routes(json.loads(host.files[f"{STATE}/proxy/caddy.json"][0]))


def test_a_proxy_still_looking_up_the_slots_alias_keeps_it_and_is_no_drift(
    config: Config,
) -> None:
    """A proxy an earlier shipyard started also looks up ``<app>-<env>-slots``, the alias
    every slot's container answered to: a switch loads it no config for that alone, and status
    sees no drift in it (no container answers to the alias any more)."""
    from shipyard.docker import ContainerInfo  # noqa: PLC0415
    from shipyard.providers.docker._status import _drift  # noqa: PLC0415

    steps, _, admin = _docker_steps(config, proxy=True)
    older = render_caddy(
        config.proxy,
        (*steps.names.routed, f"{steps.names.prefix}-slots"),
        config.app.port,
        MaintenanceRoutes(tuple(steps.open_paths()), ()),
        admin_host=steps.names.proxy,
    )
    admin.running = older
    steps._ensure_proxy()
    assert admin.loaded == []
    proxy = ContainerInfo("p", steps.names.proxy, "i", "running", None, 0, {})
    found = {steps.names.proxy: proxy, steps.names.live: None}
    upstreams, problems = _drift(steps, found, None, None)
    assert upstreams[-1] == f"{steps.names.prefix}-slots:{config.app.port}"
    assert problems == []
    # Anything else that differs is drift, and the next switch loads the config as rendered.
    admin.running = render_caddy(
        config.proxy, steps.names.routed[:1], config.app.port, admin_host=steps.names.proxy
    )
    _, problems = _drift(steps, found, None, None)
    assert problems and "its config says" in problems[0]


def test_a_proxy_started_with_another_lookup_refresh_keeps_it(config: Config) -> None:
    """A proxy an earlier shipyard started (names looked up every 250 ms) is loaded no config
    for the refresh alone, by a switch or by maintenance mode, and the drain after a switch waits
    for its two lookups; the next config that changes anything else brings today's refresh."""
    steps, host, admin = _docker_steps(config, proxy=True)
    older = render_caddy(
        config.proxy,
        steps.names.routed,
        config.app.port,
        MaintenanceRoutes(tuple(steps.open_paths()), ()),
        admin_host=steps.names.proxy,
        lookup_refresh_s=0.25,
    )
    assert older != steps.caddy_config()
    admin.running = older

    steps._ensure_proxy()
    assert admin.loaded == [] and steps._lookup_refresh_s == 0.25
    assert steps.set_maintenance(Maintenance("m", (), 30, "t", "me")) == "maintenance on"
    assert admin.loaded == []
    assert json.loads(host.files[f"{STATE}/proxy/caddy.json"][0]) == older

    steps.set_maintenance(Maintenance("m", ("10.0.0.0/8",), 30, "t", "me"))
    [loaded] = admin.loaded
    assert lookup_refresh(loaded) == LOOKUP_REFRESH_S
    steps._ensure_proxy()
    assert steps._lookup_refresh_s == LOOKUP_REFRESH_S
