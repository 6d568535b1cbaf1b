"""Response rate limiting: nginx's ``limit_rate``, ``limit_rate_after``, ``$limit_rate``,
``X-Accel-Limit-Rate`` and ``proxy_limit_rate``.

Rules (ngx_http_write_filter_module.c, ngx_event_pipe.c, nginx 1.22):

1. The limit belongs to the request (an HTTP/2 or HTTP/3 stream is a request).  Its rate is
   decided at the first write of the response: a rate already set for the request (``set
   $limit_rate``, an upstream's ``X-Accel-Limit-Rate``) wins, else ``limit_rate`` of the level
   answering (a complex value: variables allowed; a value that is not a size counts as 0).
   ``limit_rate_after`` is decided alike when the rate is not 0.
2. Before each write: ``limit = rate * (now_sec - start_sec + 1) - (sent - after)``, whole
   seconds as nginx's ``ngx_time()``; ``limit <= 0`` waits ``-limit / rate`` (+1 ms), else at
   most ``limit`` bytes go out.  After a write of ``n`` bytes beyond ``after``, the next write
   waits ``n / rate`` (the connection's write is "delayed").  ``sent`` counts the response head
   as well (nginx's ``c->sent``).  The last write of a response is not followed by a wait.
3. Reading ``$limit_rate`` gives the rate as a number, 0 until it is decided or set (so
   ``add_header ... $limit_rate`` sees 0 unless ``set`` or ``X-Accel-Limit-Rate`` set it; the
   log phase sees the decided value).  ``set $limit_rate`` takes a size (``4k``); a value that
   is not a size is ignored.
4. ``X-Accel-Limit-Rate: N`` (digits only, bytes per second; ``0`` turns the limit off) from an
   upstream sets the rate unless ``proxy_ignore_headers`` names it.
5. ``proxy_limit_rate`` paces reading the upstream's body when buffering is on
   (``proxy_buffering``, switched by the answer's ``X-Accel-Buffering: yes|no`` unless
   ``proxy_ignore_headers`` names it): the same arithmetic over the body bytes read,
   from the moment the answer starts being relayed; what came with the head (up to
   ``proxy_buffer_size``) is not counted.

The pacing is done by :class:`Pacer`, an exchange in front of the client's (behind the gzip and
sub_filter filters, as nginx's write filter is last); the engine awaits :meth:`Pacer.complete`
before the log phase, as nginx finalises the request once the last byte is out.  Only requests
that can be paced get one (:func:`possible` for the configuration, :func:`wanted` per request);
the fast path hands them over (:func:`applies`, :func:`accel_rate`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interp import RequestState, RouteResult
    from .model import Config, Scope

__all__ = ["DIRECTIVES", "Pacer", "Throttle", "accel", "accel_rate", "applies", "conf_of",
           "parse_size", "possible", "problem", "relay", "upstream_throttle", "wanted"]

DIRECTIVES = frozenset({"limit_rate", "limit_rate_after", "proxy_limit_rate"})
"""The directives this module runs (kept as written in ``Scope.other``)."""

_SIZE = re.compile(r"([0-9]+)([kKmM]?)")
_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([0-9])|([A-Za-z0-9_]+))")
_MAX = (1 << 63) - 1


def parse_size(text: str) -> int | None:
    """nginx 1.22's ``ngx_parse_size``: digits with an optional k/K or m/M; None if invalid
    (``g`` is not a unit there, overflow is invalid)."""
    mt = _SIZE.fullmatch(text)
    if mt is None:
        return None
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[mt.group(2).lower()]
    n = int(mt.group(1))
    if n > _MAX // scale:
        return None
    return n * scale


Value = int | tuple[str | tuple[str], ...]
"""A size as configured: an int, or the parts of a complex value (text, or (variable name,))."""


def _compile(text: str) -> Value | None:
    """A complex size value: an int when it has no variables; None when nginx refuses it."""
    if "$" not in text:
        return parse_size(text)
    parts: list[str | tuple[str]] = []
    pos = 0
    for mt in _VAR.finditer(text):
        if mt.start() > pos:
            parts.append(text[pos:mt.start()])
        parts.append((mt.group(1) or mt.group(2) or mt.group(3),))
        pos = mt.end()
    if pos < len(text):
        parts.append(text[pos:])
    if any(isinstance(p, str) and "$" in p for p in parts):
        return None
    return tuple(parts)


def problem(name: str, args: tuple[str, ...]) -> str | None:
    """What nginx 1.22 says about a value of one of :data:`DIRECTIVES` at load, or None."""
    if name not in DIRECTIVES or len(args) != 1:
        return None
    value = _compile(args[0]) if name != "proxy_limit_rate" else parse_size(args[0])
    if value is None:
        return f'"{name}" directive invalid value'
    return None


def _evaluate(value: Value, state: RequestState) -> int:
    """ngx_http_complex_value_size with default 0."""
    if isinstance(value, int):
        return value
    text = "".join(p if isinstance(p, str) else state.var(p[0]) for p in value)
    n = parse_size(text)
    return 0 if n is None else n


class RateConf:
    """The rate settings of one chain of levels (innermost level setting each wins)."""

    __slots__ = ("rate", "after", "proxy")

    def __init__(self, rate: Value, after: Value, proxy: int) -> None:
        self.rate = rate
        self.after = after
        self.proxy = proxy


_NONE = RateConf(0, 0, 0)


def _arg(chain: list[Scope], name: str) -> str | None:
    for scope in reversed(chain):
        for d in scope.other:
            if d.name == name:
                return d.args[0] if d.args else None
    return None


def conf_of(state: RequestState) -> RateConf:
    """The settings in effect for the request's chain (computed once per chain)."""
    cache = state.interp.effective_cache
    key = (state.chain_key, "ratelimit")
    found = cache.get(key)
    if isinstance(found, RateConf):
        return found
    chain = state.scope_chain
    values: list[Value] = []
    for name in ("limit_rate", "limit_rate_after"):
        raw = _arg(chain, name)
        v = _compile(raw) if raw is not None else 0
        values.append(0 if v is None else v)
    raw = _arg(chain, "proxy_limit_rate")
    proxy = (parse_size(raw) or 0) if raw is not None else 0
    conf = _NONE if values == [0, 0] and not proxy else RateConf(values[0], values[1], proxy)
    cache[key] = conf
    return conf


def _scopes(config: Config) -> list[Scope]:
    http = config.http
    if http is None:
        return []
    out = [http.scope]
    stack: list[Any] = list(http.servers)
    while stack:
        node = stack.pop()
        out.append(node.scope)
        stack.extend(node.locations)
        extra = getattr(node, "limit_except_scope", None)
        if extra is not None:
            out.append(extra)
    more: list[Scope] = []
    for scope in out:
        todo = list(scope.rewrites)
        while todo:
            st = todo.pop()
            inner = getattr(st, "scope", None)
            if inner is not None:
                more.append(inner)
                todo.extend(inner.rewrites)
    return out + more


def possible(config: Config) -> bool:
    """Whether any request of ``config`` can be rate limited: a directive of
    :data:`DIRECTIVES`, a ``set $limit_rate``, or a ``proxy_pass`` (its upstream may answer
    with ``X-Accel-Limit-Rate``)."""
    for scope in _scopes(config):
        if scope.proxy_pass is not None:
            return True
        if any(d.name in DIRECTIVES for d in scope.other):
            return True
        if any(getattr(st, "name", None) == "limit_rate" for st in scope.rewrites):
            return True
    return False


def applies(state: RequestState) -> bool:
    """Whether the request may be paced by its configuration (a rate directive in its chain or
    ``set $limit_rate``): the fast path leaves such requests to the general path."""
    return conf_of(state) is not _NONE or "limit_rate" in state.vars


def wanted(result: RouteResult) -> bool:
    """Whether a routed request needs a :class:`Pacer` (``possible`` said the configuration
    may pace some): its chain or a ``set`` asks for one, or an upstream's answer may."""
    if result.kind in ("proxy", "auth_request"):
        return True
    state = result.state
    return state is not None and applies(state)


def accel_rate(headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]
               ) -> int | None:
    """An upstream's ``X-Accel-Limit-Rate`` as nginx reads it (``ngx_atoi``: digits only),
    or None (absent or not a number)."""
    for name, value in headers:
        if len(name) == 18 and name.lower() == b"x-accel-limit-rate":
            return int(value) if value.isdigit() else None
    return None


def _ignored(state: RequestState, module: str, header: str) -> bool:
    for scope in reversed(state.scope_chain):
        for d in scope.other:
            if d.name == module + "_ignore_headers":
                return header in (a.lower() for a in d.args)
    return False


def accel(pacer: Pacer, state: RequestState,
          headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...],
          module: str) -> None:
    """An upstream answer's ``X-Accel-Limit-Rate`` sets the request's rate (rule 4)."""
    n = accel_rate(headers)
    if n is not None and not _ignored(state, module, "x-accel-limit-rate"):
        pacer.set_rate(n)


def upstream_throttle(state: RequestState, headers: list[tuple[bytes, bytes]],
                      preread: int) -> Throttle | None:
    """The pacing of an upstream body under ``proxy_limit_rate`` (rule 5), or None.

    ``preread``: body bytes that may come with the head, not counted."""
    rate = conf_of(state).proxy
    if not rate:
        return None
    buffering = state.effective(lambda s: s.proxy.buffering) is not False  # type: ignore[no-untyped-call]
    if not _ignored(state, "proxy", "x-accel-buffering"):
        for name, value in headers:
            if len(name) == 17 and name.lower() == b"x-accel-buffering":
                # ngx_http_upstream_process_buffering: "yes" or "no", anything else ignored
                low = value.lower()
                buffering = True if low == b"yes" else False if low == b"no" else buffering
                break
    if not buffering:
        return None
    return Throttle(rate, max(preread, 0), time.time())


async def relay(throttle: Throttle, ex: Any, first: bytes,
                read: Callable[[], Awaitable[bytes | None]], run: Any) -> None:
    """An upstream body to ``ex`` at ``proxy_limit_rate``: ``first`` (what came with the
    head), then what ``read`` returns until None."""

    async def write(piece: bytes) -> None:
        ex.send_data(piece)
        run.body_bytes += len(piece)
        await ex.drain()

    data: bytes | None = first
    while data is not None:
        if data:
            await throttle.paced(data, write)
        data = await read()


class Throttle:
    """nginx's rate arithmetic over one byte count (rule 2)."""

    __slots__ = ("rate", "after", "start_sec", "count", "until")

    def __init__(self, rate: int, after: int, start: float, count: int = 0) -> None:
        self.rate = rate
        self.after = after
        self.start_sec = int(start)
        self.count = count
        self.until = 0.0
        """The earliest time of the next write (a delayed write event), wall-clock seconds."""

    def allowance(self, now: float) -> int:
        """Bytes that may go out now (<= 0: none)."""
        return self.rate * (int(now) - self.start_sec + 1) - (self.count - self.after)

    def wait(self, now: float) -> tuple[float, int]:
        """(seconds to wait before writing, bytes allowed once that wait is over)."""
        if now < self.until:
            return self.until - now, 0
        limit = self.allowance(now)
        if limit <= 0:
            return -limit / self.rate + 0.001, 0
        return 0.0, limit

    def spent(self, n: int, now: float) -> None:
        """``n`` bytes went out at ``now``: the next write waits for what passed ``after``."""
        before = max(self.count - self.after, 0)
        self.count += n
        beyond = max(self.count - self.after, 0) - before
        if beyond > 0:
            self.until = now + beyond / self.rate

    async def paced(self, data: bytes, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Hand ``data`` to ``write`` in slices the arithmetic allows, waiting in between (a
        wait owed after the last slice is left to the next call)."""
        pos = 0
        while pos < len(data):
            delay, limit = self.wait(time.time())
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            piece = data[pos:pos + limit]
            pos += len(piece)
            await write(piece)
            self.spent(len(piece), time.time())


def _head_size(status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None) -> int:
    """About what the response head takes on the wire (HTTP/1.1 form, with a Connection
    header): it counts against ``limit_rate_after`` as in nginx."""
    size = 17 + (len(reason) if reason is not None else 2) + 24 + 2
    for k, v in headers:
        size += len(k) + len(v) + 4
    return size


class Pacer:
    """The client's exchange behind nginx's write filter (module rules)."""

    def __init__(self, inner: Any, start: float) -> None:
        self.inner = inner
        self.head = inner.head
        self.start = start
        self.state: RequestState | None = None
        """The request state answering now (the engine sets it before each handler)."""
        self.rate = 0
        """``r->limit_rate``: ``$limit_rate``."""
        self.rate_set = False
        """``r->limit_rate_set``: ``set $limit_rate``, ``X-Accel-Limit-Rate`` or the first write
        decided it."""
        self.throttle: Throttle | None = None
        self.pending: list[bytes] = []
        self.end_owed = False
        self.seen_set: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # -- the rate -----------------------------------------------------------------------------

    def set_rate(self, rate: int) -> None:
        """``set $limit_rate`` or ``X-Accel-Limit-Rate``: the request's rate from now on."""
        self.rate = rate
        self.rate_set = True
        if self.throttle is not None:
            if rate:
                self.throttle.rate = rate
            else:
                self.throttle = None

    def enter(self, state: RequestState | None) -> None:
        """The engine runs a handler for ``state``: note it, and take a ``set $limit_rate``
        made while routing (the variable then reads as the number, as nginx's getter
        prints it; a value that is not a size is ignored, as nginx's setter does)."""
        self.state = state
        if state is None:
            return
        raw = state.vars.get("limit_rate")
        if raw is None or raw == self.seen_set:
            return
        n = parse_size(raw)
        if n is None:
            del state.vars["limit_rate"]
            return
        self.seen_set = state.vars["limit_rate"] = str(n)
        self.set_rate(n)

    def _decide(self, status: int, headers: list[tuple[bytes, bytes]],
                reason: bytes | None) -> None:
        state = self.state
        conf = conf_of(state) if state is not None else _NONE
        if not self.rate_set:
            self.rate = _evaluate(conf.rate, state) if state is not None else 0
            self.rate_set = True
        if self.rate > 0:
            after = _evaluate(conf.after, state) if state is not None else 0
            self.throttle = Throttle(self.rate, after, self.start,
                                     _head_size(status, headers, reason))

    # -- the exchange -------------------------------------------------------------------------

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        self._decide(status, headers, reason)
        self.inner.send_headers(status, headers, end_stream=end_stream, reason=reason,
                                close=close)

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        self._decide(status, headers, reason)
        if self.throttle is None:
            self.inner.send_response(status, headers, body, reason=reason, close=close)
            return
        self.inner.send_headers(status, headers, reason=reason, close=close)
        if body:
            self.pending.append(body)
        self.end()

    def send_data(self, data: bytes) -> None:
        if self.throttle is None and not self.pending:
            self.inner.send_data(data)
        else:
            self.pending.append(data)

    def end(self) -> None:
        if self.pending:
            self.end_owed = True  # after the body (complete)
        else:
            self.inner.end()

    def abort(self) -> None:
        self.pending.clear()
        self.end_owed = False
        self.inner.abort()

    async def drain(self) -> None:
        if self.pending:
            await self._flush()
        await self.inner.drain()

    async def _write(self, piece: bytes) -> None:
        self.inner.send_data(piece)
        await self.inner.drain()

    async def _flush(self) -> None:
        while self.pending:
            data = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending.clear()
            throttle = self.throttle
            if throttle is None:
                self.inner.send_data(data)
            else:
                await throttle.paced(data, self._write)

    async def complete(self) -> None:
        """The rest of the response, paced, then its end (nginx finalises the request when
        the last byte is out)."""
        if self.pending:
            await self._flush()
        if self.end_owed:
            self.end_owed = False
            self.inner.end()
