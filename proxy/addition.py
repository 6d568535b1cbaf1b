"""ngx_http_addition_filter_module (1.22.1): ``add_before_body`` / ``add_after_body``.

The engine puts :class:`AdditionExchange` in front of the sub filter (nginx runs the addition
filter before sub_filter, charset and gzip) when either URI is set for the request's
configuration; it is the header and body filter:

1. Settings: ``add_before_body`` and ``add_after_body`` are plain strings merged one by one
   (the innermost level that has one; an empty string turns an inherited one off);
   ``addition_types`` is an array (the innermost level that has any; every directive of that
   level adds to it), ``text/html`` always in it, ``*`` any type (even none).
2. Header filter: only a main request's (not a subrequest's) ``200`` whose type (the
   ``Content-Type`` up to a ``;`` that starts a charset parameter, lower-cased) is in the
   types.  Then ``Content-Length`` and ``Accept-Ranges`` are removed (the body is sent chunked,
   or until close to an HTTP/1.0 client; the range filter sees no length, so Range is not
   served) and a strong ``ETag`` becomes weak (``ngx_http_weak_etag``: an unquoted one is
   dropped).  ``Last-Modified`` stays.  A HEAD answer gets the same head and no body.
3. Body filter: before the first body byte the ``add_before_body`` subrequest's body, after the
   last the ``add_after_body`` subrequest's body (an empty main body still gets both).  A
   subrequest is a GET of the URI in the same server (internal, the client's headers, no
   access phase, :meth:`proxy.interp.Interpreter.subrequest`) served by the engine's own
   handlers; whatever it answers (a 404 page, a redirect page, an upstream's body) is output,
   its status and headers are dropped.  Its body passes its own location's sub_filter, then
   joins the main answer below the main request's sub filter (nginx's postpone filter), so
   gzip compresses the whole answer.  The main sub filter's held bytes go out before the
   ``add_after_body`` body (nginx marks the main's last buffer ``last_in_chain``).

The engine's handlers are synchronous writers; the subrequests are awaited in
:meth:`AdditionExchange.drain` (the first one after the head) and
:meth:`AdditionExchange.complete` (``Engine.handle`` calls it once the handler has returned).
Main body bytes are gathered up to :data:`HOLD` bytes before they go on (and until the
``add_before_body`` body is out), so a small body goes out in one piece, as nginx passes a
buffer on at once (one chunk on the wire, which ``$body_bytes_sent`` counts).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .charset import split_type

if TYPE_CHECKING:
    from .engine import Engine
    from .interp import RequestState

__all__ = ["AdditionConf", "conf_of", "wrap", "inner_of", "filters", "AdditionExchange",
           "complete"]

DIRECTIVES = ("add_before_body", "add_after_body", "addition_types")

HOLD = 65536
"""Bytes of a subrequest's body gathered before they go out (see ``BodyExchange``)."""

_MAIN_ONLY = frozenset({"range", "if-range", "if-match", "if-none-match", "if-modified-since",
                        "if-unmodified-since"})


class AdditionConf:
    """The merged addition settings of one configuration chain."""

    __slots__ = ("before", "after", "types")

    def __init__(self, before: str, after: str, types: frozenset[str] | None) -> None:
        self.before = before
        """``add_before_body`` URI ("" : none)."""
        self.after = after
        """``add_after_body`` URI ("" : none)."""
        self.types = types
        """Lower-case MIME types; None: ``addition_types *``."""

    def matches(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """``ngx_http_test_content_type`` on the answer's Content-Type."""
        if self.types is None:
            return True
        ct = _first(headers, b"content-type")
        if not ct:
            return False
        end, _ = split_type(ct)
        return ct[:end].lower().decode("latin-1") in self.types


def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _build(state: RequestState) -> AdditionConf | None:
    before = after = None
    types: frozenset[str] | None = frozenset({"text/html"})
    types_found = False
    for scope in reversed(state.scope_chain):
        level: list[tuple[str, ...]] = []
        for d in scope.other:
            if d.name == "add_before_body" and before is None:
                before = d.args[0] if d.args else ""
            elif d.name == "add_after_body" and after is None:
                after = d.args[0] if d.args else ""
            elif d.name == "addition_types" and not types_found:
                level.append(d.args)
        if level:
            types_found = True
            names = {"text/html"}
            for args in level:
                for a in args:
                    names.add(a.lower())
            types = None if "*" in names else frozenset(names)
    if not before and not after:
        return None
    return AdditionConf(before or "", after or "", types)


def conf_of(state: RequestState) -> AdditionConf | None:
    """The addition settings for ``state``'s chain (cached per chain); None: no URI set."""
    cache = state.interp.effective_cache
    key = (state.chain_key, "addition")
    try:
        return cache[key]  # type: ignore[return-value]
    except KeyError:
        pass
    conf = cache[key] = _build(state)
    return conf


def wrap(ex: Any, state: RequestState | None, run: Any, engine: Engine) -> Any:
    """``ex`` behind the addition filter when it applies to ``state``, else ``ex``."""
    if state is None or state.req.subrequest:
        return ex
    conf = conf_of(state)
    if conf is None:
        return ex
    return AdditionExchange(ex, conf, state, run, engine)


def inner_of(ex: Any) -> Any:
    """The exchange behind the addition filter (``ex`` itself when there is none)."""
    return ex.inner if isinstance(ex, AdditionExchange) else ex


def filters(ex: Any, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``ex`` would add to this answer (the range filter then does nothing)."""
    return isinstance(ex, AdditionExchange) and ex.applies(status, headers)


async def complete(run: Any) -> None:
    """Run what the addition filter of ``run``'s request still owes (``Engine.handle``)."""
    ex = run.addition
    if ex is not None:
        run.addition = None
        await ex.complete()


def _weak_etag(headers: list[tuple[bytes, bytes]]) -> None:
    for n, (k, v) in enumerate(headers):
        if k.lower() == b"etag":
            if v.startswith(b"W/"):
                return
            if v.startswith(b'"'):
                headers[n] = (k, b"W/" + v)
            else:
                del headers[n]
            return


class AdditionExchange:
    """An exchange whose answer gets the addition subrequests' bodies around it."""

    def __init__(self, inner: Any, conf: AdditionConf, state: RequestState, run: Any,
                 engine: Engine) -> None:
        from . import subfilter

        self.inner = inner
        """The main body's road: the main request's sub filter, then gzip, then the client."""
        self.below = subfilter.inner_of(inner)
        """The subrequests' road: gzip, then the client (nginx's postpone filter)."""
        self.conf = conf
        self.state = state
        self.run = run
        self.engine = engine
        self.active = False
        self.before_done = False
        self.ended = False
        self.aborted = False
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.chunked = False
        self.main_sent = 0
        self.sub_sent = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def applies(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        return status == 200 and self.conf.matches(headers)

    # -- header filter ----------------------------------------------------------------------

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        if not self.applies(status, headers):
            self.inner.send_headers(status, headers, end_stream=end_stream, reason=reason,
                                    close=close)
            return
        headers[:] = [(k, v) for k, v in headers
                      if k.lower() not in (b"content-length", b"accept-ranges")]
        _weak_etag(headers)
        head = self.inner.head
        if head.method == b"HEAD":
            # r->header_only: the body filter never runs, no subrequest is made
            self.inner.send_headers(status, headers, end_stream=end_stream, reason=reason,
                                    close=close)
            return
        self.active = True
        self.run.addition = self
        self.chunked = head.http_version == "1.1"
        self.inner.send_headers(status, headers, reason=reason, close=close)
        if end_stream:
            self.ended = True

    # -- body filter ------------------------------------------------------------------------

    def send_data(self, data: bytes) -> None:
        if not self.active:
            self.inner.send_data(data)
            return
        if data:
            # gathered up to one read's worth (see ``drain``): a small body goes on in one
            # piece (one chunk on the wire), as nginx passes a file's buffer on at once
            self.pending.append(data)
            self.pending_size += len(data)

    def _flush(self) -> None:
        pending, self.pending, self.pending_size = self.pending, [], 0
        if pending:
            self._main(b"".join(pending))

    def _main(self, data: bytes) -> None:
        self.main_sent += len(data)
        if self.chunked:
            self.main_sent += len(b"%x" % len(data)) + 4
        self.inner.send_data(data)

    async def drain(self) -> None:
        if self.active:
            if not self.before_done:
                await self._before()
            if self.pending_size >= HOLD:
                self._flush()
        await self.inner.drain()

    async def _before(self) -> None:
        self.before_done = True
        if self.conf.before:
            await self._subrequest(self.conf.before)

    def end(self) -> None:
        if not self.active:
            self.inner.end()
            return
        self.ended = True

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        self.send_headers(status, headers, reason=reason, close=close)
        if not self.active:
            if body:
                self.inner.send_data(body)
            self.inner.end()
            return
        self.send_data(body)
        self.ended = True

    def abort(self) -> None:
        self.aborted = True
        self.inner.abort()

    async def complete(self) -> None:
        """The ``add_before_body`` body if still owed, the main body held, and once the
        main body has ended, the ``add_after_body`` body and the end of the answer."""
        if not self.active or self.aborted:
            return
        if not self.before_done:
            await self._before()
        if self.aborted:
            return
        if not self.ended:
            self._flush()
            return
        from . import subfilter

        sub = self.inner if isinstance(self.inner, subfilter.SubExchange) else None
        if sub is not None and sub.matcher is not None:
            # nginx's last buffer is only last_in_chain here: the sub filter lets its held
            # bytes go before the add_after_body subrequest runs, with the rest of the
            # main body in one piece (nginx's one chain)
            pending, self.pending, self.pending_size = self.pending, [], 0
            out = sub.matcher.feed(b"".join(pending), last=True)
            if out:
                sub._count(out)
                sub.inner.send_data(out)
        else:
            self._flush()
        if self.conf.after:
            await self._subrequest(self.conf.after)
            if self.aborted:
                return
        self.inner.end()
        self._count_body(sub)

    def _count_body(self, sub: Any) -> None:
        """$body_bytes_sent: what went out (chunk framing on HTTP/1.1), unless gzip (which
        sees all of it) counts."""
        from .gzipfilter import GzipExchange

        if isinstance(self.below, GzipExchange) and self.below.comp is not None:
            return
        if sub is not None and sub.matcher is not None:
            main = sub.sent  # with its framing and the last chunk
        else:
            main = self.main_sent + (5 if self.chunked else 0)
        self.run.body_bytes = main + self.sub_sent

    # -- subrequests --------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        if not data or self.aborted:
            return
        self.sub_sent += len(data)
        if self.chunked:
            self.sub_sent += len(b"%x" % len(data)) + 4
        self.below.send_data(data)

    async def _subrequest(self, uri: str) -> None:
        from .engine import _Run

        engine = self.engine
        parent = self.state
        client = self.below
        sub_run = _Run(start=time.time())

        def hook(name: str) -> str | None:
            if name[:4] == "ssl_":
                return client.tls_var(name)  # type: ignore[no-any-return]
            return engine._var(name, sub_run)

        # no Range or conditional answer in a subrequest (the range and not_modified filters
        # skip r != r->main); the raw headers, passed upstream, stay as they are
        headers = {k: v for k, v in parent.req.headers.items() if k not in _MAIN_ONLY}
        capture = BodyExchange(client, self)
        if not uri.startswith("/"):
            # nginx's location search finds nothing for it and the file is not there
            await engine._send_error(capture, parent, 404, sub_run)  # type: ignore[arg-type]
            capture.flush()
            return
        # the URI is $uri as written (ngx_http_subrequest parses nothing): no query, no
        # percent-decoding
        target = uri.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
        sub_req = dataclasses.replace(
            parent.req, method="GET", target=target, headers=headers, var_hook=hook,
            auth_outcomes=[], subrequest=True, prior=None)
        result = engine.interp.subrequest(sub_req, parent)
        await engine._respond(capture, result, sub_run)  # type: ignore[arg-type]
        capture.flush()
        if capture.aborted:
            self.abort()


class BodyExchange:
    """The engine's view of an addition subrequest: the client's connection and headers
    (without Accept-Encoding: gzip and gzip_static decline in a subrequest, as
    ``ngx_http_gzip_ok`` does), method GET, no body; the answer's body goes to the main
    answer, its status and headers are dropped."""

    def __init__(self, client: Any, owner: AdditionExchange) -> None:
        self.client = client
        self.owner = owner
        head = client.head
        self.head = dataclasses.replace(
            head, method=b"GET", end_stream=True, chunked=False,
            raw_headers=tuple((k, v) for k, v in head.raw_headers
                              if k.lower() != b"accept-encoding"))
        self.scheme = client.scheme
        self.local_addr, self.local_port = client.local_addr, client.local_port
        self.remote_addr, self.remote_port = client.remote_addr, client.remote_port
        self.connection_id = client.connection_id
        self.connection_requests = client.connection_requests
        self.aborted = False
        self.held: list[bytes] = []
        self.size = 0

    async def body(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - an empty async generator

    def body_complete(self) -> bool:
        return True

    def send_continue(self) -> None:
        return None

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        return None

    def send_data(self, data: bytes) -> None:
        # pieces are gathered up to one read's worth: a small answer is one chunk on the
        # wire, as nginx sends a subrequest's buffer (and its sub filter's tail) at once
        self.held.append(data)
        self.size += len(data)
        if self.size >= HOLD:
            self.flush()

    def flush(self) -> None:
        if self.held:
            held, self.held, self.size = self.held, [], 0
            self.owner._emit(b"".join(held))

    async def drain(self) -> None:
        await self.client.drain()

    def end(self) -> None:
        self.flush()

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        self.send_data(body)
        self.flush()

    def abort(self) -> None:
        # a subrequest closing the connection (return 444, an upstream cut short) closes
        # the client's
        self.aborted = True

    def tunnel(self, upstream: object) -> None:
        return None

    def tls_var(self, name: str) -> str | None:
        return self.client.tls_var(name)  # type: ignore[no-any-return]
