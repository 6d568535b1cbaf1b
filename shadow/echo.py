"""A recording echo upstream: an HTTP/1.1 server that remembers every request it receives.

``tern compare`` points every upstream of a config at one of these (one per original upstream
address, shared by nginx and Tern), so what each sends upstream can be compared field by field;
tests use it as a scriptable backend.

Rules:

1. Every complete request is recorded before it is answered, exactly as it arrived: method, raw
   target, version, header lines in order with their original case (httptools drops only the
   whitespace before a value), the de-chunked body, the framing (``chunked`` when
   ``Transfer-Encoding`` was present, else ``content-length`` when ``Content-Length`` was, else
   ``none``) and the peer address of the connection.
2. Each record takes a number from one process-wide sequence (:func:`sequence_mark`), so records
   of several echo servers can be put in arrival order and "what arrived since mark N" asked.
3. The default answer is ``200`` with ``X-Echo-Id: <server id>`` and a small JSON body describing
   the request (see :func:`describe`); no ``Date`` header, so answers are deterministic.
4. A :class:`Behaviour` table changes the answer per URL path prefix (the longest matching prefix
   wins): status, extra headers, body, a delay, closing the connection half-way through the body,
   or resetting it (RST, no response).
5. Keep-alive follows the request (``httptools``' ``should_keep_alive``); pipelined requests are
   answered in order. A request that asks for a protocol upgrade is answered normally and the
   connection closed.

The server runs its own asyncio loop in a background thread, so synchronous code (pytest, the
click command) drives it with :meth:`EchoServer.start` / :meth:`EchoServer.stop` and reads
:attr:`EchoServer.records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import cast

import httptools

from .diff import CapturedRequest, Framing

__all__ = ["Action", "Behaviour", "EchoRecord", "EchoServer", "describe", "sequence_mark"]

START_TIMEOUT = 5.0
"""Seconds :meth:`EchoServer.start` waits for the socket to be bound."""

_seq_lock = threading.Lock()
_seq = itertools.count(1)
_last_seq = 0


def _next_seq() -> int:
    global _last_seq
    with _seq_lock:
        _last_seq = next(_seq)
        return _last_seq


def sequence_mark() -> int:
    """The number of the newest record of any echo server in this process (0 before any).

    Records made later all have larger numbers (rule 2).
    """
    with _seq_lock:
        return _last_seq


class Action(enum.Enum):
    """What an echo server does with a request once it is recorded."""

    RESPOND = "respond"
    """Send the whole response."""
    CLOSE_MID_RESPONSE = "close"
    """Send the head and half the body (with the full ``Content-Length``), then close."""
    RESET = "reset"
    """Reset the connection (RST) without sending anything."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """How to answer requests whose path starts with :attr:`prefix`."""

    prefix: str = "/"
    """URL path prefix (query excluded); the longest matching prefix of the table wins."""
    status: int = 200
    """Response status."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers, in order (a ``Content-Type`` here replaces the JSON one)."""
    body: bytes | None = None
    """Response body; None sends the JSON description of the request (rule 3)."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    action: Action = Action.RESPOND
    """Respond, close half-way, or reset."""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise ValueError(f"status out of range: {self.status}")
        if self.delay < 0:
            raise ValueError(f"negative delay: {self.delay}")


_DEFAULT_BEHAVIOUR = Behaviour()


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoRecord:
    """One request as an echo server received it."""

    seq: int
    """Process-wide arrival number (rule 2)."""
    server_id: str
    """The :attr:`EchoServer.server_id` of the server that received it."""
    method: str
    """Request method."""
    target: str
    """Request target exactly as sent (bytes decoded as latin-1, so nothing is lost)."""
    version: str
    """HTTP version, ``"1.0"`` or ``"1.1"``."""
    headers: tuple[tuple[bytes, bytes], ...]
    """Header lines in order, names in their original case."""
    body: bytes
    """The body, de-chunked."""
    framing: Framing
    """How the body was delimited."""
    peer: tuple[str, int]
    """Address and port of the connection's other end."""
    received_at: float
    """``time.monotonic()`` when the request was complete."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower().encode("latin-1")
        for n, v in self.headers:
            if n.lower() == wanted:
                return v.decode("latin-1")
        return None

    def captured(self, upstream: str | None = None) -> CapturedRequest:
        """This record as :func:`shadow.diff.diff` wants it.

        Args:
            upstream: what to call the receiving upstream; defaults to :attr:`server_id`.
        """
        return CapturedRequest(method=self.method, target=self.target, version=self.version,
                               headers=self.headers, body=self.body, framing=self.framing,
                               upstream=self.server_id if upstream is None else upstream)


def describe(record: EchoRecord) -> bytes:
    """The JSON body of a default answer: what the echo server received.

    Keys, in this order: ``server``, ``method``, ``target``, ``version``, ``headers`` (list of
    ``[name, value]``), ``body_length``, ``framing``. Strings are latin-1 decodings of the bytes.
    """
    doc = {
        "server": record.server_id,
        "method": record.method,
        "target": record.target,
        "version": record.version,
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in record.headers],
        "body_length": len(record.body),
        "framing": record.framing.value,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------
# the protocol


@dataclass(slots=True)
class _Pending:
    record: EchoRecord
    keep_alive: bool
    head: bool


class _EchoProtocol(asyncio.Protocol):
    """One client connection: httptools parses, every complete request is recorded then answered
    in order by :meth:`_drain`."""

    def __init__(self, server: EchoServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: tuple[str, int] = ("", 0)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.queue: deque[_Pending] = deque()
        self.draining = False
        self.closing = False

    # asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server._connections.discard(self)

    def eof_received(self) -> bool:
        # the client half-closed: answer what it sent, then close (rule 5)
        self.closing = True
        if not self.draining and not self.queue and self.transport is not None:
            self.transport.close()
        return True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # rule 5: the request itself was complete (recorded); answer it and close
            if self.queue:
                self.queue[-1].keep_alive = False
            self.closing = True
            self._kick()
        except httptools.HttpParserError:
            self.closing = True
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                self.transport.close()

    # httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = bytearray()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        framing = Framing.NONE
        names = {n.lower() for n, _ in self.headers}
        if b"transfer-encoding" in names:
            framing = Framing.CHUNKED
        elif b"content-length" in names:
            framing = Framing.CONTENT_LENGTH
        method = self.parser.get_method().decode("latin-1")
        record = EchoRecord(
            seq=_next_seq(), server_id=self.server.server_id, method=method,
            target=self.url.decode("latin-1"), version=self.parser.get_http_version(),
            headers=tuple(self.headers), body=bytes(self.body), framing=framing,
            peer=self.peer, received_at=time.monotonic())
        self.server._add(record)
        self.queue.append(_Pending(record=record, keep_alive=self.parser.should_keep_alive(),
                                   head=method == "HEAD"))
        self._kick()

    # answering ------------------------------------------------------------------------------

    def _kick(self) -> None:
        if not self.draining and self.queue:
            self.draining = True
            asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue and self.transport is not None:
                pending = self.queue.popleft()
                behaviour = self.server.behaviour_for(pending.record.target)
                if behaviour.delay:
                    await asyncio.sleep(behaviour.delay)
                if self.transport.is_closing():
                    return
                if not self._answer(pending, behaviour):
                    return
            if self.closing and self.transport is not None:
                self.transport.close()
        finally:
            self.draining = False

    def _answer(self, pending: _Pending, behaviour: Behaviour) -> bool:
        """Write one answer; False when the connection is gone afterwards."""
        transport = self.transport
        assert transport is not None
        if behaviour.action is Action.RESET:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            transport.abort()
            return False
        body = describe(pending.record) if behaviour.body is None else behaviour.body
        status = behaviour.status
        no_body = status in (204, 304) or status < 200
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        extra_names = {n.lower() for n, _ in behaviour.headers}
        if behaviour.body is None and "content-type" not in extra_names:
            lines.append("Content-Type: application/json")
        if not no_body and "content-length" not in extra_names:
            lines.append(f"Content-Length: {len(body)}")
        lines.append(f"X-Echo-Id: {self.server.server_id}")
        lines.extend(f"{n}: {v}" for n, v in behaviour.headers)
        keep_alive = pending.keep_alive and not self.closing
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if no_body or pending.head:
            body = b""
        if behaviour.action is Action.CLOSE_MID_RESPONSE:
            transport.write(head + body[: len(body) // 2])
            transport.close()
            return False
        transport.write(head + body)
        if not keep_alive:
            transport.close()
            return False
        return True


# --------------------------------------------------------------------------------------------
# the server


class EchoServer:
    """A recording echo upstream on ``host:port`` run by a background thread.

    Args:
        server_id: sent back as ``X-Echo-Id`` and stored in every record.
        host: address to bind.
        port: port to bind; 0 picks a free one (read :attr:`port` after :meth:`start`).
        behaviours: the answer table (rule 4); empty means the default answer everywhere.
    """

    def __init__(self, server_id: str = "echo", *, host: str = "127.0.0.1", port: int = 0,
                 behaviours: Iterable[Behaviour] = ()) -> None:
        self.server_id = server_id
        self.host = host
        self._port = port
        self._behaviours: tuple[Behaviour, ...] = ()
        self.set_behaviours(behaviours)
        self._records: list[EchoRecord] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._connections: set[_EchoProtocol] = set()

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> EchoServer:
        """Bind and start serving in a background thread; returns once the socket is bound.

        Raises:
            OSError: the address could not be bound.
            RuntimeError: already started, or the loop did not come up in time.
        """
        if self._thread is not None:
            raise RuntimeError("echo server already started")
        self._thread = threading.Thread(target=self._run, name=f"echo-{self.server_id}",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"echo server {self.server_id} did not start")
        if self._error is not None:
            self._thread.join(1.0)
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection, and end the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(self._shutdown)
        thread.join(START_TIMEOUT)
        self._thread = None

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(loop.create_server(
                    lambda: _EchoProtocol(self), self.host, self._port, reuse_address=True))
                sockname = self._server.sockets[0].getsockname()
                self._port = int(sockname[1])
            except BaseException as exc:  # handed to start()'s caller
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                if self._server is not None:
                    loop.run_until_complete(self._server.wait_closed())
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        assert self._loop is not None
        # abort() finishes in callbacks queued just now: stop once they have run
        self._loop.call_soon(self._loop.stop)

    # state -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` as a config would name it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._port}"

    @property
    def records(self) -> list[EchoRecord]:
        """A copy of every record so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def records_since(self, mark: int) -> list[EchoRecord]:
        """Records numbered above ``mark`` (see :func:`sequence_mark`)."""
        with self._lock:
            return [r for r in self._records if r.seq > mark]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def set_behaviours(self, behaviours: Iterable[Behaviour]) -> None:
        """Replace the answer table (safe while serving)."""
        self._behaviours = tuple(sorted(behaviours, key=lambda b: -len(b.prefix)))

    def behaviour_for(self, target: str) -> Behaviour:
        """The behaviour for a request target: the longest matching path prefix, else default."""
        path = target.split("?", 1)[0]
        for b in self._behaviours:
            if path.startswith(b.prefix):
                return b
        return _DEFAULT_BEHAVIOUR

    def _add(self, record: EchoRecord) -> None:
        with self._lock:
            self._records.append(record)

