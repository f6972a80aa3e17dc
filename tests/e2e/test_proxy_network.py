"""Behind shipyard's proxy the app sees each client's own address: `proxy.subnet` pins the
environment network, `${SHIPYARD_PROXY_CIDR}` gives it to the app as the range it trusts
X-Forwarded-For from, and the proxy replaces whatever X-Forwarded-For a client sends. A subnet
that cannot be the environment network's stops the deploy with exit 3 before any change."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any

import httpx

from tests.e2e.conftest import (
    AppUnderTest,
    container_env,
    container_id,
    engine_snapshot,
    free_subnet,
    network_subnets,
)

SPOOFED = "203.0.113.66"


def _client(app: AppUnderTest, **headers: str) -> dict[str, Any]:
    response = httpx.get(app.url("/client"), headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_app_sees_each_client_through_the_proxy_and_no_spoofed_address(
    app: AppUnderTest,
) -> None:
    """An environment deployed before `proxy.subnet` existed: pinning another subnet is refused
    (its network is never recreated under its containers); pinning the one it has keeps every
    container and gives the app `${SHIPYARD_PROXY_CIDR}`."""
    app.commit("unpinned")
    assert app.shipyard("deploy", app.environment).returncode == 0
    network = f"{app.name}-{app.environment}"
    (existing,) = network_subnets()[network]
    database = container_id(f"{network}-db")
    live = container_id(f"{network}-live")

    other = free_subnet()

    def pin(subnet: str) -> None:
        def change(document: Any) -> None:
            document["proxy"]["subnet"] = subnet
            document["app"]["env"]["TRUSTED_PROXY_CIDRS"] = "${SHIPYARD_PROXY_CIDR}"

        app.edit(change)
        app.commit(f"proxy.subnet {subnet}")

    pin(other)
    before = engine_snapshot(app.name)
    refused = app.shipyard("deploy", app.environment)
    assert refused.returncode == 3, refused.stderr
    assert f"network {network} exists with subnet {existing}, not {other}" in refused.stderr
    assert f"proxy.subnet: {existing}" in refused.stderr  # the hint: pin what it has
    assert engine_snapshot(app.name) == before
    assert container_id(f"{network}-live") == live
    checked = app.shipyard("check", app.environment)
    assert checked.returncode == 3 and "exists with subnet" in checked.stderr, checked.stderr

    pin(existing)
    deployed = app.shipyard("deploy", app.environment, "--no-watch")
    assert deployed.returncode == 0, deployed.stderr
    assert container_id(f"{network}-db") == database  # nothing recreated for the pin
    assert network_subnets()[network] == [existing]
    env = container_env(
        subprocess.run(
            ["docker", "inspect", f"{network}-live"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert env["TRUSTED_PROXY_CIDRS"] == existing

    answer = _client(app)
    subnet = ipaddress.ip_network(existing)
    assert ipaddress.ip_address(answer["remote_addr"]) in subnet  # the proxy, on the network
    assert answer["trusted_proxy"] is True
    # The client address is the one X-Forwarded-For carries: what the proxy saw connecting.
    assert answer["x_forwarded_for"] == [answer["client_ip"]]
    assert answer["client_ip"] != answer["remote_addr"]
    assert answer["x_real_ip"] == answer["client_ip"]
    assert answer["x_forwarded_proto"] == "http"
    assert answer["x_forwarded_host"] == f"127.0.0.1:{app.http_port}"

    spoofed = _client(
        app,
        **{
            "X-Forwarded-For": SPOOFED,
            "X-Real-IP": SPOOFED,
            "Forwarded": f"for={SPOOFED}",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
        },
    )
    assert spoofed["client_ip"] == answer["client_ip"]
    assert spoofed["x_forwarded_for"] == [answer["client_ip"]]
    assert SPOOFED not in json.dumps(spoofed)
    assert spoofed["x_forwarded_host"] == f"127.0.0.1:{app.http_port}"
    assert spoofed["x_forwarded_proto"] == "http"


def test_a_pinned_subnet_is_created_and_one_that_overlaps_another_network_is_refused(
    app: AppUnderTest,
) -> None:
    subnet = free_subnet()
    blocker = f"{app.name}-blocker"
    half = str(next(ipaddress.ip_network(subnet).subnets(new_prefix=25)))
    subprocess.run(
        ["docker", "network", "create", "--subnet", half, blocker], capture_output=True, check=True
    )
    try:

        def change(document: Any) -> None:
            document["proxy"]["subnet"] = subnet
            document["app"]["env"]["TRUSTED_PROXY_CIDRS"] = "${SHIPYARD_PROXY_CIDR}"

        app.edit(change)
        app.commit("pinned")
        before = engine_snapshot(app.name)
        refused = app.shipyard("deploy", app.environment)
        assert refused.returncode == 3, refused.stderr
        assert f"proxy.subnet: {subnet} overlaps network {blocker} ({half})" in refused.stderr
        after = engine_snapshot(app.name)
        assert after == before, "nothing was created"
    finally:
        subprocess.run(["docker", "network", "rm", blocker], capture_output=True, check=False)

    deployed = app.shipyard("deploy", app.environment)
    assert deployed.returncode == 0, deployed.stderr
    network = f"{app.name}-{app.environment}"
    assert network_subnets()[network] == [subnet]
    answer = _client(app, **{"X-Forwarded-For": SPOOFED})
    assert ipaddress.ip_address(answer["remote_addr"]) in ipaddress.ip_network(subnet)
    assert answer["client_ip"] not in (SPOOFED, answer["remote_addr"])

    destroyed = app.shipyard("destroy", app.environment, "--yes", "--volumes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert network not in network_subnets()
