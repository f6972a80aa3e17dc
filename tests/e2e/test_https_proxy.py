"""An environment with domains, on the real engine and Caddy: verify and status reach the proxy the
way users do (HTTPS, the domain as SNI and Host, connected to the proxy's own port, trusting the
proxy's internal CA with ``proxy.tls: internal``), and a redirect is never healthy."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.certs import ca_and_leaf
from tests.e2e.conftest import AppUnderTest, git
from tests.e2e.ports import reserve_port


def _with_domain(app: AppUnderTest, *, tls: str = "internal", **proxy: Any) -> tuple[str, int]:
    domain = f"{app.name}.test"
    https_port = reserve_port()

    def change(document: Any) -> None:
        document["proxy"]["domains"] = [domain]
        document["proxy"]["https_port"] = https_port
        document["proxy"]["tls"] = tls
        document["proxy"].update(proxy)

    app.edit(change)
    app.commit(f"serve {domain} over HTTPS")
    return domain, https_port


def _caddy_root(app: AppUnderTest, tmp_path: Path) -> str:
    """The proxy's internal root, read from its data volume (not through shipyard)."""
    copy = tmp_path / "root.crt"
    subprocess.run(
        [
            "docker",
            "cp",
            f"{app.name}-development-proxy:/data/caddy/pki/authorities/local/root.crt",
            str(copy),
        ],
        capture_output=True,
        check=True,
    )
    return copy.read_text()


def test_verify_and_status_go_through_https_and_check_the_commit(
    app: AppUnderTest, tmp_path: Path
) -> None:
    domain, https_port = _with_domain(app)
    commit = git(app.dir, "rev-parse", "HEAD")

    result = app.shipyard("deploy", "development")

    assert result.returncode == 0, result.stderr
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    probed = f"https://{domain}:{https_port}/version (SNI and Host {domain}, connected to 127.0.0.1:{https_port})"
    assert f"{probed} reports {commit[:7]}" in stderr, result.stderr
    # What users get: HTTPS for the domain with a certificate from the proxy's own CA …
    context = ssl.create_default_context(cadata=_caddy_root(app, tmp_path))
    with httpx.Client(verify=context, trust_env=False) as client:
        version = client.get(
            f"https://127.0.0.1:{https_port}/version",
            headers={"Host": f"{domain}:{https_port}"},
            extensions={"sni_hostname": domain},
        )
    assert version.json()["git_commit"] == commit
    # … and a redirect to it on the HTTP port.
    plain = httpx.get(app.url("/health"), headers={"Host": domain}, trust_env=False)
    assert plain.status_code == 308

    status = app.status()
    assert status["health"] == "healthy", status
    assert status["probed"] == (
        f"https://{domain}:{https_port}/health (SNI and Host {domain}, connected to "
        f"127.0.0.1:{https_port})"
    )
    assert status["problems"] == []

    # A version whose /version does not name its commit is caught by verify, through HTTPS,
    # and the previous version serves again.
    def lie(document: Any) -> None:
        document["build"]["ldflags"]["example.com/events-api/cmd/server/cmd.GitCommit"] = "0" * 40

    app.edit(lie)
    app.commit("a build that misreports its commit")
    lying = git(app.dir, "rev-parse", "HEAD")

    failed = app.shipyard("deploy", "development")

    assert failed.returncode == 6, failed.stderr
    message = " ".join(failed.stderr.split())
    assert f"https://{domain}:{https_port}/version (SNI and Host {domain}" in message
    assert f"does not report commit {lying[:7]}" in message, failed.stderr
    after = app.status()
    assert after["commit"] == commit
    assert after["health"] == "healthy", after


def test_a_health_path_the_app_redirects_is_not_healthy(app: AppUnderTest) -> None:
    domain, https_port = _with_domain(app)

    def redirecting_check(document: Any) -> None:
        # The app (Go's ServeMux) redirects a path with a doubled slash to its clean form: a
        # check that accepts the redirect lets the slot pass its gate, but status must not call
        # it healthy.
        document["health"]["checks"] = [
            {"kind": "http", "path": "//health", "status": [301, 307, 308]}
        ]

    app.edit(redirecting_check)
    app.commit("a health path that redirects")
    deployed = app.shipyard("deploy", "development")
    assert deployed.returncode == 0, deployed.stderr

    status = app.status()

    assert status["health"] == "unhealthy", status
    assert status["probed"].startswith(f"https://{domain}:{https_port}//health (SNI and Host")
    assert re.match(r"30[178] redirect to /health ", status["health_detail"]), status
    assert any("redirect" in problem for problem in status["problems"]), status
    assert app.shipyard("status", "development").returncode == 8


def test_a_certificate_that_is_never_issued_fails_verify_naming_the_domain(
    app: AppUnderTest,
) -> None:
    # ACME for a .test name can never succeed (and no ACME CA is reachable here).
    domain, _ = _with_domain(app, tls="acme", certificate_timeout="3s")

    result = app.shipyard("deploy", "development")

    # (How a first deploy that fails after its switch is undone is the pipeline's concern, not
    # this test's: it only has no earlier version to switch back to.)
    assert result.returncode != 0, result.stderr
    message = " ".join(result.stderr.split())
    assert "deploy failed in phase 'verify'" in message, result.stderr
    assert f"no trusted certificate for {domain} within 3s" in message, result.stderr
    assert "the proxy has no certificate for this name yet" in message
    assert "proxy.tls: acme" in message
    assert f"Caddy obtains {domain}'s certificate by ACME" in message


def test_a_certificate_brought_as_files_is_served_and_trusted_through_trusted_roots(
    app: AppUnderTest, tmp_path: Path
) -> None:
    domain = f"{app.name}.test"
    files = tmp_path / "tls"
    files.mkdir()
    ca_and_leaf(files, domain)
    # No ACME server is reachable here: serving at all proves Caddy obtains nothing for a name
    # its loaded certificate covers.
    _, https_port = _with_domain(
        app,
        tls="acme",
        certificates=[{"cert": str(files / "chain.pem"), "key": str(files / "key.pem")}],
        trusted_roots=[str(files / "ca.pem")],
        certificate_timeout="20s",
    )

    result = app.shipyard("deploy", "development")

    assert result.returncode == 0, result.stderr
    context = ssl.create_default_context(cafile=files / "ca.pem")
    with (
        socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        served = tls.getpeercert(binary_form=True)
    assert served == ssl.PEM_cert_to_DER_cert((files / "cert.pem").read_text())
    [record] = app.status()["certificates"]
    assert record["issuer"] == "shipyard tests, shipyard test CA", record
    assert record["error"] is None, record
    copies = list(tmp_path.rglob("certificate-0.key"))
    assert copies, "the key is copied next to Caddy's config"
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in copies)
    assert "PRIVATE KEY" not in result.stderr + result.stdout
