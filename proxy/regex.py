"""PCRE patterns (as nginx writes them) compiled for Python's ``re``.

nginx uses PCRE; Python's ``re`` agrees on the syntax real configs use, with three differences
handled here: ``(?<name>...)`` and ``(?'name'...)`` are spelled ``(?P<name>...)``; a named group may
repeat a name in PCRE with ``(?J)`` (not supported: reported); and nginx compiles with
``PCRE_DOLLAR_ENDONLY`` off, which is Python's ``$`` behaviour too.
"""

from __future__ import annotations

import re
from functools import lru_cache


class RegexError(ValueError):
    """A pattern Tern cannot run, with the reason."""


_NAMED = re.compile(r"\(\?<(?![=!])([A-Za-z_][A-Za-z0-9_]*)>|\(\?'([A-Za-z_][A-Za-z0-9_]*)'")


def translate(pattern: str) -> str:
    """Rewrite PCRE-only spellings into Python ``re`` syntax."""
    return _NAMED.sub(lambda mt: f"(?P<{mt.group(1) or mt.group(2)}>", pattern)


@lru_cache(maxsize=4096)
def compile_pcre(pattern: str, caseless: bool = False) -> re.Pattern[str]:
    """Compile an nginx regex.

    Raises:
        RegexError: the pattern is invalid or uses PCRE features Python lacks.
    """
    try:
        return re.compile(translate(pattern), re.IGNORECASE if caseless else 0)
    except re.error as exc:
        raise RegexError(str(exc)) from None
