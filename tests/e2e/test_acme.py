"""HTTPS proven with a real ACME server: Pebble (Debian's ``pebble`` package) issues the proxy's
certificates over HTTP-01/TLS-ALPN-01, validating each domain against the proxy itself.

The test world, on the environment's own network (created here with a pinned ``proxy.subnet``,
so shipyard adopts it): ``pebble-challtestsrv`` answers every name with the address of its own
container, where socat carries ports 80 and 443 on to the proxy container; Pebble uses it as its
DNS server and serves its ACME directory over HTTPS with a certificate from a test CA made here
(``proxy.acme_ca_root``). Pebble's issuing root (regenerated each time it starts, read from its
management port) is what verify, status and the load clients trust (``proxy.trusted_roots``).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shipyard.providers.docker._names import Names
from shipyard.providers.docker._network import network_labels
from tests.e2e.certs import ca_and_leaf
from tests.e2e.conftest import AppUnderTest, free_subnet
from tests.e2e.docker_cli import docker, docker_inspect
from tests.e2e.load import Load
from tests.e2e.ports import reserve_port

PEBBLE_IMAGE = "shipyard-local/pebble:2"
T = TypeVar("T")


def _eventually(
    what: str, probe: Callable[[], T | None], *, timeout: float, pause: float = 1.0
) -> T:
    """``probe()`` until it returns something (not None), within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout:g}s: {what}")
        time.sleep(pause)


@dataclass
class Pebble:
    """A running Pebble on the environment's network, and the files the config names."""

    name: str
    directory_url: str
    listener_ca: Path  # proxy.acme_ca_root
    issuing_root: Path  # proxy.trusted_roots
    management_port: int

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.issuing_root.read_text())

    def stop(self) -> None:
        docker("stop", "--time", "1", self.name)


@pytest.fixture
def pebble_world(
    app: AppUnderTest, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pebble]:
    """Pebble and its DNS + forwarder on the environment's network. A test's markers:
    ``pebble_validity(seconds)``, how long each certificate is valid (Pebble's default: years);
    ``pebble_reaches(*ports)``, the proxy's ports validation reaches (default 80 and 443). Set
    up after ``app``, so removed before it."""
    marker = request.node.get_closest_marker("pebble_validity")
    validity = marker.args[0] if marker else None
    marker = request.node.get_closest_marker("pebble_reaches")
    ports = marker.args if marker else (80, 443)
    names = Names(app.name, app.environment)
    subnet = free_subnet()
    dns_ip = str(ipaddress.ip_network(subnet)[250])
    files = tmp_path / "acme"
    files.mkdir()
    pebble = f"{app.name}-pebble"
    dns = f"{app.name}-acme-dns"
    ca_and_leaf(files, pebble, "localhost", ca_name="shipyard test ACME server CA")
    for key in ("ca.key", "key.pem"):
        (files / key).chmod(0o644)  # read by the container's user
    settings: dict[str, Any] = {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/pebble/cert.pem",
        "privateKey": "/pebble/key.pem",
        "httpPort": 80,  # validation goes to the proxy's container ports
        "tlsPort": 443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    if validity is not None:
        settings["certificateValidityPeriod"] = validity
    (files / "config.json").write_text(json.dumps({"pebble": settings}))
    labels = [f"--label={k}={v}" for k, v in network_labels(names).items()]
    try:
        docker("network", "create", "--subnet", subnet, *labels, names.network)
        forward = " & ".join(
            f"socat TCP-LISTEN:{port},fork,reuseaddr TCP:{names.proxy}:{port}" for port in ports
        )
        docker(
            "run", "--detach", "--name", dns, "--network", names.network, "--ip", dns_ip,
            "--entrypoint", "sh", PEBBLE_IMAGE, "-c",
            f"{forward} & exec pebble-challtestsrv -defaultIPv4 {dns_ip} -defaultIPv6 '' "
            "-dns01 :8053 -http01 '' -https01 '' -tlsalpn01 '' -management :8055",
        )  # fmt: skip
        docker(
            "run", "--detach", "--name", pebble, "--network", names.network,
            "--publish", "127.0.0.1::15000",
            "--env", "PEBBLE_VA_NOSLEEP=1", "--env", "PEBBLE_WFE_NONCEREJECT=0",
            "--volume", f"{files}:/pebble:ro",
            PEBBLE_IMAGE, "-config", "/pebble/config.json", "-dnsserver", f"{dns_ip}:8053",
        )  # fmt: skip
        port = int(docker("port", pebble, "15000/tcp").split(":")[-1])
        listener = ssl.create_default_context(cafile=files / "ca.pem")

        def root() -> str | None:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/roots/0", verify=listener, timeout=5)
            except httpx.HTTPError:
                return None
            return answer.text if answer.status_code == 200 else None

        issuing_root = files / "pebble-root.pem"
        issuing_root.write_text(_eventually("Pebble answers", root, timeout=60, pause=0.5))
        yield Pebble(
            name=pebble,
            directory_url=f"https://{pebble}:14000/dir",
            listener_ca=files / "ca.pem",
            issuing_root=issuing_root,
            management_port=port,
        )
    finally:
        for name in (pebble, dns):
            logs = subprocess.run(
                ["docker", "logs", "--tail", "40", name],
                capture_output=True,
                text=True,
                check=False,
            )
            print(f"--- {name}\n{logs.stdout}{logs.stderr}")  # noqa: T201 — shown on failure
            docker("rm", "--force", name, check=False)
        # The network goes with the app (shipyard destroy, then the app's clean-up).


def _serve_with_pebble(app: AppUnderTest, pebble: Pebble, domains: list[str], **proxy: Any) -> int:
    https_port = reserve_port()
    subnet = docker_inspect(f"{app.name}-{app.environment}", "{{(index .IPAM.Config 0).Subnet}}")

    def change(document: Any) -> None:
        document["proxy"].update(
            {
                "domains": domains,
                "https_port": https_port,
                "tls": "acme",
                "acme_ca": pebble.directory_url,
                "acme_ca_root": str(pebble.listener_ca),
                "trusted_roots": [str(pebble.issuing_root)],
                "subnet": subnet,
                "certificate_timeout": "150s",
                **proxy,
            }
        )

    app.edit(change)
    app.commit(f"serve {', '.join(domains)} with certificates from an ACME server")
    return https_port


def _served(port: int, domain: str, trust: ssl.SSLContext) -> dict[str, Any]:
    """The certificate served for ``domain`` (as SNI), verified against ``trust``."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        trust.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        return tls.getpeercert() or {}


def _get(port: int, domain: str, path: str, trust: ssl.SSLContext) -> httpx.Response:
    """GET ``path`` over HTTPS for ``domain`` (SNI and Host), from the proxy's port."""
    with httpx.Client(verify=trust, trust_env=False) as client:
        return client.get(
            f"https://127.0.0.1:{port}{path}",
            headers={"Host": f"{domain}:{port}"},
            extensions={"sni_hostname": domain},
        )


def _serial(port: int, domain: str, trust: ssl.SSLContext) -> str:
    return str(_served(port, domain, trust)["serialNumber"])


def _proxy_log(app: AppUnderTest) -> str:
    logs = subprocess.run(
        ["docker", "logs", f"{app.name}-{app.environment}-proxy"],
        capture_output=True,
        text=True,
        check=True,
    )
    return logs.stdout + logs.stderr


def _obtained(app: AppUnderTest) -> int:
    """How many certificates the proxy has obtained (its log, since it started)."""
    return _proxy_log(app).count("certificate obtained successfully")


def test_pebble_issues_both_domains_and_redeploy_and_rollback_under_https_load_reissue_nothing(
    app: AppUnderTest, pebble_world: Pebble
) -> None:
    domains = [f"a.{app.name}.test", f"b.{app.name}.test"]
    port = _serve_with_pebble(app, pebble_world, domains, hsts="1d")
    first = app.commit("version 1")

    deployed = app.shipyard("deploy", "development")

    assert deployed.returncode == 0, deployed.stderr
    trust = pebble_world.trust()
    for domain in domains:
        cert = _served(port, domain, trust)  # trusted: issued by Pebble for that very name
        assert ("DNS", domain) in cert["subjectAltName"]
    # HTTPS answers with HSTS; plain HTTP redirects to it.
    answer = _get(port, domains[1], "/version", trust)
    assert answer.json()["git_commit"] == first
    assert answer.headers["strict-transport-security"] == "max-age=86400"
    plain = httpx.get(app.url("/health"), headers={"Host": domains[0]}, trust_env=False)
    assert plain.status_code == 308
    assert plain.headers["location"].startswith(f"https://{domains[0]}")
    status = app.status()
    assert status["problems"] == [], status
    for record, domain in zip(status["certificates"], domains, strict=True):
        assert record["domain"] == domain
        assert "Pebble" in record["issuer"], record
        assert record["days_left"] > 300, record  # Pebble's default validity: years
        assert record["error"] is None and record["last_error"] is None, record
    serials = {d: _serial(port, d, trust) for d in domains}
    assert _obtained(app) == 2
    assert '"challenge_type":' in _proxy_log(app)  # Caddy picks one of the two at random

    app.commit("version 2")
    with Load(
        f"https://127.0.0.1:{port}/", verify=pebble_world.trust, server_name=domains[0]
    ) as load:
        redeployed = app.shipyard("deploy", "development")
        assert redeployed.returncode == 0, redeployed.stderr
        back = app.shipyard("rollback", "development")
        assert back.returncode == 0, back.stderr

    print(f"HTTPS load over redeploy + rollback: {load.result.requests} requests, "  # noqa: T201
          f"{len(load.result.failures)} failed, {load.result.retried} retried")  # fmt: skip
    assert load.result.requests > 100
    assert load.result.failures == [], load.result.failures[:5]
    assert _get(port, domains[0], "/version", trust).json()["git_commit"] == first
    assert {d: _serial(port, d, trust) for d in domains} == serials, "nothing re-issued"
    assert _obtained(app) == 2

    # A re-created proxy finds its certificates in its data volume.
    docker("rm", "--force", f"{app.name}-{app.environment}-proxy")
    repaired = app.shipyard("deploy", "development")
    assert repaired.returncode == 0, repaired.stderr
    assert {d: _serial(port, d, trust) for d in domains} == serials, "nothing re-issued"
    assert _obtained(app) == 0  # the new proxy's log: it obtained nothing


@pytest.mark.pebble_validity(180)
def test_a_short_lived_certificate_is_renewed_under_load_and_a_failing_acme_server_is_reported(
    app: AppUnderTest, pebble_world: Pebble
) -> None:
    domain = f"www.{app.name}.test"
    port = _serve_with_pebble(app, pebble_world, [domain])
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr
    trust = pebble_world.trust()
    issued = _serial(port, domain, trust)
    assert app.status()["certificates"][0]["days_left"] < 0.01  # 180 s

    # Caddy renews when the ACME server's renewal information (ARI, which Pebble serves) or,
    # without it, a third of the lifetime left says so; it looks every 30 s.
    with Load(f"https://127.0.0.1:{port}/", verify=pebble_world.trust, server_name=domain) as load:
        _eventually(
            "the certificate is renewed",
            lambda: s if (s := _serial(port, domain, trust)) != issued else None,
            timeout=240,
            pause=2,
        )
    print(f"HTTPS load over a renewal: {load.result.requests} requests, "  # noqa: T201
          f"{len(load.result.failures)} failed, {load.result.retried} retried")  # fmt: skip
    assert load.result.requests > 100
    renewals = [line for line in _proxy_log(app).splitlines() if '"logger":"tls.' in line]
    assert load.result.failures == [], (load.result.failures[:5], renewals[-10:])

    # The ACME server goes away: the next renewal fails, the certificate it has keeps serving
    # until it expires, and status says so (and emits certificate.failing).
    pebble_world.stop()
    serving = _serial(port, domain, trust)  # the renewed one, or a later renewal's

    def failing() -> dict[str, Any] | None:
        status = app.status()
        return status if status["certificates"][0]["last_error"] else None

    status = _eventually("status reports the failed renewal", failing, timeout=200, pause=3)
    [record] = status["certificates"]
    assert record["serial"] == serving != issued, record
    assert datetime.fromisoformat(record["not_after"]) > datetime.now(UTC), record
    assert _serial(port, domain, trust) == serving  # still served, still trusted
    assert any(
        p.startswith(f"certificate for {domain}: the proxy logged an error since it was issued")
        for p in status["problems"]
    ), status
    assert app.shipyard("status", "development").returncode == 8
    events = [
        json.loads(line)
        for log in app.state_dir.rglob("*.jsonl")
        for line in log.read_text().splitlines()
        if '"certificate.failing"' in line
    ]
    assert any(domain in e["message"] for e in events), events


@pytest.mark.parametrize(
    ("reached", "challenge"),
    [
        pytest.param(80, "http-01", marks=pytest.mark.pebble_reaches(80), id="http-01"),
        pytest.param(443, "tls-alpn-01", marks=pytest.mark.pebble_reaches(443), id="tls-alpn-01"),
    ],
)
def test_a_domain_the_acme_server_reaches_on_one_port_is_validated_by_its_challenge(
    app: AppUnderTest, pebble_world: Pebble, reached: int, challenge: str
) -> None:
    domain = f"port{reached}.{app.name}.test"
    port = _serve_with_pebble(app, pebble_world, [domain])

    deployed = app.shipyard("deploy", "development")

    assert deployed.returncode == 0, deployed.stderr
    assert ("DNS", domain) in _served(port, domain, pebble_world.trust())["subjectAltName"]
    log = _proxy_log(app)
    # (Caddy may try the other challenge first: it picks one at random, and on failure the next.)
    assert f'"challenge_type":"{challenge}"' in log
    assert _obtained(app) == 1
