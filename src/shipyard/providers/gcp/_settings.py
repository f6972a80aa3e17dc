"""A Google Cloud environment's settings (``providers.gcp``), its project and region resolved
from the target (``gcp://<project>/<region>``)."""

from __future__ import annotations

from pydantic import Field

from shipyard.config import GCP_TARGET, Config, GcpSection


class GcpSettings(GcpSection):
    """``providers.gcp`` of an environment, with the target's project and region."""

    project: str = Field(description="The project (the target's gcp://<project>/…).")
    region: str = Field(description="The region (the target's gcp://…/<region>).")

    @classmethod
    def of(cls, config: Config) -> GcpSettings:
        """The settings of ``config``'s environment (validated by the loader)."""
        matched = GCP_TARGET.fullmatch(config.environment.target)
        if matched is None:
            raise ValueError(f"not a gcp:// target: {config.environment.target}")
        section = dict(config.providers.get("gcp") or {})
        section["project"], section["region"] = matched.group(1), matched.group(2)
        return cls.model_validate(section)
