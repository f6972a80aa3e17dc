"""A deploy through the real pipeline with recording steps, whose events are written slowly (so a
signal most often arrives while a sink writes one). Run as a module by ``test_signals``, in a
fresh directory it names (the test's own: a signal ends this process before any cleanup): prints
``running`` when the operation starts and ``completed in <seconds>s`` if it finishes; any error
exits non-zero."""

from __future__ import annotations

import sys
import time
from pathlib import Path, PurePosixPath

import shipyard.deploy
from shipyard.build import Image
from shipyard.deploy import DeployOptions, OperationContext, run_deploy
from shipyard.events import Bus, Event
from shipyard.hosts import LocalHost
from shipyard.state import StateStore
from tests.bad_configs import VALID, committed_config
from tests.unit.test_pipeline import RecordingSteps


class SlowSteps(RecordingSteps):
    def _do(self, name: str) -> str:
        time.sleep(0.03)
        return super()._do(name)


def main() -> None:
    work = Path(sys.argv[1])
    work.mkdir()
    config = committed_config(work, VALID)
    log = (work / "events.jsonl").open("a", encoding="utf-8")

    def slow_sink(event: Event) -> None:
        for character in event.to_json() + "\n":  # written slowly, a character at a time
            log.write(character)
        log.flush()
        time.sleep(0.01)

    bus = Bus(config.masker)
    bus.subscribe(slow_sink)
    shipyard.deploy.build_image = lambda cfg, local, version, rebuild=False: Image(  # type: ignore[assignment]
        tag="shop:x", id="sha256:1", version=version
    )
    ctx = OperationContext(
        config=config,
        local=LocalHost(),
        store=StateStore.on_host(LocalHost(), PurePosixPath(work / "state")),
        bus=bus,
        deployment_id="d1",
    )
    sys.stdout.write("running\n")
    sys.stdout.flush()
    began = time.monotonic()
    run_deploy(ctx, SlowSteps(), DeployOptions(allow_dirty=True))
    sys.stdout.write(f"completed in {time.monotonic() - began:.3f}s\n")


if __name__ == "__main__":
    main()
