"""Security and correctness lint of an nginx configuration: Tern's own implementation of the checks
operators rely on (gixy's families, written from nginx's behaviour, not from gixy's code).

Rules of this module:

1. Findings are data: one ``Diagnostic(level=Level.WARNING, code="lint-<check>")`` per directive at
   fault, with the file and line of that directive and a message that says what is wrong and what
   to write instead. ``lint()`` never raises for a valid model.
2. Conservative: a check reports what the configuration shows, not what it might hide. Values are
   followed through ``set`` and ``map``; a regex capture is judged by what its group can match
   (``(\\d+)`` cannot carry a line break, ``([^/]+)`` can). When Tern cannot tell, it stays silent.
3. nginx is the oracle. The behaviours the checks rely on were measured on nginx 1.22.1 (see
   docs/lint.md): ``$uri`` is percent-decoded, so ``%0d%0a`` becomes a line break in a header built
   from it; ``rewrite ... redirect`` escapes *numbered* captures but copies named captures as is;
   ``add_header`` and ``proxy_set_header`` copy values verbatim.
4. The model is the input. A few settings the model keeps without a line (``ssl_protocols``,
   ``ssl_ciphers``, the contents of an ``if``) are located by re-reading the configuration files
   named in the model; when they are gone, the finding points at the enclosing block instead.
5. Checks and their codes are listed in ``CHECKS`` (docs/lint.md documents each, with the
   comparison against gixy-ng).
"""

from __future__ import annotations

import importlib
import ipaddress
import itertools
import os
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from proxy import model as m
from proxy.regex import translate as _pcre_to_python

from .diagnostics import Diagnostic, Level
from .loader import Stmt, load

# Python's own regex parser gives the structure of a pattern (stdlib, private modules that have
# been stable since 3.11; the public sre_* aliases warn on import).
_sp: Any = importlib.import_module("re._parser")
_sc: Any = importlib.import_module("re._constants")

__all__ = ["CHECKS", "lint"]

CHECKS: dict[str, str] = {
    "lint-alias-traversal": "prefix location without a trailing slash whose alias has one "
                            "(/x../ reads the alias' parent directory)",
    "lint-add-header-redefinition": "a level with its own add_header drops every add_header "
                                    "inherited from the enclosing level",
    "lint-host-spoofing": "$http_host (the raw Host header) in proxy_pass, proxy_set_header Host "
                          "or a redirect target",
    "lint-ssrf": "proxy_pass whose host comes from the request",
    "lint-header-splitting": "a percent-decoded value (CR/LF possible) written into a response "
                             "header, a redirect or the upstream request",
    "lint-unanchored-regex": "origin/referer check with a regex that is not anchored or has an "
                             "unescaped dot",
    "lint-missing-resolver": "proxy_pass with variables that needs DNS at run time, and no "
                             "resolver in effect",
    "lint-weak-tls": "ssl_protocols or ssl_ciphers enabling broken protocols or ciphers",
    "lint-if-is-evil": "if in a location holding more than return/rewrite/set/break, or testing "
                       "for the requested file where try_files would do",
    "lint-location-shadowing": "a location that can never be selected",
}
"""Every lint code with a one-line summary (report legends use it)."""


# ---------------------------------------------------------------------------------------------
# Regular expressions: what a group can match, read off Python's parse of the PCRE pattern

_LIT, _NLIT, _ANY, _IN = _sc.LITERAL, _sc.NOT_LITERAL, _sc.ANY, _sc.IN
_ATOMS = (_LIT, _NLIT, _ANY, _IN, _sc.CATEGORY)
_REPEATS = (_sc.MAX_REPEAT, _sc.MIN_REPEAT, _sc.POSSESSIVE_REPEAT)
_BEGIN = (_sc.AT_BEGINNING, _sc.AT_BEGINNING_STRING)
_END = (_sc.AT_END, _sc.AT_END_STRING)
_WILD = (_ANY, None, _sc.SRE_FLAG_DOTALL)
"""An atom that matches anything (stands in for what Tern does not model, e.g. back-references)."""

_CATEGORIES: dict[Any, Callable[[str], bool]] = {
    _sc.CATEGORY_DIGIT: str.isdigit,
    _sc.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    _sc.CATEGORY_SPACE: lambda c: c in " \t\n\r\f\v",
    _sc.CATEGORY_NOT_SPACE: lambda c: c not in " \t\n\r\f\v",
    _sc.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    _sc.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    _sc.CATEGORY_LINEBREAK: lambda c: c == "\n",
    _sc.CATEGORY_NOT_LINEBREAK: lambda c: c != "\n",
}

Atom = tuple[Any, Any, int]
"""(opcode, argument, flags in effect) of one single-character item."""


def _anything(ch: str) -> bool:
    return True


def _same(code: int, ch: str, flags: int) -> bool:
    if flags & _sc.SRE_FLAG_IGNORECASE:
        return chr(code).lower() == ch.lower()
    return chr(code) == ch


def _atom_matches(atom: Atom, ch: str) -> bool:
    op, av, flags = atom
    if op is _LIT:
        return _same(av, ch, flags)
    if op is _NLIT:
        return not _same(av, ch, flags)
    if op is _ANY:
        return ch != "\n" or bool(flags & _sc.SRE_FLAG_DOTALL)
    if op is _sc.CATEGORY:
        return _CATEGORIES.get(av, _anything)(ch)
    if op is _IN:
        negate = False
        hit = False
        for iop, iav in av:
            if iop is _sc.NEGATE:
                negate = True
            elif iop is _LIT:
                hit = hit or _same(iav, ch, flags)
            elif iop is _sc.RANGE:
                lo, hi = iav
                cs = {ch, ch.lower(), ch.upper()} if flags & _sc.SRE_FLAG_IGNORECASE else {ch}
                hit = hit or any(lo <= ord(c) <= hi for c in cs)
            elif iop is _sc.CATEGORY:
                hit = hit or _CATEGORIES.get(iav, _anything)(ch)
            else:  # anything else inside a class: assume it may match
                hit = True
        return hit != negate
    return True


class _Regex:
    """One nginx regex, parsed once: groups, names, and questions about what they match."""

    __slots__ = ("pattern", "caseless", "items", "flags", "groups", "names", "_group_items")

    def __init__(self, pattern: str, caseless: bool) -> None:
        self.pattern = pattern
        self.caseless = caseless
        self.items: list[Any] | None = None
        self.flags = _sc.SRE_FLAG_IGNORECASE if caseless else 0
        self.groups = 0
        self.names: dict[str, int] = {}
        self._group_items: dict[int, tuple[list[Any], int]] = {}
        try:
            parsed = _sp.parse(_pcre_to_python(pattern), self.flags)
        except (re.error, OverflowError, RecursionError):
            return
        self.items = list(parsed.data)
        self.flags |= parsed.state.flags
        self.groups = parsed.state.groups - 1
        self.names = dict(parsed.state.groupdict)
        self._index(self.items, self.flags)

    def _index(self, items: list[Any], flags: int) -> None:
        for op, av in items:
            if op is _sc.SUBPATTERN:
                group, add, dele, sub = av
                inner = (flags | add) & ~dele
                if group is not None:
                    self._group_items[group] = (list(sub), inner)
                self._index(list(sub), inner)
            elif op in _REPEATS:
                self._index(list(av[2]), flags)
            elif op is _sc.BRANCH:
                for alt in av[1]:
                    self._index(list(alt), flags)
            elif op is _sc.ATOMIC_GROUP:
                self._index(list(av), flags)
            elif op is _sc.GROUPREF_EXISTS:
                self._index(list(av[1]), flags)
                if av[2] is not None:
                    self._index(list(av[2]), flags)

    @property
    def parsed(self) -> bool:
        """False when Python cannot parse the pattern (then Tern assumes nothing about it)."""
        return self.items is not None

    def group(self, ref: str) -> tuple[list[Any], int] | None:
        """Items and flags of group ``ref`` (a number or a name); None when there is none."""
        idx = int(ref) if ref.isdigit() else self.names.get(ref)
        if idx is None:
            return None
        return self._group_items.get(idx)

    # -- what a sequence can match --------------------------------------------------------------

    def atoms(self, items: list[Any], flags: int, seen: frozenset[int] = frozenset()
              ) -> Iterator[Atom]:
        """Every single-character item a match of ``items`` may consume (assertions excluded)."""
        for op, av in items:
            if op in _ATOMS:
                yield (op, av, flags)
            elif op is _sc.SUBPATTERN:
                _, add, dele, sub = av
                yield from self.atoms(list(sub), (flags | add) & ~dele, seen)
            elif op in _REPEATS:
                yield from self.atoms(list(av[2]), flags, seen)
            elif op is _sc.BRANCH:
                for alt in av[1]:
                    yield from self.atoms(list(alt), flags, seen)
            elif op is _sc.ATOMIC_GROUP:
                yield from self.atoms(list(av), flags, seen)
            elif op is _sc.GROUPREF_EXISTS:
                yield from self.atoms(list(av[1]), flags, seen)
                if av[2] is not None:
                    yield from self.atoms(list(av[2]), flags, seen)
            elif op is _sc.GROUPREF:
                ref = self._group_items.get(av)
                if ref is None or av in seen:
                    yield _WILD
                else:
                    yield from self.atoms(ref[0], ref[1], seen | {av})

    def first(self, items: list[Any], flags: int) -> tuple[list[Atom], bool]:
        """Atoms that can start a match of ``items``, and whether ``items`` can match nothing."""
        out: list[Atom] = []
        for op, av in items:
            if op in _ATOMS:
                out.append((op, av, flags))
                return out, False
            if op is _sc.SUBPATTERN:
                _, add, dele, sub = av
                got, nullable = self.first(list(sub), (flags | add) & ~dele)
            elif op in _REPEATS:
                got, nullable = self.first(list(av[2]), flags)
                nullable = nullable or av[0] == 0
            elif op is _sc.BRANCH:
                got, nullable = [], False
                for alt in av[1]:
                    g, n = self.first(list(alt), flags)
                    got += g
                    nullable = nullable or n
            elif op is _sc.ATOMIC_GROUP:
                got, nullable = self.first(list(av), flags)
            elif op in (_sc.AT, _sc.ASSERT, _sc.ASSERT_NOT):
                continue
            else:  # back-references, conditionals: anything, possibly nothing
                got, nullable = [_WILD], True
            out += got
            if not nullable:
                return out, False
        return out, True

    def can_contain(self, ref: str, chars: str) -> bool:
        """True when group ``ref`` may capture one of ``chars`` (unknown regex: False)."""
        grp = self.group(ref)
        if grp is None:
            return False
        return any(_atom_matches(a, c) for a in self.atoms(*grp) for c in chars)

    def starts_with_slash(self, ref: str) -> bool:
        """True when every capture of group ``ref`` starts with ``/`` (it is never empty)."""
        grp = self.group(ref)
        if grp is None:
            return False
        atoms, nullable = self.first(*grp)
        if nullable or not atoms:
            return False
        probe = "abz.:@?#%-_09\r\n\\AZ"
        return all(_atom_matches(a, "/") and not any(_atom_matches(a, c) for c in probe)
                   for a in atoms)

    # -- location-level questions ---------------------------------------------------------------

    def matches_every_uri(self) -> bool:
        """True when the regex provably matches every URI (they all start with ``/``)."""
        if self.items is None:
            return False
        items = list(self.items)
        while items and items[0][0] is _sc.AT and items[0][1] in _BEGIN:
            items = items[1:]
        if _free(items):
            return True
        if not items or items[0][0] not in _ATOMS:
            return False
        return _atom_matches((items[0][0], items[0][1], self.flags), "/") and _free(items[1:])

    def literal_prefix(self) -> str | None:
        """For a regex anchored with ``^``: the literal text every match starts with."""
        if self.items is None or not self.items:
            return None
        op, av = self.items[0]
        if op is not _sc.AT or av not in _BEGIN:
            return None
        out = []
        for op, av in self.items[1:]:
            if op is not _LIT:
                break
            out.append(chr(av))
        return "".join(out)


def _free(items: list[Any]) -> bool:
    """True when ``items`` can match the empty string without any assertion that could fail."""
    for op, av in items:
        if op in _REPEATS and av[0] == 0:
            continue
        if op is _sc.SUBPATTERN and _free(list(av[3])):
            continue
        if op is _sc.BRANCH and any(_free(list(alt)) for alt in av[1]):
            continue
        return False
    return True


@lru_cache(maxsize=2048)
def _regex(pattern: str, caseless: bool = False) -> _Regex:
    return _Regex(pattern, caseless)


# ---------------------------------------------------------------------------------------------
# Abstract values: what a variable or template may hold


@dataclass(frozen=True, slots=True)
class _Val:
    """What Tern knows about a run-time string."""

    controlled: str = ""
    """Non-empty when the client chooses (part of) the value; names the source (``$arg_url``)."""
    crlf: str = ""
    """Non-empty when the value may hold a line feed: names the source."""
    http_host: bool = False
    """True when the value includes the raw Host header (``$http_host``)."""
    escapes: bool = False
    """For client-chosen values: may hold ``.``, ``:``, ``@``, ``/``, ``?`` or ``#``."""
    slash: bool = False
    """Every value starts with ``/``."""
    dns: bool = False
    """The value is a host name nginx must resolve (``$host``, ``$server_name``...)."""
    statics: frozenset[str] | None = frozenset({""})
    """Every possible value when all are known (at most 64), else None."""


_EMPTY = _Val()
_UNKNOWN = _Val(statics=None)
_MAX_STATICS = 64
_HOST_ESCAPES = ".:@/?#"


def _lit(text: str) -> _Val:
    return _Val(slash=text.startswith("/"), statics=frozenset({text}))


def _concat(a: _Val, b: _Val) -> _Val:
    statics: frozenset[str] | None = None
    if a.statics is not None and b.statics is not None \
            and len(a.statics) * len(b.statics) <= _MAX_STATICS:
        statics = frozenset(x + y for x, y in itertools.product(a.statics, b.statics))
    return _Val(controlled=a.controlled or b.controlled, crlf=a.crlf or b.crlf,
                http_host=a.http_host or b.http_host, escapes=a.escapes or b.escapes,
                slash=a.slash or (a.statics == frozenset({""}) and b.slash),
                dns=a.dns or b.dns, statics=statics)


def _union(vals: list[_Val]) -> _Val:
    if not vals:
        return _UNKNOWN
    statics: frozenset[str] | None = frozenset()
    for v in vals:
        if statics is None or v.statics is None or len(statics | v.statics) > _MAX_STATICS:
            statics = None
        else:
            statics = statics | v.statics
    return _Val(controlled=next((v.controlled for v in vals if v.controlled), ""),
                crlf=next((v.crlf for v in vals if v.crlf), ""),
                http_host=any(v.http_host for v in vals), escapes=any(v.escapes for v in vals),
                slash=all(v.slash for v in vals), dns=any(v.dns for v in vals), statics=statics)


_BUILTIN_STATICS = {"is_args": frozenset({"", "?"}), "scheme": frozenset({"http", "https"})}


def _builtin(name: str) -> _Val | None:
    """What Tern knows of nginx's own variable ``$name`` (None: nothing, or not a builtin)."""
    ref = "$" + name
    if name in _BUILTIN_STATICS:
        return _Val(statics=_BUILTIN_STATICS[name])
    if name in ("host", "server_name", "hostname"):
        return _Val(dns=True, statics=None)
    if name in ("uri", "document_uri", "fastcgi_script_name"):
        # percent-decoded and normalised path
        return _Val(controlled=ref, crlf=ref, escapes=True, slash=True, statics=None)
    if name in ("request_filename", "fastcgi_path_info", "request_body"):
        return _Val(controlled=ref, crlf=ref, escapes=True, statics=None)
    if name == "request_uri":  # as received: still percent-encoded
        return _Val(controlled=ref, escapes=True, slash=True, statics=None)
    if name == "http_host":
        return _Val(controlled=ref, http_host=True, escapes=True, dns=True, statics=None)
    if name in ("args", "query_string", "request", "remote_user") or \
            name.startswith(("arg_", "http_", "cookie_")):
        return _Val(controlled=ref, escapes=True, statics=None)
    return None


# ---------------------------------------------------------------------------------------------
# The configuration as levels (http, server, location, if) with their parents


@dataclass(eq=False, slots=True)
class _Level:
    """One block that holds directives: http, a server, a location or an if."""

    kind: str
    """``http``, ``server``, ``location`` or ``if``."""
    scope: m.Scope
    source: m.SourceSpan
    parent: _Level | None
    server: m.Server | None = None
    location: m.Location | None = None
    """The innermost location at or around this level."""
    loc_chain: tuple[m.Location, ...] = ()
    """Enclosing locations, outermost first (this one included)."""
    node: m.If | None = None
    """For an if level: the if."""
    index: int = 0
    """For an if level: its position in the parent's rewrite program."""

    @property
    def label(self) -> str:
        if self.kind == "location" and self.location is not None:
            return f"location {self.location.match}"
        if self.kind == "if" and self.node is not None:
            cond = self.node.condition
            right = cond.pattern if cond.pattern is not None else (
                cond.value.raw if cond.value is not None else "")
            inner = " ".join(x for x in (cond.op.value if cond.op is not m.CondOp.TRUTHY else "",
                                         right) if x)
            return f"if ({cond.subject.raw}{' ' + inner if inner else ''})"
        if self.kind == "server" and self.server is not None and self.server.names:
            return f"server {self.server.names[0].value}"
        return self.kind

    def chain(self) -> Iterator[_Level]:
        """This level and its enclosing ones, innermost first."""
        lvl: _Level | None = self
        while lvl is not None:
            yield lvl
            lvl = lvl.parent


@dataclass(frozen=True, slots=True)
class _CaptureSource:
    """A regex whose captures may be in effect, and what it was matched against."""

    regex: _Regex
    subject: _Val
    source: m.SourceSpan
    where: str
    """How to name it in a message (``location ~ ^/x/(.*)$``)."""


@dataclass(frozen=True, slots=True)
class _Site:
    """Where a value is used: the level and, for rewrite-phase statements, their position."""

    level: _Level
    index: int | None = None
    """Position in the level's rewrite program; None for directives that run after it."""
    own_regex: _Regex | None = None
    """For a rewrite replacement: the rewrite's own regex (numbered captures come from it)."""


_URI_SUBJECT = _Val(controlled="the request URI", crlf="the request URI (percent-decoded)",
                    escapes=True, slash=True, statics=None)
_HOST_SUBJECT = _Val(controlled="the Host header", escapes=True, statics=None)


class _Model:
    """Indexes over the configuration that several checks share."""

    def __init__(self, config: m.Config) -> None:
        self.config = config
        self.levels: list[_Level] = []
        self.sets: dict[str, list[tuple[m.SetVar, _Site]]] = {}
        self.maps: dict[str, m.Map] = {m_.variable: m_ for m_ in
                                        (config.http.maps if config.http else ())}
        self.named: dict[str, list[_CaptureSource]] = {}
        self.upstream_names: set[str] = set()
        self._stmts: dict[tuple[str, int, str], list[Stmt]] | None = None
        self._ifs: list[tuple[m.Condition, _Site]] = []
        http = config.http
        if http is None:
            return
        top = _Level("http", http.scope, http.source, None)
        self._add(top)
        for up in http.upstreams:
            self.upstream_names.add(up.name.lower())
        for server in http.servers:
            lvl = _Level("server", server.scope, server.source, top, server=server)
            self._add(lvl)
            for name in server.names:
                if name.kind is m.ServerNameKind.REGEX:
                    self._named(_CaptureSource(regex=_regex(name.value[1:], True),
                                               subject=_HOST_SUBJECT, source=server.source,
                                               where=f"server_name {name.value}"))
            for loc in server.locations:
                self._add_location(loc, lvl, server, ())
        # regexes matched on a value: named once every set and map is known
        for cond, site in self._ifs:
            self._named(self.if_capture(cond, site))
        for mp in self.maps.values():
            subject = self.template(mp.source_value, None)
            for entry in mp.entries:
                if entry.kind in (m.MapKeyKind.REGEX, m.MapKeyKind.REGEX_CI):
                    self._named(_CaptureSource(
                        regex=_regex(entry.key, entry.kind is m.MapKeyKind.REGEX_CI),
                        subject=subject, source=entry.source,
                        where=f"map {mp.source_value.raw} ~{entry.key}"))
        for lvl in self.levels:
            pp = lvl.scope.proxy_pass
            if pp is not None and not pp.has_variables and pp.host:
                self.upstream_names.add(pp.host.lower())

    def _add(self, lvl: _Level) -> None:
        self.levels.append(lvl)
        for i, st in enumerate(lvl.scope.rewrites):
            if isinstance(st, m.SetVar):
                self.sets.setdefault(st.name, []).append((st, _Site(lvl, i)))
            elif isinstance(st, m.If):
                child = _Level("if", st.scope, st.source, lvl, server=lvl.server,
                               location=lvl.location, loc_chain=lvl.loc_chain, node=st, index=i)
                self._add(child)
                if st.condition.pattern is not None:
                    self._ifs.append((st.condition, _Site(lvl, i)))
            elif isinstance(st, m.Rewrite):
                self._named(_CaptureSource(regex=_regex(st.pattern), subject=_URI_SUBJECT,
                                           source=st.source, where=f"rewrite {st.pattern}"))

    def _add_location(self, loc: m.Location, parent: _Level, server: m.Server,
                      chain: tuple[m.Location, ...]) -> None:
        lvl = _Level("location", loc.scope, loc.source, parent, server=server, location=loc,
                     loc_chain=chain + (loc,))
        self._add(lvl)
        if loc.modifier in (m.LocationModifier.REGEX, m.LocationModifier.REGEX_CI):
            self._named(self.location_capture(loc))
        for child in loc.locations:
            self._add_location(child, lvl, server, chain + (loc,))

    def _named(self, src: _CaptureSource) -> None:
        for name in src.regex.names:
            self.named.setdefault(name, []).append(src)

    @staticmethod
    def location_capture(loc: m.Location) -> _CaptureSource:
        caseless = loc.modifier is m.LocationModifier.REGEX_CI
        return _CaptureSource(regex=_regex(loc.pattern, caseless), subject=_URI_SUBJECT,
                              source=loc.source, where=f"location {loc.match}")

    def if_capture(self, cond: m.Condition, site: _Site) -> _CaptureSource:
        assert cond.pattern is not None
        caseless = cond.op in (m.CondOp.MATCH_CI, m.CondOp.NOT_MATCH_CI)
        return _CaptureSource(regex=_regex(cond.pattern, caseless),
                              subject=self.template(cond.subject, site), source=cond.source,
                              where=f"if ({cond.subject.raw} {cond.op.value} {cond.pattern})")

    # -- source lines of directives the model keeps without one ----------------------------------

    def stmts(self, block: m.SourceSpan, kind: str) -> list[Stmt] | None:
        """Directives written directly in the ``kind`` block (``http``, ``server``, ``location``,
        ``if``) that starts at ``block``, includes spliced in; None when the files are gone."""
        if self._stmts is None:
            self._stmts = {}
            main = self.config.main_file
            if os.path.exists(main):
                tree = load(main, self.config.prefix or None)
                self._stmts[("", 0, "")] = tree.stmts
                todo = list(reversed(tree.stmts))
                while todo:  # document order: on a shared line the outer block is seen first
                    st = todo.pop()
                    if st.block is not None:
                        self._stmts.setdefault((st.file, st.line, st.name), st.block)
                        todo.extend(reversed(st.block))
        if block.line == 0:  # a block Tern wrapped around a fragment
            return self._stmts.get(("", 0, ""))
        return self._stmts.get((block.file, block.line, kind))

    def line_of(self, lvl: _Level, name: str) -> m.SourceSpan:
        """Where directive ``name`` is written in ``lvl`` (the block itself when unknown)."""
        block = lvl.source
        for st in self.stmts(block, lvl.kind) or ():
            if st.name == name:
                return m.SourceSpan(file=st.file, line=st.line)
        return block

    # -- values ---------------------------------------------------------------------------------

    def template(self, tpl: m.Template, site: _Site | None,
                 skip: Callable[[str], bool] | None = None) -> _Val:
        """The value of ``tpl`` at ``site``; variables for which ``skip`` is true count as empty."""
        val = _EMPTY
        for part in tpl.parts:
            if isinstance(part, m.Lit):
                val = _concat(val, _lit(part.text))
            elif skip is None or not skip(part.name):
                val = _concat(val, self.var(part.name, site))
        return val

    def var(self, name: str, site: _Site | None, stack: tuple[str, ...] = ()) -> _Val:
        """What ``$name`` may hold at ``site``."""
        if name in stack:
            return _UNKNOWN
        stack = stack + (name,)
        if name.isdigit():
            if name == "0":
                return _URI_SUBJECT
            return self.capture(name, self.capture_sources(site))
        known = _builtin(name)
        if known is not None:
            return known
        vals: list[_Val] = []
        for st, at in self.reaching_sets(name, site):
            vals.append(self._eval(st.value, at, stack))
        mp = self.maps.get(name)
        if mp is not None:
            vals.append(self.map_value(mp, stack))
        if vals:
            return _union(vals)
        sources = [s for s in self.capture_sources(site) if name in s.regex.names] \
            or self.named.get(name, [])
        if sources:
            return self.capture(name, sources)
        return _UNKNOWN

    def _eval(self, tpl: m.Template, site: _Site | None, stack: tuple[str, ...]) -> _Val:
        val = _EMPTY
        for part in tpl.parts:
            val = _concat(val, _lit(part.text) if isinstance(part, m.Lit)
                          else self.var(part.name, site, stack))
        return val

    def map_value(self, mp: m.Map, stack: tuple[str, ...]) -> _Val:
        subject = self._eval(mp.source_value, None, stack)
        vals = [self._eval(mp.default, None, stack) if mp.default is not None else _EMPTY]
        for entry in mp.entries:
            if entry.kind in (m.MapKeyKind.REGEX, m.MapKeyKind.REGEX_CI):
                src = _CaptureSource(regex=_regex(entry.key, entry.kind is m.MapKeyKind.REGEX_CI),
                                     subject=subject, source=entry.source,
                                     where=f"map {mp.source_value.raw} ~{entry.key}")
                val = _EMPTY
                for part in entry.value.parts:
                    if isinstance(part, m.Lit):
                        val = _concat(val, _lit(part.text))
                    elif part.name.isdigit() or part.name in src.regex.names:
                        val = _concat(val, self.capture(part.name, [src]))
                    else:
                        val = _concat(val, self.var(part.name, None, stack))
                vals.append(val)
            else:
                vals.append(self._eval(entry.value, None, stack))
        return _union(vals)

    def reaching_sets(self, name: str, site: _Site | None
                      ) -> list[tuple[m.SetVar, _Site]]:
        """``set $name`` statements whose value may be in effect at ``site``."""
        defs = self.sets.get(name, [])
        if site is None or not defs:
            return defs
        lvl = site.level
        own = [lv for lv in lvl.chain() if lv.kind in ("location", "if")]
        loc_lvl = next((lv for lv in own if lv.kind == "location"), None)
        srv_lvl = next((lv for lv in lvl.chain() if lv.kind == "server"), None)

        def inside(at: _Site, root: _Level | None) -> bool:
            if root is None:
                return False
            probe: _Level | None = at.level
            while probe is not None:
                if probe is root:
                    return True
                if probe.kind == "location" and probe is not root:
                    return False
                probe = probe.parent
            return False

        local = [(st, at) for st, at in defs if inside(at, loc_lvl)]
        unconditional = any(at.level is loc_lvl for _, at in local)
        server = [] if unconditional else [(st, at) for st, at in defs
                                           if at.level.kind in ("server", "if")
                                           and at.level.location is None
                                           and inside(at, srv_lvl)]
        return local + server or defs

    def capture_sources(self, site: _Site | None) -> list[_CaptureSource]:
        """Regexes whose captures may be the ones in effect at ``site``."""
        if site is None:
            return []
        if site.own_regex is not None:
            return [_CaptureSource(regex=site.own_regex, subject=_URI_SUBJECT,
                                   source=site.level.source,
                                   where=f"rewrite {site.own_regex.pattern}")]
        out: list[_CaptureSource] = []
        lvl: _Level | None = site.level
        index = site.index
        while lvl is not None:
            if lvl.kind == "if" and lvl.node is not None:
                cond = lvl.node.condition
                parent = lvl.parent
                assert parent is not None
                if cond.pattern is not None and cond.op in (m.CondOp.MATCH, m.CondOp.MATCH_CI):
                    return out + [self.if_capture(cond, _Site(parent, lvl.index))]
                index, lvl = lvl.index, parent
                continue
            stop = len(lvl.scope.rewrites) if index is None else index
            for pos in range(stop - 1, -1, -1):
                st = lvl.scope.rewrites[pos]
                if isinstance(st, m.Rewrite):
                    out.append(_CaptureSource(regex=_regex(st.pattern), subject=_URI_SUBJECT,
                                              source=st.source, where=f"rewrite {st.pattern}"))
                elif isinstance(st, m.If) and st.condition.pattern is not None and \
                        st.condition.op in (m.CondOp.MATCH, m.CondOp.MATCH_CI):
                    out.append(self.if_capture(st.condition, _Site(lvl, pos)))
            if lvl.kind == "location":
                regex_loc = next((loc for loc in reversed(lvl.loc_chain)
                                  if loc.modifier in (m.LocationModifier.REGEX,
                                                      m.LocationModifier.REGEX_CI)), None)
                if regex_loc is not None:
                    return out + [self.location_capture(regex_loc)]
                lvl = next((lv for lv in lvl.chain() if lv.kind == "server"), None)
                index = None
                continue
            if lvl.kind == "server" and lvl.server is not None:
                for name in lvl.server.names:
                    if name.kind is m.ServerNameKind.REGEX:
                        out.append(_CaptureSource(regex=_regex(name.value[1:], True),
                                                  subject=_HOST_SUBJECT, source=lvl.server.source,
                                                  where=f"server_name {name.value}"))
            break
        return out

    def capture(self, ref: str, sources: list[_CaptureSource]) -> _Val:
        """The value of capture ``ref`` (``"1"`` or a name) taken from any of ``sources``."""
        vals = []
        for src in sources:
            rx = src.regex
            if rx.group(ref) is None:
                if rx.parsed:
                    continue
                vals.append(_Val(controlled=src.subject.controlled and f"${ref} of {src.where}",
                                 escapes=bool(src.subject.controlled), statics=None))
                continue
            what = f"${ref} (captured by {src.where}, {src.source})"
            # RFC 9112 section 2.2: a bare CR must be rejected or read as a space, a bare LF
            # may end a line; so a value that can hold LF is what splits a message
            crlf = src.subject.crlf and rx.can_contain(ref, "\n")
            vals.append(_Val(controlled=what if src.subject.controlled else "",
                             crlf=what if crlf else "",
                             escapes=bool(src.subject.controlled)
                             and rx.can_contain(ref, _HOST_ESCAPES),
                             slash=rx.starts_with_slash(ref), statics=None))
        return _union(vals) if vals else _EMPTY


# ---------------------------------------------------------------------------------------------
# Findings


def _diag(code: str, at: m.SourceSpan, directive: str, message: str) -> Diagnostic:
    return Diagnostic(file=at.file, line=at.line, level=Level.WARNING, code=code,
                      message=message, directive=directive)


_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def _is_redirect_rewrite(rw: m.Rewrite) -> bool:
    return rw.flag in (m.RewriteFlag.REDIRECT, m.RewriteFlag.PERMANENT) or \
        rw.replacement.raw.startswith(("http://", "https://", "$scheme"))


def _internal(lvl: _Level) -> bool:
    return any(loc.scope.static.internal for loc in lvl.loc_chain) or \
        any(loc.modifier is m.LocationModifier.NAMED for loc in lvl.loc_chain)


# -- 1. alias traversal --------------------------------------------------------------------------

def _check_alias(md: _Model) -> Iterator[Diagnostic]:
    for lvl in md.levels:
        loc = lvl.location
        root = lvl.scope.static.root
        if lvl.kind != "location" or loc is None or root is None or not root.alias:
            continue
        if loc.modifier not in (m.LocationModifier.PREFIX, m.LocationModifier.PREFIX_NO_REGEX):
            continue
        if loc.pattern.endswith("/") or not root.path.raw.endswith("/"):
            continue
        yield _diag("lint-alias-traversal", root.source, "alias",
                    f'location {loc.match} has no trailing slash but its alias "{root.path.raw}" '
                    f"has one: {loc.pattern}../secret maps to {root.path.raw}../secret, one "
                    f"directory above the alias (path traversal). Write "
                    f'"location {loc.pattern}/" (or drop the alias\' trailing slash)')


# -- 2. add_header redefinition ------------------------------------------------------------------

_SECURITY_HEADERS = frozenset({
    "strict-transport-security", "x-frame-options", "content-security-policy",
    "content-security-policy-report-only", "x-content-type-options", "referrer-policy",
    "permissions-policy", "cross-origin-opener-policy", "cross-origin-embedder-policy",
    "cross-origin-resource-policy", "x-xss-protection",
})


def _inherited_headers(lvl: _Level) -> tuple[_Level, tuple[m.HeaderValue, ...]] | None:
    for outer in itertools.islice(lvl.chain(), 1, None):
        if outer.scope.add_headers is not None:
            return outer, outer.scope.add_headers
    return None


def _check_add_header(md: _Model) -> Iterator[Diagnostic]:
    for lvl in md.levels:
        own = lvl.scope.add_headers
        if not own:
            continue
        found = _inherited_headers(lvl)
        if found is None:
            continue
        outer, inherited = found
        names = {h.name.lower() for h in own}
        dropped: list[m.HeaderValue] = []
        for h in inherited:
            if h.name.lower() not in names and h.name.lower() not in \
                    {d.name.lower() for d in dropped}:
                dropped.append(h)
        if not dropped:
            continue
        listed = ", ".join(f"{h.name} ({h.source})" for h in dropped)
        security = [h.name for h in dropped if h.name.lower() in _SECURITY_HEADERS]
        note = (f" This includes security headers ({', '.join(security)})." if security else "")
        yield _diag("lint-add-header-redefinition", own[0].source, "add_header",
                    f"{lvl.label} ({lvl.source}) has its own add_header, so nginx drops every "
                    f"add_header inherited from {outer.label}: {listed} are not sent for requests "
                    f"answered here.{note} Repeat them in this block (an include of a shared "
                    f"snippet keeps them in one place)")


# -- 3. Host spoofing, 4. SSRF, 5. header splitting, 7. resolver: where values are used ----------

@dataclass(frozen=True, slots=True)
class _Use:
    """One place where a template becomes a header, a redirect or the upstream request."""

    kind: str
    """``return``, ``rewrite``, ``add_header``, ``proxy_set_header`` or ``proxy_pass``."""
    tpl: m.Template
    site: _Site
    source: m.SourceSpan
    header: str = ""
    """Header name for add_header / proxy_set_header."""
    skip_numbered: bool = False
    """Numbered captures are escaped by nginx here (rewrite redirects)."""


def _uses(md: _Model) -> Iterator[_Use]:
    for lvl in md.levels:
        for i, st in enumerate(lvl.scope.rewrites):  # if bodies are levels of their own
            if isinstance(st, m.Return) and st.text is not None and \
                    (st.url_only or st.code in _REDIRECT_CODES):
                yield _Use("return", st.text, _Site(lvl, i), st.source)
            elif isinstance(st, m.Rewrite) and _is_redirect_rewrite(st):
                yield _Use("rewrite", st.replacement, _Site(lvl, i, _regex(st.pattern)), st.source,
                           skip_numbered=True)
        for h in lvl.scope.add_headers or ():
            yield _Use("add_header", h.value, _Site(lvl), h.source, header=h.name)
        for h in lvl.scope.proxy.set_headers or ():
            yield _Use("proxy_set_header", h.value, _Site(lvl), h.source, header=h.name)
        if lvl.scope.proxy_pass is not None:
            pp = lvl.scope.proxy_pass
            yield _Use("proxy_pass", pp.url, _Site(lvl), pp.source)


def _split_url(tpl: m.Template, md: _Model, site: _Site
               ) -> tuple[list[m.Lit | m.Var], list[m.Lit | m.Var]]:
    """Split a proxy_pass URL into its authority (host[:port]) and the rest (URI)."""
    parts: list[m.Lit | m.Var] = list(tpl.parts)
    i = 0
    for i, part in enumerate(parts):  # noqa: B007 - i is used after the loop
        if isinstance(part, m.Lit) and "://" in part.text:
            after = part.text.split("://", 1)[1]
            first: list[m.Lit | m.Var] = [m.Lit(text=after)] if after else []
            parts = first + parts[i + 1:]
            break
    else:
        return parts, []  # the whole URL comes from variables
    authority: list[m.Lit | m.Var] = []
    for j, part in enumerate(parts):
        if isinstance(part, m.Lit):
            if "/" in part.text:
                head, _, tail = part.text.partition("/")
                if head:
                    authority.append(m.Lit(text=head))
                return authority, [m.Lit(text="/" + tail)] + parts[j + 1:]
            authority.append(part)
        else:
            val = md.var(part.name, site)
            opaque = val.statics is None and not (val.controlled or val.dns)
            if authority and (val.slash or opaque):
                return authority, parts[j:]  # the variable starts (or may start) the URI
            authority.append(part)
    return authority, []


def _check_values(md: _Model) -> Iterator[Diagnostic]:
    for use in _uses(md):
        site = use.site
        skip = (lambda n: n.isdigit()) if use.skip_numbered else None
        val = md.template(use.tpl, site, skip)
        what = {"return": f'"return {_return_code(use)}{use.tpl.raw}"',
                "rewrite": f'rewrite to "{use.tpl.raw}"',
                "add_header": f'"add_header {use.header}"',
                "proxy_set_header": f'"proxy_set_header {use.header}"',
                "proxy_pass": f'"proxy_pass {use.tpl.raw}"'}[use.kind]
        directive = use.kind
        # 3. Host spoofing
        host_sink = use.kind in ("return", "rewrite", "proxy_pass") or (
            use.kind == "proxy_set_header" and use.header.lower() == "host")
        if host_sink and val.http_host:
            yield _diag("lint-host-spoofing", use.source, directive,
                        f"{what} uses $http_host, the Host header exactly as the client sent it "
                        f"(any name, any port). Use $host, which nginx checks and which falls "
                        f"back to the server name")
        if use.kind == "proxy_pass":
            authority, rest = _split_url(use.tpl, md, site)
            yield from _check_ssrf(md, use, authority, what)
            yield from _check_resolver(md, use, authority, what)
            uri = _EMPTY
            for part in rest:
                uri = _concat(uri, _lit(part.text) if isinstance(part, m.Lit)
                              else md.var(part.name, site))
            if uri.crlf:
                yield _splitting(use, what, uri.crlf, "the request line sent to the upstream")
            continue
        # 5. header splitting
        if val.crlf:
            target = {"return": "the Location header", "rewrite": "the Location header",
                      "add_header": f"the {use.header} response header",
                      "proxy_set_header": f"the {use.header} header sent to the upstream"}
            yield _splitting(use, what, val.crlf, target[use.kind])


def _return_code(use: _Use) -> str:
    for st in use.site.level.scope.rewrites:
        if isinstance(st, m.Return) and st.source == use.source and not st.url_only:
            return f"{st.code} "
    return ""


def _splitting(use: _Use, what: str, source: str, target: str) -> Diagnostic:
    if "$request_body" in source:
        why = "the request body can hold any byte, line breaks included"
        fix = "do not copy the body into headers"
    else:
        why = ("nginx percent-decodes the URI before matching and before filling $uri, so "
               "%0d%0a in the request becomes a line break")
        fix = ("use $request_uri, which stays percent-encoded" if "$uri" in source or
               "$document_uri" in source or "$fastcgi" in source or "$request_filename" in source
               else "capture with a class that cannot match a line break, e.g. ([^/\\s]+) or "
                    "(\\w+)")
    return _diag("lint-header-splitting", use.source, use.kind,
                 f"{what} writes {source} into {target}; {why}, which lets a client inject "
                 f"headers (CRLF injection, HTTP splitting). {fix[0].upper() + fix[1:]}")


def _check_ssrf(md: _Model, use: _Use, authority: list[m.Lit | m.Var], what: str
                ) -> Iterator[Diagnostic]:
    if _internal(use.site.level):
        return
    literal_host = "".join(p.text for p in authority if isinstance(p, m.Lit))
    only_vars = re.fullmatch(r"(:\d*)?", literal_host) is not None  # nothing fixed but a port
    for part in authority:
        if isinstance(part, m.Lit):
            continue
        val = md.var(part.name, use.site)
        if not val.controlled:
            continue
        if val.escapes or only_vars:
            yield _diag("lint-ssrf", use.source, "proxy_pass",
                        f"{what} takes the upstream host from {val.controlled}, which the client "
                        f"chooses: anyone can make nginx connect to any host (internal services, "
                        f"cloud metadata). Map allowed values to fixed upstreams with map/upstream "
                        f"and reject the rest, or mark the location internal")
            return


def _check_resolver(md: _Model, use: _Use, authority: list[m.Lit | m.Var], what: str
                    ) -> Iterator[Diagnostic]:
    pp = use.site.level.scope.proxy_pass
    if pp is None or not pp.has_variables or pp.unix_socket is not None:
        return
    if any(lv.scope.resolver is not None for lv in use.site.level.chain()):
        return
    host = _EMPTY
    for part in _host_parts(authority):
        host = _concat(host, _lit(part.text) if isinstance(part, m.Lit)
                       else md.var(part.name, use.site))
    if host.controlled or host.dns:
        yield _diag("lint-missing-resolver", use.source, "proxy_pass",
                    f"{what} takes the upstream host from "
                    f"{host.controlled or 'a host name variable'} at run time and no resolver "
                    f"is configured: nginx answers 502 ('no resolver defined') unless the value is "
                    f"an IP address or an upstream{{}} name. Add 'resolver <dns-ip>;' (http or "
                    f"server level) or proxy to an upstream{{}} block")
        return
    if host.statics is None:
        return  # a value Tern cannot follow (js_set, perl_set...): it may be an upstream name
    needs = sorted(h for h in (_hostname(v) for v in host.statics) if h is not None
                   and not _known_host(h, md))
    if needs:
        yield _diag("lint-missing-resolver", use.source, "proxy_pass",
                    f"{what} has variables, so nginx resolves \"{needs[0]}\" at run time, and no "
                    f"resolver is configured: requests fail with 502 ('no resolver defined'). Add "
                    f"'resolver <dns-ip>;', use an IP address, or define upstream "
                    f"{needs[0]} {{ server ...; }}")


def _host_parts(authority: list[m.Lit | m.Var]) -> list[m.Lit | m.Var]:
    """The host of an authority split into parts: everything before the port."""
    out: list[m.Lit | m.Var] = []
    bracket = False
    for part in authority:
        if isinstance(part, m.Var):
            out.append(part)
            continue
        text = part.text
        if not out and text.startswith("["):
            bracket = True
        if bracket:
            if "]" in text:
                out.append(m.Lit(text=text[: text.index("]") + 1]))
                return out
        elif ":" in text:
            out.append(m.Lit(text=text.split(":", 1)[0]))
            return out
        out.append(part)
    return out


def _hostname(authority: str) -> str | None:
    """Host of ``host[:port]`` (None for an empty or unix-socket authority)."""
    authority = authority.rsplit("@", 1)[-1]
    if not authority or authority.startswith("unix:"):
        return None
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.split(":", 1)[0]


def _known_host(host: str, md: _Model) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    return host.lower() in md.upstream_names or any(
        n.split(":", 1)[0] == host.lower() for n in md.upstream_names)


# -- 6. unanchored regexes in origin / referer checks --------------------------------------------

_ORIGIN_VARS = {"http_origin": "Origin", "http_referer": "Referer"}


def _regex_problems(rx: _Regex, *, kind: str) -> list[str]:
    """What lets a foreign origin/referer through ``rx``; ``kind`` is ``origin``, ``referer`` or
    ``valid_referers`` (nginx matches those after the scheme)."""
    if rx.items is None:
        return []
    skel = _skeleton(rx.items)
    host, look_alike = _example_host(skel)
    scheme = "" if kind == "valid_referers" else "https://"
    problems = []
    # an Origin is scheme://host[:port]: with the scheme in the regex nothing can precede it
    if not _anchored(rx.items, start=True) and not (kind == "origin" and "://" in skel):
        problems.append('it is not anchored at the start ("^"), so '
                        + (f"{scheme}evil-{host}" if kind != "referer"
                           else f"https://evil.example/?{host}") + " matches")
    if not _anchored(rx.items, start=False) and (
            kind == "origin" or not _path_bounded(skel, after_scheme=kind == "referer")):
        problems.append('it is not anchored at the end ("$"'
                        + (' or a "/" after the host' if kind != "origin" else "")
                        + f"), so {scheme}{host}.evil.example matches")
    dots = _unescaped_dots(rx.items)
    if dots:
        problems.append(f'{len(dots)} "." {"is" if len(dots) == 1 else "are"} not escaped and '
                        f"match{'es' if len(dots) == 1 else ''} any character, so "
                        f"{scheme}{look_alike} matches")
    return problems


def _example_host(skel: str) -> tuple[str, str]:
    """The host a check's regex is meant for (from its literal text), and a look-alike of it
    with the first unescaped dot replaced."""
    text = skel.split("://", 1)[1] if "://" in skel else skel
    runs = re.findall(r"[A-Za-z0-9.\-\0]+", text)
    best = max(runs, key=lambda r: len(r.replace("\0", "")), default="").strip("\0.")
    if not best:
        return "example.com", "example.com"
    return best.replace("\0", "."), best.replace("\0", "x", 1).replace("\0", ".")


def _anchored(items: list[Any], *, start: bool) -> bool:
    if not items:
        return False
    op, av = items[0] if start else items[-1]
    if op is _sc.AT:
        return av in (_BEGIN if start else _END)
    if op is _sc.SUBPATTERN:
        return _anchored(list(av[3]), start=start)
    if op is _sc.BRANCH:
        return all(_anchored(list(alt), start=start) for alt in av[1])
    return False


def _skeleton(items: list[Any]) -> str:
    out = []
    for op, av in items:
        if op is _LIT:
            out.append(chr(av))
        elif op is _sc.SUBPATTERN:
            out.append(_skeleton(list(av[3])))
        else:
            out.append("\0")
    return "".join(out)


def _path_bounded(skel: str, *, after_scheme: bool) -> bool:
    if after_scheme:
        at = skel.find("://")
        return at >= 0 and "/" in skel[at + 3:]
    return "/" in skel


def _unescaped_dots(items: list[Any]) -> list[str]:
    found: list[str] = []

    def walk(seq: list[Any]) -> None:
        for j, (op, av) in enumerate(seq):
            if op is _ANY and 0 < j < len(seq) - 1:
                before, after = seq[j - 1], seq[j + 1]
                if before[0] is _LIT and after[0] is _LIT and chr(before[1]).isalnum() \
                        and chr(after[1]).isalnum():
                    found.append(f'"{chr(before[1])}.{chr(after[1])}"')
            if op is _sc.SUBPATTERN:
                walk(list(av[3]))
            elif op in _REPEATS:
                walk(list(av[2]))
            elif op is _sc.BRANCH:
                for alt in av[1]:
                    walk(list(alt))

    walk(items)
    return found


def _check_origins(md: _Model) -> Iterator[Diagnostic]:
    def report(where: str, pattern: str, caseless: bool, kind: str, at: m.SourceSpan,
               directive: str) -> Iterator[Diagnostic]:
        problems = _regex_problems(_regex(pattern, caseless), kind=kind)
        if problems:
            yield _diag("lint-unanchored-regex", at, directive,
                        f"{where} checks the {kind.replace('_', ' ')} with \"{pattern}\", but "
                        + "; ".join(problems) + ". Anchor the whole value and escape the dots, "
                        + "e.g. " + ('"^https://(www\\.)?example\\.com$"' if kind == "origin" else
                                     '"^https://example\\.com/"' if kind == "referer" else
                                     '"~^(www\\.)?example\\.com/"'))

    for lvl in md.levels:
        for st in lvl.scope.rewrites:
            if not isinstance(st, m.If) or st.condition.pattern is None:
                continue
            cond = st.condition
            pattern = st.condition.pattern
            names = [v for v in cond.subject.variables if v in _ORIGIN_VARS]
            if not names:
                continue
            kind = "origin" if names[0] == "http_origin" else "referer"
            caseless = cond.op in (m.CondOp.MATCH_CI, m.CondOp.NOT_MATCH_CI)
            yield from report(f"if ({cond.subject.raw} {cond.op.value} ...)", pattern,
                              caseless, kind, st.source, "if")
        for raw in lvl.scope.other:
            if raw.name == "valid_referers":
                for arg in raw.args:
                    if arg.startswith("~"):
                        pat = arg[1:]
                        caseless = pat.startswith("*")
                        yield from report("valid_referers", pat[1:] if caseless else pat,
                                          True, "valid_referers", raw.source, "valid_referers")
    for mp in md.maps.values():
        names = [v for v in mp.source_value.variables if v in _ORIGIN_VARS]
        if not names:
            continue
        kind = "origin" if names[0] == "http_origin" else "referer"
        for entry in mp.entries:
            if entry.kind in (m.MapKeyKind.REGEX, m.MapKeyKind.REGEX_CI):
                yield from report(f"map {mp.source_value.raw} ${mp.variable}", entry.key,
                                  entry.kind is m.MapKeyKind.REGEX_CI, kind, entry.source, "map")


# -- 8. weak TLS ---------------------------------------------------------------------------------

_WEAK_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")
_CIPHER_CLASSES: dict[str, str] = {
    "NULL": "NULL (no encryption)", "ENULL": "NULL (no encryption)",
    "ANULL": "aNULL (no authentication)", "ADH": "aNULL (no authentication)",
    "AECDH": "aNULL (no authentication)", "EXPORT": "EXPORT", "EXP": "EXPORT",
    "EXPORT40": "EXPORT", "EXPORT56": "EXPORT", "LOW": "LOW", "RC4": "RC4", "DES": "DES",
    "3DES": "3DES", "MD5": "MD5", "RC2": "RC2",
}


def _cipher_classes(token: str) -> set[str]:
    """Weak classes a cipher-string token selects (keywords, or OpenSSL suite names)."""
    out = set()
    for part in token.split("+"):
        up = part.upper()
        if up in _CIPHER_CLASSES:
            out.add(_CIPHER_CLASSES[up])
            continue
        if "-" not in up:
            continue
        pieces = up.split("-")
        if "RC4" in pieces:
            out.add("RC4")
        if "NULL" in pieces:
            out.add(_CIPHER_CLASSES["NULL"])
        if pieces[0] in ("EXP", "EXP1024"):
            out.add("EXPORT")
        if pieces[0] in ("ADH", "AECDH"):
            out.add(_CIPHER_CLASSES["ANULL"])
        if "MD5" in pieces:
            out.add("MD5")
        if "CBC3" in pieces or "3DES" in pieces or "DES3" in pieces:
            out.add("3DES")
        elif "DES" in pieces:
            out.add("DES")
        if "RC2" in pieces:
            out.add("RC2")
    return out


def _weak_ciphers(spec: str) -> list[str]:
    tokens = [t for t in re.split(r"[:, ]+", spec) if t]
    removed: set[str] = set()
    for t in tokens:
        if t[0] in "!-":
            removed |= _cipher_classes(t[1:])
    enabled: list[str] = []
    for t in tokens:
        if t[0] in "!-+@":
            continue
        for cls in sorted(_cipher_classes(t)):
            if cls not in removed and cls not in enabled:
                enabled.append(cls)
    return enabled


def _check_tls(md: _Model) -> Iterator[Diagnostic]:
    for lvl in md.levels:
        tls = lvl.scope.tls
        if tls.protocols is not None:
            weak = [p for p in tls.protocols if p in _WEAK_PROTOCOLS]
            if weak:
                yield _diag("lint-weak-tls", md.line_of(lvl, "ssl_protocols"),
                            "ssl_protocols",
                            f"ssl_protocols enables {', '.join(weak)}: broken or deprecated "
                            f"(RFC 8996 deprecates TLS 1.0 and 1.1; SSLv3 falls to POODLE). Write "
                            f"'ssl_protocols TLSv1.2 TLSv1.3;'")
        if tls.ciphers is not None:
            weak = _weak_ciphers(tls.ciphers)
            if weak:
                yield _diag("lint-weak-tls", md.line_of(lvl, "ssl_ciphers"),
                            "ssl_ciphers",
                            f"ssl_ciphers enables {', '.join(weak)} cipher suites, which are "
                            f"broken or unauthenticated. Exclude them ('HIGH:!aNULL:!MD5' is "
                            f"nginx's default) or use an ECDHE+AEAD list such as Mozilla's "
                            f"intermediate profile")


# -- 9. if pitfalls --------------------------------------------------------------------------------

_SAFE_IN_IF = frozenset({"return", "rewrite", "set", "break"})
_FILE_TESTS = frozenset({m.CondOp.FILE, m.CondOp.NOT_FILE, m.CondOp.DIR, m.CondOp.NOT_DIR,
                         m.CondOp.EXISTS, m.CondOp.NOT_EXISTS})
_IF_HINTS = {
    "add_header": "when the condition holds, only the if block's headers are sent and the "
                  "location's own add_header lines are dropped; set a variable in the if (or use "
                  "map) and write one add_header with it",
    "proxy_pass": "the request is then handled by the if block's nameless location; choose the "
                  "upstream with map (or set a variable) and write one proxy_pass",
}


def _if_contents(md: _Model, node: m.If) -> list[tuple[str, m.SourceSpan]]:
    """Directives written in an if block, from the files when available, else from the model."""
    stmts = md.stmts(node.source, "if")
    if stmts is not None:
        return [(st.name, m.SourceSpan(file=st.file, line=st.line)) for st in stmts]
    sc = node.scope
    out: list[tuple[str, m.SourceSpan]] = [
        (type(st).__name__.lower().replace("setvar", "set"), st.source) for st in sc.rewrites]
    if sc.proxy_pass is not None:
        out.append(("proxy_pass", sc.proxy_pass.source))
    out += [("add_header", h.source) for h in sc.add_headers or ()]
    out += [("proxy_set_header", h.source) for h in sc.proxy.set_headers or ()]
    if sc.static.try_files is not None:
        out.append(("try_files", sc.static.try_files.source))
    if sc.static.root is not None:
        out.append(("alias" if sc.static.root.alias else "root", sc.static.root.source))
    out += [(r.action.value, r.source) for r in sc.access.rules or ()]
    out += [("access_log", a.source) for a in sc.logging.access_logs or ()]
    out += [(raw.name, raw.source) for raw in sc.other]
    return out


def _check_if(md: _Model) -> Iterator[Diagnostic]:
    for lvl in md.levels:
        if lvl.kind != "if" or lvl.node is None or lvl.parent is None:
            continue
        node = lvl.node
        cond = node.condition
        if cond.op in _FILE_TESTS and any(
                md.var(v, _Site(lvl.parent, lvl.index)).controlled
                for v in cond.subject.variables):
            yield _diag("lint-if-is-evil", node.source, "if",
                        f"if ({cond.op.value} {cond.subject.raw}) tests for the requested file "
                        f"by hand: try_files does this in one step (e.g. 'try_files $uri $uri/ "
                        f"@fallback;') without an if block")
        if lvl.parent.kind != "location":
            continue
        for name, at in _if_contents(md, node):
            if name in _SAFE_IN_IF:
                continue
            hint = _IF_HINTS.get(name, "move it out of the if, and pick values with map or set")
            yield _diag("lint-if-is-evil", at, name,
                        f'"{name}" inside "if" in a location: nginx turns the if block into a '
                        f"nameless location, and everything but the rewrite-module directives "
                        f"(return, rewrite, set, break) configures that location instead of "
                        f"adding to yours ('If is evil'); {hint}")


# -- 10. location shadowing ------------------------------------------------------------------------

_REGEX_MODS = (m.LocationModifier.REGEX, m.LocationModifier.REGEX_CI)


def _check_shadowing(md: _Model) -> Iterator[Diagnostic]:
    http = md.config.http
    if http is None:
        return
    for server in http.servers:
        yield from _shadow_level(server.locations, None)


def _shadow_level(locs: tuple[m.Location, ...], parent: m.Location | None
                  ) -> Iterator[Diagnostic]:
    regexes = [loc for loc in locs if loc.modifier in _REGEX_MODS]
    catch_all: m.Location | None = None
    for i, loc in enumerate(regexes):
        for earlier in regexes[:i]:
            if earlier.pattern == loc.pattern and (
                    earlier.modifier is loc.modifier
                    or earlier.modifier is m.LocationModifier.REGEX_CI):
                how = ("the same regex" if earlier.modifier is loc.modifier else
                       "the same regex, case-insensitively")
                yield _diag("lint-location-shadowing", loc.source, "location",
                            f"location {loc.match} can never match: location {earlier.match} "
                            f"({earlier.source}) has {how} and regex locations are tried in "
                            f"order, first match wins. Merge the two blocks")
                break
            if _regex(earlier.pattern, earlier.modifier is m.LocationModifier.REGEX_CI) \
                    .matches_every_uri():
                yield _diag("lint-location-shadowing", loc.source, "location",
                            f"location {loc.match} can never match: location {earlier.match} "
                            f"({earlier.source}) matches every URI and is tried first. Move "
                            f"the catch-all after the specific regexes, or make it a prefix "
                            f"location")
                break
        if catch_all is None and _regex(loc.pattern, loc.modifier is m.LocationModifier.REGEX_CI) \
                .matches_every_uri():
            catch_all = loc
    if catch_all is not None:
        for loc in locs:
            if loc.modifier is m.LocationModifier.PREFIX and not loc.locations:
                yield _diag("lint-location-shadowing", loc.source, "location",
                            f"location {loc.match} is never selected: after the longest prefix "
                            f"is found nginx tries the regex locations, and location "
                            f"{catch_all.match} ({catch_all.source}) matches every URI. Use "
                            f"'location ^~ {loc.pattern}' to stop the regex search, or narrow "
                            f"the regex")
    if parent is not None and parent.modifier in (m.LocationModifier.PREFIX,
                                                  m.LocationModifier.PREFIX_NO_REGEX):
        for loc in regexes:
            caseless = loc.modifier is m.LocationModifier.REGEX_CI
            rx = _regex(loc.pattern, caseless)
            if rx.caseless != bool(rx.flags & _sc.SRE_FLAG_IGNORECASE):
                continue
            lit = rx.literal_prefix()
            if not lit:
                continue
            a, b = (lit.lower(), parent.pattern.lower()) if caseless else (lit, parent.pattern)
            if not (a.startswith(b) or b.startswith(a)):
                yield _diag("lint-location-shadowing", loc.source, "location",
                            f"location {loc.match} can never match: it is nested in location "
                            f"{parent.match} ({parent.source}), so it is only tried for URIs "
                            f"starting with {parent.pattern}, and it requires URIs starting with "
                            f"{lit}. Move it out of {parent.match}")
    for loc in locs:
        if loc.locations:
            yield from _shadow_level(loc.locations, loc)


# ---------------------------------------------------------------------------------------------
# Entry point

_CHECKERS: tuple[tuple[frozenset[str], Callable[[_Model], Iterator[Diagnostic]]], ...] = (
    (frozenset({"lint-alias-traversal"}), _check_alias),
    (frozenset({"lint-add-header-redefinition"}), _check_add_header),
    (frozenset({"lint-host-spoofing", "lint-ssrf", "lint-header-splitting",
                "lint-missing-resolver"}), _check_values),
    (frozenset({"lint-unanchored-regex"}), _check_origins),
    (frozenset({"lint-weak-tls"}), _check_tls),
    (frozenset({"lint-if-is-evil"}), _check_if),
    (frozenset({"lint-location-shadowing"}), _check_shadowing),
)


@dataclass(slots=True)
class _Collector:
    only: Collection[str] | None
    seen: set[tuple[str, int, str]] = field(default_factory=set)
    out: list[Diagnostic] = field(default_factory=list)

    def add(self, d: Diagnostic) -> None:
        key = (d.file, d.line, d.code)
        if (self.only is None or d.code in self.only) and key not in self.seen:
            self.seen.add(key)
            self.out.append(d)


def lint(config: m.Config, *, only: Collection[str] | None = None) -> list[Diagnostic]:
    """Run the security and correctness checks on a translated configuration.

    Args:
        config: the model (``translate(path).config``); best on a model without ERROR
            diagnostics, as nginx would refuse the rest anyway.
        only: restrict to these codes (keys of ``CHECKS``); None runs every check.

    Returns:
        WARNING diagnostics with ``lint-*`` codes, one per directive and code, ordered by file
        (in the order the files were read) and line.

    Raises:
        ValueError: ``only`` names a code that is not in ``CHECKS``.
    """
    if only is not None:
        unknown = set(only) - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown lint code(s): {', '.join(sorted(unknown))}")
    md = _Model(config)
    col = _Collector(only)
    for codes, check in _CHECKERS:
        if only is None or codes & set(only):
            for d in check(md):
                col.add(d)
    order = {f: i for i, f in enumerate(config.files)}
    return sorted(col.out, key=lambda d: (order.get(d.file, len(order)), d.file, d.line, d.code))
