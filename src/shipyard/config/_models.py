"""The shape of ``shipyard.yml``: pydantic models, frozen, unknown keys rejected.

These models are the single source for validation and for ``shipyard schema``.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shipyard.event_kinds import EventKind

_NAME = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
_DURATION = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class InvalidValue(ValueError):
    """A value a validator refuses: the message quotes it, ``reason`` says why without it.

    When the value came from ``${VAR}`` (the environment or the env file), the loader reports
    "value from ${VAR} <reason>" instead of the message, so the value is never echoed.
    """

    def __init__(self, message: str, *, value: object, reason: str) -> None:
        super().__init__(message)
        self.value = value
        self.reason = reason


def parse_duration(value: Any) -> float:
    """``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``, ``"365d"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10s, 500ms, 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        seconds = float(match.group("value")) * _UNITS[match.group("unit")]
    else:
        raise InvalidValue(
            f"expected a duration like 10s, 500ms, 5m, got {value!r}",
            value=value,
            reason="is not a duration like 10s, 500ms, 5m",
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


_SMALLEST_SUBNET = 28  # room for the gateway, database, proxy, both slots and one-off containers


def parse_subnet(value: str) -> ipaddress.IPv4Network:
    """``proxy.subnet``: an IPv4 network in CIDR notation (no host bits set), private, with room
    for the environment's containers."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise InvalidValue(
            f"{value!r} is not an IPv4 subnet in CIDR notation ({exc}), e.g. 10.201.7.0/24",
            value=value,
            reason="is not an IPv4 subnet in CIDR notation, e.g. 10.201.7.0/24",
        ) from exc
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError("must be an IPv4 subnet (the proxy reaches the app over IPv4)")
    if not network.is_private or network.is_loopback or network.is_link_local:
        raise ValueError(
            "must be a private range (within 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)"
        )
    if network.prefixlen > _SMALLEST_SUBNET:
        raise ValueError(
            f"/{network.prefixlen} is too small: /{_SMALLEST_SUBNET} or larger (the environment "
            "runs up to a dozen containers on it)"
        )
    return network


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "description": "Duration: 500ms, 10s, 5m, 1h, 15d or seconds.",
        }
    ),
]


class AppSection(_Model):
    """The application: its name, port and environment."""

    name: str = Field(
        pattern=_NAME,
        description="App name: lowercase letters, digits, dashes. Names containers, networks and images.",
    )
    port: int = Field(
        8080, ge=1, le=65535, description="Port the app listens on inside its container."
    )
    required_env: list[str] = Field(
        default_factory=list,
        description="Env vars the app cannot start without; `check` verifies each is set.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret env vars for the app (secrets go in the env file).",
    )
    secret_env: list[str] = Field(
        default_factory=list,
        description="Extra env-file keys whose values are secrets (keys named *_SECRET, *_PASSWORD, *_TOKEN, *_KEY always are).",
    )
    stop_grace_period: Duration = Field(
        15.0,
        description="Time between SIGTERM and SIGKILL when a slot stops; longer than the app's own shutdown timeout.",
    )
    required_files: list[str] = Field(
        default_factory=list,
        description="Absolute paths that must exist in the built image (checked after the build).",
    )

    @field_validator("required_env", "secret_env")
    @classmethod
    def _env_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise InvalidValue(
                    f"{name!r} is not a valid environment variable name",
                    value=name,
                    reason="is not a valid environment variable name",
                )
        return names


class GoBuild(_Model):
    """Build with the Go toolchain on the operator's machine, packed into a minimal image."""

    kind: Literal["go"] = Field(
        description="Go build on the operator's machine, packed into a scratch image."
    )
    context: str = Field(".", description="Directory with go.mod, relative to shipyard.yml.")
    package: str = Field("./cmd/server", description="Go package of the server's main.")
    binary: str = Field(
        "server",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name of the binary in the image (/app/<binary>).",
    )
    ldflags: dict[str, str] = Field(
        default_factory=dict,
        description="`-X` variables: full variable path → value; {version}, {commit}, {build_date} are filled in.",
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="Files or directories (relative to context) → absolute path in the image.",
    )
    tags: list[str] = Field(default_factory=list, description="Go build tags.")
    tzdata: bool = Field(
        True,
        description="Embed Go's time-zone database in the binary (build tag `timetzdata`): a scratch image has no /usr/share/zoneinfo, and time.LoadLocation fails without it.",
    )
    generate: list[Annotated[list[str], Field(min_length=1)]] = Field(
        default_factory=list,
        description="Commands (argv lists, no shell) run in the context before the Go build, in order (with CGO_ENABLED=0, so a `go run` shares the build's cache), e.g. to generate files the binary embeds; their argv is part of the build settings.",
    )
    tools: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")], str] = Field(
        default_factory=dict,
        description="More Go programs put in the image at /app/<name>: name → `module/path@version` (go install, e.g. a migration CLI) or a directory with a main package, relative to shipyard.yml.",
    )


class DockerfileBuild(_Model):
    """Build with the app's own Dockerfile."""

    kind: Literal["dockerfile"] = Field(description="The app's own Dockerfile, with build args.")
    context: str = Field(".", description="Build context directory, relative to shipyard.yml.")
    dockerfile: str = Field("Dockerfile", description="Dockerfile path, relative to the context.")
    target: str | None = Field(None, description="Multi-stage target to build.")
    args: dict[str, str] = Field(
        default_factory=dict,
        description="Build args; {version}, {commit}, {build_date} are filled in.",
    )


BuildSection = Annotated[GoBuild | DockerfileBuild, Field(discriminator="kind")]


class MigrationsSection(_Model):
    """golang-migrate migrations, run in a one-off container before the new version starts."""

    path: str = Field(
        "migrations",
        description="Directory of NNN_name.up.sql/.down.sql files, relative to shipyard.yml.",
    )
    image: str = Field("migrate/migrate:v4.18.3", description="golang-migrate image.")
    timeout: Duration = Field(600.0, description="Longest a migration run may take.")
    statement_timeout: Duration = Field(
        300.0,
        description="PostgreSQL statement_timeout for migrations (one migration file is one statement batch); 0 disables it.",
    )
    lock_timeout: Duration = Field(
        10.0,
        description="PostgreSQL lock_timeout for migrations: give up instead of queueing the app's queries behind a table lock; 0 disables it.",
    )
    lint: Literal["warn", "block", "off"] = Field(
        "warn",
        description="What `deploy` does with migration lint findings on pending migrations: warn, block the deploy before any change, or off.",
    )


class SnapshotsSection(_Model):
    """Pre-migration snapshots (`pg_dump -Fc` inside the database container) and their retention."""

    enabled: bool = Field(True, description="Take a snapshot before applying pending migrations.")
    dir: str | None = Field(
        None,
        description="Snapshot directory on the target host (default <state_dir>/<app>/<environment>/snapshots, mode 0700).",
    )
    retention_days: float = Field(
        7, ge=0, description="Snapshots older than this many days are pruned after each snapshot."
    )
    keep_min: int = Field(
        3, ge=1, le=1000, description="The newest N snapshots are never pruned, whatever their age."
    )
    timeout: Duration = Field(3600.0, description="Longest a snapshot (dump and verify) may take.")
    compression: str = Field(
        "zstd:1",
        pattern=r"^(none|gzip|lz4|zstd)(:\d{1,2})?$",
        description="pg_dump --compress method[:level] (PostgreSQL 16+ for lz4/zstd; use gzip for older servers). zstd:1 dumps about 5x faster than gzip and is smaller.",
    )


class DatabaseSection(_Model):
    """PostgreSQL run by shipyard next to the app (skipped when the env file sets an external URL)."""

    image: str = Field(
        "postgis/postgis:17-3.5",
        description="PostgreSQL image; it must ship the extensions listed (postgis/postgis ships PostGIS, not pgvector).",
    )
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Database name.")
    user: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Database owner role.")
    password_env: str = Field(
        "POSTGRES_PASSWORD", description="Env-file key holding the database password."
    )
    url_env: str = Field(
        "DATABASE_URL", description="Env var through which the app receives the database URL."
    )
    extensions: list[str] = Field(
        default_factory=lambda: ["postgis", "pg_trgm", "pgcrypto"],
        description="Extensions created (and verified) before migrating. pgvector's extension is named `vector` (not in the default image: see README).",
    )
    ready_timeout: Duration = Field(
        120.0, description="Longest wait for the database to accept connections."
    )
    migrations: MigrationsSection | None = Field(
        default_factory=MigrationsSection, description="Migrations; null for none."
    )
    snapshots: SnapshotsSection = Field(
        default_factory=SnapshotsSection, description="Pre-migration snapshots and their retention."
    )
    release_commands: list[Annotated[list[str], Field(min_length=1)]] = Field(
        default_factory=list,
        description="Commands (argv lists) run in order after migrations on every deploy, each in a one-off container of the new image with the app's env plus libpq's PG* variables for the database (so a tool such as River's CLI connects with no password in argv), e.g. [[/app/river, migrate-up]].",
    )

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if name == "pgvector":
                raise InvalidValue(
                    "the pgvector extension is named 'vector' (CREATE EXTENSION vector)",
                    value=name,
                    reason="is not an extension name (pgvector's is named 'vector')",
                )
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise InvalidValue(
                    f"{name!r} is not an extension name",
                    value=name,
                    reason="is not an extension name",
                )
        return names


class CertificateFiles(_Model):
    """A certificate chain and its private key, PEM files."""

    cert: str = Field(description="PEM certificate chain (leaf first), relative to shipyard.yml.")
    key: str = Field(description="PEM private key of the certificate, relative to shipyard.yml.")


class ProxySection(_Model):
    """Caddy in front of the app slots."""

    image: str = Field("caddy:2", description="Caddy image.")
    http_port: int = Field(80, ge=1, le=65535, description="Host port for HTTP.")
    https_port: int = Field(
        443, ge=1, le=65535, description="Host port for HTTPS (used when domains are set)."
    )
    bind: str = Field("0.0.0.0", description="Host address the proxy ports bind to.")  # noqa: S104
    domains: list[str] = Field(
        default_factory=list,
        description="Public domain names; Caddy obtains certificates for them. Empty: plain HTTP.",
    )
    tls: Literal["acme", "internal"] = Field(
        "acme",
        description="Where Caddy gets the domains' certificates: acme (publicly trusted, from Let's Encrypt or ZeroSSL; each domain must resolve to the host and ports 80 and 443 be reachable from the internet) or internal (Caddy's own CA, for private setups and tests: browsers do not trust it; verify and status trust the proxy's own root).",
    )
    tls_email: str | None = Field(None, description="ACME account e-mail (tls: acme).")
    acme_ca: str | None = Field(
        None,
        pattern=r"^https://\S+$",
        description="tls: acme: the ACME directory URL Caddy obtains and renews certificates from (e.g. Let's Encrypt's staging CA https://acme-staging-v02.api.letsencrypt.org/directory, or a private ACME server). null: Let's Encrypt, with ZeroSSL as fallback. Challenges: HTTP-01 (port 80) and TLS-ALPN-01 (port 443) on the proxy's container ports.",
    )
    acme_ca_root: str | None = Field(
        None,
        description="tls: acme: PEM file (relative to shipyard.yml) of the root that signs the ACME server's own HTTPS certificate, for a private ACME server whose root is not in the proxy image's trust store. Copied next to Caddy's config on the host.",
    )
    trusted_roots: list[str] = Field(
        default_factory=list,
        description="PEM files (relative to shipyard.yml) of roots shipyard itself trusts, besides the system's, when verify and status check the certificates the proxy serves: the root of a private CA that issues them (a private ACME server's issuing root). Users' browsers must trust it too.",
    )
    certificates: list[CertificateFiles] = Field(
        default_factory=list,
        description="Bring-your-own certificates: each a PEM certificate chain and its private key (files relative to shipyard.yml, e.g. in the env file's directory; never committed). Copied next to Caddy's config on the host (mode 0600) and loaded by Caddy, which then does not obtain certificates for the names they cover.",
    )
    hsts: Duration = Field(
        0.0,
        description="Strict-Transport-Security max-age on HTTPS responses (e.g. 365d; set it once HTTPS works: browsers remember it). 0: no HSTS header. Plain HTTP always redirects to HTTPS when domains are set.",
    )
    certificate_timeout: Duration = Field(
        120.0,
        description="With domains: longest wait, at verify, for the proxy to present a trusted certificate for each domain (ACME issuance after a first deploy or a new domain).",
    )
    dial_retry: float = Field(
        5.0,
        ge=0,
        description="Seconds a request may wait for an upstream to accept (no 'no upstream' errors during a switch).",
    )
    subnet: str | None = Field(
        None,
        description="IPv4 subnet (CIDR, private, /28 or larger) of the environment's network, on which the proxy reaches the app: pinned, it is what `${SHIPYARD_PROXY_CIDR}` gives the app (e.g. as the range it trusts X-Forwarded-For from). null: Docker picks one, and `${SHIPYARD_PROXY_CIDR}` is not available. An existing network is never recreated for it.",
    )

    @field_validator("subnet")
    @classmethod
    def _private_cidr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return str(parse_subnet(value))

    @model_validator(mode="after")
    def _ports_differ(self) -> ProxySection:
        if self.domains and self.http_port == self.https_port:
            raise ValueError("http_port and https_port must differ")
        return self


class HttpCheck(_Model):
    kind: Literal["http"] = Field(description="HTTP request to the slot.")
    name: str = Field("http", description="Name shown in output.")
    path: str = Field("/health", pattern=r"^/", description="Request path.")
    status: list[int] = Field(default_factory=lambda: [200], description="Accepted status codes.")
    json_fields: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Top-level JSON fields → accepted values, e.g. {status: [healthy, degraded]}.",
    )


class TcpCheck(_Model):
    kind: Literal["tcp"] = Field(description="TCP connect to the slot's port.")
    name: str = Field("tcp", description="Name shown in output.")


class PostgresCheck(_Model):
    kind: Literal["postgres"] = Field(
        description="SQL query in the database; passes when it returns a true value."
    )
    name: str = Field("postgres", description="Name shown in output.")
    query: str = Field(
        "SELECT 1", description="Query whose first column of the first row must be true/1."
    )


class CommandCheck(_Model):
    kind: Literal["command"] = Field(
        description="Command run inside the app container; passes on exit 0."
    )
    name: str = Field("command", description="Name shown in output.")
    argv: list[str] = Field(min_length=1, description="The command, as a list.")


HealthCheckSpec = Annotated[
    HttpCheck | TcpCheck | PostgresCheck | CommandCheck, Field(discriminator="kind")
]


def _default_checks() -> list[HealthCheckSpec]:
    return [HttpCheck(kind="http", json_fields={"status": ["healthy", "degraded"]})]


class HealthSection(_Model):
    """How a slot proves it is healthy before traffic reaches it."""

    checks: list[HealthCheckSpec] = Field(
        default_factory=_default_checks,
        description="Checks that must all pass, in order.",
    )
    interval: Duration = Field(
        1.0,
        description="Longest pause between rounds of checks (the health gate backs off up to it while a slot is not healthy yet; the watch window's pace).",
    )
    first_interval: Duration = Field(
        0.01,
        description="Health gate: the pause after a passing round, and the first pause after a failing one (it then doubles up to interval). The first round runs as soon as the slot is started.",
    )
    timeout: Duration = Field(5.0, description="Timeout of one check.")
    passes: int = Field(3, ge=1, le=100, description="Consecutive passing rounds needed.")
    failures: int = Field(
        2,
        ge=1,
        le=100,
        description="Consecutive failing rounds that make a live slot unhealthy (watch window).",
    )
    start_timeout: Duration = Field(120.0, description="Longest wait for a slot to become healthy.")
    unhealthy_grace: Duration = Field(
        10.0,
        description="Health gate: once a check got an answer saying the slot is unhealthy (an HTTP status or JSON field not accepted, a postgres query returning false, a command exiting non-zero), the gate fails after this long without a passing round instead of waiting out start_timeout. A slot that does not answer yet (connection refused, timeout) waits the whole start_timeout.",
    )


class GitHubSection(_Model):
    """Where CI results for commits are read (GitHub or GitHub Enterprise)."""

    repository: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name of the repository."
    )
    api_url: str = Field(
        "https://api.github.com",
        description="API base URL (GitHub Enterprise: https://HOST/api/v3).",
    )
    token_env: str = Field(
        "GITHUB_TOKEN",
        description="Env-file key holding a token that can read statuses and checks; when the env file lacks it, shipyard's own environment variable of that name (a CI job's token, which the app then never receives).",
    )
    timeout: Duration = Field(15.0, description="Timeout of one API request.")


class RegistrySection(_Model):
    """A container registry between the operator's engine and the hosts."""

    url: str = Field(
        pattern=r"^[A-Za-z0-9.-]+(?::\d+)?(?:/[a-z0-9._/-]+)?$",
        description="Registry host and optional namespace, e.g. ghcr.io/acme; the image is pushed as <url>/<app>:<version>.",
    )
    username: str | None = Field(None, description="Registry user; none: no login.")
    password_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Env-file key holding the registry password or token (the name, never the value); given to `docker login --password-stdin`.",
    )


class SSHSection(_Model):
    """How shipyard reaches ssh:// targets (`providers.ssh`). The system OpenSSH client is used, so ~/.ssh/config, the agent and jump hosts apply."""

    known_hosts: str | None = Field(
        None,
        description="known_hosts file trusted for host keys (default: ssh's own, ~/.ssh/known_hosts). Unknown or changed keys are always refused.",
    )
    identity_file: str | None = Field(
        None, description="Private key to log in with (default: the agent and ssh's defaults)."
    )
    options: list[str] = Field(
        default_factory=list,
        description="Extra ssh options as Key=Value, e.g. [ProxyJump=bastion]. StrictHostKeyChecking cannot be relaxed.",
    )
    connect_timeout: Duration = Field(10.0, description="Longest wait for a connection.")
    control_persist: Duration = Field(
        60.0,
        description="How long the shared (multiplexed) connection stays open after its last use; it is closed when shipyard exits.",
    )

    @field_validator("options")
    @classmethod
    def _options(cls, options: list[str]) -> list[str]:
        for option in options:
            key = option.split("=", 1)[0].strip().lower()
            if "=" not in option:
                raise InvalidValue(
                    f"ssh option {option!r}: write Key=Value",
                    value=option,
                    reason="is not an ssh option: write Key=Value",
                )
            if key in {
                "stricthostkeychecking",
                "userknownhostsfile",
                "controlpath",
                "controlmaster",
            }:
                raise InvalidValue(
                    f"ssh option {option!r} is set by shipyard and cannot be overridden",
                    value=option,
                    reason="sets an ssh option that shipyard sets itself (it cannot be overridden)",
                )
        return options


class DeploySection(_Model):
    """How deploys behave."""

    state_dir: str | None = Field(
        None,
        description="State directory on the target (default /var/lib/shipyard, or ~/.local/state/shipyard for local).",
    )
    keep_releases: int = Field(
        5,
        ge=1,
        le=100,
        description="Releases kept for rollback: the newest, always with the one that served before the live one (what a rollback brings back).",
    )
    keep_logs: int = Field(
        100,
        ge=1,
        description="Deployment logs kept, on the host and on this machine (the newest); older ones are removed.",
    )
    history_days: int = Field(
        366,
        ge=1,
        description="Days of `history` kept: older lines are dropped when an operation is recorded.",
    )
    allow_dirty: bool = Field(
        False, description="Allow deploying uncommitted changes (the version says so)."
    )
    verify_path: str | None = Field(
        "/version",
        description="Path fetched through the proxy after the switch, the way users reach it (HTTPS with each domain's SNI and Host when proxy.domains is set); a 2xx answer must report the deployed commit (a redirect is not followed and fails).",
    )
    verify_timeout: Duration = Field(
        10.0,
        description="Longest wait, once the proxy answers verify_path, for it to report the deployed commit.",
    )
    watch: Duration = Field(
        30.0,
        description="Window after the switch during which the new version is watched (health checks and the proxy's 5xx rate); a failure switches back. The command says the new version is live (a line, and a `deploy.live` event) before the watch begins. 0 disables (`--no-watch` for one deploy).",
    )
    rollback_watch: Duration = Field(
        10.0,
        description="The watch window of a rollback: shorter than `watch` by default, since the release it brings back served before. 0 disables (`--no-watch` for one rollback).",
    )
    max_error_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of 5xx answers at the proxy tolerated during the watch window.",
    )
    min_requests: int = Field(
        20,
        ge=1,
        description="Requests the proxy must have seen in the watch window before the 5xx rate is judged (and the latency, by each version).",
    )
    latency_regression: float = Field(
        0.5,
        gt=0,
        description="During the watch: the new version's p95 latency through the proxy more than this fraction above the previous version's (0.5: 50 % slower), each over at least `min_requests` requests, is a regression: a `health.degraded` event with both figures (and see `on_latency_regression`).",
    )
    on_latency_regression: Literal["warn", "switch_back"] = Field(
        "warn",
        description="What a latency regression during the watch does: warn (the event only; the new version stays) or switch_back (the watch fails: the previous version serves again).",
    )
    require_ci: bool = Field(
        False,
        description="Refuse to deploy a commit whose CI (GitHub statuses and check runs) has not passed.",
    )
    github: GitHubSection | None = Field(None, description="GitHub settings for require_ci.")
    lock_ttl: Duration = Field(
        60.0,
        description="A deploy lock whose holder has not heartbeated for this long is stale and may be taken over.",
    )
    drain_timeout: Duration = Field(
        30.0,
        description="Longest wait for the old slot's in-flight requests to finish before it gets SIGTERM.",
    )
    old_version: Literal["standby", "stop"] = Field(
        "standby",
        description="What the version replaced by a switch does during the watch window. `standby`: it keeps running, so a switch-back is three renames (instant), but both versions' background workers (job queues, schedulers) run until it is retired after the watch. `stop`: it is drained and stopped right after the switch is verified (its container kept), so only one version runs at any time; a switch-back or a rollback starts it again and waits for its health gate first (seconds, while the new version keeps serving).",
    )
    parallelism: int = Field(
        1,
        ge=1,
        le=64,
        description="Nodes deployed at the same time when an environment lists several `targets`; the deploy stops at the first failed node.",
    )
    registry: RegistrySection | None = Field(
        None,
        description="Registry the image goes through (push here, pull on the host); none: `docker save | ssh host docker load`.",
    )
    guard_image: str | None = Field(
        "docker:27-cli",
        description="Image (a POSIX shell and the docker CLI) of the guard, a small container beside the proxy that starts the live container again whenever it stops and shipyard did not stop it (`docker kill`, `docker stop`, an OOM kill its restart policy gave up on); it reads the host's Docker socket. null: no guard.",
    )

    @model_validator(mode="after")
    def _ci_needs_github(self) -> DeploySection:
        if self.require_ci and self.github is None:
            raise ValueError("require_ci needs deploy.github.repository (owner/name)")
        return self


_ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RetrySection(_Model):
    """How a notification is retried on timeouts, connection errors and 5xx answers."""

    attempts: int = Field(4, ge=1, le=10, description="Most attempts per notification.")
    initial_delay: Duration = Field(
        0.5, description="Wait before the second attempt; doubles each time, plus random jitter."
    )
    max_delay: Duration = Field(8.0, description="Longest wait between two attempts.")
    total: Duration = Field(
        30.0, description="Longest time one notification may take, attempts and waits together."
    )


class _SinkBase(_Model):
    name: str | None = Field(
        None,
        pattern=_NAME,
        description="Name shown in logs and `notify test` (default: the kind). Unique per environment.",
    )
    events: list[str] | None = Field(
        None,
        description="Event kinds sent to this sink, e.g. [deploy.failed, deploy.rolled_back]; default: every lifecycle event.",
    )
    timeout: Duration = Field(5.0, description="Timeout of one HTTP request.")
    retry: RetrySection = Field(default_factory=RetrySection, description="Retries.")

    @field_validator("events")
    @classmethod
    def _known_kinds(cls, kinds: list[str] | None) -> list[str] | None:
        known = {str(kind) for kind in EventKind}
        listed = ", ".join(sorted(known))
        for kind in kinds or []:
            if kind not in known:
                raise InvalidValue(
                    f"unknown event kind {kind!r} (known: {listed})",
                    value=kind,
                    reason=f"is not a known event kind (known: {listed})",
                )
        return kinds


class WebhookSink(_SinkBase):
    """POST of each event as JSON, signed per the Standard Webhooks scheme."""

    kind: Literal["webhook"] = Field(description="Generic webhook (Standard Webhooks signatures).")
    url: str = Field(pattern=r"^https?://", description="URL the events are POSTed to.")
    secret_env: str = Field(
        pattern=_ENV_KEY,
        description="Env-file key holding the signing secret, `whsec_<base64>` (the name, never the value).",
    )


class NtfySink(_SinkBase):
    """A push notification through an ntfy server."""

    kind: Literal["ntfy"] = Field(description="ntfy push notifications.")
    server: str = Field(
        "https://ntfy.sh", pattern=r"^https?://", description="Base URL of the ntfy server."
    )
    topic: str = Field(pattern=r"^[-_A-Za-z0-9]{1,64}$", description="Topic to publish to.")
    token_env: str | None = Field(
        None,
        pattern=_ENV_KEY,
        description="Env-file key holding an ntfy access token (the name, never the value); none: anonymous.",
    )


SinkSpec = Annotated[WebhookSink | NtfySink, Field(discriminator="kind")]


class NotificationsSection(_Model):
    """Where lifecycle events are sent besides the console. Delivery never fails a deploy."""

    sinks: list[SinkSpec] = Field(default_factory=list, description="Webhooks and ntfy topics.")
    queue_size: int = Field(
        100, ge=1, le=10000, description="Events waiting per sink; beyond it new ones are dropped."
    )
    flush_timeout: Duration = Field(
        15.0,
        description="Longest wait at the end of a command for notifications still being delivered.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsSection:
        names = [sink.name or sink.kind for sink in self.sinks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"sink names must be unique (set `name`): {', '.join(duplicated)}")
        return self


class AlertsSection(_Model):
    """Thresholds of the alert rules shipyard renders for Prometheus."""

    error_rate: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="HighErrorRate fires when more than this share of the requests through the proxy answer 5xx …",
    )
    error_rate_for: Duration = Field(120.0, description="… for this long.")
    down_for: Duration = Field(
        60.0,
        description="AppDown and DatabaseDown fire when the app's metrics or the database do not answer for this long.",
    )
    latency_regression: float = Field(
        0.5,
        gt=0,
        description="LatencyRegression fires when the p95 latency through the proxy after a deploy is more than this fraction above the previous version's (0.5: 50 % slower).",
    )
    disk_free: float = Field(
        0.10,
        gt=0,
        lt=1,
        description="DiskSpaceLow fires when the host's root filesystem has less than this share free.",
    )
    memory_used: float = Field(
        0.85,
        gt=0,
        lt=1,
        description="HighMemoryUsage fires when the host uses more than this share of its memory.",
    )
    snapshot_max_age: Duration | None = Field(
        None,
        description="SnapshotTooOld fires when the newest database snapshot is older than this (for environments that take snapshots on a schedule); null: no such rule.",
    )


class AlertmanagerSection(_Model):
    """How Alertmanager groups alerts and where it sends them."""

    sinks: list[str] | None = Field(
        None,
        description="Names of `notifications.sinks` (ntfy topics and webhooks) alerts go to; default: every sink.",
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["alertname", "severity"],
        description="Labels that group alerts into one notification.",
    )
    group_wait: Duration = Field(30.0, description="Wait before the first notification of a group.")
    group_interval: Duration = Field(
        300.0, description="Wait before notifying of changes in a group."
    )
    repeat_interval: Duration = Field(
        14400.0, description="Wait before repeating a notification still firing."
    )


class MonitoringImages(_Model):
    """The images of the monitoring stack."""

    prometheus: str = Field("prom/prometheus:v2.53.3", description="Prometheus (with promtool).")
    alertmanager: str = Field(
        "prom/alertmanager:v0.28.1", description="Alertmanager (with amtool)."
    )
    node_exporter: str = Field("prom/node-exporter:v1.9.0", description="Node exporter.")
    postgres_exporter: str = Field(
        "quay.io/prometheuscommunity/postgres-exporter:v0.17.1", description="PostgreSQL exporter."
    )
    cadvisor: str = Field(
        "ghcr.io/google/cadvisor:v0.55.1", description="cAdvisor (container metrics)."
    )
    grafana: str = Field("grafana/grafana:11.6.0", description="Grafana.")


class GrafanaSection(_Model):
    """Grafana, with Prometheus as its datasource and shipyard's dashboards provisioned."""

    enabled: bool = Field(True, description="Run Grafana in the monitoring stack.")
    port: int = Field(
        3000, ge=1, le=65535, description="Host port of Grafana's UI, bound to the host's loopback."
    )
    admin_password_env: str = Field(
        "GRAFANA_ADMIN_PASSWORD",
        pattern=_ENV_KEY,
        description="Env-file key holding the password of Grafana's `admin` user (the name, never the value); required when Grafana runs.",
    )


Exporter = Literal["node", "postgres", "cadvisor"]
EXPORTERS: tuple[Exporter, ...] = ("node", "postgres", "cadvisor")


class PublishSection(_Model):
    """Monitoring UIs published through the proxy, each under a domain of its own, over HTTPS and
    behind HTTP basic auth (needs `proxy.domains`: the proxy serves HTTPS; Caddy obtains these
    domains' certificates as it does the app's)."""

    grafana: str | None = Field(None, description="Domain Grafana is published under.")
    prometheus: str | None = Field(None, description="Domain Prometheus's UI is published under.")
    alertmanager: str | None = Field(
        None, description="Domain Alertmanager's UI is published under."
    )
    user: str = Field(
        "monitoring", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Basic auth user name."
    )
    password_env: str = Field(
        "MONITORING_PASSWORD",
        pattern=_ENV_KEY,
        description="Env-file key holding the basic auth password (the name, never the value).",
    )

    def domains(self) -> dict[str, str]:
        """Published UI → its domain."""
        named = {"grafana": self.grafana, "prometheus": self.prometheus}
        named["alertmanager"] = self.alertmanager
        return {ui: domain for ui, domain in named.items() if domain}


class MonitoringSection(_Model):
    """Prometheus, Alertmanager and exporters beside the app, as their own compose project."""

    enabled: bool = Field(False, description="Run the monitoring stack for this environment.")
    retention: Duration = Field(15 * 86400.0, description="How long Prometheus keeps samples.")
    scrape_interval: Duration = Field(15.0, description="How often Prometheus scrapes each target.")
    app_metrics_path: str | None = Field(
        "/metrics",
        pattern=r"^/",
        description="Where the app serves its Prometheus metrics (on the environment's network; the proxy blocks /metrics from outside). null: the app has none, and AppDown and AppTargetMissing are left out (the proxy's metrics still cover its requests).",
    )
    exporters: list[Exporter] = Field(
        default_factory=lambda: list(EXPORTERS),
        description="Exporters run beside Prometheus: node (the host), postgres (only with a database shipyard runs), cadvisor (CPU, memory and network of each of the environment's containers; it reads the Docker engine's socket and the host's cgroups, read-only). The app's and the proxy's own metrics are always scraped.",
    )
    alerts: AlertsSection = Field(default_factory=AlertsSection, description="Alert thresholds.")
    alertmanager: AlertmanagerSection = Field(
        default_factory=AlertmanagerSection, description="Alert routing."
    )
    prometheus_port: int = Field(
        9090,
        ge=1,
        le=65535,
        description="Host port of Prometheus's UI, bound to the host's loopback.",
    )
    alertmanager_port: int = Field(
        9093,
        ge=1,
        le=65535,
        description="Host port of Alertmanager's UI, bound to the host's loopback.",
    )
    grafana: GrafanaSection = Field(default_factory=GrafanaSection, description="Grafana.")
    publish: PublishSection = Field(
        default_factory=PublishSection,
        description="UIs published through the proxy under domains, behind basic auth (every UI is otherwise on the host's loopback only).",
    )
    images: MonitoringImages = Field(default_factory=MonitoringImages, description="Images.")

    @model_validator(mode="after")
    def _ports_differ(self) -> MonitoringSection:
        ports = [self.prometheus_port, self.alertmanager_port]
        if self.grafana.enabled:
            ports.append(self.grafana.port)
        if len(set(ports)) != len(ports):
            raise ValueError("prometheus_port, alertmanager_port and grafana.port must differ")
        return self


class HookSpec(_Model):
    """One command run at a point of the deploy, with the deploy's facts in SHIPYARD_* variables."""

    argv: list[str] = Field(min_length=1, description="The command, as a list (no shell).")
    where: Literal["local", "target"] = Field(
        "local",
        description="`local`: on the operator's machine, in shipyard.yml's directory; `target`: on the environment's host.",
    )
    name: str | None = Field(None, description="Name shown in output (default: the command).")
    timeout: Duration | None = Field(None, description="Timeout (default: hooks.timeout).")


class HooksSection(_Model):
    """Commands run around a deploy. A failing before_* hook stops the deploy before any change;
    a failing after_* or on_failure hook is reported as a warning."""

    timeout: Duration = Field(120.0, description="Default timeout of one hook.")
    before_deploy: list[HookSpec] = Field(
        default_factory=list,
        description="After the version is known, before the build; failure stops the deploy.",
    )
    before_switch: list[HookSpec] = Field(
        default_factory=list,
        description="After the new slot is healthy, before the proxy switch; failure removes the candidate.",
    )
    after_switch: list[HookSpec] = Field(
        default_factory=list, description="After the switch is verified; failure is a warning."
    )
    after_deploy: list[HookSpec] = Field(
        default_factory=list, description="After the deploy is recorded; failure is a warning."
    )
    on_failure: list[HookSpec] = Field(
        default_factory=list,
        description="After a failed deploy was cleaned up; SHIPYARD_ERROR says why.",
    )


# The retention periods CloudWatch Logs accepts (PutRetentionPolicy).
RetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
]  # fmt: skip

# The memory sizes (MiB) Fargate offers with each CPU size (Linux tasks).
FARGATE_MEMORY: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}

# An AWS region's name (us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4).
AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
# An S3 bucket's name: 3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at
# each end.
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class RdsSection(_Model):
    """The RDS for PostgreSQL instance shipyard creates for an AWS environment (`providers.aws.rds`)."""

    engine_version: str = Field("17", description="PostgreSQL's major (or major.minor) version.")
    instance_class: str = Field("db.t4g.micro", description="The instance class.")
    storage_gb: int = Field(20, ge=20, le=65536, description="Allocated storage (gp3), GiB.")
    multi_az: bool = Field(False, description="A standby in a second availability zone.")
    backup_retention_days: int = Field(
        7, ge=1, le=35, description="Days RDS keeps its automated backups."
    )
    deletion_protection: bool = Field(
        True, description="RDS refuses to delete the instance until this is turned off."
    )


class AwsSection(_Model):
    """Where and how an environment with an aws://<region> target runs (`providers.aws`). Credentials come from the standard AWS chain (environment, profile, SSO, instance or task role), never from shipyard.yml."""

    region: str | None = Field(
        None, description="The AWS region (default: the target's; when given, it must be the same)."
    )
    endpoint_url: str | None = Field(
        None,
        description="An endpoint speaking the AWS APIs instead of AWS's own (LocalStack, a test stand-in).",
    )
    state_bucket: str | None = Field(
        None,
        description="An existing S3 bucket holding the environment's state and lock (default: shipyard-state-<account id>-<region>, which the first deploy creates with public access blocked, versioning and default encryption).",
    )
    registry: str | None = Field(
        None,
        description="Push images to this registry (host[:port]) instead of the ECR address of the environment's repository, which is still created: for a stand-in of AWS whose ECR addresses do not resolve.",
    )
    cluster: str | None = Field(
        None,
        description="An existing ECS cluster to run in (default: shipyard creates shipyard-<app>-<environment>).",
    )
    log_retention_days: RetentionDays = Field(
        30, description="How long CloudWatch Logs keeps the app's log lines."
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags on every resource shipyard creates, beside shipyard:app and shipyard:env.",
    )
    subnets: list[str] = Field(
        default_factory=list,
        description="The VPC subnets the load balancer, the app's tasks and the database run in (two availability zones at least; default: none, and shipyard creates a minimal VPC of two public subnets).",
    )
    security_groups: list[str] = Field(
        default_factory=list,
        description="Security groups of the load balancer, the tasks and the database, with `subnets` (default: shipyard creates one each, open only as far as each needs).",
    )
    assign_public_ip: bool | None = Field(
        None,
        description="Give the tasks public IP addresses, as subnets without a NAT gateway need to pull images (default: yes in the VPC shipyard creates, no in `subnets`).",
    )
    listener_arn: str | None = Field(
        None,
        description="An existing ALB listener to switch (default: shipyard creates an ALB with an HTTP listener).",
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Where the app answers, when a name or a CDN fronts the load balancer: a deploy verifies /version there (default: http://<the load balancer's DNS name>).",
    )
    rds: RdsSection | None = Field(
        None,
        description="The RDS instance shipyard creates (default: none; the env file's DATABASE_URL names an existing database).",
    )
    cpu: int = Field(256, description="The app task's CPU units (Fargate: 256 = 0.25 vCPU).")
    memory: int = Field(
        512, description="The app task's memory in MiB (a size Fargate offers for `cpu`)."
    )
    desired_count: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Tasks running the live version (default 2 for an environment named production, else 1; production needs 2 or more).",
    )

    @field_validator("endpoint_url", "registry", "cluster", "listener_arn", "url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``${VAR:-}`` with VAR unset leaves these out, as not writing them would."""
        return None if value == "" else value

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and not AWS_REGION.fullmatch(region):
            raise ValueError(f"{region!r} is not an AWS region's name (like us-east-1)")
        return region

    @field_validator("state_bucket")
    @classmethod
    def _bucket(cls, bucket: str | None) -> str | None:
        if bucket is not None and not S3_BUCKET.fullmatch(bucket):
            raise ValueError(
                f"{bucket!r} is not an S3 bucket's name (3 to 63 lowercase letters, digits, "
                "dots and hyphens, beginning and ending with a letter or digit)"
            )
        return bucket

    @field_validator("subnets")
    @classmethod
    def _two_zones(cls, subnets: list[str]) -> list[str]:
        if len(subnets) == 1:
            raise ValueError(
                "an ALB spans two availability zones: give two subnets or more, or none for a VPC shipyard creates"
            )
        return subnets

    @model_validator(mode="after")
    def _given_with_their_subnets(self) -> AwsSection:
        if self.security_groups and not self.subnets:
            raise ValueError(
                "security_groups belong to a VPC: give them with its `subnets`, or neither (shipyard then creates both)"
            )
        if self.listener_arn and not self.subnets:
            raise ValueError(
                "listener_arn's load balancer is in a VPC of its own: give `subnets` of that VPC with it"
            )
        return self

    @field_validator("cpu")
    @classmethod
    def _fargate_cpu(cls, cpu: int) -> int:
        if cpu not in FARGATE_MEMORY:
            raise ValueError(
                f"cpu {cpu} is not a Fargate size (one of {', '.join(map(str, FARGATE_MEMORY))})"
            )
        return cpu

    @field_validator("memory")
    @classmethod
    def _fargate_memory(cls, memory: int, info: ValidationInfo) -> int:
        sizes = FARGATE_MEMORY.get(info.data.get("cpu", 0))
        if sizes is None or memory in sizes:
            return memory  # a cpu that is not a size is its own error
        steps = {b - a for a, b in itertools.pairwise(sizes)}
        offered = (
            f"{sizes[0]} to {sizes[-1]} in steps of {steps.pop()}"
            if len(steps) == 1
            else ", ".join(map(str, sizes))
        )
        cpu = info.data["cpu"]
        raise ValueError(f"memory {memory} MiB is not offered with cpu {cpu} ({offered} MiB)")


# A DigitalOcean region's slug (ams3, nyc1, fra1, sfo3, syd1).
DO_REGION = re.compile(r"[a-z]{3}\d")
# The Droplet images `shipyard provision` supports (Debian 12 and 13, Ubuntu 24.04).
DO_IMAGES = ("debian-12-x64", "debian-13-x64", "ubuntu-24-04-x64")


class DoDatabaseSection(_Model):
    """A DigitalOcean Managed PostgreSQL cluster for the environment's database (`providers.digitalocean.database`), in place of the one on the Droplet: `shipyard provision` creates it (tagged as the environment's) with `database.name` in it, admitting only what carries the environment's tag (the Droplet). The app connects to it over the region's private network as the cluster's admin user (doadmin), whose password DigitalOcean keeps; shipyard reaches it through a client container on the Droplet, so extensions, migrations and `pg_dump` snapshots (on the Droplet's disk) work as with the database on the Droplet. DigitalOcean's daily backups come on top."""

    size: str = Field(
        "db-s-1vcpu-2gb", pattern=r"^[a-z0-9-]+$", description="The cluster's size slug."
    )
    version: str = Field("17", pattern=r"^\d+$", description="PostgreSQL's major version.")
    nodes: int = Field(1, ge=1, le=3, description="Nodes: 1, or 2 and 3 with standbys.")
    cluster: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9-]{2,62}$",
        description="An existing cluster's name, used as it is (its trusted sources gain the environment's tag, `database.name` is created in it when missing, and destroy never deletes it); unset: shipyard's own, shipyard-<app>-<environment>.",
    )


class DigitalOceanSection(_Model):
    """The Droplet an environment with a do://<region> target runs on (`providers.digitalocean`): shipyard creates it (or adopts the one tagged as the environment's), then provisions and deploys to it over SSH like any ssh:// host. The API token is `DIGITALOCEAN_TOKEN` in shipyard's environment, never in shipyard.yml nor the env file (whose values reach the app)."""

    size: str = Field(
        "s-1vcpu-2gb", description="The Droplet's size slug (PostGIS wants 2 GiB of memory)."
    )
    image: str = Field(
        "debian-12-x64",
        description="The Droplet's image: debian-12-x64, debian-13-x64 or ubuntu-24-04-x64 (what `shipyard provision` supports).",
    )
    ssh_public_key: str = Field(
        "~/.ssh/id_ed25519.pub",
        description="The public key the Droplet lets log in as root (imported into the account when missing); its private key must be the agent's or `providers.ssh.identity_file`.",
    )
    user: str = Field(
        "root",
        pattern=r"^[a-z_][a-z0-9_-]*$",
        description="The user deploys log in as (root on a new Droplet; a `shipyard provision --deploy-user` one after).",
    )
    ssh_sources: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"],
        min_length=1,
        description="Addresses the cloud firewall admits to SSH (22); HTTP and HTTPS are open to all.",
    )
    firewall: bool = Field(True, description="A cloud firewall admitting 22, 80 and 443 only.")
    reserved_ip: bool = Field(
        False,
        description="A reserved IP assigned to the Droplet: the address stays when the Droplet is replaced.",
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Further tags on the Droplet and firewall, beside shipyard's own.",
    )
    database: DoDatabaseSection | None = Field(
        None,
        description="A Managed PostgreSQL cluster for the database (`{}`: shipyard's own, with the defaults); unset: the database runs on the Droplet.",
    )
    api_url: str = Field(
        "https://api.digitalocean.com",
        pattern=r"^https?://",
        description="The API's address: DigitalOcean's, or a stand-in's.",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, image: str) -> str:
        if image not in DO_IMAGES:
            raise ValueError(
                f"image {image!r}: one `shipyard provision` supports ({', '.join(DO_IMAGES)})"
            )
        return image

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not re.fullmatch(r"[A-Za-z0-9:_-]{1,255}", tag):
                raise ValueError(f"tag {tag!r}: letters, digits, ':', '-' and '_' only")
        return tags


# gcp://<project>/<region>: a project ID (6 to 30 lowercase letters, digits and hyphens, starting
# with a letter) and a region (europe-west1, us-central1, northamerica-northeast2…).
GCP_TARGET = re.compile(r"gcp://([a-z][a-z0-9-]{4,28}[a-z0-9])/([a-z]+-[a-z]+\d{1,2})")
GCP_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")


class CloudSqlSection(_Model):
    """The Cloud SQL for PostgreSQL instance of a Google Cloud environment (`providers.gcp.cloud_sql`): one shipyard creates, or an existing one named by `instance`."""

    instance: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$",
        description="An existing instance in the project to use (default: shipyard creates shipyard-<app>-<environment>).",
    )
    version: str = Field(
        "POSTGRES_17", pattern=r"^POSTGRES_\d{2}$", description="PostgreSQL's major version."
    )
    tier: str = Field("db-custom-1-3840", description="The machine tier (vCPUs and memory).")
    edition: str = Field(
        "ENTERPRISE",
        pattern=r"^(ENTERPRISE|ENTERPRISE_PLUS)$",
        description="Cloud SQL's edition (ENTERPRISE_PLUS takes only its own tiers).",
    )
    disk_gb: int = Field(10, ge=10, le=65536, description="Storage (SSD), GiB.")
    private_network: str | None = Field(
        None,
        description="A VPC network (projects/<p>/global/networks/<n>) for a private IP; default: a public IP with no authorized network, reached only through the Cloud SQL connector.",
    )
    deletion_protection: bool = Field(
        True, description="Cloud SQL refuses to delete the instance until this is turned off."
    )


class GcpSection(_Model):
    """Where and how an environment with a gcp://<project>/<region> target runs (`providers.gcp`): Cloud Run, Cloud SQL, Artifact Registry, Secret Manager, Cloud Logging. Credentials are the Application Default Credentials (`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS, a workload identity), never in shipyard.yml."""

    state_bucket: str | None = Field(
        None,
        description="An existing Cloud Storage bucket holding the environment's state and lock (default: shipyard-state-<project>, which the first deploy creates with uniform access, public access prevented and versioning).",
    )
    cloud_sql: CloudSqlSection | None = Field(
        None,
        description="The app's database on Cloud SQL (`{}`: an instance shipyard creates); without it the env file's DATABASE_URL names an existing database.",
    )
    service_account: str | None = Field(
        None,
        description="The service account the app's revisions and jobs run as (default: the project's Compute Engine default service account).",
    )
    min_instances: int = Field(
        0, ge=0, le=1000, description="Instances kept running (0: scale to zero when idle)."
    )
    max_instances: int = Field(10, ge=1, le=1000, description="Instances at most.")
    cpu: str = Field("1", pattern=r"^\d+(\.\d+)?$|^\d+m$", description="CPUs per instance.")
    memory: str = Field("512Mi", pattern=r"^\d+(Mi|Gi)$", description="Memory per instance.")
    registry: str | None = Field(
        None,
        description="Push images to this registry (host[:port]) instead of the environment's Artifact Registry repository, which is still created: for a stand-in of Google Cloud whose registry address does not resolve.",
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Where the app answers, for verification (default: the Cloud Run service's URL).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels on every resource shipyard creates, beside shipyard-app and shipyard-env.",
    )

    @field_validator("state_bucket", "service_account", "registry", "url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``${VAR:-}`` with VAR unset leaves these out, as not writing them would."""
        return None if value == "" else value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not GCP_LABEL.fullmatch(key) or not re.fullmatch(r"[a-z0-9_-]{0,63}", value):
                raise ValueError(
                    f"label {key}={value}: lowercase letters, digits, '_' and '-' (a key starts "
                    "with a letter), up to 63 characters each"
                )
        return labels


class EnvironmentSection(_Model):
    """One environment: its target and env file, plus overrides of any top-level section."""

    target: str = Field(
        description="`local` (the Docker engine here), ssh://user@host[:port], aws://<region> (ECS on Fargate; settings in `providers.aws`), gcp://<project>/<region> (Cloud Run; settings in `providers.gcp`), or do://<region> (a DigitalOcean Droplet; settings in `providers.digitalocean`)."
    )
    targets: list[str] = Field(
        default_factory=list,
        description="Further nodes (ssh://user@host[:port]) deployed after `target`, each independent: its own proxy and, unless DATABASE_URL is external, its own database.",
    )
    env_file: str | None = Field(
        None, description="Env file, relative to shipyard.yml (default .env.<environment>)."
    )
    provider: str | None = Field(
        None,
        description="Provider that runs this environment (default: `aws` for an aws:// target, `gcp` for a gcp:// one, `digitalocean` for a do:// one, else `docker`).",
    )
    app: dict[str, Any] | None = Field(None, description="Overrides of `app` for this environment.")
    build: dict[str, Any] | None = Field(None, description="Overrides of `build`.")
    database: dict[str, Any] | None = Field(None, description="Overrides of `database`.")
    proxy: dict[str, Any] | None = Field(None, description="Overrides of `proxy`.")
    health: dict[str, Any] | None = Field(None, description="Overrides of `health`.")
    deploy: dict[str, Any] | None = Field(None, description="Overrides of `deploy`.")
    notifications: dict[str, Any] | None = Field(None, description="Overrides of `notifications`.")
    hooks: dict[str, Any] | None = Field(None, description="Overrides of `hooks`.")
    monitoring: dict[str, Any] | None = Field(None, description="Overrides of `monitoring`.")
    providers: dict[str, dict[str, Any]] | None = Field(
        None, description="Overrides of `providers`."
    )

    @field_validator("target")
    @classmethod
    def _target(cls, target: str) -> str:
        if target == "local":
            return target
        if re.fullmatch(r"ssh://(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.:_\[\]-]+(?::\d+)?", target):
            return target
        if target.startswith("aws://"):
            if AWS_REGION.fullmatch(target.removeprefix("aws://")):
                return target
            raise ValueError(f"target {target!r}: aws://<region>, like aws://us-east-1")
        if target.startswith("do://"):
            if DO_REGION.fullmatch(target.removeprefix("do://")):
                return target
            raise ValueError(f"target {target!r}: do://<region>, like do://ams3")
        if target.startswith("gcp://"):
            if GCP_TARGET.fullmatch(target):
                return target
            raise ValueError(
                f"target {target!r}: gcp://<project>/<region>, like gcp://my-project/europe-west1"
            )
        raise ValueError(
            "target must be 'local', ssh://user@host[:port], aws://<region>, "
            f"gcp://<project>/<region> or do://<region>, got {target!r}"
        )

    @field_validator("targets")
    @classmethod
    def _targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            if not target.startswith("ssh://"):
                raise ValueError(
                    f"every one of `targets` is an ssh://user@host[:port], got {target!r}"
                )
            cls._target(target)
        if len(set(targets)) != len(targets):
            raise ValueError("`targets` lists a node twice")
        return targets


class ConfigFile(_Model):
    """The whole of shipyard.yml."""

    app: AppSection = Field(description="The application.")
    build: BuildSection = Field(description="How the app image is built.")
    database: DatabaseSection | None = Field(
        None, description="The app's PostgreSQL; null when the app has none."
    )
    proxy: ProxySection = Field(
        default_factory=ProxySection, description="Caddy in front of the app."
    )
    health: HealthSection = Field(default_factory=HealthSection, description="Health gate.")
    deploy: DeploySection = Field(default_factory=DeploySection, description="Deploy behaviour.")
    notifications: NotificationsSection = Field(
        default_factory=NotificationsSection, description="Webhooks and ntfy."
    )
    hooks: HooksSection = Field(default_factory=HooksSection, description="Deploy hooks.")
    monitoring: MonitoringSection = Field(
        default_factory=MonitoringSection, description="Prometheus, Alertmanager, exporters."
    )
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Provider-specific settings, keyed by provider name."
    )
    environments: dict[str, EnvironmentSection] = Field(
        min_length=1,
        description="Environments by name (development, staging, production, or any name).",
    )

    @field_validator("environments")
    @classmethod
    def _environment_names(
        cls, envs: dict[str, EnvironmentSection]
    ) -> dict[str, EnvironmentSection]:
        for name in envs:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
                raise ValueError(
                    f"environment name {name!r}: use lowercase letters, digits and dashes"
                )
        return envs
