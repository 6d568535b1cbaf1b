"""ngx_http_charset_module's header side: the charset added to ``Content-Type``.

Rules, as nginx 1.22's charset filter applies them (recoding is not done, see 5):

1. The destination is ``charset NAME`` (or ``$var``); ``off`` (the default) does nothing.  An
   upstream's ``X-Accel-Charset`` (unless ignored) overrides it when it names a charset the
   configuration knows, even with ``charset off``.
2. A ``Content-Type`` that already has a ``charset=`` parameter (an upstream's or FastCGI app's)
   is left alone unless ``override_charset on``.  Otherwise the type (the value up to the ``;``
   of that parameter, lower-cased) must be text/html or in ``charset_types`` (``*``: any).
3. The source is the type's own charset, else ``source_charset``; with neither, the destination
   is set.  Source and destination equal (case-insensitive, both known to the configuration or
   both unknown with the same name): the type loses its old parameter and gets the destination.
4. "Set" means: ``; charset=NAME`` is appended to a ``Content-Type`` whose value has no charset
   parameter (a value with other parameters gets it appended after them), except that 301 and
   302 answers never get one.
5. A source different from the destination needs a ``charset_map`` recoding table: nginx then
   recodes the body; Tern does not (charset_map is refused at start-up unless
   ``--allow-unsupported``) and sends the answer unchanged, as nginx does when no table exists.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TYPES", "CharsetConf", "split_type", "apply"]

DEFAULT_TYPES = frozenset({"text/html", "text/xml", "text/plain", "text/vnd.wap.wml",
                           "application/javascript", "application/rss+xml"})
"""charset_types' default list."""


@dataclass(frozen=True, slots=True)
class CharsetConf:
    """The charset settings in effect for a request."""

    charset: str | None
    """``charset`` as written (``off``, a name or ``$var``); None: not set (off)."""
    source: str | None
    """``source_charset`` as written; None: not set."""
    override: bool
    types: frozenset[str] | None
    """charset_types lower-cased; None: the default list."""
    known: frozenset[str]
    """Charset names the configuration mentions (lower-cased): nginx's charset table."""
    maps: frozenset[tuple[str, str]]
    """(source, destination) pairs with a charset_map table, lower-cased."""


def split_type(value: bytes) -> tuple[int, bytes | None]:
    """Where the type ends and its ``charset=`` value (quotes removed), as nginx's upstream
    module reads a Content-Type: the first ``;`` whose parameter is ``charset=``."""
    at = 0
    while True:
        semi = value.find(b";", at)
        if semi < 0:
            return len(value), None
        rest = value[semi + 1:].lstrip(b" ")
        if not rest:
            return len(value), None
        if rest[:8].lower() == b"charset=":
            cs = rest[8:]
            if cs.startswith(b'"'):
                cs = cs[1:]
            if cs.endswith(b'"'):
                cs = cs[:-1]
            return semi, cs
        at = semi + 1


def apply(conf: CharsetConf | None, status: int, headers: list[tuple[bytes, bytes]],
          lookup: object, accel: bytes | None = None) -> None:
    """Rewrite the ``Content-Type`` in ``headers`` in place (rules 1-5).

    ``lookup(name)`` returns a variable's value or None; ``accel`` is the upstream's
    ``X-Accel-Charset``.
    """
    i = next((n for n, h in enumerate(headers) if h[0].lower() == b"content-type"), -1)
    if i < 0:
        return
    value = headers[i][1]
    if not value:
        return
    end, own = split_type(value)
    known = conf.known if conf is not None else frozenset()
    dst: str | None = None
    if accel:
        name_ = accel.decode("latin-1")
        if name_.lower() not in known:
            return  # nginx: unknown charset to override
        dst = name_
    else:
        if conf is None or conf.charset is None or conf.charset == "off":
            return
        if own is not None:
            if not conf.override:
                return
        else:
            kind = value[:end].lower().decode("latin-1")
            types = DEFAULT_TYPES if conf.types is None else conf.types
            if kind not in types and "*" not in types and kind != "text/html":
                return
        if conf.charset.startswith("$"):
            got = lookup(conf.charset[1:])  # type: ignore[operator]
            if got is None:
                return  # nginx fails the request here (docs/differences.md)
            dst = str(got)
        else:
            dst = conf.charset
    if own is not None:
        src: str | None = own.decode("latin-1")
    elif conf is not None and conf.source is not None:
        src = conf.source
        if src.startswith("$"):
            got = lookup(src[1:])  # type: ignore[operator]
            if got is None:
                return
            src = str(got)
    else:
        src = None
    if src is None:
        _set(headers, i, value, end, own, status, dst, strip=False)
        return
    s, d = src.lower(), dst.lower()
    if s not in known or d not in known:
        if s in known or d in known or s != d:
            return  # no charset_map between them
        _set(headers, i, value, end, own, status, dst, strip=False)
        return
    if s == d:
        _set(headers, i, value, end, own, status, dst, strip=True)
        return
    # a recoding: not done (rule 5); nginx without a table leaves the answer as it is


def _set(headers: list[tuple[bytes, bytes]], i: int, value: bytes, end: int,
         own: bytes | None, status: int, dst: str, *, strip: bool) -> None:
    name = headers[i][0]
    if strip:
        value = value[:end]
        own = None
    if status in (301, 302) or own is not None or not dst:
        headers[i] = (name, value)
        return
    headers[i] = (name, value + b"; charset=" + dst.encode("latin-1"))
