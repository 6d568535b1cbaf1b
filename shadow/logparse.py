"""Read nginx access logs back: a lark grammar generated from a ``log_format``.

The reverse of :mod:`proxy.accesslog`. Each ``log_format`` becomes a grammar whose literals are
the format's literal text and whose variables are terminals of their own (so lark's contextual
lexer only tries the one that can come next):

- ``$time_local``, ``$time_iso8601``, ``$status``, ``$msec``, ``$request_time`` and the other
  numeric log variables get their exact shapes;
- any other variable matches up to the first character of the literal that follows it (``[^"]*``
  inside quotes, ``[^ ]*`` before a space), or to the end of the line when it is last, or one
  non-blank run when another variable follows directly.

Values are unescaped the way they were escaped (``escape=default``: ``\\xHH``; ``escape=json``:
JSON escapes); ``-`` (not found, default escaping) becomes None.

:func:`request_of` turns a parsed line into a request: ``$request`` (``GET /p HTTP/1.1``), or
``$request_method`` with ``$request_uri`` (or ``$uri`` and ``$args``); ``Host`` from ``$host``,
``$http_host`` or ``$server_name``; every ``$http_NAME`` variable becomes header ``Name``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from lark import Lark, LarkError, Token, Transformer

from proxy.accesslog import COMBINED
from proxy.model import Lit, LogFormat, Var

__all__ = ["LogLineError", "LogParser", "ParsedRequest", "request_of"]

_SHAPES: dict[str, str] = {
    "time_local": r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}",
    "time_iso8601": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)",
    "status": r"\d{3}",
    "msec": r"\d+\.\d{3}",
    "request_time": r"\d+\.\d{3}",
    "body_bytes_sent": r"\d+",
    "bytes_sent": r"\d+",
    "request_length": r"\d+",
    "pipe": r"[.p]",
}


class LogLineError(ValueError):
    """A line does not match the format."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedRequest:
    """A request rebuilt from a log line."""

    method: str
    target: str
    version: str
    host: str | None
    headers: tuple[tuple[str, str], ...]


class _Values(Transformer[Token, dict[str, str]]):
    def start(self, items: list[object]) -> dict[str, str]:
        out: dict[str, str] = {}
        for it in items:
            if isinstance(it, tuple):
                out[it[0]] = it[1]
        return out


class LogParser:
    """Parses the lines of one ``log_format``.

    Args:
        fmt: the format (default nginx's ``combined``).
    """

    def __init__(self, fmt: LogFormat = COMBINED) -> None:
        self.format = fmt
        self.names: list[str] = []
        self._term_names: dict[str, str] = {}
        rules: list[str] = []
        terminals: list[str] = []
        parts = list(fmt.format.parts)
        for i, part in enumerate(parts):
            if isinstance(part, Lit):
                if part.text:
                    rules.append(json.dumps(part.text))
                continue
            assert isinstance(part, Var)
            name = part.name.lower()
            term = f"V{i}"
            self.names.append(name)
            nxt = parts[i + 1] if i + 1 < len(parts) else None
            shape = _SHAPES.get(name)
            if shape is not None:
                shape = shape.replace("/", "\\/")
            else:
                if nxt is None:
                    shape = r"[^\n]+"
                elif isinstance(nxt, Lit) and nxt.text:
                    stop = re.escape(nxt.text[0]).replace("/", "\\/")
                    shape = ("(?:\\\\.|[^" + stop + r"\\\n])+" if fmt.escape == "json"
                             else "[^" + stop + r"\n]+")
                else:
                    shape = r"[^\s]+"
            terminals.append(f"{term}.{1}: /{shape}/")
            rules.append(f"{term}?")
            self._term_names[term] = name
        grammar = "start: " + " ".join(rules) + "\n" + "\n".join(terminals) + "\n"
        self.grammar = grammar
        self._lark = Lark(grammar, parser="lalr", lexer="contextual")

    def parse(self, line: str) -> dict[str, str | None]:
        """``{variable: value}`` of one line (without its newline).

        Raises:
            LogLineError: the line does not match.
        """
        try:
            tree = self._lark.parse(line)
        except LarkError as exc:
            raise LogLineError(str(exc).splitlines()[0]) from None
        out: dict[str, str | None] = {}
        seen: set[str] = set()
        for tok in tree.children:
            if isinstance(tok, Token) and tok.type in self._term_names:
                name = self._term_names[tok.type]
                out[name] = self._unescape(str(tok))
                seen.add(name)
        for name in self.names:
            if name not in seen:
                out.setdefault(name, "" if self.format.escape == "default" else None)
        return out

    def _unescape(self, value: str) -> str | None:
        if self.format.escape == "json":
            try:
                return str(json.loads('"' + value + '"'))
            except ValueError:
                return value
        if self.format.escape == "none":
            return value
        if value == "-":
            return None
        return re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def request_of(values: dict[str, str | None]) -> ParsedRequest:
    """The request a parsed log line describes (see the module docstring).

    Raises:
        LogLineError: no method and target can be found.
    """
    method = target = None
    version = "1.1"
    req = values.get("request")
    if req:
        bits = req.split(" ")
        if len(bits) == 3 and bits[2].startswith("HTTP/"):
            method, target, version = bits[0], bits[1], bits[2][5:]
        elif len(bits) == 2:
            method, target, version = bits[0], bits[1], "0.9"
        else:
            raise LogLineError(f"cannot read $request: {req!r}")
    else:
        method = values.get("request_method")
        target = values.get("request_uri")
        if target is None and values.get("uri"):
            args = values.get("args")
            target = str(values["uri"]) + (f"?{args}" if args else "")
    if not method or not target:
        raise LogLineError("no request in the line ($request or $request_method + $request_uri)")
    if not re.fullmatch(r"[A-Z][A-Z_-]*", method):
        raise LogLineError(f"bad method {method!r}")
    host = values.get("host") or values.get("http_host") or values.get("server_name")
    headers = []
    for name, value in values.items():
        if name.startswith("http_") and value is not None and name != "http_host":
            headers.append(("-".join(p.capitalize() for p in name[5:].split("_")), value))
    return ParsedRequest(method=method, target=target, version=version,
                         host=host or None, headers=tuple(headers))
