"""From statements to the typed model: context and arity checks, support levels, node building.

Rules:

1. Every directive occurrence is looked up in Tern's directive table (``migrate.directives``); an
   unknown name, a wrong context or a wrong argument count is an ERROR diagnostic (nginx would
   refuse to start), and the occurrence is skipped.
2. Every accepted occurrence is counted once in ``Analysis.census`` with its support level;
   UNSUPPORTED and PARTIAL occurrences also get a diagnostic carrying the table's reason.
3. Directives with a typed model node are built into it; the rest are kept as ``RawDirective``
   in the ``other`` field of their level, so nothing is lost.
4. Bad argument values (a time that is not a time, ``return abc``) are ERROR diagnostics with
   file:line, in nginx's words where nginx has words for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy import model as m
from proxy.units import parse_size as _parse_size
from proxy.regex import RegexError, compile_pcre
from proxy.units import parse_time as _parse_time

from .diagnostics import Diagnostic, Level
from .directives import RAW_BLOCKS, lookup
from .dirspec import ANY_ARGS, Ctx, DirectiveSpec
from .grammars import GrammarError, parse_condition, parse_template
from .loader import Stmt, Tree


@dataclass(slots=True)
class CensusEntry:
    """One accepted directive occurrence."""

    name: str
    file: str
    line: int
    support: m.Support
    context: str


@dataclass(slots=True)
class Analysis:
    """Result of analysing a tree."""

    config: m.Config
    diagnostics: list[Diagnostic]
    census: list[CensusEntry]

    @property
    def has_errors(self) -> bool:
        """True when nginx would refuse this configuration."""
        return any(d.level is Level.ERROR for d in self.diagnostics)


class BadValue(ValueError):
    """An argument value nginx would reject (message in nginx's words)."""


# ---------------------------------------------------------------------------------------------
# Value parsers (ngx_parse_time, ngx_parse_size, flags)

def parse_time(text: str) -> float:
    """nginx time: ``30``, ``30s``, ``1m30s``, ``500ms`` -> seconds."""
    try:
        return _parse_time(text)
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def parse_size(text: str) -> int:
    """nginx size: ``512``, ``8k``, ``1m``, ``1g`` -> bytes."""
    try:
        return _parse_size(text)
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def parse_flag(name: str, text: str) -> bool:
    """``on`` / ``off`` (case-insensitive, as nginx)."""
    low = text.lower()
    if low == "on":
        return True
    if low == "off":
        return False
    raise BadValue(f'invalid value "{text}" in "{name}" directive, it must be "on" or "off"')


def _int(text: str) -> int:
    if not text.isdigit():
        raise BadValue(f'invalid number "{text}"')
    return int(text)


def _tpl(text: str) -> m.Template:
    try:
        return parse_template(text)
    except GrammarError as exc:
        raise BadValue(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Scope builder: collects directives of one level, then freezes into a Scope


@dataclass(slots=True)
class _ScopeAcc:
    ctx: Ctx
    rewrites: list[m.RewriteStmt] = field(default_factory=list)
    top: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    fastcgi: dict[str, Any] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)
    access: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    logging: dict[str, Any] = field(default_factory=dict)
    realip: dict[str, Any] = field(default_factory=dict)
    tls: dict[str, Any] = field(default_factory=dict)
    certs: list[tuple[m.Template, m.SourceSpan]] = field(default_factory=list)
    keys: list[m.Template] = field(default_factory=list)
    other: list[m.RawDirective] = field(default_factory=list)

    def append(self, group: dict[str, Any], key: str, value: Any) -> None:
        group.setdefault(key, []).append(value)

    def freeze(self) -> m.Scope:
        def tup(d: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        tls = tup(self.tls)
        if self.certs:
            tls["certificates"] = tuple(
                m.TlsCertificate(certificate=c, key=self.keys[i] if i < len(self.keys) else None,
                                 source=src)
                for i, (c, src) in enumerate(self.certs)
            )
        return m.Scope(
            rewrites=tuple(self.rewrites),
            proxy=m.ProxyConf(**tup(self.proxy)),
            fastcgi=m.FastcgiConf(**tup(self.fastcgi)),
            static=m.StaticConf(**tup(self.static)),
            access=m.AccessConf(**tup(self.access)),
            limits=m.LimitsConf(**tup(self.limits)),
            logging=m.LoggingConf(**tup(self.logging)),
            realip=m.RealIpConf(**tup(self.realip)),
            tls=m.TlsConf(**tls),
            other=tuple(self.other),
            **tup(self.top),
        )


Handler = Callable[["Analyzer", Stmt, _ScopeAcc, m.SourceSpan], None]
_HANDLERS: dict[str, Handler] = {}


def _handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            _HANDLERS[n] = fn
        return fn
    return deco


_ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "autoindex_format": ("html", "xml", "json", "jsonp"),
    "gzip_static": ("on", "off", "always"),
}
"""Directives kept as written (``Scope.other``) whose one argument nginx checks against a list
(ignoring case, as ngx_conf_set_enum_slot does); anything else is nginx's 'invalid value'."""


def _set_once(acc_group: dict[str, Any], key: str, value: Any, st: Stmt) -> None:
    if key in acc_group:
        raise BadValue(f'"{st.name}" directive is duplicate')
    acc_group[key] = value


# -- rewrite module ----------------------------------------------------------------------------

_REDIRECT_PREFIXES = ("http://", "https://", "$scheme")


@_handles("rewrite")
def _rewrite(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    flag = m.RewriteFlag.NONE
    if len(st.args) == 3:
        try:
            flag = m.RewriteFlag(st.args[2])
        except ValueError:
            raise BadValue(f'invalid parameter "{st.args[2]}"') from None
        if flag is m.RewriteFlag.NONE:
            raise BadValue('invalid parameter ""')
    az.check_regex(st.args[0], st)
    acc.rewrites.append(m.Rewrite(pattern=st.args[0], replacement=_tpl(st.args[1]), flag=flag,
                                  source=src))


@_handles("return")
def _return(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    first = st.args[0]
    if first.isdigit():
        code = int(first)
        if code > 999:
            raise BadValue(f'invalid return code "{first}"')
        text = _tpl(st.args[1]) if len(st.args) > 1 else None
        acc.rewrites.append(m.Return(code=code, text=text, source=src))
        return
    if len(st.args) == 1 and first.startswith(_REDIRECT_PREFIXES):
        acc.rewrites.append(m.Return(code=302, text=_tpl(first), url_only=True, source=src))
        return
    raise BadValue(f'invalid return code "{first}"')


@_handles("set")
def _set(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    name = st.args[0]
    if not name.startswith("$") or len(name) < 2:
        raise BadValue(f'invalid variable name "{name}"')
    if name[1:].lower() in ("secure_link", "secure_link_expires"):  # not changeable in nginx
        raise BadValue(f'the duplicate "{name[1:]}" variable')
    acc.rewrites.append(m.SetVar(name=name[1:], value=_tpl(st.args[1]), source=src))


@_handles("break")
def _break(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.rewrites.append(m.Break(source=src))


# -- proxy -------------------------------------------------------------------------------------

_PROXY_URL = re.compile(r"^(?P<scheme>https?)://(?P<rest>.*)$", re.I)


def parse_proxy_pass(url: str, src: m.SourceSpan) -> m.ProxyPass:
    """Split a ``proxy_pass`` URL the way ngx_http_proxy_pass does."""
    tpl = _tpl(url)
    mt = _PROXY_URL.match(url)
    if not mt and url.startswith("$"):
        # the whole URL comes from variables (nginx checks it at run time)
        return m.ProxyPass(url=tpl, scheme="", host="", has_variables=True, source=src)
    if not mt:
        raise BadValue(f'invalid URL prefix in "{url}"')
    scheme = mt.group("scheme").lower()
    rest = mt.group("rest")
    if rest.startswith("unix:"):
        path, _, uri = rest[5:].partition(":")
        return m.ProxyPass(url=tpl, scheme=scheme, host="unix:" + path, uri=uri or None,
                           unix_socket=path, has_variables=not tpl.is_static, source=src)
    slash = rest.find("/")
    hostport, uri = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
    port: int | None = None
    host = hostport
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[: end + 1]
        if hostport[end + 1 : end + 2] == ":":
            port = _port(hostport[end + 2 :], url)
    elif ":" in hostport:
        host, _, p = hostport.rpartition(":")
        if "$" not in p:
            port = _port(p, url)
        else:
            host = hostport
    if not host:
        raise BadValue(f'no host in "{url}"')
    return m.ProxyPass(url=tpl, scheme=scheme, host=host, port=port, uri=uri,
                       has_variables=not tpl.is_static, source=src)


def _port(text: str, url: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadValue(f'invalid port in upstream "{url}"')
    return int(text)


@_handles("proxy_pass")
def _proxy_pass(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if "proxy_pass" in acc.top:
        raise BadValue('"proxy_pass" directive is duplicate')
    acc.top["proxy_pass"] = parse_proxy_pass(st.args[0], src)


@_handles("proxy_set_header")
def _proxy_set_header(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.append(acc.proxy, "set_headers",
               m.HeaderValue(name=st.args[0], value=_tpl(st.args[1]), source=src))


@_handles("proxy_hide_header", "proxy_pass_header")
def _proxy_header_list(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    key = "hide_headers" if st.name == "proxy_hide_header" else "pass_headers"
    acc.append(acc.proxy, key, st.args[0])


@_handles("proxy_cookie_domain", "proxy_cookie_path")
def _proxy_cookie_rewrite(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    key = "cookie_domains" if st.name == "proxy_cookie_domain" else "cookie_paths"
    if len(st.args) == 1:
        if st.args[0] != "off":
            raise BadValue(f'invalid parameter "{st.args[0]}"')
        acc.proxy.setdefault(key, [])
        return
    pattern, replacement = st.args
    regex = None
    caseless = st.name == "proxy_cookie_domain"
    match = None
    if pattern.startswith("~"):
        regex = pattern[1:]
        if regex.startswith("*"):
            regex, caseless = regex[1:], True
        try:
            compile_pcre(regex, caseless)
        except RegexError as exc:
            raise BadValue(f'invalid regex "{regex}": {exc}') from None
    else:
        match = _tpl(pattern)
    acc.append(acc.proxy, key, m.CookieRewrite(regex=regex, caseless=caseless, match=match,
                                               replacement=_tpl(replacement), source=src))


_COOKIE_FLAGS = {"secure", "nosecure", "httponly", "nohttponly", "samesite=strict",
                 "samesite=lax", "samesite=none", "nosamesite"}


@_handles("proxy_cookie_flags")
def _proxy_cookie_flags(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if st.args == ("off",) or list(st.args) == ["off"]:
        acc.proxy.setdefault("cookie_flags", [])
        return
    cookie, flags = st.args[0], tuple(a.lower() for a in st.args[1:])
    for f in flags:
        if f not in _COOKIE_FLAGS:
            raise BadValue(f'invalid parameter "{f}"')
    regex = cookie.startswith("~")
    if regex:
        try:
            compile_pcre(cookie[1:], True)
        except RegexError as exc:
            raise BadValue(f'invalid regex "{cookie[1:]}": {exc}') from None
    acc.append(acc.proxy, "cookie_flags", m.CookieFlags(
        cookie=cookie[1:] if regex else cookie, regex=regex, flags=flags, source=src))


@_handles("proxy_http_version")
def _proxy_http_version(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if st.args[0] not in ("1.0", "1.1"):
        raise BadValue(f'invalid value "{st.args[0]}" in "proxy_http_version" directive, it must '
                       'be "1.0" or "1.1"')
    _set_once(acc.proxy, "http_version", st.args[0], st)


@_handles("proxy_redirect")
def _proxy_redirect(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if len(st.args) == 1:
        mode = st.args[0]
        if mode not in ("default", "off"):
            raise BadValue(f'invalid parameter "{mode}"')
        acc.append(acc.proxy, "redirects", m.ProxyRedirect(mode=mode, source=src))
        return
    acc.append(acc.proxy, "redirects", m.ProxyRedirect(
        mode="replace", pattern=st.args[0], replacement=_tpl(st.args[1]), source=src))


_PROXY_TIMES = {"proxy_connect_timeout": "connect_timeout", "proxy_read_timeout": "read_timeout",
                "proxy_send_timeout": "send_timeout",
                "proxy_next_upstream_timeout": "next_upstream_timeout"}


@_handles(*_PROXY_TIMES)
def _proxy_time(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.proxy, _PROXY_TIMES[st.name], parse_time(st.args[0]), st)


_NEXT_UPSTREAM = {"error", "timeout", "invalid_header", "http_500", "http_502", "http_503",
                  "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off",
                  "updating"}


@_handles("proxy_next_upstream")
def _proxy_next_upstream(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    for a in st.args:
        if a not in _NEXT_UPSTREAM:
            raise BadValue(f'invalid value "{a}"')
    _set_once(acc.proxy, "next_upstream", tuple(st.args), st)


@_handles("proxy_next_upstream_tries")
def _proxy_tries(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.proxy, "next_upstream_tries", _int(st.args[0]), st)


_PROXY_FLAGS = {"proxy_intercept_errors": "intercept_errors", "proxy_buffering": "buffering",
                "proxy_request_buffering": "request_buffering",
                "proxy_pass_request_headers": "pass_request_headers",
                "proxy_pass_request_body": "pass_request_body",
                "proxy_ignore_client_abort": "ignore_client_abort"}


@_handles(*_PROXY_FLAGS)
def _proxy_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.proxy, _PROXY_FLAGS[st.name], parse_flag(st.name, st.args[0]), st)


@_handles("proxy_method", "proxy_set_body")
def _proxy_tpl(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.proxy, "method" if st.name == "proxy_method" else "set_body", _tpl(st.args[0]),
              st)


# -- fastcgi -----------------------------------------------------------------------------------

def parse_fastcgi_pass(address: str, src: m.SourceSpan) -> m.FastcgiPass:
    """Split a ``fastcgi_pass`` address (``host:port``, ``unix:/path``, an upstream name)."""
    tpl = _tpl(address)
    if not tpl.is_static:
        return m.FastcgiPass(address=tpl, host=address, has_variables=True, source=src)
    if address.startswith("unix:"):
        return m.FastcgiPass(address=tpl, host=address, unix_socket=address[5:], source=src)
    if "://" in address:
        raise BadValue(f'invalid host in upstream "{address}"')
    host, port = address, None
    if address.startswith("["):
        end = address.find("]")
        host = address[: end + 1]
        if address[end + 1 : end + 2] == ":":
            port = _port(address[end + 2 :], address)
    elif ":" in address:
        host, _, p = address.rpartition(":")
        port = _port(p, address)
    if not host:
        raise BadValue(f'no host in upstream "{address}"')
    return m.FastcgiPass(address=tpl, host=host, port=port, source=src)


@_handles("fastcgi_pass")
def _fastcgi_pass(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if "fastcgi_pass" in acc.top:
        raise BadValue('"fastcgi_pass" directive is duplicate')
    acc.top["fastcgi_pass"] = parse_fastcgi_pass(st.args[0], src)


@_handles("fastcgi_param")
def _fastcgi_param(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if len(st.args) == 3 and st.args[2] != "if_not_empty":
        raise BadValue(f'invalid parameter "{st.args[2]}"')
    acc.append(acc.fastcgi, "params", m.FastcgiParam(
        name=st.args[0], value=_tpl(st.args[1]), if_not_empty=len(st.args) == 3, source=src))


@_handles("fastcgi_index")
def _fastcgi_index(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.fastcgi, "index", _tpl(st.args[0]), st)


@_handles("fastcgi_split_path_info")
def _fastcgi_split(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    from proxy.regex import RegexError, compile_pcre

    try:
        groups = compile_pcre(st.args[0]).groups
    except RegexError:
        groups = 2  # reported by check_regex
    if groups != 2:
        raise BadValue(f'pattern "{st.args[0]}" must have 2 captures')
    az.check_regex(st.args[0], st)
    _set_once(acc.fastcgi, "split_path_info", st.args[0], st)


@_handles("fastcgi_hide_header", "fastcgi_pass_header")
def _fastcgi_header_list(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    key = "hide_headers" if st.name == "fastcgi_hide_header" else "pass_headers"
    acc.append(acc.fastcgi, key, st.args[0])


_FASTCGI_TIMES = {"fastcgi_connect_timeout": "connect_timeout",
                  "fastcgi_read_timeout": "read_timeout", "fastcgi_send_timeout": "send_timeout",
                  "fastcgi_next_upstream_timeout": "next_upstream_timeout"}


@_handles(*_FASTCGI_TIMES)
def _fastcgi_time(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.fastcgi, _FASTCGI_TIMES[st.name], parse_time(st.args[0]), st)


@_handles("fastcgi_next_upstream")
def _fastcgi_next_upstream(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    for a in st.args:
        if a not in _NEXT_UPSTREAM:
            raise BadValue(f'invalid value "{a}"')
    _set_once(acc.fastcgi, "next_upstream", tuple(st.args), st)


@_handles("fastcgi_next_upstream_tries")
def _fastcgi_tries(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.fastcgi, "next_upstream_tries", _int(st.args[0]), st)


_FASTCGI_FLAGS = {"fastcgi_intercept_errors": "intercept_errors",
                  "fastcgi_pass_request_headers": "pass_request_headers",
                  "fastcgi_pass_request_body": "pass_request_body",
                  "fastcgi_keep_conn": "keep_conn"}


@_handles(*_FASTCGI_FLAGS)
def _fastcgi_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.fastcgi, _FASTCGI_FLAGS[st.name], parse_flag(st.name, st.args[0]), st)


# -- headers, expires, error_page ---------------------------------------------------------------

@_handles("add_header")
def _add_header(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    always = False
    if len(st.args) == 3:
        if st.args[2] != "always":
            raise BadValue(f'invalid parameter "{st.args[2]}"')
        always = True
    acc.append(acc.top, "add_headers",
               m.HeaderValue(name=st.args[0], value=_tpl(st.args[1]), always=always, source=src))


@_handles("expires")
def _expires(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    args = list(st.args)
    modified = False
    if args[0] == "modified":
        modified = True
        args.pop(0)
        if not args:
            raise BadValue('invalid number of arguments in "expires" directive')
    value = args[0]
    if value not in ("epoch", "max", "off"):
        body = value[1:] if value[:1] in "@-+" else value
        if "$" not in body:
            parse_time(body)
    _set_once(acc.top, "expires", m.Expires(value=value, modified=modified, source=src), st)


@_handles("error_page")
def _error_page(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    args = list(st.args)
    target = args.pop()
    codes: list[int] = []
    response: int | None = None
    from_target = False
    for a in args:
        if a.startswith("="):
            if a == "=":
                from_target = True
            else:
                response = _int(a[1:])
            continue
        code = _int(a)
        if not 300 <= code <= 599:
            raise BadValue(f'value "{a}" must be between 300 and 599')
        codes.append(code)
    if not codes:
        raise BadValue('invalid number of arguments in "error_page" directive')
    acc.append(acc.top, "error_pages", m.ErrorPage(
        codes=tuple(codes), response=response, response_from_target=from_target,
        target=_tpl(target), source=src))


# -- static ------------------------------------------------------------------------------------

@_handles("root", "alias")
def _root(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if "root" in acc.static:
        prev = acc.static["root"]
        first = "alias" if prev.alias else "root"
        if first == st.name:
            raise BadValue(f'"{st.name}" directive is duplicate')
        raise BadValue(f'"{st.name}" directive is duplicate, "{first}" directive was specified '
                       "earlier")
    if st.name == "alias" and acc.ctx not in (Ctx.LOCATION,):
        raise BadValue('"alias" directive is not allowed here')
    acc.static["root"] = m.DocumentRoot(path=_tpl(st.args[0]), alias=st.name == "alias",
                                         source=src)


@_handles("index")
def _index(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    for a in st.args:
        if not a:
            raise BadValue("index \"\" in \"index\" directive is invalid")
        acc.append(acc.static, "index", _tpl(a))


@_handles("try_files")
def _try_files(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, "try_files", m.TryFiles(
        files=tuple(_tpl(a) for a in st.args[:-1]), fallback=_tpl(st.args[-1]), source=src), st)


@_handles("autoindex", "log_not_found", "etag")
def _static_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, st.name, parse_flag(st.name, st.args[0]), st)


@_handles("default_type")
def _default_type(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, "default_type", st.args[0], st)


@_handles("charset", "source_charset")
def _charset(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    value = st.args[0]
    if value == "off" and st.name == "source_charset":
        raise BadValue('invalid value "off"')
    if value != "off" and not value.startswith("$"):
        az.charset_names.append(value.lower())
    _set_once(acc.static, st.name, value, st)


@_handles("override_charset")
def _override_charset(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, st.name, parse_flag(st.name, st.args[0]), st)


@_handles("charset_types")
def _charset_types(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, st.name, tuple(a.lower() for a in st.args), st)


@_handles("sub_filter")
def _sub_filter(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if not st.args[0]:
        raise BadValue("empty search pattern")
    match = _tpl(st.args[0])
    if match.is_static:
        match = _tpl(st.args[0].lower())
    acc.append(acc.static, "sub_filters",
               m.SubFilter(match=match, replacement=_tpl(st.args[1]), source=src))


@_handles("sub_filter_once", "sub_filter_last_modified")
def _sub_filter_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, st.name, parse_flag(st.name, st.args[0]), st)


@_handles("sub_filter_types")
def _sub_filter_types(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.static, st.name, tuple(a.lower() for a in st.args), st)


@_handles("internal")
def _internal(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.static["internal"] = True


@_handles("types")
def _types(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    rows: list[tuple[str, tuple[str, ...]]] = list(acc.static.get("types") or [])
    for row in st.block or []:
        rows.append((row.name, tuple(row.args)))
    acc.static["types"] = rows


# -- access ------------------------------------------------------------------------------------

@_handles("allow", "deny")
def _allow(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    addr = st.args[0]
    if addr != "all" and not addr.startswith("unix:"):
        import ipaddress

        try:
            ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise BadValue(f'invalid parameter "{addr}"') from None
    acc.append(acc.access, "rules",
               m.AccessRule(action=m.AccessAction(st.name), address=addr, source=src))


@_handles("satisfy")
def _satisfy(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if st.args[0] not in ("all", "any"):
        raise BadValue(f'invalid value "{st.args[0]}" in "satisfy" directive')
    _set_once(acc.access, "satisfy", st.args[0], st)


@_handles("auth_basic", "auth_basic_user_file")
def _auth_basic(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.access, st.name, _tpl(st.args[0]), st)


@_handles("limit_req")
def _limit_req(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    zone = ""
    burst = delay = 0
    nodelay = False
    for a in st.args:
        if a.startswith("zone="):
            zone = a[5:]
        elif a.startswith("burst="):
            burst = _int(a[6:])
        elif a.startswith("delay="):
            delay = _int(a[6:])
        elif a == "nodelay":
            nodelay = True
        else:
            raise BadValue(f'invalid parameter "{a}"')
    if not zone:
        raise BadValue('"limit_req" must have "zone" parameter')
    az.zone_refs.append(("limit_req", zone, src))
    acc.append(acc.access, "limit_req", m.LimitReqRef(zone=zone, burst=burst, nodelay=nodelay,
                                                      delay=delay, source=src))


@_handles("limit_conn")
def _limit_conn(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    az.zone_refs.append(("limit_conn", st.args[0], src))
    acc.append(acc.access, "limit_conn",
               m.LimitConnRef(zone=st.args[0], number=_int(st.args[1]), source=src))


@_handles("auth_request")
def _auth_request(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.access, "auth_request", st.args[0], st)


@_handles("auth_request_set")
def _auth_request_set(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    name = st.args[0]
    if not name.startswith("$"):
        raise BadValue(f'invalid variable name "{name}"')
    acc.append(acc.access, "auth_request_set",
               m.AuthRequestSet(name=name[1:], value=_tpl(st.args[1]), source=src))


@_handles("secure_link", "secure_link_md5", "secure_link_secret")
def _secure_link(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    # ngx_http_secure_link_merge_conf refuses a level with both kinds (the http level is
    # never merged itself, so it may hold both)
    other = ("secure_link", "secure_link_md5") if st.name == "secure_link_secret" \
        else ("secure_link_secret",)
    if acc.ctx is not Ctx.HTTP and st.name not in acc.access and \
            any(k in acc.access for k in other):
        raise BadValue('"secure_link_secret" cannot be mixed with "secure_link" and '
                       '"secure_link_md5"')
    value = st.args[0] if st.name == "secure_link_secret" else _tpl(st.args[0])
    _set_once(acc.access, st.name, value, st)


@_handles("limit_req_status", "limit_conn_status")
def _limit_status(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    code = _int(st.args[0])
    if not 400 <= code <= 599:
        raise BadValue('value must be between 400 and 599')
    _set_once(acc.access, st.name, code, st)


@_handles("limit_req_dry_run", "limit_conn_dry_run")
def _limit_dry_run(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.access, st.name, parse_flag(st.name, st.args[0]), st)


# -- limits and timeouts -------------------------------------------------------------------------

_RATE_DIRECTIVES = frozenset({"limit_rate", "limit_rate_after", "proxy_limit_rate"})
"""Kept as written; their values are checked as proxy/ratelimit.py reads them."""

_TIME_LIMITS = {"client_body_timeout", "client_header_timeout", "send_timeout"}
_SIZE_LIMITS = {"client_max_body_size", "client_header_buffer_size"}
_FLAG_LIMITS = {"merge_slashes", "underscores_in_headers", "ignore_invalid_headers",
                "absolute_redirect", "port_in_redirect", "server_name_in_redirect",
                "chunked_transfer_encoding", "recursive_error_pages"}


@_handles(*_TIME_LIMITS)
def _limit_time(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.limits, st.name, parse_time(st.args[0]), st)


@_handles(*_SIZE_LIMITS)
def _limit_size(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.limits, st.name, parse_size(st.args[0]), st)


@_handles(*_FLAG_LIMITS)
def _limit_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.limits, st.name, parse_flag(st.name, st.args[0]), st)


@_handles("large_client_header_buffers")
def _large_buffers(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.limits, st.name, (_int(st.args[0]), parse_size(st.args[1])), st)


@_handles("keepalive_timeout")
def _keepalive_timeout(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if acc.ctx is Ctx.UPSTREAM:
        raise AssertionError("handled by the upstream builder")
    _set_once(acc.limits, "keepalive_timeout", parse_time(st.args[0]), st)
    if len(st.args) > 1:
        acc.limits["keepalive_header"] = parse_time(st.args[1])


@_handles("keepalive_requests")
def _keepalive_requests(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.limits, "keepalive_requests", _int(st.args[0]), st)


@_handles("server_tokens")
def _server_tokens(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.limits, "server_tokens", st.args[0], st)


# -- logging, realip, tls, misc ----------------------------------------------------------------

@_handles("access_log")
def _access_log(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    if st.args[0] == "off":
        acc.append(acc.logging, "access_logs", m.AccessLog(path=None, source=src))
        return
    fmt = "combined"
    cond: m.Template | None = None
    opts: list[str] = []
    for i, a in enumerate(st.args[1:]):
        if i == 0 and "=" not in a and a != "gzip":
            fmt = a
        elif a.startswith("if="):
            cond = _tpl(a[3:])
        else:
            opts.append(a)
    az.format_refs.append((fmt, src))
    acc.append(acc.logging, "access_logs", m.AccessLog(
        path=_tpl(st.args[0]), format=fmt, condition=cond, options=tuple(opts), source=src))


@_handles("error_log")
def _error_log(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.logging["error_log"] = tuple(st.args)


@_handles("set_real_ip_from")
def _real_ip_from(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.append(acc.realip, "set_real_ip_from", st.args[0])


@_handles("real_ip_header")
def _real_ip_header(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.realip, "header", st.args[0], st)


@_handles("real_ip_recursive")
def _real_ip_recursive(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.realip, "recursive", parse_flag(st.name, st.args[0]), st)


@_handles("ssl_certificate")
def _ssl_certificate(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.certs.append((_tpl(st.args[0]), src))


@_handles("ssl_certificate_key")
def _ssl_certificate_key(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    acc.keys.append(_tpl(st.args[0]))


@_handles("ssl_protocols")
def _ssl_protocols(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    known = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
    for a in st.args:
        if a not in known:
            raise BadValue(f'invalid value "{a}"')
    _set_once(acc.tls, "protocols", tuple(st.args), st)


@_handles("ssl_ciphers", "ssl_password_file")
def _ssl_str(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.tls, "ciphers" if st.name == "ssl_ciphers" else "password_file", st.args[0], st)


@_handles("ssl_prefer_server_ciphers", "ssl_session_tickets", "ssl_reject_handshake")
def _ssl_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.tls, st.name[4:], parse_flag(st.name, st.args[0]), st)


@_handles("ssl_session_cache")
def _ssl_session_cache(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.tls, "session_cache", tuple(st.args), st)


@_handles("ssl_session_timeout")
def _ssl_session_timeout(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.tls, "session_timeout", parse_time(st.args[0]), st)


@_handles("http2", "http3")
def _http_flag(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    _set_once(acc.top, st.name, parse_flag(st.name, st.args[0]), st)


@_handles("resolver")
def _resolver(az: Analyzer, st: Stmt, acc: _ScopeAcc, src: m.SourceSpan) -> None:
    servers = 0
    for a in st.args:
        if a.startswith("valid="):
            try:
                parse_time(a[6:])
            except ValueError:
                raise BadValue(f'invalid parameter "{a}"') from None
        elif a.startswith("ipv6="):
            if a[5:] not in ("on", "off"):
                raise BadValue(f'invalid parameter "{a}"')
        elif a.startswith("status_zone="):
            continue
        else:
            host, port = a, ""
            if a.startswith("["):
                host, _, rest = a[1:].partition("]")
                port = rest[1:] if rest.startswith(":") else rest
            elif a.count(":") == 1:
                host, _, port = a.partition(":")
            if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
                raise BadValue(f'invalid port in resolver "{a}"' if host else
                               f'invalid parameter "{a}"')
            servers += 1
    if not servers:
        raise BadValue("no name servers defined")
    _set_once(acc.top, "resolver", tuple(st.args), st)


# ---------------------------------------------------------------------------------------------
# The walk


_SCOPE_CTXS = {Ctx.HTTP, Ctx.SERVER, Ctx.LOCATION, Ctx.IF_SERVER, Ctx.IF_LOCATION,
               Ctx.LIMIT_EXCEPT}


class Analyzer:
    """Walks a loaded tree once, checking and building."""

    def __init__(self, tree: Tree, *, fragment: bool = False) -> None:
        self.tree = tree
        self.fragment = fragment
        self.diagnostics: list[Diagnostic] = list(tree.diagnostics)
        self.census: list[CensusEntry] = []
        self.zone_refs: list[tuple[str, str, m.SourceSpan]] = []
        self.charset_names: list[str] = []
        self.charset_maps: list[tuple[str, str]] = []
        self.format_refs: list[tuple[str, m.SourceSpan]] = []
        self.upstream_refs: list[tuple[str, m.SourceSpan]] = []
        for inc in tree.includes:
            self.census.append(CensusEntry("include", inc.file, inc.line, m.Support.SUPPORTED,
                                           "any"))

    # -- diagnostics ------------------------------------------------------------------------

    def diag(self, st: Stmt, level: Level, code: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(file=st.file, line=st.line, level=level, code=code,
                                           message=message, directive=st.name))

    def error(self, st: Stmt, code: str, message: str) -> None:
        self.diag(st, Level.ERROR, code, message)

    def check_regex(self, pattern: str, st: Stmt) -> None:
        """Report a regex Python cannot compile (PCRE syntax Tern cannot run)."""
        from proxy.regex import RegexError, compile_pcre

        try:
            compile_pcre(pattern)
        except RegexError as exc:
            self.diag(st, Level.UNSUPPORTED, "regex",
                      f'regular expression "{pattern}" cannot be run by Tern: {exc}')

    # -- generic checks -----------------------------------------------------------------------

    def accept(self, st: Stmt, ctx: Ctx) -> DirectiveSpec | None:
        """Look up, check context and arity, count. None when the occurrence must be skipped."""
        spec = lookup(st.name)
        if spec is None:
            self.error(st, "unknown-directive", f'unknown directive "{st.name}"')
            return None
        if ctx not in spec.contexts and not (st.name == "include"):
            self.error(st, "context", f'"{st.name}" directive is not allowed here')
            return None
        wants_block = spec.block and not (
            st.name == "server" and ctx in (Ctx.UPSTREAM, Ctx.STREAM_UPSTREAM))
        if wants_block != (st.block is not None):
            if wants_block:
                self.error(st, "syntax", f'directive "{st.name}" has no opening "{{"')
            else:
                self.error(st, "syntax", f'directive "{st.name}" is not terminated by ";"')
            return None
        n = len(st.args)
        bad = n < spec.min_args or (spec.max_args != ANY_ARGS and n > spec.max_args)
        if spec.flag and not bad and st.args[0].lower() not in ("on", "off"):
            self.error(st, "bad-value", f'invalid value "{st.args[0]}" in "{st.name}" directive, '
                       'it must be "on" or "off"')
            return None
        if not bad and st.name in _ENUM_VALUES and \
                st.args[0].lower() not in _ENUM_VALUES[st.name]:
            self.error(st, "bad-value", f'invalid value "{st.args[0]}"')
            return None
        if bad:
            hint = ""
            lines = sorted(set(st.arg_lines))
            if len(lines) > 1:
                hint = f' (missing ";" at the end of line {lines[0]}?)'
            self.error(st, "arity",
                       f'invalid number of arguments in "{st.name}" directive{hint}')
            return None
        if st.line == 0:  # a block Tern synthesised around a fragment: not in any file
            return spec
        self.census.append(CensusEntry(st.name, st.file, st.line, spec.support, ctx.value))
        if spec.support is m.Support.UNSUPPORTED:
            self.diag(st, Level.UNSUPPORTED, "unsupported", f'"{st.name}": {spec.reason}')
        elif spec.support is m.Support.PARTIAL:
            self.diag(st, Level.PARTIAL, "partial", f'"{st.name}": {spec.reason}')
        return spec

    def raw(self, st: Stmt, spec: DirectiveSpec | None, *, children: bool = True
            ) -> m.RawDirective:
        kids: tuple[m.RawDirective, ...] = ()
        if st.block and children:
            kids = tuple(self.raw(c, lookup(c.name), children=True) for c in st.block)
        return m.RawDirective(name=st.name, args=st.args,
                              support=spec.support if spec else m.Support.UNSUPPORTED,
                              children=kids, source=self.span(st))

    @staticmethod
    def span(st: Stmt) -> m.SourceSpan:
        return m.SourceSpan(file=st.file, line=st.line)

    # -- scopes ---------------------------------------------------------------------------------

    def scope_stmt(self, st: Stmt, spec: DirectiveSpec, acc: _ScopeAcc) -> None:
        """Apply one directive of a scope level (http/server/location/if)."""
        src = self.span(st)
        if st.name == "if":
            self.build_if(st, acc)
            return
        handler = _HANDLERS.get(st.name)
        if handler is None or spec.support is m.Support.UNSUPPORTED:
            if st.name in RAW_BLOCKS and st.block is not None:
                self.census_raw_block(st)
            acc.other.append(self.raw(st, spec))
            if st.name in ("add_before_body", "add_after_body") and any(
                    o.name == st.name for o in acc.other[:-1]):
                self.error(st, "duplicate", f'"{st.name}" directive is duplicate')
            if st.name in _RATE_DIRECTIVES and any(o.name == st.name for o in acc.other[:-1]):
                self.error(st, "duplicate", f'"{st.name}" directive is duplicate')
            if st.name == "geo" or st.name.startswith("gzip_") or st.name in _RATE_DIRECTIVES:
                self.check_run_values(acc.other[-1])
                if st.name == "gzip_disable":
                    for pattern in st.args:
                        if pattern not in ("msie6", "degradation"):
                            self.check_regex(pattern, st)
            if spec.support is not m.Support.UNSUPPORTED and st.block is not None and \
                    st.name not in RAW_BLOCKS:
                self.walk_unknown_block(st)
            return
        try:
            handler(self, st, acc, src)
        except BadValue as exc:
            self.error(st, "bad-value", f'{exc} in "{st.name}" directive'
                       if " directive" not in str(exc) else str(exc))

    def check_run_values(self, raw: m.RawDirective) -> None:
        """Values nginx refuses in the raw directives proxy/geo.py and proxy/gzipfilter.py run."""
        from proxy import geo, gzipfilter, ratelimit

        if raw.name == "geo":
            try:
                geo.compile_geo(raw)
            except geo.GeoError as exc:
                self.diagnostics.append(Diagnostic(file=exc.file, line=exc.line,
                                                   level=Level.ERROR, code="bad-value",
                                                   message=str(exc), directive="geo"))
            return
        problem = ratelimit.problem(raw.name, raw.args) if raw.name in _RATE_DIRECTIVES else \
            gzipfilter.problem(raw.name, raw.args)
        if problem is not None:
            self.diagnostics.append(Diagnostic(file=raw.source.file, line=raw.source.line,
                                               level=Level.ERROR, code="bad-value",
                                               message=problem, directive=raw.name))

    def census_raw_block(self, st: Stmt) -> None:
        """Raw blocks (types, map rows) have no directives inside: nothing to count."""

    def walk_unknown_block(self, st: Stmt) -> None:
        """Blocks kept raw (e.g. supported-by-name containers): nothing more to check."""

    def build_if(self, st: Stmt, parent: _ScopeAcc) -> None:
        ctx = Ctx.IF_SERVER if parent.ctx is Ctx.SERVER else Ctx.IF_LOCATION
        try:
            cond = parse_condition(st.args, st.quoted, self.span(st))
        except GrammarError as exc:
            self.error(st, "bad-value", f'{exc} in "if" directive')
            return
        if cond.pattern is not None:
            self.check_regex(cond.pattern, st)
        acc = _ScopeAcc(ctx)
        for child in st.block or []:
            spec = self.accept(child, ctx)
            if spec is None:
                continue
            if child.name == "location":
                self.error(child, "context", '"location" directive is not allowed here')
                continue
            self.scope_stmt(child, spec, acc)
        frozen = acc.freeze()
        self.check_proxy_uri(frozen, st)
        parent.rewrites.append(m.If(condition=cond, scope=frozen, source=self.span(st)))

    def check_proxy_uri(self, scope: m.Scope, where: Stmt) -> None:
        """nginx refuses a URI part in proxy_pass where no prefix can be replaced."""
        pp = scope.proxy_pass
        if pp is not None and pp.uri is not None and not pp.has_variables:
            self.diagnostics.append(Diagnostic(
                file=pp.source.file, line=pp.source.line, level=Level.ERROR, code="bad-value",
                directive="proxy_pass",
                message='"proxy_pass" cannot have URI part in location given by regular '
                        'expression, or inside named location, or inside "if" statement, or '
                        'inside "limit_except" block'))

    # -- main ---------------------------------------------------------------------------------

    def run(self) -> Analysis:
        main: dict[str, Any] = {}
        other: list[m.RawDirective] = []
        http: m.Http | None = None
        for st in self.tree.stmts:
            spec = self.accept(st, Ctx.MAIN)
            if spec is None:
                continue
            if st.name == "http":
                if http is not None:
                    self.error(st, "duplicate", '"http" directive is duplicate')
                    continue
                http = self.build_http(st)
            elif st.name == "events":
                for ev in st.block or []:
                    evspec = self.accept(ev, Ctx.EVENTS)
                    if evspec is None:
                        continue
                    if ev.name == "worker_connections" and ev.args[0].isdigit():
                        main["worker_connections"] = int(ev.args[0])
                    else:
                        other.append(self.raw(ev, evspec))
            elif st.name == "worker_processes":
                main["worker_processes"] = st.args[0]
            elif st.name == "pid":
                main["pid"] = st.args[0]
            elif st.name == "error_log":
                main["error_log"] = tuple(st.args)
            elif st.name in ("stream", "mail"):
                self.walk_foreign(st, Ctx.STREAM if st.name == "stream" else Ctx.MAIL)
                other.append(self.raw(st, spec))
            else:
                other.append(self.raw(st, spec))
        self.check_references(http)
        config = m.Config(main_file=self.tree.main_file, prefix=self.tree.prefix,
                          files=tuple(self.tree.files),
                          main=m.MainConf(other=tuple(other), **main), http=http)
        return Analysis(config=config, diagnostics=self.diagnostics, census=self.census)

    def walk_foreign(self, st: Stmt, ctx: Ctx) -> None:
        """stream {} / mail {}: check and count, no model."""
        for child in st.block or []:
            spec = self.accept(child, ctx)
            if spec is None or child.block is None or child.name in RAW_BLOCKS:
                continue
            if child.name == "server":
                inner = Ctx.STREAM_SERVER if ctx is Ctx.STREAM else Ctx.MAIL_SERVER
            elif child.name == "upstream":
                inner = Ctx.STREAM_UPSTREAM
            else:
                continue
            self.walk_foreign(child, inner)

    # -- http ---------------------------------------------------------------------------------

    def build_http(self, st: Stmt) -> m.Http:
        acc = _ScopeAcc(Ctx.HTTP)
        servers: list[m.Server] = []
        upstreams: list[m.Upstream] = []
        maps: list[m.Map] = []
        formats: list[m.LogFormat] = []
        req_zones: list[m.LimitReqZone] = []
        conn_zones: list[m.LimitConnZone] = []
        for child in st.block or []:
            spec = self.accept(child, Ctx.HTTP)
            if spec is None:
                continue
            try:
                if child.name == "server":
                    servers.append(self.build_server(child))
                elif child.name == "upstream":
                    up = self.build_upstream(child)
                    if up is not None:
                        upstreams.append(up)
                elif child.name == "map":
                    mp = self.build_map(child)
                    if mp is not None:
                        maps.append(mp)
                elif child.name == "log_format":
                    formats.append(self.build_log_format(child))
                elif child.name == "limit_req_zone":
                    req_zones.append(self.build_limit_req_zone(child))
                elif child.name == "limit_conn_zone":
                    conn_zones.append(self.build_limit_conn_zone(child))
                elif child.name == "charset_map":
                    pair = (child.args[0].lower(), child.args[1].lower())
                    self.charset_names.extend(pair)
                    self.charset_maps.append(pair)
                    self.scope_stmt(child, spec, acc)
                else:
                    self.scope_stmt(child, spec, acc)
            except BadValue as exc:
                self.error(child, "bad-value", f'{exc} in "{child.name}" directive')
        return m.Http(scope=acc.freeze(), servers=tuple(servers), upstreams=tuple(upstreams),
                      maps=tuple(maps), log_formats=tuple(formats),
                      limit_req_zones=tuple(req_zones), limit_conn_zones=tuple(conn_zones),
                      charsets=tuple(dict.fromkeys(self.charset_names)),
                      charset_maps=tuple(dict.fromkeys(self.charset_maps)),
                      source=self.span(st))

    def build_server(self, st: Stmt) -> m.Server:
        acc = _ScopeAcc(Ctx.SERVER)
        listens: list[m.Listen] = []
        names: list[m.ServerName] = []
        locations: list[m.Location] = []
        for child in st.block or []:
            spec = self.accept(child, Ctx.SERVER)
            if spec is None:
                continue
            try:
                if child.name == "listen":
                    listens.append(parse_listen(child.args, self.span(child)))
                elif child.name == "server_name":
                    for a in child.args:
                        names.append(self.server_name(a, child))
                elif child.name == "location":
                    loc = self.build_location(child, parent=None)
                    if loc is not None:
                        locations.append(loc)
                else:
                    self.scope_stmt(child, spec, acc)
            except BadValue as exc:
                self.error(child, "bad-value", f'{exc} in "{child.name}" directive')
            except m.ModelError as exc:
                self.error(child, "bad-value", exc.message)
        self.check_location_duplicates(locations)
        return m.Server(listens=tuple(listens), names=tuple(names), scope=acc.freeze(),
                        locations=tuple(locations), source=self.span(st))

    def server_name(self, text: str, st: Stmt) -> m.ServerName:
        if text.startswith("~"):
            self.check_regex(text[1:], st)
            return m.ServerName(kind=m.ServerNameKind.REGEX, value=text)
        low = text.lower()
        if low.startswith("*.") or (low.startswith(".") and len(low) > 1):
            if "*" in low[2:] if low.startswith("*.") else "*" in low:
                raise BadValue(f'invalid server name or wildcard "{text}"')
            return m.ServerName(kind=m.ServerNameKind.WILDCARD_START, value=low)
        if low.endswith(".*"):
            if "*" in low[:-2]:
                raise BadValue(f'invalid server name or wildcard "{text}"')
            return m.ServerName(kind=m.ServerNameKind.WILDCARD_END, value=low)
        if "*" in low:
            raise BadValue(f'invalid server name or wildcard "{text}"')
        return m.ServerName(kind=m.ServerNameKind.EXACT, value=low)

    def check_location_duplicates(self, locs: list[m.Location]) -> None:
        seen: dict[tuple[str, str], m.Location] = {}
        for loc in locs:
            mod = loc.modifier
            # nginx treats "= /x" and "/x" as distinct; "^~ /x" and "/x" collide.
            kind = "exact" if mod is m.LocationModifier.EXACT else (
                "prefix" if mod in (m.LocationModifier.PREFIX, m.LocationModifier.PREFIX_NO_REGEX)
                else mod.value)
            if kind in ("~", "~*"):
                continue
            key = (kind, loc.pattern)
            if key in seen:
                self.diagnostics.append(Diagnostic(
                    file=loc.source.file, line=loc.source.line, level=Level.ERROR,
                    code="duplicate", directive="location",
                    message=f'duplicate location "{loc.pattern}"'))
            else:
                seen[key] = loc

    def build_location(self, st: Stmt, parent: m.Location | None) -> m.Location | None:
        args = st.args
        if len(args) == 2:
            mod_text, pattern = args
            try:
                modifier = m.LocationModifier(mod_text)
            except ValueError:
                self.error(st, "bad-value", f'invalid location modifier "{mod_text}"')
                return None
            if modifier in (m.LocationModifier.NAMED, m.LocationModifier.PREFIX):
                self.error(st, "bad-value", f'invalid location modifier "{mod_text}"')
                return None
        else:
            text = args[0]
            if text.startswith("@"):
                modifier, pattern = m.LocationModifier.NAMED, text[1:]
            elif text.startswith("="):
                modifier, pattern = m.LocationModifier.EXACT, text[1:]
            elif text.startswith("^~"):
                modifier, pattern = m.LocationModifier.PREFIX_NO_REGEX, text[2:]
            elif text.startswith("~*"):
                modifier, pattern = m.LocationModifier.REGEX_CI, text[2:]
            elif text.startswith("~"):
                modifier, pattern = m.LocationModifier.REGEX, text[1:]
            else:
                modifier, pattern = m.LocationModifier.PREFIX, text
        if modifier in (m.LocationModifier.REGEX, m.LocationModifier.REGEX_CI):
            self.check_regex(pattern, st)
        if parent is not None:
            if parent.modifier is m.LocationModifier.EXACT:
                self.error(st, "context",
                           f'location "{pattern}" cannot be inside the exact location '
                           f'"{parent.pattern}"')
                return None
            if parent.modifier is m.LocationModifier.NAMED:
                self.error(st, "context", f'location "{pattern}" cannot be inside the named '
                           f'location "@{parent.pattern}"')
                return None
            if modifier is m.LocationModifier.NAMED:
                self.error(st, "context", f'named location "@{pattern}" can be on the server '
                           "level only")
                return None
            if parent.modifier in (m.LocationModifier.PREFIX, m.LocationModifier.PREFIX_NO_REGEX) \
                    and modifier not in (m.LocationModifier.REGEX, m.LocationModifier.REGEX_CI) \
                    and not pattern.startswith(parent.pattern):
                self.error(st, "context", f'location "{pattern}" is outside location '
                           f'"{parent.pattern}"')
                return None
        acc = _ScopeAcc(Ctx.LOCATION)
        shell = m.Location(modifier=modifier, pattern=pattern, source=self.span(st))
        nested: list[m.Location] = []
        limit_except: tuple[str, ...] | None = None
        le_scope: m.Scope | None = None
        for child in st.block or []:
            spec = self.accept(child, Ctx.LOCATION)
            if spec is None:
                continue
            if child.name == "location":
                loc = self.build_location(child, parent=shell)
                if loc is not None:
                    nested.append(loc)
                continue
            if child.name == "limit_except":
                limit_except = tuple(a.upper() for a in child.args)
                le_acc = _ScopeAcc(Ctx.LIMIT_EXCEPT)
                for inner in child.block or []:
                    ispec = self.accept(inner, Ctx.LIMIT_EXCEPT)
                    if ispec is not None:
                        self.scope_stmt(inner, ispec, le_acc)
                le_scope = le_acc.freeze()
                continue
            self.scope_stmt(child, spec, acc)
        self.check_location_duplicates(nested)
        frozen = acc.freeze()
        no_uri = modifier in (m.LocationModifier.REGEX, m.LocationModifier.REGEX_CI,
                              m.LocationModifier.NAMED)
        for sc in [frozen] * no_uri + ([le_scope] if le_scope is not None else []):
            self.check_proxy_uri(sc, st)
        try:
            return m.Location(modifier=modifier, pattern=pattern, scope=frozen,
                              locations=tuple(nested), limit_except=limit_except,
                              limit_except_scope=le_scope, source=self.span(st))
        except m.ModelError as exc:
            self.error(st, "bad-value", exc.message)
            return None

    # -- upstream, map, log_format, zones ---------------------------------------------------------

    def build_upstream(self, st: Stmt) -> m.Upstream | None:
        if len(st.args) != 1:
            self.error(st, "arity", 'invalid number of arguments in "upstream" directive')
            return None
        fields: dict[str, Any] = {}
        servers: list[m.UpstreamServer] = []
        other: list[m.RawDirective] = []
        for child in st.block or []:
            spec = self.accept(child, Ctx.UPSTREAM)
            if spec is None:
                continue
            try:
                n = child.name
                if n == "server":
                    servers.append(parse_upstream_server(child.args, self.span(child)))
                elif n == "least_conn":
                    fields["balancer"] = m.Balancer.LEAST_CONN
                elif n == "ip_hash":
                    fields["balancer"] = m.Balancer.IP_HASH
                elif n == "random" and spec.support is not m.Support.UNSUPPORTED:
                    fields["balancer"] = m.Balancer.RANDOM
                elif n == "hash":
                    consistent = len(child.args) > 1
                    if consistent and child.args[1] != "consistent":
                        raise BadValue(f'invalid parameter "{child.args[1]}"')
                    fields["balancer"] = (m.Balancer.HASH_CONSISTENT if consistent
                                          else m.Balancer.HASH)
                    fields["hash_key"] = _tpl(child.args[0])
                elif n == "keepalive":
                    fields["keepalive"] = _int(child.args[0])
                elif n == "keepalive_requests":
                    fields["keepalive_requests"] = _int(child.args[0])
                elif n in ("keepalive_timeout", "keepalive_time"):
                    fields[n] = parse_time(child.args[0])
                elif n == "zone":
                    fields["zone"] = tuple(child.args)
                else:
                    other.append(self.raw(child, spec))
            except BadValue as exc:
                self.error(child, "bad-value", f'{exc} in "{child.name}" directive')
            except m.ModelError as exc:
                self.error(child, "bad-value", exc.message)
        if not servers:
            self.error(st, "empty-upstream", f'no servers are inside upstream "{st.args[0]}"')
        return m.Upstream(name=st.args[0], servers=tuple(servers), other=tuple(other),
                          source=self.span(st), **fields)

    def build_map(self, st: Stmt) -> m.Map | None:
        if len(st.args) != 2:
            self.error(st, "arity", 'invalid number of arguments in "map" directive')
            return None
        var = st.args[1]
        if not var.startswith("$") or len(var) < 2:
            self.error(st, "bad-value", f'invalid variable name "{var}"')
            return None
        try:
            source_value = _tpl(st.args[0])
        except BadValue as exc:
            self.error(st, "bad-value", f'{exc} in "map" directive')
            return None
        entries: list[m.MapEntry] = []
        default: m.Template | None = None
        hostnames = volatile = False
        for row in st.block or []:
            span = self.span(row)
            key, values = row.name, row.args
            if key == "hostnames" and not values:
                hostnames = True
                continue
            if key == "volatile" and not values:
                volatile = True
                continue
            if len(values) != 1:
                self.error(row, "arity", "invalid number of the map parameters")
                continue
            try:
                value = _tpl(values[0])
            except BadValue as exc:
                self.error(row, "bad-value", str(exc))
                continue
            if key == "default":
                default = value
                continue
            if key.startswith("\\"):
                key = key[1:]
                kind = m.MapKeyKind.EXACT
            elif key.startswith("~*"):
                kind, key = m.MapKeyKind.REGEX_CI, key[2:]
                self.check_regex(key, row)
            elif key.startswith("~"):
                kind, key = m.MapKeyKind.REGEX, key[1:]
                self.check_regex(key, row)
            elif hostnames and (key.startswith("*.") or key.startswith(".")):
                kind = m.MapKeyKind.WILDCARD_START
            elif hostnames and key.endswith(".*"):
                kind = m.MapKeyKind.WILDCARD_END
            else:
                kind = m.MapKeyKind.EXACT
            entries.append(m.MapEntry(kind=kind, key=key, value=value, source=span))
        return m.Map(source_value=source_value, variable=var[1:], entries=tuple(entries),
                     default=default, hostnames=hostnames, volatile=volatile,
                     source=self.span(st))

    def build_log_format(self, st: Stmt) -> m.LogFormat:
        args = list(st.args)
        name = args.pop(0)
        escape = "default"
        if args and args[0].startswith("escape="):
            escape = args.pop(0)[7:]
            if escape not in ("default", "json", "none"):
                raise BadValue(f'unknown log format escaping "{escape}"')
        if not args:
            raise BadValue('invalid number of arguments in "log_format" directive')
        return m.LogFormat(name=name, escape=escape, format=_tpl("".join(args)),
                           source=self.span(st))

    def build_limit_req_zone(self, st: Stmt) -> m.LimitReqZone:
        name = size = ""
        rate = 0.0
        for a in st.args[1:]:
            if a.startswith("zone="):
                name, _, size = a[5:].partition(":")
            elif a.startswith("rate="):
                mt = re.fullmatch(r"(\d+)r/([sm])", a[5:])
                if not mt:
                    raise BadValue(f'invalid rate "{a}"')
                rate = int(mt.group(1)) / (1 if mt.group(2) == "s" else 60)
            elif a != "sync":
                raise BadValue(f'invalid parameter "{a}"')
        if not name or not size:
            raise BadValue('"zone" parameter with a size is required')
        if rate <= 0:
            raise BadValue(f'invalid rate "{st.args}"')
        return m.LimitReqZone(key=_tpl(st.args[0]), name=name, size=size, rate_per_second=rate,
                              source=self.span(st))

    def build_limit_conn_zone(self, st: Stmt) -> m.LimitConnZone:
        name, _, size = st.args[1].removeprefix("zone=").partition(":")
        if not st.args[1].startswith("zone=") or not name or not size:
            raise BadValue(f'invalid parameter "{st.args[1]}"')
        return m.LimitConnZone(key=_tpl(st.args[0]), name=name, size=size, source=self.span(st))

    # -- cross references -----------------------------------------------------------------------

    def check_references(self, http: m.Http | None) -> None:
        """Zones and log formats used must be defined. In a fragment, or when an include is
        missing, a definition may live elsewhere: then it is a warning, not an error."""
        if http is None:
            return
        incomplete = self.fragment or any(d.code == "include-missing" for d in self.diagnostics)
        level = Level.WARNING if incomplete else Level.ERROR
        req = {z.name for z in http.limit_req_zones}
        conn = {z.name for z in http.limit_conn_zones}
        for kind, zone, src in self.zone_refs:
            if zone not in (req if kind == "limit_req" else conn):
                self.diagnostics.append(Diagnostic(
                    file=src.file, line=src.line, level=level, code="unknown-zone",
                    directive=kind, message=f'zero size shared memory zone "{zone}"'))
        formats = {f.name for f in http.log_formats} | {"combined"}
        for fmt, src in self.format_refs:
            if fmt not in formats:
                self.diagnostics.append(Diagnostic(
                    file=src.file, line=src.line, level=level, code="unknown-log-format",
                    directive="access_log", message=f'unknown log format "{fmt}"'))


# ---------------------------------------------------------------------------------------------
# listen / upstream server parsers (shared with tools that rewrite ports)

_LISTEN_FLAGS = {"default_server": "default_server", "default": "default_server", "ssl": "ssl",
                 "http2": "http2", "quic": "quic", "proxy_protocol": "proxy_protocol",
                 "reuseport": "reuseport"}


def parse_listen(args: tuple[str, ...], src: m.SourceSpan) -> m.Listen:
    """Parse ``listen`` arguments (address[:port] | port | unix:path, then parameters)."""
    addr = args[0]
    host = "*"
    port = 80
    if addr.startswith("unix:"):
        host, port = addr, 0
    elif addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise BadValue(f'invalid host in "{addr}"')
        host = addr[: end + 1]
        rest = addr[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise BadValue(f'invalid port in "{addr}"')
            port = int(rest[1:])
    elif addr.isdigit():
        port = int(addr)
    elif ":" in addr:
        h, _, p = addr.rpartition(":")
        if not p.isdigit():
            raise BadValue(f'invalid port in "{addr}"')
        host, port = h, int(p)
    else:
        host = addr
    if host != "*" and not host.startswith(("unix:", "[")):
        host = host.lower()
    if not host.startswith("unix:") and not 0 < port < 65536:
        raise BadValue(f'invalid port in "{addr}"')
    fields: dict[str, Any] = {}
    opts: list[str] = []
    for a in args[1:]:
        if a in _LISTEN_FLAGS:
            fields[_LISTEN_FLAGS[a]] = True
        elif a.split("=", 1)[0] in ("backlog", "rcvbuf", "sndbuf", "ipv6only", "so_keepalive",
                                   "accept_filter", "fastopen", "setfib") or a in (
                                       "bind", "deferred"):
            opts.append(a)
        else:
            raise BadValue(f'invalid parameter "{a}"')
    return m.Listen(address=host, port=port, options=tuple(opts), source=src, **fields)


def parse_upstream_server(args: tuple[str, ...], src: m.SourceSpan) -> m.UpstreamServer:
    """Parse ``server`` arguments inside ``upstream``."""
    fields: dict[str, Any] = {}
    opts: list[str] = []
    for a in args[1:]:
        key, eq, val = a.partition("=")
        if key == "weight" and eq:
            fields["weight"] = _int(val)
            if fields["weight"] < 1:
                raise BadValue(f'invalid parameter "{a}"')
        elif key == "max_fails" and eq:
            fields["max_fails"] = _int(val)
        elif key == "fail_timeout" and eq:
            fields["fail_timeout"] = parse_time(val)
        elif key == "max_conns" and eq:
            fields["max_conns"] = _int(val)
        elif a == "backup":
            fields["backup"] = True
        elif a == "down":
            fields["down"] = True
        elif key in ("resolve", "service", "slow_start", "route", "drain"):
            opts.append(a)
        else:
            raise BadValue(f'invalid parameter "{a}"')
    return m.UpstreamServer(address=args[0], options=tuple(opts), source=src, **fields)


def analyze(tree: Tree) -> Analysis:
    """Check a loaded tree and build its model.

    Returns:
        The model, every diagnostic (loader's first), and the census of accepted directives.
    """
    return Analyzer(tree).run()
