"""The app's slots: starting a release in one, taking one out of service, and the health gate."""

from __future__ import annotations

from shipyard.docker import ContainerInfo
from shipyard.errors import DeployFailed, ShipyardError
from shipyard.health import build_checks, wait_healthy
from shipyard.providers.docker._base import StepsBase
from shipyard.providers.docker._env import (
    app_env,
    as_compose_env,
    compose_env_file_text,
    compose_env_values,
)
from shipyard.providers.docker._names import LABEL
from shipyard.providers.docker._stack import render_slot, slot_container_body, to_yaml
from shipyard.state import Release


class Slots(StepsBase):
    """The ``start_slot``, ``remove_slot`` and ``gate`` steps, and ``park``."""

    def start_slot(self, slot: str, release: Release) -> str:
        container = self.names.slot(slot)
        kept = self.slot_container(slot)
        if kept is not None and kept.name == self.names.live:
            raise DeployFailed("start", f"slot {slot} is the live slot; refusing to replace it")
        self._fence()
        if kept is not None and kept.labels.get(f"{LABEL}.release") == release.id:
            # The release's own container, kept stopped for exactly this: start it as it was.
            try:
                self.docker.start(container)
            except ShipyardError as exc:
                raise DeployFailed("start", f"slot {slot} did not start: {exc.message}") from exc
            return f"{container} restarted ({release.image})"
        # A release runs with the environment it was first deployed with: a rollback brings back
        # exactly that, not whatever the config says today.
        saved = self.layout.release_env(release.id)
        env = self.host.get(saved)
        if env is not None:
            env = as_compose_env(env.decode(), source=str(saved)).encode()
        else:
            env = compose_env_file_text(app_env(self.config, self.names), source="app env").encode()
            self.host.put(saved, env, mode=0o600)
        self.host.put(self.layout.slot_env(slot), env, mode=0o600)
        compose = render_slot(
            self.config,
            self.names,
            self.layout,
            slot,
            image=release.image,
            release=release.id,
            version=release.version,
            commit=release.commit,
            deployment=self.ctx.deployment_id,
        )
        file = self.layout.slot_compose(slot)
        self._write(file, to_yaml(compose))
        # A wait only for an image with its own HEALTHCHECK, for Docker to call it healthy.
        # Otherwise a wait for "running" (Compose's, about 0.4 s here) proves nothing the health
        # gate does not prove right after, from the first probe (a container that exits or
        # restarts fails the gate at once).
        image = self.docker.image(release.image)
        wait = 60 if image is None or image.healthcheck else None
        try:
            if self.docker.api is not None and image is not None:
                # The local engine: the container Compose would create, created and started
                # over the engine's socket (about 0.15 s less than `compose up`'s processes).
                if kept is not None and kept.running:  # as Compose does: stopped gracefully
                    self._fence()
                    self.docker.stop(kept.id, timeout=self.config.app.stop_grace_period)
                body = slot_container_body(compose, file, compose_env_values(env.decode()))
                self._fence()
                self.docker.create_and_start(
                    container,
                    body,
                    replacing=kept.id if kept is not None else None,
                    healthy_within=wait,
                )
            else:
                self._fence()
                self.docker.compose_up(
                    self.names.slot(slot), file, force_recreate=True, wait_timeout=wait
                )
        except ShipyardError as exc:
            info = self.docker.container(container)
            ended = (
                f"\n  {container} {describe_exit(info, self.docker.exit_codes(info))}"
                if info is not None and (not info.running or info.restart_count)
                else ""
            )
            raise self._slot_failed(
                "start", container, f"slot {slot} did not start: {exc.message}{ended}"
            ) from exc
        return f"{self.names.slot(slot)} running {release.image}"

    def remove_slot(self, slot: str) -> None:
        """Remove the candidate this operation started in ``slot``: never a container that
        carries a name the proxy routes to, nor one another operation created (a kept release's
        container is stopped instead)."""
        self.park(slot, remove_if_from=self.ctx.deployment_id)

    def park(self, slot: str, *, remove_if_from: str | None = None) -> str:
        """Take ``slot``'s container out of service: removed when operation ``remove_if_from``
        created it, else drained and stopped (kept for rollback). Refused while the proxy routes
        to it."""
        info = self.slot_container(slot)
        if info is None:
            return f"slot {slot} has no container"
        if info.name == self.names.live:
            raise ShipyardError(
                f"refusing to take {info.name} out of service: the proxy routes to it"
            )
        if remove_if_from is not None and info.labels.get(f"{LABEL}.deployment") == remove_if_from:
            self._fence()
            self.docker.compose_down(self.names.slot(slot))
            return f"{info.name} removed"
        if not info.running:
            return f"{info.name} was stopped already"
        return self.retire(slot)

    def _slot_failed(self, phase: str, container: str, what: str) -> DeployFailed:
        """``phase`` failed for a candidate: ``what`` went wrong, then the last lines of its app
        log, and whether the previous version kept serving."""
        fix = "fix the app or its config and deploy again"
        if self.docker.container(self.names.live) is None:
            hint = fix  # nothing served before (a first deploy says what it left)
        else:
            hint = f"the previous version kept serving; {fix}"
        logs = _indent(self.docker.logs(container, tail=20))
        return DeployFailed(phase, f"{what}\n  app log (last 20 lines):\n{logs}", hint=hint)

    def gate(self, slot: str) -> str:
        """``slot`` passes its health checks ``health.passes`` rounds in a row (see
        ``shipyard.health.wait_healthy`` for the pace); it fails at once when its container
        exits or restarts, after ``health.unhealthy_grace`` when it keeps answering unhealthy,
        else after ``health.start_timeout``."""
        container = self.names.slot(slot)
        first = self.slot_container(slot)
        try:
            target = self._target(slot, first)
        except ShipyardError as exc:  # it exited before its port could be reached
            info = self.docker.container(container)
            if info is not None and info.running and not info.restart_count:
                state = exc.message  # it runs, yet publishes no port
            else:
                ended = describe_exit(info, self.docker.exit_codes(info) if info else [])
                state = f"{container} {ended}"
            raise self._slot_failed(
                "health", container, f"slot {slot} is not serving: {state}"
            ) from exc
        container = target.container
        restarts = first.restart_count if first is not None else 0

        def alive() -> str | None:
            info = self.docker.container(container)
            if info is None:
                return f"container {container} disappeared"
            if not info.running or info.restart_count > restarts:
                return f"container {container} {describe_exit(info, self.docker.exit_codes(info))}"
            return None

        health = self.config.health
        result = wait_healthy(build_checks(health), target, health, alive=alive)
        if not result.ok:
            answers = (
                "\n".join(f"    {r.name}: {r.detail}" for r in result.last) or "    (no answer)"
            )
            raise self._slot_failed(
                "health",
                container,
                f"slot {slot} never became healthy: {result.reason}\n  last answers:\n{answers}",
            )
        return f"{health.passes} consecutive passes after {result.rounds} round(s)"


def describe_exit(info: ContainerInfo | None, exit_codes: list[int]) -> str:
    """What became of a container whose process no longer serves, from its state and the exit
    codes of its ``die`` events (a running container's own exit code is reset to 0 on every
    start, so it is never taken for one)."""
    if info is None:
        return "is gone"
    code = exit_codes[-1] if exit_codes else info.exit_code if info.exit_code_known else None
    if code == 0:
        what = "exited with code 0: its server process ended (it returned instead of serving)"
    elif code is not None:
        what = f"exited with code {code}"
    else:
        what = "stopped: its process ended"
    if info.restart_count or info.status == "restarting":
        what += (
            f"; its restart policy started it again {info.restart_count} time(s) "
            f"(now {info.status})"
        )
    return what


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in (text or "(empty)").splitlines()[-20:])
