"""What lets a deploy skip the infrastructure's full check: the record of the last one still
holds (``infra_still_verified``), and the env file's password is the role's
(``verifier_matches``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from shipyard.database import scram_verifier, verifier_matches
from shipyard.docker import ContainerInfo
from shipyard.providers.docker._infrastructure import infra_still_verified

INFRA = "services:\n  db: {image: postgres}\n"
NETWORK = "shop-development"


def _container(role: str, **changes: object) -> ContainerInfo:
    info = ContainerInfo(
        id=f"{role}-id",
        name=f"shop-development-{role}",
        image_id="sha256:1",
        status="running",
        health="healthy" if role == "db" else None,
        exit_code=0,
        labels={"com.docker.compose.config-hash": f"{role}-hash"},
        addresses={} if role == "guard" else {NETWORK: "10.0.0.2"},
    )
    return replace(info, **changes)  # type: ignore[arg-type]


def _record(definition: str = INFRA) -> dict[str, object]:
    return {
        "definition": hashlib.sha256(definition.encode()).hexdigest(),
        "containers": {"proxy": "proxy-id", "guard": "guard-id", "db": "db-id"},
        "proxy_config_hash": "proxy-hash",
        "verified_at": "2026-01-01T00:00:00Z",
    }


def _found(**changes: ContainerInfo | None) -> dict[str, ContainerInfo | None]:
    found: dict[str, ContainerInfo | None] = {r: _container(r) for r in ("proxy", "guard", "db")}
    found.update(changes)
    return found


def test_the_same_definition_and_containers_as_verified_still_hold() -> None:
    assert infra_still_verified(_record(), INFRA, _found(), network=NETWORK)


@pytest.mark.parametrize(
    ("why", "record", "found"),
    [
        ("never checked", None, _found()),
        ("not a record", ["x"], _found()),
        ("definition changed", _record("services: {}\n"), _found()),
        ("database stopped", _record(), _found(db=_container("db", status="exited"))),
        ("database missing", _record(), _found(db=None)),
        ("database unhealthy", _record(), _found(db=_container("db", health="starting"))),
        ("database recreated", _record(), _found(db=_container("db", id="other"))),
        ("database off the network", _record(), _found(db=_container("db", addresses={}))),
        ("guard recreated", _record(), _found(guard=_container("guard", id="other"))),
        (
            "guard removed from the config",
            _record(),
            {"proxy": _container("proxy"), "db": _container("db")},
        ),
        ("proxy stopped", _record(), _found(proxy=_container("proxy", status="exited"))),
        (
            "proxy recreated from another definition",
            _record(),
            _found(
                proxy=_container(
                    "proxy", id="other", labels={"com.docker.compose.config-hash": "x"}
                )
            ),
        ),
    ],
)
def test_anything_changed_or_not_running_needs_the_full_check(
    why: str, record: object, found: dict[str, ContainerInfo | None]
) -> None:
    assert not infra_still_verified(record, INFRA, found, network=NETWORK), why


def test_a_proxy_started_later_from_the_same_definition_still_holds() -> None:
    """The first deploy's switch starts the proxy after the infrastructure was checked: it is
    known by the hash Compose labels it with."""
    started_later = _container("proxy", id="started-at-the-switch")
    assert infra_still_verified(_record(), INFRA, _found(proxy=started_later), network=NETWORK)


def test_the_password_is_checked_against_the_roles_verifier() -> None:
    verifier = scram_verifier("s3cret pässword")
    assert verifier_matches(verifier, "s3cret pässword") is True
    assert verifier_matches(verifier, "s3cret password") is False
    # Cannot tell: the full check (a login as the app) decides.
    assert verifier_matches(None, "x") is None
    assert verifier_matches("md5" + "0" * 32, "x") is None
    assert verifier_matches("SCRAM-SHA-256$bad", "x") is None
    assert verifier_matches("SCRAM-SHA-256$4096:!!notbase64$a:b", "x") is None
