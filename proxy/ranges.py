"""Byte ranges and conditional requests of a static file: what nginx 1.22's range and
not-modified filters decide (sans-I/O).

``ngx_http_not_modified_header_filter`` looks only at a 200 with a Last-Modified time:
``If-Unmodified-Since`` older than the file or an ``If-Match`` without the file's ETag is a 412;
then with ``If-Modified-Since`` and/or ``If-None-Match`` present, the answer is a 304 unless the
time says modified (``if_modified_since exact``: any other time; ``before``: an earlier time;
``off``: always) or the ETag list (weak comparison) lacks the file's.

``ngx_http_range_header_filter`` looks only at a 200 whose length is known and whose handler
allows ranges (the static handler): without a usable ``Range: bytes=...`` header (or when
``If-Range`` names another ETag or time) the file is sent whole with ``Accept-Ranges: bytes``;
otherwise one range is a 206 with ``Content-Range``, several are a 206
``multipart/byteranges`` whose boundary is a 20-digit counter, a range that cannot be satisfied
is a 416 with ``Content-Range: bytes */SIZE``. A set of ranges larger than the file, or a range
starting at 0 that selects nothing, is ignored (sent whole), as nginx does.
"""

from __future__ import annotations

import itertools
from email.utils import parsedate_to_datetime

MAX_OFF = 2**63 - 1
_boundaries = itertools.count(1)


def byte_ranges(value: str | None, if_range: str | None, etag: bytes | None, mtime: int,
                size: int, limit: int | None = None) -> list[tuple[int, int]] | None:
    """None: send the whole file (with Accept-Ranges); []: 416; else [start, end) spans.

    ``limit`` is ``max_ranges``: more ranges than that are ignored (0 is the caller's case)."""
    if value is None or len(value) < 7 or value[:6].lower() != "bytes=":
        return None
    if if_range is not None:
        if len(if_range) >= 2 and if_range.endswith('"'):
            if etag is None or if_range.encode("latin-1", "replace") != etag:
                return None
        else:
            try:
                when = int(parsedate_to_datetime(if_range).timestamp())
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when != mtime:
                return None
    s = value[6:] + "\0"
    i = 0
    spans: list[tuple[int, int]] = []
    total = 0
    while True:
        start = end = 0
        suffix = False
        found = False
        while s[i] == " ":
            i += 1
        if s[i] != "-":
            if not "0" <= s[i] <= "9":
                return []
            while "0" <= s[i] <= "9":
                start = start * 10 + ord(s[i]) - 48
                if start > MAX_OFF:
                    return []
                i += 1
            while s[i] == " ":
                i += 1
            if s[i] != "-":
                return []
            i += 1
            while s[i] == " ":
                i += 1
            if s[i] in ",\0":
                end = size
                found = True
        else:
            suffix = True
            i += 1
        if not found:
            if not "0" <= s[i] <= "9":
                return []
            while "0" <= s[i] <= "9":
                end = end * 10 + ord(s[i]) - 48
                if end > MAX_OFF:
                    return []
                i += 1
            while s[i] == " ":
                i += 1
            if s[i] not in ",\0":
                return []
            if suffix:
                start = size - end if end < size else 0
                end = size - 1
            end = size if end >= size else end + 1
        if start < end:
            spans.append((start, end))
            total += end - start
            if limit is not None:
                if limit == 0:
                    return None
                limit -= 1
        elif start == 0:
            return None
        if s[i] != ",":
            break
        i += 1
    if not spans:
        return []
    if total > size:
        return None
    return spans


def next_boundary() -> bytes:
    """The multipart boundary: a counter written with 20 digits (nginx: ngx_next_temp_number)."""
    return b"%020d" % next(_boundaries)


def multipart_parts(spans: list[tuple[int, int]], size: int, content_type: bytes,
                    boundary: bytes) -> tuple[list[bytes], bytes]:
    """The head written before each span's bytes, and the closing line."""
    heads = []
    for start, end in spans:
        head = b"\r\n--" + boundary + b"\r\n"
        if content_type:
            head += b"Content-Type: " + content_type + b"\r\n"
        head += b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (start, end - 1, size)
        heads.append(head)
    return heads, b"\r\n--" + boundary + b"--\r\n"


def conditional(headers: dict[str, str], etag: bytes | None, mtime: int, ims_mode: str) -> int:
    """The not-modified filter on a 200: 412, 304, or 200 (send the file)."""
    iums = headers.get("if-unmodified-since")
    if iums is not None and not _http_time(iums) >= mtime:
        return 412
    im = headers.get("if-match")
    if im is not None and not _etag_listed(im, etag, weak=False):
        return 412
    ims = headers.get("if-modified-since")
    inm = headers.get("if-none-match")
    if ims is None and inm is None:
        return 200
    if ims is not None and _modified(ims, mtime, ims_mode):
        return 200
    if inm is not None and not _etag_listed(inm, etag, weak=True):
        return 200
    return 304


def _http_time(value: str) -> int:
    """Seconds since the epoch of an HTTP date, -1 when it does not parse."""
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return -1


def _modified(value: str, mtime: int, mode: str) -> bool:
    if mode == "off":
        return True
    ims = _http_time(value)
    if ims == mtime:
        return False
    return mode != "before" or ims < mtime


def _etag_listed(value: str, etag: bytes | None, *, weak: bool) -> bool:
    """``*``, or the ETag among the comma-separated list (``W/`` ignored when weak)."""
    if value == "*":
        return True
    if etag is None:
        return False
    tag = etag.decode("latin-1")
    if weak and len(tag) > 2 and tag.startswith("W/"):
        tag = tag[2:]
    for item in value.split(","):
        item = item.strip(" \t")
        if weak and item.startswith("W/"):
            item = item[2:]
        if item == tag:
            return True
    return False
