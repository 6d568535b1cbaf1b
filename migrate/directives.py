"""Tern's nginx directive table: where each directive may appear, its arity, and Tern's support.

One row per directive name, built with ``_d`` (any directive) or ``_f`` (on/off flag, 1..1).
Contexts are given as a space-separated string of short codes:

    M    main                      E    events
    H    http                      S    http server          L    http location
    LE   limit_except              SIF  if in server         LIF  if in location
    U    http upstream             MAP  map-like raw block (only ``include`` lists it)
    ST   stream                    STS  stream server        STU  stream upstream
    ML   mail                      MLS  mail server          *    every context

Arity follows the nginx command tables (``NGX_CONF_TAKE12`` -> 1, 2; ``1MORE`` -> 1, N;
``2MORE`` -> 2, N; ``NOARGS`` -> 0, 0; ``ANY`` -> 0, N; ``N`` is ``ANY_ARGS``).

A name defined by several subsystems (``server`` in http/upstream/stream/mail, ``listen``,
``ssl_certificate``, ``proxy_pass``...) is written once per subsystem, under that subsystem's
heading; the later rows are folded into the first one: contexts are united, arity is loosened to
cover both, and module/support/reason stay those of the first (http) row.

Bodies of ``RAW_BLOCKS`` (``map``, ``types``, ``geo``...) are rows of data, not directives, and are
never looked up here.
"""

from __future__ import annotations

from migrate.dirspec import ANY_ARGS, Ctx, DirectiveSpec, Support

__all__ = ["DIRECTIVES", "RAW_BLOCKS", "lookup"]

N = ANY_ARGS
OK = Support.SUPPORTED
PART = Support.PARTIAL
IGN = Support.IGNORED
NO = Support.UNSUPPORTED

_CTX: dict[str, Ctx] = {
    "M": Ctx.MAIN,
    "E": Ctx.EVENTS,
    "H": Ctx.HTTP,
    "S": Ctx.SERVER,
    "L": Ctx.LOCATION,
    "LE": Ctx.LIMIT_EXCEPT,
    "SIF": Ctx.IF_SERVER,
    "LIF": Ctx.IF_LOCATION,
    "U": Ctx.UPSTREAM,
    "MAP": Ctx.MAP,
    "ST": Ctx.STREAM,
    "STS": Ctx.STREAM_SERVER,
    "STU": Ctx.STREAM_UPSTREAM,
    "ML": Ctx.MAIL,
    "MLS": Ctx.MAIL_SERVER,
}

DIRECTIVES: dict[str, DirectiveSpec] = {}


def _d(
    name: str,
    module: str,
    ctx: str,
    lo: int,
    hi: int,
    support: Support,
    reason: str = "",
    *,
    block: bool = False,
    flag: bool = False,
) -> None:
    """Add one row (or fold it into the existing row of the same name, see module docstring)."""
    contexts = frozenset(_CTX.values()) if ctx == "*" else frozenset(_CTX[c] for c in ctx.split())
    old = DIRECTIVES.get(name)
    if old is not None:
        contexts |= old.contexts
        lo = min(lo, old.min_args)
        hi = N if N in (hi, old.max_args) else max(hi, old.max_args)
        block = block or old.block
        flag = flag and old.flag
        module, support, reason = old.module, old.support, old.reason
    DIRECTIVES[name] = DirectiveSpec(
        name=name,
        module=module,
        contexts=contexts,
        min_args=lo,
        max_args=hi,
        block=block,
        flag=flag,
        support=support,
        reason=reason,
    )


def _f(name: str, module: str, ctx: str, support: Support, reason: str = "") -> None:
    """Add an on/off flag row (NGX_CONF_FLAG: exactly one argument)."""
    _d(name, module, ctx, 1, 1, support, reason, flag=True)


# --- reasons shared by many rows -------------------------------------------------------------

_PROC = "process/OS setting; Tern manages its own processes and responses are unchanged"
_EVT = "event-loop tuning; Tern uses its own event loop and responses are unchanged"
_TUNE = "performance tuning only; responses are unchanged"
_HASH = "hash table sizing; responses are unchanged"
_BUF = "buffer sizing; Tern streams through its own buffers and responses are unchanged"
_TEMP = "temporary-file location; Tern streams bodies and never writes temp files"
_FCACHE = "open file descriptor caching; responses are unchanged"
_LOGLVL = "only the error-log level of rejections changes; responses are unchanged"
_LIMIT = "counters are per worker process, not shared across workers"
_STREAMING = "Tern always streams; buffering only affects timing, not content"
_OBS_H2 = "obsolete in nginx 1.19.7+ (nginx ignores it too); responses are unchanged"
_OBS_PUSH = "HTTP/2 server push was removed in nginx 1.25.1 (nginx ignores it too)"
_RESOLVER = ("re-resolving upstream server names at run time (server ... resolve) is not "
             "implemented: the names are resolved once at start-up")
_QUIC = "QUIC transport tuning is left to aioquic; limits and timings may differ from nginx"
_SSLDEF = "left to Python's ssl defaults"
_STAPLE = "OCSP stapling is not done; only the TLS handshake differs, responses are unchanged"

_CACHE = "proxy caching is not implemented: every request is sent to the upstream"
_STORE = "storing upstream responses on disk is not implemented: no files are written"
_UPTLS = "upstream TLS options are not implemented: the setting has no effect on https upstreams"
_BIND = "choosing the local address for upstream connections is not implemented"
_RATE = ("not implemented for FastCGI: the app's answer is read at full speed (limit_rate "
         "applies to what the client gets)")
_FCGI = "not implemented for FastCGI in Tern: the setting has no effect"
_FCACHE_FC = "FastCGI caching is not implemented: every request is sent to the app"
_UWSGI = "uwsgi upstreams are not implemented; Tern proxies HTTP only"
_SCGI = "SCGI upstreams are not implemented; Tern proxies HTTP only"
_GRPC = "gRPC proxying is not implemented; Tern proxies HTTP only"
_MEMC = "memcached upstreams are not implemented; Tern proxies HTTP only"
_TUNNEL = "CONNECT tunnelling is not implemented: CONNECT requests are not forwarded"
_GZBUF = ("gzip output buffering; the compressed bytes are the same, only how they are split "
          "into writes differs")
_GUNZIP = "gunzip decompression is not implemented: gzipped upstream bodies are sent as they are"
_SSI = "server-side includes are not implemented: SSI commands reach clients unprocessed"
_CHARSET = "charset recoding is not implemented: bodies are sent in their source charset"
_USERID = "userid cookies are not implemented: no uid cookie is set or read"
_IMG = "image filtering is not implemented: images are sent unmodified"
_XSLT = "XSLT transformation is not implemented: XML responses are sent untransformed"
_DAV = "WebDAV is not implemented: PUT/DELETE/MKCOL/COPY/MOVE are not performed"
_MP4 = "MP4 pseudo-streaming is not implemented: the whole file is sent, start/end ignored"
_FLV = "FLV pseudo-streaming is not implemented: the whole file is sent, start ignored"
_GEOIP = "GeoIP lookups are not implemented: the $geoip_* variables are empty"
_SPLIT = "split_clients is not implemented: the variable is never set"
_REFERER = "Referer validation is not implemented: $invalid_referer is never set"
_BROWSER = "browser detection is not implemented: $modern_browser/$ancient_browser are unset"
_MIRROR = "request mirroring is not implemented: no mirror subrequests are sent"
_SLICE = "slicing is not implemented: upstream requests are not split into byte ranges"
_OCSP = "OCSP checking of client certificates is not implemented: revocation is not checked"
_STATUS = "status pages are not implemented: the location does not produce a status report"
_NJS = "njs (JavaScript) is not implemented: the script never runs"
_PERL = "embedded Perl is not implemented: the Perl handler never runs"
_PLUS = "NGINX Plus commercial feature; not implemented in Tern"
_HC = "active health checks (NGINX Plus) are not implemented: upstreams are never probed"
_JWT = "JWT authentication (NGINX Plus) is not implemented: tokens are not checked"
_STREAM = "stream (TCP/UDP) proxying is outside Tern's HTTP scope"
_MAIL = "mail proxy is outside Tern's scope"
_STREAM_MAIL = "stream (TCP/UDP) and mail proxying are outside Tern's HTTP scope"
_LUA = "third-party module (ngx_http_lua_module) is not part of Tern: the Lua code never runs"


# fmt: off
# --- core: main context (ngx_core_module and friends) ---------------------------------------
CORE = "ngx_core_module"
_f("daemon", CORE, "M", IGN, _PROC)
_f("master_process", CORE, "M", IGN, _PROC)
_d("timer_resolution", CORE, "M", 1, 1, IGN, _EVT)
_d("pid", CORE, "M", 1, 1, IGN, _PROC)
_d("lock_file", CORE, "M", 1, 1, IGN, _PROC)
_d("worker_processes", CORE, "M", 1, 1, IGN, _PROC)
_d("debug_points", CORE, "M", 1, 1, IGN, _PROC)
_d("user", CORE, "M", 1, 2, IGN, _PROC)
_d("worker_priority", CORE, "M", 1, 1, IGN, _PROC)
_d("worker_cpu_affinity", CORE, "M", 1, N, IGN, _PROC)
_d("worker_rlimit_nofile", CORE, "M", 1, 1, IGN, _PROC)
_d("worker_rlimit_core", CORE, "M", 1, 1, IGN, _PROC)
_d("worker_shutdown_timeout", CORE, "M", 1, 1, IGN, _PROC)
_d("working_directory", CORE, "M", 1, 1, IGN, _PROC)
_d("env", CORE, "M", 1, 1, IGN, _PROC)
_d("load_module", CORE, "M", 1, 1, IGN, "dynamic module loading; Tern has no nginx modules")
_d("include", "ngx_conf_module", "*", 1, 1, OK)
_d("error_log", "ngx_errlog_module", "M", 1, N, OK)
_f("pcre_jit", "ngx_regex_module", "M", IGN, _TUNE)
_d("thread_pool", "ngx_thread_pool_module", "M", 2, 3, IGN, _PROC)
_d("ssl_engine", "ngx_openssl_module", "M", 1, 1, IGN, "OpenSSL engine selection; " + _SSLDEF)
_f("ssl_object_cache_inheritable", "ngx_openssl_module", "M", IGN, _TUNE)
_f("quic_bpf", "ngx_quic_bpf_module", "M", IGN, _PROC)
_d("google_perftools_profiles", "ngx_google_perftools_module", "M", 1, 1, IGN, _PROC)
_d("events", "ngx_events_module", "M", 0, 0, OK, block=True)

# --- events (ngx_event_core_module and event methods) ---------------------------------------
EV = "ngx_event_core_module"
_d("worker_connections", EV, "E", 1, 1, IGN, _EVT)
_d("use", EV, "E", 1, 1, IGN, _EVT)
_f("multi_accept", EV, "E", IGN, _EVT)
_f("accept_mutex", EV, "E", IGN, _EVT)
_d("accept_mutex_delay", EV, "E", 1, 1, IGN, _EVT)
_d("debug_connection", EV, "E", 1, 1, IGN, "debug logging for chosen clients; responses unchanged")
_d("worker_aio_requests", "ngx_epoll_module", "E", 1, 1, IGN, _EVT)
_d("epoll_events", "ngx_epoll_module", "E", 1, 1, IGN, _EVT)
_d("kqueue_changes", "ngx_kqueue_module", "E", 1, 1, IGN, _EVT)
_d("kqueue_events", "ngx_kqueue_module", "E", 1, 1, IGN, _EVT)
_d("devpoll_changes", "ngx_devpoll_module", "E", 1, 1, IGN, _EVT)
_d("devpoll_events", "ngx_devpoll_module", "E", 1, 1, IGN, _EVT)
_d("eventport_events", "ngx_eventport_module", "E", 1, 1, IGN, _EVT)

# --- http core (ngx_http_module, ngx_http_core_module) ---------------------------------------
HC = "ngx_http_core_module"
_d("http", "ngx_http_module", "M", 0, 0, OK, block=True)
_d("server", HC, "H", 0, 0, OK, block=True)
_d("location", HC, "S L", 1, 2, OK, block=True)
_d("listen", HC, "S", 1, N, OK)
_d("server_name", HC, "S", 1, N, OK)
_d("root", HC, "H S L LIF", 1, 1, OK)
_d("alias", HC, "L", 1, 1, OK)
_d("limit_except", HC, "L", 1, N, NO,
   "method restriction blocks are not implemented: the listed methods are not enforced",
   block=True)
_d("types", HC, "H S L", 0, 0, OK, block=True)
_d("default_type", HC, "H S L", 1, 1, OK)
_d("types_hash_max_size", HC, "H S L", 1, 1, IGN, _HASH)
_d("types_hash_bucket_size", HC, "H S L", 1, 1, IGN, _HASH)
_d("server_names_hash_max_size", HC, "H", 1, 1, IGN, _HASH)
_d("server_names_hash_bucket_size", HC, "H", 1, 1, IGN, _HASH)
_d("variables_hash_max_size", HC, "H", 1, 1, IGN, _HASH)
_d("variables_hash_bucket_size", HC, "H", 1, 1, IGN, _HASH)
_d("connection_pool_size", HC, "H S", 1, 1, IGN, _TUNE)
_d("request_pool_size", HC, "H S", 1, 1, IGN, _TUNE)
_d("client_header_timeout", HC, "H S", 1, 1, OK)
_d("client_header_buffer_size", HC, "H S", 1, 1, OK)
_d("large_client_header_buffers", HC, "H S", 2, 2, OK)
_f("ignore_invalid_headers", HC, "H S", OK)
_f("merge_slashes", HC, "H S", OK)
_f("underscores_in_headers", HC, "H S", OK)
_d("max_headers", HC, "H S", 1, 1, NO,
   "the request header count limit is not implemented: requests with many headers are accepted")
_d("client_max_body_size", HC, "H S L", 1, 1, OK)
_d("client_body_buffer_size", HC, "H S L", 1, 1, IGN, _BUF)
_d("client_body_timeout", HC, "H S L", 1, 1, OK)
_d("client_body_temp_path", HC, "H S L", 1, 4, IGN, _TEMP)
_d("client_body_in_file_only", HC, "H S L", 1, 1, IGN,
   "only changes where nginx keeps request bodies; Tern streams them")
_f("client_body_in_single_buffer", HC, "H S L", IGN, _BUF)
_f("sendfile", HC, "H S L LIF", IGN, _TUNE)
_d("sendfile_max_chunk", HC, "H S L", 1, 1, IGN, _TUNE)
_d("subrequest_output_buffer_size", HC, "H S L", 1, 1, IGN, _BUF)
_d("aio", HC, "H S L", 1, 1, IGN, _TUNE)
_f("aio_write", HC, "H S L", IGN, _TUNE)
_d("read_ahead", HC, "H S L", 1, 1, IGN, _TUNE)
_d("directio", HC, "H S L", 1, 1, IGN, _TUNE)
_d("directio_alignment", HC, "H S L", 1, 1, IGN, _TUNE)
_f("tcp_nopush", HC, "H S L", IGN, _TUNE)
_f("tcp_nodelay", HC, "H S L", IGN, _TUNE)
_d("send_timeout", HC, "H S L", 1, 1, OK)
_d("send_lowat", HC, "H S L", 1, 1, IGN, _TUNE)
_d("postpone_output", HC, "H S L", 1, 1, IGN, _BUF)
_d("output_buffers", HC, "H S L", 2, 2, IGN, _BUF)
_d("limit_rate", HC, "H S L LIF", 1, 1, OK)
_d("limit_rate_after", HC, "H S L LIF", 1, 1, OK)
_d("keepalive_time", HC, "H S L", 1, 1, OK)
_d("keepalive_timeout", HC, "H S L", 1, 2, OK)
_d("keepalive_requests", HC, "H S L", 1, 1, OK)
_d("keepalive_disable", HC, "H S L", 1, 2, IGN, "browser-specific keep-alive workaround")
_d("satisfy", HC, "H S L", 1, 1, OK)
_d("auth_delay", HC, "H S L", 1, 1, NO,
   "the delay before 401/403 answers is not implemented: failures are answered at once")
_d("internal", HC, "L", 0, 0, OK)
_d("lingering_close", HC, "H S L", 1, 1, IGN, _TUNE)
_d("lingering_time", HC, "H S L", 1, 1, IGN, _TUNE)
_d("lingering_timeout", HC, "H S L", 1, 1, IGN, _TUNE)
_f("reset_timedout_connection", HC, "H S L", IGN, _TUNE)
_f("absolute_redirect", HC, "H S L", OK)
_f("server_name_in_redirect", HC, "H S L", OK)
_f("port_in_redirect", HC, "H S L", OK)
_f("msie_padding", HC, "H S L", NO,
   "MSIE error-page padding is not implemented: MSIE clients get unpadded error pages")
_f("msie_refresh", HC, "H S L", NO,
   "MSIE refresh redirects are not implemented: MSIE clients get plain 30x redirects")
_f("log_not_found", HC, "H S L", OK)
_f("log_subrequest", HC, "H S L", IGN, "only affects logging of subrequests; responses unchanged")
_f("recursive_error_pages", HC, "H S L", OK)
_d("server_tokens", HC, "H S L", 1, 1, OK)
_f("chunked_transfer_encoding", HC, "H S L", PART,
   "only the default (on) is implemented; off still sends chunked responses")
_f("etag", HC, "H S L", OK)
_d("if_modified_since", HC, "H S L", 1, 1, OK)
_d("max_ranges", HC, "H S L", 1, 1, OK)
_d("error_page", HC, "H S L LIF", 2, N, OK)
_d("try_files", HC, "S L", 2, N, OK)
_d("post_action", HC, "H S L LIF", 1, 1, NO,
   "post_action is not implemented: no request is made after the response")
_d("error_log", HC, "H S L", 1, N, OK)
_d("open_file_cache", HC, "H S L", 1, 2, IGN, _FCACHE)
_d("open_file_cache_valid", HC, "H S L", 1, 1, IGN, _FCACHE)
_d("open_file_cache_min_uses", HC, "H S L", 1, 1, IGN, _FCACHE)
_f("open_file_cache_errors", HC, "H S L", IGN, _FCACHE)
_f("open_file_cache_events", HC, "H S L", IGN, _FCACHE)
_d("resolver", HC, "H S L", 1, N, PART,
   "names in proxy_pass with variables are resolved through it (A, AAAA; over TCP when an "
   "answer is truncated); fastcgi_pass with variables looks names up with the system resolver")
_d("resolver_timeout", HC, "H S L", 1, 1, OK)
_d("disable_symlinks", HC, "H S L", 1, 2, NO,
   "symlink checks are not implemented: files reached through symbolic links are served")
_d("early_hints", HC, "H S L", 1, N, NO,
   "103 Early Hints are not implemented: upstream 103 responses are not passed to clients")
_f("http2", HC, "H S", OK)
_f("http3", "ngx_http_v3_module", "H S", PART,
   "read from the QUIC socket's default server only (SNI picks the certificate, not this)")

# --- HTTP/2 (ngx_http_v2_module) --------------------------------------------------------------
H2 = "ngx_http_v2_module"
_d("http2_max_concurrent_streams", H2, "H S", 1, 1, PART,
   "read from the socket's default server (as nginx); excess streams are REFUSED_STREAM")
_d("http2_recv_buffer_size", H2, "H", 1, 1, IGN, _BUF)
_d("http2_chunk_size", H2, "H S L", 1, 1, IGN, "DATA frame sizing; response content unchanged")
_d("http2_body_preread_size", H2, "H S", 1, 1, IGN,
   "Tern always announces nginx's default stream window (64 KiB); responses are unchanged")
_d("http2_streams_index_size", H2, "H S", 1, 1, IGN, _HASH)
_d("http2_pool_size", H2, "H S", 1, 1, IGN, _OBS_H2)
_d("http2_idle_timeout", H2, "H S", 1, 1, IGN, _OBS_H2)
_d("http2_recv_timeout", H2, "H S", 1, 1, IGN, _OBS_H2)
_d("http2_max_requests", H2, "H S", 1, 1, IGN, _OBS_H2)
_d("http2_max_field_size", H2, "H S", 1, 1, IGN, _OBS_H2)
_d("http2_max_header_size", H2, "H S", 1, 1, IGN, _OBS_H2)
_d("http2_max_concurrent_pushes", H2, "H S", 1, 1, IGN, _OBS_PUSH)
_d("http2_push", H2, "H S L", 1, 1, IGN, _OBS_PUSH)
_f("http2_push_preload", H2, "H S L", IGN, _OBS_PUSH)

# --- HTTP/3 and QUIC (ngx_http_v3_module) -------------------------------------------------------
H3 = "ngx_http_v3_module"
_f("http3_hq", H3, "H S", NO, "hq-interop (HTTP/0.9 over QUIC) is not implemented: only h3 works")
_d("http3_max_concurrent_streams", H3, "H S", 1, 1, OK)
_d("http3_stream_buffer_size", H3, "H S", 1, 1, OK)
_f("quic_retry", H3, "H S", OK)
_f("quic_gso", H3, "H S", IGN, "UDP segmentation offload; responses are unchanged")
_d("quic_host_key", H3, "H S", 1, 1, PART, "QUIC token keys are managed by aioquic, not this file")
_d("quic_active_connection_id_limit", H3, "H S", 1, 1, PART, _QUIC)

# --- SSL/TLS (ngx_http_ssl_module) -------------------------------------------------------------
SSL = "ngx_http_ssl_module"
_f("ssl", SSL, "H S", NO,
   "obsolete `ssl on` (removed in nginx 1.25.1) is not applied: write `listen ... ssl`")
_d("ssl_certificate", SSL, "H S", 1, 1, OK)
_d("ssl_certificate_key", SSL, "H S", 1, 1, OK)
_d("ssl_password_file", SSL, "H S", 1, 1, OK)
_d("ssl_certificate_cache", SSL, "H S", 1, 3, IGN, "certificate file caching; responses unchanged")
_f("ssl_certificate_compression", SSL, "H S", IGN, "TLS handshake optimisation; no response change")
_d("ssl_ciphers", SSL, "H S", 1, 1, OK)
_d("ssl_protocols", SSL, "H S", 1, N, OK)
_f("ssl_prefer_server_ciphers", SSL, "H S", OK)
_d("ssl_session_cache", SSL, "H S", 1, 2, PART,
   "OpenSSL's per-process cache is used whatever the size (not shared across workers); "
   "off/none only turn TLS 1.3 tickets off")
_d("ssl_session_timeout", SSL, "H S", 1, 1, PART,
   "Python's ssl cannot set it: OpenSSL's 300 s default applies")
_f("ssl_session_tickets", SSL, "H S", OK)
_d("ssl_session_ticket_key", SSL, "H S", 1, 1, IGN, "ticket keys are generated by Python's ssl")
_d("ssl_dhparam", SSL, "H S", 1, 1, PART, _SSLDEF)
_d("ssl_ecdh_curve", SSL, "H S", 1, 1, PART, _SSLDEF)
_d("ssl_buffer_size", SSL, "H S", 1, 1, IGN, "TLS record sizing; responses are unchanged")
_d("ssl_verify_client", SSL, "H S", 1, 1, PART,
   "a client certificate that does not verify fails the TLS handshake (nginx answers 400 "
   "'The SSL certificate error'); optional_no_ca still verifies against the CA; a server "
   "SNI switches to asks for a certificate only if the socket's default server does "
   "(Python's ssl has no verify callback)")
_d("ssl_verify_depth", SSL, "H S", 1, 1, PART,
   "OpenSSL's default verification depth applies to client certificates")
_d("ssl_client_certificate", SSL, "H S", 1, 1, OK)
_d("ssl_crl", SSL, "H S", 1, 1, PART,
   "a revoked client certificate fails the TLS handshake (nginx answers 400 "
   "'The SSL certificate error')")
_d("ssl_trusted_certificate", SSL, "H S", 1, 1, OK)
_d("ssl_ocsp", SSL, "H S", 1, 1, NO, _OCSP)
_d("ssl_ocsp_responder", SSL, "H S", 1, 1, NO, _OCSP)
_d("ssl_ocsp_cache", SSL, "H S", 1, 1, NO, _OCSP)
_f("ssl_stapling", SSL, "H S", IGN, _STAPLE)
_d("ssl_stapling_file", SSL, "H S", 1, 1, IGN, _STAPLE)
_d("ssl_stapling_responder", SSL, "H S", 1, 1, IGN, _STAPLE)
_f("ssl_stapling_verify", SSL, "H S", IGN, _STAPLE)
_f("ssl_early_data", SSL, "H S", NO,
   "TLS 1.3 early data (0-RTT) is not implemented: clients wait for the full handshake")
_d("ssl_conf_command", SSL, "H S", 2, 2, NO,
   "OpenSSL configuration commands are not applied: " + _SSLDEF)
_f("ssl_reject_handshake", SSL, "H S", OK)
_d("ssl_key_log", SSL, "H S", 1, 1, IGN, "TLS key logging (NGINX Plus); responses unchanged")

# --- proxy (ngx_http_proxy_module) -------------------------------------------------------------
P = "ngx_http_proxy_module"
_d("proxy_pass", P, "L LIF LE", 1, 1, OK)
_d("proxy_redirect", P, "H S L", 1, 2, OK)
_d("proxy_set_header", P, "H S L", 2, 2, OK)
_d("proxy_hide_header", P, "H S L", 1, 1, OK)
_d("proxy_pass_header", P, "H S L", 1, 1, OK)
_d("proxy_http_version", P, "H S L", 1, 1, OK)
_d("proxy_connect_timeout", P, "H S L", 1, 1, OK)
_d("proxy_read_timeout", P, "H S L", 1, 1, OK)
_d("proxy_send_timeout", P, "H S L", 1, 1, OK)
_d("proxy_next_upstream", P, "H S L", 1, N, OK)
_d("proxy_next_upstream_tries", P, "H S L", 1, 1, OK)
_d("proxy_next_upstream_timeout", P, "H S L", 1, 1, OK)
_f("proxy_intercept_errors", P, "H S L", OK)
_f("proxy_pass_request_headers", P, "H S L", OK)
_f("proxy_pass_request_body", P, "H S L", OK)
_d("proxy_method", P, "H S L", 1, 1, OK)
_d("proxy_set_body", P, "H S L", 1, 1, OK)
_f("proxy_ignore_client_abort", P, "H S L", PART,
   "only the default (off) is implemented: the upstream request stops when the client goes")
_f("proxy_buffering", P, "H S L", PART, _STREAMING)
_f("proxy_request_buffering", P, "H S L", PART, _STREAMING)
_d("proxy_buffer_size", P, "H S L", 1, 1, IGN, _BUF)
_d("proxy_buffers", P, "H S L", 2, 2, IGN, _BUF)
_d("proxy_busy_buffers_size", P, "H S L", 1, 1, IGN, _BUF)
_d("proxy_temp_path", P, "H S L", 1, 4, IGN, _TEMP)
_d("proxy_max_temp_file_size", P, "H S L", 1, 1, IGN, _TEMP)
_d("proxy_temp_file_write_size", P, "H S L", 1, 1, IGN, _TEMP)
_d("proxy_send_lowat", P, "H S L", 1, 1, IGN, _TUNE)
_f("proxy_socket_keepalive", P, "H S L", IGN, _TUNE)
_d("proxy_headers_hash_max_size", P, "H S L", 1, 1, IGN, _HASH)
_d("proxy_headers_hash_bucket_size", P, "H S L", 1, 1, IGN, _HASH)
_d("proxy_ignore_headers", P, "H S L", 1, N, OK)
_d("proxy_bind", P, "H S L", 1, 2, NO, _BIND)
_d("proxy_limit_rate", P, "H S L", 1, 1, OK)
_f("proxy_force_ranges", P, "H S L", NO,
   "forcing byte ranges on proxied responses is not implemented: Range is left to the upstream")
_f("proxy_pass_trailers", P, "H S L", NO,
   "passing upstream trailers is not implemented: trailers from the upstream are dropped")
_d("proxy_cookie_domain", P, "H S L", 1, 2, OK)
_d("proxy_cookie_path", P, "H S L", 1, 2, OK)
_d("proxy_cookie_flags", P, "H S L", 1, N, OK)
_d("proxy_store", P, "H S L", 1, 1, NO, _STORE)
_d("proxy_store_access", P, "H S L", 1, 3, NO, _STORE)
_d("proxy_cache", P, "H S L", 1, 1, NO, _CACHE)
_d("proxy_cache_path", P, "H", 2, N, NO, _CACHE)
_d("proxy_cache_key", P, "H S L", 1, 1, NO, _CACHE)
_d("proxy_cache_valid", P, "H S L", 1, N, NO, _CACHE)
_d("proxy_cache_bypass", P, "H S L", 1, N, NO, _CACHE)
_d("proxy_no_cache", P, "H S L", 1, N, NO, _CACHE)
_d("proxy_cache_min_uses", P, "H S L", 1, 1, NO, _CACHE)
_d("proxy_cache_max_range_offset", P, "H S L", 1, 1, NO, _CACHE)
_d("proxy_cache_use_stale", P, "H S L", 1, N, NO, _CACHE)
_d("proxy_cache_methods", P, "H S L", 1, N, NO, _CACHE)
_f("proxy_cache_lock", P, "H S L", NO, _CACHE)
_d("proxy_cache_lock_timeout", P, "H S L", 1, 1, NO, _CACHE)
_d("proxy_cache_lock_age", P, "H S L", 1, 1, NO, _CACHE)
_f("proxy_cache_revalidate", P, "H S L", NO, _CACHE)
_f("proxy_cache_convert_head", P, "H S L", NO, _CACHE)
_f("proxy_cache_background_update", P, "H S L", NO, _CACHE)
_d("proxy_cache_purge", P, "H S L", 1, N, NO, _CACHE)
_f("proxy_ssl_session_reuse", P, "H S L", OK)
_d("proxy_ssl_protocols", P, "H S L", 1, N, OK)
_d("proxy_ssl_ciphers", P, "H S L", 1, 1, OK)
_d("proxy_ssl_name", P, "H S L", 1, 1, OK)
_f("proxy_ssl_server_name", P, "H S L", OK)
_f("proxy_ssl_verify", P, "H S L", OK)
_d("proxy_ssl_verify_depth", P, "H S L", 1, 1, PART,
   "OpenSSL's default verification depth applies: a longer chain nginx refuses is accepted")
_d("proxy_ssl_trusted_certificate", P, "H S L", 1, 1, OK)
_d("proxy_ssl_crl", P, "H S L", 1, 1, NO, _UPTLS)
_d("proxy_ssl_certificate", P, "H S L", 1, 1, OK)
_d("proxy_ssl_certificate_key", P, "H S L", 1, 1, OK)
_d("proxy_ssl_certificate_cache", P, "H S L", 1, 3, NO, _UPTLS)
_d("proxy_ssl_password_file", P, "H S L", 1, 1, NO, _UPTLS)
_d("proxy_ssl_conf_command", P, "H S L", 2, 2, NO, _UPTLS)
_d("proxy_ssl_key_log", P, "H S L", 1, 1, NO, _UPTLS)

# --- upstream groups and balancers (ngx_http_upstream_*_module) --------------------------------
UP = "ngx_http_upstream_module"
_d("upstream", UP, "H", 1, 1, OK, block=True)
_d("server", UP, "U", 1, N, OK)
_d("zone", "ngx_http_upstream_zone_module", "U", 1, 2, OK)
_d("hash", "ngx_http_upstream_hash_module", "U", 1, 2, OK)
_d("ip_hash", "ngx_http_upstream_ip_hash_module", "U", 0, 0, OK)
_d("least_conn", "ngx_http_upstream_least_conn_module", "U", 0, 0, OK)
_d("random", "ngx_http_upstream_random_module", "U", 0, 2, NO,
   "the random balancing method is not implemented: peers would be chosen differently")
UPKA = "ngx_http_upstream_keepalive_module"
_d("keepalive", UPKA, "U", 1, 1, OK)
_d("keepalive_requests", UPKA, "U", 1, 1, OK)
_d("keepalive_time", UPKA, "U", 1, 1, OK)
_d("keepalive_timeout", UPKA, "U", 1, 1, OK)
_d("resolver", UP, "U", 1, N, PART, _RESOLVER)
_d("resolver_timeout", UP, "U", 1, 1, PART, _RESOLVER)
_d("ntlm", "ngx_http_upstream_ntlm_module", "U", 0, 0, NO, _PLUS)
_d("state", UP, "U", 1, 1, NO, "upstream state files (NGINX Plus) are not implemented")
_d("sticky", "ngx_http_upstream_sticky_module", "U", 1, N, NO,
   "session persistence (NGINX Plus sticky) is not implemented: clients are not pinned")
_d("least_time", "ngx_http_upstream_least_time_module", "U", 1, 2, NO, _PLUS)
_d("queue", UP, "U", 1, 2, NO, "upstream request queueing (NGINX Plus) is not implemented")
_d("health_check", "ngx_http_upstream_hc_module", "L", 0, N, NO, _HC)
_d("match", "ngx_http_upstream_hc_module", "H", 1, 1, NO, _HC, block=True)

# --- rewrite (ngx_http_rewrite_module) -----------------------------------------------------------
RW = "ngx_http_rewrite_module"
_d("rewrite", RW, "S SIF L LIF", 2, 3, OK)
_d("return", RW, "S SIF L LIF", 1, 2, OK)
_d("break", RW, "S SIF L LIF", 0, 0, OK)
_d("if", RW, "S L", 1, N, OK, block=True)
_d("set", RW, "S SIF L LIF", 2, 2, OK)
_f("rewrite_log", RW, "H S SIF L LIF", IGN, "only controls notice-level logging of rewrites")
_f("uninitialized_variable_warn", RW, "H S SIF L LIF", IGN, "only controls a log warning")

# --- headers (ngx_http_headers_filter_module) --------------------------------------------------
HD = "ngx_http_headers_filter_module"
_d("add_header", HD, "H S L LIF", 2, 3, OK)
_d("add_trailer", HD, "H S L LIF", 2, 3, NO,
   "response trailers are not implemented: the trailer is not sent")
_d("add_header_inherit", HD, "H S L LIF", 1, 1, NO,
   "add_header inheritance modes are not implemented: nginx's default replacement is used")
_d("add_trailer_inherit", HD, "H S L LIF", 1, 1, NO,
   "response trailers are not implemented: the trailer is not sent")
_d("expires", HD, "H S L LIF", 1, 2, OK)

# --- access control and authentication -------------------------------------------------------
AC = "ngx_http_access_module"
_d("allow", AC, "H S L LE", 1, 1, OK)
_d("deny", AC, "H S L LE", 1, 1, OK)
AB = "ngx_http_auth_basic_module"
_d("auth_basic", AB, "H S L LE", 1, 1, OK)
_d("auth_basic_user_file", AB, "H S L LE", 1, 1, OK)
AR = "ngx_http_auth_request_module"
_d("auth_request", AR, "H S L", 1, 1, OK)
_d("auth_request_set", AR, "H S L", 2, 2, OK)
AJ = "ngx_http_auth_jwt_module"
_d("auth_jwt", AJ, "H S L LE", 1, 2, NO, _JWT)
_d("auth_jwt_key_file", AJ, "H S L LE", 1, 1, NO, _JWT)
_d("auth_jwt_key_request", AJ, "H S L LE", 1, 1, NO, _JWT)
_d("auth_jwt_key_cache", AJ, "H S L", 1, 1, NO, _JWT)
_d("auth_jwt_header_set", AJ, "H", 2, N, NO, _JWT)
_d("auth_jwt_claim_set", AJ, "H", 2, N, NO, _JWT)
_d("auth_jwt_leeway", AJ, "H S L", 1, 1, NO, _JWT)
_d("auth_jwt_type", AJ, "H S L LE", 1, 1, NO, _JWT)
_d("auth_jwt_require", AJ, "H S L LE", 1, N, NO, _JWT)

# --- request and connection limiting -----------------------------------------------------------
LR = "ngx_http_limit_req_module"
_d("limit_req", LR, "H S L", 1, 3, PART, _LIMIT)
_d("limit_req_zone", LR, "H", 3, 4, PART, _LIMIT)
_d("limit_req_status", LR, "H S L", 1, 1, PART, _LIMIT)
_d("limit_req_log_level", LR, "H S L", 1, 1, IGN, _LOGLVL)
_f("limit_req_dry_run", LR, "H S L", PART, _LIMIT)
LC = "ngx_http_limit_conn_module"
_d("limit_conn", LC, "H S L", 2, 2, PART, _LIMIT)
_d("limit_conn_zone", LC, "H", 2, 2, PART, _LIMIT)
_d("limit_conn_status", LC, "H S L", 1, 1, PART, _LIMIT)
_d("limit_conn_log_level", LC, "H S L", 1, 1, IGN, _LOGLVL)
_f("limit_conn_dry_run", LC, "H S L", PART, _LIMIT)
_d("limit_zone", "ngx_http_limit_zone_module", "H", 3, 3, NO,
   "obsolete (removed in nginx 1.7.6): use limit_conn_zone; no limit is applied")

# --- variables from tables: map, geo, geoip, split_clients ----------------------------------
MP = "ngx_http_map_module"
_d("map", MP, "H", 2, 2, OK, block=True)
_d("map_hash_max_size", MP, "H", 1, 1, IGN, _HASH)
_d("map_hash_bucket_size", MP, "H", 1, 1, IGN, _HASH)
_d("geo", "ngx_http_geo_module", "H", 1, 2, OK, block=True)
GI = "ngx_http_geoip_module"
_d("geoip_country", GI, "H", 1, 2, NO, _GEOIP)
_d("geoip_city", GI, "H", 1, 2, NO, _GEOIP)
_d("geoip_org", GI, "H", 1, 2, NO, _GEOIP)
_d("geoip_proxy", GI, "H", 1, 1, NO, _GEOIP)
_f("geoip_proxy_recursive", GI, "H", NO, _GEOIP)
_d("split_clients", "ngx_http_split_clients_module", "H", 2, 2, NO, _SPLIT, block=True)

# --- compression ---------------------------------------------------------------------------------
GZ = "ngx_http_gzip_filter_module"
_f("gzip", GZ, "H S L LIF", OK)
_d("gzip_buffers", GZ, "H S L", 2, 2, IGN, _GZBUF)
_d("gzip_comp_level", GZ, "H S L", 1, 1, OK)
_d("gzip_disable", GZ, "H S L", 1, N, OK)
_d("gzip_http_version", GZ, "H S L", 1, 1, OK)
_d("gzip_min_length", GZ, "H S L", 1, 1, OK)
_d("gzip_proxied", GZ, "H S L", 1, N, OK)
_d("gzip_types", GZ, "H S L", 1, N, OK)
_f("gzip_vary", GZ, "H S L", OK)
_d("gzip_window", GZ, "H S L", 1, 1, OK)
_d("gzip_hash", GZ, "H S L", 1, 1, OK)
_d("postpone_gzipping", GZ, "H S L", 1, 1, IGN, _GZBUF)
_f("gzip_no_buffer", GZ, "H S L", IGN, _GZBUF)
_d("gzip_static", "ngx_http_gzip_static_module", "H S L", 1, 1, OK)
_f("gunzip", "ngx_http_gunzip_filter_module", "H S L", NO, _GUNZIP)
_d("gunzip_buffers", "ngx_http_gunzip_filter_module", "H S L", 2, 2, NO, _GUNZIP)

# --- real client address (ngx_http_realip_module) ----------------------------------------------
RI = "ngx_http_realip_module"
_d("set_real_ip_from", RI, "H S L", 1, 1, OK)
_d("real_ip_header", RI, "H S L", 1, 1, OK)
_f("real_ip_recursive", RI, "H S L", OK)

# --- logging (ngx_http_log_module) -------------------------------------------------------------
LG = "ngx_http_log_module"
_d("access_log", LG, "H S L LIF LE", 1, N, OK)
_d("log_format", LG, "H", 2, N, OK)
_d("open_log_file_cache", LG, "H S L", 1, 4, IGN, _FCACHE)

# --- index, autoindex, static files ----------------------------------------------------------
_d("index", "ngx_http_index_module", "H S L", 1, N, OK)
AI = "ngx_http_autoindex_module"
_f("autoindex", AI, "H S L", OK)
_f("autoindex_exact_size", AI, "H S L", OK)
_d("autoindex_format", AI, "H S L", 1, 1, OK)
_f("autoindex_localtime", AI, "H S L", OK)
_f("random_index", "ngx_http_random_index_module", "L", NO,
   "random index files are not implemented: the regular index is used")

# --- body filters: charset, sub, addition, ssi ------------------------------------------------
CS = "ngx_http_charset_module"
_d("charset", CS, "H S L LIF", 1, 1, OK)
_d("source_charset", CS, "H S L LIF", 1, 1, PART,
   "no recoding: a source charset different from the destination leaves the answer as it is "
   "(nginx recodes it when a charset_map exists)")
_f("override_charset", CS, "H S L LIF", OK)
_d("charset_types", CS, "H S L", 1, N, OK)
_d("charset_map", CS, "H", 2, 2, NO, _CHARSET, block=True)
SF = "ngx_http_sub_filter_module"
_d("sub_filter", SF, "H S L", 2, 2, OK)
_d("sub_filter_types", SF, "H S L", 1, N, OK)
_f("sub_filter_once", SF, "H S L", OK)
_f("sub_filter_last_modified", SF, "H S L", OK)
AD = "ngx_http_addition_filter_module"
_d("add_before_body", AD, "H S L", 1, 1, OK)
_d("add_after_body", AD, "H S L", 1, 1, OK)
_d("addition_types", AD, "H S L", 1, N, OK)
SI = "ngx_http_ssi_filter_module"
_f("ssi", SI, "H S L LIF", NO, _SSI)
_f("ssi_silent_errors", SI, "H S L", NO, _SSI)
_f("ssi_ignore_recycled_buffers", SI, "H S L", NO, _SSI)
_d("ssi_min_file_chunk", SI, "H S L", 1, 1, NO, _SSI)
_d("ssi_value_length", SI, "H S L", 1, 1, NO, _SSI)
_d("ssi_types", SI, "H S L", 1, N, NO, _SSI)
_f("ssi_last_modified", SI, "H S L", NO, _SSI)

# --- content handlers and misc http modules ----------------------------------------------------
_d("stub_status", "ngx_http_stub_status_module", "S L", 0, 1, NO, _STATUS)
SL = "ngx_http_secure_link_module"
_d("secure_link", SL, "H S L", 1, 1, OK)
_d("secure_link_md5", SL, "H S L", 1, 1, OK)
_d("secure_link_secret", SL, "H S L", 1, 1, OK)
UI = "ngx_http_userid_filter_module"
_d("userid", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_service", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_name", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_domain", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_path", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_expires", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_flags", UI, "H S L", 1, N, NO, _USERID)
_d("userid_p3p", UI, "H S L", 1, 1, NO, _USERID)
_d("userid_mark", UI, "H S L", 1, 1, NO, _USERID)
RF = "ngx_http_referer_module"
_d("valid_referers", RF, "S L", 1, N, NO, _REFERER)
_d("referer_hash_max_size", RF, "S L", 1, 1, NO, _REFERER)
_d("referer_hash_bucket_size", RF, "S L", 1, 1, NO, _REFERER)
_d("empty_gif", "ngx_http_empty_gif_module", "L", 0, 0, NO,
   "empty_gif is not implemented: the location does not return the 1x1 GIF")
M4 = "ngx_http_mp4_module"
_d("mp4", M4, "L", 0, 0, NO, _MP4)
_d("mp4_buffer_size", M4, "H S L", 1, 1, NO, _MP4)
_d("mp4_max_buffer_size", M4, "H S L", 1, 1, NO, _MP4)
_f("mp4_start_key_frame", M4, "H S L", NO, _MP4)
_d("mp4_limit_rate", M4, "H S L", 1, 1, NO, _MP4)
_d("mp4_limit_rate_after", M4, "H S L", 1, 1, NO, _MP4)
_d("flv", "ngx_http_flv_module", "L", 0, 0, NO, _FLV)
DV = "ngx_http_dav_module"
_d("dav_methods", DV, "H S L", 1, N, NO, _DAV)
_f("create_full_put_path", DV, "H S L", NO, _DAV)
_d("min_delete_depth", DV, "H S L", 1, 1, NO, _DAV)
_d("dav_access", DV, "H S L", 1, 3, NO, _DAV)
_d("slice", "ngx_http_slice_filter_module", "H S L", 1, 1, NO, _SLICE)
MR = "ngx_http_mirror_module"
_d("mirror", MR, "H S L", 1, 1, NO, _MIRROR)
_f("mirror_request_body", MR, "H S L", NO, _MIRROR)
IF = "ngx_http_image_filter_module"
_d("image_filter", IF, "L", 1, 3, NO, _IMG)
_d("image_filter_buffer", IF, "H S L", 1, 1, NO, _IMG)
_d("image_filter_jpeg_quality", IF, "H S L", 1, 1, NO, _IMG)
_d("image_filter_webp_quality", IF, "H S L", 1, 1, NO, _IMG)
_d("image_filter_sharpen", IF, "H S L", 1, 1, NO, _IMG)
_f("image_filter_transparency", IF, "H S L", NO, _IMG)
_f("image_filter_interlace", IF, "H S L", NO, _IMG)
XS = "ngx_http_xslt_module"
_d("xml_entities", XS, "H S L", 1, 1, NO, _XSLT)
_f("xml_external_entities", XS, "H S L", NO, _XSLT)
_d("xslt_stylesheet", XS, "L", 1, N, NO, _XSLT)
_d("xslt_param", XS, "H S L", 2, 2, NO, _XSLT)
_d("xslt_string_param", XS, "H S L", 2, 2, NO, _XSLT)
_d("xslt_types", XS, "H S L", 1, N, NO, _XSLT)
_f("xslt_last_modified", XS, "H S L", NO, _XSLT)
BR = "ngx_http_browser_module"
_d("modern_browser", BR, "H S L", 1, 2, NO, _BROWSER)
_d("ancient_browser", BR, "H S L", 1, N, NO, _BROWSER)
_d("modern_browser_value", BR, "H S L", 1, 1, NO, _BROWSER)
_d("ancient_browser_value", BR, "H S L", 1, 1, NO, _BROWSER)
DG = "ngx_http_degradation_module"
_d("degradation", DG, "H", 1, 1, NO, "degradation mode (removed in nginx 1.25) is not implemented")
_d("degrade", DG, "L", 1, 1, NO, "degradation mode (removed in nginx 1.25) is not implemented")

# --- embedded Perl (ngx_http_perl_module) ------------------------------------------------------
PL = "ngx_http_perl_module"
_d("perl_modules", PL, "H", 1, 1, NO, _PERL)
_d("perl_require", PL, "H", 1, 1, NO, _PERL)
_d("perl", PL, "L LE", 1, 1, NO, _PERL)
_d("perl_set", PL, "H", 2, 2, NO, _PERL)

# --- njs (ngx_http_js_module) -------------------------------------------------------------------
JS = "ngx_http_js_module"
_d("js_import", JS, "H S L", 1, 3, NO, _NJS)
_d("js_include", JS, "H", 1, 1, NO, _NJS)
_d("js_path", JS, "H S L", 1, 1, NO, _NJS)
_d("js_content", JS, "L LIF LE", 1, 1, NO, _NJS)
_d("js_set", JS, "H S L", 2, 3, NO, _NJS)
_d("js_var", JS, "H S L", 1, 2, NO, _NJS)
_d("js_header_filter", JS, "L LIF LE", 1, 1, NO, _NJS)
_d("js_body_filter", JS, "L LIF LE", 1, 2, NO, _NJS)
_d("js_preload_object", JS, "H S L", 1, 3, NO, _NJS)
_d("js_shared_dict_zone", JS, "H", 1, N, NO, _NJS)
_d("js_periodic", JS, "L", 1, N, NO, _NJS)
_d("js_engine", JS, "H S L", 1, 1, NO, _NJS)
_d("js_context_reuse", JS, "H S L", 1, 1, NO, _NJS)
_d("js_fetch_buffer_size", JS, "H S L", 1, 1, NO, _NJS)
_d("js_fetch_ciphers", JS, "H S L", 1, 1, NO, _NJS)
_d("js_fetch_max_response_buffer_size", JS, "H S L", 1, 1, NO, _NJS)
_d("js_fetch_protocols", JS, "H S L", 1, N, NO, _NJS)
_d("js_fetch_timeout", JS, "H S L", 1, 1, NO, _NJS)
_d("js_fetch_trusted_certificate", JS, "H S L", 1, 1, NO, _NJS)
_f("js_fetch_verify", JS, "H S L", NO, _NJS)
_d("js_fetch_verify_depth", JS, "H S L", 1, 1, NO, _NJS)

# --- FastCGI (ngx_http_fastcgi_module) -----------------------------------------------------------
FC = "ngx_http_fastcgi_module"
_d("fastcgi_pass", FC, "L LIF", 1, 1, OK)
_d("fastcgi_param", FC, "H S L", 2, 3, OK)
_d("fastcgi_index", FC, "H S L", 1, 1, OK)
_d("fastcgi_split_path_info", FC, "L", 1, 1, OK)
_d("fastcgi_store", FC, "H S L", 1, 1, NO, _STORE)
_d("fastcgi_store_access", FC, "H S L", 1, 3, NO, _STORE)
_f("fastcgi_buffering", FC, "H S L", PART, _STREAMING)
_f("fastcgi_request_buffering", FC, "H S L", OK)
_f("fastcgi_ignore_client_abort", FC, "H S L", NO,
   "not implemented: a client that goes away ends the FastCGI request")
_d("fastcgi_bind", FC, "H S L", 1, 2, NO, _BIND)
_f("fastcgi_socket_keepalive", FC, "H S L", IGN, _TUNE)
_d("fastcgi_connect_timeout", FC, "H S L", 1, 1, OK)
_d("fastcgi_send_timeout", FC, "H S L", 1, 1, OK)
_d("fastcgi_send_lowat", FC, "H S L", 1, 1, IGN, _TUNE)
_d("fastcgi_read_timeout", FC, "H S L", 1, 1, OK)
_d("fastcgi_buffer_size", FC, "H S L", 1, 1, OK)
_d("fastcgi_buffers", FC, "H S L", 2, 2, IGN, _BUF)
_d("fastcgi_busy_buffers_size", FC, "H S L", 1, 1, IGN, _BUF)
_f("fastcgi_pass_request_headers", FC, "H S L", OK)
_f("fastcgi_pass_request_body", FC, "H S L", OK)
_f("fastcgi_intercept_errors", FC, "H S L", OK)
_f("fastcgi_force_ranges", FC, "H S L", NO, _FCGI)
_d("fastcgi_limit_rate", FC, "H S L", 1, 1, NO, _RATE)
_d("fastcgi_temp_path", FC, "H S L", 1, 4, IGN, _TEMP)
_d("fastcgi_max_temp_file_size", FC, "H S L", 1, 1, IGN, _TEMP)
_d("fastcgi_temp_file_write_size", FC, "H S L", 1, 1, IGN, _TEMP)
_d("fastcgi_next_upstream", FC, "H S L", 1, N, OK)
_d("fastcgi_next_upstream_tries", FC, "H S L", 1, 1, OK)
_d("fastcgi_next_upstream_timeout", FC, "H S L", 1, 1, OK)
_d("fastcgi_pass_header", FC, "H S L", 1, 1, OK)
_d("fastcgi_hide_header", FC, "H S L", 1, 1, OK)
_d("fastcgi_ignore_headers", FC, "H S L", 1, N, OK)
_d("fastcgi_catch_stderr", FC, "H S L", 1, 1, OK)
_f("fastcgi_keep_conn", FC, "H S L", OK)
_d("fastcgi_cache", FC, "H S L", 1, 1, NO, _FCACHE_FC)
_d("fastcgi_cache_path", FC, "H", 2, N, NO, _FCACHE_FC)
_d("fastcgi_cache_key", FC, "H S L", 1, 1, NO, _FCACHE_FC)
_d("fastcgi_cache_valid", FC, "H S L", 1, N, NO, _FCACHE_FC)
_d("fastcgi_cache_bypass", FC, "H S L", 1, N, NO, _FCACHE_FC)
_d("fastcgi_no_cache", FC, "H S L", 1, N, NO, _FCACHE_FC)
_d("fastcgi_cache_min_uses", FC, "H S L", 1, 1, NO, _FCACHE_FC)
_d("fastcgi_cache_max_range_offset", FC, "H S L", 1, 1, NO, _FCACHE_FC)
_d("fastcgi_cache_use_stale", FC, "H S L", 1, N, NO, _FCACHE_FC)
_d("fastcgi_cache_methods", FC, "H S L", 1, N, NO, _FCACHE_FC)
_f("fastcgi_cache_lock", FC, "H S L", NO, _FCACHE_FC)
_d("fastcgi_cache_lock_timeout", FC, "H S L", 1, 1, NO, _FCACHE_FC)
_d("fastcgi_cache_lock_age", FC, "H S L", 1, 1, NO, _FCACHE_FC)
_f("fastcgi_cache_revalidate", FC, "H S L", NO, _FCACHE_FC)
_f("fastcgi_cache_background_update", FC, "H S L", NO, _FCACHE_FC)
_d("fastcgi_cache_purge", FC, "H S L", 1, N, NO, _FCACHE_FC)

# --- uwsgi (ngx_http_uwsgi_module) -------------------------------------------------------------
UW = "ngx_http_uwsgi_module"
_d("uwsgi_pass", UW, "L LIF", 1, 1, NO, _UWSGI)
_d("uwsgi_param", UW, "H S L", 2, 3, NO, _UWSGI)
_d("uwsgi_modifier1", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_modifier2", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_string", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_store", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_store_access", UW, "H S L", 1, 3, NO, _UWSGI)
_f("uwsgi_buffering", UW, "H S L", NO, _UWSGI)
_f("uwsgi_request_buffering", UW, "H S L", NO, _UWSGI)
_f("uwsgi_ignore_client_abort", UW, "H S L", NO, _UWSGI)
_d("uwsgi_bind", UW, "H S L", 1, 2, NO, _UWSGI)
_f("uwsgi_socket_keepalive", UW, "H S L", NO, _UWSGI)
_d("uwsgi_connect_timeout", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_send_timeout", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_read_timeout", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_buffer_size", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_buffers", UW, "H S L", 2, 2, NO, _UWSGI)
_d("uwsgi_busy_buffers_size", UW, "H S L", 1, 1, NO, _UWSGI)
_f("uwsgi_pass_request_headers", UW, "H S L", NO, _UWSGI)
_f("uwsgi_pass_request_body", UW, "H S L", NO, _UWSGI)
_f("uwsgi_intercept_errors", UW, "H S L", NO, _UWSGI)
_f("uwsgi_force_ranges", UW, "H S L", NO, _UWSGI)
_d("uwsgi_limit_rate", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_temp_path", UW, "H S L", 1, 4, IGN, _TEMP)
_d("uwsgi_max_temp_file_size", UW, "H S L", 1, 1, IGN, _TEMP)
_d("uwsgi_temp_file_write_size", UW, "H S L", 1, 1, IGN, _TEMP)
_d("uwsgi_next_upstream", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_next_upstream_tries", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_next_upstream_timeout", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_pass_header", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_hide_header", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ignore_headers", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_cache", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_cache_path", UW, "H", 2, N, NO, _UWSGI)
_d("uwsgi_cache_key", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_cache_valid", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_cache_bypass", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_no_cache", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_cache_min_uses", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_cache_max_range_offset", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_cache_use_stale", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_cache_methods", UW, "H S L", 1, N, NO, _UWSGI)
_f("uwsgi_cache_lock", UW, "H S L", NO, _UWSGI)
_d("uwsgi_cache_lock_timeout", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_cache_lock_age", UW, "H S L", 1, 1, NO, _UWSGI)
_f("uwsgi_cache_revalidate", UW, "H S L", NO, _UWSGI)
_f("uwsgi_cache_background_update", UW, "H S L", NO, _UWSGI)
_d("uwsgi_cache_purge", UW, "H S L", 1, N, NO, _UWSGI)
_f("uwsgi_ssl_session_reuse", UW, "H S L", NO, _UWSGI)
_d("uwsgi_ssl_protocols", UW, "H S L", 1, N, NO, _UWSGI)
_d("uwsgi_ssl_ciphers", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_name", UW, "H S L", 1, 1, NO, _UWSGI)
_f("uwsgi_ssl_server_name", UW, "H S L", NO, _UWSGI)
_f("uwsgi_ssl_verify", UW, "H S L", NO, _UWSGI)
_d("uwsgi_ssl_verify_depth", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_trusted_certificate", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_crl", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_certificate", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_certificate_key", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_certificate_cache", UW, "H S L", 1, 3, NO, _UWSGI)
_d("uwsgi_ssl_password_file", UW, "H S L", 1, 1, NO, _UWSGI)
_d("uwsgi_ssl_conf_command", UW, "H S L", 2, 2, NO, _UWSGI)
_d("uwsgi_ssl_key_log", UW, "H S L", 1, 1, NO, _UWSGI)

# --- SCGI (ngx_http_scgi_module) ---------------------------------------------------------------
SC = "ngx_http_scgi_module"
_d("scgi_pass", SC, "L LIF", 1, 1, NO, _SCGI)
_d("scgi_param", SC, "H S L", 2, 3, NO, _SCGI)
_d("scgi_store", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_store_access", SC, "H S L", 1, 3, NO, _SCGI)
_f("scgi_buffering", SC, "H S L", NO, _SCGI)
_f("scgi_request_buffering", SC, "H S L", NO, _SCGI)
_f("scgi_ignore_client_abort", SC, "H S L", NO, _SCGI)
_d("scgi_bind", SC, "H S L", 1, 2, NO, _SCGI)
_f("scgi_socket_keepalive", SC, "H S L", NO, _SCGI)
_d("scgi_connect_timeout", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_send_timeout", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_read_timeout", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_buffer_size", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_buffers", SC, "H S L", 2, 2, NO, _SCGI)
_d("scgi_busy_buffers_size", SC, "H S L", 1, 1, NO, _SCGI)
_f("scgi_pass_request_headers", SC, "H S L", NO, _SCGI)
_f("scgi_pass_request_body", SC, "H S L", NO, _SCGI)
_f("scgi_intercept_errors", SC, "H S L", NO, _SCGI)
_f("scgi_force_ranges", SC, "H S L", NO, _SCGI)
_d("scgi_limit_rate", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_temp_path", SC, "H S L", 1, 4, IGN, _TEMP)
_d("scgi_max_temp_file_size", SC, "H S L", 1, 1, IGN, _TEMP)
_d("scgi_temp_file_write_size", SC, "H S L", 1, 1, IGN, _TEMP)
_d("scgi_next_upstream", SC, "H S L", 1, N, NO, _SCGI)
_d("scgi_next_upstream_tries", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_next_upstream_timeout", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_pass_header", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_hide_header", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_ignore_headers", SC, "H S L", 1, N, NO, _SCGI)
_d("scgi_cache", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_cache_path", SC, "H", 2, N, NO, _SCGI)
_d("scgi_cache_key", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_cache_valid", SC, "H S L", 1, N, NO, _SCGI)
_d("scgi_cache_bypass", SC, "H S L", 1, N, NO, _SCGI)
_d("scgi_no_cache", SC, "H S L", 1, N, NO, _SCGI)
_d("scgi_cache_min_uses", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_cache_max_range_offset", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_cache_use_stale", SC, "H S L", 1, N, NO, _SCGI)
_d("scgi_cache_methods", SC, "H S L", 1, N, NO, _SCGI)
_f("scgi_cache_lock", SC, "H S L", NO, _SCGI)
_d("scgi_cache_lock_timeout", SC, "H S L", 1, 1, NO, _SCGI)
_d("scgi_cache_lock_age", SC, "H S L", 1, 1, NO, _SCGI)
_f("scgi_cache_revalidate", SC, "H S L", NO, _SCGI)
_f("scgi_cache_background_update", SC, "H S L", NO, _SCGI)
_d("scgi_cache_purge", SC, "H S L", 1, N, NO, _SCGI)

# --- gRPC (ngx_http_grpc_module) ---------------------------------------------------------------
GR = "ngx_http_grpc_module"
_d("grpc_pass", GR, "L LIF", 1, 1, NO, _GRPC)
_d("grpc_bind", GR, "H S L", 1, 2, NO, _GRPC)
_f("grpc_socket_keepalive", GR, "H S L", NO, _GRPC)
_d("grpc_connect_timeout", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_send_timeout", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_read_timeout", GR, "H S L", 1, 1, NO, _GRPC)
_f("grpc_intercept_errors", GR, "H S L", NO, _GRPC)
_d("grpc_buffer_size", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_next_upstream", GR, "H S L", 1, N, NO, _GRPC)
_d("grpc_next_upstream_tries", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_next_upstream_timeout", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_set_header", GR, "H S L", 2, 2, NO, _GRPC)
_d("grpc_pass_header", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_hide_header", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ignore_headers", GR, "H S L", 1, N, NO, _GRPC)
_f("grpc_ssl_session_reuse", GR, "H S L", NO, _GRPC)
_d("grpc_ssl_protocols", GR, "H S L", 1, N, NO, _GRPC)
_d("grpc_ssl_ciphers", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_name", GR, "H S L", 1, 1, NO, _GRPC)
_f("grpc_ssl_server_name", GR, "H S L", NO, _GRPC)
_f("grpc_ssl_verify", GR, "H S L", NO, _GRPC)
_d("grpc_ssl_verify_depth", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_trusted_certificate", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_crl", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_certificate", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_certificate_key", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_certificate_cache", GR, "H S L", 1, 3, NO, _GRPC)
_d("grpc_ssl_password_file", GR, "H S L", 1, 1, NO, _GRPC)
_d("grpc_ssl_conf_command", GR, "H S L", 2, 2, NO, _GRPC)
_d("grpc_ssl_key_log", GR, "H S L", 1, 1, NO, _GRPC)

# --- memcached (ngx_http_memcached_module) -----------------------------------------------------
MC = "ngx_http_memcached_module"
_d("memcached_pass", MC, "L LIF", 1, 1, NO, _MEMC)
_d("memcached_bind", MC, "H S L", 1, 2, NO, _MEMC)
_f("memcached_socket_keepalive", MC, "H S L", NO, _MEMC)
_d("memcached_connect_timeout", MC, "H S L", 1, 1, NO, _MEMC)
_d("memcached_send_timeout", MC, "H S L", 1, 1, NO, _MEMC)
_d("memcached_read_timeout", MC, "H S L", 1, 1, NO, _MEMC)
_d("memcached_buffer_size", MC, "H S L", 1, 1, NO, _MEMC)
_d("memcached_next_upstream", MC, "H S L", 1, N, NO, _MEMC)
_d("memcached_next_upstream_tries", MC, "H S L", 1, 1, NO, _MEMC)
_d("memcached_next_upstream_timeout", MC, "H S L", 1, 1, NO, _MEMC)
_d("memcached_gzip_flag", MC, "H S L", 1, 1, NO, _MEMC)
_f("memcached_force_ranges", MC, "H S L", NO, _MEMC)

# --- CONNECT tunnel (ngx_http_tunnel_module) ---------------------------------------------------
TN = "ngx_http_tunnel_module"
_d("tunnel_pass", TN, "S L LIF", 0, 1, NO, _TUNNEL)
_d("tunnel_allow_upstream", TN, "H S L", 1, N, NO, _TUNNEL)
_d("tunnel_bind", TN, "H S L", 1, 2, NO, _TUNNEL)
_f("tunnel_bind_dynamic", TN, "H S L", NO, _TUNNEL)
_d("tunnel_buffer_size", TN, "H S L", 1, 1, NO, _TUNNEL)
_d("tunnel_connect_timeout", TN, "H S L", 1, 1, NO, _TUNNEL)
_d("tunnel_read_timeout", TN, "H S L", 1, 1, NO, _TUNNEL)
_d("tunnel_send_timeout", TN, "H S L", 1, 1, NO, _TUNNEL)
_d("tunnel_send_lowat", TN, "H S L", 1, 1, NO, _TUNNEL)
_f("tunnel_socket_keepalive", TN, "H S L", NO, _TUNNEL)
_d("tunnel_next_upstream", TN, "H S L", 1, N, NO, _TUNNEL)
_d("tunnel_next_upstream_tries", TN, "H S L", 1, 1, NO, _TUNNEL)
_d("tunnel_next_upstream_timeout", TN, "H S L", 1, 1, NO, _TUNNEL)

# --- NGINX Plus only (http) --------------------------------------------------------------------
_d("api", "ngx_http_api_module", "L", 0, 1, NO, "the NGINX Plus REST API is not implemented")
_d("status", "ngx_http_status_module", "L", 0, 0, NO, _STATUS)
_d("status_format", "ngx_http_status_module", "H S L", 1, 2, NO, _STATUS)
_d("status_zone", "ngx_http_api_module", "S L LIF", 1, 1, NO,
   "NGINX Plus status zones are not implemented: no statistics are collected")
_d("upstream_conf", "ngx_http_upstream_conf_module", "L", 0, 0, NO,
   "the NGINX Plus upstream_conf API is not implemented")
KV = "ngx_http_keyval_module"
_d("keyval", KV, "H", 3, 3, NO, "key-value store variables (NGINX Plus) are not implemented")
_d("keyval_zone", KV, "H", 1, N, NO, "key-value store variables (NGINX Plus) are not implemented")
_d("internal_redirect", "ngx_http_internal_redirect_module", "S L", 1, 1, NO, _PLUS)
_d("f4f", "ngx_http_f4f_module", "L", 0, 0, NO, _PLUS)
_d("f4f_buffer_size", "ngx_http_f4f_module", "H S L", 1, 1, NO, _PLUS)
HLS = "ngx_http_hls_module"
_d("hls", HLS, "L", 0, 0, NO, _PLUS)
_d("hls_buffers", HLS, "H S L", 2, 2, NO, _PLUS)
_f("hls_forward_args", HLS, "H S L", NO, _PLUS)
_d("hls_fragment", HLS, "H S L", 1, 1, NO, _PLUS)
_d("hls_mp4_buffer_size", HLS, "H S L", 1, 1, NO, _PLUS)
_d("hls_mp4_max_buffer_size", HLS, "H S L", 1, 1, NO, _PLUS)
SLG = "ngx_http_session_log_module"
_d("session_log", SLG, "H S L", 1, 1, NO, _PLUS)
_d("session_log_format", SLG, "H", 2, N, NO, _PLUS)
_d("session_log_zone", SLG, "H", 2, 6, NO, _PLUS)

# --- nginx's separately distributed modules (ngx_otel_module, nginx-acme) ------------------
OT = "ngx_otel_module"
_OT = "OpenTelemetry tracing is not implemented: no spans are exported or propagated"
_d("otel_exporter", OT, "H", 0, 0, NO, _OT, block=True)
_d("otel_service_name", OT, "H", 1, 1, NO, _OT)
_d("otel_resource_attr", OT, "H", 2, 2, NO, _OT)
_d("otel_trace", OT, "H S L", 1, 1, NO, _OT)
_d("otel_trace_context", OT, "H S L", 1, 1, NO, _OT)
_d("otel_span_name", OT, "H S L", 1, 1, NO, _OT)
_d("otel_span_attr", OT, "H S L", 2, 2, NO, _OT)
ACME = "ngx_http_acme_module"
_ACME = "ACME certificate issuance is not implemented: no certificate is obtained or renewed"
_d("acme_issuer", ACME, "H", 1, 1, NO, _ACME, block=True)
_d("acme_shared_zone", ACME, "H", 1, 1, NO, _ACME)
_d("acme_certificate", ACME, "S", 1, N, NO, _ACME)

# --- stream (TCP/UDP): core, proxy, upstream, ssl and the other ngx_stream_* modules ---------
STC = "ngx_stream_core_module"
_d("stream", "ngx_stream_module", "M", 0, 0, NO, _STREAM, block=True)
_d("server", STC, "ST", 0, 0, NO, _STREAM, block=True)
_d("listen", STC, "STS", 1, N, NO, _STREAM)
_d("server_name", STC, "STS", 1, N, NO, _STREAM)
_d("error_log", STC, "ST STS", 1, N, NO, _STREAM)
_d("resolver", STC, "ST STS", 1, N, NO, _STREAM_MAIL)
_d("resolver_timeout", STC, "ST STS", 1, 1, NO, _STREAM_MAIL)
_d("proxy_protocol_timeout", STC, "ST STS", 1, 1, NO, _STREAM)
_f("tcp_nodelay", STC, "ST STS", IGN, _TUNE)
_d("preread_buffer_size", STC, "ST STS", 1, 1, IGN, _TUNE)
_d("preread_timeout", STC, "ST STS", 1, 1, NO, _STREAM)
_d("variables_hash_max_size", STC, "ST", 1, 1, IGN, _HASH)
_d("variables_hash_bucket_size", STC, "ST", 1, 1, IGN, _HASH)
_d("server_names_hash_max_size", STC, "ST", 1, 1, IGN, _HASH)
_d("server_names_hash_bucket_size", STC, "ST", 1, 1, IGN, _HASH)
STP = "ngx_stream_proxy_module"
_d("proxy_pass", STP, "STS", 1, 1, NO, _STREAM)
_d("proxy_bind", STP, "ST STS", 1, 2, NO, _STREAM)
_f("proxy_socket_keepalive", STP, "ST STS", IGN, _TUNE)
_d("proxy_connect_timeout", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_timeout", STP, "ST STS", 1, 1, NO, _STREAM_MAIL)
_d("proxy_buffer_size", STP, "ST STS", 1, 1, IGN, _BUF)
_d("proxy_downstream_buffer", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_upstream_buffer", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_upload_rate", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_download_rate", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_requests", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_responses", STP, "ST STS", 1, 1, NO, _STREAM)
_f("proxy_next_upstream", STP, "ST STS", NO, _STREAM)
_d("proxy_next_upstream_tries", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_next_upstream_timeout", STP, "ST STS", 1, 1, NO, _STREAM)
_f("proxy_protocol", STP, "ST STS", NO, _STREAM_MAIL)
_f("proxy_half_close", STP, "ST STS", NO, _STREAM)
_f("proxy_ssl", STP, "ST STS", NO, _STREAM)
_f("proxy_ssl_session_reuse", STP, "ST STS", NO, _STREAM)
_d("proxy_ssl_protocols", STP, "ST STS", 1, N, NO, _STREAM)
_d("proxy_ssl_ciphers", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_name", STP, "ST STS", 1, 1, NO, _STREAM)
_f("proxy_ssl_server_name", STP, "ST STS", NO, _STREAM)
_f("proxy_ssl_verify", STP, "ST STS", NO, _STREAM)
_d("proxy_ssl_verify_depth", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_trusted_certificate", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_crl", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_certificate", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_certificate_key", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_certificate_cache", STP, "ST STS", 1, 3, NO, _STREAM)
_d("proxy_ssl_password_file", STP, "ST STS", 1, 1, NO, _STREAM)
_d("proxy_ssl_conf_command", STP, "ST STS", 2, 2, NO, _STREAM)
_d("proxy_ssl_alpn", STP, "ST STS", 1, N, NO, _STREAM)
_d("proxy_ssl_key_log", STP, "ST STS", 1, 1, NO, _STREAM)
STU_ = "ngx_stream_upstream_module"
_d("upstream", STU_, "ST", 1, 1, NO, _STREAM, block=True)
_d("server", STU_, "STU", 1, N, NO, _STREAM)
_d("zone", "ngx_stream_upstream_zone_module", "STU", 1, 2, NO, _STREAM)
_d("state", STU_, "STU", 1, 1, NO, _STREAM)
_d("hash", "ngx_stream_upstream_hash_module", "STU", 1, 2, NO, _STREAM)
_d("least_conn", "ngx_stream_upstream_least_conn_module", "STU", 0, 0, NO, _STREAM)
_d("random", "ngx_stream_upstream_random_module", "STU", 0, 2, NO, _STREAM)
_d("least_time", "ngx_stream_upstream_least_time_module", "STU", 1, 2, NO, _STREAM)
_d("resolver", STU_, "STU", 1, N, NO, _STREAM)
_d("resolver_timeout", STU_, "STU", 1, 1, NO, _STREAM)
STH = "ngx_stream_upstream_hc_module"
_d("health_check", STH, "STS", 0, N, NO, _STREAM)
_d("health_check_timeout", STH, "ST STS", 1, 1, NO, _STREAM)
_d("match", STH, "ST", 1, 1, NO, _STREAM, block=True)
STSSL = "ngx_stream_ssl_module"
_d("ssl_handshake_timeout", STSSL, "ST STS", 1, 1, NO, _STREAM_MAIL)
_d("ssl_certificate", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_certificate_key", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_certificate_cache", STSSL, "ST STS", 1, 3, NO, _STREAM)
_d("ssl_password_file", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_dhparam", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_ecdh_curve", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_protocols", STSSL, "ST STS", 1, N, NO, _STREAM)
_d("ssl_ciphers", STSSL, "ST STS", 1, 1, NO, _STREAM)
_f("ssl_prefer_server_ciphers", STSSL, "ST STS", NO, _STREAM)
_d("ssl_session_cache", STSSL, "ST STS", 1, 2, NO, _STREAM)
_f("ssl_session_tickets", STSSL, "ST STS", NO, _STREAM)
_d("ssl_session_ticket_key", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_session_timeout", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_verify_client", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_verify_depth", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_client_certificate", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_trusted_certificate", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_crl", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_ocsp", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_ocsp_responder", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_ocsp_cache", STSSL, "ST STS", 1, 1, NO, _STREAM)
_f("ssl_stapling", STSSL, "ST STS", NO, _STREAM)
_d("ssl_stapling_file", STSSL, "ST STS", 1, 1, NO, _STREAM)
_d("ssl_stapling_responder", STSSL, "ST STS", 1, 1, NO, _STREAM)
_f("ssl_stapling_verify", STSSL, "ST STS", NO, _STREAM)
_d("ssl_conf_command", STSSL, "ST STS", 2, 2, NO, _STREAM)
_d("ssl_alpn", STSSL, "ST STS", 1, N, NO, _STREAM)
_f("ssl_reject_handshake", STSSL, "ST STS", NO, _STREAM)
_f("ssl_certificate_compression", STSSL, "ST STS", NO, _STREAM)
_d("ssl_key_log", STSSL, "ST STS", 1, 1, NO, _STREAM)
_f("ssl_preread", "ngx_stream_ssl_preread_module", "ST STS", NO, _STREAM)
_d("allow", "ngx_stream_access_module", "ST STS", 1, 1, NO, _STREAM)
_d("deny", "ngx_stream_access_module", "ST STS", 1, 1, NO, _STREAM)
_d("access_log", "ngx_stream_log_module", "ST STS", 1, N, NO, _STREAM)
_d("log_format", "ngx_stream_log_module", "ST", 2, N, NO, _STREAM)
_d("open_log_file_cache", "ngx_stream_log_module", "ST STS", 1, 4, IGN, _FCACHE)
_d("return", "ngx_stream_return_module", "STS", 1, 1, NO, _STREAM)
_d("set", "ngx_stream_set_module", "STS", 2, 2, NO, _STREAM)
_d("pass", "ngx_stream_pass_module", "STS", 1, 1, NO, _STREAM)
_d("map", "ngx_stream_map_module", "ST", 2, 2, NO, _STREAM, block=True)
_d("map_hash_max_size", "ngx_stream_map_module", "ST", 1, 1, IGN, _HASH)
_d("map_hash_bucket_size", "ngx_stream_map_module", "ST", 1, 1, IGN, _HASH)
_d("geo", "ngx_stream_geo_module", "ST", 1, 2, NO, _STREAM, block=True)
_d("geoip_country", "ngx_stream_geoip_module", "ST", 1, 2, NO, _STREAM)
_d("geoip_city", "ngx_stream_geoip_module", "ST", 1, 2, NO, _STREAM)
_d("geoip_org", "ngx_stream_geoip_module", "ST", 1, 2, NO, _STREAM)
_d("split_clients", "ngx_stream_split_clients_module", "ST", 2, 2, NO, _STREAM, block=True)
_d("limit_conn", "ngx_stream_limit_conn_module", "ST STS", 2, 2, NO, _STREAM)
_d("limit_conn_zone", "ngx_stream_limit_conn_module", "ST", 2, 2, NO, _STREAM)
_d("limit_conn_log_level", "ngx_stream_limit_conn_module", "ST STS", 1, 1, NO, _STREAM)
_f("limit_conn_dry_run", "ngx_stream_limit_conn_module", "ST STS", NO, _STREAM)
_d("set_real_ip_from", "ngx_stream_realip_module", "ST STS", 1, 1, NO, _STREAM)
_d("status_zone", "ngx_stream_api_module", "STS", 1, 1, NO, _STREAM)
_d("keyval", "ngx_stream_keyval_module", "ST", 3, 3, NO, _STREAM)
_d("keyval_zone", "ngx_stream_keyval_module", "ST", 1, N, NO, _STREAM)
STJ = "ngx_stream_js_module"
_d("js_import", STJ, "ST STS", 1, 3, NO, _STREAM)
_d("js_include", STJ, "ST", 1, 1, NO, _STREAM)
_d("js_path", STJ, "ST STS", 1, 1, NO, _STREAM)
_d("js_set", STJ, "ST STS", 2, 3, NO, _STREAM)
_d("js_var", STJ, "ST STS", 1, 2, NO, _STREAM)
_d("js_access", STJ, "ST STS", 1, 1, NO, _STREAM)
_d("js_preread", STJ, "ST STS", 1, 1, NO, _STREAM)
_d("js_filter", STJ, "ST STS", 1, 1, NO, _STREAM)
_d("js_preload_object", STJ, "ST STS", 1, 3, NO, _STREAM)
_d("js_shared_dict_zone", STJ, "ST", 1, N, NO, _STREAM)
_d("js_periodic", STJ, "STS", 1, N, NO, _STREAM)
_d("js_fetch_trusted_certificate", STJ, "ST STS", 1, 1, NO, _STREAM)
ZS = "ngx_stream_zone_sync_module"
_d("zone_sync", ZS, "STS", 0, 0, NO, _STREAM)
_d("zone_sync_server", ZS, "STS", 1, 2, NO, _STREAM)
_d("zone_sync_buffers", ZS, "ST STS", 2, 2, NO, _STREAM)
_d("zone_sync_connect_retry_interval", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_connect_timeout", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_interval", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_recv_buffer_size", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_timeout", ZS, "ST STS", 1, 1, NO, _STREAM)
_f("zone_sync_ssl", ZS, "ST STS", NO, _STREAM)
_d("zone_sync_ssl_certificate", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_ssl_certificate_key", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_ssl_ciphers", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_ssl_crl", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_ssl_name", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_ssl_password_file", ZS, "ST STS", 1, 1, NO, _STREAM)
_d("zone_sync_ssl_protocols", ZS, "ST STS", 1, N, NO, _STREAM)
_f("zone_sync_ssl_server_name", ZS, "ST STS", NO, _STREAM)
_d("zone_sync_ssl_trusted_certificate", ZS, "ST STS", 1, 1, NO, _STREAM)
_f("zone_sync_ssl_verify", ZS, "ST STS", NO, _STREAM)
_d("zone_sync_ssl_verify_depth", ZS, "ST STS", 1, 1, NO, _STREAM)
_f("mqtt_preread", "ngx_stream_mqtt_preread_module", "ST STS", NO, _STREAM)
_f("mqtt", "ngx_stream_mqtt_filter_module", "ST STS", NO, _STREAM)
_d("mqtt_set_connect", "ngx_stream_mqtt_filter_module", "ST STS", 2, 2, NO, _STREAM)

# --- mail proxy (ngx_mail_* modules) ---------------------------------------------------------
MLC = "ngx_mail_core_module"
_d("mail", "ngx_mail_module", "M", 0, 0, NO, _MAIL, block=True)
_d("server", MLC, "ML", 0, 0, NO, _MAIL, block=True)
_d("listen", MLC, "MLS", 1, N, NO, _MAIL)
_d("protocol", MLC, "MLS", 1, 1, NO, _MAIL)
_d("timeout", MLC, "ML MLS", 1, 1, NO, _MAIL)
_d("server_name", MLC, "ML MLS", 1, 1, NO, _MAIL)
_d("error_log", MLC, "ML MLS", 1, N, NO, _MAIL)
_d("resolver", MLC, "ML MLS", 1, N, NO, _MAIL)
_d("resolver_timeout", MLC, "ML MLS", 1, 1, NO, _MAIL)
_d("max_errors", MLC, "ML MLS", 1, 1, NO, _MAIL)
MAH = "ngx_mail_auth_http_module"
_d("auth_http", MAH, "ML MLS", 1, 1, NO, _MAIL)
_d("auth_http_timeout", MAH, "ML MLS", 1, 1, NO, _MAIL)
_d("auth_http_header", MAH, "ML MLS", 2, 2, NO, _MAIL)
_f("auth_http_pass_client_cert", MAH, "ML MLS", NO, _MAIL)
MPX = "ngx_mail_proxy_module"
_f("proxy", MPX, "ML MLS", NO, _MAIL)
_d("proxy_buffer", MPX, "ML MLS", 1, 1, NO, _MAIL)
_d("proxy_timeout", MPX, "ML MLS", 1, 1, NO, _MAIL)
_f("proxy_pass_error_message", MPX, "ML MLS", NO, _MAIL)
_f("proxy_protocol", MPX, "ML MLS", NO, _MAIL)
_f("proxy_smtp_auth", MPX, "ML MLS", NO, _MAIL)
_f("xclient", MPX, "ML MLS", NO, _MAIL)
_d("set_real_ip_from", "ngx_mail_realip_module", "MLS", 1, 1, NO, _MAIL)
_d("imap_client_buffer", "ngx_mail_imap_module", "ML MLS", 1, 1, NO, _MAIL)
_d("imap_capabilities", "ngx_mail_imap_module", "ML MLS", 1, N, NO, _MAIL)
_d("imap_auth", "ngx_mail_imap_module", "ML MLS", 1, N, NO, _MAIL)
_d("pop3_capabilities", "ngx_mail_pop3_module", "ML MLS", 1, N, NO, _MAIL)
_d("pop3_auth", "ngx_mail_pop3_module", "ML MLS", 1, N, NO, _MAIL)
_d("smtp_client_buffer", "ngx_mail_smtp_module", "ML MLS", 1, 1, NO, _MAIL)
_d("smtp_greeting_delay", "ngx_mail_smtp_module", "ML MLS", 1, 1, NO, _MAIL)
_d("smtp_capabilities", "ngx_mail_smtp_module", "ML MLS", 1, N, NO, _MAIL)
_d("smtp_auth", "ngx_mail_smtp_module", "ML MLS", 1, N, NO, _MAIL)
MSSL = "ngx_mail_ssl_module"
_f("ssl", MSSL, "ML MLS", NO, _MAIL)
_d("starttls", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_handshake_timeout", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_certificate", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_certificate_key", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_password_file", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_dhparam", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_ecdh_curve", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_protocols", MSSL, "ML MLS", 1, N, NO, _MAIL)
_d("ssl_ciphers", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_f("ssl_prefer_server_ciphers", MSSL, "ML MLS", NO, _MAIL)
_d("ssl_session_cache", MSSL, "ML MLS", 1, 2, NO, _MAIL)
_f("ssl_session_tickets", MSSL, "ML MLS", NO, _MAIL)
_d("ssl_session_ticket_key", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_session_timeout", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_verify_client", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_verify_depth", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_client_certificate", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_trusted_certificate", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_crl", MSSL, "ML MLS", 1, 1, NO, _MAIL)
_d("ssl_conf_command", MSSL, "ML MLS", 2, 2, NO, _MAIL)

# --- third-party modules seen in real configs ---------------------------------------------------
LUA = "ngx_http_lua_module"
_d("lua_package_path", LUA, "H", 1, 1, NO, _LUA)
_d("lua_package_cpath", LUA, "H", 1, 1, NO, _LUA)
_d("lua_shared_dict", LUA, "H", 2, 2, NO, _LUA)
_f("lua_code_cache", LUA, "H S L LIF", NO, _LUA)
_f("lua_need_request_body", LUA, "H S L LIF", NO, _LUA)
_d("init_by_lua", LUA, "H", 1, 1, NO, _LUA)
_d("init_by_lua_file", LUA, "H", 1, 1, NO, _LUA)
_d("init_by_lua_block", LUA, "H", 0, 0, NO, _LUA, block=True)
_d("init_worker_by_lua", LUA, "H", 1, 1, NO, _LUA)
_d("init_worker_by_lua_file", LUA, "H", 1, 1, NO, _LUA)
_d("init_worker_by_lua_block", LUA, "H", 0, 0, NO, _LUA, block=True)
_d("set_by_lua", LUA, "S SIF L LIF", 2, N, NO, _LUA)
_d("set_by_lua_file", LUA, "S SIF L LIF", 2, N, NO, _LUA)
_d("set_by_lua_block", LUA, "S SIF L LIF", 1, 1, NO, _LUA, block=True)
_d("rewrite_by_lua", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("rewrite_by_lua_file", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("rewrite_by_lua_block", LUA, "H S L LIF", 0, 0, NO, _LUA, block=True)
_d("access_by_lua", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("access_by_lua_file", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("access_by_lua_block", LUA, "H S L LIF", 0, 0, NO, _LUA, block=True)
_d("content_by_lua", LUA, "L LIF", 1, 1, NO, _LUA)
_d("content_by_lua_file", LUA, "L LIF", 1, 1, NO, _LUA)
_d("content_by_lua_block", LUA, "L LIF", 0, 0, NO, _LUA, block=True)
_d("header_filter_by_lua", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("header_filter_by_lua_file", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("header_filter_by_lua_block", LUA, "H S L LIF", 0, 0, NO, _LUA, block=True)
_d("body_filter_by_lua", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("body_filter_by_lua_file", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("body_filter_by_lua_block", LUA, "H S L LIF", 0, 0, NO, _LUA, block=True)
_d("log_by_lua", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("log_by_lua_file", LUA, "H S L LIF", 1, 1, NO, _LUA)
_d("log_by_lua_block", LUA, "H S L LIF", 0, 0, NO, _LUA, block=True)
_d("balancer_by_lua_file", LUA, "U", 1, 1, NO, _LUA)
_d("balancer_by_lua_block", LUA, "U", 0, 0, NO, _LUA, block=True)
_d("ssl_certificate_by_lua_file", LUA, "H S", 1, 1, NO, _LUA)
_d("ssl_certificate_by_lua_block", LUA, "H S", 0, 0, NO, _LUA, block=True)

HM = "ngx_http_headers_more_filter_module"
_HM = "third-party module (headers-more) is not part of Tern: headers are not changed"
_d("more_set_headers", HM, "H S L LIF", 1, N, NO, _HM)
_d("more_clear_headers", HM, "H S L LIF", 1, N, NO, _HM)
_d("more_set_input_headers", HM, "H S L LIF", 1, N, NO, _HM)
_d("more_clear_input_headers", HM, "H S L LIF", 1, N, NO, _HM)

SM = "ngx_http_set_misc_module"
_SM = "third-party module (set-misc) is not part of Tern: the variable is never set"
_d("set_random", SM, "S SIF L LIF", 3, 3, NO, _SM)
_d("set_secure_random_alphanum", SM, "S SIF L LIF", 2, 2, NO, _SM)
_d("set_if_empty", SM, "S SIF L LIF", 2, 2, NO, _SM)
_d("set_md5", SM, "S SIF L LIF", 1, 2, NO, _SM)
_d("set_sha1", SM, "S SIF L LIF", 1, 2, NO, _SM)
_d("set_escape_uri", SM, "S SIF L LIF", 1, 2, NO, _SM)
_d("set_unescape_uri", SM, "S SIF L LIF", 1, 2, NO, _SM)
_d("set_quote_sql_str", SM, "S SIF L LIF", 1, 2, NO, _SM)

ECHO = "ngx_http_echo_module"
_ECHO = "third-party module (echo-nginx-module) is not part of Tern: nothing is echoed"
_d("echo", ECHO, "L LIF", 0, N, NO, _ECHO)
_d("echo_before_body", ECHO, "L LIF", 0, N, NO, _ECHO)
_d("echo_after_body", ECHO, "L LIF", 0, N, NO, _ECHO)
_d("echo_sleep", ECHO, "L LIF", 1, 1, NO, _ECHO)
_d("echo_location", ECHO, "L LIF", 1, 2, NO, _ECHO)
_d("echo_exec", ECHO, "L LIF", 1, 2, NO, _ECHO)

BRS = "ngx_http_brotli_static_module"
BRF = "ngx_http_brotli_filter_module"
_BR = "third-party module (ngx_brotli) is not part of Tern: responses are not brotli-compressed"
_d("brotli_static", BRS, "H S L", 1, 1, NO, _BR)
_f("brotli", BRF, "H S L LIF", NO, _BR)
_d("brotli_types", BRF, "H S L", 1, N, NO, _BR)
_d("brotli_comp_level", BRF, "H S L", 1, 1, NO, _BR)
_d("brotli_buffers", BRF, "H S L", 2, 2, NO, _BR)
_d("brotli_window", BRF, "H S L", 1, 1, NO, _BR)
_d("brotli_min_length", BRF, "H S L", 1, 1, NO, _BR)

NX = "ngx_http_naxsi_module"
_NX = "third-party module (naxsi WAF) is not part of Tern: requests are not filtered"
_d("MainRule", NX, "H", 1, N, NO, _NX)
_d("BasicRule", NX, "L", 1, N, NO, _NX)
_d("CheckRule", NX, "L", 1, N, NO, _NX)
_d("DeniedUrl", NX, "L", 1, 1, NO, _NX)
_d("LearningMode", NX, "L", 0, 0, NO, _NX)
_d("SecRulesEnabled", NX, "L", 0, 0, NO, _NX)
_d("SecRulesDisabled", NX, "L", 0, 0, NO, _NX)
_d("LibInjectionSql", NX, "L", 0, 0, NO, _NX)
_d("LibInjectionXss", NX, "L", 0, 0, NO, _NX)

MS = "ngx_http_modsecurity_module"
_MS = "third-party module (ModSecurity) is not part of Tern: requests are not filtered"
_f("modsecurity", MS, "H S L", NO, _MS)
_d("modsecurity_rules", MS, "H S L", 1, 1, NO, _MS)
_d("modsecurity_rules_file", MS, "H S L", 1, 1, NO, _MS)
_d("modsecurity_rules_remote", MS, "H S L", 2, 2, NO, _MS)
_d("modsecurity_transaction_id", MS, "H S L", 1, 1, NO, _MS)

UPR = "ngx_http_uploadprogress_module"
_UPR = "third-party module (nginx-upload-progress) is not part of Tern: no progress is tracked"
_d("upload_progress", UPR, "H", 2, 2, NO, _UPR)
_d("track_uploads", UPR, "L", 2, 2, NO, _UPR)
_d("report_uploads", UPR, "L", 1, 1, NO, _UPR)
_d("upload_progress_json_output", UPR, "H S L", 0, 0, NO, _UPR)

UCK = "ngx_http_upstream_check_module"
_UCK = "third-party module (nginx_upstream_check_module) is not part of Tern: no health checks"
_d("check", UCK, "U", 1, N, NO, _UCK)
_d("check_http_send", UCK, "U", 1, 1, NO, _UCK)
_d("check_http_expect_alive", UCK, "U", 1, N, NO, _UCK)
_d("check_keepalive_requests", UCK, "U", 1, 1, NO, _UCK)
_d("check_status", UCK, "L", 0, 1, NO, _UCK)

VTS = "ngx_http_vhost_traffic_status_module"
_VTS = "third-party module (vhost_traffic_status) is not part of Tern: no statistics or page"
_d("vhost_traffic_status_zone", VTS, "H", 0, 1, NO, _VTS)
_f("vhost_traffic_status", VTS, "H S L LIF", NO, _VTS)
_d("vhost_traffic_status_display", VTS, "H S L", 0, 0, NO, _VTS)
_d("vhost_traffic_status_display_format", VTS, "H S L", 1, 1, NO, _VTS)
_d("vhost_traffic_status_filter_by_host", VTS, "H S L", 1, 1, NO, _VTS)

PS = "ngx_pagespeed"
_d("pagespeed", PS, "H S L LIF", 1, N, NO,
   "third-party module (ngx_pagespeed) is not part of Tern: pages are not rewritten")

PG = "ngx_http_passenger_module"
_PG = "third-party module (Phusion Passenger) is not part of Tern: apps are not started"
_f("passenger_enabled", PG, "H S L LIF", NO, _PG)
_d("passenger_root", PG, "H", 1, 1, NO, _PG)
_d("passenger_ruby", PG, "H S L LIF", 1, 1, NO, _PG)
_d("passenger_app_env", PG, "H S L LIF", 1, 1, NO, _PG)
_d("passenger_app_root", PG, "H S L LIF", 1, 1, NO, _PG)
# fmt: on

RAW_BLOCKS: frozenset[str] = frozenset(
    {"types", "map", "geo", "split_clients", "charset_map", "match"}
)
"""Block directives whose body is raw data rows (never looked up in ``DIRECTIVES``)."""


def lookup(name: str) -> DirectiveSpec | None:
    """Return the row for directive ``name``, or None when nginx (as Tern knows it) has none."""
    return DIRECTIVES.get(name)
