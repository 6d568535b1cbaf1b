"""TLS to upstream servers: ``proxy_pass https://...`` and the ``proxy_ssl_*`` directives.

Rules (nginx 1.22's ``ngx_http_proxy_module`` / ``ngx_http_upstream_ssl_*``):

1. Settings come from the innermost level that has each directive (``http``, ``server``,
   ``location``), as nginx merges them.
2. ``proxy_ssl_name`` (default ``$proxy_host``: the upstream group name, or the host of the
   URL) is evaluated per request; a ``:port`` at its end is cut off.  It is the name sent as
   SNI (only with ``proxy_ssl_server_name on``; default off, and never an IP address, RFC
   6066) and the name the certificate must match (only with ``proxy_ssl_verify on``).
3. ``proxy_ssl_verify on`` checks the chain against ``proxy_ssl_trusted_certificate`` and the
   name against the certificate (subjectAltName DNS/IP, else the subject CN, wildcards in the
   left-most label, as OpenSSL's ``X509_check_host``); default off: anything is accepted.
4. ``proxy_ssl_protocols`` (default ``TLSv1 TLSv1.1 TLSv1.2``: no TLSv1.3 in nginx 1.22),
   ``proxy_ssl_ciphers`` (default ``DEFAULT``), ``proxy_ssl_certificate``/``_key`` (a client
   certificate for the upstream) set up the context; one context per distinct settings, built
   once.
5. Failures are upstream errors in the ``connect`` phase (502, ``proxy_next_upstream error``),
   with nginx's error-log wording: ``upstream SSL certificate verify error: (N:reason)``,
   ``upstream SSL certificate does not match "name"``, ``SSL_do_handshake() failed (...)``.
6. Kept connections are pooled under a key holding the TLS settings and name, so TLS and
   plain connections (or ones made for another name) never mix.

7. ``proxy_ssl_session_reuse`` (default on): a new connection resumes the session of the last
   one made to the same peer with the same settings (nginx keeps one per peer whatever the
   location).

Not done (documented in docs/protocols.md): ``proxy_ssl_verify_depth`` (Python's ``ssl`` has
no depth setting: OpenSSL's default applies), ``proxy_ssl_crl``, ``proxy_ssl_password_file``,
``proxy_ssl_conf_command``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Lit, Template, Var

if TYPE_CHECKING:
    from .upstream import UpstreamConnection

__all__ = ["UpstreamTls", "TlsSettings", "settings_of", "handshake_error", "check_name",
           "connect_tls"]

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_DEFAULT_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2")
"""nginx 1.22's proxy_ssl_protocols default (TLSv1.3 joined it in 1.23.4; measured: nginx 1.22.1
talks TLSv1.2 to a TLSv1.3 upstream)."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The ``proxy_ssl_*`` values in effect (paths resolved), hashable: a context cache key."""

    server_name: bool
    verify: bool
    trusted: str | None
    protocols: tuple[str, ...]
    ciphers: str
    certificate: str | None
    certificate_key: str | None
    session_reuse: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """TLS for one proxied request: the context, SNI (or ``None``), the name to verify."""

    settings: TlsSettings
    context: ssl.SSLContext
    name: str

    @property
    def sni(self) -> str | None:
        if not self.settings.server_name or not self.name or _is_ip(self.name):
            return None
        return self.name

    @property
    def pool_key(self) -> tuple[object, ...]:
        return ("tls", self.settings, self.name)


_CONTEXTS: dict[TlsSettings, ssl.SSLContext] = {}


def _context(s: TlsSettings) -> ssl.SSLContext:
    ctx = _CONTEXTS.get(s)
    if ctx is not None:
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the name is checked against proxy_ssl_name (check_name)
    if s.verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if s.trusted:
            ctx.load_verify_locations(cafile=s.trusted)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    versions = [_VERSIONS[p] for p in s.protocols if p in _VERSIONS]
    if versions:
        try:
            ctx.minimum_version = min(versions)
            ctx.maximum_version = max(versions)
        except (ValueError, ssl.SSLError):
            pass
    try:
        ctx.set_ciphers(s.ciphers)
    except ssl.SSLError:
        pass
    if s.certificate:
        ctx.load_cert_chain(s.certificate, s.certificate_key or s.certificate)
    _CONTEXTS[s] = ctx
    return ctx


def _raw(state: Any, name: str) -> tuple[str, ...] | None:
    for scope in reversed(state.scope_chain):
        for d in scope.other:
            if d.name == name:
                return tuple(d.args)
    return None


def settings_of(state: Any, proxy_host: str) -> UpstreamTls:
    """The TLS for a request proxied to an https URL (``state``: the request's RequestState).

    Raises:
        OSError, ssl.SSLError: a certificate or key file cannot be loaded.
    """
    from .tls import _path

    config = state.interp.config

    def flag(name: str) -> bool:
        args = _raw(state, name)
        return bool(args) and args[0] == "on"  # type: ignore[index]

    def path(name: str) -> str | None:
        args = _raw(state, name)
        return _path(config, args[0]) if args else None

    protocols = _raw(state, "proxy_ssl_protocols") or _DEFAULT_PROTOCOLS
    ciphers = _raw(state, "proxy_ssl_ciphers")
    s = TlsSettings(server_name=flag("proxy_ssl_server_name"), verify=flag("proxy_ssl_verify"),
                    trusted=path("proxy_ssl_trusted_certificate"), protocols=protocols,
                    ciphers=ciphers[0] if ciphers else "DEFAULT",
                    certificate=path("proxy_ssl_certificate"),
                    certificate_key=path("proxy_ssl_certificate_key"),
                    session_reuse=_raw(state, "proxy_ssl_session_reuse") != ("off",))
    name_args = _raw(state, "proxy_ssl_name")
    if name_args:
        name = state.eval(_template(name_args[0]))
    else:
        name = proxy_host
    return UpstreamTls(s, _context(s), _strip_port(name))


_VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_TEMPLATES: dict[str, Template] = {}


def _template(raw: str) -> Template:
    """``proxy_ssl_name``'s value split into text and ``$name``/``${name}`` variables."""
    tpl = _TEMPLATES.get(raw)
    if tpl is None:
        parts: list[Lit | Var] = []
        pos = 0
        for match in _VAR_RE.finditer(raw):
            if match.start() > pos:
                parts.append(Lit(text=raw[pos:match.start()]))
            parts.append(Var(name=match.group(1) or match.group(2)))
            pos = match.end()
        if pos < len(raw):
            parts.append(Lit(text=raw[pos:]))
        tpl = _TEMPLATES[raw] = Template(raw=raw, parts=tuple(parts))
    return tpl


def _strip_port(name: str) -> str:
    if name.startswith("["):
        end = name.find("]")
        return name[1:end] if end > 0 else name
    if name.count(":") == 1:
        return name.split(":", 1)[0]
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def handshake_error(exc: BaseException) -> str:
    """nginx's error-log wording for a failed upstream handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"upstream SSL certificate verify error: ({exc.verify_code}:"
                f"{exc.verify_message}) while SSL handshaking to upstream")
    if isinstance(exc, ssl.SSLError):
        text = str(exc)
        cut = text.find(" (_ssl.c")
        return (f"SSL_do_handshake() failed (SSL: {text[:cut] if cut > 0 else text}) "
                "while SSL handshaking to upstream")
    return f"peer closed connection in SSL handshake ({exc}) while SSL handshaking to upstream"


def check_name(transport: asyncio.BaseTransport, name: str) -> str | None:
    """``None`` when the upstream's certificate matches ``name``, else nginx's message."""
    sslobj = transport.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    if der and _matches(der, name):
        return None
    return f'upstream SSL certificate does not match "{name}" while SSL handshaking to upstream'


def _matches(der: bytes, name: str) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if _is_ip(name):
        want = ipaddress.ip_address(name)
        return san is not None and want in san.get_values_for_type(x509.IPAddress)
    if san is not None:
        dns = san.get_values_for_type(x509.DNSName)
        if dns:
            return any(_dns_match(p, name) for p in dns)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return any(_dns_match(str(a.value), name) for a in cns)


def _dns_match(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        head, rest = name.split(".", 1)
        return bool(head) and rest == pattern[2:] and "." in rest
    return False


async def connect_tls(key: tuple[object, ...], host: str, port: int, tls: UpstreamTls,
                      connect_timeout: float) -> UpstreamConnection:
    """A new TLS ``UpstreamConnection`` to ``host:port`` (handshake and checks done).

    Raises:
        UpstreamError: connect or handshake failed or timed out (phase ``connect``).
    """
    from .upstream import UpstreamConnection, UpstreamError  # noqa: F811 (import cycle)

    loop = asyncio.get_running_loop()
    # server_hostname "" sends no SNI (and no Python-side name check: check_name does it)
    sni = tls.sni
    context: Any = tls.context
    skey = (host, port, tls.settings)
    if tls.settings.session_reuse:
        prev = _SESSIONS.get(skey)
        try:
            session = prev.session if prev is not None else None
        except (ValueError, ssl.SSLError):
            session = None
        if session is not None:
            context = _Resume(tls.context, session)
    try:
        transport, proto = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(key), host, port,
                                   ssl=context, server_hostname=sni or "",
                                   ssl_handshake_timeout=max(connect_timeout, 0.001)),
            connect_timeout)
    except TimeoutError:
        raise UpstreamError("connect", "upstream timed out (connect)", timeout=True) from None
    except ssl.SSLError as exc:
        raise UpstreamError("connect", handshake_error(exc)) from None
    except ConnectionError as exc:
        raise UpstreamError("connect", handshake_error(exc)) from None
    except OSError as exc:
        raise UpstreamError("connect", f"connect() failed ({exc.strerror or exc})") from None
    if tls.settings.verify:
        problem = check_name(transport, tls.name)
        if problem is not None:
            transport.abort()
            raise UpstreamError("connect", problem)
    if tls.settings.session_reuse:
        # the session is read from this connection when the next one starts: a TLS 1.3
        # ticket arrives after the handshake
        if len(_SESSIONS) >= 1024:
            _SESSIONS.clear()
        _SESSIONS[skey] = transport.get_extra_info("ssl_object")
    return proto


_SESSIONS: dict[tuple[object, ...], Any] = {}
"""(peer host, port, settings) -> the last connection's SSLObject (its session resumes)."""


class _Resume:
    """An ``SSLContext`` stand-in for asyncio that makes the client resume ``session``."""

    def __init__(self, context: ssl.SSLContext, session: ssl.SSLSession) -> None:
        self.context = context
        self.session = session

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *,
                 server_side: bool = False, server_hostname: str | None = None
                 ) -> ssl.SSLObject:
        return self.context.wrap_bio(incoming, outgoing, server_side=server_side,
                                     server_hostname=server_hostname, session=self.session)
