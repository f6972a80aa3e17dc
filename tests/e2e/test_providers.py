"""SC-005: the reference app's shipyard.yml deploys with the same command, ``shipyard deploy
production``, to every provider; between them only production's ``target`` changes (and an
ssh:// target's key and known_hosts, in ``providers.ssh``), with the credentials in the
environment. Each provider's world, and what stands in there for what cannot run here, is
``tests.e2e.providers``."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from shipyard.waiting import Interval, wait_until
from tests.e2e.providers import PROVIDERS, WORLDS, World
from tests.example_app import EXAMPLE

# Where one provider's shipyard.yml may differ from the example's: the app's name (each test
# deploys its own), production's target, and for ssh:// the key and known_hosts of the test's
# own sshd.
_MAY_DIFFER = {"app.name", "environments.production.target"}
_MAY_DIFFER_FOR = {"ssh": {"providers.ssh"}}


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Every scalar of a YAML document under its dotted path (a list is a scalar here)."""
    if isinstance(node, dict):
        found: dict[str, Any] = {}
        for key, value in node.items():
            found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: node}


def _differences(example: Path, copy: Path) -> set[str]:
    """The dotted paths where ``copy`` differs from ``example`` (both read as written: no
    ``${VAR}`` is resolved)."""
    yaml = YAML(typ="safe")
    ours, theirs = _leaves(yaml.load(example)), _leaves(yaml.load(copy))
    return {path for path in ours.keys() | theirs.keys() if ours.get(path) != theirs.get(path)}


def _within(paths: set[str], allowed: set[str]) -> bool:
    return all(any(p == a or p.startswith(a + ".") for a in allowed) for p in paths)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_example_deploys_with_the_same_command_on_every_provider(
    provider: str, tmp_path: Path, docker_engine: None
) -> None:
    app = f"s{provider[:2]}{secrets.token_hex(3)}"
    world: World
    with WORLDS[provider](tmp_path, app) as world:
        changed = _differences(EXAMPLE / "shipyard.yml", world.where / "shipyard.yml")
        assert "environments.production.target" in changed or provider == "local"
        assert _within(changed, _MAY_DIFFER | _MAY_DIFFER_FOR.get(provider, set())), changed

        world.prepare()  # do://: `shipyard provision` makes the Droplet, as for an ssh:// host
        deployed = world.shipyard("deploy", "production", "--no-watch")
        assert deployed.returncode == 0, deployed.stderr + deployed.stdout
        head = world.head()
        served = wait_until(world.served, timeout=60, interval=Interval(0.5, 1.5, 3.0),
                            done=lambda commit: commit == head)  # fmt: skip
        assert served == head, f"/version through {provider}'s front: {world.served()!r}"

        status = world.shipyard("status", "production", "--json")
        assert status.returncode == 0, status.stderr
        [report] = json.loads(status.stdout)
        assert (report["health"], report["commit"]) == ("healthy", head), report
        history = world.shipyard("history", "production", "--json")
        assert history.returncode == 0, history.stderr
        assert [(h["action"], h["result"], h["commit"]) for h in json.loads(history.stdout)] == [
            ("deploy", "succeeded", head)
        ]
