"""A do:// environment's resources on DigitalOcean, against the stand-in of its API
(``tests/do_standin.py``, held to the requests and answers of DigitalOcean's published API):
what provision creates and how, that plan reads only, a second ensure creates nothing, what
destroy removes; the retry policy (429 with Retry-After, the rate limit's reset, 5xx) within its
time, and errors that say what to do, the token never among them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.config import DigitalOceanSection, DoDatabaseSection
from shipyard.errors import ConfigError, ShipyardError
from shipyard.providers.digitalocean import (
    ClusterNotReady,
    DoApi,
    DoCluster,
    DoError,
    DoNames,
    DoResources,
    DropletNotReady,
    LimitReached,
    RateLimited,
)
from tests.aws_standin import InstantClock
from tests.do_standin import DoStandIn, do_standin


@pytest.fixture
def standin() -> Iterator[DoStandIn]:
    with do_standin() as running:
        yield running


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "op", "-f", str(key)],
                   check=True, capture_output=True)  # fmt: skip
    return key.with_suffix(".pub")


_OPEN: list[DoApi] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    """Every API client a test made is closed after it."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _api(standin: DoStandIn, clock: InstantClock | None = None, **options: Any) -> DoApi:
    api = DoApi(standin.url, standin.token, clock=clock or InstantClock(), **options)
    _OPEN.append(api)
    return api


def _resources(
    standin: DoStandIn, public_key: Path, environment: str = "production", **settings: Any
) -> DoResources:
    return DoResources(
        DoNames("shop", environment),
        DigitalOceanSection(**settings),
        "ams3",
        _api(standin),
        public_key=public_key,
        known_hosts=public_key.parent / "known_hosts",
        clock=InstantClock(),
    )


def _changes(standin: DoStandIn) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in standin.requests if r.method != "GET"]


def test_provision_creates_the_key_droplet_and_firewall_and_trusts_the_droplets_host_key(
    standin: DoStandIn, public_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = _resources(standin, public_key, tags=["team-events"])
    planned = [str(a) for a in resources.plan()]
    assert _changes(standin) == []  # plan reads only
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "md5", "-f", str(public_key)],
        capture_output=True, text=True, check=True,
    ).stdout.split()[1].removeprefix("MD5:")  # fmt: skip
    assert planned == [
        f"ssh key: import into the account {fingerprint}",
        f"droplet: create (s-1vcpu-2gb, debian-12-x64, ams3; root's key {fingerprint}) "
        "shipyard-shop-production",
        "firewall: create (in: 22, 80, 443) shipyard-shop-production",
    ]
    # The stand-in's address presents the host key shipyard generated once cloud-init ran:
    # here ssh-keyscan is answered with what the request carried.
    monkeypatch.setattr(DoResources, "_serving", lambda self, address, public, timeout: None)
    assert [str(a) for a in resources.ensure()] == planned
    assert resources.plan() == []  # everything in place

    [body] = [r.body for r in standin.requests if (r.method, r.path) == ("POST", "/v2/droplets")]
    assert body["ssh_keys"] == [fingerprint]
    assert body["tags"] == ["shipyard:shop:production", "team-events"]
    assert body["user_data"].startswith("#cloud-config\nssh_deletekeys: true\n")
    assert resources.address() == standin.address
    # known_hosts names the Droplet (ssh's HostKeyAlias) with the public half of the key in
    # user_data: trusted before the Droplet was asked for.
    [line] = (public_key.parent / "known_hosts").read_text().splitlines()
    host, kind, key = line.split()
    assert (host, kind) == ("shipyard-shop-production", "ssh-ed25519")
    assert f"ed25519_public: ssh-ed25519 {key}" in body["user_data"]

    [firewall] = standin.firewalls.values()
    inbound = {r["ports"]: r["sources"]["addresses"] for r in firewall["inbound_rules"]}
    assert inbound == {"22": ["0.0.0.0/0", "::/0"], "80": ["0.0.0.0/0", "::/0"],
                       "443": ["0.0.0.0/0", "::/0"]}  # fmt: skip
    assert firewall["tags"] == ["shipyard:shop:production"]

    # Narrower SSH sources change the firewall's rules, nothing else.
    narrowed = _resources(standin, public_key, ssh_sources=["198.51.100.7/32"])
    assert [str(a) for a in narrowed.plan()] == [
        "firewall: set the rules of shipyard-shop-production"
    ]
    narrowed.ensure()
    [firewall] = standin.firewalls.values()
    assert next(r for r in firewall["inbound_rules"] if r["ports"] == "22")["sources"] == {
        "addresses": ["198.51.100.7/32"]
    }


def test_a_reserved_ip_is_the_droplets_address_and_trusted_too(
    standin: DoStandIn, public_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DoResources, "_serving", lambda self, address, public, timeout: None)
    resources = _resources(standin, public_key, reserved_ip=True, firewall=False)
    assert [a.service for a in resources.plan()] == ["ssh key", "droplet", "reserved ip"]
    resources.ensure()
    [reserved] = standin.reserved_ips.values()
    assert resources.address() == reserved["ip"] != standin.address
    # One known_hosts line, by the Droplet's name, serves both of its addresses.
    hosts = [
        line.split()[0] for line in (public_key.parent / "known_hosts").read_text().splitlines()
    ]
    assert hosts == ["shipyard-shop-production"]


def test_destroy_removes_only_what_carries_the_environments_tag(
    standin: DoStandIn, public_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DoResources, "_serving", lambda self, address, public, timeout: None)
    _resources(standin, public_key, "staging").ensure()
    doomed = _resources(standin, public_key, reserved_ip=True)
    doomed.ensure()
    assert len(standin.droplets) == 2
    listed = [str(a) for a in doomed.removal()]
    assert [a.split(" ", 2)[:2] for a in listed] == [
        ["reserved", "ip:"], ["firewall:", "delete"], ["droplet:", "delete"],
    ]  # fmt: skip
    for action in doomed.removal():
        action.run()
    [left] = standin.droplets.values()
    assert left["tags"] == ["shipyard:shop:staging"]
    assert [f["name"] for f in standin.firewalls.values()] == ["shipyard-shop-staging"]
    assert not standin.reserved_ips
    assert standin.keys  # the account's key stays: other Droplets may use it
    assert doomed.removal() == []


def test_a_droplet_that_never_becomes_active_is_given_up(
    standin: DoStandIn, public_key: Path
) -> None:
    standin.never_active()
    resources = _resources(standin, public_key, firewall=False)
    with pytest.raises(DropletNotReady, match=r"shipyard-shop-production: new after 600s"):
        resources.ensure()


def test_an_unreadable_public_key_names_the_setting(standin: DoStandIn, tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"providers\.digitalocean\.ssh_public_key"):
        _resources(standin, tmp_path / "bad.pub").plan()


def test_a_429_waits_for_retry_after_then_for_the_reset(standin: DoStandIn) -> None:
    clock = InstantClock()
    api = _api(standin, clock)
    standin.rate_limit(2, retry_after=3)
    assert api.get("/v2/droplets")["droplets"] == []
    assert clock.t == 6  # Retry-After, twice
    standin.rate_limit(1, retry_after=None)  # the reset only: an epoch second ahead
    before = clock.t
    assert api.get("/v2/droplets")["droplets"] == []
    assert 0 <= clock.t - before <= 61


def test_a_rate_limit_that_outlasts_the_budget_names_the_limit_and_its_reset(
    standin: DoStandIn,
) -> None:
    standin.rate_limit(100, retry_after=30)
    with pytest.raises(RateLimited) as caught:
        _api(standin, budget=60).get("/v2/droplets")
    message = str(caught.value)
    assert (
        "GET /v2/droplets" in message and "rate limit (5000 requests an hour) is spent" in message
    )
    assert "resets at" in message
    assert standin.token not in message + str(caught.value.hint)


def test_server_errors_back_off_and_then_say_so(standin: DoStandIn) -> None:
    clock = InstantClock()
    standin.fail(
        "GET", "/v2/firewalls", 503, {"id": "service_unavailable", "message": "busy"}, times=2
    )
    assert _api(standin, clock).get("/v2/firewalls")["firewalls"] == []
    assert clock.t == 3  # 1 s, then 2 s
    standin.fail("GET", "/v2/firewalls", 500, {"id": "server_error", "message": "oops"}, times=50)
    with pytest.raises(DoError, match=r"500 oops \(after retries\)"):
        _api(standin, budget=20).get("/v2/firewalls")


def test_refusals_say_what_to_do(standin: DoStandIn, public_key: Path) -> None:
    wrong = DoApi(standin.url, "not-the-token", clock=InstantClock())
    _OPEN.append(wrong)
    with pytest.raises(DoError) as refused:
        wrong.get("/v2/droplets")
    assert "the token is refused (401" in str(refused.value)
    assert "DIGITALOCEAN_TOKEN" in str(refused.value.hint)
    assert "not-the-token" not in str(refused.value) + str(refused.value.hint)

    standin.fail("POST", "/v2/droplets", 422, {
        "id": "unprocessable_entity",
        "message": "creating this/these droplet(s) will exceed your droplet limit",
    })  # fmt: skip
    with pytest.raises(LimitReached) as limited:
        _resources(standin, public_key, firewall=False).ensure()
    assert "exceed your droplet limit" in str(limited.value)
    assert "raise the account's Droplet limit" in str(limited.value.hint)


def test_the_token_comes_from_the_environment_only() -> None:
    with pytest.raises(ShipyardError, match="DIGITALOCEAN_TOKEN is not set"):
        DoApi.from_environment("https://api.digitalocean.com", {})
    api = DoApi.from_environment("https://api.digitalocean.com", {"DIGITALOCEAN_TOKEN": "t"})
    api.close()


def test_lists_are_read_to_their_last_page(standin: DoStandIn, public_key: Path) -> None:
    api = _api(standin)
    for index in range(205):
        standin.droplets[10_000 + index] = {
            "id": 10_000 + index, "name": f"other-{index}", "status": "active",
            "tags": [], "networks": {"v4": [], "v6": []},
        }  # fmt: skip
    assert len(api.pages("/v2/droplets", "droplets")) == 205


def test_a_droplet_request_whose_answer_is_lost_is_not_sent_twice(
    standin: DoStandIn, public_key: Path
) -> None:
    """A 5xx after a POST may come after DigitalOcean acted: the POST is not repeated, and the
    next run finds the Droplet by its tag instead of creating a second one."""
    standin.fail("POST", "/v2/droplets", 502, {"id": "bad_gateway", "message": "upstream"})
    resources = _resources(standin, public_key, firewall=False)
    with pytest.raises(DoError, match=r"POST /v2/droplets: 502 upstream"):
        resources.ensure()
    posts = [r for r in standin.requests if (r.method, r.path) == ("POST", "/v2/droplets")]
    assert len(posts) == 1


def test_two_droplets_tagged_as_one_environment_are_refused(
    standin: DoStandIn, public_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DoResources, "_serving", lambda self, address, public, timeout: None)
    resources = _resources(standin, public_key, firewall=False)
    resources.ensure()
    [droplet] = standin.droplets.values()
    standin.droplets[droplet["id"] + 1] = {**droplet, "id": droplet["id"] + 1}
    with pytest.raises(ShipyardError, match=r"2 Droplets are tagged shipyard:shop:production"):
        resources.plan()
    # destroy still deletes every one of them
    assert [a.verb for a in resources.removal()] == ["delete (with its disk)"] * 2


def test_the_host_key_is_replaced_by_one_made_on_the_droplet(
    standin: DoStandIn, public_key: Path
) -> None:
    """Both keys are trusted while sshd changes over; then only the new one."""
    resources = _resources(standin, public_key)
    resources._trust("ssh-ed25519 AAAAold")
    seen: list[list[str]] = []

    class Droplet:
        def run(self, argv: list[str], **options: Any) -> Any:
            lines = resources.known_hosts.read_text().splitlines()
            seen.append([line.split(" ", 1)[1] for line in lines])
            stdout = "ssh-ed25519 AAAAnew shipyard\n" if "ssh-keygen" in argv[-1] else ""
            return subprocess.CompletedProcess(argv, 0, stdout, "")

    resources.rotate_host_key(Droplet())  # type: ignore[arg-type]
    assert seen == [["ssh-ed25519 AAAAold"], ["ssh-ed25519 AAAAold", "ssh-ed25519 AAAAnew"]]
    assert resources.known_hosts.read_text() == "shipyard-shop-production ssh-ed25519 AAAAnew\n"


class _Server:
    """What the stand-in's clusters are backed by, for tests that need no real server: the
    statements it was sent."""

    host = "db-ams3.example.net"
    port = 25060
    private_host = "private-db-ams3.example.net"

    def __init__(self) -> None:
        self.statements: list[str] = []

    def sql(self, statements: str, *, database: str = "postgres") -> str:
        self.statements.append(statements)
        return ""


@pytest.fixture
def clustered() -> Iterator[DoStandIn]:
    with do_standin(database_server=_Server()) as running:
        yield running


def _with_cluster(standin: DoStandIn, public_key: Path, **section: Any) -> DoResources:
    resources = _resources(standin, public_key)
    resources.cluster = DoCluster(
        DoDatabaseSection(**section), name="shipyard-shop-production",
        tag="shipyard:shop:production", region="ams3", database="events",
        api=resources.api, clock=InstantClock(),
    )  # fmt: skip
    return resources


def test_a_cluster_is_asked_for_first_and_its_database_made_once_online(
    clustered: DoStandIn, public_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DoResources, "_serving", lambda self, address, public, timeout: None)
    resources = _with_cluster(clustered, public_key, size="db-s-2vcpu-4gb", nodes=2)
    planned = [str(a) for a in resources.plan()]
    assert planned[0] == (
        "database cluster: create (PostgreSQL 17, db-s-2vcpu-4gb, 2 node(s), ams3; admits "
        "shipyard:shop:production) shipyard-shop-production"
    )
    assert (
        planned[-1]
        == "database: create in cluster shipyard-shop-production, once it is online events"
    )
    assert any(p.startswith("droplet: create") for p in planned[1:-1])
    assert _changes(clustered) == []  # plan reads only
    resources.ensure()
    [cluster] = clustered.clusters.values()
    assert cluster["status"] == "online" and "events" in cluster["db_names"]
    [sent] = [r.body for r in clustered.requests if (r.method, r.path) == ("POST", "/v2/databases")]
    assert sent == {
        "name": "shipyard-shop-production", "engine": "pg", "version": "17", "region": "ams3",
        "size": "db-s-2vcpu-4gb", "num_nodes": 2, "tags": ["shipyard:shop:production"],
        "rules": [{"type": "tag", "value": "shipyard:shop:production"}],
    }  # fmt: skip
    assert resources.plan() == []
    # The app's URL: the private address, TLS, the admin's credentials, the database.
    password = cluster["connection"]["password"]
    assert resources.cluster is not None
    assert resources.cluster.url() == (
        f"postgres://doadmin:{password}@private-db-ams3.example.net:25060/events?sslmode=require"
    )
    # destroy deletes shipyard's own cluster with the rest.
    removal = [str(a).split(":")[0] for a in resources.removal()]
    assert removal == ["database cluster", "firewall", "droplet"]


def test_an_operators_cluster_is_adopted_by_name_and_never_deleted(
    clustered: DoStandIn, public_key: Path
) -> None:
    api = _api(clustered)
    theirs = api.post("/v2/databases", {"name": "shared-pg", "engine": "pg", "num_nodes": 1,
                                        "size": "db-s-1vcpu-1gb", "region": "ams3",
                                        "rules": [{"type": "ip_addr", "value": "192.0.2.7"}]})  # fmt: skip
    cluster_id = theirs["database"]["id"]
    api.get(f"/v2/databases/{cluster_id}")  # online from the next GET
    resources = _with_cluster(clustered, public_key, cluster="shared-pg")
    assert resources.cluster is not None
    actions = resources.cluster.plan()
    assert [str(a) for a in actions] == [
        "database: create in cluster shared-pg events",
        "database trusted sources: admit shipyard:shop:production to shared-pg",
    ]
    for action in actions:
        action.run()
    rules = api.get(f"/v2/databases/{cluster_id}/firewall")["rules"]
    assert [(r["type"], r["value"]) for r in rules] == [
        ("ip_addr", "192.0.2.7"), ("tag", "shipyard:shop:production"),
    ]  # fmt: skip
    assert resources.cluster.plan() == []
    assert resources.cluster.removal() == []  # the operator's: destroy leaves it


def test_a_named_cluster_that_does_not_exist_names_the_setting(
    clustered: DoStandIn, public_key: Path
) -> None:
    resources = _with_cluster(clustered, public_key, cluster="nowhere")
    with pytest.raises(ConfigError) as raised:
        resources.plan()
    text = str(raised.value)
    assert "providers.digitalocean.database.cluster" in text and "'nowhere'" in text


def test_a_cluster_that_never_comes_online_is_given_up(
    clustered: DoStandIn, public_key: Path
) -> None:
    clustered.online_after = 10**9
    resources = _with_cluster(clustered, public_key)
    assert resources.cluster is not None
    for action in resources.cluster.plan()[:1]:
        action.run()
    with pytest.raises(ClusterNotReady) as raised:
        resources.cluster.online(60)
    assert "creating after 60s" in raised.value.message
    with pytest.raises(ShipyardError) as early:  # no URL to deploy with yet
        resources.cluster.url()
    assert "is creating, not online yet" in early.value.message
    # Online, yet no credentials shown (a token without database:view_credentials).
    [cluster] = clustered.clusters.values()
    cluster.update(status="online", connection={}, private_connection={})
    with pytest.raises(ShipyardError) as hidden:
        resources.cluster.url()
    assert "database:view_credentials" in (hidden.value.hint or "")
