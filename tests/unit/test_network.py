"""`proxy.subnet`: checked against the host's networks before anything changes, and the network
shipyard creates for it."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from shipyard.config import load_config
from shipyard.docker import parse_network_subnets
from shipyard.providers.docker._names import Layout, Names
from shipyard.providers.docker._network import subnet_problems
from shipyard.providers.docker._stack import render_infra
from tests.bad_configs import ENV_FILE, VALID

NETWORK = "shop-development"


def test_a_free_subnet_or_the_networks_own_has_no_problem() -> None:
    existing = {"bridge": ["172.17.0.0/16"], "host": [], "other": ["10.201.8.0/24"]}
    assert subnet_problems("10.201.7.0/24", NETWORK, existing) == []
    assert subnet_problems("10.201.7.0/24", NETWORK, {**existing, NETWORK: ["10.201.7.0/24"]}) == []


def test_the_environments_network_with_another_subnet_is_never_recreated() -> None:
    problems = subnet_problems("10.201.7.0/24", NETWORK, {NETWORK: ["172.22.0.0/16"]})
    assert problems == [
        "proxy.subnet: network shop-development exists with subnet 172.22.0.0/16, not "
        "10.201.7.0/24: shipyard does not recreate a network its containers are attached to"
    ]


def test_every_network_it_overlaps_is_named() -> None:
    existing = {
        "wide": ["10.0.0.0/8"],
        "inside": ["10.201.7.128/25"],
        "v6": ["fd00::/64"],
        "elsewhere": ["192.168.1.0/24"],
    }
    assert subnet_problems("10.201.7.0/24", NETWORK, existing) == [
        "proxy.subnet: 10.201.7.0/24 overlaps network inside (10.201.7.128/25)",
        "proxy.subnet: 10.201.7.0/24 overlaps network wide (10.0.0.0/8)",
    ]


def test_parse_network_subnets() -> None:
    inspect = json.dumps(
        [
            {"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "x"}]}},
            {"Name": "host", "IPAM": {"Config": []}},
            {"Name": "none", "IPAM": {"Config": None}},
            {
                "Name": "dual",
                "IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}, {"Subnet": "fd00::/64"}]},
            },
        ]
    )
    assert parse_network_subnets(inspect) == {
        "bridge": ["172.17.0.0/16"],
        "host": [],
        "none": [],
        "dual": ["10.1.0.0/24", "fd00::/64"],
    }


def test_a_pinned_subnet_makes_the_network_shipyards_not_composes(tmp_path: Path) -> None:
    """Compose recreates a network whose definition changed, stopping every container on it:
    with `proxy.subnet` shipyard creates the network and Compose only uses it."""
    (tmp_path / "shipyard.yml").write_text(
        VALID.replace("  http_port: 18080\n", "  http_port: 18080\n  subnet: 10.201.7.0/24\n")
    )
    (tmp_path / ".env.development").write_text(ENV_FILE)
    config = load_config(tmp_path / "shipyard.yml", "development", process_env={})
    names = Names("shop", "development")
    infra = render_infra(config, names, Layout(PurePosixPath("/state/shop/development")))
    assert infra["networks"] == {"app": {"name": NETWORK, "external": True}}
