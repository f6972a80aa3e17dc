"""The Google Cloud provider's parts (``target: gcp://<project>/<region>``), each over Google's
REST APIs (``shipyard.gcp``): the names of what it creates (``_names``). Only environments on
Google Cloud import it (and google-auth, the extra ``gcp``)."""

from __future__ import annotations

from shipyard.providers.gcp._names import GcpNames

__all__ = ["GcpNames"]
