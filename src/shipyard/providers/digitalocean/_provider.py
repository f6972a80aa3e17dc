"""The DigitalOcean provider: the Docker provider on the environment's Droplet (reached over SSH
as any ssh:// host), and the Droplet's resources on DigitalOcean around it."""

from __future__ import annotations

from pathlib import Path

from shipyard.config import Config, DigitalOceanSection
from shipyard.deploy import OperationContext
from shipyard.providers._actions import carry_out
from shipyard.providers.digitalocean._api import DoApi
from shipyard.providers.digitalocean._droplet import DoNames, DoResources
from shipyard.providers.docker import Destroyed, DockerProvider


def settings_of(config: Config) -> DigitalOceanSection:
    """``providers.digitalocean`` of the environment (validated by the loader)."""
    return DigitalOceanSection.model_validate(config.providers.get("digitalocean") or {})


def resources(config: Config, *, known_hosts: Path | None = None) -> DoResources:
    """The environment's resources on DigitalOcean, through the API at ``api_url`` with the
    token of ``DIGITALOCEAN_TOKEN``; ``known_hosts``: where a new Droplet's host key is trusted
    (default ssh's own)."""
    settings = settings_of(config)
    return DoResources(
        DoNames(config.app.name, config.environment.name),
        settings,
        config.environment.target.removeprefix("do://"),
        DoApi.from_environment(settings.api_url),
        public_key=config.root / Path(settings.ssh_public_key).expanduser(),
        known_hosts=known_hosts or Path("~/.ssh/known_hosts").expanduser(),
        config_file=str(config.path),
    )


def droplet_target(config: Config, droplet: DoResources) -> str | None:
    """The environment's Droplet as an ssh:// target (``None``: it does not exist yet)."""
    address = droplet.address()
    if address is None:
        return None
    host = f"[{address}]" if ":" in address else address
    return f"ssh://{settings_of(config).user}@{host}"


class DigitalOceanProvider(DockerProvider):
    """The Docker provider on the Droplet; destroy also deletes the Droplet's resources when
    nothing on its disk is to be kept."""

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed:
        """The Docker provider's destroy on the Droplet; then, with ``volumes`` and
        ``snapshots`` (the database and its backups go: nothing on the disk is kept), the
        reserved IP, the firewall and the Droplet. Otherwise the Droplet is kept, and said so."""
        destroyed = super().cleanup(ctx, volumes=volumes, snapshots=snapshots)
        cloud = resources(ctx.config)
        try:
            if volumes and snapshots:
                destroyed.removed.extend(str(action) for action in carry_out(cloud.removal()))
            elif cloud.droplet() is not None:
                destroyed.kept.append(
                    f"Droplet {cloud.names.droplet}: its disk holds the database"
                    f"{'' if volumes else ' volume'} and the snapshots; `--volumes --snapshots` "
                    "deletes it with its firewall and reserved IP"
                )
        finally:
            cloud.api.close()
        return destroyed
