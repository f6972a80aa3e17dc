"""A catalogue of invalid configurations, each with the message and location it must produce.

Shared by the unit tests (load_config) and the end-to-end test (the CLI against a real engine
changes nothing).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from shipyard.config import Config, load_config

VALID = """\
app:
  name: shop
  port: 8080
  required_env: [JWT_SECRET]
build:
  kind: go
  context: .
  ldflags:
    example.com/shop/cmd.Version: "{version}"
database:
  name: shop
  user: shop
  image: shipyard-local/postgres:17
proxy:
  http_port: 18080
environments:
  development:
    target: local
  production:
    target: local
    proxy:
      http_port: 18081
"""

ENV_FILE = "JWT_SECRET=0123456789abcdef0123456789abcdef\nPOSTGRES_PASSWORD=s3cret-password\n"


@dataclass(frozen=True)
class BadConfig:
    id: str
    yaml: str
    expected: str  # substring of the message
    location: str  # "line:col key.path" prefix expected after the file name
    env_file: str | None = ENV_FILE
    environment: str = "development"


# Nine levels of nine aliases: a few hundred bytes that expand to 387 million values.
BILLION_LAUGHS = (
    "providers:\n  lol:\n    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
)


def _replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


AWS_SETTINGS = (
    "providers:\n  aws:\n    state_bucket: shop-state\n    subnets: [subnet-a, subnet-b]\n"
)


def _on_aws(settings: str = AWS_SETTINGS, target: str = "aws://eu-west-1", extra: str = "") -> str:
    """``VALID`` with production on AWS: ``settings`` before the environments."""
    yaml = _replace(
        "  production:\n    target: local\n    proxy:\n      http_port: 18081\n",
        f"  production:\n    target: {target}\n{extra}",
    )
    return yaml.replace("environments:\n", settings + "environments:\n", 1)


def _beside_other_errors(
    id: str, change: tuple[str, str], expected: str, location: str
) -> BadConfig:
    """Case ``id``: ``expected`` at ``location`` is still reported when the env file is empty and
    the config has two other errors, an out-of-range port and ``change`` (old, new)."""
    yaml = _replace("port: 8080", "port: 70000").replace(*change)
    return BadConfig(id, yaml, expected, location, env_file="\n")


CATALOGUE: list[BadConfig] = [
    BadConfig(
        "yaml-syntax", VALID.replace("  port: 8080", "  port: [8080"), "invalid YAML", "4:15"
    ),
    BadConfig(
        "unclosed-quote",
        _replace("image: shipyard-local/postgres:17", 'image: "shipyard-local/postgres:17'),
        "the quote that opens here is never closed (the parser reached 23:1: found unexpected end of stream)",
        "13:10",
    ),
    BadConfig(
        "unclosed-quote-closed-later",
        _replace("required_env: [JWT_SECRET]", 'required_env: ["JWT_SECRET]'),
        "the quoted value that starts here runs on to line 9, where the parser gave up (9:36: ",
        "4:18",
    ),
    BadConfig("unknown-top-level-key", VALID + "extra: 1\n", "unknown key", "23:1 extra"),
    BadConfig(
        "unknown-nested-key",
        _replace("  port: 8080\n", "  port: 8080\n  prot: 1\n"),
        "unknown key",
        "4:3 app.prot",
    ),
    BadConfig(
        "missing-app-name",
        _replace("  name: shop\n  port", "  port"),
        "required key is missing",
        "1:1 app.name",
    ),
    BadConfig(
        "bad-app-name",
        _replace("name: shop\n  port", "name: Shop_App\n  port"),
        "should match pattern",
        "2:3 app.name",
    ),
    BadConfig(
        "port-out-of-range",
        _replace("port: 8080", "port: 70000"),
        "less than or equal to 65535",
        "3:3 app.port",
    ),
    BadConfig(
        "port-not-int", _replace("port: 8080", "port: eighty"), "valid integer", "3:3 app.port"
    ),
    BadConfig(
        "unknown-build-kind",
        _replace("kind: go", "kind: nix"),
        "kind must be one of",
        "6:3 build.kind",
    ),
    BadConfig(
        "pgvector-extension-name",
        _replace("  user: shop\n", "  user: shop\n  extensions: [postgis, pgvector]\n"),
        "named 'vector'",
        "13:3 database.extensions",
    ),
    BadConfig(
        "bad-duration",
        _replace("  port: 8080\n", "  port: 8080\n  stop_grace_period: soon\n"),
        "expected a duration",
        "4:3 app.stop_grace_period",
    ),
    BadConfig(
        "bad-target",
        _replace("  development:\n    target: local", "  development:\n    target: ftp://x"),
        "target must be 'local', ssh://user@host[:port], aws://<region>, gcp://<project>/<region> or do://<region>",
        "18:5 environments.development.target",
    ),
    BadConfig(
        "unknown-environment-key",
        _replace(
            "  development:\n    target: local\n",
            "  development:\n    target: local\n    colour: blue\n",
        ),
        "unknown key",
        "19:5 environments.development.colour",
    ),
    BadConfig(
        "override-bad-value",
        _replace("      http_port: 18081", "      http_port: 99999"),
        "less than or equal to 65535",
        "22:7 environments.production.proxy.http_port",
        environment="production",
    ),
    BadConfig(
        "missing-env-file", VALID, "env file", "17:3 environments.development", env_file=None
    ),
    BadConfig(
        "required-env-missing",
        VALID,
        "JWT_SECRET is required by the app",
        "4:18 app.required_env[0]",
        env_file="POSTGRES_PASSWORD=s3cret-password\n",
    ),
    _beside_other_errors(
        "required-env-missing-beside-other-errors",
        ("  user: shop\n", "  user: Shop\n"),
        "JWT_SECRET is required by the app",
        "4:18 app.required_env[0]",
    ),
    _beside_other_errors(
        "database-password-missing-beside-other-errors",
        ("  image: shipyard", "  imgae: shipyard"),
        "POSTGRES_PASSWORD must be set",
        "10:1 database",
    ),
    BadConfig(
        "database-password-missing",
        VALID,
        "POSTGRES_PASSWORD must be set",
        "10:1 database",
        env_file="JWT_SECRET=0123456789abcdef0123456789abcdef\n",
    ),
    BadConfig(
        "undefined-variable",
        _replace("image: shipyard-local/postgres:17", "image: ${NO_SUCH_VARIABLE_X}"),
        "${NO_SUCH_VARIABLE_X} is not set",
        "13:3 database.image",
    ),
    BadConfig(
        "password-in-database-section",
        _replace("  user: shop\n", "  user: shop\n  password: hunter2\n"),
        "'password' is an unknown key: secrets belong in the env file .env.development, not in "
        "shipyard.yml; put the password there under the name POSTGRES_PASSWORD (the key "
        "database.password_env names)",
        "13:3 database.password",
    ),
    BadConfig(
        "password-in-an-environment",
        _replace(
            "  development:\n    target: local\n",
            "  development:\n    target: local\n    POSTGRES_PASSWORD: hunter2\n",
        ),
        "'POSTGRES_PASSWORD' is an unknown key: secrets belong in the env file .env.development, "
        "not in shipyard.yml; put the password there under the name POSTGRES_PASSWORD",
        "19:5 environments.development.POSTGRES_PASSWORD",
    ),
    BadConfig(
        "unterminated-variable",
        _replace("image: shipyard-local/postgres:17", "image: ${DB_IMAGE"),
        "${DB_IMAGE is not closed: write ${NAME} or ${NAME:-default}",
        "13:3 database.image",
    ),
    BadConfig(
        "no-such-environment",
        VALID,
        "no environment named 'staging'",
        "16:1 environments",
        environment="staging",
    ),
    BadConfig("not-a-mapping", "- just\n- a list\n", "expected a mapping of sections", "1:1"),
    BadConfig(
        "health-check-kind",
        _replace("proxy:\n", "health:\n  checks:\n    - kind: ping\nproxy:\n"),
        "kind must be one of",
        "16:7 health.checks[0].kind",
    ),
    BadConfig(
        "notification-unknown-event",
        VALID + "notifications:\n  sinks:\n    - kind: ntfy\n      topic: ops\n"
        "      events: [deploy.exploded]\n",
        "unknown event kind 'deploy.exploded'",
        "27:7 notifications.sinks[0].events",
    ),
    BadConfig(
        "webhook-secret-missing",
        VALID + "notifications:\n  sinks:\n    - kind: webhook\n"
        "      url: http://127.0.0.1:9/hook\n      secret_env: HOOK_SECRET\n",
        "HOOK_SECRET is not set in the env file",
        "27:7 notifications.sinks[0].secret_env",
    ),
    BadConfig(
        "webhook-secret-malformed",
        VALID + "notifications:\n  sinks:\n    - kind: webhook\n"
        "      url: http://127.0.0.1:9/hook\n      secret_env: HOOK_SECRET\n",
        "starts with 'whsec_'",
        "27:7 notifications.sinks[0].secret_env",
        env_file=ENV_FILE + "HOOK_SECRET=plain-text-secret-value\n",
    ),
    BadConfig(
        "monitoring-alerts-to-an-unknown-sink",
        VALID + "notifications:\n  sinks:\n    - kind: ntfy\n      topic: ops\n"
        "monitoring:\n  alertmanager:\n    sinks: [ntfy, pager]\n",
        "no sink named 'pager' in notifications.sinks (named: ntfy)",
        "29:19 monitoring.alertmanager.sinks[1]",
    ),
    BadConfig(
        "monitoring-unknown-exporter",
        VALID + "monitoring:\n  exporters: [node, statsd]\n",
        "Input should be 'node', 'postgres' or 'cadvisor'",
        "24:21 monitoring.exporters[1]",
    ),
    BadConfig(
        "monitoring-without-grafanas-password",
        VALID + "monitoring:\n  enabled: true\n",
        "GRAFANA_ADMIN_PASSWORD is not set in the env file (Grafana's admin password)",
        "23:1 monitoring",
    ),
    BadConfig(
        "monitoring-published-without-https",
        VALID + "monitoring:\n  enabled: true\n  grafana: {enabled: false}\n"
        "  publish: {prometheus: prom.example.com}\n",
        "publishing needs proxy.domains (HTTPS: basic auth is never sent in clear)",
        "26:3 monitoring.publish",
        env_file=ENV_FILE + "MONITORING_PASSWORD=long-enough-password-123\n",
    ),
    BadConfig(
        "monitoring-published-without-a-password",
        VALID.replace("  http_port: 18080\n", "  http_port: 18080\n  domains: [shop.example.com]\n")
        + "monitoring:\n  enabled: true\n  grafana: {enabled: false}\n"
        "  publish: {prometheus: prom.example.com}\n",
        "MONITORING_PASSWORD is not set in the env file (the basic auth password)",
        "27:3 monitoring.publish.password_env",
    ),
    BadConfig(
        "monitoring-error-rate-as-percent",
        VALID + "monitoring:\n  alerts:\n    error_rate: 5\n",
        "less than 1",
        "25:5 monitoring.alerts.error_rate",
    ),
    BadConfig(
        "alias-bomb",
        VALID + BILLION_LAUGHS,
        "aliases repeat more than 100,000 values and characters by here (alias *a3)",
        "29:5 providers.lol.a4[2]",
    ),
    BadConfig(
        "hook-without-command",
        VALID + "hooks:\n  before_deploy:\n    - argv: []\n",
        "at least 1 item",
        "25:7 hooks.before_deploy[0].argv",
    ),
    BadConfig(
        "subnet-host-bits",
        _replace("  http_port: 18080\n", "  http_port: 18080\n  subnet: 10.201.7.1/24\n"),
        "'10.201.7.1/24' is not an IPv4 subnet in CIDR notation (10.201.7.1/24 has host bits set)",
        "16:3 proxy.subnet",
    ),
    BadConfig(
        "subnet-public",
        _replace("  http_port: 18080\n", "  http_port: 18080\n  subnet: 8.8.8.0/24\n"),
        "must be a private range",
        "16:3 proxy.subnet",
    ),
    BadConfig(
        "subnet-too-small",
        _replace("  http_port: 18080\n", "  http_port: 18080\n  subnet: 10.201.7.0/29\n"),
        "/29 is too small: /28 or larger",
        "16:3 proxy.subnet",
    ),
    BadConfig(
        "proxy-cidr-without-subnet",
        _replace(
            "  required_env: [JWT_SECRET]\n",
            "  required_env: [JWT_SECRET]\n  env:\n    TRUSTED_PROXY_CIDRS: ${SHIPYARD_PROXY_CIDR}\n",
        ),
        "${SHIPYARD_PROXY_CIDR} is the proxy's network (proxy.subnet) and proxy.subnet is not set",
        "6:5 app.env.TRUSTED_PROXY_CIDRS",
    ),
    BadConfig(
        "do-target-not-a-region",
        _on_aws(settings="", target="do://amsterdam"),
        "target 'do://amsterdam': do://<region>, like do://ams3",
        "20:5 environments.production.target",
        environment="production",
    ),
    BadConfig(
        "do-image-not-debian-or-ubuntu",
        _on_aws(
            settings="providers:\n  digitalocean:\n    image: fedora-40-x64\n",
            target="do://ams3",
        ),
        "image 'fedora-40-x64': one `shipyard provision` supports (debian-12-x64, debian-13-x64, ubuntu-24-04-x64)",
        "18:5 providers.digitalocean.image",
        environment="production",
    ),
    BadConfig(
        "database-url-without-a-password",
        VALID,
        ".env.development: a postgres://user:password@host[:port]/database URL without password",
        "10:1 database.url_env",
        env_file="JWT_SECRET=0123456789abcdef0123456789abcdef\n"
        "DATABASE_URL=postgres://shop@db.example.net/shop\n",
    ),
    BadConfig(
        "database-url-not-postgres",
        VALID,
        ".env.development: not a postgres://user:password@host[:port]/database URL",
        "10:1 database.url_env",
        env_file="JWT_SECRET=0123456789abcdef0123456789abcdef\n"
        "DATABASE_URL=mysql://shop:pw@db.example.net/shop\n",
    ),
    BadConfig(
        "do-cluster-and-a-database-url",
        _on_aws(settings="providers:\n  digitalocean:\n    database: {}\n", target="do://ams3"),
        ".env.production sets DATABASE_URL too: remove one of them",
        "18:5 providers.digitalocean.database",
        environment="production",
        env_file="JWT_SECRET=0123456789abcdef0123456789abcdef\n"
        "DATABASE_URL=postgres://shop:pw@db.example.net/shop\n",
    ),
    BadConfig(
        "do-provider-on-an-aws-target",
        _on_aws(extra="    provider: digitalocean\n"),
        "target aws://eu-west-1 is run by provider aws, not 'digitalocean'",
        "25:5 environments.production.provider",
        environment="production",
    ),
    BadConfig(
        "aws-target-not-a-region",
        _on_aws(target="aws://mars"),
        "target 'aws://mars': aws://<region>, like aws://us-east-1",
        "24:5 environments.production.target",
        environment="production",
    ),
    BadConfig(
        "aws-region-not-the-targets",
        _on_aws(AWS_SETTINGS + "    region: us-east-1\n"),
        "region us-east-1 is not the target's (aws://eu-west-1)",
        "20:5 providers.aws.region",
        environment="production",
    ),
    BadConfig(
        "aws-production-with-one-task",
        _on_aws(AWS_SETTINGS + "    desired_count: 1\n"),
        "production runs 2 tasks or more",
        "20:5 providers.aws.desired_count",
        environment="production",
    ),
    BadConfig(
        "aws-state-bucket-not-a-bucket-name",
        _on_aws("providers:\n  aws:\n    state_bucket: Shop_State\n    subnets: [a, b]\n"),
        "'Shop_State' is not an S3 bucket's name (3 to 63 lowercase letters",
        "18:5 providers.aws.state_bucket",
        environment="production",
    ),
    BadConfig(
        "aws-listener-without-subnets",
        _on_aws("providers:\n  aws:\n    listener_arn: arn:aws:elasticloadbalancing:l\n"),
        "listener_arn's load balancer is in a VPC of its own: give `subnets` of that VPC with it",
        "17:3 providers.aws",
        environment="production",
    ),
    BadConfig(
        "aws-one-subnet",
        _on_aws("providers:\n  aws:\n    state_bucket: shop-state\n    subnets: [subnet-a]\n"),
        "an ALB spans two availability zones: give two subnets or more, or none for a VPC shipyard creates",
        "19:5 providers.aws.subnets",
        environment="production",
    ),
    BadConfig(
        "aws-security-groups-without-subnets",
        _on_aws("providers:\n  aws:\n    security_groups: [sg-1]\n"),
        "security_groups belong to a VPC: give them with its `subnets`",
        "17:3 providers.aws",
        environment="production",
    ),
    BadConfig(
        "aws-memory-fargate-does-not-offer",
        _on_aws(AWS_SETTINGS + "    cpu: 256\n    memory: 4096\n"),
        "memory 4096 MiB is not offered with cpu 256 (512, 1024, 2048 MiB)",
        "21:5 providers.aws.memory",
        environment="production",
    ),
    BadConfig(
        "aws-target-run-by-docker",
        _on_aws(extra="    provider: docker\n"),
        "target aws://eu-west-1 is run by provider aws, not 'docker'",
        "25:5 environments.production.provider",
        environment="production",
    ),
    BadConfig(
        "aws-provider-on-an-ssh-target",
        _on_aws(target="ssh://deploy@example.com", extra="    provider: aws\n"),
        "provider aws needs target aws://<region>",
        "25:5 environments.production.provider",
        environment="production",
    ),
    BadConfig(
        "gcp-target-without-a-region",
        _on_aws(settings="", target="gcp://events-prod"),
        "target 'gcp://events-prod': gcp://<project>/<region>, like gcp://my-project/europe-west1",
        "20:5 environments.production.target",
        environment="production",
    ),
    BadConfig(
        "gcp-label-not-lowercase",
        _on_aws(
            settings="providers:\n  gcp:\n    labels: {Team: events}\n",
            target="gcp://events-prod/europe-west1",
        ),
        "label Team=events: lowercase letters, digits, '_' and '-'",
        "18:5 providers.gcp.labels",
        environment="production",
    ),
    BadConfig(
        "gcp-cloud-sql-edition-unknown",
        _on_aws(
            settings="providers:\n  gcp:\n    cloud_sql:\n      edition: STANDARD\n",
            target="gcp://events-prod/europe-west1",
        ),
        "String should match pattern",
        "19:7 providers.gcp.cloud_sql.edition",
        environment="production",
    ),
    BadConfig(
        "gcp-without-cloud-sql-names-no-database",
        _on_aws(settings="", target="gcp://events-prod/europe-west1"),
        "on Google Cloud without providers.gcp.cloud_sql, the app's database is an existing one",
        "10:1 database.url_env",
        environment="production",
    ),
    BadConfig(
        "gcp-target-with-further-nodes",
        _on_aws(
            settings="",
            target="gcp://events-prod/europe-west1",
            extra="    targets: [ssh://deploy@example.com]\n",
        ),
        "a gcp:// target has no further nodes",
        "21:5 environments.production.targets",
        environment="production",
    ),
    BadConfig(
        "aws-target-with-further-nodes",
        _on_aws(extra="    targets: [ssh://deploy@example.com]\n"),
        "an aws:// target has no further nodes",
        "25:5 environments.production.targets",
        environment="production",
    ),
]


def write(tmp: Path, case: BadConfig) -> Path:
    config = tmp / "shipyard.yml"
    config.write_text(case.yaml, encoding="utf-8")
    if case.env_file is not None:
        env = tmp / f".env.{case.environment}"
        env.write_text(case.env_file, encoding="utf-8")
        env.chmod(0o600)
    (tmp / "go.mod").write_text("module example.com/shop\n\ngo 1.22\n", encoding="utf-8")
    return config


def committed_config(tmp: Path, yaml: str) -> Config:
    """A valid config for ``development`` in a git repository with one commit (a clean tree),
    with what `shipyard check` asks of the tree: a private, untracked env file, go.mod and the
    migrations directory."""
    return load_config(committed_repository(tmp, yaml), "development", process_env={})


def committed_repository(
    tmp: Path, yaml: str, *, environment: str = "development", subdir: str = ""
) -> Path:
    """``yaml`` as shipyard.yml (in ``subdir`` of the repository) with ``environment``'s env file,
    go.mod and the migrations directory, in a git repository at ``tmp`` with a clean tree.
    Returns the path of shipyard.yml."""
    where = tmp / subdir if subdir else tmp
    where.mkdir(parents=True, exist_ok=True)
    (where / "shipyard.yml").write_text(yaml, encoding="utf-8")
    env_file = where / f".env.{environment}"
    env_file.write_text(ENV_FILE, encoding="utf-8")
    env_file.chmod(0o600)
    (where / "go.mod").write_text("module example.com/shop\n", encoding="utf-8")
    (where / "migrations").mkdir(exist_ok=True)
    clean_tree(tmp)
    return where / "shipyard.yml"


def clean_tree(tmp: Path) -> None:
    """Make ``tmp`` a git repository with one commit whose tree is clean (everything in it is
    ignored), as `shipyard check` and deploy want the source."""
    git = ["git", "-C", str(tmp), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    (tmp / ".gitignore").write_text("*\n", encoding="utf-8")
