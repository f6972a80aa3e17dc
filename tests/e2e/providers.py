"""The reference app (``examples/events-api``) on each provider: its shipyard.yml with only the
production target changed (and, for ssh://, the provider's settings: the key and known_hosts),
its credentials in the environment, and what stands in here for what cannot run here.

- ``local``: this machine's engine; the proxy on a reserved port (``SHIPYARD_HTTP_PORT``).
- ``ssh``: Debian's OpenSSH server on this machine, this machine's engine behind it.
- ``aws``: moto in server mode, a registry container for ECR's, and moto's data plane
  (``tests.aws_dataplane``) answering as the load balancer would.
- ``gcp``: the stand-in of ``tests.gcp`` (every request held to Google's discovery documents),
  a registry container for Artifact Registry's, and its data plane answering Cloud Run's URLs.
- ``do``: the stand-in of DigitalOcean's API (``tests.do_standin``) and a fresh server container
  (shipyard-local/vps:trixie) for the Droplet it creates; what cloud-init does with the
  request a thread here does to that container. ``shipyard provision`` makes the Droplet before
  the first deploy, as it installs an ssh:// host.

Each world yields a ``World``: where the copy is, the environment to run shipyard in, what the
target needs once before its first deploy, and the commit the app serves through the
provider's front. Leaving a world destroys what it deployed.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from shipyard.providers.aws import AwsNames
from shipyard.providers.gcp import GcpNames
from tests.aws_dataplane import DataPlane as AwsPlane
from tests.aws_dataplane import data_plane as aws_data_plane
from tests.aws_standin import CREDENTIALS, REGION, client, moto_server
from tests.do_standin import DatabaseServer, DoStandIn, do_standin
from tests.e2e.conftest import isolated_env, remove_everything, run_shipyard
from tests.e2e.docker_cli import docker_inspect
from tests.e2e.ports import reserve_port
from tests.e2e.registry import running_registry
from tests.e2e.sshd import keygen, start_sshd
from tests.example_app import copy_example, git
from tests.gcp.dataplane import DataPlane as GcpPlane
from tests.gcp.dataplane import data_plane as gcp_data_plane
from tests.gcp.run import RunModel
from tests.gcp.standin import PROJECT, GcpStandIn, gcp_standin, with_every_api
from tests.gcp.standin import REGION as GCP_REGION

PROVIDERS = ("local", "ssh", "aws", "gcp", "do")


def _nothing() -> None:
    return None


@dataclass
class World:
    """The reference app copied for one provider (see the module)."""

    provider: str
    where: Path
    env: dict[str, str]
    served: Callable[[], str]  # the commit /version answers through the provider's front
    prepare: Callable[[], None] = field(default=_nothing)  # once, before the first deploy

    def shipyard(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        return run_shipyard(self.where, self.env, *args, timeout=timeout)

    def head(self) -> str:
        return git(self.where, "rev-parse", "HEAD")


def production_env(where: Path) -> None:
    """``.env.production``, the same for every provider: the app's secret, the database's
    password (a provider whose database makes its own password does not use it) and Grafana's."""
    env_file = where / ".env.production"
    env_file.write_text(
        f"JWT_SECRET={secrets.token_hex(32)}\nPOSTGRES_PASSWORD=pw-{secrets.token_hex(12)}\n"
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_hex(16)}\n",
        encoding="utf-8",
    )
    env_file.chmod(0o600)


def _target(target: str, **providers: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document["environments"]["production"]["target"] = target
        for name, settings in providers.items():
            document["providers"][name] = settings

    return edit


def _commit_at(url: str) -> str:
    """The commit ``url``'s /version names (``""``: it does not answer yet)."""
    try:
        answer = httpx.get(f"{url}/version", timeout=10)
    except httpx.HTTPError:
        return ""
    return str(answer.json().get("git_commit", "")) if answer.status_code == 200 else ""


def remove_images(app: str, *also: str) -> None:
    """The images this engine holds of ``app`` (and of ``also``: registries' addresses)."""
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    for image in listed:
        if app in image or any(a in image for a in also):
            subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)


def _destroy(world: World, *extra: str) -> None:
    run_shipyard(world.where, world.env, "destroy", "production", "--yes", *extra, timeout=600)


# -- local and ssh:// -------------------------------------------------------------------------
@contextmanager
def _on_this_engine(
    directory: Path, app: str, provider: str, edit: Callable[[dict[str, Any]], None] | None
) -> Iterator[World]:
    """The example deployed to this machine's engine (directly, or over ``edit``'s ssh://),
    its proxy on a reserved port."""
    port = reserve_port()
    where = copy_example(directory / "app", app, edit)
    production_env(where)
    env = {**isolated_env(directory / "home"), "SHIPYARD_HTTP_PORT": str(port)}
    world = World(provider, where, env, lambda: _commit_at(f"http://127.0.0.1:{port}"))
    try:
        yield world
    finally:
        _destroy(world, "--volumes", "--snapshots")
        remove_everything(app)


@contextmanager
def on_local(directory: Path, app: str) -> Iterator[World]:
    with _on_this_engine(directory, app, "local", None) as world:  # production's target is local
        yield world


@contextmanager
def on_ssh(directory: Path, app: str) -> Iterator[World]:
    sshd = start_sshd(directory / "sshd")
    try:
        edit = _target(sshd.target, ssh=sshd.settings())
        with _on_this_engine(directory, app, "ssh", edit) as world:
            yield world
    finally:
        sshd.stop()


# -- AWS --------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class AwsWorld(World):
    endpoint: str
    names: AwsNames
    registry: str
    login: tuple[str, str]  # the registry's
    plane: AwsPlane


def unprotect_rds(endpoint: str, names: AwsNames) -> None:
    """What the operator does before deleting a production database: protection off."""
    rds = client("rds", endpoint)
    if rds.describe_db_instances()["DBInstances"]:
        rds.modify_db_instance(
            DBInstanceIdentifier=names.database, DeletionProtection=False, ApplyImmediately=True
        )


@contextmanager
def on_aws(directory: Path, app: str) -> Iterator[AwsWorld]:
    # The stand-in runs no task: each one-off task stops at once with exit code 0, and a
    # service's deployment completes with its two tasks.
    with moto_server(env={"MOTO_ECS_SERVICE_RUNNING": "2"}) as endpoint:
        transition = {"model_name": "ecs::task", "transition": {"progression": "immediate"}}
        httpx.post(
            f"{endpoint}/moto-api/state-manager/set-transition", json=transition
        ).raise_for_status()
        token = client("ecr", endpoint).get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
        names = AwsNames(app, "production")
        with (
            running_registry(directory / "registry", user, password) as registry,
            aws_data_plane(endpoint, names) as plane,
        ):
            where = copy_example(directory / "app", app, _target(f"aws://{REGION}"))
            production_env(where)
            env = {
                **isolated_env(directory / "home"),
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
                # The stand-in's registry and load balancer (ECR's and ALB's names do not
                # resolve here); the example leaves both unset on AWS.
                "SHIPYARD_AWS_REGISTRY": registry,
                "SHIPYARD_AWS_URL": plane.url,
            }
            env.pop("AWS_PROFILE", None)
            world = AwsWorld(
                "aws", where, env, lambda: _commit_at(plane.url),
                endpoint=endpoint, names=names, registry=registry, login=(user, password),
                plane=plane,
            )  # fmt: skip
            try:
                yield world
            finally:
                unprotect_rds(endpoint, names)
                _destroy(world, "--volumes", "--snapshots")
                remove_images(app, registry)


# -- Google Cloud -----------------------------------------------------------------------------
@dataclass(kw_only=True)
class GcpWorld(World):
    standin: GcpStandIn
    plane: GcpPlane
    names: GcpNames

    @property
    def run(self) -> RunModel:
        model: RunModel = self.standin.model(RunModel)
        return model

    def serving(self) -> dict[str, int]:
        """Revision (short name) → its percent of the service's traffic."""
        return {k.rsplit("/", 1)[-1]: v for k, v in self.run.serving(self.names.service).items()}

    def methods(self) -> list[str]:
        return [r.method for r in self.standin.requests]


@contextmanager
def on_gcp(directory: Path, app: str) -> Iterator[GcpWorld]:
    with gcp_standin(directory) as (standin, key_file):
        with_every_api(standin)
        standin.fixed_token = f"ya29.e2e-{secrets.token_hex(12)}"
        with (
            running_registry(directory / "registry", "oauth2accesstoken", standin.fixed_token) as registry,
            gcp_data_plane(standin.model(RunModel)) as plane,
        ):  # fmt: skip
            names = GcpNames(PROJECT, GCP_REGION, app, "production")
            where = copy_example(directory / "app", app, _target(f"gcp://{PROJECT}/{GCP_REGION}"))
            production_env(where)
            env = {
                **isolated_env(directory / "home"),
                "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
                "SHIPYARD_GCP_ENDPOINT": standin.url,
                # The stand-in's registry: Artifact Registry's name does not resolve here.
                "SHIPYARD_GCP_REGISTRY": registry,
            }
            world = GcpWorld(
                "gcp", where, env, lambda: _commit_at(plane.url_for(names.service, None)),
                standin=standin, plane=plane, names=names,
            )  # fmt: skip
            try:
                yield world
            finally:
                # Production's Cloud SQL instance is protected: the service and the state go.
                _destroy(world)
                remove_images(app, registry)
        assert standin.invalid == []


# -- DigitalOcean -----------------------------------------------------------------------------
class Droplet:
    """A fresh server container standing in for the Droplet the API creates."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.address = docker_inspect(name, "{{.NetworkSettings.IPAddress}}")
        self.applied = threading.Event()

    def sh(self, script: str, stdin: str | None = None) -> str:
        return subprocess.run(
            ["docker", "exec", "-i", self.name, "sh", "-c", script],
            input=stdin, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    def cloud_init(self, body: dict[str, Any], keys: list[str]) -> None:
        """What cloud-init does with a Droplet request: the host key of ``user_data``'s
        ``ssh_keys`` installed (the image's removed), ``keys`` authorized for root, sshd on."""
        config = YAML(typ="safe").load(body["user_data"])
        assert config["ssh_deletekeys"] is True
        host_keys = config["ssh_keys"]
        subprocess.run(
            ["docker", "exec", self.name, "timeout", "300", "systemctl", "is-system-running",
             "--wait"], capture_output=True, check=False,
        )  # fmt: skip
        self.sh(
            "cat > /etc/ssh/ssh_host_ed25519_key && chmod 600 /etc/ssh/ssh_host_ed25519_key",
            host_keys["ed25519_private"],
        )
        self.sh("cat > /etc/ssh/ssh_host_ed25519_key.pub", host_keys["ed25519_public"] + "\n")
        self.sh("cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
                "\n".join(keys) + "\n")  # fmt: skip
        # sshd failed to start without a host key until now, as on a Droplet before cloud-init.
        self.sh("systemctl reset-failed ssh.service; systemctl restart ssh.service")
        self.applied.set()


@contextmanager
def running_droplet() -> Iterator[Droplet]:
    name = f"sy-droplet-{secrets.token_hex(3)}"
    subprocess.run(
        [
            "docker", "run", "--detach", "--name", name, "--hostname", "droplet",
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined", "--cgroupns", "private",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--volume", "/var/lib/docker", "--volume", "/var/lib/containerd",
            "shipyard-local/vps:trixie",
        ],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        yield Droplet(name)
    finally:
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False
        )


@contextmanager
def ssh_agent(home: Path) -> Iterator[tuple[Path, str]]:
    """An ssh-agent holding the operator's key (``home``'s ``.ssh/id_ed25519``): the key's
    path and the agent's socket."""
    home_ssh = home / ".ssh"
    home_ssh.mkdir(parents=True, exist_ok=True)
    key = home_ssh / "id_ed25519"
    keygen(key, "operator")
    socket_path = home.parent / f"agent-{secrets.token_hex(3)}.sock"
    started = subprocess.run(
        ["ssh-agent", "-a", str(socket_path), "-s"], capture_output=True, text=True, check=True
    ).stdout
    pid = started.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0]
    try:
        subprocess.run(["ssh-add", "-q", str(key)], env={"SSH_AUTH_SOCK": str(socket_path)},
                       capture_output=True, check=True)  # fmt: skip
        yield key, str(socket_path)
    finally:
        subprocess.run(["kill", pid], capture_output=True, check=False)


def _apply_first(standin: DoStandIn, droplet: Droplet, stop: threading.Event) -> None:
    """Apply the first Droplet request the stand-in receives to the container."""
    while not stop.is_set():
        created = [r for r in standin.requests if r.method == "POST" and r.path == "/v2/droplets"]
        if created:
            body = created[0].body
            fingerprints = set(body["ssh_keys"])
            keys = [
                k["public_key"] for k in standin.keys.values() if k["fingerprint"] in fingerprints
            ]
            droplet.cloud_init(body, keys)
            return
        time.sleep(0.1)


@contextmanager
def cloud_init(standin: DoStandIn, droplet: Droplet) -> Iterator[None]:
    """While inside: the first Droplet request the stand-in receives is applied to
    ``droplet``, as cloud-init would; what went wrong doing so fails on leaving."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def apply() -> None:
        try:
            _apply_first(standin, droplet, stop)
        except BaseException as exc:  # noqa: BLE001 — reported on leaving
            failed.append(exc)

    thread = threading.Thread(target=apply, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failed, repr(failed)


@dataclass(kw_only=True)
class DoWorld(World):
    standin: DoStandIn
    droplet: Droplet
    key: Path  # the operator's


@contextmanager
def on_do(
    directory: Path,
    app: str,
    *,
    database_server: DatabaseServer | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[DoWorld]:
    """``database_server``: behind the stand-in's database clusters; ``settings``: further
    ``providers.digitalocean`` settings."""
    with (
        running_droplet() as droplet,
        ssh_agent(directory / "home") as (key, agent),
        do_standin(address=droplet.address, database_server=database_server) as standin,
    ):

        def edit(document: dict[str, Any]) -> None:
            _target("do://ams3")(document)
            document["providers"]["digitalocean"].update(settings or {})

        where = copy_example(directory / "app", app, edit)
        production_env(where)
        env = {
            **isolated_env(directory / "home"),
            "DIGITALOCEAN_TOKEN": standin.token,
            "SHIPYARD_DO_API_URL": standin.url,
            "SSH_AUTH_SOCK": agent,
        }

        def provision() -> None:
            with cloud_init(standin, droplet):
                done = run_shipyard(where, env, "provision", "production", timeout=1800)
            assert done.returncode == 0, done.stderr + done.stdout

        world = DoWorld(
            "do", where, env, lambda: _commit_at(f"http://{droplet.address}"), provision,
            standin=standin, droplet=droplet, key=key,
        )  # fmt: skip
        try:
            yield world
        finally:
            remove_images(app)  # built here, then sent to the Droplet


WORLDS: dict[str, Callable[[Path, str], Any]] = {
    "local": on_local,
    "ssh": on_ssh,
    "aws": on_aws,
    "gcp": on_gcp,
    "do": on_do,
}
