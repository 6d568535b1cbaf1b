"""One call from a path to a checked model: load, infer fragment context, analyse."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from proxy.model import Support

from .analyze import Analysis, Analyzer
from .diagnostics import Diagnostic, Level
from .directives import lookup
from .gaps import serve_gaps
from .dirspec import Ctx
from .loader import Stmt, load


@dataclass(slots=True)
class Coverage:
    """Counts of directive occurrences per support level."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        """All accepted occurrences."""
        return sum(self.counts.values())

    def share(self, level: Support) -> float:
        """Fraction of occurrences at ``level`` (0 when there are none)."""
        return self.counts.get(level.value, 0) / self.total if self.total else 0.0


def coverage(analysis: Analysis) -> Coverage:
    """Count the census by support level (every level present, possibly 0)."""
    c = Counter(e.support.value for e in analysis.census)
    return Coverage(counts={lvl.value: c.get(lvl.value, 0) for lvl in Support})


def _wrap(stmts: list[Stmt], names: tuple[str, ...]) -> list[Stmt]:
    first = stmts[0]
    out = stmts
    for name in reversed(names):
        out = [Stmt(name, (), (), first.file, 0, block=out)]
    return out


def _fragment_context(stmts: list[Stmt]) -> tuple[str, ...]:
    """Which blocks a fragment file implicitly sits in: (), ("http",), ("http", "server")..."""
    names = {s.name for s in stmts}
    if not stmts or names & {"http", "events", "stream", "mail"}:
        return ()
    specs = [spec for st in stmts
             if (spec := lookup(st.name)) is not None and Ctx.MAIN not in spec.contexts]
    # the outermost level where every directive of the file is allowed (a server-level snippet
    # such as "root ...; location ... {}" must not be read at http level)
    for ctx, wrap in ((Ctx.HTTP, ("http",)), (Ctx.SERVER, ("http", "server")),
                      (Ctx.LOCATION, ("http", "server", "location"))):
        if specs and all(ctx in spec.contexts for spec in specs):
            return wrap
    votes: Counter[str] = Counter()
    for spec in specs:
        for ctx, wrap in ((Ctx.HTTP, "http"), (Ctx.SERVER, "server"), (Ctx.LOCATION, "location")):
            if ctx in spec.contexts:
                votes[wrap] += 1
                break
    if not votes:
        return ()
    best = votes.most_common(1)[0][0]
    if best == "http":
        return ("http",)
    if best == "server":
        return ("http", "server")
    return ("http", "server", "location")


def translate(path: str, prefix: str | None = None, *, fragment: bool = True) -> Analysis:
    """Load and analyse a configuration.

    Args:
        path: main file or ``nginx -T`` dump.
        prefix: nginx ``-p`` prefix.
        fragment: when the file is clearly a fragment (e.g. only ``server`` blocks, as in
            ``conf.d/*.conf``), analyse it inside the blocks it belongs in and say so.

    Returns:
        The analysis (model, diagnostics, census). Never raises for bad input.
    """
    tree = load(path, prefix)
    note: Diagnostic | None = None
    if fragment and tree.stmts:
        wrap = _fragment_context(tree.stmts)
        if wrap:
            if wrap[-1] == "location":
                tree.stmts = _wrap(tree.stmts, ("http", "server"))
                tree.stmts[0].block[0].block = [  # type: ignore[index]
                    Stmt("location", ("/",), (False,), tree.main_file, 0,
                         block=tree.stmts[0].block[0].block)]  # type: ignore[index]
            else:
                tree.stmts = _wrap(tree.stmts, wrap)
            note = Diagnostic(file=tree.main_file, line=0, level=Level.INFO, code="fragment",
                              message="file has no main context; read as the contents of "
                              + " > ".join(f"{w} {{}}" for w in wrap))
    analysis = Analyzer(tree, fragment=note is not None).run()
    if note is not None:
        analysis.diagnostics.insert(0, note)
    if not analysis.has_errors:
        analysis.diagnostics.extend(serve_gaps(analysis.config))
    return analysis
