"""Every known difference between Tern and nginx 1.22.1, in one place.

Each entry says what nginx does, what Tern does, and why. ``docs/differences.md`` is written from
this table (``python -m proxy.differences > docs/differences.md``; a test checks they agree).
Entries are either deliberate (a choice) or gaps (not built yet); gaps also show up as PARTIAL or
UNSUPPORTED directive levels or as start-up refusals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One way Tern answers or behaves differently from nginx."""

    key: str
    """Stable identifier."""
    area: str
    """Where it shows (routing, proxy, limits, logging, process, ...)."""
    nginx: str
    """What nginx 1.22.1 does."""
    tern: str
    """What Tern does."""
    kind: str
    """``deliberate`` or ``gap``."""
    why: str
    """Reason."""


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        key="server-token", area="responses",
        nginx="Server: nginx/1.22.1 (server_tokens on) or nginx",
        tern="Server: tern/<version> or tern",
        kind="deliberate", why="Tern says what answered; tern compare masks Server."),
    Difference(
        key="limits-per-worker", area="limits",
        nginx="limit_req / limit_conn state lives in shared memory across workers",
        tern="the state lives in each worker process",
        kind="gap", why="no shared memory zone yet; with N workers the effective limit is up "
                        "to N times the configured one (directive level PARTIAL)."),
    Difference(
        key="default-prefix", area="configuration",
        nginx="without -p, relative paths resolve against the compiled-in prefix "
              "(/usr/share/nginx on Debian)",
        tern="without -p, the prefix is the main configuration file's directory",
        kind="deliberate", why="a checked-out config tree is self-contained; pass -p to match "
                               "a deployment."),
    Difference(
        key="default-access-log", area="logging",
        nginx="with no access_log directive, logs combined to the compiled-in path",
        tern="logs to <prefix>/logs/access.log when that directory exists, else not at all",
        kind="deliberate", why="Tern never writes outside the tree it was given."),
    Difference(
        key="access-log-variable-path", area="logging",
        nginx="access_log paths may contain variables",
        tern="lines for such logs are dropped (counted)",
        kind="gap", why="not built yet."),
    Difference(
        key="auth-basic-crypt", area="access",
        nginx="auth_basic_user_file accepts every crypt(3) scheme of the system",
        tern="accepts {PLAIN}, {SHA}, {SSHA}, $apr1$ and $1$; other schemes never match",
        kind="gap", why="Python's crypt module is deprecated; DES/SHA-crypt not implemented."),
    Difference(
        key="auth-basic-file-cache", area="access",
        nginx="reads the user file on every request",
        tern="re-reads it when its modification time changes",
        kind="deliberate", why="same answers, one stat per request instead of a read."),
    Difference(
        key="request-body-memory", area="proxy",
        nginx="with proxy_request_buffering on, large bodies are buffered to temp files",
        tern="the body is buffered in memory (bounded by client_max_body_size)",
        kind="gap", why="no temp-file spooling yet; same bytes reach the upstream."),
    Difference(
        key="upstream-tls-session-reuse", area="proxy",
        nginx="proxy_ssl_session_reuse keeps one TLS session per upstream peer, shared by "
              "every location proxying to it",
        tern="one session per peer and proxy_ssl_* settings: locations with different "
             "settings do not resume each other's sessions",
        kind="gap", why="Python's ssl resumes a session only in the context that made it."),
    Difference(
        key="upstream-tls-verify-depth", area="proxy",
        nginx="proxy_ssl_verify_depth (default 1) limits the upstream's certificate chain",
        tern="OpenSSL's default depth applies",
        kind="gap", why="Python's ssl has no verify-depth setting (directive PARTIAL); "
                        "proxy_ssl_crl, proxy_ssl_password_file and proxy_ssl_conf_command "
                        "are UNSUPPORTED."),
    Difference(
        key="fastcgi-stderr-log", area="fastcgi",
        nginx="writes FCGI_STDERR text to error_log ('FastCGI sent in stderr: ...')",
        tern="logs the same message at level error to its log stream (tern serve's stderr)",
        kind="gap", why="Tern does not write nginx's error_log file."),
    Difference(
        key="fastcgi-body-bytes-chunked", area="fastcgi",
        nginx="$body_bytes_sent of a chunked FastCGI answer counts the chunk framing of its "
              "buffers",
        tern="counts the framing of one chunk per read from the app: the same for answers "
             "that arrive at once, a few bytes apart for ones that trickle in",
        kind="gap", why="chunk boundaries follow each server's own buffering."),
    Difference(
        key="gzip-chunk-boundaries", area="gzip",
        nginx="sends gzip output in gzip_buffers-sized pieces as its input buffers (file reads, "
              "upstream reads) are compressed; $body_bytes_sent counts the chunk framing of "
              "those pieces",
        tern="the same compressed bytes (same zlib, same parameters), passed on in whole "
             "gzip_buffers-sized pieces per piece of input it reads (64k file reads, upstream "
             "reads): a body compressed in one piece is one chunk as with nginx, a long streamed "
             "one is chunked differently and $body_bytes_sent differs by a few bytes of framing",
        kind="gap", why="chunk boundaries follow each server's own read sizes; clients see the "
                        "same body."),
    Difference(
        key="h3-nginx-version", area="http3",
        nginx="1.22 has no HTTP/3 (ngx_http_v3_module arrived in 1.25.0); Tern follows 1.25's "
              "directives",
        tern="serves `listen ... quic` and `http3 on|off` over aioquic (docs/protocols.md)",
        kind="deliberate", why="HTTP/3 answers are checked against Tern's own HTTP/1.1 answers "
                               "for the same config (tests/protocol/test_h3_serve.py)."),
    Difference(
        key="h3-sni-settings", area="http3",
        nginx="applies the http3 / QUIC settings of the server SNI picked",
        tern="picks the certificate by SNI, but http3 on|off and the QUIC settings "
             "(quic_retry, http3_max_concurrent_streams...) come from the socket's default "
             "server",
        kind="gap", why="they are fixed when the connection is created, before the ClientHello "
                        "is read (directive http3 is PARTIAL)."),
    Difference(
        key="h3-worker-sockets", area="http3",
        nginx="shares one UDP socket between workers unless `reuseport` (then routes packets "
              "to workers by connection id with eBPF)",
        tern="binds one UDP socket per worker with SO_REUSEPORT whether or not `reuseport` is "
             "written; the kernel keeps a client's 4-tuple on one worker",
        kind="deliberate", why="a shared socket would split a QUIC connection across workers; a "
                               "client that changes address (migration) may land on another "
                               "worker and lose its connection, and during a reload a new "
                               "connection hashed to an old, draining worker is not answered "
                               "until that worker has finished its requests and closed its "
                               "socket (the client's Initial is retransmitted)."),
    Difference(
        key="h3-malformed", area="http3",
        nginx="1.25 judges HTTP/3 request heads with its own checks (400 for most problems)",
        tern="RFC 9114 §4.1.2 malformed requests (connection-specific fields, te other than "
             "trailers, upper-case names, pseudo-headers out of order or missing) reset the "
             "stream with H3_MESSAGE_ERROR; nginx's status checks (host, method, path, "
             "Content-Length, header sizes) answer 400/405 on the stream",
        kind="deliberate", why="RFC 9114; the connection goes on either way."),
    Difference(
        key="h3-quic-tokens", area="http3",
        nginx="Retry and NEW_TOKEN tokens are keyed by quic_host_key (valid across workers and "
              "restarts); supports 0-RTT with ssl_early_data",
        tern="Retry tokens are keyed per worker process (aioquic), no NEW_TOKEN, no session "
             "resumption or 0-RTT",
        kind="gap", why="aioquic's server keeps no shared token key or ticket store here."),
    Difference(
        key="h3-server-addr", area="http3",
        nginx="$server_addr of an HTTP/3 request on a wildcard listen is the datagram's "
              "destination address",
        tern="0.0.0.0 (or ::) on a wildcard `listen ... quic`; exact on an address listen",
        kind="gap", why="the destination address needs IP_PKTINFO, which asyncio's UDP "
                        "transports do not give."),
    Difference(
        key="h2-strict-validation", area="http2",
        nginx="1.22 passes on requests RFC 9113 §8.2 calls malformed: connection-specific "
              "fields, te other than trailers, a pseudo-header after a regular field, a name "
              "byte above 0x7f, a value with leading or trailing space",
        tern="resets that stream with PROTOCOL_ERROR (the connection goes on)",
        kind="deliberate", why="RFC 9113 §8.2.2 and §8.1.1; H2Limits(strict=False) is nginx "
                               "exactly."),
    Difference(
        key="h2-streams-after-goaway", area="http2",
        nginx="after its keepalive_requests GOAWAY, ignores new streams silently",
        tern="resets them with REFUSED_STREAM",
        kind="deliberate", why="the client learns at once that it may retry them elsewhere "
                               "(RFC 9113 §8.7)."),
    Difference(
        key="h2-request-trailers", area="http2",
        nginx="answers request trailers (a second HEADERS frame) with GOAWAY PROTOCOL_ERROR",
        tern="drops the trailers and serves the request",
        kind="deliberate", why="trailers are valid HTTP/2; nginx drops them on HTTP/1.1 too."),
    Difference(
        key="h2-max-frame-size", area="http2",
        nginx="offers SETTINGS_MAX_FRAME_SIZE 2^24-1",
        tern="keeps the 16384 default",
        kind="deliberate", why="bounds the buffering per frame; clients split frames, content "
                               "is unchanged."),
    Difference(
        key="h2-flood-goaway", area="http2",
        nginx="closes flooding connections with GOAWAY NO_ERROR (byte-ratio rule) or silently "
              "(frame-count rules)",
        tern="GOAWAY ENHANCE_YOUR_CALM, then close",
        kind="deliberate", why="RFC 9113 §5.4.1 names ENHANCE_YOUR_CALM for load; the client "
                               "is told why."),
    Difference(
        key="h2c-http1-fallback", area="http2",
        nginx="1.22: a cleartext `listen ... http2` speaks only HTTP/2 (prior knowledge); an "
              "HTTP/1.1 request there gets no HTTP/1.1 answer",
        tern="picks by the client preface: HTTP/2 with prior knowledge, else HTTP/1.1 (as "
             "nginx >= 1.25.1 does with `http2 on`)",
        kind="deliberate", why="one behaviour for both spellings of the directive; h2c clients "
                               "see no difference."),
    Difference(
        key="tls-alpn-no-overlap", area="tls",
        nginx="a client whose ALPN list has no protocol the socket offers (h2 only, on a "
              "listener without http2) gets a fatal no_application_protocol alert",
        tern="the handshake completes without ALPN and the connection speaks HTTP/1.1",
        kind="gap", why="Python's ssl has no ALPN selection callback: OpenSSL's default "
                        "(no acknowledgement) applies."),
    Difference(
        key="tls-wildcard-and-address", area="tls",
        nginx="a port with a wildcard listen and address-specific ones (one socket) takes TLS "
              "on/off, certificates and SNI candidates from the local address's listens",
        tern="takes them from the wildcard listen's servers",
        kind="gap", why="the SNI callback does not see the connection's local address; "
                        "listen on one address per port, or use the same TLS settings."),
    Difference(
        key="tls-session-cache", area="tls",
        nginx="ssl_session_cache shared:NAME:SIZE is shared by the workers; ssl_session_timeout "
              "sets the session lifetime",
        tern="OpenSSL's built-in per-process cache with its 300 s lifetime; off/none only stop "
             "TLS 1.3 tickets",
        kind="gap", why="Python's ssl module exposes neither the cache size, sharing nor the "
                        "timeout (directive levels PARTIAL)."),
    Difference(
        key="tls-client-cert-failure", area="tls",
        nginx="ssl_verify_client: a client certificate that does not verify completes the "
              "handshake and gets 400 'The SSL certificate error' ($ssl_client_verify "
              "FAILED:reason); optional_no_ca accepts certificates of unknown CAs",
        tern="the TLS handshake fails; optional_no_ca verifies like optional; "
             "ssl_verify_depth is not applied; a server SNI switches to asks for a certificate "
             "only if the socket's default server does",
        kind="gap", why="Python's ssl has no verify callback and no per-connection verify "
                        "mode (directive rows PARTIAL)."),
    Difference(
        key="tls-certificate-variables", area="tls",
        nginx="ssl_certificate and ssl_certificate_key may contain variables (loaded per "
              "handshake)",
        tern="refused at start-up with file:line",
        kind="gap", why="not built yet."),
    Difference(
        key="pipelining-depth", area="protocol",
        nginx="reads pipelined request N+1 only after answering N",
        tern="parses up to 16 pipelined requests ahead (answers stay in order)",
        kind="deliberate", why="back-pressure bound; side effects can differ only when an "
                               "earlier response closes the connection."),
    Difference(
        key="refused-requests-log", area="logging",
        nginx="a request refused while its head is read (400, 414, 501, 505...), cut by EOF (400) "
              "or by client_header_timeout (408) is logged with what was parsed; $request_time "
              "counts from its first byte",
        tern="logged alike (same server, $request as far as it came, $request_method, $uri, "
             "$args, $host, $http_*), but $request_time is 0.000, $request_length and "
             "$bytes_sent are not found, and $server_protocol is - where nginx has an empty one",
        kind="gap", why="the HTTP/1 adapter keeps neither the time of a head's first byte nor "
                        "byte counts."),
    Difference(
        key="keepalive-header-timeout", area="protocol",
        nginx="once a keep-alive connection gets the first bytes of its next request, "
              "client_header_timeout times that head",
        tern="keepalive_timeout keeps running until the head is complete (a stalled head is cut, "
             "and logged 408, later)",
        kind="gap", why="the I/O layer re-arms its timer on complete heads only."),
    Difference(
        key="error-page-tail", area="responses",
        nginx="built-in error pages end with <center>nginx/1.22.1</center>",
        tern="they end with <center>tern/<version></center> (same shape for server_tokens)",
        kind="deliberate", why="same reason as the Server header."),
    Difference(
        key="byteranges-boundary", area="responses",
        nginx="the multipart/byteranges boundary is a 20-digit counter shared by all workers "
              "(temporary file names advance it too)",
        tern="a 20-digit counter in each worker process, starting at 1",
        kind="deliberate", why="any boundary is valid; a fresh one-worker server numbers its "
                               "multipart answers as nginx does."),
    Difference(
        key="raw-non-ascii-target", area="routing",
        nginx="matches locations byte for byte, so a request line carrying raw UTF-8 bytes "
              "(GET /caf\u00e9/, not percent-encoded) finds location /caf\u00e9/",
        tern="reads raw request-target bytes as Latin-1 while the config's strings are UTF-8: "
             "such a request misses non-ASCII locations (the percent-encoded form, which "
             "browsers and curl send, matches as in nginx)",
        kind="gap", why="one byte-preserving text form for wire and config is not built yet; "
                        "found by tern migrate on the nested-locations fixture."),
    Difference(
        key="charset-recoding", area="responses",
        nginx="recodes bodies between charsets that a charset_map connects (source_charset or "
              "an upstream's charset differing from charset), and refuses at start-up a static "
              "pair without a charset_map",
        tern="sets Content-Type's charset as nginx does but never recodes: such answers are "
             "sent in their source charset, unchanged; charset_map is refused at start-up unless "
             "--allow-unsupported",
        kind="gap", why="recoding tables are not built yet (source_charset is PARTIAL)."),
    Difference(
        key="charset-variable-not-found", area="responses",
        nginx="charset $var with the variable not found fails the request: the connection "
              "closes without an answer",
        tern="sends the answer without a charset",
        kind="gap", why="the header filter cannot fail a request yet."),
    Difference(
        key="auth-request-after-upstream", area="access",
        nginx="runs auth_request in a location reached after an upstream answered "
              "(proxy_intercept_errors' error_page, X-Accel-Redirect)",
        tern="answers 500 there; auth_request met while routing the request itself (including "
             "try_files and error_page redirects of statuses the config made) works as in nginx",
        kind="gap", why="the interpreter routes again with the subrequest's answer known; "
                        "re-entering after an upstream answer is not built yet."),
    Difference(
        key="auth-request-limits", area="access",
        nginx="an auth_request subrequest's location applies its own limit_req/limit_conn when "
              "the main request met none",
        tern="subrequests never apply limits",
        kind="gap", why="rare; subrequests skip the preaccess phase in Tern."),
    Difference(
        key="secure-link-mixed-line", area="configuration",
        nginx="reports secure_link_secret mixed with secure_link or secure_link_md5 in one "
              "server or location at the end of the http block (the merge finds it)",
        tern="reports it, with nginx's message, at the line of the second of those directives",
        kind="deliberate", why="points at the conflict."),
    Difference(
        key="addition-uri-normalised", area="responses",
        nginx="add_before_body / add_after_body subrequests use the URI exactly as written: "
              "no dot-segment resolution, no slash merging",
        tern="resolves /./ and /../ and merges slashes in it ('?', '#' and '%' stay literal as "
             "in nginx; a URI not starting with / gets nginx's 404 page)",
        kind="gap", why="the subrequest goes through the interpreter's URI normalisation; such "
                        "URIs are rare."),
    Difference(
        key="addition-subrequest-close", area="responses",
        nginx="an addition subrequest that closes the connection (return 444) leaves the client "
              "with nothing when the answer so far is under postpone_output (1460 bytes)",
        tern="the head and the body so far have gone out: the client sees a cut answer, then "
             "the close",
        kind="gap", why="Tern writes as the answer is made; there is no postpone_output "
                        "buffering."),
    Difference(
        key="addition-subrequest-limits", area="limits",
        nginx="an addition subrequest's location applies its own limit_req/limit_conn when the "
              "main request met none",
        tern="subrequests never apply limits",
        kind="gap", why="rare; subrequests skip the preaccess phase in Tern."),
    Difference(
        key="addition-chunk-sizes", area="logging",
        nginx="chunks an addition body over 32 KB by its own buffers",
        tern="sends it in 64 KB pieces: $body_bytes_sent can differ by a few bytes of chunk "
             "framing (smaller answers count the same)",
        kind="gap", why="nginx's subrequest buffering is not modelled."),
    Difference(
        key="end-of-file-line", area="configuration",
        nginx="reports 'unexpected end of file' at the file's last line",
        tern="reports it at the line of the last token",
        kind="deliberate", why="points at the unclosed construct."),
    Difference(
        key="limit-rate-set-read", area="responses",
        nginx="after set $limit_rate 4k, $limit_rate reads 4096 (the setter parses the size; a "
              "value that is not a size is ignored)",
        tern="reads 4096 from the content phase on (add_header, proxy_set_header, the log), but "
             "the rewrite phase that set it reads the text as written",
        kind="gap", why="the rewrite module keeps variables as text; the size is parsed when "
                        "the engine takes the request over."),
    Difference(
        key="limit-rate-counted-bytes", area="responses",
        nginx="counts the bytes written to the connection (the response head as written, chunk "
              "framing, HTTP/2 frame headers) against limit_rate_after and the rate",
        tern="counts the body bytes and the head's size in its HTTP/1.1 form, whatever the "
             "protocol",
        kind="gap", why="the pacer sits in front of the protocol layer; the answers are the "
                        "same, pacing differs by a few dozen bytes around limit_rate_after."),
    Difference(
        key="limit-rate-fastcgi", area="proxy",
        nginx="fastcgi_limit_rate paces reading a FastCGI answer; a FastCGI app's "
              "X-Accel-Limit-Rate sets the request's rate",
        tern="fastcgi_limit_rate is refused at start-up unless --allow-unsupported (then "
             "ignored) and X-Accel-Limit-Rate from FastCGI is dropped; limit_rate itself paces "
             "FastCGI answers",
        kind="gap", why="not built yet."),
    Difference(
        key="proxy-limit-rate-read-ahead", area="proxy",
        nginx="proxy_limit_rate paces the reads from the upstream's socket",
        tern="paces what is passed on from the upstream; the socket is read ahead until 16 "
             "pieces wait (then reading pauses)",
        kind="gap", why="the upstream connection reads into its own queue; clients see the same "
                        "pacing, the upstream sees its answer taken sooner."),
)


def render_markdown() -> str:
    """``docs/differences.md``."""
    lines = [
        "# Differences between Tern and nginx 1.22.1",
        "",
        "Generated from `proxy/differences.py` (`python -m proxy.differences`). Deliberate "
        "differences are choices; gaps are not built yet.",
        "",
        "| key | area | nginx | Tern | kind | why |",
        "|---|---|---|---|---|---|",
    ]
    for d in DIFFERENCES:
        cells = (d.key, d.area, d.nginx, d.tern, d.kind, d.why)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown(), end="")
