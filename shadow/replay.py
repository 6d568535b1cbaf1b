"""``tern replay``: send recorded requests to the primary and the candidate and diff the answers.

Sources (:func:`read_source`, chosen by content):

- an nginx access log, read with a ``log_format`` (``combined`` by default) through the lark
  grammar of :mod:`shadow.logparse`;
- a HAR file (``{"log": {"entries": [...]}}``; each entry's ``request``: ``method``, ``url``,
  ``httpVersion``, ``headers``, ``postData.text``); HTTP/2 pseudo-headers and hop-by-hop headers
  are dropped, ``Host`` comes from the URL when absent;
- Tern's JSON Lines capture, the request-set format of ``tern compare`` (one object a line:
  ``url`` required; ``method``, ``host``, ``headers`` as ``[[name, value], ...]`` or an object,
  ``body`` or ``body_base64``, ``version``; other keys ignored).

Rules:

1. A malformed line (or HAR entry) is counted with its line number (entry index for HAR) and
   skipped; it is never fatal. Only an unreadable file is an error (:class:`SourceError`).
2. Every request goes to the primary and to the candidate at the same time (and to the
   secondary, or to the primary again with ``learn_noise``), marked ``X-Tern-Shadow: 1``, on
   keep-alive connections; at most ``concurrency`` requests are in flight and at most ``rate``
   start per second.
3. Unsafe methods are replayed (the operator chose the targets); ``safe_only`` skips them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proxy.accesslog import COMBINED
from proxy.model import LogFormat

from .diff import HOP_BY_HOP
from .logparse import LogLineError, LogParser, request_of
from .mirror import (
    MARKER,
    SAFE_METHODS,
    Analyzer,
    Exchange,
    OutRequest,
    UpstreamClient,
    make_upstream_tls,
    parse_upstream,
)

__all__ = ["Item", "ReplaySummary", "SourceError", "read_source", "replay"]


class SourceError(Exception):
    """The source cannot be read at all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One request to replay."""

    line: int
    """Line of the source (HAR: entry number, from 1)."""
    request: OutRequest
    host: str


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did."""

    kind: str = ""
    """``access-log``, ``har`` or ``jsonl``."""
    read: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    """(line, why) of every malformed line."""
    sent: int = 0
    skipped_unsafe: int = 0
    primary_errors: int = 0
    candidate_errors: int = 0
    elapsed: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "read": self.read, "sent": self.sent,
                "malformed": len(self.malformed),
                "malformed_lines": [{"line": n, "error": e} for n, e in self.malformed],
                "skipped_unsafe": self.skipped_unsafe, "primary_errors": self.primary_errors,
                "candidate_errors": self.candidate_errors, "elapsed": round(self.elapsed, 3)}


_DROP = frozenset(HOP_BY_HOP | {"content-length", "host", "expect"})


def _request(method: str, target: str, host: str | None, headers: list[tuple[str, str]],
             body: bytes, version: str = "1.1") -> tuple[OutRequest, str]:
    hdrs: list[tuple[bytes, bytes]] = []
    given_host = host
    for n, v in headers:
        ln = n.lower()
        if ln.startswith(":"):
            if ln == ":authority" and given_host is None:
                given_host = v
            continue
        if ln == "host" and given_host is None:
            given_host = v
        if ln in _DROP:
            continue
        hdrs.append((n.encode("latin-1", "replace"), v.encode("latin-1", "replace")))
    h = given_host or "localhost"
    hdrs.insert(0, (b"Host", h.encode("latin-1", "replace")))
    if version not in ("1.0", "1.1"):
        version = "1.1"
    return OutRequest(method=method.upper(), target=target, version=version,
                      headers=tuple(hdrs), body=body, had_length=bool(body)), h


def _split_url(url: str) -> tuple[str, str | None]:
    if "://" in url:
        parts = urlsplit(url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), parts.netloc
    return url, None


def read_source(path: str, log_format: LogFormat = COMBINED
                ) -> tuple[str, Iterator[Item | tuple[int, str]]]:
    """Open a source; returns its kind and an iterator of items and ``(line, error)`` pairs.

    Raises:
        SourceError: the file cannot be opened or read.
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError as exc:
        raise SourceError(f"{path}: {exc}") from None
    stripped = text.lstrip()
    if path.endswith(".har") or (stripped.startswith("{") and '"log"' in stripped[:200]
                                 and not path.endswith(".jsonl")):
        return "har", _har(path, text)
    first = next((ln.strip() for ln in text.splitlines()
                  if ln.strip() and not ln.startswith("#")), "")
    if path.endswith((".jsonl", ".json")) or first.startswith("{"):
        return "jsonl", _jsonl(text)
    return "access-log", _log(text, LogParser(log_format))


def _log(text: str, parser: LogParser) -> Iterator[Item | tuple[int, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = request_of(parser.parse(line))
        except LogLineError as exc:
            yield (n, str(exc))
            continue
        req, host = _request(r.method, r.target, r.host, list(r.headers), b"", r.version)
        yield Item(line=n, request=req, host=host)


def _jsonl(text: str) -> Iterator[Item | tuple[int, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
            if not isinstance(obj, dict) or not isinstance(obj.get("url"), str):
                raise ValueError('each line must be an object with a "url" string')
            target, host = _split_url(obj["url"])
            if "host" in obj:
                host = obj["host"]
            headers = obj.get("headers", [])
            if isinstance(headers, dict):
                headers = list(headers.items())
            if not all(isinstance(h, list | tuple) and len(h) == 2 for h in headers):
                raise ValueError('"headers" must be [[name, value], ...] or an object')
            body = (base64.b64decode(obj["body_base64"]) if "body_base64" in obj
                    else str(obj.get("body", "")).encode("utf-8"))
            req, h = _request(str(obj.get("method", "GET")), target, host,
                              [(str(a), str(b)) for a, b in headers], body,
                              str(obj.get("version", "1.1")).removeprefix("HTTP/"))
        except (ValueError, TypeError) as exc:
            yield (n, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            continue
        yield Item(line=n, request=req, host=h)


def _har(path: str, text: str) -> Iterator[Item | tuple[int, str]]:
    try:
        entries = json.loads(text)["log"]["entries"]
        if not isinstance(entries, list):
            raise TypeError("log.entries is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        yield (0, f"not a HAR file: {exc}")
        return
    for n, entry in enumerate(entries, 1):
        try:
            r = entry["request"]
            target, host = _split_url(r["url"])
            headers = [(h["name"], h["value"]) for h in r.get("headers", [])]
            post = r.get("postData") or {}
            body = str(post.get("text", "")).encode("utf-8")
            version = str(r.get("httpVersion", "HTTP/1.1")).upper().removeprefix("HTTP/")
            req, h = _request(str(r["method"]), target, host, headers, body, version)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            yield (n, f"bad HAR entry: {type(exc).__name__}: {exc}")
            continue
        yield Item(line=n, request=req, host=h)


async def replay(items: Iterator[Item | tuple[int, str]], *, primary: str, candidate: str,
                 analyzer: Analyzer | None, secondary: str | None = None,
                 learn_noise: bool = False, concurrency: int = 8, rate: float | None = None,
                 timeout: float = 10.0, safe_only: bool = False,
                 progress: Callable[[ReplaySummary], None] | None = None,
                 summary: ReplaySummary | None = None,
                 upstream_tls: ssl.SSLContext | None = None) -> ReplaySummary:
    """Replay ``items`` (rules 2-3 of the module docstring).

    ``https://`` origins are reached over TLS with ``upstream_tls`` (default: verified,
    :func:`shadow.mirror.make_upstream_tls`).

    Returns:
        The summary (also updated live and passed to ``progress`` about 10 times a second).
    """
    out = summary or ReplaySummary()
    origins = [parse_upstream(u) for u in (primary, candidate, secondary or primary)]
    if upstream_tls is None and any(tls for _, _, tls in origins):
        upstream_tls = make_upstream_tls()

    def client(origin: tuple[str, int, bool]) -> UpstreamClient:
        host, port, tls = origin
        return UpstreamClient(host, port, timeout=timeout, tls=upstream_tls if tls else None)

    p_client = client(origins[0])
    c_client = client(origins[1])
    s_client = client(origins[2]) if secondary is not None or learn_noise else None
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    last = 0.0
    tasks: set[asyncio.Task[None]] = set()

    async def one(item: Item) -> None:
        try:
            pf = asyncio.ensure_future(p_client.fetch(item.request))
            cf = asyncio.ensure_future(c_client.fetch(item.request, MARKER))
            sf = (asyncio.ensure_future(s_client.fetch(item.request, MARKER))
                  if s_client is not None else None)
            p, c = await pf, await cf
            s = await sf if sf is not None else None
            out.sent += 1
            if p.error:
                out.primary_errors += 1
            if c.error:
                out.candidate_errors += 1
            if s is not None and s.error:
                s = None
            if analyzer is not None and not p.error:
                ex = Exchange(source="replay", request=item.request, host=item.host,
                              primary=p, candidate=c, secondary=s)
                while not analyzer.submit(ex):
                    analyzer.dropped -= 1  # back-pressure here, not a drop
                    await asyncio.sleep(0.01)
        finally:
            sem.release()

    try:
        for it in items:
            if isinstance(it, tuple):
                out.malformed.append(it)
                continue
            out.read += 1
            if safe_only and it.request.method not in SAFE_METHODS:
                out.skipped_unsafe += 1
                continue
            if rate:
                due = start + out.read / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            t = asyncio.ensure_future(one(it))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            now = time.monotonic()
            if progress is not None and now - last > 0.1:
                last = now
                out.elapsed = now - start
                progress(out)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for cl in (p_client, c_client, s_client):
            if cl is not None:
                cl.close()
    out.elapsed = time.monotonic() - start
    if progress is not None:
        progress(out)
    return out
