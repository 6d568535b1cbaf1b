"""JSON form of the model: exact round trips, strict decoding, and node validation."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.frontend import translate
from proxy import model as m
from proxy.model import nodes

REPO = Path(__file__).resolve().parents[1]
FIXTURES = sorted((REPO / "fixtures" / "nginx").glob("*/nginx.conf"))

S = m.SourceSpan


def span(line: int, file: str = "/etc/nginx/nginx.conf") -> m.SourceSpan:
    return S(file=file, line=line)


def tpl(*parts: str) -> m.Template:
    """Template from pieces: ``"$name"`` is a variable, anything else literal text."""
    out = tuple(m.Var(name=p[1:]) if p.startswith("$") else m.Lit(text=p) for p in parts)
    raw = "".join(parts)
    return m.Template(raw=raw, parts=out)


def roundtrip(config: m.Config) -> m.Config:
    return m.from_json(m.to_json(config))


# ---------------------------------------------------------------------------------------------
# (a) every fixture


@pytest.mark.parametrize("conf", FIXTURES, ids=[p.parent.name for p in FIXTURES])
def test_fixture_models_roundtrip(conf: Path) -> None:
    """The model of every fixture survives to_json/from_json unchanged."""
    config = translate(str(conf)).config
    assert config.http is not None and config.http.servers
    back = roundtrip(config)
    assert back == config
    assert m.to_json(back) == m.to_json(config)


def test_fixture_list_is_not_empty() -> None:
    """The fixture round trip above runs over the fixture trees (not over nothing)."""
    assert len(FIXTURES) >= 5


# ---------------------------------------------------------------------------------------------
# (b) a hand-built config using every node type, every enum member and every field


def _conditions() -> list[m.Condition]:
    out = []
    for i, op in enumerate(m.CondOp):
        kw: dict[str, Any] = {}
        if op in (m.CondOp.EQ, m.CondOp.NE):
            kw["value"] = tpl("a", "$arg_x")
        if op in (m.CondOp.MATCH, m.CondOp.MATCH_CI, m.CondOp.NOT_MATCH, m.CondOp.NOT_MATCH_CI):
            kw["pattern"] = r"^/(\d+)\.php$"
        subject = tpl("$request_filename") if op.value.lstrip("!").startswith("-") else \
            tpl("$http_user_agent")
        out.append(m.Condition(op=op, subject=subject, source=span(100 + i), **kw))
    return out


def _full_scope(line: int) -> m.Scope:
    """A scope with every group filled and every field set to a non-default value."""
    src = span(line)
    inner_if = m.If(
        condition=m.Condition(op=m.CondOp.TRUTHY, subject=tpl("$is_bot"), source=src),
        scope=m.Scope(rewrites=(m.Return(code=403, source=src),),
                      add_headers=(m.HeaderValue(name="X-If", value=tpl("1"), source=src),)),
        source=src,
    )
    rewrites: list[m.RewriteStmt] = [
        m.Rewrite(pattern=r"^/old/(.*)$", replacement=tpl("/new/", "$1"), flag=flag, source=src)
        for flag in m.RewriteFlag
    ]
    rewrites += [
        m.Return(code=302, text=tpl("https://", "$host", "/"), url_only=True, source=src),
        m.Return(code=200, text=tpl("ok\n"), source=src),
        m.SetVar(name="backend", value=tpl("$upstream_host", ":", "$port"), source=src),
        m.Break(source=src),
    ]
    # nested If with its own scope, itself holding an If
    rewrites.append(m.If(condition=_conditions()[1], scope=m.Scope(
        rewrites=(m.SetVar(name="x", value=tpl("y"), source=src), inner_if),
        proxy_pass=m.ProxyPass(url=tpl("http://b"), scheme="http", host="b", source=src),
    ), source=src))
    rewrites += [m.If(condition=c, scope=m.Scope(), source=c.source) for c in _conditions()]
    return m.Scope(
        rewrites=tuple(rewrites),
        proxy_pass=m.ProxyPass(
            url=tpl("http://unix:/run/app.sock:/api/"), scheme="http", host="unix:/run/app.sock",
            port=8080, uri="/api/", has_variables=True, unix_socket="/run/app.sock", source=src),
        proxy=m.ProxyConf(
            set_headers=(m.HeaderValue(name="Host", value=tpl("$host"), source=src),),
            cookie_domains=(m.CookieRewrite(regex=None, caseless=True, match=tpl("a.local"),
                                            replacement=tpl("$host"), source=src),),
            cookie_paths=(m.CookieRewrite(regex="^/x(.*)$", caseless=False, match=None,
                                          replacement=tpl("/y$1"), source=src),),
            cookie_flags=(m.CookieFlags(cookie="sid", regex=False, flags=("secure",),
                                        source=src),),
            hide_headers=("X-Powered-By",), pass_headers=("Server",), http_version="1.1",
            redirects=(m.ProxyRedirect(mode="default", source=src),
                       m.ProxyRedirect(mode="replace", pattern="~^http://x(/.*)$",
                                       replacement=tpl("$1"), source=src)),
            connect_timeout=0.5, read_timeout=60.0, send_timeout=1e-3,
            next_upstream=("error", "timeout", "http_502"), next_upstream_tries=3,
            next_upstream_timeout=10.25, intercept_errors=True, buffering=False,
            request_buffering=False, pass_request_headers=False, pass_request_body=False,
            method=tpl("POST"), set_body=tpl("$request_body"), ignore_client_abort=True),
        fastcgi_pass=m.FastcgiPass(address=tpl("unix:/run/php.sock"), host="unix:/run/php.sock",
                                   port=9000, unix_socket="/run/php.sock", has_variables=True,
                                   source=src),
        fastcgi=m.FastcgiConf(
            params=(m.FastcgiParam(name="SCRIPT_FILENAME", value=tpl("$document_root", "x"),
                                   if_not_empty=True, source=src),),
            index=tpl("index.php"), split_path_info=r"^(.+\.php)(/.*)$",
            hide_headers=("X-Powered-By",), pass_headers=("X-Accel-Expires",),
            connect_timeout=0.5, read_timeout=60.0, send_timeout=2.0,
            next_upstream=("error", "http_503"), next_upstream_tries=2,
            next_upstream_timeout=1.5, intercept_errors=True, pass_request_headers=False,
            pass_request_body=False, keep_conn=True),
        add_headers=(m.HeaderValue(name="X-A", value=tpl("a b"), always=True, source=src),),
        expires=m.Expires(value="@15h", modified=True, source=src),
        error_pages=(m.ErrorPage(codes=(404,), response=200, target=tpl("/404.html"),
                                 source=src),
                     m.ErrorPage(codes=(500, 502), response_from_target=True,
                                 target=tpl("@fallback"), source=src)),
        static=m.StaticConf(
            root=m.DocumentRoot(path=tpl("/srv/", "$host"), alias=True, source=src),
            index=(tpl("index.html"), tpl("$geo", ".html")),
            try_files=m.TryFiles(files=(tpl("$uri"), tpl("$uri", "/")), fallback=tpl("=404"),
                                 source=src),
            autoindex=True, default_type="text/plain",
            types=(("text/html", ("html", "htm")), ("image/png", ("png",))),
            internal=True, log_not_found=False, etag=False, charset="utf-8",
            source_charset="$src", override_charset=True, charset_types=("text/css",),
            sub_filters=(m.SubFilter(match=tpl("a"), replacement=tpl("$host"), source=src),),
            sub_filter_once=False, sub_filter_types=("*",), sub_filter_last_modified=True),
        access=m.AccessConf(
            rules=(m.AccessRule(action=m.AccessAction.ALLOW, address="10.0.0.0/8", source=src),
                   m.AccessRule(action=m.AccessAction.DENY, address="all", source=src)),
            satisfy="any", auth_basic=tpl("Restricted"), auth_basic_user_file=tpl("htpasswd"),
            limit_req=(m.LimitReqRef(zone="z", burst=5, nodelay=True, delay=2, source=src),),
            limit_req_status=429,
            limit_conn=(m.LimitConnRef(zone="c", number=10, source=src),),
            limit_conn_status=503, limit_req_dry_run=True, limit_conn_dry_run=False,
            auth_request="/auth",
            auth_request_set=(m.AuthRequestSet(name="user", value=tpl("$upstream_http_x_user"),
                                               source=src),),
            secure_link=tpl("$arg_md5,$arg_expires"), secure_link_md5=tpl("$uri secret"),
            secure_link_secret="word"),
        limits=m.LimitsConf(
            client_max_body_size=1048576, client_body_timeout=15.0, client_header_timeout=10.0,
            client_header_buffer_size=1024, large_client_header_buffers=(4, 8192),
            keepalive_timeout=65.0, keepalive_header=60.0, keepalive_requests=1000,
            send_timeout=30.0, server_tokens="off", merge_slashes=False,
            underscores_in_headers=True, ignore_invalid_headers=False, absolute_redirect=False,
            port_in_redirect=False, server_name_in_redirect=True, chunked_transfer_encoding=False,
            recursive_error_pages=True),
        logging=m.LoggingConf(
            access_logs=(m.AccessLog(path=tpl("logs/", "$host", ".log"), format="main",
                                     condition=tpl("$loggable"), options=("buffer=32k", "gzip"),
                                     source=src),
                         m.AccessLog(path=None, source=src)),
            error_log=("logs/error.log", "warn")),
        realip=m.RealIpConf(set_real_ip_from=("10.0.0.0/8", "unix:"), header="X-Forwarded-For",
                            recursive=True),
        tls=m.TlsConf(
            certificates=(m.TlsCertificate(certificate=tpl("a.crt"), key=tpl("a.key"),
                                           source=src),
                          m.TlsCertificate(certificate=tpl("b.crt"), key=None, source=src)),
            protocols=("TLSv1.2", "TLSv1.3"), ciphers="HIGH:!aNULL", prefer_server_ciphers=True,
            session_cache=("shared:SSL:10m",), session_timeout=86400.0, session_tickets=False,
            reject_handshake=True, password_file="/etc/keys/pass"),
        http2=True,
        http3=False,
        resolver=("127.0.0.1", "valid=30s"),
        other=(m.RawDirective(name="gzip", args=("on",), support=m.Support.UNSUPPORTED,
                              source=src),
               m.RawDirective(name="sendfile", args=("on",), support=m.Support.IGNORED,
                              source=src),
               m.RawDirective(name="autoindex_localtime", args=("on",),
                              support=m.Support.PARTIAL, source=src),
               m.RawDirective(name="split_clients", args=("$x", "$y"),
                              support=m.Support.SUPPORTED, source=src,
                              children=(m.RawDirective(name="50%", args=("a",),
                                                       support=m.Support.SUPPORTED,
                                                       source=span(line + 1)),))),
    )


def build_full_config() -> m.Config:
    """A Config that uses every node type, every enum member and every field."""
    src = span(1)
    locations = tuple(
        m.Location(modifier=mod, pattern=("fallback" if mod is m.LocationModifier.NAMED
                                          else "/x"), source=span(10 + i))
        for i, mod in enumerate(m.LocationModifier)
    )
    nested = m.Location(
        modifier=m.LocationModifier.PREFIX, pattern="/api/", scope=_full_scope(30),
        locations=locations[1:3], limit_except=("GET", "HEAD"),
        limit_except_scope=m.Scope(access=m.AccessConf(rules=(
            m.AccessRule(action=m.AccessAction.DENY, address="all", source=src),))),
        source=span(20))
    server = m.Server(
        listens=(m.Listen(address="*", port=443, default_server=True, ssl=True, http2=True,
                          quic=True, proxy_protocol=True, reuseport=True,
                          options=("backlog=511", "ipv6only=on"), source=src),
                 m.Listen(address="unix:/run/nginx.sock", port=0, source=src),
                 m.Listen(address="[::]", port=8080, source=src)),
        names=tuple(m.ServerName(kind=k, value=v) for k, v in (
            (m.ServerNameKind.EXACT, "example.com"),
            (m.ServerNameKind.WILDCARD_START, "*.example.com"),
            (m.ServerNameKind.WILDCARD_END, "www.example.*"),
            (m.ServerNameKind.REGEX, r"~^(?<sub>.+)\.example\.net$"))),
        scope=_full_scope(40),
        locations=(nested, *locations),
        source=span(2))
    upstreams = tuple(
        m.Upstream(name=f"u{i}", servers=(
            m.UpstreamServer(address="127.0.0.1:9000", weight=3, max_fails=0, fail_timeout=2.5,
                             max_conns=100, backup=True, down=True,
                             options=("slow_start=30s",), source=src),),
            balancer=b, hash_key=tpl("$request_uri") if b.value.startswith("hash") else None,
            keepalive=16, keepalive_requests=100, keepalive_timeout=60.0, keepalive_time=3600.0,
            zone=("backend", "64k"),
            other=(m.RawDirective(name="ntlm", support=m.Support.UNSUPPORTED, source=src),),
            source=span(50 + i))
        for i, b in enumerate(m.Balancer))
    maps = (m.Map(
        source_value=tpl("$host"), variable="tier",
        entries=tuple(m.MapEntry(kind=k, key=key, value=tpl(val, "$1"), source=span(60 + i))
                      for i, (k, key, val) in enumerate((
                          (m.MapKeyKind.EXACT, "example.com", "prod"),
                          (m.MapKeyKind.REGEX, r"^(\w+)\.dev$", "dev-"),
                          (m.MapKeyKind.REGEX_CI, r"^STAGING", "stage"),
                          (m.MapKeyKind.WILDCARD_START, "*.beta.example.com", "beta"),
                          (m.MapKeyKind.WILDCARD_END, "www.example.*", "www")))),
        default=tpl("standard"), hostnames=True, volatile=True,
        includes=("/etc/nginx/map-rows.conf",), source=span(59)),)
    http = m.Http(
        scope=_full_scope(70),
        servers=(server,),
        upstreams=upstreams,
        maps=maps,
        log_formats=(m.LogFormat(name="json", escape="json",
                                 format=tpl('{"ip":"', "$remote_addr", '"}'), source=src),),
        limit_req_zones=(m.LimitReqZone(key=tpl("$binary_remote_addr"), name="z", size="10m",
                                        rate_per_second=5 / 60, source=src),),
        limit_conn_zones=(m.LimitConnZone(key=tpl("$binary_remote_addr"), name="c", size="1m",
                                          source=src),),
        charsets=("utf-8", "koi8-r"), charset_maps=(("koi8-r", "utf-8"),),
        source=span(5))
    return m.Config(
        main_file="/etc/nginx/nginx.conf", prefix="/etc/nginx/",
        files=("/etc/nginx/nginx.conf", "/etc/nginx/conf.d/a.conf"),
        main=m.MainConf(worker_processes="auto", pid="/run/nginx.pid",
                        error_log=("stderr", "info"), worker_connections=1024,
                        other=(m.RawDirective(name="stream", support=m.Support.UNSUPPORTED,
                                              source=src),)),
        http=http)


def _walk(value: Any, seen_types: set[type], seen_enums: set[enum.Enum],
          set_fields: set[tuple[str, str]]) -> None:
    if isinstance(value, enum.Enum):
        seen_enums.add(value)
    elif isinstance(value, tuple):
        for v in value:
            _walk(v, seen_types, seen_enums, set_fields)
    elif dataclasses.is_dataclass(value):
        cls = type(value)
        seen_types.add(cls)
        for f in dataclasses.fields(cls):
            v = getattr(value, f.name)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING
                else dataclasses.MISSING)
            if default is dataclasses.MISSING or v != default:
                set_fields.add((cls.__name__, f.name))
            _walk(v, seen_types, seen_enums, set_fields)


def _model_classes() -> tuple[set[type], set[enum.Enum], set[tuple[str, str]]]:
    classes = {obj for obj in vars(nodes).values()
               if isinstance(obj, type) and dataclasses.is_dataclass(obj)
               and obj.__module__ == nodes.__name__} | {m.SourceSpan}
    members = {mem for obj in vars(nodes).values()
               if isinstance(obj, type) and issubclass(obj, enum.Enum)
               and obj.__module__ == nodes.__name__ for mem in obj}
    fields = {(c.__name__, f.name) for c in classes for f in dataclasses.fields(c)}
    return classes, members, fields


def test_full_config_covers_the_whole_model() -> None:
    """The hand-built config uses every node type, every enum member and sets every field."""
    config = build_full_config()
    types: set[type] = set()
    enums: set[enum.Enum] = set()
    fields: set[tuple[str, str]] = set()
    _walk(config, types, enums, fields)
    all_types, all_members, all_fields = _model_classes()
    assert all_types - types == set()
    assert all_members - enums == set()
    # schema_version can only hold its default
    assert all_fields - fields == {("Config", "schema_version")}


def test_full_config_roundtrips() -> None:
    """The hand-built config survives to_json/from_json unchanged, text and value."""
    config = build_full_config()
    text = m.to_json(config)
    back = m.from_json(text)
    assert back == config
    assert m.to_json(back) == text
    assert m.from_dict(m.to_dict(config)) == config


def test_json_form_tags_unions_and_omits_defaults() -> None:
    """Union members carry a "type" tag, defaults are left out, schema_version is always written."""
    config = m.Config(main_file="/x/nginx.conf", prefix="/x", http=m.Http(
        scope=m.Scope(rewrites=(m.Break(source=span(3)),)), source=span(2)))
    data = json.loads(m.to_json(config))
    assert data["schema_version"] == m.SCHEMA_VERSION
    assert data["http"]["scope"] == {"rewrites": [{"type": "Break",
                                                   "source": {"file": "/etc/nginx/nginx.conf",
                                                              "line": 3}}]}
    assert "files" not in data and "main" not in data
    parts = json.loads(m.to_json(build_full_config()))["http"]["servers"][0]["scope"][
        "rewrites"][0]["replacement"]["parts"]
    assert parts == [{"type": "Lit", "text": "/new/"}, {"type": "Var", "name": "1"}]


# ---------------------------------------------------------------------------------------------
# (c) Hypothesis: templates, conditions, listens

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_text = st.text(min_size=1, max_size=12)
_part = st.one_of(st.builds(m.Lit, text=_text), st.builds(m.Var, name=_names))
_templates = st.builds(m.Template, raw=st.text(max_size=30),
                       parts=st.lists(_part, max_size=5).map(tuple))
_spans = st.builds(m.SourceSpan, file=st.text(min_size=1, max_size=20),
                   line=st.integers(min_value=0, max_value=10**6))


@st.composite
def _conditions_st(draw: st.DrawFn) -> m.Condition:
    op = draw(st.sampled_from(list(m.CondOp)))
    needs_pattern = op in (m.CondOp.MATCH, m.CondOp.MATCH_CI, m.CondOp.NOT_MATCH,
                           m.CondOp.NOT_MATCH_CI)
    needs_value = op in (m.CondOp.EQ, m.CondOp.NE)
    value = draw(_templates) if needs_value else draw(st.none() | _templates)
    pattern = draw(st.text(max_size=20)) if needs_pattern else draw(
        st.none() | st.text(max_size=20))
    return m.Condition(op=op, subject=draw(_templates), value=value, pattern=pattern,
                       source=draw(_spans))


@st.composite
def _listens(draw: st.DrawFn) -> m.Listen:
    if draw(st.booleans()):
        address = "unix:" + draw(st.text(max_size=20))
        port = draw(st.integers(min_value=0, max_value=70000))
    else:
        address = draw(st.sampled_from(["*", "[::]", "127.0.0.1", "[::1]", "example.com"]))
        port = draw(st.integers(min_value=1, max_value=65535))
    flags = {f: draw(st.booleans()) for f in ("default_server", "ssl", "http2", "quic",
                                               "proxy_protocol", "reuseport")}
    return m.Listen(address=address, port=port,
                    options=tuple(draw(st.lists(st.text(max_size=10), max_size=3))),
                    source=draw(_spans), **flags)


_HYPO = settings(max_examples=200, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _in_config(*, rewrites: tuple[m.RewriteStmt, ...] = (),
               listens: tuple[m.Listen, ...] = ()) -> m.Config:
    server = m.Server(listens=listens, scope=m.Scope(rewrites=rewrites), source=span(2))
    return m.Config(main_file="/n.conf", prefix="/", http=m.Http(servers=(server,),
                                                                 source=span(1)))


@_HYPO
@given(_templates, _names)
def test_templates_roundtrip(template: m.Template, name: str) -> None:
    """Any Template (any text, any Lit/Var parts) survives the JSON round trip."""
    config = _in_config(rewrites=(m.SetVar(name=name, value=template, source=span(3)),))
    assert roundtrip(config) == config


@_HYPO
@given(_conditions_st())
def test_conditions_roundtrip(condition: m.Condition) -> None:
    """Any valid Condition survives the JSON round trip inside an If."""
    config = _in_config(rewrites=(m.If(condition=condition, scope=m.Scope(),
                                       source=condition.source),))
    assert roundtrip(config) == config


@_HYPO
@given(st.lists(_listens(), min_size=1, max_size=3))
def test_listens_roundtrip(listens: list[m.Listen]) -> None:
    """Any valid Listen survives the JSON round trip inside a Server."""
    config = _in_config(listens=tuple(listens))
    assert roundtrip(config) == config


# ---------------------------------------------------------------------------------------------
# strict decoding


def _small() -> dict[str, Any]:
    return m.to_dict(_in_config(listens=(m.Listen(address="*", port=80, source=span(4)),)))


def _listen_of(data: dict[str, Any]) -> dict[str, Any]:
    listen: dict[str, Any] = data["http"]["servers"][0]["listens"][0]
    return listen


def test_small_document_decodes() -> None:
    """The document the negative tests below start from is itself valid."""
    assert m.from_dict(_small()) == _in_config(
        listens=(m.Listen(address="*", port=80, source=span(4)),))


@pytest.mark.parametrize("version", [0, 2, "1", None, 1.5])
def test_decode_rejects_other_schema_version(version: Any) -> None:
    """A document with another schema_version is refused with ModelDecodeError."""
    data = _small()
    data["schema_version"] = version
    with pytest.raises(m.ModelDecodeError, match="schema_version"):
        m.from_dict(data)
    with pytest.raises(m.ModelDecodeError, match="schema_version"):
        m.from_json(json.dumps(data))


def test_decode_rejects_missing_schema_version() -> None:
    """A document without schema_version is refused with ModelDecodeError."""
    data = _small()
    del data["schema_version"]
    with pytest.raises(m.ModelDecodeError, match="schema_version"):
        m.from_dict(data)


@pytest.mark.parametrize("where", ["top", "listen", "source"])
def test_decode_rejects_unknown_field(where: str) -> None:
    """An unknown field anywhere in the document is refused with ModelDecodeError."""
    data = _small()
    target = {"top": data, "listen": _listen_of(data), "source": _listen_of(data)["source"]}[where]
    target["colour"] = "blue"
    with pytest.raises(m.ModelDecodeError, match="unknown field 'colour'"):
        m.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", "80"),
        ("port", 80.0),
        ("port", True),
        ("ssl", "yes"),
        ("ssl", 1),
        ("address", 5),
        ("options", "backlog=5"),
        ("options", [1]),
        ("source", "nginx.conf:4"),
        ("source", None),
    ],
)
def test_decode_rejects_wrong_type(field: str, value: Any) -> None:
    """A value of the wrong JSON type is refused with ModelDecodeError."""
    data = _small()
    _listen_of(data)[field] = value
    with pytest.raises(m.ModelDecodeError):
        m.from_dict(data)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["http"]["servers"][0]["listens"][0].pop("port"),
        lambda d: d["http"].update(servers={"a": 1}),
        lambda d: d["http"]["servers"][0].update(names=[{"kind": "fuzzy", "value": "x"}]),
        lambda d: d["http"]["servers"][0].update(scope={"rewrites": [{"type": "Goto"}]}),
        lambda d: d["http"]["servers"][0].update(scope={"rewrites": [{"source": {
            "file": "x", "line": 1}}]}),
        lambda d: d["http"]["scope"].update(limits={"large_client_header_buffers": [4]})
        if "scope" in d["http"] else d["http"].update(
            scope={"limits": {"large_client_header_buffers": [4]}}),
    ],
    ids=["missing-required", "object-for-array", "bad-enum", "unknown-union-tag",
         "untagged-union", "short-fixed-tuple"],
)
def test_decode_rejects_malformed_structure(mutate: Any) -> None:
    """Missing fields, bad enum values, unknown or missing union tags are ModelDecodeError."""
    data = _small()
    mutate(data)
    with pytest.raises(m.ModelDecodeError):
        m.from_dict(data)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"config"', "{} trailing"])
def test_decode_rejects_non_model_json(text: str) -> None:
    """Text that is not JSON, or JSON that is not an object, is ModelDecodeError."""
    with pytest.raises(m.ModelDecodeError):
        m.from_json(text)


def test_decode_rejects_invalid_node_values() -> None:
    """JSON describing a node nginx would reject (port 0) is ModelDecodeError, not a crash."""
    data = _small()
    _listen_of(data)["port"] = 0
    with pytest.raises(m.ModelDecodeError, match="port out of range"):
        m.from_dict(data)


# ---------------------------------------------------------------------------------------------
# node validation


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_listen_rejects_bad_port(port: int) -> None:
    """Listen with a port outside 1..65535 (not a unix socket) is a ModelError with its source."""
    with pytest.raises(m.ModelError, match="port out of range") as info:
        m.Listen(address="*", port=port, source=span(7))
    assert info.value.source == span(7)
    assert str(info.value).startswith("/etc/nginx/nginx.conf:7: ")


def test_listen_unix_socket_has_port_zero() -> None:
    """A unix: listen carries port 0 and is valid."""
    assert m.Listen(address="unix:/run/x.sock", port=0, source=span(1)).port == 0


@pytest.mark.parametrize("weight", [0, -3])
def test_upstream_server_rejects_bad_weight(weight: int) -> None:
    """UpstreamServer with weight below 1 is a ModelError."""
    with pytest.raises(m.ModelError, match="invalid weight"):
        m.UpstreamServer(address="127.0.0.1:80", weight=weight, source=span(3))


def test_named_location_rejects_nested_locations() -> None:
    """A named location with nested locations is a ModelError."""
    child = m.Location(modifier=m.LocationModifier.PREFIX, pattern="/a", source=span(5))
    with pytest.raises(m.ModelError, match="named locations cannot have nested"):
        m.Location(modifier=m.LocationModifier.NAMED, pattern="x", locations=(child,),
                   source=span(4))


@pytest.mark.parametrize(
    ("op", "kw", "message"),
    [
        (m.CondOp.EQ, {}, "needs a value"),
        (m.CondOp.NE, {}, "needs a value"),
        (m.CondOp.MATCH, {}, "needs a pattern"),
        (m.CondOp.NOT_MATCH_CI, {"value": m.Template(raw="x")}, "needs a pattern"),
    ],
)
def test_condition_rejects_missing_operand(op: m.CondOp, kw: dict[str, Any],
                                           message: str) -> None:
    """A comparison without a value, or a regex test without a pattern, is a ModelError."""
    with pytest.raises(m.ModelError, match=message):
        m.Condition(op=op, subject=tpl("$x"), source=span(1), **kw)


@pytest.mark.parametrize("code", [-1, 1000])
def test_return_rejects_bad_code(code: int) -> None:
    """Return with a code outside 0..999 is a ModelError."""
    with pytest.raises(m.ModelError, match="invalid return code"):
        m.Return(code=code, source=span(1))


def test_config_rejects_other_schema_version() -> None:
    """Building a Config with another schema_version is a ModelError."""
    with pytest.raises(m.ModelError, match="schema_version"):
        m.Config(schema_version=2, main_file="/n.conf", prefix="/")


def test_nodes_are_frozen() -> None:
    """Model nodes cannot be changed after construction."""
    listen = m.Listen(address="*", port=80, source=span(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        listen.port = 81  # type: ignore[misc]
