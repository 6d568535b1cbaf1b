"""autoindex_format json, jsonp and xml: the listings ngx_http_autoindex_module writes.

The HTML listing stays in the engine (``Engine._send_autoindex``); these three share its
directory scan (hidden names skipped, directories first, then names by bytes) and differ only
in the body:

* json: ``[`` CRLF, one ``{ "name":..., "type":..., "mtime":... [, "size":N] }`` per entry,
  joined by ``,`` CRLF, then CRLF ``]`` (no final CRLF). Names are JSON-escaped, mtimes are HTTP
  dates (GMT, whatever ``autoindex_localtime`` says).
* jsonp: the JSON wrapped as ``/* callback */`` CRLF ``NAME(`` ... ``);`` where NAME is the raw
  ``callback`` argument; an empty or absent one gives plain JSON, a name with anything but
  letters, digits, ``_`` and ``.`` (or over 128 bytes) is refused with 400.
* xml: ``<?xml version="1.0"?>`` CRLF ``<list>`` CRLF, ``<directory mtime="...">name</directory>``
  or ``<file mtime="..." size="N">name</file>`` lines, ``</list>`` CRLF; ISO 8601 UTC mtimes.
"""

from __future__ import annotations

import os
import re
import stat
import time
from email.utils import formatdate

__all__ = ["Entry", "CallbackError", "callback_name", "json_listing", "xml_listing",
           "CONTENT_TYPES"]

CONTENT_TYPES = {
    "json": b"application/json",
    "jsonp": b"application/javascript",
    "xml": b"text/xml; charset=utf-8",
}

_CALLBACK = re.compile(r"[A-Za-z0-9_.]*")


class CallbackError(ValueError):
    """The jsonp callback name is invalid or too long (nginx answers 400)."""


Entry = tuple[bytes, bool, os.stat_result]
"""(raw name, is a directory, stat result) in listing order."""


def callback_name(raw: str | None) -> str:
    """The jsonp callback from ``$arg_callback`` as written (not unescaped), or ""."""
    if not raw:
        return ""
    if len(raw.encode("utf-8", "surrogateescape")) > 128:
        raise CallbackError("client sent too long callback name")
    if not _CALLBACK.fullmatch(raw):
        raise CallbackError("client sent invalid callback name")
    return raw


def _json_escape(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b == 0x22 or b == 0x5C:
            out += b"\\" + bytes([b])
        elif b < 0x20:
            named = {0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x08: b"\\b", 0x0C: b"\\f"}
            out += named.get(b, b"\\u%04x" % b)
        else:
            out.append(b)
    return bytes(out)


def _xml_escape(raw: bytes) -> bytes:
    return (raw.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;")
            .replace(b'"', b"&quot;"))


def _kind(is_dir: bool, st: os.stat_result) -> bytes:
    if is_dir:
        return b"directory"
    return b"file" if stat.S_ISREG(st.st_mode) else b"other"


def json_listing(entries: list[Entry], callback: str = "") -> bytes:
    items = []
    for raw, is_dir, st in entries:
        kind = _kind(is_dir, st)
        item = (b'{ "name":"' + _json_escape(raw) + b'", "type":"' + kind + b'", "mtime":"'
                + formatdate(int(st.st_mtime), usegmt=True).encode() + b'"')
        if kind == b"file":
            item += b', "size":%d' % st.st_size
        items.append(item + b" }")
    body = b"[\r\n" + b",\r\n".join(items) + (b"\r\n" if items else b"") + b"]"
    if callback:
        return b"/* callback */\r\n" + callback.encode() + b"(" + body + b");"
    return body


def xml_listing(entries: list[Entry]) -> bytes:
    lines = [b'<?xml version="1.0"?>', b"<list>"]
    for raw, is_dir, st in entries:
        kind = _kind(is_dir, st)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(st.st_mtime))).encode()
        size = b' size="%d"' % st.st_size if kind == b"file" else b""
        lines.append(b"<" + kind + b' mtime="' + when + b'"' + size + b">" + _xml_escape(raw)
                     + b"</" + kind + b">")
    lines += [b"</list>", b""]
    return b"\r\n".join(lines)
