"""The typed intermediate model of an nginx HTTP configuration.

Rules of this module:

1. Standard library only. ``migrate`` builds these nodes, ``proxy`` runs them, ``shadow`` and the
   report read them; none of those may be imported here.
2. Every node is a frozen, slotted, keyword-only dataclass; collections are tuples.
3. Every node written in a config file carries ``source: SourceSpan`` (file and line of the directive).
4. Values are stored *as written at their level*: ``None`` (or an empty group) means "not set here,
   inherit from the enclosing level", exactly as nginx's merge functions see them. The proxy does the
   merging when it compiles the model; the model never pre-merges, so a report can say where a value
   was written.
5. Strings that nginx interpolates are ``Template`` values (literal and variable parts), so nothing
   downstream re-parses ``$var`` syntax.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._base import NOWHERE, ModelError, SourceSpan

SCHEMA_VERSION = 1
"""Version of the JSON form of this model. Bump on any change that an older reader would misread."""


# ---------------------------------------------------------------------------------------------
# Values: interpolated strings and conditions


@dataclass(frozen=True, slots=True, kw_only=True)
class Lit:
    """Literal text inside a template."""

    text: str
    """The text, after nginx's escape processing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Var:
    """A variable reference inside a template: ``$name``, ``${name}`` or a capture ``$1``."""

    name: str
    """Variable name without ``$`` (``"host"``, ``"http_user_agent"``, ``"1"`` for a capture)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """A string that nginx evaluates at run time (nginx's "complex value")."""

    raw: str
    """The argument as written (after quote removal)."""
    parts: tuple[Lit | Var, ...] = ()
    """Literal and variable parts in order; a template without variables has one ``Lit`` part."""

    @property
    def is_static(self) -> bool:
        """True when no part is a variable."""
        return all(isinstance(p, Lit) for p in self.parts)

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the variables this template reads, in order."""
        return tuple(p.name for p in self.parts if isinstance(p, Var))


class CondOp(enum.Enum):
    """Operators of the ``if`` directive (ngx_http_rewrite_module)."""

    TRUTHY = "truthy"  # if ($var): false when empty or "0"
    EQ = "="
    NE = "!="
    MATCH = "~"
    MATCH_CI = "~*"
    NOT_MATCH = "!~"
    NOT_MATCH_CI = "!~*"
    FILE = "-f"
    NOT_FILE = "!-f"
    DIR = "-d"
    NOT_DIR = "!-d"
    EXISTS = "-e"
    NOT_EXISTS = "!-e"
    EXEC = "-x"
    NOT_EXEC = "!-x"


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """The condition of an ``if`` block."""

    op: CondOp
    """Operator; ``TRUTHY`` for a bare variable."""
    subject: Template
    """Left side: a variable for comparisons, a path template for file tests."""
    value: Template | None = None
    """Right side of ``=``/``!=`` (may hold variables)."""
    pattern: str | None = None
    """Regular expression (PCRE syntax, as written) for the ``~`` family."""
    source: SourceSpan

    def __post_init__(self) -> None:
        regex = self.op in (CondOp.MATCH, CondOp.MATCH_CI, CondOp.NOT_MATCH, CondOp.NOT_MATCH_CI)
        if regex and self.pattern is None:
            raise ModelError(f"condition {self.op.value} needs a pattern", self.source)
        if self.op in (CondOp.EQ, CondOp.NE) and self.value is None:
            raise ModelError(f"condition {self.op.value} needs a value", self.source)


# ---------------------------------------------------------------------------------------------
# Directives kept as written (not modelled in detail)


class Support(enum.Enum):
    """Tern's support level for a directive occurrence (mirrors ``migrate.dirspec.Support``)."""

    SUPPORTED = "supported"
    PARTIAL = "partial"
    IGNORED = "ignored"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True, kw_only=True)
class RawDirective:
    """A directive the model keeps verbatim: ignored, unsupported, or not yet given a typed node."""

    name: str
    """Directive name."""
    args: tuple[str, ...] = ()
    """Arguments as written (quotes removed)."""
    support: Support
    """Support level from the directive table."""
    children: tuple[RawDirective, ...] = ()
    """Block contents, for block directives."""
    source: SourceSpan


# ---------------------------------------------------------------------------------------------
# Rewrite module: the rewrite-phase program of a level, in config order


class RewriteFlag(enum.Enum):
    """The optional last argument of ``rewrite``."""

    NONE = ""  # no flag: continue with the next rewrite directive
    LAST = "last"
    BREAK = "break"
    REDIRECT = "redirect"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rewrite:
    """``rewrite regex replacement [flag]``."""

    pattern: str
    """PCRE pattern matched against ``$uri``."""
    replacement: Template
    """Replacement; a leading ``http://``, ``https://`` or ``$scheme`` makes it a redirect."""
    flag: RewriteFlag = RewriteFlag.NONE
    """Flag as written."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class Return:
    """``return code [text|URL]`` or ``return URL``."""

    code: int
    """Status code; ``return URL`` is stored as 302 with ``url_only`` set."""
    text: Template | None = None
    """Body text, or the redirect URL for 301/302/303/307/308."""
    url_only: bool = False
    """True for the one-argument ``return URL`` form."""
    source: SourceSpan

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 999:
            raise ModelError(f"invalid return code {self.code}", self.source)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVar:
    """``set $variable value``."""

    name: str
    """Variable name without ``$``."""
    value: Template
    """Value to assign."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class Break:
    """``break``: stop processing the rewrite directives of this level."""

    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class If:
    """``if (condition) { ... }``: a conditional scope (nginx builds a nameless location from it)."""

    condition: Condition
    """The condition."""
    scope: Scope
    """Directives inside the block (its rewrite program and any other settings)."""
    source: SourceSpan


RewriteStmt = Rewrite | Return | SetVar | Break | If
"""One statement of a rewrite-phase program."""


# ---------------------------------------------------------------------------------------------
# Settings groups (all fields optional: None = inherit)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderValue:
    """A header name with a value template: ``add_header``, ``proxy_set_header``."""

    name: str
    """Header name as written."""
    value: Template
    """Header value."""
    always: bool = False
    """``add_header ... always``: also for error statuses."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class Expires:
    """``expires [modified] time|epoch|max|off``."""

    value: str
    """The time as written (``"30d"``, ``"epoch"``, ``"max"``, ``"off"``, ``"@15h"``, ``"-1"``)."""
    modified: bool = False
    """``modified`` keyword: relative to the file's modification time."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPage:
    """``error_page code ... [=[response]] uri``."""

    codes: tuple[int, ...]
    """Statuses this page handles."""
    response: int | None = None
    """Status after ``=code``; None when no ``=`` was given."""
    response_from_target: bool = False
    """A bare ``=``: the status comes from the target (proxied or redirected) response."""
    target: Template
    """URI, named location (``@name``) or URL (then a redirect)."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyRedirect:
    """``proxy_redirect``: ``default``, ``off``, or a ``redirect replacement`` pair."""

    mode: str
    """``"default"``, ``"off"`` or ``"replace"``."""
    pattern: str = ""
    """What to find in Location/Refresh (``~`` / ``~*`` prefix for a regex, as written)."""
    replacement: Template | None = None
    """What to put instead."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyPass:
    """``proxy_pass URL``."""

    url: Template
    """The URL as written."""
    scheme: str
    """``http`` or ``https``."""
    host: str
    """Host part (an upstream name, a literal host, or a template source when variables are used)."""
    port: int | None = None
    """Explicit port, if any."""
    uri: str | None = None
    """URI part (from the first ``/`` after the host), None when absent; ``"/"`` counts as present."""
    has_variables: bool = False
    """True when the URL contains variables (then the URI is used as written, resolver needed)."""
    unix_socket: str | None = None
    """Path for ``http://unix:/path:`` URLs."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class CookieRewrite:
    """One ``proxy_cookie_domain`` / ``proxy_cookie_path`` rule."""

    regex: str | None
    """A ``~`` / ``~*`` pattern without its marker, or None for a plain string."""
    caseless: bool
    """The regex ignores case (``~*``; always for proxy_cookie_domain)."""
    match: Template | None
    """The plain string to compare (with variables), when not a regex."""
    replacement: Template
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class CookieFlags:
    """One ``proxy_cookie_flags cookie flag ...`` rule."""

    cookie: str
    """The cookie name, or a ``~`` regex (case-insensitive) without the marker."""
    regex: bool
    flags: tuple[str, ...]
    """Lower-cased: secure, nosecure, httponly, nohttponly, samesite=..., nosamesite."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConf:
    """ngx_http_proxy_module settings written at one level."""

    set_headers: tuple[HeaderValue, ...] | None = None
    """``proxy_set_header`` entries (array: inherited only when none written here)."""
    cookie_domains: tuple[CookieRewrite, ...] | None = None
    """``proxy_cookie_domain`` rules (array; ``off`` writes an empty one)."""
    cookie_paths: tuple[CookieRewrite, ...] | None = None
    """``proxy_cookie_path`` rules (array; ``off`` writes an empty one)."""
    cookie_flags: tuple[CookieFlags, ...] | None = None
    """``proxy_cookie_flags`` rules (array; ``off`` writes an empty one)."""
    hide_headers: tuple[str, ...] | None = None
    """``proxy_hide_header`` names."""
    pass_headers: tuple[str, ...] | None = None
    """``proxy_pass_header`` names."""
    http_version: str | None = None
    """``proxy_http_version``: ``"1.0"`` or ``"1.1"``."""
    redirects: tuple[ProxyRedirect, ...] | None = None
    """``proxy_redirect`` entries."""
    connect_timeout: float | None = None
    """Seconds."""
    read_timeout: float | None = None
    """Seconds."""
    send_timeout: float | None = None
    """Seconds."""
    next_upstream: tuple[str, ...] | None = None
    """``proxy_next_upstream`` conditions (``error``, ``timeout``, ``http_502``, ``non_idempotent``, ``off``...)."""
    next_upstream_tries: int | None = None
    """0 means unlimited."""
    next_upstream_timeout: float | None = None
    """Seconds; 0 means unlimited."""
    intercept_errors: bool | None = None
    """``proxy_intercept_errors``."""
    buffering: bool | None = None
    """``proxy_buffering``."""
    request_buffering: bool | None = None
    """``proxy_request_buffering``."""
    pass_request_headers: bool | None = None
    """``proxy_pass_request_headers``."""
    pass_request_body: bool | None = None
    """``proxy_pass_request_body``."""
    method: Template | None = None
    """``proxy_method``."""
    set_body: Template | None = None
    """``proxy_set_body``."""
    ignore_client_abort: bool | None = None
    """``proxy_ignore_client_abort``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FastcgiPass:
    """``fastcgi_pass address`` (ngx_http_fastcgi_module)."""

    address: Template
    """The address as written."""
    host: str
    """An upstream name, a literal host, or ``unix:/path``."""
    port: int | None = None
    """Explicit port, if any."""
    unix_socket: str | None = None
    """Path for ``unix:/path`` addresses."""
    has_variables: bool = False
    """True when the address contains variables (evaluated per request)."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class FastcgiParam:
    """``fastcgi_param NAME value [if_not_empty]``."""

    name: str
    """Parameter name as written (``HTTP_*`` names replace the request header's own)."""
    value: Template
    """Value template."""
    if_not_empty: bool = False
    """Left out when the value is empty."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class FastcgiConf:
    """ngx_http_fastcgi_module settings written at one level."""

    params: tuple[FastcgiParam, ...] | None = None
    """``fastcgi_param`` entries (array: inherited only when none written here)."""
    index: Template | None = None
    """``fastcgi_index``: appended to a ``$fastcgi_script_name`` that ends in ``/``."""
    split_path_info: str | None = None
    """``fastcgi_split_path_info`` regex (two captures: script name, path info)."""
    hide_headers: tuple[str, ...] | None = None
    """``fastcgi_hide_header`` names."""
    pass_headers: tuple[str, ...] | None = None
    """``fastcgi_pass_header`` names."""
    connect_timeout: float | None = None
    """Seconds."""
    read_timeout: float | None = None
    """Seconds."""
    send_timeout: float | None = None
    """Seconds."""
    next_upstream: tuple[str, ...] | None = None
    """``fastcgi_next_upstream`` conditions."""
    next_upstream_tries: int | None = None
    """0 means unlimited."""
    next_upstream_timeout: float | None = None
    """Seconds; 0 means unlimited."""
    intercept_errors: bool | None = None
    """``fastcgi_intercept_errors``."""
    pass_request_headers: bool | None = None
    """``fastcgi_pass_request_headers``."""
    pass_request_body: bool | None = None
    """``fastcgi_pass_request_body``."""
    keep_conn: bool | None = None
    """``fastcgi_keep_conn``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TryFiles:
    """``try_files file ... uri|=code``."""

    files: tuple[Template, ...]
    """Candidates checked in order (a trailing ``/`` tests for a directory)."""
    fallback: Template
    """Last argument: a URI, a named location, or ``=code``."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentRoot:
    """``root path`` or ``alias path``."""

    path: Template
    """The path (may contain variables)."""
    alias: bool = False
    """True for ``alias``."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class SubFilter:
    """One ``sub_filter STRING REPLACEMENT``."""

    match: Template
    """The string searched for (a static one lower-cased, as nginx keeps it)."""
    replacement: Template
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticConf:
    """Static file serving settings written at one level."""

    root: DocumentRoot | None = None
    """``root`` or ``alias``."""
    index: tuple[Template, ...] | None = None
    """``index`` files."""
    try_files: TryFiles | None = None
    """``try_files``."""
    autoindex: bool | None = None
    """``autoindex``."""
    default_type: str | None = None
    """``default_type``."""
    types: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    """``types {}``: (MIME type, extensions) rows."""
    internal: bool = False
    """``internal``: only internal redirects reach this location."""
    log_not_found: bool | None = None
    """``log_not_found``."""
    etag: bool | None = None
    """``etag``."""
    charset: str | None = None
    """``charset`` as written: ``off``, a charset name or ``$variable``."""
    source_charset: str | None = None
    """``source_charset`` as written: a charset name or ``$variable``."""
    override_charset: bool | None = None
    """``override_charset``."""
    charset_types: tuple[str, ...] | None = None
    """``charset_types``, lower-cased (``*``: any type)."""
    sub_filters: tuple[SubFilter, ...] | None = None
    """``sub_filter`` pairs (array: inherited only when none written here)."""
    sub_filter_once: bool | None = None
    """``sub_filter_once``."""
    sub_filter_types: tuple[str, ...] | None = None
    """``sub_filter_types``, lower-cased (``*``: any type; text/html always)."""
    sub_filter_last_modified: bool | None = None
    """``sub_filter_last_modified``."""


class AccessAction(enum.Enum):
    """allow or deny."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRule:
    """``allow`` / ``deny`` with an address, CIDR, ``unix:`` or ``all``."""

    action: AccessAction
    """Allow or deny."""
    address: str
    """As written."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitReqRef:
    """``limit_req zone=name [burst=n] [nodelay | delay=n]``."""

    zone: str
    """Zone name."""
    burst: int = 0
    """Burst size."""
    nodelay: bool = False
    """``nodelay``."""
    delay: int = 0
    """``delay=n``."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRequestSet:
    """``auth_request_set $variable value``: evaluated in the subrequest once it is done."""

    name: str
    """The variable's name, without ``$``."""
    value: Template
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitConnRef:
    """``limit_conn zone number``."""

    zone: str
    """Zone name."""
    number: int
    """Connections allowed per key."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessConf:
    """Access-phase settings written at one level."""

    rules: tuple[AccessRule, ...] | None = None
    """``allow``/``deny`` in order (array: inherited only when none written here)."""
    satisfy: str | None = None
    """``satisfy all|any``."""
    auth_basic: Template | None = None
    """Realm, or a template equal to ``off``."""
    auth_basic_user_file: Template | None = None
    """Path of the htpasswd file."""
    limit_req: tuple[LimitReqRef, ...] | None = None
    """``limit_req`` entries."""
    limit_req_status: int | None = None
    """``limit_req_status``."""
    limit_conn: tuple[LimitConnRef, ...] | None = None
    """``limit_conn`` entries."""
    limit_conn_status: int | None = None
    """``limit_conn_status``."""
    limit_req_dry_run: bool | None = None
    """``limit_req_dry_run``: count and report, never delay or refuse."""
    limit_conn_dry_run: bool | None = None
    """``limit_conn_dry_run``: count and report, never refuse."""
    auth_request: str | None = None
    """``auth_request`` URI, or ``off``."""
    auth_request_set: tuple[AuthRequestSet, ...] | None = None
    """``auth_request_set`` entries (array: inherited only when none written here)."""
    secure_link: Template | None = None
    """``secure_link`` expression (the hash, then ``,expires``)."""
    secure_link_md5: Template | None = None
    """``secure_link_md5`` expression (its MD5 is the expected hash)."""
    secure_link_secret: str | None = None
    """``secure_link_secret`` word ("" is a secret too); merged with the two above as
    ngx_http_secure_link_merge_conf does (``proxy.securelink``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConf:
    """Client-side limits and timeouts written at one level."""

    client_max_body_size: int | None = None
    """Bytes; 0 disables the check."""
    client_body_timeout: float | None = None
    """Seconds between two reads of the body."""
    client_header_timeout: float | None = None
    """Seconds for the whole request header."""
    client_header_buffer_size: int | None = None
    """Bytes."""
    large_client_header_buffers: tuple[int, int] | None = None
    """(number, size in bytes)."""
    keepalive_timeout: float | None = None
    """Seconds; 0 disables keep-alive."""
    keepalive_header: float | None = None
    """Second argument of ``keepalive_timeout`` (``Keep-Alive: timeout=``)."""
    keepalive_requests: int | None = None
    """Requests per connection."""
    send_timeout: float | None = None
    """Seconds between two writes to the client."""
    server_tokens: str | None = None
    """``on``, ``off``, ``build`` or a string."""
    merge_slashes: bool | None = None
    """``merge_slashes`` (server level)."""
    underscores_in_headers: bool | None = None
    """``underscores_in_headers``."""
    ignore_invalid_headers: bool | None = None
    """``ignore_invalid_headers``."""
    absolute_redirect: bool | None = None
    """``absolute_redirect``."""
    port_in_redirect: bool | None = None
    """``port_in_redirect``."""
    server_name_in_redirect: bool | None = None
    """``server_name_in_redirect``."""
    chunked_transfer_encoding: bool | None = None
    """``chunked_transfer_encoding``."""
    recursive_error_pages: bool | None = None
    """``recursive_error_pages``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessLog:
    """``access_log path [format [buffer=] [gzip] [flush=] [if=]]`` or ``access_log off``."""

    path: Template | None
    """Log path (None for ``off``)."""
    format: str = "combined"
    """Name of a ``log_format``."""
    condition: Template | None = None
    """``if=`` condition."""
    options: tuple[str, ...] = ()
    """Other parameters as written (buffer=, flush=, gzip)."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConf:
    """Logging settings written at one level."""

    access_logs: tuple[AccessLog, ...] | None = None
    """``access_log`` entries (``off`` is one entry with ``path=None``)."""
    error_log: tuple[str, ...] | None = None
    """``error_log`` arguments as written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RealIpConf:
    """ngx_http_realip_module settings written at one level."""

    set_real_ip_from: tuple[str, ...] | None = None
    """Trusted addresses (CIDR, address, ``unix:``)."""
    header: str | None = None
    """``real_ip_header`` (``X-Real-IP``, ``X-Forwarded-For``, ``proxy_protocol``...)."""
    recursive: bool | None = None
    """``real_ip_recursive``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsCertificate:
    """One ``ssl_certificate`` with its key."""

    certificate: Template
    """Certificate chain file."""
    key: Template | None
    """Key file (``ssl_certificate_key``), paired by order of appearance."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConf:
    """TLS settings written at one level."""

    certificates: tuple[TlsCertificate, ...] | None = None
    """Certificate/key pairs."""
    protocols: tuple[str, ...] | None = None
    """``ssl_protocols``."""
    ciphers: str | None = None
    """``ssl_ciphers``."""
    prefer_server_ciphers: bool | None = None
    """``ssl_prefer_server_ciphers``."""
    session_cache: tuple[str, ...] | None = None
    """``ssl_session_cache`` arguments."""
    session_timeout: float | None = None
    """Seconds."""
    session_tickets: bool | None = None
    """``ssl_session_tickets``."""
    reject_handshake: bool | None = None
    """``ssl_reject_handshake``."""
    password_file: str | None = None
    """``ssl_password_file``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """Everything written at one level (http, server, location or if) besides nested blocks."""

    rewrites: tuple[RewriteStmt, ...] = ()
    """The rewrite-phase program of this level in config order (rewrite/return/set/break/if)."""
    proxy_pass: ProxyPass | None = None
    """Content handler: ``proxy_pass`` (location and if-in-location only)."""
    proxy: ProxyConf = field(default_factory=ProxyConf)
    """Proxy settings."""
    fastcgi_pass: FastcgiPass | None = None
    """Content handler: ``fastcgi_pass`` (location and if-in-location only)."""
    fastcgi: FastcgiConf = field(default_factory=FastcgiConf)
    """FastCGI settings."""
    add_headers: tuple[HeaderValue, ...] | None = None
    """``add_header`` entries (array: inherited only when none written here)."""
    expires: Expires | None = None
    """``expires``."""
    error_pages: tuple[ErrorPage, ...] | None = None
    """``error_page`` entries (array: inherited only when none written here)."""
    static: StaticConf = field(default_factory=StaticConf)
    """Static file settings."""
    access: AccessConf = field(default_factory=AccessConf)
    """Access-phase settings."""
    limits: LimitsConf = field(default_factory=LimitsConf)
    """Limits and timeouts."""
    logging: LoggingConf = field(default_factory=LoggingConf)
    """Logging."""
    realip: RealIpConf = field(default_factory=RealIpConf)
    """Real IP."""
    tls: TlsConf = field(default_factory=TlsConf)
    """TLS."""
    http2: bool | None = None
    """``http2 on|off`` (nginx >= 1.25.1)."""
    http3: bool | None = None
    """``http3 on|off``."""
    resolver: tuple[str, ...] | None = None
    """``resolver`` arguments."""
    other: tuple[RawDirective, ...] = ()
    """Directives kept as written (ignored, unsupported, or modelled only by name)."""


# ---------------------------------------------------------------------------------------------
# Blocks


class LocationModifier(enum.Enum):
    """The modifier of a ``location``."""

    PREFIX = ""
    EXACT = "="
    PREFIX_NO_REGEX = "^~"
    REGEX = "~"
    REGEX_CI = "~*"
    NAMED = "@"


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """``location [modifier] pattern { ... }`` (or ``@name``)."""

    modifier: LocationModifier
    """Modifier."""
    pattern: str
    """Prefix, exact URI, regex, or name (without ``@``)."""
    scope: Scope = field(default_factory=Scope)
    """Directives of this location."""
    locations: tuple[Location, ...] = ()
    """Nested locations, in config order."""
    limit_except: tuple[str, ...] | None = None
    """Methods of a ``limit_except`` block, if any (its contents are kept in ``limit_except_scope``)."""
    limit_except_scope: Scope | None = None
    """Contents of the ``limit_except`` block."""
    source: SourceSpan

    def __post_init__(self) -> None:
        if self.modifier is LocationModifier.NAMED and self.locations:
            raise ModelError("named locations cannot have nested locations", self.source)

    @property
    def match(self) -> str:
        """Modifier and pattern as written, e.g. ``"= /exact"``, ``"~* \\.php$"``, ``"/"``, ``"@fallback"``."""
        if self.modifier is LocationModifier.NAMED:
            return "@" + self.pattern
        if self.modifier is LocationModifier.PREFIX:
            return self.pattern
        return f"{self.modifier.value} {self.pattern}"


class ServerNameKind(enum.Enum):
    """How a ``server_name`` entry matches a Host."""

    EXACT = "exact"
    WILDCARD_START = "wildcard_start"  # *.example.com, and .example.com (also matches example.com)
    WILDCARD_END = "wildcard_end"  # www.example.*
    REGEX = "regex"  # ~pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerName:
    """One ``server_name`` entry."""

    kind: ServerNameKind
    """How it matches."""
    value: str
    """As written, lower-cased for non-regex names (``"*.example.com"``, ``"~^(?<sub>.+)\\.x$"``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    """One ``listen`` directive."""

    address: str
    """Host part: ``"*"`` for all IPv4 addresses, ``"[::]"`` for all IPv6, an address, or ``unix:/path``."""
    port: int
    """Port (0 for unix sockets)."""
    default_server: bool = False
    """``default_server`` (or the obsolete ``default``)."""
    ssl: bool = False
    """``ssl``."""
    http2: bool = False
    """``http2`` (nginx < 1.25.1 syntax)."""
    quic: bool = False
    """``quic``: a UDP listener for HTTP/3."""
    proxy_protocol: bool = False
    """``proxy_protocol``."""
    reuseport: bool = False
    """``reuseport``."""
    options: tuple[str, ...] = ()
    """Other parameters as written (backlog=, ipv6only=, so_keepalive=, deferred, bind...)."""
    source: SourceSpan

    def __post_init__(self) -> None:
        if not self.address.startswith("unix:") and not 0 < self.port < 65536:
            raise ModelError(f"port out of range: {self.port}", self.source)


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """An http ``server { ... }`` block."""

    listens: tuple[Listen, ...] = ()
    """``listen`` directives; none means nginx's default ``*:80`` (or 8000 when not root)."""
    names: tuple[ServerName, ...] = ()
    """``server_name`` entries in order; none means ``""``."""
    scope: Scope = field(default_factory=Scope)
    """Directives of this server."""
    locations: tuple[Location, ...] = ()
    """Top-level locations in config order."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamServer:
    """``server address [parameters]`` inside ``upstream``."""

    address: str
    """``host[:port]`` or ``unix:/path``."""
    weight: int = 1
    """``weight=``."""
    max_fails: int = 1
    """``max_fails=`` (0 disables accounting)."""
    fail_timeout: float = 10.0
    """``fail_timeout=`` in seconds."""
    max_conns: int = 0
    """``max_conns=`` (0: unlimited)."""
    backup: bool = False
    """``backup``."""
    down: bool = False
    """``down``."""
    options: tuple[str, ...] = ()
    """Other parameters as written (resolve, service=, slow_start=...)."""
    source: SourceSpan

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ModelError(f"invalid weight {self.weight}", self.source)


class Balancer(enum.Enum):
    """Load-balancing method of an upstream group."""

    ROUND_ROBIN = "round_robin"
    LEAST_CONN = "least_conn"
    IP_HASH = "ip_hash"
    HASH = "hash"
    HASH_CONSISTENT = "hash_consistent"
    RANDOM = "random"


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """``upstream name { ... }``."""

    name: str
    """Group name used by ``proxy_pass``."""
    servers: tuple[UpstreamServer, ...] = ()
    """Members in order."""
    balancer: Balancer = Balancer.ROUND_ROBIN
    """Method."""
    hash_key: Template | None = None
    """Key for ``hash``."""
    keepalive: int | None = None
    """``keepalive`` connections cached per worker."""
    keepalive_requests: int | None = None
    """``keepalive_requests``."""
    keepalive_timeout: float | None = None
    """``keepalive_timeout`` in seconds."""
    keepalive_time: float | None = None
    """``keepalive_time`` in seconds."""
    zone: tuple[str, ...] | None = None
    """``zone`` arguments."""
    other: tuple[RawDirective, ...] = ()
    """Other directives kept as written."""
    source: SourceSpan


class MapKeyKind(enum.Enum):
    """How a ``map`` row's key matches."""

    EXACT = "exact"
    REGEX = "regex"
    REGEX_CI = "regex_ci"
    WILDCARD_START = "wildcard_start"  # with ``hostnames``
    WILDCARD_END = "wildcard_end"


@dataclass(frozen=True, slots=True, kw_only=True)
class MapEntry:
    """One row of a ``map`` block."""

    kind: MapKeyKind
    """How the key matches."""
    key: str
    """Key as written (regex without its ``~``/``~*``)."""
    value: Template
    """Result."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class Map:
    """``map source $variable { ... }``."""

    source_value: Template
    """What is looked up (e.g. ``$http_user_agent``)."""
    variable: str
    """Variable defined, without ``$``."""
    entries: tuple[MapEntry, ...] = ()
    """Rows in config order (``default`` excluded)."""
    default: Template | None = None
    """``default`` row; None means the empty string."""
    hostnames: bool = False
    """``hostnames`` flag."""
    volatile: bool = False
    """``volatile`` flag."""
    includes: tuple[str, ...] = ()
    """Files included inside the block, as resolved."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFormat:
    """``log_format name [escape=default|json|none] string ...``."""

    name: str
    """Format name."""
    escape: str = "default"
    """Escaping of variable values."""
    format: Template
    """The concatenated format string."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitReqZone:
    """``limit_req_zone key zone=name:size rate=r/s|r/m [sync]``."""

    key: Template
    """Key."""
    name: str
    """Zone name."""
    size: str
    """Size as written."""
    rate_per_second: float
    """Rate converted to requests per second."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitConnZone:
    """``limit_conn_zone key zone=name:size``."""

    key: Template
    """Key."""
    name: str
    """Zone name."""
    size: str
    """Size as written."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class Http:
    """The ``http { ... }`` block."""

    scope: Scope = field(default_factory=Scope)
    """Directives at http level."""
    servers: tuple[Server, ...] = ()
    """Servers in config order."""
    upstreams: tuple[Upstream, ...] = ()
    """Upstream groups."""
    maps: tuple[Map, ...] = ()
    """``map`` blocks."""
    log_formats: tuple[LogFormat, ...] = ()
    """``log_format`` definitions (``combined`` is implicit)."""
    limit_req_zones: tuple[LimitReqZone, ...] = ()
    """``limit_req_zone`` definitions."""
    limit_conn_zones: tuple[LimitConnZone, ...] = ()
    """``limit_conn_zone`` definitions."""
    charsets: tuple[str, ...] = ()
    """Charset names the configuration mentions (``charset``, ``source_charset``,
    ``charset_map``), lower-cased: nginx's table of known charsets."""
    charset_maps: tuple[tuple[str, str], ...] = ()
    """``charset_map`` (source, destination) pairs, lower-cased (recoding is not done)."""
    source: SourceSpan


@dataclass(frozen=True, slots=True, kw_only=True)
class MainConf:
    """Main-context settings that matter to a process manager."""

    worker_processes: str | None = None
    """``worker_processes`` (``"auto"`` or a number)."""
    pid: str | None = None
    """``pid`` path."""
    error_log: tuple[str, ...] | None = None
    """``error_log`` arguments."""
    worker_connections: int | None = None
    """``events { worker_connections }``."""
    other: tuple[RawDirective, ...] = ()
    """Other main/events directives and unsupported blocks (stream, mail)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole nginx configuration."""

    schema_version: int = SCHEMA_VERSION
    """Version of the JSON form."""
    main_file: str
    """Path of the main configuration file."""
    prefix: str
    """nginx prefix (``-p``) used to resolve relative paths."""
    files: tuple[str, ...] = ()
    """Every file read, main file first."""
    main: MainConf = field(default_factory=MainConf)
    """Main context."""
    http: Http | None = None
    """The http block, if any."""

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ModelError(
                f"model schema_version {self.schema_version} is not {SCHEMA_VERSION}", NOWHERE
            )
