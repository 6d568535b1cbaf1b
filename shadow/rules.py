"""User ignore rules for shadow and replay diffs: headers, JSON paths, regex masks.

A rules file is JSON (``.json``) or TOML (anything else, read with :mod:`tomllib`); both give the
same four keys, all optional::

    # rules.toml
    ignore_headers = ["X-Request-Id", "ETag"]      # never compared
    mask_headers = ["Last-Modified"]               # compared for presence only
    ignore_json_paths = ["$.meta.took", "$.items[0].ts"]   # that value and everything below

    [[mask]]                                        # regex masks, applied before comparing
    pattern = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    replace = "<uuid>"                              # default "<masked>"
    where = "body"                                  # "body", "headers" or "both" (default)

Rules:

1. Header names are case-insensitive; JSON paths use :mod:`shadow.diff`'s notation (``$.a.b[0]``).
2. Masks run in file order on both sides' bodies (as text, UTF-8 with surrogateescape, so binary
   bodies survive) and/or every header value, before any comparison; a body that does not decode
   is masked byte-wise all the same.
3. A bad file (syntax, unknown key, bad regex) raises :class:`RulesError` with the file name and
   what is wrong; it is never half-applied.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from .diff import HOP_BY_HOP, MASKED, DiffOptions

__all__ = ["Mask", "Rules", "RulesError", "load_rules"]


class RulesError(ValueError):
    """A rules file cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mask:
    """One regex mask."""

    pattern: re.Pattern[bytes]
    """Compiled pattern (bytes)."""
    replace: bytes = b"<masked>"
    """What each match becomes."""
    body: bool = True
    """Apply to bodies."""
    headers: bool = True
    """Apply to header values."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What the user asked to ignore."""

    ignore_headers: frozenset[str] = frozenset()
    """Lower-case header names never compared."""
    mask_headers: frozenset[str] = frozenset()
    """Lower-case header names compared for presence only."""
    ignore_json_paths: frozenset[str] = frozenset()
    """JSON paths not compared."""
    masks: tuple[Mask, ...] = ()
    """Regex masks in file order."""

    def options(self, *extra_ignored: str) -> DiffOptions:
        """The :class:`shadow.diff.DiffOptions` these rules mean (plus ``extra_ignored`` names)."""
        return DiffOptions(
            ignore_headers=HOP_BY_HOP | self.ignore_headers | {n.lower() for n in extra_ignored},
            mask_headers=MASKED | self.mask_headers,
            ignore_json_paths=self.ignore_json_paths)

    def mask_body(self, body: bytes) -> bytes:
        """``body`` with every body mask applied."""
        for m in self.masks:
            if m.body:
                body = m.pattern.sub(m.replace, body)
        return body

    def mask_headers_of(self, headers: tuple[tuple[bytes, bytes], ...]
                        ) -> tuple[tuple[bytes, bytes], ...]:
        """Header lines with every header mask applied to their values."""
        masks = [m for m in self.masks if m.headers]
        if not masks:
            return headers
        out = []
        for name, value in headers:
            for m in masks:
                value = m.pattern.sub(m.replace, value)
            out.append((name, value))
        return tuple(out)


_KEYS = frozenset({"ignore_headers", "mask_headers", "ignore_json_paths", "mask"})


def load_rules(path: str) -> Rules:
    """Read a rules file (format in the module docstring).

    Args:
        path: a ``.json`` file, or TOML.

    Returns:
        The rules.

    Raises:
        RulesError: unreadable file, bad syntax, unknown key, bad regex.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules: {exc}") from None
    try:
        if path.endswith(".json"):
            doc = json.loads(raw)
        else:
            doc = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise RulesError(f"{path}: the top level must be a table/object")
    return rules_from_dict(doc, path)


def rules_from_dict(doc: dict[str, Any], origin: str = "<rules>") -> Rules:
    """Build :class:`Rules` from an already parsed document (see :func:`load_rules`)."""
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise RulesError(f"{origin}: unknown key(s): {', '.join(unknown)}")

    def names(key: str) -> frozenset[str]:
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RulesError(f"{origin}: {key} must be a list of strings")
        return frozenset(v.strip().lower() for v in value)

    paths = doc.get("ignore_json_paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("$")
                                              for p in paths):
        raise RulesError(f"{origin}: ignore_json_paths must be a list of paths starting with $")
    masks: list[Mask] = []
    raw_masks = doc.get("mask", [])
    if not isinstance(raw_masks, list):
        raise RulesError(f"{origin}: mask must be a list of tables")
    for i, m in enumerate(raw_masks):
        if not isinstance(m, dict) or not isinstance(m.get("pattern"), str):
            raise RulesError(f"{origin}: mask[{i}] needs a string pattern")
        where = m.get("where", "both")
        if where not in ("body", "headers", "both"):
            raise RulesError(f"{origin}: mask[{i}].where must be body, headers or both")
        try:
            pattern = re.compile(m["pattern"].encode("utf-8"))
        except re.error as exc:
            raise RulesError(f"{origin}: mask[{i}]: bad regex: {exc}") from None
        replace = m.get("replace", "<masked>")
        if not isinstance(replace, str):
            raise RulesError(f"{origin}: mask[{i}].replace must be a string")
        masks.append(Mask(pattern=pattern, replace=replace.encode("utf-8").replace(b"\\", b"\\\\"),
                          body=where in ("body", "both"), headers=where in ("headers", "both")))
    return Rules(ignore_headers=names("ignore_headers"), mask_headers=names("mask_headers"),
                 ignore_json_paths=frozenset(p.strip() for p in paths), masks=tuple(masks))
