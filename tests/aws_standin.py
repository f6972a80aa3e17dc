"""The AWS stand-in the tests run: moto in server mode (``moto.server``), a local HTTP server
speaking the AWS APIs, started on a loopback port of its own choosing and stopped afterwards.
AWS itself cannot be reached from the test machines; moto is held to the same request and answer
shapes (botocore sends and parses them with AWS's own service models)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from shipyard.providers.aws import AwsSettings, Clients
from shipyard.waiting import Clock

REGION = "eu-west-1"
# moto accepts any credentials; these are never AWS's.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}


@contextmanager
def moto_server(*, deadline: float = 60.0, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A running moto server; yields its endpoint URL. Port 0: the server binds a free port and
    prints it, so no port is picked before it is bound. ``env``: moto's own settings."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # AWS's managed IAM policies exist on AWS; moto loads them only when asked to.
        env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **(env or {})},
    )
    found: list[str] = []
    seen: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            if match and not found:
                found.append(match.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        end = time.monotonic() + deadline
        while not found and process.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        if not found:
            raise RuntimeError(f"moto server did not start: {''.join(seen)[-2000:]}")
        yield found[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def client(service: str, endpoint: str, **config: Any) -> Any:
    """A boto3 client of ``service`` on the stand-in (``config``: botocore Config options)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(**config) if config else None,
        **CREDENTIALS,
    )


class InstantClock(Clock):
    """A clock whose sleeps pass at once: for waits on recorded answers (botocore's Stubber)."""

    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


@contextmanager
def moto_with_bucket(bucket: str, *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A running moto server (``moto_server``) with the S3 bucket ``bucket`` in ``REGION``."""
    with moto_server(env=env) as url:
        client("s3", url).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield url


def two_subnets(endpoint: str) -> list[str]:
    """A new VPC on the stand-in with a subnet in each of two availability zones."""
    ec2 = client("ec2", endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # As ECS wants its VPCs: tasks' network interfaces get DNS names.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    return [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}"
        )["Subnet"]["SubnetId"]
        for i, zone in ((1, "a"), (2, "b"))
    ]


def standin_clients(endpoint: str | None, **settings: Any) -> Clients:
    """An environment's AWS clients on the stand-in, from its settings (``settings`` over a
    region and a state bucket), with the stand-in's credentials."""
    values = {
        "region": REGION,
        "endpoint_url": endpoint,
        "state_bucket": "shipyard-state",
        "subnets": ["subnet-unused-a", "subnet-unused-b"],  # what needs real ones is given them
    }
    return Clients(
        AwsSettings(**{**values, **settings}),
        session=boto3.session.Session(region_name=REGION, **CREDENTIALS),
    )
