"""Client certificates on TLS listeners: ``ssl_verify_client`` and what a request gets.

Rules (nginx 1.22's ``ngx_http_ssl_module``, ``ngx_http_process_request``):

1. ``ssl_verify_client`` (``off`` by default; ``on``, ``optional``, ``optional_no_ca``) and
   ``ssl_client_certificate``/``ssl_trusted_certificate``/``ssl_verify_depth``/``ssl_crl`` are
   read from the server, else from ``http`` (:func:`settings`).
2. The handshake asks for a certificate (proxy/io/tls.py).  Every request on a TLS connection
   of a server with ``ssl_verify_client`` other than ``off`` is then checked, before the server
   rewrites run (:func:`status`): a certificate that failed verification gives 495 (sent as
   ``400 The SSL certificate error``), no certificate with ``on`` gives 496 (``400 No required
   SSL certificate was sent``); error_page 495/496 at server level applies, as in nginx.
3. ``$ssl_client_verify`` is ``SUCCESS``, ``FAILED:reason`` or ``NONE``.
4. HTTP/3 (QUIC, aioquic) asks for no client certificate: its requests count as sent without
   one, so ``ssl_verify_client on`` refuses them (496) rather than letting them through.

Python's ``ssl`` has no verify callback: a certificate that fails verification fails the
handshake itself (nginx completes it and answers 495), and ``optional_no_ca`` verifies against
the CA like ``optional`` (directive rows PARTIAL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .model import Config, Server

__all__ = ["ClientCertSettings", "settings", "status", "MODES"]

MODES = ("on", "optional", "optional_no_ca")


@dataclass(frozen=True, slots=True)
class ClientCertSettings:
    """The client-certificate directives in effect for one server (raw paths)."""

    mode: str
    client_certificate: str | None
    trusted_certificate: str | None
    crl: str | None
    depth: int | None
    source: object
    """Where ``ssl_verify_client`` is written (a SourceSpan, for errors)."""


_CACHE: dict[int, tuple[Server, ClientCertSettings | None]] = {}


def settings(config: Config, server: Server) -> ClientCertSettings | None:
    """The server's client-certificate settings; None when ``ssl_verify_client`` is off."""
    hit = _CACHE.get(id(server))
    if hit is not None and hit[0] is server:
        return hit[1]
    found: dict[str, tuple[tuple[str, ...], object]] = {}
    scopes = ([config.http.scope] if config.http is not None else []) + [server.scope]
    for scope in scopes:
        for d in scope.other:
            if d.name in ("ssl_verify_client", "ssl_client_certificate",
                          "ssl_trusted_certificate", "ssl_crl", "ssl_verify_depth"):
                found[d.name] = (tuple(d.args), d.source)
    mode_args, source = found.get("ssl_verify_client", (("off",), None))
    mode = mode_args[0] if mode_args else "off"
    out: ClientCertSettings | None = None
    if mode in MODES:
        def arg(name: str) -> str | None:
            v = found.get(name)
            return v[0][0] if v and v[0] else None

        depth = arg("ssl_verify_depth")
        out = ClientCertSettings(mode, arg("ssl_client_certificate"),
                                 arg("ssl_trusted_certificate"), arg("ssl_crl"),
                                 int(depth) if depth and depth.isdigit() else None, source)
    if len(_CACHE) > 4096:
        _CACHE.clear()
    _CACHE[id(server)] = (server, out)
    return out


def status(config: Config, server: Server, var: Callable[[str], str | None]) -> int | None:
    """495 or 496 when the request must be refused (rule 2), else None.

    ``var``: the request's variable hook (``$ssl_client_verify``; None on cleartext)."""
    cc = settings(config, server)
    if cc is None:
        return None
    verify = var("ssl_client_verify")
    if verify is None:
        if var("ssl_protocol") is None:
            return None  # not a TLS connection: nginx checks TLS connections only
        verify = "NONE"  # TLS that asks for no certificate (HTTP/3): fail closed
    if verify.startswith("FAILED"):
        return 495
    if verify == "NONE" and cc.mode == "on":
        return 496
    return None
