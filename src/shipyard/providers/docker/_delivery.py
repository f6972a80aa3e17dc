"""Delivery and platform checks: the host's engine as operations need it, and the app and
support images sent to it."""

from __future__ import annotations

from shipyard.build import Image
from shipyard.delivery import DeliveryError, StderrProgress, deliver
from shipyard.docker import Docker, EngineInfo
from shipyard.hosts import LocalHost
from shipyard.providers.docker._base import StepsBase, engine_ready, infra_digest
from shipyard.providers.docker._stack import to_yaml


class Delivery(StepsBase):
    """The ``preflight`` and ``deliver`` steps."""

    def preflight(self) -> str:
        """The engine, Compose when the operation will run it, and the proxy's ports."""
        if self._runs_compose():
            found = self.compose_ready()
        else:
            found = engine_ready(self.engine, self.host.name, compose=False)
            found += " (compose not needed: the infrastructure is as last verified)"
        self._refuse_taken_ports()
        return found

    def _runs_compose(self) -> bool:
        """Whether this operation is expected to run Compose: always on a remote host (a new
        version's container is started by ``compose up`` there); on this machine's engine only
        when the infrastructure differs from the definition last verified (the proxy or database
        are then created or recreated). Wherever Compose runs unexpectedly (a container of the
        infrastructure went missing since), ``compose_ready`` is asked first."""
        if self.docker.api is None:
            return True
        record = self._verified_record()
        return record is None or record.get("definition") != infra_digest(to_yaml(self._infra()))

    def deliver(self, image: Image) -> str:
        """Send the app image, then the support images the host lacks. An image built for
        another platform than the host's engine (an arm64 laptop, an amd64 server) is refused
        before anything is sent: it would stop at "exec format error" once started."""
        if isinstance(self.host, LocalHost):
            return f"{image.tag} built on this engine"
        engine = self.engine
        built = Docker(self.ctx.local).image(image.id)
        if built is not None and not built.runs_on(engine):
            raise DeliveryError(
                f"{image.tag} is built for {built.platform} (this machine's engine) but "
                f"{self.host.name} runs {engine.platform}: its containers would fail with "
                "'exec format error'",
                hint=f"deploy from a machine or CI runner whose Docker engine is {engine.platform}, "
                "or with DOCKER_HOST pointing at such an engine: the image is built for the "
                "engine that builds it",
            )
        delivered = deliver(
            image.tag,
            image.id,
            self.ctx.local,
            self.host,
            registry=self.config.deploy.registry,
            secrets=self.config.secrets,
            progress=StderrProgress(f"deliver {image.tag} to {self.host.name}"),
        )
        return "; ".join([f"{image.tag}: {delivered}", *self._deliver_support_images(engine)])

    def _support_images(self) -> list[str]:
        """The images next to the app's: proxy, database, golang-migrate."""
        refs = [self.config.proxy.image]
        if self.config.deploy.guard_image:
            refs.append(self.config.deploy.guard_image)
        database = self.config.database
        if database is not None:
            if self._database() is not None:
                refs.append(database.image)
            if database.migrations is not None:
                refs.append(database.migrations.image)
        return list(dict.fromkeys(refs))

    def _deliver_support_images(self, engine: EngineInfo) -> list[str]:
        """Support images the host lacks are streamed from the operator's engine when it has
        them for the host's platform (hosts without registry access get everything they need);
        the others are left for the host to pull, which picks its own platform."""
        here, done = Docker(self.ctx.local), []
        for ref in self._support_images():
            if self.docker.image(ref) is not None:
                continue
            local = here.image(ref)
            if local is None:
                done.append(f"{ref}: pulled by {self.host.name}")
                continue
            if not local.runs_on(engine):
                done.append(
                    f"{ref}: pulled by {self.host.name} ({engine.platform}; "
                    f"this machine's copy is {local.platform})"
                )
                continue
            delivered = deliver(
                ref,
                local.id,
                self.ctx.local,
                self.host,
                progress=StderrProgress(f"deliver {ref} to {self.host.name}"),
            )
            done.append(f"{ref}: {delivered}")
        return done
