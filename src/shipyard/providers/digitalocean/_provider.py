"""The DigitalOcean provider: the Docker provider on the environment's Droplet (reached over SSH
as any ssh:// host), and the Droplet's resources on DigitalOcean around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shipyard.config import Config, DigitalOceanSection
from shipyard.deploy import OperationContext
from shipyard.errors import ConfigError
from shipyard.providers._actions import carry_out
from shipyard.providers.digitalocean._api import DoApi
from shipyard.providers.digitalocean._cluster import DoCluster
from shipyard.providers.digitalocean._droplet import DoNames, DoResources
from shipyard.providers.docker import Destroyed, DockerProvider, DockerSteps, libpq_env
from shipyard.secrets import EnvFileBackend


def settings_of(config: Config) -> DigitalOceanSection:
    """``providers.digitalocean`` of the environment (validated by the loader)."""
    return DigitalOceanSection.model_validate(config.providers.get("digitalocean") or {})


def resources(config: Config, *, known_hosts: Path | None = None) -> DoResources:
    """The environment's resources on DigitalOcean, through the API at ``api_url`` with the
    token of ``DIGITALOCEAN_TOKEN``; ``known_hosts``: where a new Droplet's host key is trusted
    (default ssh's own)."""
    settings = settings_of(config)
    names = DoNames(config.app.name, config.environment.name)
    region = config.environment.target.removeprefix("do://")
    api = DoApi.from_environment(settings.api_url)
    return DoResources(
        names,
        settings,
        region,
        api,
        public_key=config.root / Path(settings.ssh_public_key).expanduser(),
        known_hosts=known_hosts or Path("~/.ssh/known_hosts").expanduser(),
        config_file=str(config.path),
        cluster=_cluster(config, names, region, api),
    )


def _cluster(config: Config, names: DoNames, region: str, api: DoApi) -> DoCluster | None:
    section = settings_of(config).database
    if section is None:
        return None
    if config.database is None:
        raise ConfigError.at(
            str(config.path),
            "providers.digitalocean.database",
            "a database cluster needs a `database:` section (its name, extensions, migrations)",
        )
    return DoCluster(
        section, name=names.droplet, tag=names.tag, region=region,
        database=config.database.name, api=api, config_file=str(config.path),
    )  # fmt: skip


def with_cluster_url(config: Config, *, missing_ok: bool = False) -> Config:
    """``config`` with the cluster's URL as the app's database URL (``database.url_env``), as
    if the env file said it, when the environment's database is a cluster; the masker learns
    it. Read from DigitalOcean's API. ``missing_ok``: a cluster that is not there leaves
    ``config`` as it is (destroy); otherwise it is an error saying how to make it."""
    if settings_of(config).database is None or config.database is None:
        return config
    cloud = resources(config)
    try:
        assert cloud.cluster is not None  # noqa: S101 — settings.database is set
        if missing_ok and cloud.cluster.find() is None:
            return config
        url = cloud.cluster.url()
    finally:
        cloud.api.close()
    config.masker.add(url)
    password = libpq_env(url).get("PGPASSWORD")
    if password:
        config.masker.add(password)
    values = {**config.secrets.items(), config.database.url_env: url}
    return dataclasses.replace(config, secrets=EnvFileBackend(values))


def droplet_target(config: Config, droplet: DoResources) -> str | None:
    """The environment's Droplet as an ssh:// target (``None``: it does not exist yet)."""
    address = droplet.address()
    if address is None:
        return None
    host = f"[{address}]" if ":" in address else address
    return f"ssh://{settings_of(config).user}@{host}"


class DigitalOceanProvider(DockerProvider):
    """The Docker provider on the Droplet; destroy also deletes the Droplet's resources when
    nothing on its disk is to be kept. With a cluster for the database, its steps see the
    cluster's URL as the env file's database URL: an external database, reached from the
    Droplet (read from the API once per operation)."""

    # The operation's config, and the same with the cluster's URL (read once per operation).
    _config: tuple[Config, Config] | None = None

    def steps(self, ctx: OperationContext) -> DockerSteps:
        if self._config is None or self._config[0] is not ctx.config:
            self._config = (ctx.config, with_cluster_url(ctx.config))
        return DockerSteps(dataclasses.replace(ctx, config=self._config[1]), self.host)

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed:
        """The Docker provider's destroy on the Droplet; then, with ``volumes`` and
        ``snapshots`` (the database and its backups go: nothing on the disk is kept), the
        reserved IP, the firewall and the Droplet. Otherwise the Droplet is kept, and said so.
        A cluster deleted meanwhile does not stand in the way."""
        self._config = (ctx.config, with_cluster_url(ctx.config, missing_ok=True))
        destroyed = super().cleanup(ctx, volumes=volumes, snapshots=snapshots)
        cloud = resources(ctx.config)
        try:
            if volumes and snapshots:
                destroyed.removed.extend(str(action) for action in carry_out(cloud.removal()))
            elif cloud.cluster is not None and cloud.cluster.owned and cloud.cluster.find():
                destroyed.kept.append(
                    f"database cluster {cloud.cluster.name} and Droplet {cloud.names.droplet} "
                    "(the database, and the snapshots on the Droplet's disk); `--volumes "
                    "--snapshots` deletes them with the firewall and reserved IP"
                )
            elif cloud.droplet() is not None:
                held = "the database" + ("" if volumes else " volume") + " and the snapshots"
                destroyed.kept.append(
                    f"Droplet {cloud.names.droplet}: its disk holds "
                    f"{'the snapshots' if cloud.cluster else held}; `--volumes --snapshots` "
                    "deletes it with its firewall and reserved IP"
                )
        finally:
            cloud.api.close()
        return destroyed
