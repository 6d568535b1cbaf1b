"""ngx_http_secure_link_module (nginx 1.22.1): the ``$secure_link`` and ``$secure_link_expires``
variables.  Access decisions are the config's own (``if ($secure_link = "") { return 403; }``);
this module only computes the values.

Rules:

1. Settings merge level by level as ngx_http_secure_link_merge_conf does: a level that writes
   ``secure_link_secret`` drops the inherited ``secure_link`` / ``secure_link_md5``; any other
   level inherits each of those two, and inherits the secret only when, after that, it has
   neither.  The http level is a parent only (it may hold both kinds; ``tern check`` refuses
   them together in one server or location, as nginx does).
2. MD5 mode (``secure_link`` and ``secure_link_md5`` both in effect): the ``secure_link`` value
   is ``HASH`` or ``HASH,EXPIRES``.  EXPIRES must be decimal digits (at most 2^63-1) above 0,
   else the variable is not found; once it parses it becomes ``$secure_link_expires`` even when
   the hash turns out wrong.  HASH: at most 24 bytes, base64url (RFC 4648 §5) read up to the
   first ``=`` (anything after it is ignored), no other byte, must give 16 bytes (so 22
   characters: the spare bits of the last one are not checked).  It must equal the MD5 of the
   ``secure_link_md5`` value, else not found.  Then "1", or "0" when EXPIRES is in the past
   (earlier than the current second).
3. Only one of the two set (or neither): not found.
4. Secret mode: the request line's target as sent (``$request_uri``, arguments included) is
   ``/<anything>/<32 hex digits>/<link>``: the first byte is skipped, the hash is what lies
   between the next two slashes and must be 32 bytes long, the link non-empty; the hex digits
   (either case) must spell MD5(link + secret).  The value is the link, else not found.
5. Not found reads as "" in ``if`` and strings, ``-`` in access logs.
6. A value is computed the first time a request asks for it and kept for the rest of the
   request, found or not, through rewrites and internal redirects (nginx's indexed variable
   cache).  ``$secure_link_expires`` reads what computing ``$secure_link`` stored; an internal
   redirect clears that store (nginx zeroes module contexts) but not values already read.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, NamedTuple

from .model import Var

if TYPE_CHECKING:
    from .interp import RequestState
    from .model import Scope, Template

__all__ = ["VARIABLES", "Settings", "merge", "settings", "value", "decode_base64url",
           "parse_expires"]

VARIABLES = frozenset({"secure_link", "secure_link_expires"})

_MAX_TIME = (1 << 63) - 1
"""NGX_MAX_TIME_T_VALUE on a 64-bit build."""

_B64URL = {c: i for i, c in enumerate(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}

_HEX = frozenset("0123456789abcdefABCDEF")

_BUSY = object()
"""Marks a value being computed (a ``secure_link_md5`` naming ``$secure_link`` itself)."""


class Settings(NamedTuple):
    """The merged settings of one configuration chain (rule 1)."""

    expression: Template | None
    md5: Template | None
    secret: str | None


def merge(chain: list[Scope], http: Scope | None) -> Settings:
    """Rule 1 over ``chain`` (outermost first); ``http`` is the http level's scope."""
    expr: Template | None = None
    md5: Template | None = None
    secret: str | None = None
    for scope in chain:
        a = scope.access
        if scope is http:
            expr, md5, secret = a.secure_link, a.secure_link_md5, a.secure_link_secret
            continue
        if a.secure_link_secret is not None:
            expr, md5, secret = None, None, a.secure_link_secret
            continue
        if a.secure_link is not None:
            expr = a.secure_link
        if a.secure_link_md5 is not None:
            md5 = a.secure_link_md5
        if expr is not None or md5 is not None:
            secret = None
    return Settings(expr, md5, secret)


def settings(ctx: RequestState) -> Settings:
    """The settings in effect for the request's current configuration (cached per chain)."""
    key = (ctx.chain_key, "secure_link")
    cache = ctx.interp.effective_cache
    got = cache.get(key)
    if got is None:
        http = ctx.interp.config.http
        got = cache[key] = merge(ctx.scope_chain, http.scope if http is not None else None)
    return got  # type: ignore[return-value]


def value(ctx: RequestState, name: str) -> str | None:
    """``$secure_link`` or ``$secure_link_expires`` for this request (None: not found)."""
    kept = ctx.secure_link_values
    if kept is None:
        kept = ctx.secure_link_values = {}
    elif name in kept:
        got = kept[name]
        return None if got is _BUSY else got  # type: ignore[return-value]
    if name == "secure_link_expires":
        kept[name] = ctx.secure_link_expires
        return ctx.secure_link_expires
    kept[name] = _BUSY
    try:
        got = _secure_link(ctx)
    finally:
        del kept[name]
    kept[name] = got
    return got


def _secure_link(ctx: RequestState) -> str | None:
    conf = settings(ctx)
    if conf.secret is not None:
        return _secret_mode(ctx.request_uri, conf.secret)
    if conf.expression is None or conf.md5 is None:
        return None
    text = ctx.eval(conf.expression)
    given, comma, after = text.partition(",")
    expires = 0
    if comma:
        expires = parse_expires(after)
        if expires <= 0:
            return None
        ctx.secure_link_expires = after
    if len(_bytes(given)) > 24:
        return None
    digest = decode_base64url(_bytes(given))
    if digest is None or len(digest) != 16:
        return None
    expected = hashlib.md5(eval_bytes(ctx, conf.md5), usedforsecurity=False).digest()
    if digest != expected:
        return None
    return "0" if expires and expires < int(time.time()) else "1"


def _secret_mode(request_uri: str, secret: str) -> str | None:
    first = request_uri.find("/", 1)
    if first < 0:
        return None
    start = first + 1
    end = request_uri.find("/", start)
    if end < 0:
        return None
    hexed, link = request_uri[start:end], request_uri[end + 1:]
    if len(_bytes(hexed)) != 32 or not link or not all(c in _HEX for c in hexed):
        return None
    digest = hashlib.md5(_bytes(link) + secret.encode("utf-8", "surrogateescape"),
                         usedforsecurity=False).digest()
    return link if bytes.fromhex(hexed) == digest else None


def parse_expires(text: str) -> int:
    """ngx_atotm: decimal digits only, not empty, at most 2^63-1; -1 when it does not parse."""
    if not text or not all("0" <= c <= "9" for c in text):
        return -1
    n = int(text)
    return n if n <= _MAX_TIME else -1


def decode_base64url(data: bytes) -> bytes | None:
    """ngx_decode_base64url: the characters before the first ``=``, each in the URL-safe
    alphabet, not 1 more than a multiple of 4 (None otherwise); spare bits are dropped."""
    end = data.find(b"=")
    if end >= 0:
        data = data[:end]
    if len(data) % 4 == 1:
        return None
    bits = 0
    for c in data:
        v = _B64URL.get(c)
        if v is None:
            return None
        bits = (bits << 6) | v
    nbytes = len(data) * 6 // 8
    return (bits >> (len(data) * 6 - nbytes * 8)).to_bytes(nbytes, "big")


def eval_bytes(ctx: RequestState, tpl: Template) -> bytes:
    """A template's value as nginx's bytes: config text as written (UTF-8), values taken from
    the request as received (Tern holds those as Latin-1 text)."""
    out = bytearray()
    for p in tpl.parts:
        if isinstance(p, Var):
            out += _bytes(ctx.var(p.name))
        else:
            out += p.text.encode("utf-8", "surrogateescape")
    return bytes(out)


def _bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
