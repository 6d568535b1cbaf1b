"""TLS termination: one ``ssl.SSLContext`` per listening socket, built from the model.

Rules (nginx's ``ngx_http_ssl_module``, 1.22):

1. A socket is TLS when any ``listen`` on its address:port says ``ssl`` (nginx merges the
   listen options of one socket).  Each server reachable through it gets its own context
   (certificates, ``ssl_protocols``, ``ssl_ciphers``, ``ssl_prefer_server_ciphers``,
   ``ssl_session_tickets``), with http-level values inherited field by field; the socket's
   context is its default server's.
2. SNI picks the server the way Host does (exact, wildcards, regex, then the default server:
   ``Router.select_server``) and the handshake switches to that server's context; no SNI, or
   a name no server has, keeps the default server's certificate.
3. ``ssl_reject_handshake on`` in the server SNI picks (or the default server, for no SNI and
   unknown names) aborts the handshake with an ``unrecognized_name`` alert, as nginx does.
4. ALPN: ``h2`` then ``http/1.1`` on sockets with ``http2`` (``listen ... http2`` or
   ``http2 on`` in a server of the socket), ``http/1.1`` only elsewhere.
5. Certificate and key problems are found when the contexts are built (``tern serve`` and
   ``tern serve -t`` build them before starting) and reported as ``file:line: error: ...``,
   the ``ssl_certificate`` line; a TLS socket whose default server has no certificate (and
   no ``ssl_reject_handshake on``) is an error, as in nginx; another server without one keeps
   the default server's certificate when SNI picks it (nginx gives it no context).
6. ``ssl_verify_client`` (``proxy.client_cert``): the handshake asks for a client certificate
   (``CERT_OPTIONAL``) verified against ``ssl_client_certificate``/``ssl_trusted_certificate``
   (and ``ssl_crl``); ``$ssl_client_verify`` (``SUCCESS``/``NONE``), ``$ssl_client_s_dn`` and
   ``_i_dn`` (RFC 4514/2253), ``_serial`` (hex), ``_fingerprint`` (SHA-1), ``_raw_cert``,
   ``_cert`` and ``_escaped_cert`` and ``_v_start``/``_v_end`` come from the peer certificate.
   Python has no verify callback: a certificate that does not verify fails the handshake
   (nginx answers 400 "The SSL certificate error"), ``optional_no_ca`` still verifies, and
   ``ssl_verify_depth`` is not applied.
7. What Python's ``ssl`` cannot do (documented in docs/protocols.md): ``ssl_session_cache``
   size and sharing across workers and ``ssl_session_timeout`` (OpenSSL's built-in
   per-process cache with its 300 s default is used; ``off``/``none`` only stop TLS 1.3
   tickets), certificate paths with variables, ``ssl_dhparam``/``ssl_ecdh_curve``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .. import client_cert
from ..model import Config, RawDirective, Scope, Server, SourceSpan, TlsConf
from ..routing import BadRequest, Router, SocketTable

__all__ = ["TlsError", "SocketTls", "socket_tls", "check_config", "tls_tables", "tls_variable",
           "wants_h2"]

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_NO_FLAGS = {
    "TLSv1": ssl.OP_NO_TLSv1,
    "TLSv1.1": ssl.OP_NO_TLSv1_1,
    "TLSv1.2": ssl.OP_NO_TLSv1_2,
    "TLSv1.3": ssl.OP_NO_TLSv1_3,
}
_DEFAULT_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2")
"""nginx 1.22's ``ssl_protocols`` default: no TLSv1.3 (it joined the default in 1.23.4;
measured: nginx 1.22.1 without ssl_protocols answers $ssl_protocol TLSv1.2 to curl); the system
OpenSSL policy may still refuse the older ones, for nginx as for Tern."""
_DEFAULT_CIPHERS = "HIGH:!aNULL:!MD5"
"""nginx's ``ssl_ciphers`` default."""


class TlsError(Exception):
    """A TLS setting cannot be used; ``str()`` is ``file:line: error: message``."""

    def __init__(self, message: str, source: SourceSpan) -> None:
        super().__init__(f"{source.file}:{source.line}: error: {message}")
        self.source = source


def _merged(config: Config, server: Server) -> TlsConf:
    """The server's TLS settings, http-level values inherited field by field."""
    outer = config.http.scope.tls if config.http else TlsConf()
    inner = server.scope.tls
    values = {}
    for f in fields(TlsConf):
        v = getattr(inner, f.name)
        values[f.name] = getattr(outer, f.name) if v is None else v
    return TlsConf(**values)


def _path(config: Config, raw: str) -> str:
    """nginx resolves certificate paths against the configuration's directory (conf prefix)."""
    if os.path.isabs(raw):
        return raw
    return os.path.join(os.path.dirname(os.path.abspath(config.main_file)), raw)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    text = str(exc)
    cut = text.find(" (_ssl.c")
    return text[:cut] if cut > 0 else text


def _passwords(config: Config, tls: TlsConf, source: SourceSpan) -> list[str | None]:
    if tls.password_file is None:
        return [None]
    path = _path(config, tls.password_file)
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip("\r\n") for line in fh if line.strip()] or [None]
    except OSError as exc:
        raise TlsError(f'cannot open ssl_password_file "{path}": {_reason(exc)}', source) \
            from None


def _context(config: Config, server: Server, alpn: tuple[str, ...], *, default: bool
             ) -> ssl.SSLContext | None | bool:
    """The context of one server; None when it rejects handshakes (rule 3); False when a
    server other than the default one has no certificate (nginx gives it no context: SNI keeps
    the default server's, ``ngx_http_ssl_servername``)."""
    tls = _merged(config, server)
    if tls.reject_handshake:
        return None
    if not tls.certificates and not default:
        return False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    protocols = tuple(p for p in (tls.protocols or _DEFAULT_PROTOCOLS) if p in _VERSIONS)
    if protocols:
        order = list(_VERSIONS)
        ranked = sorted(protocols, key=order.index)
        ctx.minimum_version = _VERSIONS[ranked[0]]
        ctx.maximum_version = _VERSIONS[ranked[-1]]
        for name in order[order.index(ranked[0]):order.index(ranked[-1]) + 1]:
            if name not in protocols:
                ctx.options |= _NO_FLAGS[name]
    certs = tls.certificates or ()
    where = certs[0].source if certs else server.source
    try:
        ctx.set_ciphers(tls.ciphers or _DEFAULT_CIPHERS)
    except ssl.SSLError:
        raise TlsError(f'SSL_CTX_set_cipher_list("{tls.ciphers}") failed: no cipher match',
                       where) from None
    if tls.prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.session_tickets is False:
        ctx.options |= ssl.OP_NO_TICKET
    if tls.session_cache is not None and tls.session_cache[0] in ("off", "none") \
            and tls.session_tickets is not True:
        ctx.num_tickets = 0
    ctx.set_alpn_protocols(list(alpn))
    if not certs:
        where = next((lst.source for lst in server.listens if lst.ssl), server.source)
        raise TlsError('no "ssl_certificate" is defined for the "listen ... ssl" directive '
                       f'in server "{_server_label(server)}"', where)
    passwords = _passwords(config, tls, where)
    for cert in certs:
        if not cert.certificate.is_static or (cert.key is not None and not cert.key.is_static):
            raise TlsError("ssl_certificate with variables is not supported by tern serve",
                           cert.source)
        if cert.key is None:
            raise TlsError(f'no "ssl_certificate_key" is defined for certificate '
                           f'"{cert.certificate.raw}"', cert.source)
        cpath = _path(config, cert.certificate.raw)
        kpath = _path(config, cert.key.raw)
        for p, what in ((cpath, "certificate"), (kpath, "certificate key")):
            if not os.path.isfile(p):
                raise TlsError(f'cannot load {what} "{p}": No such file or directory',
                               cert.source)
        last: BaseException | None = None
        for pw in passwords:
            try:
                ctx.load_cert_chain(cpath, kpath, password=pw)
                last = None
                break
            except (ssl.SSLError, OSError, ValueError) as exc:
                last = exc
        if getattr(last, "reason", None) in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            raise TlsError(f'certificate "{cpath}" and key "{kpath}" do not match',
                           cert.source)
        if last is not None:
            raise TlsError(f'cannot load certificate "{cpath}" with key "{kpath}": '
                           f"{_reason(last)}", cert.source)
    _client_verify(config, server, ctx)
    return ctx


def _client_verify(config: Config, server: Server, ctx: ssl.SSLContext) -> None:
    """``ssl_verify_client``: ask for a client certificate (``proxy.client_cert``, rule 6)."""
    cc = client_cert.settings(config, server)
    if cc is None:
        return
    where = cc.source if isinstance(cc.source, SourceSpan) else server.source
    ctx.verify_mode = ssl.CERT_OPTIONAL
    cas = [p for p in (cc.client_certificate, cc.trusted_certificate) if p]
    if not cas and cc.mode != "optional_no_ca":
        raise TlsError('no ssl_client_certificate for ssl_verify_client', where)
    for raw in cas:
        path = _path(config, raw)
        try:
            ctx.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f'cannot load client certificates "{path}": {_reason(exc)}',
                           where) from None
    if cc.crl:
        path = _path(config, cc.crl)
        try:
            ctx.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f'cannot load CRL "{path}": {_reason(exc)}', where) from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN


def _server_label(server: Server) -> str:
    for n in server.names:
        return n.value
    return ""


class _SSLObject(ssl.SSLObject):
    """Lets a rejected handshake's alert reach the client (rule 3).

    asyncio's and uvloop's TLS transports close the socket as soon as ``do_handshake`` fails,
    dropping the alert OpenSSL has just written to the outgoing buffer.  When the SNI callback
    rejected the name, the first failure is reported as "want read" instead: the transport
    then sends what is buffered (the alert) and waits; the client, told by the alert, closes,
    or sends more, and the failure is reported for real (the handshake timeout bounds it)."""

    tern_rejected = 0
    """1: the SNI callback refused the name; 2: its alert has been given its chance to go."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLError as exc:
            if self.tern_rejected == 1 and not isinstance(exc, ssl.SSLWantReadError):
                self.tern_rejected = 2
                raise ssl.SSLWantReadError("flush the rejection alert") from exc
            raise


@dataclass(slots=True)
class SocketTls:
    """The TLS side of one listening socket."""

    context: ssl.SSLContext
    """Give this to ``loop.create_server(ssl=...)``; its SNI callback switches servers."""
    http2: bool
    """``h2`` is offered by ALPN."""


def wants_h2(config: Config, table: SocketTable) -> bool:
    http_on = config.http.scope.http2 if config.http else None
    for server in table.servers:
        for lst in server.listens:
            if lst.port == table.port and lst.http2 and not lst.quic:
                return True
        on = server.scope.http2 if server.scope.http2 is not None else http_on
        if on:
            return True
    return False


def socket_tls(config: Config, router: Router, table: SocketTable) -> SocketTls:
    """Build the contexts of one TLS socket (rules 1-4).

    Raises:
        TlsError: a certificate, key or setting that cannot be used (rule 5).
    """
    h2 = wants_h2(config, table)
    alpn = ("h2", "http/1.1") if h2 else ("http/1.1",)
    default = table.default
    assert default is not None
    per_server: dict[int, ssl.SSLContext | None | bool] = {}
    for server in table.servers:
        per_server[id(server)] = _context(config, server, alpn, default=server is default)
    base = per_server[id(default)]
    if not isinstance(base, ssl.SSLContext):
        # the default server rejects handshakes: a context without a certificate carries the
        # callback (nothing is ever served with it)
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.set_alpn_protocols(list(alpn))
    base.sni_callback = _sni_callback(router, table, per_server, base)
    base.sslobject_class = _SSLObject
    return SocketTls(context=base, http2=h2)


def _sni_callback(router: Router, table: SocketTable,
                  per_server: dict[int, ssl.SSLContext | None | bool], base: ssl.SSLContext
                  ) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    default = table.default
    assert default is not None
    cache: dict[str | None, ssl.SSLContext | None | bool] = {}

    def pick(name: str | None) -> ssl.SSLContext | None | bool:
        server = default
        if name:
            try:
                server = router.select_server(table, name).server or default
            except BadRequest:
                server = default
        return per_server.get(id(server))

    def callback(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        try:
            ctx = cache[name]
        except KeyError:
            ctx = pick(name)
            if len(cache) < 1024:
                cache[name] = ctx
        if ctx is None:
            if isinstance(sslobj, _SSLObject):
                sslobj.tern_rejected = 1
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # type: ignore[no-any-return]
        if isinstance(ctx, ssl.SSLContext) and ctx is not base:
            sslobj.context = ctx
        if name:
            sslobj.tern_server_name = name  # type: ignore[attr-defined]
        return None

    return callback


def check_config(config: Config, router: Router | None = None) -> list[str]:
    """Build every TLS socket's contexts once and return the problems (``file:line: error:``),
    for ``tern serve`` and ``tern serve -t`` before anything starts."""
    router = router or Router(config)
    problems: list[str] = []
    for table in tls_tables(config, router):
        try:
            socket_tls(config, router, table)
        except TlsError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    problems += [p for p in _upstream_files(config) if p not in problems]
    return problems


def _upstream_files(config: Config) -> list[str]:
    """What ``nginx -t`` refuses in the ``proxy_ssl_*`` settings of a location proxying to an
    https URL (or a URL with variables), with inheritance: a certificate or trusted CA file
    that cannot be loaded, a certificate without a key, ``proxy_ssl_verify on`` without
    ``proxy_ssl_trusted_certificate`` (the trusted file is read only with verify on)."""
    if config.http is None:
        return []
    names = ("proxy_ssl_certificate", "proxy_ssl_certificate_key",
             "proxy_ssl_trusted_certificate", "proxy_ssl_verify")
    out: list[str] = []

    def own(scope: Scope, eff: dict[str, RawDirective]) -> dict[str, RawDirective]:
        eff = dict(eff)
        for d in scope.other:
            if d.name in names and d.args:
                eff[d.name] = d
        return eff

    def check(eff: dict[str, RawDirective]) -> None:
        cert, key = eff.get("proxy_ssl_certificate"), eff.get("proxy_ssl_certificate_key")
        verify, trusted = eff.get("proxy_ssl_verify"), eff.get("proxy_ssl_trusted_certificate")
        if cert is not None:
            if key is None:
                out.append(str(TlsError('no "proxy_ssl_certificate_key" is defined for '
                                        f'certificate "{cert.args[0]}"',
                                        cert.source)))
            else:
                for d, what in ((cert, "certificate"), (key, "certificate key")):
                    path = _path(config, d.args[0])
                    try:
                        with open(path, "rb"):
                            pass
                    except OSError as exc:
                        out.append(str(TlsError(f'cannot load {what} "{path}": '
                                                f"{_reason(exc)}", d.source)))
        if verify is not None and verify.args[0] == "on":
            if trusted is None:
                out.append(str(TlsError("no proxy_ssl_trusted_certificate for "
                                        "proxy_ssl_verify", verify.source)))
            else:
                path = _path(config, trusted.args[0])
                try:
                    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
                except (OSError, ssl.SSLError) as exc:
                    out.append(str(TlsError(f'cannot load certificate "{path}": '
                                            f"{_reason(exc)}", trusted.source)))

    top = own(config.http.scope, {})
    for server in config.http.servers:
        stack = [(loc, own(server.scope, top)) for loc in server.locations]
        while stack:
            loc, outer = stack.pop()
            eff = own(loc.scope, outer)
            pp = loc.scope.proxy_pass
            if pp is not None and (pp.scheme == "https" or pp.has_variables):
                check(eff)
            stack.extend((inner, eff) for inner in loc.locations)
    return list(dict.fromkeys(out))


def tls_tables(config: Config, router: Router) -> list[SocketTable]:
    """The socket tables whose socket is TLS (rule 1)."""
    out = []
    for table in router.sockets.values():
        if table.address.startswith("quic:"):
            continue
        if any(lst.ssl and lst.port == table.port and not lst.quic
               and _same_address(lst.address, table.address)
               for server in table.servers for lst in server.listens):
            out.append(table)
    return out


def _same_address(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def tls_variable(transport: object, name: str) -> str | None:
    """nginx's ``$ssl_*`` variables for a connection; None when it is not TLS (not found)."""
    get = getattr(transport, "get_extra_info", None)
    if get is None:
        return None
    sslobj = get("ssl_object")
    if sslobj is None:
        return None
    if name == "ssl_protocol":
        return sslobj.version()  # type: ignore[no-any-return]
    if name == "ssl_cipher":
        cipher = sslobj.cipher()
        return cipher[0] if cipher else None
    if name == "ssl_server_name":
        return getattr(sslobj, "tern_server_name", None)
    if name == "ssl_alpn_protocol":
        return sslobj.selected_alpn_protocol()  # type: ignore[no-any-return]
    if name == "ssl_session_reused":
        return "r" if sslobj.session_reused else "."
    if name.startswith("ssl_client_"):
        return _client_variable(sslobj, name[11:])
    return None


def _client_variable(sslobj: ssl.SSLObject, name: str) -> str | None:
    """``$ssl_client_*`` (rule 6): from the peer certificate, parsed with ``cryptography``."""
    if sslobj.context.verify_mode == ssl.CERT_NONE:
        return "NONE" if name == "verify" else ""
    der = sslobj.getpeercert(binary_form=True)
    if name == "verify":
        # Python's ssl fails the handshake on a certificate that does not verify: a
        # connection that exists either has a verified certificate or none
        return "SUCCESS" if der else "NONE"
    if not der:
        return ""
    cached = getattr(sslobj, "tern_client_vars", None)
    if cached is None:
        cached = _client_vars(der)
        try:
            sslobj.tern_client_vars = cached  # type: ignore[attr-defined]
        except AttributeError:
            pass
    if name == "v_remain":
        import datetime

        end = datetime.datetime.strptime(cached["v_end"], "%b %d %H:%M:%S %Y GMT")
        left = (end - datetime.datetime.utcnow()).total_seconds()
        return str(max(int(left // 86400), 0))
    return cached.get(name, None)


def _openssl_names() -> dict[Any, str]:
    """OpenSSL's short names where RFC 4514 has none (nginx's RFC 2253 form uses them)."""
    from cryptography.x509.oid import NameOID

    return {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.SERIAL_NUMBER: "serialNumber",
            NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN", NameOID.TITLE: "title",
            NameOID.POSTAL_CODE: "postalCode", NameOID.BUSINESS_CATEGORY: "businessCategory"}


_OPENSSL_NAMES: dict[Any, str] = {}


def _client_vars(der: bytes) -> dict[str, str]:
    if not _OPENSSL_NAMES:
        _OPENSSL_NAMES.update(_openssl_names())
    import hashlib
    from urllib.parse import quote

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_der_x509_certificate(der)
    pem = cert.public_bytes(Encoding.PEM).decode("ascii")
    serial = f"{cert.serial_number:X}"
    if len(serial) % 2:
        serial = "0" + serial
    lines = pem.rstrip("\n").split("\n")
    return {
        "s_dn": cert.subject.rfc4514_string(_OPENSSL_NAMES),
        "i_dn": cert.issuer.rfc4514_string(_OPENSSL_NAMES),
        "serial": serial,
        "fingerprint": hashlib.sha1(der).hexdigest(),
        "raw_cert": pem,
        "cert": "\n\t".join(lines),  # nginx: a tab after each line break, none at the end
        "escaped_cert": quote(pem, safe=""),
        "v_start": cert.not_valid_before.strftime("%b %e %H:%M:%S %Y GMT"),
        "v_end": cert.not_valid_after.strftime("%b %e %H:%M:%S %Y GMT"),
    }
