"""``tern compare``: run nginx and the candidate side by side on one config and diff every answer.

Each side gets its own port-mapped copy of the configuration (:mod:`migrate.portmap`); every
upstream address of the config is replaced by a recording echo server (:mod:`shadow.echo`), one
per distinct address, shared by both sides so that both copies name the same upstream addresses
(nginx's ``hash ... consistent`` ring is built from them). Nothing reaches a real backend. Every
request of the request set is sent to one side, then the other, on a fresh connection each; an
echo record belongs to the side and request in flight when it arrived. The responses and what
the upstreams received are compared with :func:`shadow.diff.diff`.

Request sets
============

JSON Lines (chosen when the file ends in ``.jsonl``/``.json`` or its first non-blank line starts
with ``{``): one object per line; blank lines and lines starting with ``#`` are skipped::

    {"method": "GET", "url": "/path?q", "host": "shop.example.com", "port": 8080,
     "headers": [["Accept", "application/json"]], "body": "text"}

- ``url`` (required): the request target, sent byte for byte (an absolute ``http[s]://`` URL
  gives the target, and ``host``/``port``/``scheme`` when those keys are absent);
- ``method``: default ``GET``; ``host``: the ``Host`` header, default ``localhost``, ``null``
  for none; ``port``: the ORIGINAL listen port in the config, default the first one;
  ``address``: the original listen address when several listen on that port (default: the
  wildcard one); ``scheme``: ``http``/``https``, default ``https`` when that listen has ``ssl``;
  ``headers``: ``[[name, value], ...]`` in order (or an object); ``body`` (UTF-8 text) or
  ``body_base64``; ``version``: ``1.1`` (default) or ``1.0``; ``name``: a label for the report.

Plain text, for people: blocks separated by lines ``###``; in each block, lines starting with
``#`` before the request line are comments, then::

    METHOD http://HOST[:PORT]/path?query [HTTP/1.1]
    Name: value
    (blank line)
    body

The URL's host is the ``Host`` header (with the port when written, as a browser sends it) unless
a ``Host:`` line is given; its port is the ORIGINAL listen port (default 80/443 when the config
listens there, else the first listen). ``METHOD /path`` with a ``Host:`` line also works.
Trailing blank lines of a body are dropped.

What the client adds: ``Host`` (unless given), ``X-Tern-Compare-Id`` (the tag that finds the
request on the echo side; excluded from diffs), ``Content-Length`` when there is a body and no
framing header, ``Connection: close`` unless given.

Normalisation beyond :mod:`shadow.diff`: each side's new listen and echo ports are translated
back to the original ones before comparing (``127.0.0.1:<echo port>`` -> the original upstream
address; ``<new port>`` -> ``<original port>`` in headers and upstream requests, ``:<new port>``
in bodies). With ``--learn-noise`` (default) every request is sent twice to each side; a field
that differs between the primary's two answers is noise (``$request_id``, times...) and does not
count.

With ``--http2`` (``Comparison(http2=True)``) every request goes over HTTP/2 instead
(:func:`send_h2`): ALPN ``h2`` on ``ssl`` listens, prior knowledge (h2c) elsewhere, one stream
per connection; ``Host`` becomes ``:authority`` and connection-specific fields are not sent.

Exit codes: 0 every answer equal, 1 some answer differs, 2 setup error (config, nginx -t,
candidate did not start, bad request set).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import click

from shadow.diff import CapturedRequest, CapturedResponse, Difference, DiffOptions, diff
from shadow.echo import EchoRecord, EchoServer, describe, sequence_mark
from shadow.noise import mask_signature

from .diagnostics import Level
from .loader import Tree, load
from .portmap import Endpoint, ListenSpec, Rewritten, Scan, free_port, prepare_run_dir, rewrite
from .portmap import scan as scan_tree

__all__ = ["CompareError", "RequestSetError", "RequestSpec", "compare_cmd", "load_requests"]

EXIT_SAME = 0
EXIT_DIFFERENT = 1
EXIT_SETUP = 2

TAG_HEADER = "X-Tern-Compare-Id"
"""Added to every request; echo records carrying it belong to that request."""

NGINX_BIN = "/usr/sbin/nginx"
NGINX_GLOBALS = "daemon off; master_process off;"
DEFAULT_CANDIDATE = "{python} -m migrate.cli serve {config} -p {prefix}"
"""The candidate command: ``tern serve`` on its rewritten copy (placeholders: see --help)."""


class CompareError(Exception):
    """A setup problem: reported as a message and exit code 2, never a traceback."""


class RequestSetError(CompareError):
    """The request set cannot be read; carries the file and line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


# --------------------------------------------------------------------------------------------
# request sets


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSpec:
    """One request of a request set."""

    method: str = "GET"
    """Request method."""
    target: str = "/"
    """Request target, sent as is."""
    host: str | None = "localhost"
    """``Host`` header value; None sends none."""
    port: int | None = None
    """Original listen port; None: the config's first listen."""
    address: str | None = None
    """Original listen address when several share the port."""
    scheme: str | None = None
    """``http`` or ``https``; None: ``https`` when the listen has ``ssl``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Further header lines in order."""
    body: bytes = b""
    """Request body."""
    version: str = "1.1"
    """HTTP version of the request line."""
    name: str = ""
    """Label; default METHOD URL."""
    line: int = 0
    """Line of the request set where it starts."""

    def label(self, port: int) -> str:
        """``GET http://host:port/target`` for reports."""
        if self.name:
            return self.name
        host = self.host if self.host is not None else "-"
        if ":" not in host.rsplit("]", 1)[-1]:
            host = f"{host}:{port}"
        return f"{self.method} {self.scheme or 'http'}://{host}{self.target}"


_JSON_KEYS = frozenset({"method", "url", "host", "port", "address", "scheme", "headers", "body",
                        "body_base64", "version", "name"})


def load_requests(path: str) -> list[RequestSpec]:
    """Read a request set (format in the module docstring).

    Raises:
        RequestSetError: unreadable file or a malformed request (with its line).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestSetError(path, 0, f"cannot read request set: {exc}") from None
    first = next((ln.strip() for ln in text.splitlines()
                  if ln.strip() and not ln.strip().startswith("#")), "")
    if path.endswith((".jsonl", ".json")) or first.startswith("{"):
        specs = _load_jsonl(path, text)
    else:
        specs = _load_text(path, text)
    if not specs:
        raise RequestSetError(path, 0, "no requests in the request set")
    return specs


def _load_jsonl(path: str, text: str) -> list[RequestSpec]:
    out: list[RequestSpec] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise RequestSetError(path, lineno, f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise RequestSetError(path, lineno, "each line must be a JSON object")
        unknown = sorted(set(obj) - _JSON_KEYS)
        if unknown:
            raise RequestSetError(path, lineno, f"unknown key(s): {', '.join(unknown)}")
        try:
            out.append(_spec_from_json(obj, lineno))
        except (TypeError, ValueError) as exc:
            raise RequestSetError(path, lineno, str(exc)) from None
    return out


def _spec_from_json(obj: dict[str, Any], lineno: int) -> RequestSpec:
    url = obj.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError('"url" (a string) is required')
    fields: dict[str, Any] = {"line": lineno}
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"URL scheme must be http or https: {url}")
        fields["scheme"] = parts.scheme
        fields["host"] = parts.netloc.rsplit("@", 1)[-1]
        if parts.port is not None:
            fields["port"] = parts.port
        url = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields["target"] = url
    if "method" in obj:
        fields["method"] = _str(obj, "method").upper()
    if "host" in obj:
        fields["host"] = None if obj["host"] is None else _str(obj, "host")
    if "port" in obj:
        port = obj["port"]
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError('"port" must be an integer 1-65535')
        fields["port"] = port
    for key in ("address", "scheme", "name"):
        if key in obj:
            fields[key] = _str(obj, key)
    if fields.get("scheme") not in (None, "http", "https"):
        raise ValueError('"scheme" must be "http" or "https"')
    if "version" in obj:
        fields["version"] = _version(_str(obj, "version"))
    headers = obj.get("headers", [])
    if isinstance(headers, dict):
        headers = list(headers.items())
    if not isinstance(headers, list) or not all(
            isinstance(h, list | tuple) and len(h) == 2 and all(isinstance(x, str) for x in h)
            for h in headers):
        raise ValueError('"headers" must be [[name, value], ...] or {name: value}')
    fields["headers"] = tuple((n, v) for n, v in headers)
    if "body" in obj and "body_base64" in obj:
        raise ValueError('give "body" or "body_base64", not both')
    if "body" in obj:
        fields["body"] = _str(obj, "body").encode("utf-8")
    elif "body_base64" in obj:
        fields["body"] = base64.b64decode(_str(obj, "body_base64"), validate=True)
    return RequestSpec(**fields)


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f'"{key}" must be a string')
    return value


def _version(text: str) -> str:
    v = text.upper().removeprefix("HTTP/")
    if v not in ("1.0", "1.1"):
        raise ValueError(f"HTTP version must be 1.0 or 1.1: {text}")
    return v


_REQUEST_LINE = re.compile(r"^([A-Za-z]+)\s+(\S+)(?:\s+(HTTP/\d\.\d))?\s*$")


def _load_text(path: str, text: str) -> list[RequestSpec]:
    out: list[RequestSpec] = []
    lines = text.replace("\r\n", "\n").split("\n")
    block: list[tuple[int, str]] = []
    for lineno, line in enumerate(lines, 1):
        if line.rstrip() == "###":
            if block:
                spec = _text_block(path, block)
                if spec is not None:
                    out.append(spec)
            block = []
        else:
            block.append((lineno, line))
    if block:
        spec = _text_block(path, block)
        if spec is not None:
            out.append(spec)
    return out


def _text_block(path: str, block: list[tuple[int, str]]) -> RequestSpec | None:
    i = 0
    while i < len(block) and (not block[i][1].strip() or block[i][1].lstrip().startswith("#")):
        i += 1
    if i == len(block):
        return None
    lineno, first = block[i]
    m = _REQUEST_LINE.match(first.strip())
    if m is None:
        raise RequestSetError(path, lineno, f"expected 'METHOD URL [HTTP/1.1]': {first!r}")
    method, url, version = m.group(1).upper(), m.group(2), m.group(3)
    fields: dict[str, Any] = {"method": method, "line": lineno}
    try:
        if version:
            fields["version"] = _version(version)
    except ValueError as exc:
        raise RequestSetError(path, lineno, str(exc)) from None
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise RequestSetError(path, lineno, f"URL scheme must be http or https: {url}")
        try:
            port = parts.port
        except ValueError:
            raise RequestSetError(path, lineno, f"invalid port in {url}") from None
        fields["scheme"] = parts.scheme
        fields["host"] = parts.netloc.rsplit("@", 1)[-1]
        if port is not None:
            fields["port"] = port
        fields["target"] = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    elif url.startswith("/") or url == "*":
        fields["target"] = url
    else:
        raise RequestSetError(path, lineno, f"URL must be absolute (http://host:port/...) or "
                              f"start with /: {url}")
    headers: list[tuple[str, str]] = []
    i += 1
    while i < len(block) and block[i][1].strip():
        hl, line = block[i]
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise RequestSetError(path, hl, f"expected 'Name: value': {line!r}")
        if name.lower() == "host":
            fields["host"] = value.strip()
        else:
            headers.append((name, value.strip()))
        i += 1
    fields["headers"] = tuple(headers)
    body_lines = [ln for _, ln in block[i + 1:]]
    while body_lines and not body_lines[-1].strip():
        body_lines.pop()
    fields["body"] = "\n".join(body_lines).encode("utf-8")
    return RequestSpec(**fields)


# --------------------------------------------------------------------------------------------
# the raw client


def build_request(spec: RequestSpec, tag: str) -> bytes:
    """The bytes sent for ``spec`` (see "What the client adds" in the module docstring)."""
    names = {n.lower() for n, _ in spec.headers}
    lines = [f"{spec.method} {spec.target} HTTP/{spec.version}"]
    if spec.host is not None:
        lines.append(f"Host: {spec.host}")
    lines.extend(f"{n}: {v}" for n, v in spec.headers)
    lines.append(f"{TAG_HEADER}: {tag}")
    if not names & {"content-length", "transfer-encoding"} and (
            spec.body or spec.method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(spec.body)}")
    if "connection" not in names:
        lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8") + spec.body


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _sni(host: str | None) -> str | None:
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if not name or re.fullmatch(r"[0-9.]+|[0-9A-Fa-f:]+", name):
        return None
    return name


def send(spec: RequestSpec, port: int, tag: str, *, tls: bool, timeout: float
         ) -> CapturedResponse:
    """Send one request on a new connection to 127.0.0.1:``port`` and read the answer.

    Never raises for network trouble: a refused, reset, closed or silent connection becomes a
    :class:`CapturedResponse` with ``status=None`` (or an ``error`` when the body is cut).
    """
    deadline = time.monotonic() + timeout
    raw = bytearray()
    head_req = spec.method == "HEAD"
    try:
        sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as exc:
        return CapturedResponse(status=None, error=f"connect failed: {exc.strerror or exc}")
    try:
        if tls:
            try:
                sock = _tls_context().wrap_socket(sock, server_hostname=_sni(spec.host))
            except (OSError, ssl.SSLError) as exc:
                return CapturedResponse(status=None, error=f"TLS handshake failed: {exc}")
        with contextlib.suppress(OSError):  # the server may answer (413...) before reading all
            sock.sendall(build_request(spec, tag))
        error = ""
        while True:
            parsed = _parse_response(bytes(raw), head_req, eof=False)
            if parsed is not None:
                return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = "timeout"
                break
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                error = "timeout"
                break
            except ssl.SSLError as exc:
                error = f"TLS error: {exc.reason or exc}"
                break
            except ConnectionResetError:
                error = "reset"
                break
            except OSError as exc:
                error = f"error: {exc.strerror or exc}"
                break
            if not data:
                error = "closed"
                break
            raw += data
        final = _parse_response(bytes(raw), head_req, eof=True, error=error)
        assert final is not None
        return final
    finally:
        sock.close()


_H2_SKIP = frozenset({"host", "connection", "keep-alive", "proxy-connection",
                      "transfer-encoding", "upgrade"})
"""HTTP/1.1 fields with no HTTP/2 form (RFC 9113 §8.2.2; Host becomes ``:authority``)."""


def send_h2(spec: RequestSpec, port: int, tag: str, *, tls: bool, timeout: float
            ) -> CapturedResponse:
    """:func:`send` over HTTP/2: ALPN ``h2`` on TLS, prior knowledge (h2c) on cleartext.

    One connection, one stream.  The request's fields go as HPACK fields (names lower-cased,
    ``Host`` as ``:authority``, connection-specific ones dropped); the answer's ``version`` is
    ``"2"``.  Never raises for network or protocol trouble (see :func:`send`).
    """
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import (
        ConnectionTerminated,
        DataReceived,
        ResponseReceived,
        StreamEnded,
        StreamReset,
        TrailersReceived,
    )
    from h2.exceptions import H2Error

    deadline = time.monotonic() + timeout
    try:
        sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as exc:
        return CapturedResponse(status=None, error=f"connect failed: {exc.strerror or exc}")
    try:
        if tls:
            ctx = _tls_context()
            ctx.set_alpn_protocols(["h2"])
            try:
                sock = ctx.wrap_socket(sock, server_hostname=_sni(spec.host))
            except (OSError, ssl.SSLError) as exc:
                return CapturedResponse(status=None, error=f"TLS handshake failed: {exc}")
            if sock.selected_alpn_protocol() != "h2":  # type: ignore[attr-defined]
                return CapturedResponse(status=None, error="ALPN: the server did not pick h2")
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None,
                                            validate_outbound_headers=False,
                                            normalize_outbound_headers=False,
                                            validate_inbound_headers=False))
        conn.initiate_connection()
        fields: list[tuple[bytes, bytes]] = [
            (b":method", spec.method.encode()), (b":scheme", (spec.scheme or "http").encode()),
            (b":path", spec.target.encode("utf-8"))]
        if spec.host is not None:
            fields.insert(2, (b":authority", spec.host.encode("utf-8")))
        names = set()
        for n, v in spec.headers:
            low = n.lower()
            names.add(low)
            if low not in _H2_SKIP:
                fields.append((low.encode("latin-1"), v.encode("utf-8")))
        fields.append((TAG_HEADER.lower().encode(), tag.encode()))
        if "content-length" not in names and (
                spec.body or spec.method in ("POST", "PUT", "PATCH")):
            fields.append((b"content-length", str(len(spec.body)).encode()))
        conn.send_headers(1, fields, end_stream=not spec.body)
        pending = memoryview(spec.body)
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        body = bytearray()
        error = ""
        done = False

        def push() -> None:
            nonlocal pending
            while pending:
                n = min(len(pending), conn.local_flow_control_window(1),
                        conn.max_outbound_frame_size)
                if n <= 0:
                    break
                conn.send_data(1, pending[:n].tobytes(), end_stream=n == len(pending))
                pending = pending[n:]

        with contextlib.suppress(H2Error):
            push()
        with contextlib.suppress(OSError):
            sock.sendall(conn.data_to_send())
        while not done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = "timeout"
                break
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                error = "timeout"
                break
            except ssl.SSLError as exc:
                error = f"TLS error: {exc.reason or exc}"
                break
            except OSError as exc:
                error = "reset" if isinstance(exc, ConnectionResetError) else \
                    f"error: {exc.strerror or exc}"
                break
            if not data:
                error = "closed"
                break
            try:
                events = conn.receive_data(data)
            except H2Error as exc:
                error = f"HTTP/2 error: {exc}"
                break
            for ev in events:
                if isinstance(ev, ResponseReceived) and ev.stream_id == 1:
                    hs = [(bytes(k), bytes(v)) for k, v in ev.headers]
                    code = dict(hs).get(b":status", b"")
                    if code.startswith(b"1"):
                        continue
                    status = int(code) if code.isdigit() else None
                    headers = [(k, v) for k, v in hs if not k.startswith(b":")]
                elif isinstance(ev, TrailersReceived) and ev.stream_id == 1:
                    headers += [(bytes(k), bytes(v)) for k, v in ev.headers]
                elif isinstance(ev, DataReceived) and ev.stream_id == 1:
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, StreamEnded) and ev.stream_id == 1:
                    done = True
                elif isinstance(ev, StreamReset) and ev.stream_id == 1:
                    error = f"stream reset ({int(ev.error_code)})"
                    done = True
                elif isinstance(ev, ConnectionTerminated):
                    if not done:
                        error = f"GOAWAY ({int(ev.error_code)})"
                    done = True
            with contextlib.suppress(H2Error):
                push()
            with contextlib.suppress(OSError):
                sock.sendall(conn.data_to_send())
        if status is None:
            return CapturedResponse(status=None, version="2", error=error or "closed")
        return CapturedResponse(status=status, version="2", headers=tuple(headers),
                                body=bytes(body), error=f"incomplete body ({error})"
                                if error else "")
    finally:
        sock.close()


def _parse_response(raw: bytes, head_req: bool, *, eof: bool, error: str = ""
                    ) -> CapturedResponse | None:
    """Parse a response; None while more bytes are needed (``eof=False``)."""
    while True:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            if not eof:
                return None
            return CapturedResponse(status=None, error=error or "closed")
        head = raw[:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return CapturedResponse(status=None, error=f"not HTTP: {head[0][:60]!r}")
        status = int(parts[1])
        rest = raw[end + 4:]
        if 100 <= status < 200 and status != 101:
            raw = rest  # interim response
            continue
        break
    headers: list[tuple[bytes, bytes]] = []
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.append((name.encode("latin-1"), value.strip().encode("latin-1")))
    version = parts[0][5:]
    lower = {n.lower(): v for n, v in headers}
    te = lower.get(b"transfer-encoding", b"").lower()
    if head_req or status in (204, 304) or status < 200:
        body, complete = b"", True
    elif b"chunked" in te:
        body, complete = _dechunk(rest)
    elif b"content-length" in lower:
        try:
            length = int(lower[b"content-length"])
        except ValueError:
            length = len(rest)
        body, complete = rest[:length], len(rest) >= length
    else:
        body, complete = rest, eof and error == "closed"
    if not complete and not eof:
        return None
    err = "" if complete else f"incomplete body ({error or 'closed'})"
    return CapturedResponse(status=status, version=version, headers=tuple(headers), body=body,
                            error=err)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        try:
            size = int(data[pos:eol].split(b";")[0].strip() or b"x", 16)
        except ValueError:
            return bytes(out), False
        pos = eol + 2
        if size == 0:
            # no trailers: an empty line; else trailer lines up to an empty line
            return bytes(out), data.startswith(b"\r\n", pos) or data.find(b"\r\n\r\n",
                                                                         pos) >= 0
        if len(data) < pos + size + 2:
            out += data[pos:pos + size]
            return bytes(out), False
        out += data[pos:pos + size]
        pos += size + 2


# --------------------------------------------------------------------------------------------
# one side: config copy, echo servers, process


def _child_env() -> dict[str, str]:
    """The environment for the sides: this one, with the directory holding the running
    ``migrate`` package first on PYTHONPATH, so ``{python} -m migrate.cli serve`` runs the same
    Tern as this command whatever an installed copy points at."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root + (os.pathsep + rest if rest else "")
    return env


def _display_address(address: str) -> str:
    """How a config names an upstream address: ``backend:80`` -> ``backend``."""
    return address[:-3] if address.endswith(":80") and not address.startswith("unix:") else address


@dataclass
class Side:
    """One proxy under test with its run directory, echo servers and process."""

    name: str
    """``nginx`` or ``tern`` (the report's column)."""
    tree: Tree
    scan: Scan
    run_dir: str
    echoes: dict[str, EchoServer] = field(default_factory=dict)
    """Original upstream address -> its echo server (shared by both sides, see
    :meth:`Comparison.setup`)."""
    rewritten: Rewritten | None = None
    config_path: str = ""
    process: subprocess.Popen[bytes] | None = None
    substitutions: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    """(pattern, replacement) turning this side's ports back into the original ones."""
    whole_ports: dict[str, str] = field(default_factory=dict)
    """A header value that is exactly a new port -> the original port."""

    def write_config(self, exclude_ports: set[int]) -> None:
        prepare_run_dir(self.run_dir)
        mapping = {a: e.address for a, e in self.echoes.items()}
        ports: dict[Endpoint, int] = {}
        for spec in self.scan.listens:
            if not spec.address.startswith("unix:"):
                ports[spec.key] = free_port(exclude_ports)
                exclude_ports.add(ports[spec.key])
        self.rewritten = rewrite(self.tree, run_dir=self.run_dir, upstreams=mapping, ports=ports)
        self.config_path = os.path.join(self.run_dir, "nginx.conf")
        self.rewritten.write(self.config_path)
        # back to the original addresses: "127.0.0.1:<echo port>" -> the upstream's address,
        # "<host>:<new port>" -> "<host>:<original port>", a header that is just the port too
        subs: list[tuple[re.Pattern[str], str]] = []
        whole: dict[str, str] = {}
        for address, echo in self.echoes.items():
            subs.append((re.compile(re.escape(echo.address) + r"(?!\d)"),
                         _display_address(address)))
        moved = [(echo.port, address.rpartition(":")[2]) for address, echo in self.echoes.items()
                 if not address.startswith("unix:")]
        moved += [(port, str(key[1])) for key, port in self.rewritten.ports.items()]
        for new, original in moved:
            if original.isdigit():
                subs.append((re.compile(rf"(?<=[A-Za-z0-9.\]-]:){new}(?!\d)"), original))
                whole[str(new)] = original
        self.substitutions = subs
        self.whole_ports = whole

    def port_for(self, spec: ListenSpec) -> int | None:
        assert self.rewritten is not None
        return self.rewritten.ports.get(spec.key)

    def records_since(self, mark: int, tag: str) -> list[EchoRecord]:
        """Echo records of this request: carrying its tag, or untagged, newer than ``mark``."""
        found: list[EchoRecord] = []
        for echo in self.echoes.values():
            for r in echo.records_since(mark):
                value = r.header(TAG_HEADER)
                if value is None or value == tag:
                    found.append(r)
        return sorted(found, key=lambda r: r.seq)

    # normalisation back to the original addresses -----------------------------------------------

    def _text(self, text: str) -> str:
        for pattern, replacement in self.substitutions:
            text = pattern.sub(replacement, text)
        return text

    def _bytes(self, data: bytes) -> bytes:
        return self._text(data.decode("latin-1")).encode("latin-1")

    def _headers(self, headers: tuple[tuple[bytes, bytes], ...]
                 ) -> tuple[tuple[bytes, bytes], ...]:
        out = []
        for name, value in headers:
            text = value.decode("latin-1")
            text = self.whole_ports.get(text.strip(), None) or self._text(text)
            out.append((name, text.encode("latin-1")))
        return tuple(out)

    def normalise_response(self, r: CapturedResponse) -> CapturedResponse:
        """``r`` with this side's ports and echo addresses turned back into the original ones."""
        return replace(r, headers=self._headers(r.headers), body=self._bytes(r.body))

    def normalise_request(self, r: CapturedRequest) -> CapturedRequest:
        """The same for a request an upstream received."""
        return replace(r, target=self._text(r.target), headers=self._headers(r.headers),
                       body=self._bytes(r.body))

    # process ------------------------------------------------------------------------------------

    def launch(self, argv: list[str]) -> None:
        with open(os.path.join(self.run_dir, "stdout.log"), "wb") as out, \
                open(os.path.join(self.run_dir, "stderr.log"), "wb") as err:
            try:
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=err, start_new_session=True,
                                                cwd=self.run_dir, env=_child_env())
            except OSError as exc:
                raise CompareError(f"{self.name}: cannot run {argv[0]}: {exc.strerror}") from None

    def stderr_tail(self, lines: int = 30) -> str:
        out = []
        for name in ("stderr.log", os.path.join("logs", "error.log")):
            with contextlib.suppress(OSError):
                with open(os.path.join(self.run_dir, name), errors="replace") as fh:
                    tail = fh.read().splitlines()[-lines:]
                if tail:
                    out.append("\n".join(tail))
        return self.explain_lines("\n".join(out))

    def explain_lines(self, text: str) -> str:
        """Append the original file:line to mentions of the rewritten config's lines."""
        if self.rewritten is None or not self.config_path:
            return text
        rewritten = self.rewritten
        pattern = re.compile(re.escape(self.config_path) + r":(\d+)")

        def add_origin(m: re.Match[str]) -> str:
            origin = rewritten.origin(int(m.group(1)))
            return m.group(0) + (f" (from {origin})" if origin is not None else "")

        return pattern.sub(add_origin, text)

    def wait_listening(self, deadline: float) -> None:
        assert self.rewritten is not None
        ports = sorted(set(self.rewritten.ports.values()))
        for port in ports:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise CompareError(f"{self.name} exited with status "
                                       f"{self.process.returncode} before listening:\n"
                                       f"{self.stderr_tail()}")
                with contextlib.suppress(OSError), \
                        socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
                if time.monotonic() > deadline:
                    raise CompareError(f"{self.name} did not accept connections on "
                                       f"127.0.0.1:{port} in time:\n{self.stderr_tail()}")
                time.sleep(0.02)

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group of the process we started
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5.0)


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The comparison of one request."""

    index: int
    spec: RequestSpec
    port: int
    """Original port the request went to."""
    primary: CapturedResponse
    candidate: CapturedResponse
    differences: tuple[Difference, ...]
    """Differences that count."""
    noise: tuple[Difference, ...]
    """Differences in fields that also differed between the primary's two answers."""

    @property
    def same(self) -> bool:
        """No difference counts."""
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form of this outcome."""
        return {
            "index": self.index,
            "request": self.spec.label(self.port),
            "line": self.spec.line,
            "status": {"nginx": self.primary.status, "tern": self.candidate.status},
            "verdict": "same" if self.same else "differ",
            "differences": [_diff_json(d) for d in self.differences],
            "noise": [_diff_json(d) for d in self.noise],
        }


def _diff_json(d: Difference) -> dict[str, str]:
    return {"field": d.field, "nginx": d.primary, "tern": d.candidate}


# --------------------------------------------------------------------------------------------
# running a comparison


@dataclass
class Comparison:
    """Everything one ``tern compare`` run owns; :meth:`close` releases it all."""

    config: str
    prefix: str | None
    candidate_config: str | None
    candidate_cmd: str
    nginx: str
    timeout: float
    start_timeout: float
    keep: bool
    log: Callable[[str], None]
    run_dir: str = ""
    sides: list[Side] = field(default_factory=list)
    echoes: dict[str, EchoServer] = field(default_factory=dict)
    http2: bool = False
    """Ask both sides over HTTP/2 (ALPN h2 on TLS listens, prior knowledge elsewhere)."""

    def setup(self) -> None:
        primary_tree = _load(self.config, self.prefix)
        candidate_tree = (primary_tree if self.candidate_config is None
                          else _load(self.candidate_config, self.prefix))
        self.run_dir = tempfile.mkdtemp(prefix="tern-compare-")
        primary_scan = scan_tree(primary_tree)
        candidate_scan = primary_scan if candidate_tree is primary_tree else scan_tree(
            candidate_tree)
        addresses = list(dict.fromkeys((*primary_scan.upstreams, *candidate_scan.upstreams)))
        for d in primary_scan.diagnostics:
            self.log(f"tern compare: {d.format()}")
        primary = Side("nginx", primary_tree, primary_scan, os.path.join(self.run_dir, "nginx"))
        candidate = Side("tern", candidate_tree, candidate_scan,
                         os.path.join(self.run_dir, "tern"))
        self.sides = [primary, candidate]
        # One echo server per upstream address, shared by both sides: the rewritten configs
        # then name the same upstream addresses, which nginx's "hash ... consistent" ring (built
        # from the addresses as written), $upstream_addr and $proxy_host depend on. Records are
        # told apart by time: the two sides are never asked at the same time.
        for address in addresses:
            echo = EchoServer(_display_address(address))
            self.echoes[address] = echo
            try:
                echo.start()
            except OSError as exc:
                raise CompareError(f"cannot start an echo server: {exc}") from None
        taken = {e.port for e in self.echoes.values()}
        for side in self.sides:
            side.echoes = self.echoes
            side.write_config(taken)
        self.check_nginx(primary)
        primary.launch([self.nginx, "-p", primary.run_dir, "-c", primary.config_path,
                        "-g", NGINX_GLOBALS])
        candidate.launch(self.candidate_argv(candidate))
        deadline = time.monotonic() + self.start_timeout
        for side in self.sides:
            side.wait_listening(deadline)

    def check_nginx(self, side: Side) -> None:
        try:
            result = subprocess.run(
                [self.nginx, "-t", "-q", "-p", side.run_dir, "-c", side.config_path,
                 "-g", NGINX_GLOBALS],
                capture_output=True, text=True, timeout=self.start_timeout, errors="replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompareError(f"cannot run {self.nginx} -t: {exc}") from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            raise CompareError("nginx rejected the configuration (nginx -t):\n"
                               + side.explain_lines(message))

    def candidate_argv(self, side: Side) -> list[str]:
        try:
            words = shlex.split(self.candidate_cmd)
        except ValueError as exc:
            raise CompareError(f"--candidate-cmd: {exc}") from None
        if not words:
            raise CompareError("--candidate-cmd is empty")
        values = {"{config}": side.config_path, "{prefix}": side.run_dir,
                  "{run}": side.run_dir, "{python}": sys.executable}
        out = []
        for word in words:
            for key, value in values.items():
                word = word.replace(key, value)
            out.append(word)
        return out

    def run(self, specs: Sequence[RequestSpec], *, learn_noise: bool) -> list[Outcome]:
        primary, candidate = self.sides
        nonce = uuid.uuid4().hex[:8]
        options = DiffOptions().ignoring(TAG_HEADER)
        outcomes: list[Outcome] = []
        for index, spec in enumerate(specs, 1):
            listen = self.listen_for(spec)
            scheme = spec.scheme or ("https" if listen.ssl else "http")
            spec = replace(spec, scheme=scheme)
            tag = f"{nonce}-{index}"
            p = self.exchange(primary, listen, spec, tag)
            c = self.exchange(candidate, listen, spec, tag)
            diffs = _diff_captures(p, c, options)
            noisy: set[str] = set()
            if learn_noise:
                p2 = self.exchange(primary, listen, spec, tag + "-again")
                self.exchange(candidate, listen, spec, tag + "-again")  # keep states in step
                noisy = {d.field for d in _diff_captures(p, p2, options)}
            outcomes.append(Outcome(
                index=index, spec=spec, port=listen.port, primary=p.response,
                candidate=c.response,
                differences=tuple(d for d in diffs if d.field not in noisy),
                noise=tuple(d for d in diffs if d.field in noisy)))
        return outcomes

    def listen_for(self, spec: RequestSpec) -> ListenSpec:
        """The original endpoint a request goes to (defaults in the module docstring)."""
        scan = self.sides[0].scan
        if spec.port is not None:
            found = scan.listen(spec.port, spec.address)
            if found is None:
                where = f"{spec.address}:{spec.port}" if spec.address else f"port {spec.port}"
                raise CompareError(f"request at line {spec.line}: the configuration does not "
                                   f"listen on {where}")
            return found
        tcp = [s for s in scan.listens if not s.address.startswith("unix:")]
        if not tcp:
            raise CompareError("the configuration listens on no TCP port")
        if spec.scheme is not None:  # a URL without a port: its scheme's port if listened on
            https = spec.scheme == "https"
            by_port = scan.listen(443 if https else 80, spec.address)
            if by_port is not None:
                return by_port
            return next((s for s in tcp if s.ssl == https), tcp[0])
        return tcp[0]

    def exchange(self, side: Side, listen: ListenSpec, spec: RequestSpec, tag: str) -> Capture:
        """Send one request to one side; its answer and upstream requests, normalised."""
        port = side.port_for(listen)
        mark = sequence_mark()
        if port is None:
            response = CapturedResponse(status=None, error="no such listen in this config")
        else:
            client = send_h2 if self.http2 else send
            response = client(spec, port, tag, tls=spec.scheme == "https", timeout=self.timeout)
        records = side.records_since(mark, tag)
        echoed = bool(response.body) and any(response.body == describe(r) for r in records)
        upstream = [side.normalise_request(r.captured()) for r in records]
        return Capture(response=side.normalise_response(response), upstream=upstream,
                       echoed=echoed)

    def close(self) -> None:
        for side in self.sides:
            side.stop()
        for echo in self.echoes.values():
            echo.stop()
        if self.run_dir and not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """What one side did with one request."""

    response: CapturedResponse
    """Its answer, normalised back to the original ports and addresses."""
    upstream: list[CapturedRequest]
    """What its upstreams received for it, in arrival order, normalised likewise."""
    echoed: bool
    """The answer's body is, byte for byte, an echo server's description of a request it got."""


ECHOED_BODY = b"(an echo server's description of the upstream request: see upstream:*)"


def _diff_captures(p: Capture, c: Capture, options: DiffOptions) -> list[Difference]:
    """:func:`shadow.diff.diff` of two captures.

    When both answers pass an echo server's body through unchanged, a difference in that body
    only repeats a difference of the upstream requests (reported as ``upstream:*``), so the
    bodies (and their lengths) are not compared again.
    """
    pr, cr = mask_signature(p.response), mask_signature(c.response)
    if p.echoed and c.echoed:
        pr, cr = _echo_neutral(pr), _echo_neutral(cr)
    return diff(pr, cr, primary_upstream=p.upstream, candidate_upstream=c.upstream,
                options=options)


def _echo_neutral(r: CapturedResponse) -> CapturedResponse:
    headers = tuple((n, v) for n, v in r.headers if n.lower() != b"content-length")
    return replace(r, headers=headers, body=ECHOED_BODY)


def _load(path: str, prefix: str | None) -> Tree:
    tree = load(path, prefix)
    errors = [d for d in tree.diagnostics if d.level is Level.ERROR]
    if errors:
        raise CompareError("cannot read the configuration:\n"
                           + "\n".join(d.format() for d in errors))
    return tree


# --------------------------------------------------------------------------------------------
# output


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _status_cell(r: CapturedResponse) -> str:
    return str(r.status) if r.status is not None else "-"


def render_table(outcomes: Sequence[Outcome]) -> str:
    """The text report: one row per request, then the differences of each differing request."""
    rows = [("#", "request", "nginx", "tern", "verdict", "differences")]
    for o in outcomes:
        fields = ", ".join(d.field for d in o.differences)
        verdict = "same" if o.same else "DIFF"
        if o.same and o.noise:
            verdict = "same*"
        rows.append((str(o.index), _cell(o.spec.label(o.port), 56), _status_cell(o.primary),
                     _status_cell(o.candidate), verdict, _cell(fields, 60)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
             for r in rows]
    details: list[str] = []
    for o in outcomes:
        if o.same:
            continue
        details.append(f"#{o.index} {o.spec.label(o.port)}"
                       + (f"  (request set line {o.spec.line})" if o.spec.line else ""))
        for d in o.differences:
            details.append(f"  {d.field}")
            details.append(f"    nginx: {d.primary}")
            details.append(f"    tern:  {d.candidate}")
    same = sum(1 for o in outcomes if o.same)
    noise = sorted({d.field for o in outcomes for d in o.noise})
    summary = f"{len(outcomes)} request(s): {same} same, {len(outcomes) - same} differ"
    if noise:
        summary += ("; same* = equal once noise is ignored; noise (differs between two nginx "
                    f"answers): {', '.join(noise)}")
    out = "\n".join(lines)
    if details:
        out += "\n\n" + "\n".join(details)
    return out + "\n\n" + summary


# --------------------------------------------------------------------------------------------
# the command


@click.command("compare")
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@click.option("--requests", "requests_file", required=True,
              type=click.Path(dir_okay=False, path_type=str),
              help="Request set: JSON Lines or the plain-text form (see docs/compare.md).")
@click.option("-p", "--prefix", type=click.Path(file_okay=False, path_type=str), default=None,
              help="nginx prefix (-p) for relative paths; default: the config's directory.")
@click.option("--candidate-cmd", default=DEFAULT_CANDIDATE, show_default=True,
              help="Command that serves the candidate's copy of the config. Placeholders: "
                   "{config} (its port-mapped config file), {prefix} (its run directory, "
                   "which nginx would get as -p), {python} (this Python).")
@click.option("--candidate-config", type=click.Path(dir_okay=False, path_type=str),
              default=None,
              help="Give the candidate this config instead of CONFIG (same listens expected).")
@click.option("--nginx", "nginx_bin", default=NGINX_BIN, show_default=True,
              help="The nginx binary for the primary side.")
@click.option("--http2", is_flag=True,
              help="Send every request over HTTP/2 (ALPN h2 on ssl listens, prior knowledge "
                   "h2c elsewhere) to both sides.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--keep", is_flag=True,
              help="Keep the run directory (configs, logs) and print where it is.")
@click.option("--learn-noise/--no-learn-noise", default=True, show_default=True,
              help="Send each request twice per side; fields that differ between nginx's own "
                   "two answers do not count.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds per request.")
@click.option("--start-timeout", type=float, default=10.0, show_default=True,
              help="Seconds for both sides to accept connections.")
def compare_cmd(config: str, requests_file: str, prefix: str | None, candidate_cmd: str,
                candidate_config: str | None, nginx_bin: str, as_json: bool, keep: bool,
                learn_noise: bool, timeout: float, start_timeout: float,
                http2: bool = False) -> None:
    """Run nginx and the candidate (tern serve) side by side on CONFIG and diff every answer.

    Exit 0 when every answer is the same, 1 when any differs, 2 on setup errors.
    """
    def log(message: str) -> None:
        click.echo(message, err=True)

    code = EXIT_SETUP
    comparison: Comparison | None = None
    try:
        specs = load_requests(requests_file)
        comparison = Comparison(config=config, prefix=prefix, candidate_config=candidate_config,
                                candidate_cmd=candidate_cmd, nginx=nginx_bin, timeout=timeout,
                                start_timeout=start_timeout, keep=keep, log=log,
                                http2=http2)
        comparison.setup()
        outcomes = comparison.run(specs, learn_noise=learn_noise)
        code = EXIT_SAME if all(o.same for o in outcomes) else EXIT_DIFFERENT
        if as_json:
            doc = {
                "schema_version": 1,
                "config": os.path.abspath(config),
                "requests": [o.to_json() for o in outcomes],
                "summary": {"requests": len(outcomes),
                            "same": sum(1 for o in outcomes if o.same),
                            "differ": sum(1 for o in outcomes if not o.same),
                            "exit_code": code},
            }
            click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        else:
            click.echo(render_table(outcomes))
    except CompareError as exc:
        click.echo(f"tern compare: {exc}", err=True)
        code = EXIT_SETUP
    except KeyboardInterrupt:
        click.echo("tern compare: interrupted", err=True)
        code = EXIT_SETUP
    finally:
        if comparison is not None:
            comparison.close()
            if keep and comparison.run_dir:
                click.echo(f"tern compare: run directory kept: {comparison.run_dir}", err=True)
    sys.exit(code)
