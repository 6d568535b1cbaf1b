"""Read an nginx configuration tree into statements: files, includes, ``nginx -T`` dumps.

Rules:

1. Relative ``include`` paths resolve against the directory of the main file (nginx's conf prefix);
   when ``prefix`` is given and the file is not there, against the prefix too.
2. Globs expand in sorted order (nginx's ``glob()``); a glob that matches nothing is not an error,
   a plain path that does not exist is (nginx: ``open() ... failed``).
3. An ``nginx -T`` dump (``# configuration file PATH:`` headers) is a set of virtual files; includes
   resolve against it, never the local disk.
4. Problems are collected as ``Diagnostic``s with file:line; reading never raises for bad input.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass, field

from .diagnostics import Diagnostic, Level
from .lexer import LexError, Token, TokenKind, tokenize

MAX_INCLUDE_DEPTH = 32


@dataclass(slots=True)
class Stmt:
    """One directive occurrence, with its block (``None`` for simple directives)."""

    name: str
    args: tuple[str, ...]
    quoted: tuple[bool, ...]
    file: str
    line: int
    block: list[Stmt] | None = None
    arg_lines: tuple[int, ...] = ()
    """Line of each argument (to point at a missing ``;``)."""
    included_from: tuple[str, int] | None = None
    """For statements spliced in by ``include``: the include directive's file and line."""


@dataclass(slots=True)
class Tree:
    """A loaded configuration."""

    main_file: str
    prefix: str
    stmts: list[Stmt]
    files: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    includes: list[Stmt] = field(default_factory=list)
    """The ``include`` directives themselves (they are replaced by what they include)."""


_DUMP_HEADER = re.compile(r"^# configuration file (.+):\s*$", re.M)


def split_dump(text: str) -> dict[str, str] | None:
    """Split ``nginx -T`` output into ``{path: text}``, or None if ``text`` is not such a dump.

    Lines before the first ``# configuration file`` header (nginx's "syntax is ok" messages when
    stderr was captured too) are skipped.
    """
    headers = list(_DUMP_HEADER.finditer(text))
    if not headers:
        return None
    files: dict[str, str] = {}
    for idx, m in enumerate(headers):
        start = m.end() + 1
        end = headers[idx + 1].start() if idx + 1 < len(headers) else len(text)
        body = text[start:end]
        # nginx -T adds one blank line after each file
        if body.endswith("\n\n"):
            body = body[:-1]
        files.setdefault(m.group(1), body)
    return files


class _Reader:
    def __init__(self, prefix: str, virtual: dict[str, str] | None) -> None:
        self.prefix = prefix
        self.virtual = virtual
        self.files: list[str] = []
        self.diagnostics: list[Diagnostic] = []
        self.includes: list[Stmt] = []
        self.cycles: set[tuple[str, int, str]] = set()

    def error(self, file: str, line: int, message: str, code: str) -> None:
        self.diagnostics.append(Diagnostic(file=file, line=line, level=Level.ERROR, code=code,
                                           message=message))

    # -- files ------------------------------------------------------------------------------

    def read_text(self, path: str) -> str | None:
        if self.virtual is not None:
            return self.virtual.get(path)
        with open(path, "rb") as fh:
            data = fh.read()
        return data.decode("utf-8", errors="surrogateescape")

    def exists(self, path: str) -> bool:
        if self.virtual is not None:
            return path in self.virtual
        return os.path.isfile(path)

    def expand(self, pattern: str) -> list[str]:
        if self.virtual is not None:
            return sorted(p for p in self.virtual if fnmatch.fnmatchcase(p, pattern))
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))

    # -- parsing ----------------------------------------------------------------------------

    def load(self, path: str, stack: tuple[str, ...], origin: tuple[str, int] | None
             ) -> list[Stmt]:
        """Read ``path``; ``stack`` holds the files being read around it (outermost first)."""
        try:
            text = self.read_text(path)
        except OSError as exc:
            file, line = origin or (path, 0)
            self.error(file, line, f'cannot read "{path}": {exc.strerror}', "file-unreadable")
            return []
        if text is None:
            file, line = origin or (path, 0)
            self.error(file, line, f'included file "{path}" is not in the dump', "include-missing")
            return []
        if path not in self.files:
            self.files.append(path)
        if "\x00" in text:
            self.error(path, text.count("\n", 0, text.index("\x00")) + 1,
                       "binary data (NUL byte): this is not an nginx configuration file",
                       "syntax")
            return []
        try:
            tokens = tokenize(text)
        except LexError as exc:
            self.error(path, exc.line, exc.message, "syntax")
            return []
        stmts, pos, err = self.parse(tokens, 0, path, top=True)
        if err is not None:
            self.error(path, err[1], err[0], "syntax")
        return self.splice(stmts, (*stack, path))

    def parse(self, tokens: list[Token], pos: int, path: str, *, top: bool
              ) -> tuple[list[Stmt], int, tuple[str, int] | None]:
        """Build statements from tokens; stops at ``}`` (block) or end (top level)."""
        out: list[Stmt] = []
        n = len(tokens)
        while pos < n:
            tok = tokens[pos]
            if tok.kind is TokenKind.CLOSE:
                if top:
                    return out, pos + 1, ('unexpected "}"', tok.line)
                return out, pos + 1, None
            if tok.kind is not TokenKind.WORD:
                return out, pos, (f'unexpected "{tok.value}"', tok.line)
            words = [tok]
            pos += 1
            while pos < n and tokens[pos].kind is TokenKind.WORD:
                words.append(tokens[pos])
                pos += 1
            name = tok.value
            args = tuple(w.value for w in words[1:])
            quoted = tuple(w.quoted for w in words[1:])
            arg_lines = tuple(w.line for w in words[1:])
            if pos >= n:
                return out, pos, ('unexpected end of file, expecting ";" or "}"', words[-1].line)
            end = tokens[pos]
            if end.kind is TokenKind.SEMICOLON:
                out.append(Stmt(name, args, quoted, path, tok.line, arg_lines=arg_lines))
                pos += 1
                continue
            if end.kind is TokenKind.OPEN:
                stmt = Stmt(name, args, quoted, path, tok.line, block=[], arg_lines=arg_lines)
                out.append(stmt)
                inner, pos, err = self.parse(tokens, pos + 1, path, top=False)
                stmt.block = inner
                if err is not None:
                    return out, pos, err
                if pos > n or tokens[pos - 1].kind is not TokenKind.CLOSE:
                    return out, pos, ('unexpected end of file, expecting "}"', tokens[-1].line)
                continue
            # a CLOSE right after words: missing ";"
            return out, pos, ('unexpected "}"', end.line)
        if not top:
            last = tokens[-1].line if tokens else 1
            return out, pos + 1, ('unexpected end of file, expecting "}"', last)
        return out, pos, None

    def splice(self, stmts: list[Stmt], stack: tuple[str, ...]) -> list[Stmt]:
        out: list[Stmt] = []
        for st in stmts:
            if st.name == "include" and st.block is None:
                self.includes.append(st)
                if len(st.args) != 1:
                    self.error(st.file, st.line,
                               'invalid number of arguments in "include" directive', "arity")
                    continue
                out.extend(self.include(st, stack))
                continue
            if st.block is not None:
                st.block = self.splice(st.block, stack)
            out.append(st)
        return out

    def resolve(self, target: str, from_file: str) -> list[str]:
        candidates = [target]
        if not os.path.isabs(target):
            base = os.path.dirname(self.main_file)
            candidates = [os.path.normpath(os.path.join(base, target))]
            if self.prefix and os.path.normpath(self.prefix) != base:
                candidates.append(os.path.normpath(os.path.join(self.prefix, target)))
        return candidates

    def include(self, st: Stmt, stack: tuple[str, ...]) -> list[Stmt]:
        if len(stack) > MAX_INCLUDE_DEPTH:
            self.error(st.file, st.line, "include nesting too deep (cycle?)", "include-cycle")
            return []
        target = st.args[0]
        is_glob = any(c in target for c in "*?[")
        found: list[str] = []
        for cand in self.resolve(target, st.file):
            found = self.expand(cand) if is_glob else ([cand] if self.exists(cand) else [])
            if found:
                break
        if not found:
            if not is_glob:
                self.error(st.file, st.line, f'include "{target}": no such file', "include-missing")
            return []
        out: list[Stmt] = []
        for path in found:
            if path in stack:
                # nginx itself recurses until its stack overflows; report the cycle once per
                # include line instead (a glob that matches its own file would otherwise
                # re-read the tree exponentially often)
                key = (st.file, st.line, path)
                if key not in self.cycles:
                    self.cycles.add(key)
                    self.error(st.file, st.line, f'include cycle: "{path}" includes itself '
                               "(directly or through other includes)", "include-cycle")
                continue
            for inc in self.load(path, stack, (st.file, st.line)):
                if inc.included_from is None:
                    inc.included_from = (st.file, st.line)
                out.append(inc)
        return out

    main_file: str = ""


def load(path: str, prefix: str | None = None) -> Tree:
    """Load a configuration file (or an ``nginx -T`` dump) with its includes.

    Args:
        path: main configuration file, or a file holding ``nginx -T`` output.
        prefix: nginx's ``-p`` prefix; defaults to the main file's directory.

    Returns:
        The tree, with diagnostics for anything that could not be read or parsed.
    """
    abspath = os.path.abspath(path)
    virtual: dict[str, str] | None = None
    main = abspath
    try:
        with open(abspath, "rb") as fh:
            head = fh.read()
    except OSError as exc:
        tree = Tree(main_file=abspath, prefix=prefix or os.path.dirname(abspath), stmts=[])
        tree.diagnostics.append(Diagnostic(file=abspath, line=0, level=Level.ERROR,
                                           code="file-unreadable",
                                           message=f"cannot read configuration: {exc.strerror}"))
        return tree
    text = head.decode("utf-8", errors="surrogateescape")
    dump = split_dump(text) if b"\x00" not in head else None
    if dump:
        virtual = dump
        main = next(iter(dump))
    base_prefix = os.path.abspath(prefix) if prefix else os.path.dirname(main)
    reader = _Reader(base_prefix, virtual)
    reader.main_file = main
    stmts = reader.load(main, (), None)
    return Tree(main_file=main, prefix=base_prefix, stmts=stmts, files=reader.files,
                diagnostics=reader.diagnostics, includes=reader.includes)
