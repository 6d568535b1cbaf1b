"""Throw-away certificate authorities and certificates for TLS tests (openssl CLI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["make_ca", "make_leaf"]


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA certificate and its key (openssl CLI)."""
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-subj", f"/CN={name}", "-days", "2",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def make_leaf(d: Path, name: str, ca: tuple[Path, Path], subject: str | None = None
              ) -> tuple[Path, Path]:
    """A certificate for ``name`` (CN and subjectAltName DNS) signed by ``ca``; ``subject``
    (openssl's ``/K=V/...`` form) replaces ``/CN=name``."""
    crt, key, csr = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(csr), "-subj", subject or f"/CN={name}"],
                   check=True, capture_output=True, timeout=60)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey",
                    str(ca[1]), "-CAcreateserial", "-out", str(crt), "-days", "2",
                    "-extfile", str(ext)], check=True, capture_output=True, timeout=60)
    return crt, key
