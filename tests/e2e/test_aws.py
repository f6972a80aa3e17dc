"""The reference app's shipyard.yml with an aws:// target, against the AWS stand-in (moto in
server mode on loopback; AWS itself cannot be reached from here): `check` validates offline,
`plan` lists every AWS action a deploy would take and changes nothing, `status` reads the
environment, and what is not built for AWS yet refuses without touching anything."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from ruamel.yaml import YAML

from shipyard.build import Image, VersionInfo
from shipyard.config import load_config
from shipyard.database import verify_extensions_sql
from shipyard.hosts import LocalHost
from shipyard.providers.aws import (
    AwsEnvironment,
    AwsNames,
    AwsSettings,
    Clients,
    EcrDelivery,
    TaskSpec,
)
from shipyard.providers.aws._steps import extensions_command
from shipyard.secrets import Masker, read_env_file
from tests.aws_standin import (
    CREDENTIALS,
    REGION,
    client,
    moto_with_bucket,
    two_subnets,
)
from tests.e2e.conftest import run_shipyard
from tests.e2e.providers import on_aws, unprotect_rds
from tests.e2e.registry import running_registry, tags
from tests.example_app import copy_example, git

BUCKET = "shipyard-state-e2e"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_with_bucket(BUCKET) as url:
        yield url


def _on_aws(endpoint: str, subnets: list[str]) -> Any:
    def edit(document: dict[str, Any]) -> None:
        # Only the target changes, and where the settings of AWS come from.
        document["environments"]["production"]["target"] = f"aws://{REGION}"
        document["providers"] = {
            "aws": {
                "endpoint_url": "${AWS_ENDPOINT_URL}",
                "state_bucket": BUCKET,
                "subnets": subnets,
            }
        }

    return edit


@pytest.fixture
def project(tmp_path: Path, endpoint: str, docker_engine: None) -> tuple[Path, dict[str, str]]:
    name = f"a{secrets.token_hex(3)}"
    where = copy_example(tmp_path / "app", name, _on_aws(endpoint, two_subnets(endpoint)))
    env_file = where / ".env.production"
    env_file.write_text(
        f"JWT_SECRET={secrets.token_hex(32)}\n"
        "DATABASE_URL=postgres://events:pw-not-real@db.internal:5432/events\n"
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_hex(16)}\n",
        encoding="utf-8",
    )
    env_file.chmod(0o600)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    }
    env.pop("AWS_PROFILE", None)
    return where, env


def _aws_resources(endpoint: str) -> dict[str, list[str]]:
    """Everything a deploy would create, as the AWS APIs list it."""
    session = boto3.session.Session(region_name=REGION, **CREDENTIALS)

    def made(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint)

    def named(resources: list[dict[str, Any]], ident: str) -> list[str]:
        """EC2's resources by their Name tag (by their id when they have none)."""
        tags = [{t["Key"]: t["Value"] for t in r.get("Tags", [])} for r in resources]
        return [t.get("Name", r[ident]) for r, t in zip(resources, tags, strict=True)]

    ec2 = made("ec2")
    return {
        "vpcs": named(ec2.describe_vpcs()["Vpcs"], "VpcId"),
        "subnets": named(ec2.describe_subnets()["Subnets"], "SubnetId"),
        "internet gateways": named(ec2.describe_internet_gateways()["InternetGateways"], "InternetGatewayId"),
        "security groups": [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]],
        "repositories": [r["repositoryName"] for r in made("ecr").describe_repositories()["repositories"]],
        "clusters": [
            c["clusterArn"]
            for c in made("ecs").describe_clusters(clusters=made("ecs").list_clusters()["clusterArns"])["clusters"]
            if c["status"] == "ACTIVE"
        ],
        "log groups": [g["logGroupName"] for g in made("logs").describe_log_groups()["logGroups"]],
        "roles": [r["RoleName"] for r in made("iam").list_roles()["Roles"]],
        "secrets": [s["Name"] for s in made("secretsmanager").list_secrets()["SecretList"]],
        "target groups": [g["TargetGroupName"] for g in made("elbv2").describe_target_groups()["TargetGroups"]],
        "load balancers": [b["LoadBalancerName"] for b in made("elbv2").describe_load_balancers()["LoadBalancers"]],
        "task definitions": made("ecs").list_task_definitions()["taskDefinitionArns"],
        "state": [o["Key"] for o in made("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        if BUCKET in [b["Name"] for b in made("s3").list_buckets()["Buckets"]] else [],
    }  # fmt: skip


def test_check_validates_offline_and_names_the_credentials_source(
    project: tuple[Path, dict[str, str]],
) -> None:
    where, env = project
    result = run_shipyard(where, env, "check", "production")
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"AWS credentials from env; region {REGION}" in result.stderr
    assert f"state in s3://{BUCKET}" in result.stderr
    # Production's monitoring (a stack beside the app on a host) is said to be unused, not refused.
    assert f"monitoring.enabled: not used on aws://{REGION}" in result.stderr
    assert env["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr

    no_credentials = {
        k: v for k, v in env.items() if not k.startswith("AWS_") or k == "AWS_ENDPOINT_URL"
    }
    no_credentials["AWS_SHARED_CREDENTIALS_FILE"] = str(where / "none")
    no_credentials["AWS_CONFIG_FILE"] = str(where / "none")
    no_credentials["AWS_EC2_METADATA_DISABLED"] = "true"
    refused = run_shipyard(where, no_credentials, "check", "production")
    assert refused.returncode != 0
    assert "no AWS credentials found" in refused.stdout + refused.stderr


def test_plan_lists_every_aws_action_and_changes_nothing(
    project: tuple[Path, dict[str, str]], endpoint: str
) -> None:
    where, env = project
    before = _aws_resources(endpoint)
    result = run_shipyard(where, env, "plan", "production", "--json")
    assert result.returncode == 0, result.stderr
    steps = [(s["phase"], s["action"]) for s in json.loads(result.stdout)]
    actions = "\n".join(f"{phase}: {action}" for phase, action in steps)
    for expected in (
        "deliver: push ",
        "infrastructure: ecr: create repository shipyard/",
        "infrastructure: ecs: create cluster shipyard-",
        "infrastructure: logs: create log group (retention 30 days)",
        "infrastructure: iam: create task execution role",
        "infrastructure: secretsmanager: create secret shipyard/",
        "infrastructure: elbv2: create target group of slot blue",
        "infrastructure: elbv2: create target group of slot green",
        "infrastructure: elbv2: create load balancer and its HTTP listener",
        "infrastructure: ec2: create security group (HTTP from anywhere) shipyard-",
        "infrastructure: ec2: create security group (port 8080 from the load balancer) shipyard-",
        "infrastructure: create and verify extensions postgis, vector, pg_trgm, pgcrypto",
        "migrate: apply 2 migration(s): 1, 2",
        "start: register a revision of task definition shipyard-",
        "(2 task(s))",
        "switch: the listener forwards every request to blue",
        "verify: GET http://",
    ):
        assert expected in actions, f"{expected!r} not in\n{actions}"
    # A secret's name is listed, never its value.
    assert env["AWS_SECRET_ACCESS_KEY"] not in result.stdout
    for value in (where / ".env.production").read_text().splitlines():
        assert value.split("=", 1)[1] not in result.stdout
    assert _aws_resources(endpoint) == before


def test_status_reads_an_environment_not_deployed_and_what_aws_lacks_refuses_untouched(
    project: tuple[Path, dict[str, str]], endpoint: str
) -> None:
    where, env = project
    status = run_shipyard(where, env, "status", "production", "--json")
    assert status.returncode == 0, status.stderr
    [report] = json.loads(status.stdout)
    assert report["health"] == "not deployed"
    assert report["version"] is None
    before = _aws_resources(endpoint)
    refused = run_shipyard(where, env, "render", "production")
    assert refused.returncode == 2, refused.stderr
    assert "`shipyard render` is not built yet for AWS environments" in refused.stderr
    assert _aws_resources(endpoint) == before


def test_the_image_is_pushed_to_its_ecr_repository_with_the_registry_token(
    tmp_path: Path, endpoint: str, docker_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stand-in's registry accepts only the login ECR's registry token names.
    token = client("ecr", endpoint).get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    private, home = tmp_path / "private", tmp_path / "home"
    private.mkdir()
    home.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))  # where the login's configuration goes, briefly
    monkeypatch.setenv("HOME", str(home))
    app = f"a{secrets.token_hex(3)}"
    tag = f"{app}:1.0.0-abc1234-0f0f0f0f"
    subprocess.run(["docker", "tag", "shipyard-local/registry:2", tag], check=True)
    image_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    image = Image(tag, image_id, VersionInfo("1.0.0", "abc1234" + "0" * 33, "2026-12-04", False))
    try:
        with running_registry(tmp_path / "registry", user, password) as url:
            settings = AwsSettings(
                region=REGION, endpoint_url=endpoint, state_bucket=BUCKET,
                subnets=["subnet-a", "subnet-b"], registry=url, tags={"team": "events"},
            )  # fmt: skip
            clients = Clients(settings, session=boto3.session.Session(**CREDENTIALS))
            names = AwsNames(app, "production")
            masker = Masker()
            done = EcrDelivery(names, settings, clients, LocalHost(), masker=masker).deliver(image)
            assert masker(f"login {password}") == "login ***"

            assert done.startswith(f"pushed {url}/shipyard/{app}/production:1.0.0-abc1234-0f0f0f0f")
            assert tags(url, f"shipyard/{app}/production", user, password) == [
                "1.0.0-abc1234-0f0f0f0f"
            ]
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
    ecr = client("ecr", endpoint)
    [repository] = ecr.describe_repositories(repositoryNames=[names.repository])["repositories"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    labels = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in labels} == {
        "team": "events", "shipyard:app": app, "shipyard:env": "production",
    }  # fmt: skip
    # The login lived in a private directory, removed; the operator's own is untouched.
    assert list(private.iterdir()) == []
    assert not (home / ".docker").exists()
    # The engine keeps the build's tag only, not the repository's name for it.
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}", f"*/shipyard/{app}/*"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert listed.strip() == ""


def _environment(
    where: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AwsEnvironment:
    """The project's production environment on the stand-in, as shipyard loads it."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])
    config = load_config(where / "shipyard.yml", "production")
    return AwsEnvironment(config, session=boto3.session.Session(**CREDENTIALS))


def test_destroy_removes_what_shipyard_created_and_nothing_else(
    project: tuple[Path, dict[str, str]], endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, env = project
    aws_env = _environment(where, env, monkeypatch)
    names = aws_env.names
    # What a deploy creates: the base resources, a task definition revision, a slot's service.
    infrastructure = aws_env.infrastructure()
    infrastructure.ensure()
    revision = aws_env.tasks().register(
        TaskSpec(
            image=f"{names.repository}:1.0.0", port=8080, version="1.0.0", commit="c" * 40,
            release_id="r1", execution_role_arn=infrastructure.execution_role_arn(),
            secret_arns=infrastructure.secret_arns(),
        )
    )  # fmt: skip
    traffic = aws_env.traffic()
    assert traffic is not None
    traffic.create_service(
        "blue", revision, port=8080, network=aws_env.network().tasks(), desired=2
    )
    state = client("s3", endpoint)
    state.put_object(
        Bucket=BUCKET, Key=f"shipyard/{names.app}/production/releases.json", Body=b"[]"
    )
    # Beside them, what shipyard did not create: an untagged secret under the same prefix, and
    # another environment's state.
    secrets_client = client("secretsmanager", endpoint)
    secrets_client.create_secret(Name=names.secret("NOT_OURS"), SecretString="kept")
    state.put_object(Bucket=BUCKET, Key=f"shipyard/{names.app}/staging/releases.json", Body=b"[]")
    created = _aws_resources(endpoint)
    assert names.repository in created["repositories"]

    result = run_shipyard(where, env, "destroy", "production", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert f"ECS service {names.service('blue')}" in record["removed"]
    after = _aws_resources(endpoint)
    assert names.repository not in after["repositories"]
    assert not [c for c in after["clusters"] if c.endswith(f"/{names.cluster}")]
    assert names.log_group not in after["log groups"]
    assert names.execution_role not in after["roles"]
    assert [s for s in after["secrets"] if s.startswith(names.secret_prefix)] == [
        names.secret("NOT_OURS")
    ]
    assert names.load_balancer not in after["load balancers"]
    assert not [
        g
        for g in after["target groups"]
        if g in (names.target_group("blue"), names.target_group("green"))
    ]
    assert not [arn for arn in after["task definitions"] if f"/{names.family}:" in arn]
    # The security groups shipyard made in the operator's VPC go; the VPC stays.
    assert f"{names.stem}-tasks" in created["security groups"]
    assert not [g for g in after["security groups"] if g.startswith(names.stem)]
    assert set(created["vpcs"]) == set(after["vpcs"])
    assert [k for k in after["state"] if k.startswith(f"shipyard/{names.app}/")] == [
        f"shipyard/{names.app}/staging/releases.json"
    ]


def test_logs_app_reads_the_apps_lines_from_cloudwatch(
    project: tuple[Path, dict[str, str]], endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, env = project
    names = _environment(where, env, monkeypatch).names
    before = run_shipyard(where, env, "logs", "production", "--app")
    assert before.returncode == 0, before.stderr  # no log group yet: no lines
    assert before.stdout == ""
    jwt = read_env_file(where / ".env.production")["JWT_SECRET"]
    logs = client("logs", endpoint)
    logs.create_log_group(logGroupName=names.log_group)
    logs.create_log_stream(logGroupName=names.log_group, logStreamName="app/app/task1")
    logs.create_log_stream(logGroupName=names.log_group, logStreamName="other/x")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=names.log_group, logStreamName="app/app/task1",
        logEvents=[{"timestamp": now - 2000, "message": "first"},
                   {"timestamp": now - 1000, "message": f"second {jwt}"}],
    )  # fmt: skip
    logs.put_log_events(
        logGroupName=names.log_group, logStreamName="other/x",
        logEvents=[{"timestamp": now, "message": "not the app's"}],
    )  # fmt: skip
    result = run_shipyard(where, env, "logs", "production", "--app", "--tail", "1")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    stamp, message = line.split(" ", 1)
    assert message == "second ***"  # the env file's secrets are masked
    assert stamp.endswith("Z")
    every = run_shipyard(where, env, "logs", "production", "--app", "--tail", "10")
    assert [line.split(" ", 1)[1].split(" ")[0] for line in every.stdout.splitlines()] == [
        "first", "second",
    ]  # fmt: skip


def test_destroy_keeps_the_rds_instance_and_its_snapshots_unless_asked(
    project: tuple[Path, dict[str, str]], endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, env = project
    text = (where / "shipyard.yml").read_text()
    (where / "shipyard.yml").write_text(
        text.replace(
            "    state_bucket:", "    rds:\n      deletion_protection: false\n    state_bucket:", 1
        )
    )
    aws_env = _environment(where, env, monkeypatch)
    database = aws_env.database()
    assert database is not None
    aws_env.network().ensure()  # the security groups, as a deploy makes them first
    database.ensure(timeout=60)
    taken = aws_env.snapshots().take(
        version="1.0.0", commit="c" * 40, deployment_id="20261204T000000Z-abcdef",
        reason="before migrations", timeout=60,
    )  # fmt: skip
    rds = client("rds", endpoint)

    kept = run_shipyard(where, env, "destroy", "production", "--yes", "--json")
    assert kept.returncode == 0, kept.stderr
    [record] = json.loads(kept.stdout)
    assert any(k.startswith(f"RDS instance {aws_env.names.database}:") for k in record["kept"])
    # The instance runs behind the database's security group: the network stays with it.
    assert any(k.startswith(f"the network of {aws_env.names.stem}") for k in record["kept"])
    groups = client("ec2", endpoint).describe_security_groups()["SecurityGroups"]
    assert f"{aws_env.names.stem}-database" in [g["GroupName"] for g in groups]
    assert record["snapshots"]["count"] == 1 and not record["snapshots_removed"]
    assert rds.describe_db_instances(DBInstanceIdentifier=aws_env.names.database)["DBInstances"]

    gone = run_shipyard(
        where, env, "destroy", "production", "--yes", "--volumes", "--snapshots", "--json"
    )
    assert gone.returncode == 0, gone.stderr
    [record] = json.loads(gone.stdout)
    assert f"RDS snapshot {taken.name}" in record["removed"]
    assert any(r.startswith("rds: delete instance (final snapshot ") for r in record["removed"])
    left = rds.describe_db_snapshots(DBInstanceIdentifier=aws_env.names.database)["DBSnapshots"]
    assert taken.name not in [s["DBSnapshotIdentifier"] for s in left]
    # The instance gone, so are its subnet and parameter groups and its security group.
    assert f"rds: delete DB subnet group {aws_env.names.database}" in record["removed"]
    assert f"ec2: delete security group {aws_env.names.stem}-database" in record["removed"]


def test_the_extensions_command_creates_and_verifies_them_on_postgresql(
    docker_engine: None,
) -> None:
    """The one-off task's command, run as ECS would run it, in the database image itself."""
    name = f"sy-ext-{secrets.token_hex(3)}"
    password = secrets.token_hex(12)
    subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--env", f"POSTGRES_PASSWORD={password}",
         "shipyard-local/postgres:17"],
        capture_output=True, check=True,
    )  # fmt: skip
    env = [
        "--env", "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres",
        "--env", f"PGPASSWORD={password}",
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(
            ["docker", "exec", name, "pg_isready", "-h", "127.0.0.1", "-U", "postgres"],
            capture_output=True, check=False,
        ).returncode:  # fmt: skip
            assert time.monotonic() < deadline, "PostgreSQL never became ready"
            time.sleep(0.2)
        wanted = ["postgis", "vector", "pg_trgm", "pgcrypto"]
        done = subprocess.run(
            ["docker", "exec", *env, name, *extensions_command(wanted)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        installed = subprocess.run(
            ["docker", "exec", name, "psql", "-U", "postgres", "-tAc",
             "SELECT extname FROM pg_extension"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert set(wanted) <= set(installed)
        missing = subprocess.run(
            ["docker", "exec", *env, name, *extensions_command(["pg_trgm", "no_such_extension"])],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert missing.returncode != 0
        assert 'extension "no_such_extension" is not available' in missing.stderr
        # The check alone names what CREATE EXTENSION did not leave installed.
        unverified = subprocess.run(
            ["docker", "exec", name, "psql", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
             verify_extensions_sql(["pg_trgm", "hstore"])],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert unverified.returncode != 0
        assert "extensions missing after CREATE EXTENSION: hstore" in unverified.stderr
    finally:
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False
        )


def test_the_example_deploys_to_aws_redeploys_rolls_back_and_is_destroyed(
    tmp_path: Path, docker_engine: None
) -> None:
    """SC-005 for two providers: the reference app's shipyard.yml, only its target changed,
    deploys to the AWS stand-in with the same command (the credentials, and where the
    stand-in's registry and load balancer answer, come from the environment): a VPC, ECS
    services per slot, the listener switched, /version through the load balancer; an RDS
    snapshot only before pending migrations; a rollback to the previous task definition
    revision without a build; destroy removing what the deploys created and nothing else."""
    with on_aws(tmp_path, f"d{secrets.token_hex(3)}") as world:
        # What is there before, and not shipyard's: it must survive the destroy.
        neighbour = two_subnets(world.endpoint)
        _deploy_redeploy_rollback(
            world.where, world.env, world.endpoint, world.names, world.registry, world.login
        )
        _destroy(world.where, world.env, world.endpoint, world.names, neighbour)


def _ours(endpoint: str, names: AwsNames) -> dict[str, list[str]]:
    """What exists on the stand-in and carries the environment's names."""
    return {
        kind: sorted(n.rsplit("/", 1)[-1] if kind in ("clusters", "task definitions") else n
                     for n in found if names.app in n)
        for kind, found in _aws_resources(endpoint).items() if kind != "state"
    }  # fmt: skip


def _destroy(
    where: Path, env: dict[str, str], endpoint: str, names: AwsNames, neighbour: list[str]
) -> None:
    before = _aws_resources(endpoint)
    # Production's database is protected: destroy --volumes refuses before removing anything.
    refused = run_shipyard(where, env, "destroy", "production", "--yes", "--volumes")
    assert refused.returncode != 0
    assert "has deletion protection" in refused.stdout + refused.stderr
    assert _aws_resources(endpoint) == before
    unprotect_rds(endpoint, names)
    gone = run_shipyard(where, env, "destroy", "production", "--yes", "--volumes", "--snapshots")
    assert gone.returncode == 0, gone.stderr
    assert {kind: found for kind, found in _ours(endpoint, names).items() if found} == {}
    # The VPC shipyard did not make, and its subnets, are still there.
    ec2 = client("ec2", endpoint)
    assert len(ec2.describe_subnets(SubnetIds=neighbour)["Subnets"]) == 2


def _deploy_redeploy_rollback(
    where: Path,
    env: dict[str, str],
    endpoint: str,
    names: AwsNames,
    registry: str,
    login: tuple[str, str],
) -> None:
    ecs, elb, rds = client("ecs", endpoint), client("elbv2", endpoint), client("rds", endpoint)

    def served() -> str:
        status = run_shipyard(where, env, "status", "production", "--json")
        assert status.returncode == 0, status.stderr
        [report] = json.loads(status.stdout)
        return str(report["commit"])

    def forwarded() -> str:
        balancer = elb.describe_load_balancers(Names=[names.load_balancer])["LoadBalancers"][0]
        [listener] = elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])[
            "Listeners"
        ]
        groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        live = max(groups, key=lambda g: g["Weight"])["TargetGroupArn"]
        return next(s for s in ("blue", "green") if names.target_group(s) in live)

    def snapshots() -> list[str]:
        found = rds.describe_db_snapshots(
            DBInstanceIdentifier=names.database, SnapshotType="manual"
        )
        return [s["DBSnapshotIdentifier"] for s in found["DBSnapshots"]]

    def revisions() -> list[str]:
        found = ecs.list_task_definitions(familyPrefix=names.family, status="ACTIVE")
        return [
            a
            for a in found["taskDefinitionArns"]
            if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == names.family
        ]

    first_commit = git(where, "rev-parse", "HEAD")
    first = run_shipyard(where, env, "deploy", "production")
    assert first.returncode == 0, first.stderr
    # Exactly what a first deploy creates, as the AWS APIs list it.
    zones = [f"{REGION}a", f"{REGION}b"]
    assert _ours(endpoint, names) == {
        "vpcs": [names.stem],
        "subnets": [f"{names.stem}-{zone}" for zone in zones],
        "internet gateways": [names.stem],
        "security groups": sorted(
            f"{names.stem}-{role}" for role in ("database", "load-balancer", "tasks")
        ),
        "repositories": [names.repository],
        "clusters": [names.cluster],
        "log groups": [names.log_group],
        "roles": [names.execution_role],
        # One per key of the env file: every one reaches the app, as on a host.
        "secrets": sorted(names.secret(k) for k in read_env_file(where / ".env.production")),
        "target groups": sorted(names.target_group(s) for s in ("blue", "green")),
        "load balancers": [names.load_balancer],
        "task definitions": sorted(
            f"{names.family}{suffix}:1" for suffix in ("", "-migrate", "-tools")
        ),
    }
    listed = ecs.list_services(cluster=names.cluster)["serviceArns"]
    assert [arn.rsplit("/", 1)[-1] for arn in listed] == [names.service("blue")]
    assert served() == first_commit
    assert forwarded() == "blue"
    assert len(revisions()) == 1
    [service] = ecs.describe_services(cluster=names.cluster, services=[names.service("blue")])[
        "services"
    ]
    assert service["desiredCount"] == 2 and service["launchType"] == "FARGATE"
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])[
        "taskDefinition"
    ]
    container = definition["containerDefinitions"][0]
    assert container["image"].startswith(f"{registry}/{names.repository}:")
    plain = {e["name"]: e["value"] for e in container["environment"]}
    assert plain["DATABASE_URL"].startswith("postgres://events@") and "@" in plain["DATABASE_URL"]
    hidden = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert hidden["PGPASSWORD"].endswith(":password::")  # RDS's own secret
    assert names.secret("JWT_SECRET") in hidden["JWT_SECRET"]
    for value in read_env_file(where / ".env.production").values():
        assert value not in json.dumps(definition)  # secrets by reference only
    pushed = tags(registry, names.repository, *login)
    assert any(t.endswith("-migrations") for t in pushed) and len(pushed) == 2
    assert rds.describe_db_instances(DBInstanceIdentifier=names.database)["DBInstances"]
    # Migrations were pending (all of them): the snapshot came first.
    [first_snapshot] = snapshots()

    # plan after a deploy: the watch and the switch back to the live slot are listed.
    planned = run_shipyard(where, env, "plan", "production", "--json")
    assert planned.returncode == 0, planned.stderr
    assert any("switch back to blue on failure" in s["action"] for s in json.loads(planned.stdout))

    # A second deploy, nothing pending: a new revision in the other slot, no snapshot.
    (where / "NOTES").write_text("a change\n")
    second_commit = _commit(where, "second")
    second = run_shipyard(where, env, "deploy", "production", "--watch-for", "1s")
    assert second.returncode == 0, second.stderr
    # Everything was in place: the role's access to RDS's secret was not taken away and given
    # back (tasks ECS starts meanwhile read it).
    assert "set the secrets policy" not in second.stderr
    assert served() == second_commit and forwarded() == "green"
    assert len(revisions()) == 2
    assert snapshots() == [first_snapshot]
    [blue] = ecs.describe_services(cluster=names.cluster, services=[names.service("blue")])[
        "services"
    ]
    assert blue["desiredCount"] == 0  # retired, kept for a rollback

    # The operator tightens retention, and a migration is pending: the RDS snapshot first, then
    # retention. A snapshot of a release no longer retained goes; the first release's
    # (retained) stays.
    yaml = YAML()
    document = yaml.load(where / "shipyard.yml")
    document["database"]["snapshots"] = {"retention_days": 0, "keep_min": 1}
    with (where / "shipyard.yml").open("w") as handle:
        yaml.dump(document, handle)
    stray = f"{names.stem}-00000000-stray"
    rds.create_db_snapshot(
        DBSnapshotIdentifier=stray, DBInstanceIdentifier=names.database,
        Tags=[{"Key": "shipyard:app", "Value": names.app},
              {"Key": "shipyard:env", "Value": names.environment},
              {"Key": "shipyard:deployment", "Value": "20250101T000000Z-old000"}],
    )  # fmt: skip
    assert stray in snapshots()
    (where / "migrations" / "000003_notes.up.sql").write_text("CREATE TABLE notes (id int);\n")
    (where / "migrations" / "000003_notes.down.sql").write_text("DROP TABLE notes;\n")
    third_commit = _commit(where, "a migration")
    third = run_shipyard(where, env, "deploy", "production", "--no-watch")
    assert third.returncode == 0, third.stderr
    assert served() == third_commit and forwarded() == "blue"
    [taken] = [s for s in snapshots() if s != first_snapshot]
    assert taken.startswith(names.stem) and taken != stray  # the stray one was pruned

    # Back to the second release's revision, without a build: planned, then done.
    planned_back = run_shipyard(where, env, "plan", "production", "--rollback", "--json")
    assert planned_back.returncode == 0, planned_back.stderr
    actions = [s["action"] for s in json.loads(planned_back.stdout)]
    assert any(a.startswith("bring back 0.0.0+" + second_commit[:7]) for a in actions), actions
    # As on a host: the rule it follows, and the schema newer than the release brought back.
    assert any(a.startswith("the rule: ") for a in actions), actions
    assert any(
        "the schema is at version 3, newer than the 2 that" in a and "needs --yes" in a
        for a in actions
    ), actions
    assert any(
        f"update ECS service {names.service('green')} to {names.family}:2" in a for a in actions
    ), actions
    before_rollback = tags(registry, names.repository, *login)
    back = run_shipyard(where, env, "rollback", "production", "--yes", "--no-watch")
    assert back.returncode == 0, back.stderr
    assert served() == second_commit and forwarded() == "green"
    [green] = ecs.describe_services(cluster=names.cluster, services=[names.service("green")])[
        "services"
    ]
    labels = ecs.describe_task_definition(taskDefinition=green["taskDefinition"])["taskDefinition"]
    assert (
        labels["containerDefinitions"][0]["dockerLabels"]["org.opencontainers.image.revision"]
        == second_commit
    )
    assert len(revisions()) == 3  # the rollback registered nothing
    tools = ecs.list_task_definitions(familyPrefix=f"{names.family}-tools", status="ACTIVE")
    assert len(tools["taskDefinitionArns"]) == 1  # the extensions' task, unchanged, reused
    assert tags(registry, names.repository, *login) == before_rollback  # and pushed nothing


def _commit(where: Path, message: str) -> str:
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", message)
    return git(where, "rev-parse", "HEAD")
