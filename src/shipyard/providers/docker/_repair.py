"""Repair and upkeep: what interrupted operations left, one serving version, and what a
finished or failed operation forgets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath

from shipyard.errors import ShipyardError
from shipyard.providers.docker._base import StepsBase
from shipyard.providers.docker._names import LABEL
from shipyard.state import Release, now_iso


class Repair(StepsBase):
    """The steps of ``deploy.RepairSteps``, ``prune`` and ``leftovers``."""

    def prune(self, dropped: list[Release], kept: list[Release]) -> None:
        """Forget what no retained release needs: the dropped releases' images, every file kept
        for a release that is no longer retained (env files, migration copies), and orphaned
        temporary files of interrupted writes. (Deployment logs: ``events.DeploymentLog``.)"""
        in_use = {r.image_id for r in kept} | {r.image for r in kept}
        for release in dropped:
            if release.image_id not in in_use and release.image not in in_use:
                self.docker.remove_image(release.image)
        retained = {r.id for r in kept}
        for directory, suffix in (
            (self.layout.releases, ".env"),
            (self.layout.migration_copies, ""),
        ):
            for name in self._listing(directory):
                if name.removesuffix(suffix) not in retained and name.endswith(suffix):
                    self.host.run(["rm", "-rf", str(directory / name)], check=False)
        self.host.run(
            # A write is a temporary ".<name>.<random>" file renamed over its target; one whose
            # writer was killed stays behind.
            [
                "find",
                str(self.layout.root),
                "-type",
                "f",
                "-name",
                ".*.*",
                "-mmin",
                "+10",
                "-delete",
            ],
            check=False,
        )

    def _listing(self, directory: PurePosixPath) -> list[str]:
        result = self.host.run(["ls", "-1", "-A", str(directory)], check=False)
        return result.stdout.split() if result.ok else []

    def leftovers(self) -> list[str]:
        """What of the environment's stack exists on the host, the app's slots aside."""
        found = [
            f"{what} container {name}"
            for what, name in (
                ("database", self.names.database),
                ("proxy", self.names.proxy),
                ("guard", self.names.guard),
            )
            if self.docker.container(name) is not None
        ]
        if self.names.network in self.docker.networks():
            found.append(f"network {self.names.network}")
        volumes = set(self.docker.volumes())
        found += [f"volume {v}" for v in self.names.volumes.values() if v in volumes]
        return found

    def discard(self, release: Release, *, image: bool) -> str:
        """Forget a release that never went live (a failed or interrupted deploy): its env file,
        its migration copy and, when that operation built it (``image``), its image — unless a
        retained release uses it."""
        kept = self.ctx.store.releases()
        if any(r.id == release.id for r in kept):
            return f"release {release.id} is retained"
        self._fence()
        self.host.run(["rm", "-f", str(self.layout.release_env(release.id))], check=False)
        if self.docker.container(self.names.migrate(release.id)) is None:
            # (while its golang-migrate container is kept, the files it ran are read again)
            self.host.run(["rm", "-rf", str(self.layout.migrations(release.id))], check=False)
        in_use = {r.image_id for r in kept} | {r.image for r in kept}
        if image and release.image not in in_use and release.image_id not in in_use:
            self.docker.remove_image(release.image)  # kept while a container uses it
            return f"removed {release.image} and the files of release {release.id}"
        return f"removed the files of release {release.id}"

    def recover(self) -> list[str]:
        """What interrupted operations left on the host: read how their golang-migrate
        containers ended (waiting for a running one), make the schema clean where that is safe,
        and remove them; remove snapshot dumps that were cut short."""
        database, section = self._database(), self.config.database
        if database is None or section is None:
            return []
        snapshots = self._snapshots()
        found = [
            f"removed {name}: a snapshot dump cut short"
            for name in (snapshots.remove_partial() if snapshots is not None else [])
        ]
        labels = self.names.labels(role="migrate")
        for info in self.docker.labelled(labels):
            deployment = info.labels.get(f"{LABEL}.deployment", "")
            copy = self.layout.migrations(deployment)
            files = {}
            for name in self._listing(copy):
                version, _, rest = name.partition("_")
                if version.isdigit() and rest.endswith(".up.sql"):
                    files[int(version)] = (self.host.get(copy / name) or b"").decode()
            self._fence()
            timeout = section.migrations.timeout if section.migrations else 600
            outcome = database.migration_outcome(info.name, files, timeout=timeout)
            if outcome is not None:
                found.append(outcome)
        return found

    def serve(self, slot: str) -> str:
        """Make ``slot``'s container the only one the proxy routes to: started and health-gated
        first unless it is already the one serving."""
        info = self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container")
        if info.running and info.name == self.names.live:
            return f"{info.name} (slot {slot}) serves"
        done = ""
        if not info.running:
            self._fence()
            self.docker.start(info.name)
            done = "started, "
        done += f"health-gated ({self.gate(slot)}), "
        self.switch(slot)
        return f"slot {slot} {done}serves as {self.names.live}"

    def tidy(self, current: str | None) -> list[str]:
        """With no operation in progress: a live container stopped outside shipyard is started
        again, a switch cut short between its renames is finished (the slot the state names, if it
        runs, takes the live name), and an app container running beside the live one (a candidate
        of an interrupted operation) is stopped. ``current``: the slot the state says is live."""
        done: list[str] = []
        live = self.docker.container(self.names.live)
        if live is not None:
            self._settle_switching()
        if live is not None and not live.running:
            self._fence()
            self.docker.start(live.name)
            slot = live.labels.get(f"{LABEL}.slot", "?")
            done.append(f"started {live.name} (slot {slot}): it had been stopped outside shipyard")
        running = self._running_slots()
        if live is None and running:
            slots = [info.labels.get(f"{LABEL}.slot", "") for info in running]
            slot = current if current in slots else slots[-1]
            self.switch(slot)
            done.append(f"finished a switch cut short: slot {slot} serves as {self.names.live}")
            running = self._running_slots()  # renamed by the switch
        for info in running:
            if info.name != self.names.live:
                slot = info.labels.get(f"{LABEL}.slot", "")
                done.append(f"{self.park(slot)}: it ran beside the live version")
        return done

    def live_release(self) -> Release | None:
        """The release the container carrying the live name runs, read from its labels."""
        info = self.docker.container(self.names.live)
        if info is None:
            return None
        labels = info.labels
        known = self.ctx.store.release(labels.get(f"{LABEL}.release", ""))
        slot = labels.get(f"{LABEL}.slot", "blue")
        if known is not None:
            return replace(known, slot=slot)
        image = self.docker.container_image(info.name)
        return Release(
            id=labels.get(f"{LABEL}.release", info.id[:12]),
            version=labels.get(f"{LABEL}.version", "unknown"),
            commit=labels.get(f"{LABEL}.commit", "unknown"),
            image=image,
            image_id=info.image_id,
            slot=slot,
            migration_version=None,
            created_at=now_iso(),
            deployed_by="unknown",
        )
