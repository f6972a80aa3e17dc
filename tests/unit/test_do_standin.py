"""The DigitalOcean stand-in keeps DigitalOcean's contract (pydo's operations): shapes, refusals,
pagination, the Droplet's life, and the failures tests script."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.do_standin import TOKEN, DoStandIn, Request, do_standin

LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture
def standin() -> Iterator[DoStandIn]:
    with do_standin() as running:
        yield running


@pytest.fixture
def api(standin: DoStandIn) -> Iterator[httpx.Client]:
    with _client(standin) as client:
        yield client


def _client(standin: DoStandIn, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=standin.url, headers={"Authorization": f"Bearer {token}"})


def _public_key(seed: int) -> str:
    """A well-formed public key line (the stand-in reads only its blob)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + seed.to_bytes(32, "big")
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} seed-{seed}"


def _add_key(api: httpx.Client, seed: int = 1) -> dict[str, Any]:
    response = api.post(
        "/v2/account/keys", json={"name": f"k{seed}", "public_key": _public_key(seed)}
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()["ssh_key"]
    return key


def _droplet_body(**changes: Any) -> dict[str, Any]:
    body = {"name": "web-1", "region": "fra1", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
    return {**body, **changes}


def _create_droplet(api: httpx.Client, **changes: Any) -> dict[str, Any]:
    response = api.post("/v2/droplets", json=_droplet_body(**changes))
    assert response.status_code == 202, response.text
    droplet: dict[str, Any] = response.json()["droplet"]
    return droplet


def _get_droplet(api: httpx.Client, droplet_id: int) -> dict[str, Any]:
    response = api.get(f"/v2/droplets/{droplet_id}")
    assert response.status_code == 200, response.text
    droplet: dict[str, Any] = response.json()["droplet"]
    return droplet


def _firewall_body(**changes: Any) -> dict[str, Any]:
    body = {
        "name": "shipyard-web",
        "inbound_rules": [
            {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}},
            {"protocol": "tcp", "ports": "80", "sources": {"tags": ["shipyard:web"]}},
        ],
        "outbound_rules": [
            {"protocol": "udp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0"]}}
        ],
        "tags": ["shipyard:web"],
    }
    return {**body, **changes}


def _refusal(response: httpx.Response, status: int = 422) -> str:
    """The refusal's message, after checking its status and DigitalOcean's error shape."""
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"id", "message"}
    assert error["id"] == {400: "bad_request", 422: "unprocessable_entity"}[status]
    message: str = error["message"]
    return message


# --- Authentication, headers, unknown paths ---


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_a_request_without_the_token_is_401(standin: DoStandIn, headers: dict[str, str]) -> None:
    response = httpx.get(f"{standin.url}/v2/droplets", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"id": "unauthorized", "message": "Unable to authenticate you"}


def test_every_answer_carries_the_rate_limit_headers(api: httpx.Client) -> None:
    answers = [api.get("/v2/account/keys"), api.get("/v2/droplets/1"), api.delete("/v2/nowhere")]
    for response in answers:
        assert all(name in response.headers for name in LIMIT_HEADERS)
        assert response.headers["ratelimit-limit"] == "5000"
    remaining = [int(r.headers["ratelimit-remaining"]) for r in answers]
    assert remaining == sorted(remaining, reverse=True)


@pytest.mark.parametrize(("method", "path"), [("GET", "/v2/volumes"), ("PATCH", "/v2/droplets")])
def test_an_unknown_path_or_method_is_404(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path)
    assert response.status_code == 404
    assert response.json() == {
        "id": "not_found",
        "message": "The resource you were accessing could not be found.",
    }


def test_every_request_is_recorded_in_order(standin: DoStandIn, api: httpx.Client) -> None:
    api.get("/v2/droplets", params={"tag_name": "web"})
    api.post("/v2/account/keys", json={"name": "k"})
    assert standin.requests == [
        Request("GET", "/v2/droplets", {"tag_name": "web"}, None),
        Request("POST", "/v2/account/keys", {}, {"name": "k"}),
    ]


# --- SSH keys ---


def test_a_key_is_created_with_the_fingerprint_ssh_keygen_gives(
    api: httpx.Client, tmp_path: Path
) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "k"], check=True
    )
    public_key = (tmp_path / "k.pub").read_text().strip()
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "md5", "-f", tmp_path / "k.pub"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    expected = listed.stdout.split()[1].removeprefix("MD5:")

    response = api.post("/v2/account/keys", json={"name": "deploy", "public_key": public_key})

    assert response.status_code == 201
    key = response.json()["ssh_key"]
    assert set(key) == {"id", "fingerprint", "public_key", "name"}
    assert key["fingerprint"] == expected
    assert key["public_key"] == public_key
    assert api.get(f"/v2/account/keys/{expected}").json() == {"ssh_key": key}


def test_a_key_already_present_is_refused(api: httpx.Client) -> None:
    _add_key(api, seed=7)
    again = api.post("/v2/account/keys", json={"name": "other", "public_key": _public_key(7)})
    assert _refusal(again) == "SSH Key is already in use on your account"


def test_a_malformed_key_is_refused(api: httpx.Client) -> None:
    response = api.post("/v2/account/keys", json={"name": "k", "public_key": "ssh-ed25519 !!"})
    assert "type key [comment]" in _refusal(response)


def test_keys_are_listed_in_pages_and_following_next_gives_the_rest(
    standin: DoStandIn, api: httpx.Client
) -> None:
    for seed in range(23):
        _add_key(api, seed)

    first = api.get("/v2/account/keys").json()
    rest = api.get(first["links"]["pages"]["next"]).json()

    assert len(first["ssh_keys"]) == 20
    assert first["meta"] == {"total": 23}
    assert first["links"]["pages"]["next"].startswith(standin.url)
    assert len(rest["ssh_keys"]) == 3
    assert "next" not in rest["links"]["pages"]
    assert {k["id"] for k in first["ssh_keys"] + rest["ssh_keys"]} == set(standin.keys)


def test_a_key_is_deleted_by_its_id(standin: DoStandIn, api: httpx.Client) -> None:
    key = _add_key(api)
    assert api.delete(f"/v2/account/keys/{key['id']}").status_code == 204
    assert standin.keys == {}
    assert api.get(f"/v2/account/keys/{key['id']}").status_code == 404


# --- Droplets ---


def test_a_new_droplet_is_accepted_with_status_new_and_no_networks(
    standin: DoStandIn, api: httpx.Client
) -> None:
    key = _add_key(api)
    body = _droplet_body(
        ssh_keys=[key["id"], key["fingerprint"]],
        tags=["shipyard", "env:prod"],
        ipv6=True,
        monitoring=True,
        backups=False,
        user_data="#cloud-config\n",
        vpc_uuid="760e09ef-dc84-11e8-981e-3cfdfeaae000",
    )

    response = api.post("/v2/droplets", json=body)

    assert response.status_code == 202
    answer = response.json()
    droplet = answer["droplet"]
    assert droplet["status"] == "new"
    assert droplet["networks"] == {"v4": [], "v6": []}
    assert droplet["name"] == "web-1"
    assert droplet["region"]["slug"] == "fra1"
    assert droplet["size_slug"] == "s-1vcpu-1gb"
    assert droplet["image"]["slug"] == "ubuntu-24-04-x64"
    assert droplet["tags"] == ["shipyard", "env:prod"]
    assert droplet["vpc_uuid"] == "760e09ef-dc84-11e8-981e-3cfdfeaae000"
    [link] = answer["links"]["actions"]
    assert link["rel"] == "create"
    assert link["href"] == f"{standin.url}/v2/actions/{link['id']}"
    assert list(standin.droplets) == [droplet["id"]]


def test_a_droplet_is_active_with_the_address_after_active_after_gets() -> None:
    with do_standin(active_after=2, address="192.0.2.7") as running, _client(running) as api:
        droplet_id = _create_droplet(api)["id"]
        running.address = "192.0.2.99"  # the next Droplet's, not this one's

        statuses = [_get_droplet(api, droplet_id)["status"] for _ in range(2)]
        active = _get_droplet(api, droplet_id)

    assert statuses == ["new", "new"]
    assert active["status"] == "active"
    v4 = {n["type"]: n["ip_address"] for n in active["networks"]["v4"]}
    assert v4["public"] == "192.0.2.7"
    assert v4["private"].startswith("10.")


def test_by_default_one_get_answers_new_before_the_droplet_is_active(api: httpx.Client) -> None:
    droplet_id = _create_droplet(api)["id"]
    assert _get_droplet(api, droplet_id)["status"] == "new"
    assert _get_droplet(api, droplet_id)["status"] == "active"


def test_a_list_page_showing_the_droplet_counts_as_a_get_of_it(api: httpx.Client) -> None:
    _create_droplet(api, tags=["web"])
    statuses = [
        api.get("/v2/droplets", params={"tag_name": "web"}).json()["droplets"][0]["status"]
        for _ in range(2)
    ]
    assert statuses == ["new", "active"]


def test_a_droplet_off_the_page_does_not_advance(standin: DoStandIn, api: httpx.Client) -> None:
    first = _create_droplet(api, name="first")["id"]
    second = _create_droplet(api, name="second")["id"]
    for _ in range(3):
        api.get("/v2/droplets", params={"per_page": 1})
    assert (standin.droplets[first]["status"], standin.droplets[second]["status"]) == (
        "active",
        "new",
    )


def test_with_active_after_zero_the_first_get_finds_the_droplet_active() -> None:
    with do_standin(active_after=0) as running, _client(running) as api:
        created = _create_droplet(api, ipv6=True)
        droplet = _get_droplet(api, created["id"])
    assert created["status"] == "new"
    assert droplet["status"] == "active"
    assert [n["type"] for n in droplet["networks"]["v6"]] == ["public"]


def test_never_active_keeps_new_droplets_new(standin: DoStandIn, api: httpx.Client) -> None:
    before = _create_droplet(api, name="before")["id"]
    standin.never_active()
    after = _create_droplet(api, name="after")["id"]

    for _ in range(5):
        _get_droplet(api, before)
        _get_droplet(api, after)

    assert standin.droplets[before]["status"] == "active"
    assert _get_droplet(api, after)["status"] == "new"


def test_droplets_are_filtered_by_tag_and_listed_in_pages(api: httpx.Client) -> None:
    for i in range(5):
        _create_droplet(api, name=f"web-{i}", tags=["web"])
    _create_droplet(api, name="db", tags=["db"])

    first = api.get("/v2/droplets", params={"tag_name": "web", "per_page": 3}).json()
    rest = api.get(first["links"]["pages"]["next"]).json()

    assert first["meta"] == {"total": 5}
    assert [d["name"] for d in first["droplets"]] == ["web-0", "web-1", "web-2"]
    assert [d["name"] for d in rest["droplets"]] == ["web-3", "web-4"]
    assert set(rest["links"]["pages"]) == {"first", "prev"}
    assert api.get("/v2/droplets").json()["meta"] == {"total": 6}


def test_a_deleted_droplet_is_gone(standin: DoStandIn, api: httpx.Client) -> None:
    droplet_id = _create_droplet(api)["id"]
    assert api.delete(f"/v2/droplets/{droplet_id}").status_code == 204
    assert standin.droplets == {}
    assert api.get(f"/v2/droplets/{droplet_id}").status_code == 404


def test_a_droplet_beyond_the_limit_is_refused() -> None:
    with do_standin(droplet_limit=2) as running, _client(running) as api:
        _create_droplet(api, name="a")
        _create_droplet(api, name="b")
        response = api.post("/v2/droplets", json=_droplet_body(name="c"))
    assert _refusal(response) == "creating this/these droplet(s) will exceed your droplet limit"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"region": None}, "region is required"),
        ({"ipv6": "yes"}, "ipv6 must be a boolean"),
        ({"image": 1.5}, "image must be a string or an integer"),
        ({"tags": "web"}, "tags must be a list of strings"),
        ({"colour": "blue"}, "colour is not a field"),
        ({"name": "web_1"}, "Only valid hostname characters"),
        ({"tags": ["has space"]}, "tags[0] 'has space' is not a valid tag"),
        ({"tags": ["t" * 256]}, "tags[0]"),
        ({"ssh_keys": [404]}, "404 are invalid key identifiers"),
        ({"user_data": "x" * (64 * 1024 + 1)}, "user_data"),
    ],
)
def test_a_bad_droplet_request_is_refused_naming_the_field(
    standin: DoStandIn, api: httpx.Client, changes: dict[str, Any], named: str
) -> None:
    body = {k: v for k, v in _droplet_body(**changes).items() if v is not None}
    assert named in _refusal(api.post("/v2/droplets", json=body))
    assert standin.droplets == {}


def test_tags_of_letters_digits_colons_dashes_and_underscores_are_accepted(
    api: httpx.Client,
) -> None:
    tags = ["env:prod", "shipyard_web-1", "t" * 255]
    assert _create_droplet(api, tags=tags)["tags"] == tags


def test_a_body_that_is_not_json_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/v2/droplets", content=b"{name", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["id"] == "bad_request"


# --- Firewalls ---


def test_a_firewall_is_created_as_sent_with_id_status_and_default_actions(
    standin: DoStandIn, api: httpx.Client
) -> None:
    droplet_id = _create_droplet(api)["id"]

    response = api.post("/v2/firewalls", json=_firewall_body(droplet_ids=[droplet_id]))

    assert response.status_code == 202
    firewall = response.json()["firewall"]
    assert firewall["status"] == "succeeded"
    assert firewall["created_at"].endswith("Z")
    assert firewall["name"] == "shipyard-web"
    assert firewall["droplet_ids"] == [droplet_id]
    assert firewall["tags"] == ["shipyard:web"]
    assert firewall["inbound_rules"][0] == {
        "action": "allow",
        "protocol": "tcp",
        "ports": "22",
        "sources": {"addresses": ["0.0.0.0/0", "::/0"]},
    }
    assert firewall["outbound_rules"][0]["destinations"] == {"addresses": ["0.0.0.0/0"]}
    assert api.get(f"/v2/firewalls/{firewall['id']}").json() == {"firewall": firewall}
    assert api.get("/v2/firewalls").json()["firewalls"] == [firewall]
    assert list(standin.firewalls) == [firewall["id"]]


def test_all_ports_and_icmp_rules_are_answered_as_port_0(api: httpx.Client) -> None:
    rules = [
        {"protocol": "tcp", "ports": "all", "destinations": {"addresses": ["0.0.0.0/0"]}},
        {"protocol": "udp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0"]}},
        {"protocol": "icmp", "destinations": {"addresses": ["0.0.0.0/0"]}},
        {"protocol": "tcp", "ports": "8000-9000", "destinations": {"addresses": ["::/0"]}},
    ]
    response = api.post("/v2/firewalls", json=_firewall_body(outbound_rules=rules))
    answered = response.json()["firewall"]["outbound_rules"]
    assert [r["ports"] for r in answered] == ["0", "0", "0", "8000-9000"]


def test_a_firewall_update_replaces_it_whole(api: httpx.Client) -> None:
    created = api.post("/v2/firewalls", json=_firewall_body()).json()["firewall"]
    replacement = {
        "name": "shipyard-web-2",
        "inbound_rules": [{"protocol": "icmp", "ports": "0", "sources": {"addresses": ["::/0"]}}],
    }

    response = api.put(f"/v2/firewalls/{created['id']}", json=replacement)

    assert response.status_code == 200
    updated = response.json()["firewall"]
    assert (updated["id"], updated["created_at"]) == (created["id"], created["created_at"])
    assert updated["name"] == "shipyard-web-2"
    assert [r["protocol"] for r in updated["inbound_rules"]] == ["icmp"]
    assert updated["outbound_rules"] == []
    assert updated["tags"] == []


def test_a_firewall_update_needs_its_name(api: httpx.Client) -> None:
    created = api.post("/v2/firewalls", json=_firewall_body()).json()["firewall"]
    body = {k: v for k, v in _firewall_body().items() if k != "name"}
    response = api.put(f"/v2/firewalls/{created['id']}", json=body)
    assert _refusal(response, 400) == "name is required"


def test_a_deleted_firewall_is_gone(api: httpx.Client) -> None:
    created = api.post("/v2/firewalls", json=_firewall_body()).json()["firewall"]
    assert api.delete(f"/v2/firewalls/{created['id']}").status_code == 204
    assert api.get(f"/v2/firewalls/{created['id']}").status_code == 404
    assert api.put(f"/v2/firewalls/{created['id']}", json=_firewall_body()).status_code == 404


def _rule(**changes: Any) -> dict[str, Any]:
    return {"protocol": "tcp", "ports": "443", "sources": {"addresses": ["0.0.0.0/0"]}, **changes}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"inbound_rules": [_rule(protocol="http")]}, "inbound_rules[0].protocol must be tcp"),
        ({"inbound_rules": [_rule(ports=443)]}, "inbound_rules[0].ports must be a string"),
        ({"inbound_rules": [_rule(ports="1-70000")]}, "inbound_rules[0].ports"),
        ({"inbound_rules": [_rule(ports="any")]}, "inbound_rules[0].ports"),
        ({"inbound_rules": [{"protocol": "udp", "sources": {}}]}, "ports is required of a udp"),
        ({"inbound_rules": [_rule(action="drop")]}, "inbound_rules[0].action"),
        ({"inbound_rules": [_rule(sources=None)]}, "inbound_rules[0].sources must be an object"),
        ({"inbound_rules": [_rule(sources={"cidrs": []})]}, "sources.cidrs is not a field"),
        ({"inbound_rules": [_rule(port="443")]}, "inbound_rules[0].port is not a field"),
        ({"inbound_rules": None, "outbound_rules": None, "tags": ["x y"]}, "tags[0]"),
        ({"name": "-web"}, "name must begin"),
        ({"droplets": [1]}, "droplets is not a field"),
    ],
)
def test_a_bad_firewall_is_refused_with_400_naming_the_field(
    api: httpx.Client, body: dict[str, Any], named: str
) -> None:
    response = api.post("/v2/firewalls", json=_firewall_body(**body))
    assert named in _refusal(response, 400)


def test_a_firewall_without_rules_is_refused(api: httpx.Client) -> None:
    response = api.post("/v2/firewalls", json={"name": "empty"})
    assert "inbound_rules or outbound_rules" in _refusal(response, 400)


# --- Reserved IPs ---


def test_a_reserved_ip_created_for_a_droplet_is_assigned_to_it(
    standin: DoStandIn, api: httpx.Client
) -> None:
    droplet_id = _create_droplet(api)["id"]

    response = api.post("/v2/reserved_ips", json={"droplet_id": droplet_id})

    assert response.status_code == 202
    answer = response.json()
    reserved = answer["reserved_ip"]
    assert (reserved["droplet"], reserved["locked"]) == (None, True)  # the assignment under way
    assert reserved["region"]["slug"] == "fra1"
    assert answer["links"]["droplets"][0]["id"] == droplet_id
    assert answer["links"]["actions"][0]["rel"] == "assign_ip"
    [listed] = api.get("/v2/reserved_ips").json()["reserved_ips"]
    assert listed["ip"] == reserved["ip"]
    assert listed["droplet"]["id"] == droplet_id
    assert standin.reserved_ips[reserved["ip"]]["droplet"]["id"] == droplet_id


def test_a_reserved_ip_is_reserved_to_a_region(api: httpx.Client) -> None:
    response = api.post("/v2/reserved_ips", json={"region": "ams3"})
    assert response.status_code == 202
    reserved = response.json()["reserved_ip"]
    assert reserved["droplet"] is None
    assert reserved["region"]["slug"] == "ams3"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "exactly one of droplet_id"),
        ({"droplet_id": 1, "region": "ams3"}, "exactly one of droplet_id"),
        ({"droplet_id": "1"}, "droplet_id must be an integer"),
        ({"droplet_id": 999}, "droplet_id 999"),
        ({"region_slug": "ams3"}, "region_slug is not a field"),
    ],
)
def test_a_bad_reserved_ip_request_is_refused(
    api: httpx.Client, body: dict[str, Any], named: str
) -> None:
    assert named in _refusal(api.post("/v2/reserved_ips", json=body))


def test_a_reserved_ip_is_assigned_unassigned_and_deleted(
    standin: DoStandIn, api: httpx.Client
) -> None:
    droplet_id = _create_droplet(api)["id"]
    ip = api.post("/v2/reserved_ips", json={"region": "fra1"}).json()["reserved_ip"]["ip"]
    actions = f"/v2/reserved_ips/{ip}/actions"

    assigned = api.post(actions, json={"type": "assign", "droplet_id": droplet_id})
    unassigned = api.post(actions, json={"type": "unassign"})
    again = api.post(actions, json={"type": "unassign"})
    api.post(actions, json={"type": "assign", "droplet_id": droplet_id})
    deleted = api.delete(f"/v2/reserved_ips/{ip}")  # deleting an assigned one unassigns it

    assert assigned.status_code == 201
    action = assigned.json()["action"]
    assert (action["type"], action["status"], action["resource_type"]) == (
        "assign_ip",
        "in-progress",
        "reserved_ip",
    )
    assert api.get(f"/v2/actions/{action['id']}").json()["action"]["status"] == "completed"
    assert unassigned.status_code == 201
    assert unassigned.json()["action"]["type"] == "unassign_ip"
    assert "not assigned" in _refusal(again)
    assert deleted.status_code == 204
    assert standin.reserved_ips == {}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"type": "assign"}, "droplet_id is required"),
        ({"type": "move", "droplet_id": 1}, "type must be assign or unassign"),
        ({"droplet_id": 1}, "type is required"),
    ],
)
def test_a_bad_reserved_ip_action_is_refused(
    api: httpx.Client, body: dict[str, Any], named: str
) -> None:
    ip = api.post("/v2/reserved_ips", json={"region": "fra1"}).json()["reserved_ip"]["ip"]
    assert named in _refusal(api.post(f"/v2/reserved_ips/{ip}/actions", json=body))


def test_deleting_a_droplet_unassigns_its_reserved_ip(
    standin: DoStandIn, api: httpx.Client
) -> None:
    droplet_id = _create_droplet(api)["id"]
    ip = api.post("/v2/reserved_ips", json={"droplet_id": droplet_id}).json()["reserved_ip"]["ip"]
    api.delete(f"/v2/droplets/{droplet_id}")
    assert api.get(f"/v2/reserved_ips/{ip}").json()["reserved_ip"]["droplet"] is None


# --- Scripted failures ---


def test_fail_answers_the_next_matching_requests_then_stops(
    standin: DoStandIn, api: httpx.Client
) -> None:
    body = {"id": "server_error", "message": "Server Error"}
    standin.fail("POST", "/v2/droplets", 500, body, headers={"x-request-id": "r1"}, times=2)

    other = api.get("/v2/droplets")
    failed = [api.post("/v2/droplets", json=_droplet_body()) for _ in range(2)]
    created = api.post("/v2/droplets", json=_droplet_body())

    assert other.status_code == 200
    assert [(r.status_code, r.json(), r.headers["x-request-id"]) for r in failed] == [
        (500, body, "r1")
    ] * 2
    assert all(name in failed[0].headers for name in LIMIT_HEADERS)
    assert created.status_code == 202
    assert len(standin.droplets) == 1


def test_rate_limit_answers_429_with_the_limit_headers(
    standin: DoStandIn, api: httpx.Client
) -> None:
    standin.rate_limit(2, retry_after=3)

    limited = [api.get("/v2/droplets") for _ in range(2)]
    after = api.get("/v2/droplets")

    for response in limited:
        assert response.status_code == 429
        assert response.json() == {"id": "too_many_requests", "message": "API Rate limit exceeded."}
        assert response.headers["ratelimit-limit"] == "5000"
        assert response.headers["ratelimit-remaining"] == "0"
        assert int(response.headers["ratelimit-reset"]) > 1_700_000_000
        assert response.headers["retry-after"] == "3"
    assert after.status_code == 200


def test_rate_limit_without_retry_after_sends_no_retry_after(
    standin: DoStandIn, api: httpx.Client
) -> None:
    standin.rate_limit(1, retry_after=None)
    response = api.get("/v2/droplets")
    assert response.status_code == 429
    assert "retry-after" not in response.headers
