"""Deploying over SSH to a real OpenSSH server (this machine's own engine behind it)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import AppUnderTest, engine_snapshot
from tests.e2e.load import Load
from tests.e2e.ports import reserve_port
from tests.e2e.sshd import Sshd, keygen, start_sshd


def _short_watch(app: AppUnderTest) -> None:
    def change(document: object) -> None:
        document["deploy"]["watch"] = "2s"  # type: ignore[index]
        document["deploy"]["min_requests"] = 5  # type: ignore[index]

    app.edit(change)


def test_deploy_over_ssh_then_redeploy_under_load(remote_app: AppUnderTest, sshd: Sshd) -> None:
    app = remote_app
    _short_watch(app)
    first = app.commit("version 1")
    checked = app.shipyard("check", "development")
    assert checked.returncode == 0, checked.stderr
    assert "reachable on 127.0.0.1" in checked.stderr
    private_tmp = Path(tempfile.mkdtemp(prefix="sy-tmp-", dir="/tmp"))  # short: a socket path
    app.extra_env = {"TMPDIR": str(private_tmp)}
    result = app.shipyard("deploy", "development")
    app.extra_env = {}
    assert result.returncode == 0, result.stderr
    # Every master connection was closed at exit and its socket directory removed, also the one
    # the deployment log's last write used.
    assert list(private_tmp.iterdir()) == []
    private_tmp.rmdir()
    # The sshd runs on this machine: the host's engine is the one that built the image.
    assert "the host already has this image" in result.stderr
    assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] == first
    assert (app.state_dir / "current.json").exists() or any(app.state_dir.rglob("current.json"))

    second = app.commit("version 2")
    with Load(app.url("/")) as load:
        again = app.shipyard("deploy", "development")
    assert again.returncode == 0, again.stderr
    assert load.result.requests > 50
    assert load.result.failures == [], load.result.failures[:5]
    order = [f"0.0.0+{first[:7]}", f"0.0.0+{second[:7]}"]
    assert set(load.result.versions) == set(order)
    assert load.result.monotonic(order), "a client saw the old version after the new one"

    history = json.loads(app.shipyard("history", "development", "--json").stdout)
    assert [(h["action"], h["result"]) for h in history] == [("deploy", "succeeded")] * 2
    status = app.status()
    assert status["version"] == f"0.0.0+{second[:7]}"
    assert status["drift"] is None
    assert status["health"] == "healthy"

    with Load(app.url("/")) as load:
        back = app.shipyard("rollback", "development")
    assert back.returncode == 0, back.stderr
    assert load.result.failures == [], load.result.failures[:5]
    assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] == first


def _app_objects(app: AppUnderTest) -> dict[str, list[str]]:
    """The app's containers, networks and volumes (the engine is shared: others come and go)."""
    return {kind: [n for n in names if app.name in n] for kind, names in engine_snapshot().items()}


def _fingerprint(sshd: Sshd) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.host_key.with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]


def test_unknown_host_key_is_refused_with_its_fingerprint(
    remote_app: AppUnderTest, sshd: Sshd
) -> None:
    app = remote_app
    app.edit(lambda d: d["providers"]["ssh"].update(sshd.settings(trusted=False)))
    app.commit("known_hosts without the host")
    before = _app_objects(app)
    result = app.shipyard("deploy", "development")
    assert result.returncode == 5, result.stderr
    text = " ".join(result.stderr.split())
    assert f"root@127.0.0.1:{sshd.port}" in text
    assert "not in" in text and "refusing to connect" in text
    assert _fingerprint(sshd) in text
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {sshd.empty_known_hosts}" in text
    assert _app_objects(app) == before
    assert sshd.empty_known_hosts.read_text() == "", "nothing was trusted on the operator's behalf"


def test_changed_host_key_is_refused(remote_app: AppUnderTest, sshd: Sshd, tmp_path: Path) -> None:
    app = remote_app
    impostor = tmp_path / "impostor"
    keygen(impostor, "someone else")
    kind, key = impostor.with_suffix(".pub").read_text().split()[:2]
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    result = app.shipyard("status", "development")
    assert result.returncode == 5, result.stderr
    text = " ".join(result.stderr.split())
    assert "CHANGED" in text
    assert _fingerprint(sshd) in text
    assert "ssh-keygen -R" in text


def test_unreachable_host_names_host_and_cause(app: AppUnderTest) -> None:
    port = reserve_port()  # nothing listens there: reserved, and nothing binds it
    app.edit(
        lambda d: d["environments"]["development"].update(target=f"ssh://root@127.0.0.1:{port}")
    )
    app.commit("nothing listens")
    result = app.shipyard("deploy", "development")
    assert result.returncode == 5, result.stderr
    assert f"cannot reach root@127.0.0.1:{port}" in result.stderr
    assert "Connection refused" in result.stderr


def test_several_nodes_stop_at_the_first_failure_and_status_shows_each(
    remote_app: AppUnderTest, sshd: Sshd
) -> None:
    app = remote_app
    _short_watch(app)
    dead = f"ssh://root@127.0.0.1:{reserve_port()}"  # a node nothing answers on

    def nodes(target: str, targets: list[str]) -> None:
        def change(document: Any) -> None:
            document["environments"]["development"]["target"] = target
            document["environments"]["development"]["targets"] = targets

        app.edit(change)
        app.commit(f"nodes {target} {targets}")

    nodes(dead, [sshd.target])
    before = _app_objects(app)
    refused = app.shipyard("deploy", "development")
    assert refused.returncode == 5, refused.stderr
    text = " ".join(refused.stderr.split())
    assert "deploy stopped at node" in text and "Connection refused" in text
    assert f"not started on: {sshd.target}" in text
    assert _app_objects(app) == before, "the node after the failed one was not touched"

    nodes(sshd.target, [dead])
    result = app.shipyard("deploy", "development")
    assert result.returncode == 5, result.stderr
    text = " ".join(result.stderr.split())
    assert f"deploy done on: {sshd.target}" in text
    serving = httpx.get(app.url("/version"), timeout=10).json()["git_commit"]
    assert (
        serving
        == subprocess.run(
            ["git", "-C", str(app.dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    ), "the node deployed before the failure keeps serving the new version"

    status = app.shipyard("status", "development", "--json")
    assert status.returncode == 8, status.stderr
    nodes_seen = {entry["node"]: entry for entry in json.loads(status.stdout)}
    assert set(nodes_seen) == {sshd.target, dead}
    assert nodes_seen[sshd.target]["health"] == "healthy"
    assert nodes_seen[sshd.target]["drift"] is None
    assert nodes_seen[dead]["health"] == "unreachable"
    assert "Connection refused" in nodes_seen[dead]["drift"]


def _fake(directory: Path, name: str, script: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_outdated_tools_are_named_with_found_and_needed_versions(
    app: AppUnderTest, tmp_path: Path
) -> None:
    """An old Go or OpenSSH here, or an old Compose on the host: the command stops at its start
    with the version found and the one needed (exit 9), and nothing changes on the engine."""
    before = engine_snapshot(app.name)
    old_go = tmp_path / "old-go"
    _fake(old_go, "go", 'if [ "$1" = env ]; then echo go1.20.3; exit 0; fi\nexit 1\n')
    app.extra_env = {"PATH": f"{old_go}:{os.environ['PATH']}"}
    checked = app.shipyard("check", "development")
    assert checked.returncode == 3
    assert "found go1.20.3, need go1.22 or newer" in checked.stderr
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 9, deployed.stderr
    assert "found go1.20.3, need go1.22 or newer" in deployed.stderr, deployed.stderr
    assert engine_snapshot(app.name) == before

    old_ssh = tmp_path / "old-ssh"
    _fake(old_ssh, "ssh", 'echo "OpenSSH_7.2p2 Ubuntu-4ubuntu2.10, OpenSSL 1.0.2g" >&2\nexit 255\n')
    app.extra_env = {"PATH": f"{old_ssh}:{os.environ['PATH']}"}

    def remote(document: Any) -> None:
        document["environments"]["development"]["target"] = f"ssh://root@127.0.0.1:{reserve_port()}"

    app.edit(remote)
    app.commit("remote target")
    refused = app.shipyard("deploy", "development")
    assert refused.returncode == 9, refused.stderr
    assert "OpenSSH 7.2 found on this machine; 7.6 or newer is needed" in refused.stderr

    # The host's Compose is too old: its `docker compose version` says 2.20.2.
    old_compose = tmp_path / "old-compose"
    _fake(
        old_compose,
        "docker",
        'if [ "$1" = compose ] && [ "$2" = version ]; then echo 2.20.2; exit 0; fi\n'
        'exec /usr/bin/docker "$@"\n',
    )
    server = start_sshd(
        tmp_path / "sshd-old-compose",
        env={"PATH": f"{old_compose}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    try:

        def behind_sshd(document: Any) -> None:
            document["environments"]["development"]["target"] = server.target
            document.setdefault("providers", {})["ssh"] = server.settings()

        app.edit(behind_sshd)
        app.commit("old compose on the host")
        app.extra_env = {}
        old = app.shipyard("deploy", "development")
        assert old.returncode == 9, old.stderr
        assert "Docker Compose 2.20.2 is too old; 2.26 or newer is needed" in old.stderr, old.stderr
        assert "on 127.0.0.1" in old.stderr
    finally:
        server.stop()
    assert engine_snapshot(app.name) == before


def test_a_container_on_the_proxy_port_of_an_ssh_host_is_named_and_nothing_changes(
    remote_app: AppUnderTest,
) -> None:
    """Over ssh:// the host answers for itself: another container publishing the proxy's port
    there is named, and the deploy exits 3 before the engine is touched."""
    app = remote_app
    squatter = f"{app.name}-squatter"
    subprocess.run(
        ["docker", "run", "--detach", "--name", squatter,
         "--publish", f"127.0.0.1:{app.http_port}:8080",
         "--entrypoint", "sleep", "shipyard-local/docker-cli:26", "600"],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        before = engine_snapshot(app.name)
        refused = app.shipyard("deploy", "development")
        text = " ".join(refused.stderr.split())
        assert refused.returncode == 3, refused.stderr
        assert f"port {app.http_port} on " in text, refused.stderr
        assert f"is already in use by container {squatter}" in text, refused.stderr
        assert engine_snapshot(app.name) == before
    finally:
        subprocess.run(["docker", "rm", "--force", squatter], capture_output=True, check=False)
