"""proxy_cookie_domain, proxy_cookie_path and proxy_cookie_flags: an upstream's Set-Cookie as
nginx 1.22 rewrites it (ngx_http_proxy_rewrite_cookie).

Rules:

1. The cookie is split at ``;`` into attributes, each trimmed of spaces, ``key=value`` or a
   bare ``key`` (empty ones kept).  Without ``=`` in the first attribute nothing is rewritten.
2. Every ``Domain`` attribute (key compared without case) goes through the proxy_cookie_domain
   rules in order, the first that matches rewrites it: a string matches the value without one
   leading dot, ignoring case, and replaces it (the dot stays); a ``~`` regex (always
   case-insensitive) matches the whole value and replaces all of it.  ``Path`` attributes
   likewise with proxy_cookie_path: a string is a case-sensitive prefix and only the prefix is
   replaced; ``~`` / ``~*`` regexes replace the whole value.  Replacements may use variables
   and the regex's captures.
3. proxy_cookie_flags: the first rule whose cookie name matches (exact string, or ``~`` regex,
   case-insensitive) applies: ``secure``/``httponly`` add ``Secure``/``HttpOnly`` when absent,
   ``nosecure``/``nohttponly``/``nosamesite`` remove them, ``samesite=V`` sets ``SameSite=V``
   (an attribute with another value is replaced, the same value ignoring case is kept); added
   attributes go last in the order Secure, HttpOnly, SameSite.
4. A cookie any rule applied to (a rewrite, or a matching flags rule even with nothing to
   change) is written again, attributes joined by ``"; "``; others are passed byte for byte.
5. Each directive is an array: the innermost level with one wins; ``off`` there means none.
   Within one rule's flags the last word about a flag wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import CookieFlags, CookieRewrite, Template, Var
from .regex import compile_pcre

if TYPE_CHECKING:
    from .interp import RequestState

__all__ = ["CookieRules", "rules_of", "rewrite"]


@dataclass(frozen=True, slots=True)
class CookieRules:
    """The rules in effect, with their regexes compiled."""

    domains: tuple[tuple[CookieRewrite, re.Pattern[str] | None], ...]
    paths: tuple[tuple[CookieRewrite, re.Pattern[str] | None], ...]
    flags: tuple[tuple[CookieFlags, re.Pattern[str] | None], ...]


def _compiled(rules: object) -> tuple[tuple[Any, re.Pattern[str] | None], ...]:
    out = []
    for r in rules or ():  # type: ignore[attr-defined]
        if isinstance(r, CookieFlags):
            out.append((r, compile_pcre(r.cookie, True) if r.regex else None))
        else:
            out.append((r, compile_pcre(r.regex, r.caseless) if r.regex is not None else None))
    return tuple(out)




def rules_of(state: RequestState) -> CookieRules | None:
    """The rules in effect for ``state``'s configuration (cached per chain), or None."""
    # cached with the configuration (the interpreter's per-chain cache): ids of scopes are
    # only unique while their model lives
    cache = state.interp.effective_cache
    key = (state.chain_key, "cookies")
    try:
        return cache[key]  # type: ignore[return-value]
    except KeyError:
        pass
    rules = CookieRules(
        domains=_compiled(state.effective(lambda s: s.proxy.cookie_domains)),
        paths=_compiled(state.effective(lambda s: s.proxy.cookie_paths)),
        flags=_compiled(state.effective(lambda s: s.proxy.cookie_flags)))
    got = rules if (rules.domains or rules.paths or rules.flags) else None
    cache[key] = got
    return got


def _expand(tpl: Template, state: RequestState, m: re.Match[str] | None) -> str:
    out = []
    for part in tpl.parts:
        if isinstance(part, Var):
            name = part.name
            if m is not None and name.isdigit():
                n = int(name)
                out.append((m.group(n) or "") if n <= (m.re.groups or 0) else "")
            elif m is not None and name in m.re.groupindex:
                out.append(m.group(name) or "")
            else:
                out.append(state.var(name))
        else:
            out.append(part.text)  # type: ignore[union-attr]
    return "".join(out)


def _rewrite_value(value: str, rules: tuple[tuple[CookieRewrite, re.Pattern[str] | None], ...],
                   state: RequestState, *, domain: bool) -> str | None:
    for rule, regex in rules:
        if regex is not None:
            m = regex.search(value)
            if m is None:
                continue
            return _expand(rule.replacement, state, m)
        assert rule.match is not None
        pattern = state.eval(rule.match)
        if domain:
            dot = "." if value.startswith(".") else ""
            if value[len(dot):].lower() != pattern.lower():
                continue
            return dot + state.eval(rule.replacement)
        if not value.startswith(pattern):
            continue
        return state.eval(rule.replacement) + value[len(pattern):]
    return None


_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def _apply_flags(attrs: list[list[Any]], flags: tuple[str, ...]) -> None:
    def find(key: str) -> int:
        return next((i for i, a in enumerate(attrs) if i and a[0].lower() == key), -1)

    want: dict[str, object] = {}
    for f in flags:  # the last word about a flag wins
        if f in ("secure", "nosecure"):
            want["secure"] = f == "secure"
        elif f in ("httponly", "nohttponly"):
            want["httponly"] = f == "httponly"
        elif f == "nosamesite":
            want["samesite"] = ""
        else:
            want["samesite"] = _SAMESITE[f.partition("=")[2]]
    tail: list[list[Any]] = []
    for key, canonical in (("secure", "Secure"), ("httponly", "HttpOnly")):
        if key not in want:
            continue
        at = find(key)
        if want[key] and at < 0:
            tail.append([canonical, None])
        elif not want[key] and at >= 0:
            del attrs[at]
    if "samesite" in want:
        value = str(want["samesite"])
        at = find("samesite")
        if value == "":
            if at >= 0:
                del attrs[at]
        elif at < 0:
            tail.append(["SameSite", value])
        elif (attrs[at][1] or "").lower() != value.lower():
            attrs[at] = ["SameSite", value]
    attrs.extend(tail)


def rewrite(rules: CookieRules, state: RequestState, header: bytes) -> bytes:
    """One Set-Cookie value, rewritten (rules 1-4)."""
    text = header.decode("latin-1")
    attrs: list[list[Any]] = []
    for piece in text.split(";"):
        piece = piece.strip(" ")
        key, eq, val = piece.partition("=")
        attrs.append([key.strip(" "), val.strip(" ") if eq else None])
    if attrs[0][1] is None:
        return header
    changed = False
    for a in attrs[1:]:
        key = a[0].lower()
        if a[1] is None:
            continue
        if key == "domain" and rules.domains:
            new = _rewrite_value(a[1], rules.domains, state, domain=True)
        elif key == "path" and rules.paths:
            new = _rewrite_value(a[1], rules.paths, state, domain=False)
        else:
            continue
        if new is not None:
            a[1] = new
            changed = True
    name = attrs[0][0]
    for flag_rule, regex in rules.flags:
        hit = regex.search(name) is not None if regex is not None else flag_rule.cookie == name
        if hit:
            _apply_flags(attrs, flag_rule.flags)
            changed = True
            break
    if not changed:
        return header
    return "; ".join(k if v is None else f"{k}={v}" for k, v in attrs).encode("latin-1")
