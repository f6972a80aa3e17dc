"""The DigitalOcean provider: an environment whose target is ``do://<region>`` runs on a Droplet
shipyard creates (or adopts: the one tagged as the environment's), behind a cloud firewall,
then provisioned and deployed over SSH by the Docker provider, so every Docker feature applies
unchanged; with ``database``, the database is a Managed PostgreSQL cluster (``DoCluster``),
reached as an external one. ``droplet_target`` names the Droplet as an ssh:// target;
``resources`` gives the environment's resources on DigitalOcean."""

from shipyard.providers.digitalocean._api import (
    TOKEN_ENV,
    DoApi,
    DoError,
    LimitReached,
    RateLimited,
)
from shipyard.providers.digitalocean._cluster import ClusterNotReady, DoCluster
from shipyard.providers.digitalocean._droplet import DoNames, DoResources, DropletNotReady
from shipyard.providers.digitalocean._provider import (
    DigitalOceanProvider,
    droplet_target,
    resources,
)

__all__ = [
    "TOKEN_ENV",
    "ClusterNotReady",
    "DigitalOceanProvider",
    "DoApi",
    "DoCluster",
    "DoError",
    "DoNames",
    "DoResources",
    "DropletNotReady",
    "LimitReached",
    "RateLimited",
    "droplet_target",
    "resources",
]
