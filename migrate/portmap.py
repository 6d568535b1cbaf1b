"""Rewrite a config tree for a side-by-side run: own ports, own upstreams, own run directory.

``tern compare`` runs nginx and the candidate on copies of the same configuration; each copy must
listen on free loopback ports, send upstream traffic to recording echo servers instead of real
backends, and keep its pid file, logs and temp files in a directory of its own. This module turns
a loaded tree (:func:`migrate.loader.load`, includes flattened) into such a copy, as one file
emitted with ``crossplane.build``.

Rules:

1. Every ``listen`` (http, stream and mail servers) becomes ``127.0.0.1:<new port>``: one new port
   per original (address, port) endpoint, so servers that shared a socket still do and a
   ``127.0.0.1:8082`` listener stays apart from ``*:8082``. ``80``, ``*:80`` and ``0.0.0.0:80``
   are one endpoint (``("*", 80)``). Parameters are kept (``default_server``, ``ssl``, ``http2``,
   ``proxy_protocol``...) except ``ipv6only=`` (the new address is IPv4). An http server without
   ``listen`` gets one for nginx's implicit ``*:80`` (``*:8000`` when not run as root).
   ``unix:`` listeners move into the run directory.
2. Every upstream address is replaced by the address the caller gives for it: ``server`` lines in
   ``upstream`` blocks and the literal host of ``proxy_pass``, ``fastcgi_pass``, ``uwsgi_pass``,
   ``scgi_pass``, ``grpc_pass`` and ``memcached_pass`` (names of ``upstream`` blocks are left
   alone: their servers are replaced). ``https://``/``grpcs://`` targets become plain
   ``http://``/``grpc://`` because echo servers speak plain HTTP. When some ``*_pass`` computes its
   host from variables, ``map`` and ``set`` values that are literal ``IP:port`` addresses are
   replaced too, and a warning says the rest cannot be redirected.
   Addresses are normalised as ``host:port`` (host lower-cased, port 80 when absent, 443 for
   ``https://``) or ``unix:/path``.
3. ``pid``, ``error_log``, ``access_log``, ``lock_file``, the ``*_temp_path`` and ``*_cache_path``
   directives point into the run directory (``error_log stderr`` and ``access_log off`` stay);
   temp paths are set at ``http`` level when absent (Debian's defaults live in /var/lib/nginx).
   ``user``, ``daemon`` and ``master_process`` are removed (the runner passes ``-g``);
   ``worker_processes`` becomes ``1`` so both sides balance upstreams from one process' state.
4. Relative file paths become absolute, as nginx resolves them: ``root``, ``alias`` and
   ``load_module`` against the prefix (``-p``); certificates, keys, ``auth_basic_user_file`` and
   the other ``ssl_*`` files against the directory of the main file (nginx's conf prefix).
   Paths that start with a variable are left as they are.
5. Arguments survive the round trip exactly: what ``migrate.lexer`` read is what nginx reads back
   from the emitted text. ``crossplane.build`` lays the text out; arguments it would quote wrongly
   (escapes, quotes, control characters, a leading ``#``, ``if`` conditions) are quoted here and
   passed through it as placeholders.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import crossplane  # type: ignore[import-untyped]

from proxy.model import SourceSpan

from .analyze import BadValue, parse_listen
from .diagnostics import Diagnostic, Level
from .loader import Stmt, Tree

__all__ = [
    "Endpoint",
    "ListenSpec",
    "Rewritten",
    "Scan",
    "free_port",
    "normalise_address",
    "prepare_run_dir",
    "quote_arg",
    "rewrite",
    "scan",
]

Endpoint = tuple[str, int]
"""An original listen endpoint: ``("*", 80)``, ``("127.0.0.1", 8082)``, ``("[::]", 443)``."""

_DATA_BLOCKS = frozenset({"map", "geo", "types", "split_clients", "charset_map", "match"})
"""Blocks whose lines are data rows, not directives."""

_PASS_DIRECTIVES = {
    "proxy_pass": ("http", "https"),
    "fastcgi_pass": (),
    "uwsgi_pass": ("uwsgi", "suwsgi"),
    "scgi_pass": (),
    "grpc_pass": ("grpc", "grpcs"),
    "memcached_pass": (),
}
"""``*_pass`` directives and the URL schemes each accepts (none: a bare address)."""

_PLAIN_SCHEME = {"https": "http", "suwsgi": "uwsgi", "grpcs": "grpc"}
_DEFAULT_PORT = {"https": 443, "grpcs": 443}

_PREFIX_PATHS = frozenset({"root", "alias", "load_module"})
"""Directives whose first argument is a path relative to the prefix (``-p``)."""

_CONF_PATHS = frozenset({
    "ssl_certificate", "ssl_certificate_key", "ssl_trusted_certificate",
    "ssl_client_certificate", "ssl_crl", "ssl_dhparam", "ssl_password_file",
    "ssl_stapling_file", "ssl_session_ticket_key", "auth_basic_user_file",
    "proxy_ssl_certificate", "proxy_ssl_certificate_key", "proxy_ssl_trusted_certificate",
    "proxy_ssl_crl", "proxy_ssl_password_file",
    "grpc_ssl_certificate", "grpc_ssl_certificate_key", "grpc_ssl_trusted_certificate",
    "grpc_ssl_crl", "grpc_ssl_password_file",
    "uwsgi_ssl_certificate", "uwsgi_ssl_certificate_key", "uwsgi_ssl_trusted_certificate",
    "uwsgi_ssl_crl", "uwsgi_ssl_password_file",
})
"""Directives whose first argument is a path relative to the conf prefix (the main file's dir)."""

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_CACHE_PATHS = frozenset({"proxy_cache_path", "fastcgi_cache_path", "uwsgi_cache_path",
                          "scgi_cache_path"})
_REMOVED_MAIN = frozenset({"user", "daemon", "master_process", "pid", "lock_file"})

_URI_VARIABLE = re.compile(r"^\$\{?(request_uri|uri|document_uri|is_args|args|query_string)\b")
"""Variables that start the URI part of a ``*_pass`` URL (``http://10.0.0.1$request_uri``)."""

_IP_PORT = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$")


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenSpec:
    """One original listen endpoint, as the first ``listen`` naming it declares it."""

    address: str
    """``"*"``, ``"[::]"``, an address or ``unix:/path`` (as ``analyze.parse_listen`` gives)."""
    port: int
    """Original port (0 for unix sockets)."""
    ssl: bool = False
    """Some ``listen`` of this endpoint has ``ssl``: clients must speak TLS."""
    quic: bool = False
    """A QUIC (UDP) listener."""
    implicit: bool = False
    """nginx's default listen of a server without ``listen``."""
    source: SourceSpan
    """The first ``listen`` (or ``server``, when implicit) naming it."""

    @property
    def key(self) -> Endpoint:
        """``(address, port)``."""
        return (self.address, self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """What a config listens on and which upstream addresses it talks to."""

    listens: tuple[ListenSpec, ...]
    """Distinct endpoints in config order (TCP and QUIC on one port are one endpoint)."""
    upstreams: tuple[str, ...]
    """Distinct normalised upstream addresses in config order (rule 2)."""
    variable_targets: bool = False
    """Some ``*_pass`` computes its host at run time (rule 2: literals in map/set replaced)."""
    diagnostics: tuple[Diagnostic, ...] = ()
    """Warnings: targets that cannot be redirected, listens that cannot be parsed."""

    def listen(self, port: int, address: str | None = None) -> ListenSpec | None:
        """The endpoint a client reaching original ``port`` (on ``address``) would use.

        Without ``address``: the wildcard ``*`` endpoint of that port if there is one, else the
        first endpoint with that port in config order.
        """
        on_port = [s for s in self.listens if s.port == port and not s.address.startswith("unix:")]
        if address is not None:
            for s in on_port:
                if s.address == address:
                    return s
            return None
        for s in on_port:
            if s.address == "*":
                return s
        return on_port[0] if on_port else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rewritten:
    """A rewritten single-file config."""

    text: str
    """The config (a str that may carry surrogate escapes: write it with :meth:`write`)."""
    ports: Mapping[Endpoint, int]
    """Original endpoint -> new port on 127.0.0.1."""
    upstreams: Mapping[str, str]
    """Original upstream address -> replacement, for the addresses that occur."""
    source_map: tuple[SourceSpan | None, ...]
    """For each line of :attr:`text` (index = line - 1): the directive it came from, if any."""
    diagnostics: tuple[Diagnostic, ...] = ()
    """Warnings found while rewriting."""

    def write(self, path: str) -> None:
        """Write :attr:`text` to ``path`` (bytes of the original files preserved)."""
        with open(path, "wb") as fh:
            fh.write(self.text.encode("utf-8", errors="surrogateescape"))

    def origin(self, line: int) -> SourceSpan | None:
        """The original file:line of a line of the rewritten text (1-based)."""
        if 1 <= line <= len(self.source_map):
            return self.source_map[line - 1]
        return None


# --------------------------------------------------------------------------------------------
# helpers


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, not in ``exclude``.

    Raises:
        RuntimeError: none found in 100 attempts.
    """
    taken = set(exclude)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def prepare_run_dir(run_dir: str) -> None:
    """Create the directories a rewritten config writes into (logs, tmp/*, cache, sockets)."""
    for sub in ("logs", "cache", "sockets", *(os.path.join("tmp", t) for t in _TEMP_PATHS)):
        os.makedirs(os.path.join(run_dir, sub), exist_ok=True)


def normalise_address(text: str, default_port: int = 80) -> str:
    """``Backend:81`` -> ``backend:81``; ``backend`` -> ``backend:80``; ``unix:/x`` unchanged.

    Args:
        text: an address as written in ``server`` or a ``*_pass`` URL (no scheme, no URI).
        default_port: the port when none is written.
    """
    if text.startswith("unix:"):
        return text
    if text.startswith("["):
        host, _, rest = text.partition("]")
        port = rest[1:] if rest.startswith(":") and rest[1:].isdigit() else str(default_port)
        return f"{host.lower()}]:{port}"
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return f"{host.lower()}:{int(port)}"
    return f"{text.lower()}:{default_port}"


def _default_listen_port() -> int:
    """nginx's port for a server without ``listen``: 80 as root, else 8000."""
    return 80 if os.geteuid() == 0 else 8000


@dataclass(frozen=True, slots=True)
class _PassTarget:
    """A ``*_pass`` argument split up: ``scheme://`` + host part + rest (URI)."""

    scheme: str
    host: str
    rest: str
    explicit_port: bool

    def address(self) -> str:
        return normalise_address(self.host, _DEFAULT_PORT.get(self.scheme, 80))


def _split_pass(name: str, arg: str) -> _PassTarget | None:
    """Split a ``*_pass`` argument; None when its host comes from variables."""
    scheme = ""
    rest = arg
    schemes = _PASS_DIRECTIVES.get(name, ())
    if "://" in arg:
        scheme, _, rest = arg.partition("://")
        if scheme.lower() not in schemes:
            return None
        scheme = scheme.lower()
    if rest.startswith("unix:"):
        # http://unix:/path:/uri -> the path ends at the next ":" (ngx_parse_unix_domain_url)
        path_end = rest.find(":", 5)
        host = rest if path_end < 0 else rest[:path_end]
        tail = "" if path_end < 0 else rest[path_end:]
        if "$" in host:
            return None
        return _PassTarget(scheme, host, tail, True)
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("$")) if i >= 0),
              default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    if not host:
        return None
    explicit = host.rpartition(":")[2].isdigit() and not host.endswith("]")
    if tail.startswith("$") and not explicit and not _URI_VARIABLE.match(tail):
        return None  # "http://app-$x.example.com": the host itself is computed
    return _PassTarget(scheme, host, tail, explicit)


def _listen_key(args: tuple[str, ...], src: SourceSpan) -> Endpoint:
    listen = parse_listen((args[0],), src)
    address = "*" if listen.address in ("*", "0.0.0.0") else listen.address
    return (address, listen.port)


def _walk(stmts: list[Stmt], parents: tuple[str, ...] = ()
          ) -> Iterator[tuple[Stmt, tuple[str, ...]]]:
    for st in stmts:
        yield st, parents
        if st.block is not None and st.name not in _DATA_BLOCKS:
            yield from _walk(st.block, (*parents, st.name))


def _span(st: Stmt) -> SourceSpan:
    return SourceSpan(file=st.file, line=st.line)


def _warn(st: Stmt, message: str, code: str = "compare") -> Diagnostic:
    return Diagnostic(file=st.file, line=st.line, level=Level.WARNING, code=code, message=message)


# --------------------------------------------------------------------------------------------
# scanning


def scan(tree: Tree) -> Scan:
    """List the listen endpoints and upstream addresses of a loaded tree (rules 1 and 2).

    Args:
        tree: a tree from :func:`migrate.loader.load`.

    Returns:
        Endpoints and addresses in config order, plus warnings.
    """
    listens: dict[Endpoint, ListenSpec] = {}
    upstreams: dict[str, None] = {}
    diags: list[Diagnostic] = []
    groups = _upstream_names(tree.stmts)
    variable_pass = False

    for st, parents in _walk(tree.stmts):
        parent = parents[-1] if parents else ""
        if st.name == "server" and st.block is not None and parent in ("http", "stream", "mail"):
            found = False
            for child in st.block:
                if child.name != "listen" or not child.args:
                    continue
                found = True
                try:
                    key = _listen_key(child.args, _span(child))
                except BadValue as exc:
                    diags.append(_warn(child, f"listen not understood: {exc}"))
                    continue
                old = listens.get(key)
                ssl = "ssl" in child.args[1:] or (old is not None and old.ssl)
                quic = "quic" in child.args[1:] or (old is not None and old.quic)
                src = old.source if old is not None else _span(child)
                listens[key] = ListenSpec(address=key[0], port=key[1], ssl=ssl, quic=quic,
                                          source=src)
            if not found and parent == "http":
                key = ("*", _default_listen_port())
                listens.setdefault(key, ListenSpec(address="*", port=key[1], implicit=True,
                                                   source=_span(st)))
        elif st.name == "server" and parent == "upstream" and st.args:
            upstreams.setdefault(normalise_address(st.args[0]), None)
        elif st.name in _PASS_DIRECTIVES and st.args:
            target = _split_pass(st.name, st.args[0])
            if target is None:
                variable_pass = True
                diags.append(_warn(st, f"{st.name} {st.args[0]}: the target is computed at run "
                                   "time (variables) or has an unknown scheme and cannot be "
                                   "redirected to an echo server; requests may reach the real "
                                   "address"))
            elif target.explicit_port or target.host.lower() not in groups:
                upstreams.setdefault(target.address(), None)
    if variable_pass:
        for value in _literal_values(tree.stmts):
            upstreams.setdefault(normalise_address(value), None)
    return Scan(listens=tuple(listens.values()), upstreams=tuple(upstreams),
                variable_targets=variable_pass, diagnostics=tuple(diags))


def _upstream_names(stmts: list[Stmt]) -> set[str]:
    return {st.args[0].lower() for st, _ in _walk(stmts)
            if st.name == "upstream" and st.block is not None and st.args}


def _literal_values(stmts: list[Stmt]) -> Iterator[str]:
    """``IP:port`` literals that ``map`` rows and ``set`` give to variables."""
    for st, _ in _walk(stmts):
        if st.name == "set" and len(st.args) == 2 and _IP_PORT.match(st.args[1]):
            yield st.args[1]
        elif st.name == "map" and st.block is not None:
            for row in st.block:
                if row.args and _IP_PORT.match(row.args[-1]):
                    yield row.args[-1]


# --------------------------------------------------------------------------------------------
# quoting


_NGINX_ESCAPES = frozenset("\"'\\tnr")


def _bare_ok(value: str) -> bool:
    """True when ``value`` can go to crossplane.build as is (rule 5).

    crossplane either emits it bare or single-quotes it via ``repr``; both read back unchanged
    when the value is printable, has no quote, whitespace, ``;``, ``{``, ``}``, does not start
    with ``#`` and has no backslash that nginx would take as an escape.
    """
    if not value or not value.isprintable() or value[0] == "#":
        return False
    if any(c in value for c in " \"';{}"):
        return False
    if value.endswith("\\"):
        return False
    i = value.find("\\")
    while i >= 0:
        if value[i + 1] in _NGINX_ESCAPES:
            return False
        i = value.find("\\", i + 2)
    return True


def quote_arg(value: str) -> str:
    """One nginx token that reads back as ``value`` (bare when possible, else double-quoted).

    nginx's tokenizer (``ngx_conf_read_token``) turns ``\\"``, ``\\'``, ``\\\\``, ``\\t``, ``\\r``
    and ``\\n`` into the characters they name and keeps every other backslash, so inside double
    quotes escaping ``\\``, ``"`` and the three control characters is enough.
    """
    if _bare_ok(value):
        return value
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


class _Emitter:
    """crossplane.build with placeholders for the arguments it would mangle."""

    def __init__(self) -> None:
        self.nonce = "T" + secrets.token_hex(6) + "Q"
        self.tokens: dict[str, str] = {}
        self.pattern = re.compile(re.escape(self.nonce) + r"\d+")

    def placeholder(self, token: str) -> str:
        key = f"{self.nonce}{len(self.tokens)}"
        self.tokens[key] = token
        return key

    def arg(self, value: str) -> str:
        return value if _bare_ok(value) else self.placeholder(quote_arg(value))

    def name(self, value: str, *, data_row: bool) -> str:
        if data_row and value == "if":
            return self.placeholder('"if"')  # else crossplane adds if's parentheses
        return self.arg(value)

    def if_args(self, args: tuple[str, ...], quoted: tuple[bool, ...]) -> list[str]:
        """The condition without nginx's parentheses, for crossplane's ``if (`` ... ``)``.

        nginx's tokens keep the parentheses: ``if ($a = "x")`` is ``($a``, ``=``, ``x``, ``)``.
        The first and last token are padded with a space so a quoted first or last argument
        stays a token of its own: ``if ( "$a" = x )``.
        """
        values = list(args)
        flags = list(quoted) + [False] * (len(values) - len(quoted))
        if values and not flags[0] and values[0].startswith("("):
            values[0] = values[0][1:]
            if not values[0]:
                del values[0], flags[0]
        if values and not flags[-1] and values[-1].endswith(")"):
            values[-1] = values[-1][:-1]
            if not values[-1]:
                del values[-1], flags[-1]
        if not values:
            return []
        tokens = [quote_arg(v) for v in values]
        tokens[0] = " " + tokens[0]
        tokens[-1] = tokens[-1] + " "
        return [self.placeholder(t) for t in tokens]

    def render(self, payload: list[dict[str, object]]) -> str:
        text: str = crossplane.build(payload)
        return self.pattern.sub(lambda m: self.tokens[m.group()], text)


# --------------------------------------------------------------------------------------------
# rewriting


@dataclass
class _Rewriter:
    tree: Tree
    run_dir: str
    upstreams: Mapping[str, str]
    ports: dict[Endpoint, int]
    groups: set[str]
    rewrite_literals: bool
    emitter: _Emitter = field(default_factory=_Emitter)
    diags: list[Diagnostic] = field(default_factory=list)
    used: dict[str, str] = field(default_factory=dict)
    sources: list[SourceSpan | None] = field(default_factory=list)
    cache_paths: int = 0
    unix_sockets: int = 0

    # paths -----------------------------------------------------------------------------------

    def run_path(self, *parts: str) -> str:
        return os.path.join(self.run_dir, *parts)

    def absolute(self, path: str, base: str) -> str:
        if not path or path.startswith(("/", "$")) or ":" in path.split("/", 1)[0]:
            return path  # absolute, variable, or data:/engine: pseudo-paths
        return os.path.normpath(os.path.join(base, path)) + ("/" if path.endswith("/") else "")

    def replacement(self, address: str, st: Stmt) -> str | None:
        new = self.upstreams.get(address)
        if new is None:
            self.diags.append(_warn(st, f"no replacement given for upstream {address}; "
                                "left pointing at the real address"))
            return None
        self.used[address] = new
        return new

    # directives -------------------------------------------------------------------------------

    def node(self, st: Stmt, parents: tuple[str, ...], args: list[str] | None = None,
             block: list[dict[str, object]] | None = None) -> dict[str, object]:
        parent = parents[-1] if parents else ""
        data_row = parent in _DATA_BLOCKS
        if st.name == "if" and not data_row and args is None:
            built_args = self.emitter.if_args(st.args, st.quoted)
        else:
            values = list(st.args) if args is None else args
            built_args = [self.emitter.arg(a) for a in values]
        out: dict[str, object] = {"directive": self.emitter.name(st.name, data_row=data_row),
                                  "args": built_args}
        out["_source"] = _span(st)
        if block is not None:
            out["block"] = block
        return out

    def synthetic(self, name: str, args: list[str], source: SourceSpan | None = None
                  ) -> dict[str, object]:
        return {"directive": name, "args": [self.emitter.arg(a) for a in args],
                "_source": source}

    def block(self, stmts: list[Stmt], parents: tuple[str, ...]) -> list[dict[str, object]]:
        parent = parents[-1] if parents else ""
        return [node for st in stmts for node in self.stmt(st, parents, parent)]

    def stmt(self, st: Stmt, parents: tuple[str, ...], parent: str) -> list[dict[str, object]]:
        name = st.name
        if not parents and name in _REMOVED_MAIN:
            return []
        if not parents and name == "error_log":
            return []  # the run directory's error_log is put first
        if not parents and name == "worker_processes":
            return [self.node(st, parents, ["1"])]
        if st.block is not None:
            inner_parents = (*parents, name)
            if name in _DATA_BLOCKS:
                inner = [self.data_row(row, inner_parents) for row in st.block]
                return [self.node(st, parents, block=inner)]
            inner = self.block(st.block, inner_parents)
            if name == "http":
                have = {b["directive"] for b in inner}
                extra = [self.synthetic(f"{t}_temp_path", [self.run_path("tmp", t)])
                         for t in _TEMP_PATHS if f"{t}_temp_path" not in have]
                inner = extra + inner
            if name == "server" and parent == "http" and not any(
                    c.name == "listen" for c in st.block):
                key = ("*", _default_listen_port())
                inner.insert(0, self.synthetic("listen", [f"127.0.0.1:{self.ports[key]}"],
                                               _span(st)))
            return [self.node(st, parents, block=inner)]
        if name == "listen" and st.args:
            return [self.listen(st, parents)]
        if name == "server" and parent == "upstream" and st.args:
            new = self.replacement(normalise_address(st.args[0]), st)
            if new is not None:
                return [self.node(st, parents, [new, *st.args[1:]])]
        elif name in _PASS_DIRECTIVES and st.args:
            return [self.pass_(st, parents)]
        elif name == "error_log" and st.args:
            if st.args[0] in ("stderr",) or st.args[0].startswith("memory:"):
                return [self.node(st, parents)]
            return [self.node(st, parents, [self.run_path("logs", "error.log"), *st.args[1:]])]
        elif name == "access_log" and st.args and st.args[0] != "off":
            return [self.node(st, parents, [self.run_path("logs", "access.log"), *st.args[1:]])]
        elif name.endswith("_temp_path") and name[: -len("_temp_path")] in _TEMP_PATHS and st.args:
            kind = name[: -len("_temp_path")]
            return [self.node(st, parents, [self.run_path("tmp", kind), *st.args[1:]])]
        elif name in _CACHE_PATHS and st.args:
            self.cache_paths += 1
            path = self.run_path("cache", str(self.cache_paths))
            return [self.node(st, parents, [path, *st.args[1:]])]
        elif name in _PREFIX_PATHS and st.args:
            return [self.node(st, parents, [self.absolute(st.args[0], self.tree.prefix),
                                            *st.args[1:]])]
        elif name in _CONF_PATHS and st.args:
            conf_dir = os.path.dirname(self.tree.main_file)
            return [self.node(st, parents, [self.absolute(st.args[0], conf_dir), *st.args[1:]])]
        elif name == "set" and len(st.args) == 2 and self.rewrite_literals and _IP_PORT.match(
                st.args[1]):
            new = self.upstreams.get(normalise_address(st.args[1]))
            if new is not None:
                self.used[normalise_address(st.args[1])] = new
                return [self.node(st, parents, [st.args[0], new])]
        return [self.node(st, parents)]

    def data_row(self, row: Stmt, parents: tuple[str, ...]) -> dict[str, object]:
        """A row of map/geo/types/...; map values that are upstream literals are replaced."""
        args = list(row.args)
        if (parents and parents[-1] == "map" and self.rewrite_literals and args
                and _IP_PORT.match(args[-1])):
            new = self.upstreams.get(normalise_address(args[-1]))
            if new is not None:
                self.used[normalise_address(args[-1])] = new
                args[-1] = new
        block = None
        if row.block is not None:
            block = [self.data_row(r, (*parents, row.name)) for r in row.block]
        return self.node(row, parents, args, block)

    def listen(self, st: Stmt, parents: tuple[str, ...]) -> dict[str, object]:
        try:
            key = _listen_key(st.args, _span(st))
        except BadValue:
            return self.node(st, parents)
        params = [a for a in st.args[1:] if not a.startswith("ipv6only=")]
        if key[0].startswith("unix:"):
            self.unix_sockets += 1
            path = self.run_path("sockets", f"{self.unix_sockets}.sock")
            return self.node(st, parents, [f"unix:{path}", *params])
        return self.node(st, parents, [f"127.0.0.1:{self.ports[key]}", *params])

    def pass_(self, st: Stmt, parents: tuple[str, ...]) -> dict[str, object]:
        target = _split_pass(st.name, st.args[0])
        if target is None or (not target.explicit_port and target.host.lower() in self.groups):
            return self.node(st, parents)
        new = self.replacement(target.address(), st)
        if new is None:
            return self.node(st, parents)
        scheme = _PLAIN_SCHEME.get(target.scheme, target.scheme)
        prefix = f"{scheme}://" if scheme else ""
        return self.node(st, parents, [f"{prefix}{new}{target.rest}", *st.args[1:]])

    # output ----------------------------------------------------------------------------------

    def strip_sources(self, payload: list[dict[str, object]]) -> list[dict[str, object]]:
        """Record each directive's source in output-line order (crossplane.build's layout: one
        line per directive, one more for each closing brace) and drop the private key."""
        for node in payload:
            source = node.pop("_source", None)
            self.sources.append(source if isinstance(source, SourceSpan) else None)
            block = node.get("block")
            if isinstance(block, list):
                self.strip_sources(block)
                self.sources.append(None)
        return payload


def rewrite(tree: Tree, *, run_dir: str, upstreams: Mapping[str, str],
            ports: Mapping[Endpoint, int] | None = None,
            exclude_ports: Iterable[int] = ()) -> Rewritten:
    """Rewrite a loaded tree into a single runnable file for a side-by-side run.

    Args:
        tree: a tree from :func:`migrate.loader.load` (without loader errors).
        run_dir: absolute directory for pid, logs, temp files and unix sockets
            (create its subdirectories with :func:`prepare_run_dir`).
        upstreams: original normalised upstream address (see :attr:`Scan.upstreams`) ->
            replacement ``host:port``; an address missing here is left alone, with a warning.
        ports: original endpoint -> new port; endpoints missing here get a free port.
        exclude_ports: ports never to hand out (e.g. those of the other side).

    Returns:
        The text, the port and upstream mappings used, a line-to-source map and warnings.
    """
    run_dir = os.path.abspath(run_dir)
    found = scan(tree)
    allocated = dict(ports or {})
    taken = set(exclude_ports) | set(allocated.values())
    for spec in found.listens:
        if spec.key not in allocated and not spec.address.startswith("unix:"):
            allocated[spec.key] = free_port(taken)
            taken.add(allocated[spec.key])
    rw = _Rewriter(tree=tree, run_dir=run_dir, upstreams=upstreams, ports=allocated,
                   groups=_upstream_names(tree.stmts), rewrite_literals=found.variable_targets)
    main = rw.block(tree.stmts, ())
    level = next((st.args[1:] for st in tree.stmts if st.name == "error_log" and st.args), ())
    head = [rw.synthetic("pid", [rw.run_path("nginx.pid")]),
            rw.synthetic("error_log", [rw.run_path("logs", "error.log"), *level])]
    if not any(n["directive"] == "events" for n in main):
        head.append({"directive": "events", "args": [], "block": [], "_source": None})
    payload = rw.strip_sources(head + main)
    header = f"# tern compare: port-mapped copy of {tree.main_file}; do not edit"
    text = header + "\n" + rw.emitter.render(payload) + "\n"
    sources = (None, *rw.sources)
    if text.count("\n") != len(sources):
        raise AssertionError("source map out of step with crossplane.build's layout")
    return Rewritten(text=text, ports={s.key: allocated[s.key] for s in found.listens
                                       if s.key in allocated},
                     upstreams=dict(rw.used), source_map=sources,
                     diagnostics=(*found.diagnostics, *rw.diags))
