"""The ``docker`` provider: any host with a Docker engine (local, VPS, bare metal, any cloud VM).

``DockerProvider`` (``_provider``) hands the pipeline ``DockerSteps`` (``_steps``), composed of
one class per capability on a shared base (``_base``): ``_delivery``, ``_infrastructure``,
``_migrations``, ``_rotation``, ``_slots``, ``_traffic``, ``_observation``, ``_repair``. The
stack they run is named in ``_names``, rendered in ``_stack`` and ``_env``; ``_network`` and
``_ports`` check the host before it changes; ``_plan``, ``_status``, ``_destroy`` and
``_database`` serve the provider's other commands.
"""

from __future__ import annotations

from shipyard.providers.docker._base import engine_ready
from shipyard.providers.docker._database import DatabaseOperations, PruneResult, RestoreResult
from shipyard.providers.docker._destroy import Destroyed, SnapshotFiles
from shipyard.providers.docker._env import libpq_env
from shipyard.providers.docker._plan import plan_lock_and_repair, plan_rollback_choice
from shipyard.providers.docker._ports import proxy_ports, taken_ports
from shipyard.providers.docker._provider import DockerProvider
from shipyard.providers.docker._status import Status, recorded
from shipyard.providers.docker._steps import DockerSteps

__all__ = [
    "DatabaseOperations",
    "Destroyed",
    "DockerProvider",
    "DockerSteps",
    "PruneResult",
    "RestoreResult",
    "SnapshotFiles",
    "Status",
    "engine_ready",
    "libpq_env",
    "plan_lock_and_repair",
    "plan_rollback_choice",
    "proxy_ports",
    "recorded",
    "taken_ports",
]
