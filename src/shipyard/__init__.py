"""shipyard: deploy a Go + PostgreSQL server to Docker hosts with one command."""

__version__ = "0.1.0"
