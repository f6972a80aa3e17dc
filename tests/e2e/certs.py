"""Test certificates made with the openssl command: a CA and a certificate it signs."""

from __future__ import annotations

import subprocess
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, capture_output=True, check=True)


def ca_and_leaf(directory: Path, *names: str, ca_name: str = "shipyard test CA") -> None:
    """In ``directory``: a CA (ca.pem, ca.key) and a certificate it signs for ``names`` and
    127.0.0.1 (cert.pem, key.pem; the chain in chain.pem), valid for two days."""
    _openssl("req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", f"/O=shipyard tests/CN={ca_name}", cwd=directory)  # fmt: skip
    _openssl("req", *_EC, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", f"/CN={names[0]}",
             cwd=directory)  # fmt: skip
    san = ",".join([*(f"DNS:{n}" for n in names), "IP:127.0.0.1"])
    (directory / "san.cnf").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "cert.pem",
             cwd=directory)  # fmt: skip
    (directory / "chain.pem").write_text((directory / "cert.pem").read_text())
