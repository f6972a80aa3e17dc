"""``shipyard init`` and ``shipyard ci github``.

``init``: inspect a repository (go.mod, the main package and its version
variables, a Dockerfile, the migrations and the extensions they create, the health routes, the
port and the env vars the code reads) and write a commented shipyard.yml, ``.env.example`` and
``.gitignore`` entries. Reads text only: no Go toolchain, no Docker, no network."""

from __future__ import annotations

from shipyard.scaffold._inspect import Repository, inspect_repository
from shipyard.scaffold._render import render_config
from shipyard.scaffold._workflow import Workflow, render_workflow, write_workflow
from shipyard.scaffold._write import Initialised, ignored, init_repository

__all__ = [
    "Initialised",
    "Repository",
    "Workflow",
    "ignored",
    "init_repository",
    "inspect_repository",
    "render_config",
    "render_workflow",
    "write_workflow",
]
