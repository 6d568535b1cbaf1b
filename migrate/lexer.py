"""nginx configuration lexer, modelled on ``ngx_conf_read_token`` (src/core/ngx_conf_file.c).

Why not ``crossplane.lexer``: measured on crossplane 0.5.8, it glues ``${var} b`` into one token,
silently drops an unterminated quoted string at end of file, and keeps escapes such as ``\\\\`` and
``\\n`` unprocessed. Those change what a directive means, so Tern lexes the way nginx does and uses
crossplane where it is right (building config text back from tokens in tests and tools).

Rules (nginx's, in order of precedence):

1. ``#`` at the start of a token starts a comment to the end of the line.
2. A token ends at whitespace, ``;`` or ``{``; ``;`` ends a directive, ``{`` opens a block, ``}``
   (at the start of a token) closes one.
3. ``"..."`` and ``'...'`` quote; after a closing quote only whitespace, ``;``, ``{`` or ``)`` may follow.
4. ``\\`` escapes the next character anywhere; when the token is stored, ``\\"``, ``\\'`` and ``\\\\``
   lose the backslash and ``\\t``, ``\\r``, ``\\n`` become control characters. Other escapes keep
   their backslash (so regexes like ``\\.php$`` survive).
5. After ``$``, a ``{`` is part of the token (``${var}``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TokenKind(enum.Enum):
    """What a token is."""

    WORD = "word"
    SEMICOLON = ";"
    OPEN = "{"
    CLOSE = "}"


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token."""

    kind: TokenKind
    value: str
    line: int
    quoted: bool = False


class LexError(ValueError):
    """Text that nginx's tokenizer rejects; ``line`` is where it noticed."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


_SPACE = " \t\r\n"
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] in _ESCAPES:
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """Split configuration text into tokens.

    Args:
        text: the whole file.

    Returns:
        Tokens in order; comments are dropped.

    Raises:
        LexError: an unterminated quote, or text after a closing quote (nginx's wording).
    """
    tokens: list[Token] = []
    append = tokens.append
    i = 0
    n = len(text)
    line = 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch in _SPACE:
            i += 1
            continue
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == ";":
            append(Token(TokenKind.SEMICOLON, ";", line))
            i += 1
            continue
        if ch == "{":
            append(Token(TokenKind.OPEN, "{", line))
            i += 1
            continue
        if ch == "}":
            append(Token(TokenKind.CLOSE, "}", line))
            i += 1
            continue
        start_line = line
        if ch in "\"'":
            quote = ch
            j = i + 1
            while j < n:
                c = text[j]
                if c == "\\" and j + 1 < n:
                    if text[j + 1] == "\n":
                        line += 1
                    j += 2
                    continue
                if c == "\n":
                    line += 1
                elif c == quote:
                    break
                j += 1
            if j >= n:
                raise LexError('unexpected end of file, expecting ";" or "}"', line)
            append(Token(TokenKind.WORD, _unescape(text[i + 1 : j]), start_line, True))
            i = j + 1
            if i < n and text[i] not in _SPACE and text[i] not in ";{)":
                raise LexError(f'unexpected "{text[i]}"', line)
            continue
        # unquoted word
        j = i
        variable = False
        while j < n:
            c = text[j]
            if c == "\\" and j + 1 < n:
                if text[j + 1] == "\n":
                    line += 1
                j += 2
                variable = False
                continue
            if c == "{" and variable:
                j += 1
                variable = False
                continue
            variable = c == "$"
            if c in _SPACE or c == ";" or c == "{":
                break
            j += 1
        append(Token(TokenKind.WORD, _unescape(text[i:j]), start_line, False))
        i = j
    return tokens
