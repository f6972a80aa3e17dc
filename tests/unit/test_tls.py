"""TLS settings: Caddy's tls app from ``proxy`` (ACME CA, its root, files brought along, HSTS),
the PEM files the config names, and `check`'s warnings for domains that do not resolve to the
target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.config import ProxySection, load_config
from shipyard.deploy._checks import domain_warnings
from shipyard.errors import ConfigError
from shipyard.providers.docker._observation import _tls_error_after
from shipyard.proxy import proxy_files, render_caddy
from tests.bad_configs import VALID, BadConfig, write

CA = "https://acme.internal:14000/dir"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nsecret-key-material\n-----END EC PRIVATE KEY-----\n"


def _tls(proxy: ProxySection) -> dict:  # type: ignore[type-arg]
    return render_caddy(proxy, ("live",), 8080)["apps"]["tls"]  # type: ignore[no-any-return]


def test_an_acme_ca_with_its_own_root_is_the_one_issuer() -> None:
    proxy = ProxySection(
        domains=["a.example", "b.example"], acme_ca=CA, acme_ca_root="tls/ca.pem", tls_email="o@x"
    )
    tls = _tls(proxy)
    assert tls["automation"]["policies"] == [
        {
            "issuers": [
                {
                    "module": "acme",
                    "ca": CA,
                    "email": "o@x",
                    "trusted_roots_pem_files": ["/etc/caddy/acme-ca-root.pem"],
                }
            ]
        }
    ]
    assert tls["automation"]["renew_interval"] == "30s"
    assert proxy_files(proxy) == {"acme-ca-root.pem": "tls/ca.pem"}


def test_without_an_acme_setting_caddy_keeps_its_default_issuers() -> None:
    tls = _tls(ProxySection(domains=["a.example"]))
    assert "policies" not in tls["automation"]
    assert "certificates" not in tls


def test_certificates_brought_as_files_are_loaded_from_the_proxy_directory() -> None:
    proxy = ProxySection(
        domains=["a.example"],
        certificates=[{"cert": "a.pem", "key": "a.key"}, {"cert": "b.pem", "key": "b.key"}],
    )
    assert _tls(proxy)["certificates"] == {
        "load_files": [
            {"certificate": "/etc/caddy/certificate-0.pem", "key": "/etc/caddy/certificate-0.key"},
            {"certificate": "/etc/caddy/certificate-1.pem", "key": "/etc/caddy/certificate-1.key"},
        ]
    }
    assert proxy_files(proxy) == {
        "certificate-0.pem": "a.pem",
        "certificate-0.key": "a.key",
        "certificate-1.pem": "b.pem",
        "certificate-1.key": "b.key",
    }


def test_hsts_is_a_header_on_every_https_route_and_off_by_default() -> None:
    config = render_caddy(ProxySection(domains=["a.example"], hsts="365d"), ("live",), 8080)
    for route in config["apps"]["http"]["servers"]["shipyard"]["routes"]:
        assert route["handle"][0] == {
            "handler": "headers",
            "response": {"set": {"Strict-Transport-Security": ["max-age=31536000"]}},
        }
    plain = render_caddy(ProxySection(domains=["a.example"]), ("live",), 8080)
    routes = plain["apps"]["http"]["servers"]["shipyard"]["routes"]
    assert all(h["handler"] != "headers" for r in routes for h in r["handle"])
    # Without domains there is no HTTPS, so no HSTS either.
    http = render_caddy(ProxySection(hsts="1d"), ("live",), 8080)
    assert "tls" not in http["apps"]
    assert all(
        h["handler"] != "headers"
        for r in http["apps"]["http"]["servers"]["shipyard"]["routes"]
        for h in r["handle"]
    )


def _with_proxy(tmp_path: Path, lines: str) -> Path:
    yaml = VALID.replace("  http_port: 18080\n", "  http_port: 18080\n" + lines)
    return write(tmp_path, BadConfig("tls", yaml, "", ""))


def test_pem_files_are_checked_naming_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    (tmp_path / "site.pem").write_text(PEM)
    (tmp_path / "site.key").write_text("-----BEGIN CERTIFICATE-----\nx\n")
    path = _with_proxy(
        tmp_path,
        "  domains: [a.example]\n"
        "  acme_ca_root: ca.pem\n"
        "  trusted_roots: [missing.pem]\n"
        "  certificates:\n"
        "    - cert: site.pem\n"
        "      key: site.key\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={})
    issues = [str(i) for i in caught.value.issues]
    assert any(
        "proxy.acme_ca_root" in i and f"{tmp_path / 'ca.pem'} holds no PEM certificate" in i
        for i in issues
    ), issues
    assert any("proxy.trusted_roots[0]" in i and "missing.pem cannot be read" in i for i in issues)
    assert any("proxy.certificates[0].key" in i and "holds no PEM private key" in i for i in issues)
    assert not any("site.pem" in i for i in issues)
    assert all(str(tmp_path / "shipyard.yml") + ":" in i for i in issues), issues


def test_valid_pem_files_load(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(PEM)
    (tmp_path / "site.key").write_text(KEY)
    path = _with_proxy(
        tmp_path,
        "  domains: [a.example]\n  acme_ca: https://acme.internal/dir\n  acme_ca_root: ca.pem\n"
        "  certificates: [{cert: ca.pem, key: site.key}]\n  hsts: 1d\n",
    )
    proxy = load_config(path, "development", process_env={}).proxy
    assert proxy.hsts == 86400
    assert proxy.acme_ca == "https://acme.internal/dir"


def test_an_acme_ca_must_be_https(tmp_path: Path) -> None:
    path = _with_proxy(tmp_path, "  acme_ca: http://acme.internal/dir\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={})
    assert any("proxy.acme_ca" in str(i) for i in caught.value.issues)


def _config(tmp_path: Path, target: str, domains: list[str]):  # type: ignore[no-untyped-def]
    config = load_config(_with_proxy(tmp_path, ""), "development", process_env={})
    return replace(
        config,
        proxy=config.proxy.model_copy(update={"domains": domains}),
        environment=replace(config.environment, target=target),
    )


def test_check_warns_about_domains_that_do_not_resolve_to_the_target(tmp_path: Path) -> None:
    answers: dict[str, set[str] | str] = {
        "ok.example": {"192.0.2.10"},
        "elsewhere.example": {"198.51.100.7"},
        "missing.example": "does not resolve (Name or service not known)",
        "host.example": {"192.0.2.10"},
    }
    asked: list[list[str]] = []

    def resolve(names: list[str]) -> dict[str, set[str] | str]:
        asked.append(names)
        return {n: answers[n] for n in names}

    config = _config(
        tmp_path,
        "ssh://deploy@host.example:2222",
        ["ok.example", "elsewhere.example", "missing.example", "*.example"],
    )
    warnings = domain_warnings(config, resolve=resolve)
    assert asked == [["ok.example", "elsewhere.example", "missing.example", "host.example"]]
    assert warnings == [
        "proxy.domains: elsewhere.example resolves to 198.51.100.7, not to host.example "
        "(192.0.2.10): its certificate cannot be obtained there until it does",
        "proxy.domains: missing.example does not resolve (Name or service not known); its "
        "certificate cannot be obtained until it resolves to the target",
    ]
    # A local target: only resolution is checked.
    local = _config(tmp_path, "local", ["elsewhere.example", "missing.example"])
    assert [w.split(" ")[1] for w in domain_warnings(local, resolve=resolve)] == ["missing.example"]
    assert domain_warnings(_config(tmp_path, "local", []), resolve=resolve) == []


def test_a_renewal_error_is_one_the_certificate_manager_logged_after_issuance() -> None:
    renew = (
        '{"level":"error","ts":1764770000.5,"logger":"tls.renew","msg":"could not get '
        'certificate from issuer","identifier":"a.example","error":"connection refused"}'
    )
    assert _tls_error_after(renew, since=1764769999.0)
    assert not _tls_error_after(renew, since=1764770001.0)  # before the served one was issued
    handshake = renew.replace('"tls.renew"', '"http.stdlib"')
    assert not _tls_error_after(handshake, since=0)
    assert not _tls_error_after("not json a.example", since=0)
    assert _tls_error_after(renew.replace('"tls.renew"', '"tls"'), since=0)
