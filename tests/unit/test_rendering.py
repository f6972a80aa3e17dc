"""Golden files for what shipyard writes on a host: compose projects and Caddy's config.

Regenerate with SHIPYARD_UPDATE_GOLDEN=1 after an intended change, and review the diff.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard.config import Config, DatabaseSection, ProxySection, load_config
from shipyard.database import Endpoint, migration_url
from shipyard.docker import parse_container
from shipyard.providers.docker._env import (
    COMPOSE_ENV_HEADER,
    app_env,
    as_compose_env,
    compose_env_file_text,
    compose_env_values,
    external_database,
    libpq_env,
    release_command_env,
)
from shipyard.providers.docker._names import Layout, Names
from shipyard.providers.docker._stack import (
    render_infra,
    render_slot,
    slot_container_body,
    to_yaml,
)
from shipyard.proxy import (
    LOOKUP_REFRESH_S,
    Traffic,
    keeping_running_lookups,
    lookup_refresh,
    parse_traffic,
    render_caddy,
    upstreams_of,
)
from tests.bad_configs import ENV_FILE, VALID

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SHIPYARD_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "shipyard.yml").write_text(VALID)
    (tmp_path / ".env.development").write_text(ENV_FILE)
    return load_config(tmp_path / "shipyard.yml", "development", process_env={})


def test_infra_compose(config) -> None:  # type: ignore[no-untyped-def]
    names = Names("shop", "development")
    layout = Layout(PurePosixPath("/state/shop/development"))
    _golden("infra-compose.yml", to_yaml(render_infra(config, names, layout)))


def _green_slot(config: Config) -> tuple[Layout, dict[str, Any]]:
    """The layout, and the compose project of slot green for release r1 of ``shop:1.2.3``."""
    layout = Layout(PurePosixPath("/state/shop/development"))
    document = render_slot(
        config,
        Names("shop", "development"),
        layout,
        "green",
        image="shop:1.2.3-abcdef0",
        release="r1",
        version="1.2.3",
        commit="abcdef0",
        deployment="d1",
    )
    return layout, document


def test_slot_compose(config) -> None:  # type: ignore[no-untyped-def]
    _golden("slot-compose.yml", to_yaml(_green_slot(config)[1]))


def test_a_slot_container_is_created_with_what_its_compose_file_says(config) -> None:  # type: ignore[no-untyped-def]
    """The Engine API's create body of a slot: the compose service's image, environment (the
    env file's values, then ``environment``), port, network (no alias but its own names: none
    the proxy looks up), restart policy, stop grace and logging, and the labels by which Compose knows the container as the project's."""
    layout, document = _green_slot(config)
    file = layout.slot_compose("green")
    body = slot_container_body(document, file, {"JWT_SECRET": "x y", "DEPLOYMENT_SLOT": "blue"})
    assert body["Image"] == "shop:1.2.3-abcdef0"
    assert body["Env"] == ["JWT_SECRET=x y", "DEPLOYMENT_SLOT=green"]  # `environment` wins
    assert body["ExposedPorts"] == {"8080/tcp": {}}
    host = body["HostConfig"]
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert host["NetworkMode"] == "shop-development"
    assert host["RestartPolicy"] == {"Name": "unless-stopped"}
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "5"},
    }
    assert body["StopTimeout"] == math.ceil(config.app.stop_grace_period)
    endpoint = body["NetworkingConfig"]["EndpointsConfig"]["shop-development"]
    assert endpoint["Aliases"] == ["shop-development-green", "app"]
    labels = body["Labels"]
    assert labels["org.shipyard.slot"] == "green" and labels["org.shipyard.release"] == "r1"
    assert labels["com.docker.compose.project"] == "shop-development-green"
    assert labels["com.docker.compose.service"] == "app"
    assert labels["com.docker.compose.project.config_files"] == str(file)
    assert labels["com.docker.compose.project.working_dir"] == str(file.parent)
    assert len(labels["com.docker.compose.config-hash"]) == 64
    # The hash follows the definition, not the environment's values.
    other = slot_container_body(document, file, {"JWT_SECRET": "another"})
    assert other["Labels"] == labels
    document["services"]["app"]["image"] = "shop:1.2.4-0123456"
    assert (
        slot_container_body(document, file, {})["Labels"]["com.docker.compose.config-hash"]
        != (labels["com.docker.compose.config-hash"])
    )
    # A key the rendering gains and the body does not carry is refused, not dropped.
    document["services"]["app"]["cap_add"] = ["NET_ADMIN"]
    with pytest.raises(ValueError, match="cap_add"):
        slot_container_body(document, file, {})


def test_compose_quoted_env_files_are_read_back_exactly() -> None:
    values = {
        "PLAIN": "abc",
        "EMPTY": "",
        "QUOTE": "it's",
        "DOUBLE": 'say "hi"',
        "DOLLAR": "$HOME and $$",
        "BACKSLASH_END": "C:\\",
        "MIXED": 'it\'s \\n $x "q" = # not a comment',
        "URL": "postgres://u:p%40w@db:5432/x?sslmode=require",
    }
    text = compose_env_file_text(values, source="test")
    assert compose_env_values(text) == values
    assert compose_env_values(COMPOSE_ENV_HEADER + "\n# a comment\nA='1'\n") == {"A": "1"}


def test_app_env_derives_database_url_with_encoded_password(config) -> None:  # type: ignore[no-untyped-def]
    env = app_env(config, Names("shop", "development"))
    assert (
        env["DATABASE_URL"]
        == "postgres://shop:s3cret-password@shop-development-db:5432/shop?sslmode=disable"
    )
    assert env["JWT_SECRET"] == "0123456789abcdef0123456789abcdef"


def test_release_commands_get_libpq_variables_for_the_database(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """River's CLI, psql, goose … read PG* rather than DATABASE_URL: a release command gets both,
    for the managed database, and for an external URL the same parts of it."""
    env = release_command_env(config, Names("shop", "development"))
    assert env["DATABASE_URL"] == app_env(config, Names("shop", "development"))["DATABASE_URL"]
    assert {k: v for k, v in env.items() if k.startswith("PG") and k != "PGAPPNAME"} == {
        "PGHOST": "shop-development-db",
        "PGPORT": "5432",
        "PGUSER": "shop",
        "PGDATABASE": "shop",
        "PGPASSWORD": "s3cret-password",
        "PGSSLMODE": "disable",
        "PGCONNECT_TIMEOUT": "10",
    }
    (tmp_path / ".env.development").write_text(
        ENV_FILE
        + "DATABASE_URL=postgresql://ops%40shop:p%2Fw@db.internal:6432/events?sslmode=require\n"
        + "PGCONNECT_TIMEOUT=3\n"
    )
    external = load_config(tmp_path / "shipyard.yml", "development", process_env={})
    env = release_command_env(external, Names("shop", "development"))
    assert env["PGHOST"] == "db.internal" and env["PGPORT"] == "6432"
    assert env["PGUSER"] == "ops@shop" and env["PGPASSWORD"] == "p/w"
    assert env["PGDATABASE"] == "events" and env["PGSSLMODE"] == "require"
    assert env["PGCONNECT_TIMEOUT"] == "3"  # the env file's own value wins
    assert libpq_env("mysql://u:p@h/db") == {}
    assert libpq_env("postgres:///events") == {"PGDATABASE": "events"}


def test_caddy_plain_http() -> None:
    config = render_caddy(ProxySection(), Names("shop", "development").routed, 8080)
    _golden("caddy-http.json", json.dumps(config, indent=2) + "\n")
    assert upstreams_of(config) == [
        "shop-development-live:8080",
        "shop-development-switching:8080",
    ]


def test_the_lookup_refresh_is_read_from_a_config_and_rendered_in_milliseconds() -> None:
    names = Names("shop", "development").routed
    assert lookup_refresh(render_caddy(ProxySection(), names, 8080)) == LOOKUP_REFRESH_S
    older = render_caddy(ProxySection(), names, 8080, lookup_refresh_s=0.25)
    assert {s["refresh"] for s in _lookup_sources(older)} == {"250ms"}
    assert lookup_refresh(older) == 0.25
    assert lookup_refresh({}) is None
    _lookup_sources(older)[1]["refresh"] = "1s"  # not one refresh for all the names
    assert lookup_refresh(older) is None
    for refresh, seconds in (("1s", 1.0), (250_000_000, None), ("soon", None), ({}, None)):
        for source in _lookup_sources(older):  # Caddy's nanoseconds, or no duration at all
            source["refresh"] = refresh
        assert lookup_refresh(older) == seconds


def test_a_running_proxy_keeps_its_lookups_unless_something_else_changes() -> None:
    """A proxy started with other lookups that route the same (an earlier shipyard's 250 ms
    refresh, its third lookup of the ``slots`` alias) is not loaded a config for them alone: a
    load closes connections just accepted. Any other change loads the config as rendered."""
    names = Names("shop", "development").routed
    rendered = render_caddy(ProxySection(), names, 8080)
    older = render_caddy(ProxySection(), names, 8080, lookup_refresh_s=0.25)
    assert keeping_running_lookups(rendered, older) == older
    assert keeping_running_lookups(rendered, rendered) == rendered
    assert keeping_running_lookups(rendered, None) == rendered
    assert keeping_running_lookups(rendered, {}) == rendered
    changed = render_caddy(ProxySection(dial_retry=9), names, 8080, lookup_refresh_s=0.25)
    assert keeping_running_lookups(rendered, changed) == rendered
    assert lookup_refresh(rendered) == LOOKUP_REFRESH_S and rendered != older
    # With the alias every slot answered to, looked up last: kept, at either refresh.
    fallback = (*names, "shop-development-slots")
    for refresh in (0.25, LOOKUP_REFRESH_S):
        oldest = render_caddy(ProxySection(), fallback, 8080, lookup_refresh_s=refresh)
        assert keeping_running_lookups(rendered, oldest) == oldest
        assert upstreams_of(oldest)[-1] == "shop-development-slots:8080"
    # Another name, or another order, routes otherwise: loaded as rendered.
    for other in (
        (*names, "shop-development-blue"),
        ("shop-development-slots", *names),
        (names[0], "shop-development-slots", names[1]),  # only ever rendered last
        (names[1], names[0]),
        names[:1],
    ):
        assert keeping_running_lookups(rendered, render_caddy(ProxySection(), other, 8080)) == (
            rendered
        )


def _lookup_sources(config: dict[str, Any]) -> list[dict[str, Any]]:
    [route] = [
        r for r in config["apps"]["http"]["servers"]["shipyard"]["routes"] if "match" not in r
    ]
    return list(route["handle"][0]["dynamic_upstreams"]["sources"])


def test_caddy_with_domains() -> None:
    proxy = ProxySection(domains=["events.example"], tls_email="ops@events.example")
    config = render_caddy(proxy, Names("shop", "production").routed, 8080)
    _golden("caddy-https.json", json.dumps(config, indent=2) + "\n")
    server = config["apps"]["http"]["servers"]["shipyard"]
    assert server["listen"] == [":443"]
    assert all(m["host"] == ["events.example"] for r in server["routes"] for m in r["match"])


def test_the_proxy_tells_the_app_about_the_client_from_the_connection_alone() -> None:
    """X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host are set from what
    the proxy saw (a client's own are replaced, not appended to), Forwarded is dropped, and no
    `trusted_proxies` makes a client's header believed."""
    config = render_caddy(ProxySection(), Names("shop", "development").routed, 8080)
    server = config["apps"]["http"]["servers"]["shipyard"]
    handler = server["routes"][-1]["handle"][0]
    request = handler["headers"]["request"]
    client = ["{http.request.remote.host}"]  # the connection's address, never a header's
    assert request["set"] == {
        "X-Forwarded-For": client,
        "X-Real-IP": client,
        "X-Forwarded-Proto": ["{http.request.scheme}"],
        "X-Forwarded-Host": ["{http.request.hostport}"],
    }
    assert request["delete"] == ["Forwarded"] and set(request) == {"set", "delete"}
    assert "trusted_proxies" not in server and "trusted_proxies" not in handler


def test_parse_container_inspect() -> None:
    document = json.loads((GOLDEN / "container-inspect.json").read_text())[0]
    info = parse_container(document)
    assert info.name == "shop-development-blue"
    assert info.running
    assert info.health is None
    assert info.ports == {8080: 32768}
    assert info.bindings == (("127.0.0.1", 32768),)  # the udp port is not published on tcp
    assert info.labels["org.shipyard.slot"] == "blue"
    assert info.addresses == {"shop-development": "172.22.0.5"}


def test_parse_traffic_counts_5xx_of_the_shipyard_server() -> None:
    metrics = (GOLDEN / "caddy-metrics.txt").read_text()
    traffic = parse_traffic(metrics)
    assert traffic.total == 1200 + 30 + 7
    assert traffic.errors == 30 + 7
    assert traffic.since(Traffic(1000, 30)) == Traffic(237, 7)
    assert round(Traffic(200, 10).error_rate, 3) == 0.05


def test_env_files_saved_raw_by_earlier_versions_are_requoted_for_compose() -> None:
    legacy = "PASSWORD=it's $HOME # not a comment\nEMPTY=\nURL=postgres://u:p@db/x?a=b\n"
    requoted = as_compose_env(legacy, source="releases/r1.env")
    assert requoted.startswith(COMPOSE_ENV_HEADER)
    assert requoted == compose_env_file_text(
        {
            "PASSWORD": "it's $HOME # not a comment",
            "EMPTY": "",
            "URL": "postgres://u:p@db/x?a=b",
        },
        source="x",
    )
    assert as_compose_env(requoted, source="releases/r2.env") == requoted  # already quoted


def test_caddy_with_domains_and_the_internal_ca() -> None:
    proxy = ProxySection(domains=["events.test"], tls="internal", tls_email="ops@events.test")
    config = render_caddy(proxy, Names("shop", "staging").routed, 8080)
    _golden("caddy-https-internal.json", json.dumps(config, indent=2) + "\n")
    assert config["apps"]["tls"]["automation"]["policies"] == [
        {"subjects": ["events.test"], "issuers": [{"module": "internal"}]}
    ]
    # Caddy's root stays out of the container's trust store; shipyard trusts it per request.
    assert config["apps"]["pki"]["certificate_authorities"]["local"] == {"install_trust": False}


def test_caddy_with_domains_defaults_to_acme() -> None:
    config = render_caddy(ProxySection(domains=["events.example"]), ("a", "b"), 8080)
    assert "pki" not in config["apps"]
    # Caddy's default issuers (ACME), looked at for renewal often enough for any lifetime.
    assert config["apps"]["tls"] == {"automation": {"renew_interval": "30s"}}


def _external(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    (tmp_path / "shipyard.yml").write_text(VALID)
    env = ENV_FILE.replace("POSTGRES_PASSWORD=s3cret-password\n", f"DATABASE_URL={url}\n")
    (tmp_path / ".env.development").write_text(env)
    return load_config(tmp_path / "shipyard.yml", "development", process_env={})


def test_an_external_database_gets_a_client_in_place_of_the_database(tmp_path: Path) -> None:
    names = Names("shop", "development")
    layout = Layout(PurePosixPath("/state/shop/development"))
    url = "postgres://app:pw%40one@db.example.net:25060/shop?sslmode=require"
    infra = render_infra(_external(tmp_path, url), names, layout)
    assert "db" not in infra["services"] and "pgdata" not in infra["volumes"]
    client = infra["services"]["dbclient"]
    assert client["container_name"] == "shop-development-dbclient"
    assert client["image"] == "shipyard-local/postgres:17"
    assert client["env_file"] == ["/state/shop/development/infra/database-client.env"]
    assert client["networks"] == ["app"] and client["healthcheck"]["test"][-2:] == [
        "pg_isready", "-q",
    ]  # fmt: skip
    assert "pw@one" not in to_yaml(infra) and "pw%40one" not in to_yaml(infra)
    [section, endpoint, login] = external_database(_external(tmp_path, url)) or []
    assert (section.user, section.name) == ("app", "shop")
    assert endpoint == Endpoint("db.example.net", 25060, "require")
    assert login["PGPASSWORD"] == "pw@one" and login["PGHOST"] == "db.example.net"
    # Pointing the URL elsewhere changes the definition (the client is recreated); a new
    # password alone changes only the client's env file (Compose recreates it for that).
    digest = client["labels"]["org.shipyard.login"]
    moved = render_infra(_external(tmp_path, url.replace("db.", "db2.")), names, layout)
    assert moved["services"]["dbclient"]["labels"]["org.shipyard.login"] != digest
    rotated = render_infra(_external(tmp_path, url.replace("pw%40one", "two")), names, layout)
    assert rotated["services"]["dbclient"]["labels"]["org.shipyard.login"] == digest


def test_golang_migrate_reaches_an_external_database_with_its_tls_mode() -> None:
    section = DatabaseSection.model_validate({"name": "events", "user": "doadmin"})
    assert migration_url(section, Endpoint("db.example.net", 25060, "require")).startswith(
        "postgres://doadmin@db.example.net:25060/events?sslmode=require&options="
    )
    assert migration_url(section, Endpoint("2001:db8::5", 5432, None)).startswith(
        "postgres://doadmin@[2001:db8::5]:5432/events?options="
    )
