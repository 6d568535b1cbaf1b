"""A FastCGI application connection over asyncio: the I/O seam for :mod:`proxy.protocol.fastcgi`.

Rules:

1. A connection serves one request, or several in turn when the app keeps it open
   (``fastcgi_keep_conn on`` with an upstream ``keepalive`` cache): connect (TCP or a unix
   socket) within the connect timeout, write the request within the send timeout, then every
   read waits at most the read timeout.
2. Failures raise :class:`FastcgiError` with the phase (``connect``, ``send``, ``read``) and
   whether it was a timeout (504) or an error (502), as :class:`proxy.io.upstream.UpstreamError`.
3. ``FCGI_STDERR`` text goes to ``on_stderr`` as it arrives (nginx logs it at level error).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from ..protocol import fastcgi as fcgi


class FastcgiError(Exception):
    """A failure talking to a FastCGI application."""

    def __init__(self, phase: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.phase = phase
        self.timeout = timeout


class FastcgiConnection:
    """One connection to a FastCGI application, for one request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_stderr: Callable[[bytes], None]) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = fcgi.ResponseParser()
        self._pending: list[fcgi.Event] = []
        self.on_stderr = on_stderr
        self.ended = False
        self.reused = False
        """Taken from the idle cache (a failure before any answer byte may be a stale one)."""
        self.got_bytes = False
        self.requests = 0
        """Requests sent on this connection."""
        self.idle_since = 0.0

    def start_request(self) -> None:
        """Ready for the next request on a kept connection (``fastcgi_keep_conn``)."""
        self._parser = fcgi.ResponseParser()
        self._pending = []
        self.ended = False
        self.got_bytes = False
        self.requests += 1

    @property
    def reusable(self) -> bool:
        """The answer ended cleanly and the app left the connection open."""
        return (self.ended and not self._pending and not self._parser.buffered
                and not self._reader.at_eof() and not self._writer.is_closing()
                and not self._reader._buffer)  # type: ignore[attr-defined]

    @classmethod
    async def open(cls, host: str, port: int, *, connect_timeout: float,
                   on_stderr: Callable[[bytes], None]) -> FastcgiConnection:
        """Connect to ``host:port``, or to the unix socket ``host`` when it starts with
        ``unix:``."""
        try:
            if host.startswith("unix:"):
                coro = asyncio.open_unix_connection(host[5:])
            else:
                coro = asyncio.open_connection(host, port)
            reader, writer = await asyncio.wait_for(coro, connect_timeout)
        except asyncio.TimeoutError:
            raise FastcgiError("connect", "upstream timed out (110: Connection timed out) "
                               "while connecting to upstream", timeout=True) from None
        except OSError as exc:
            raise FastcgiError("connect", f"connect() failed ({exc.errno}: {exc.strerror}) "
                               "while connecting to upstream") from None
        return cls(reader, writer, on_stderr)

    async def send(self, data: bytes, send_timeout: float) -> None:
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), send_timeout)
        except asyncio.TimeoutError:
            raise FastcgiError("send", "upstream timed out (110: Connection timed out) while "
                               "sending request to upstream", timeout=True) from None
        except OSError as exc:
            raise FastcgiError("send", f"writev() failed ({exc}) while sending request to "
                               "upstream") from None

    async def _events(self, read_timeout: float) -> list[fcgi.Event]:
        while True:
            if self._pending:
                out, self._pending = self._pending, []
                return out
            if self.ended:
                return []
            try:
                data = await asyncio.wait_for(self._reader.read(65536), read_timeout)
            except asyncio.TimeoutError:
                raise FastcgiError("read", "upstream timed out (110: Connection timed out) "
                                   "while reading response header from upstream",
                                   timeout=True) from None
            except OSError as exc:
                raise FastcgiError("read", f"recv() failed ({exc}) while reading upstream"
                                   ) from None
            if not data:
                raise FastcgiError("read", "upstream prematurely closed FastCGI stdout while "
                                   "reading response header from upstream")
            self.got_bytes = True
            try:
                events = self._parser.feed(data)
            except fcgi.FastCGIError as exc:
                raise FastcgiError("read", str(exc)) from None
            for ev in events:
                if isinstance(ev, fcgi.Stderr):
                    self.on_stderr(ev.data)
                elif isinstance(ev, fcgi.EndRequest):
                    self.ended = True
                else:
                    self._pending.append(ev)
            if self.ended and not self._pending:
                return []

    async def read_head(self, read_timeout: float, limit: int
                        ) -> tuple[fcgi.CgiHead, bytes]:
        """The CGI header block and the stdout bytes that followed it."""
        parser = fcgi.CgiHeaderParser(limit)
        while True:
            events = await self._events(read_timeout)
            if not events:
                raise FastcgiError("read", "upstream prematurely closed FastCGI stdout while "
                                   "reading response header from upstream")
            for i, ev in enumerate(events):
                assert isinstance(ev, fcgi.Stdout)
                try:
                    got = parser.feed(ev.data)
                except fcgi.FastCGIError as exc:
                    raise FastcgiError("read", str(exc)) from None
                if got is not None:
                    # the stdout that came with the head is sent with it (one write, as
                    # nginx sends what one read brought)
                    head, rest = got
                    more = b"".join(e.data for e in events[i + 1:]
                                    if isinstance(e, fcgi.Stdout))
                    return head, rest + more

    async def body(self, read_timeout: float) -> AsyncIterator[bytes]:
        """The rest of stdout, until FCGI_END_REQUEST: what each read brought, joined."""
        while True:
            events = await self._events(read_timeout)
            if not events:
                return
            data = b"".join(ev.data for ev in events if isinstance(ev, fcgi.Stdout))
            if data:
                yield data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
