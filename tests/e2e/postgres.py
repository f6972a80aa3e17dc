"""SQL against a deployed environment's database container, for tests and benchmarks; a
PostgreSQL server outside any environment, for an env file's external database URL."""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shipyard.waiting import Interval, wait_until
from tests.e2e.ports import reserve_port


def psql(container: str, sql: str, *, user: str = "events", database: str | None = None) -> str:
    """Run ``sql`` (on stdin, stopping at the first error) with psql in a database container as
    ``user``; its unaligned, tuples-only output."""
    return subprocess.run(
        ["docker", "exec", "-i", container, "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
         "-U", user, "-d", database or user],
        input=sql,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()  # fmt: skip


@dataclass(frozen=True)
class ExternalPostgres:
    """A PostgreSQL server of its own, outside any environment (as a provider's would be): its
    port published on the host, reached from containers at the default bridge's gateway."""

    container: str
    host: str  # what a container on any network of this engine connects to
    port: int  # published there
    admin_password: str
    address: str  # the container's own, on the default bridge (port 5432)

    def url(self, user: str, password: str, database: str) -> str:
        return f"postgres://{user}:{password}@{self.host}:{self.port}/{database}?sslmode=disable"

    def sql(self, statements: str, *, database: str = "postgres") -> str:
        """``statements`` as the server's superuser."""
        return psql(self.container, statements, user="postgres", database=database)


@contextmanager
def external_postgres(
    image: str = "shipyard-local/postgres:17", *, tls: bool = False
) -> Iterator[ExternalPostgres]:
    """An ``ExternalPostgres`` of ``image``, ready; removed with its data on leaving. ``tls``:
    it accepts TLS too (the image's self-signed certificate), as a provider's requires."""
    name = f"sy-extdb-{secrets.token_hex(3)}"
    port = reserve_port()
    password = secrets.token_hex(12)
    command = ["postgres"]
    if tls:
        command += ["-c", "ssl=on", "-c", "ssl_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem",
                    "-c", "ssl_key_file=/etc/ssl/private/ssl-cert-snakeoil.key"]  # fmt: skip
    subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--env", "POSTGRES_PASSWORD",
         "--publish", f"{port}:5432", image, *command],
        env={**os.environ, "POSTGRES_PASSWORD": password}, capture_output=True, check=True,
    )  # fmt: skip
    try:

        def ready() -> bool:
            argv = ["docker", "exec", name, "pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
            return subprocess.run(argv, capture_output=True, check=False).returncode == 0

        assert wait_until(ready, timeout=120, interval=Interval(0.5, 1.5, 3.0)), (
            f"{name}: not ready"
        )
        address = subprocess.run(
            ["docker", "inspect", name, "--format", "{{.NetworkSettings.IPAddress}}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        yield ExternalPostgres(name, _bridge_gateway(name), port, password, address)
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True,
                       check=False)  # fmt: skip


def _bridge_gateway(container: str) -> str:
    """The default bridge's gateway (the host's address on it), where ``container`` runs: as the
    engine lists it, else the gateway of the container's default route. The engine does not
    always list one: Debian's Docker 20.10, started on an empty /var/lib/docker, listed only the
    subnet (``{"Subnet": "172.17.0.0/16"}``) while docker0 had 172.17.0.1."""
    listed = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format",
         "{{range .IPAM.Config}}{{.Gateway}}{{end}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if listed:
        return listed
    routes = subprocess.run(
        ["docker", "exec", container, "cat", "/proc/net/route"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for line in routes.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":  # the default route
            # Host byte order, as the kernel prints it (little-endian on amd64 and arm64).
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    raise AssertionError(f"{container}: no default route in {routes!r}")
