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
        key="resolver-runtime", area="proxy",
        nginx="proxy_pass with variables resolves host names with `resolver` at run time",
        tern="IP literals and upstream names work; other host names answer 502",
        kind="gap", why="no run-time DNS client yet."),
    Difference(
        key="upstream-tls", area="proxy",
        nginx="proxy_pass https:// talks TLS to the upstream",
        tern="answers 502",
        kind="gap", why="upstream TLS (proxy_ssl_*) is not built yet."),
    Difference(
        key="listen-tls-h2-h3", area="listen",
        nginx="listen ... ssl / http2 / quic",
        tern="refused at start-up (skipped with --allow-unsupported)",
        kind="gap", why="TLS, HTTP/2 and HTTP/3 front ends are a separate piece of work."),
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
        key="end-of-file-line", area="configuration",
        nginx="reports 'unexpected end of file' at the file's last line",
        tern="reports it at the line of the last token",
        kind="deliberate", why="points at the unclosed construct."),
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
