"""What the running proxy cannot serve yet although the model records it.

These are UNSUPPORTED findings (with file:line) for ``tern check``, the report and ``tern serve``
(which refuses to start on them unless ``--allow-unsupported``).
"""

from __future__ import annotations

from proxy.model import Config

from .diagnostics import Diagnostic, Level

# What the running proxy cannot do yet although the model records it (each is refused at start-up
# unless --allow-unsupported, which then skips that listener).
# (``listen ... ssl`` and ``http2`` are served: proxy/io/tls.py, proxy/io/h2conn.py)
# (``listen ... quic`` is served too: proxy/io/h3conn.py)
_LISTEN_GAPS = (("proxy_protocol", "the PROXY protocol is not implemented"),)


def serve_gaps(config: Config) -> list[Diagnostic]:
    """Listeners the running proxy cannot serve yet (UNSUPPORTED findings with file:line)."""
    out: list[Diagnostic] = []
    for server in (config.http.servers if config.http else ()):
        for lst in server.listens:
            why = [reason for attr, reason in _LISTEN_GAPS if getattr(lst, attr)]
            if lst.address.startswith("unix:"):
                why.append("unix socket listeners are not implemented")
            for reason in why:
                out.append(Diagnostic(file=lst.source.file, line=lst.source.line,
                                      level=Level.UNSUPPORTED, code="unsupported",
                                      directive="listen", message=f'"listen": {reason}'))
    return out
