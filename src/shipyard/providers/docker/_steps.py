"""``DockerSteps``: the deploy steps on one Docker host, composed of one class per capability."""

from __future__ import annotations

from shipyard.providers.docker._delivery import Delivery
from shipyard.providers.docker._infrastructure import Infrastructure
from shipyard.providers.docker._migrations import Migrations
from shipyard.providers.docker._observation import Observation
from shipyard.providers.docker._repair import Repair
from shipyard.providers.docker._rotation import Rotation
from shipyard.providers.docker._slots import Slots
from shipyard.providers.docker._traffic import Traffic


class DockerSteps(
    Delivery, Infrastructure, Migrations, Rotation, Slots, Traffic, Observation, Repair
):
    """The deploy steps on one Docker host."""
