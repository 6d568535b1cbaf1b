"""Migration readiness report: one findings model, rendered as HTML, Markdown and JSON.

Rules of this module (docs/report.md is the user's version):

1. :func:`build` computes everything; the renderers only format. The numbers come from the same
   functions the other commands use: coverage from :func:`migrate.frontend.coverage` (``tern
   check``), lint from :func:`migrate.lint.lint` (``tern lint``), traffic from
   :meth:`shadow.store.Store.summary` (``tern diffs``), so they always agree.
2. The JSON form is versioned (:data:`SCHEMA_VERSION`); a field is never renamed or given a new
   meaning without a new version.
3. Bad input (missing store, a store from a newer Tern, an unreadable or invalid config) is a
   :class:`ReportError`: the commands print it and exit 2, and no report is written.
4. Reports are written atomically (temporary file in the same directory, then rename), so a
   report on disk is always complete.
5. The HTML is one self-contained file: inline CSS, inline SVG, no script, no network.

Score and verdict (also in docs/report.md):

- ``coverage = (supported + ignored + partial / 2) / total`` directive occurrences
  (unsupported count 0); ``equal = 1 - difference rate`` of the compared traffic (1 when no
  traffic was measured); ``lint = 1 - min(0.2, 0.02 * lint findings)``;
  ``score = round(100 * coverage * equal * lint)``.
- Blocking items are the findings of a gated category: ``unsupported`` (default), ``lint``,
  ``diffs`` (``--fail-on``), and the ``threshold`` item when the difference rate exceeds
  ``--max-diff-rate``.
- Verdict: ``blocked`` when a blocking item exists (exit 1); else ``review`` when anything
  needs a look (partial directives, lint findings, differences, traffic not measured);
  else ``ready``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.model import Support

from .analyze import Analysis
from .diagnostics import Diagnostic, Level
from .frontend import coverage

__all__ = ["FAIL_ON", "FORMATS", "SCHEMA_VERSION", "Blocking", "Comparison", "Report",
           "ReportError", "build", "nginx_version", "render", "tern_version", "write_atomic"]

SCHEMA_VERSION = 1
"""Version of the JSON report (docs/report.md)."""

FAIL_ON = ("unsupported", "lint", "diffs")
"""Categories ``--fail-on`` can gate on."""

FORMATS = ("html", "md", "json")

EXIT_READY = 0
EXIT_BLOCKED = 1
EXIT_BAD_INPUT = 2


class ReportError(Exception):
    """Input the report cannot be built from (exit 2, nothing written)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocking:
    """One item that stops the cut-over."""

    category: str
    """``unsupported``, ``lint``, ``diffs`` or ``threshold``."""
    file: str
    """Where to look (a config file, or the store for ``threshold``)."""
    line: int
    """1-based line; 0 when a whole file is concerned."""
    title: str
    """What is wrong."""
    action: str
    """What to do."""

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "file": self.file, "line": self.line,
                "title": self.title, "action": self.action}


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """What ``tern migrate`` did about comparing nginx and Tern (None for ``tern report``)."""

    status: str
    """``ran``, ``skipped`` (nginx not installed) or ``failed`` (setup error)."""
    reason: str = ""
    """Why it was skipped or failed."""
    requests: int = 0
    """Generated requests."""
    notes: tuple[str, ...] = ()
    """Places of the config the generated requests do not exercise."""
    request_file: str = ""
    """The generated request set (JSON Lines, usable with ``tern compare --requests``)."""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "requests": self.requests,
                "notes": list(self.notes), "request_file": self.request_file}


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The findings model (its JSON form is :meth:`to_json`, documented in docs/report.md)."""

    generated_at: str
    tern_version: str
    nginx_version: str | None
    config: str
    files: tuple[str, ...]
    score: int
    verdict: str
    reasons: tuple[str, ...]
    """Why the verdict is not ``ready`` (empty when it is)."""
    exit_code: int
    fail_on: tuple[str, ...]
    max_diff_rate: float | None
    blocking: tuple[Blocking, ...]
    coverage: dict[str, Any]
    directives: dict[str, dict[str, Any]]
    findings: tuple[Diagnostic, ...]
    """Findings of the translation (unsupported, partial, info)."""
    lint: tuple[Diagnostic, ...]
    traffic: dict[str, Any] | None
    """``tern diffs``'s summary of the store plus ``window``, ``latency``, ``source``."""
    comparison: Comparison | None
    servers: tuple[dict[str, Any], ...]
    score_parts: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "tern-report",
            "generated_at": self.generated_at,
            "tern_version": self.tern_version,
            "nginx_version": self.nginx_version,
            "config": self.config,
            "files": list(self.files),
            "score": self.score,
            "score_parts": self.score_parts,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "exit_code": self.exit_code,
            "gates": {"fail_on": list(self.fail_on), "max_diff_rate": self.max_diff_rate},
            "blocking": [b.to_json() for b in self.blocking],
            "coverage": self.coverage,
            "directives": self.directives,
            "findings": [d.to_json() for d in self.findings],
            "lint": [d.to_json() for d in self.lint],
            "traffic": self.traffic,
            "comparison": self.comparison.to_json() if self.comparison else None,
            "servers": list(self.servers),
        }


# --------------------------------------------------------------------------------------------
# facts about the environment


def tern_version() -> str:
    """The installed Tern's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tern")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "unknown"


def nginx_version(binary: str = "nginx") -> str | None:
    """``1.22.1`` when nginx is installed (PATH or /usr/sbin), else None."""
    path = shutil.which(binary) or (binary if os.path.isabs(binary) else None)
    if path is None and os.path.exists("/usr/sbin/nginx"):
        path = "/usr/sbin/nginx"
    if path is None or not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10,
                             errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"nginx/(\S+)", out.stderr + out.stdout)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# the store (read through shadow.store: its schema and version checks)


def _percentiles(values: Iterable[float | None]) -> dict[str, float | None]:
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return {"p50": None, "p99": None}
    if len(vs) == 1:
        return {"p50": round(vs[0], 3), "p99": round(vs[0], 3)}
    q = statistics.quantiles(vs, n=100, method="inclusive")
    return {"p50": round(q[49], 3), "p99": round(q[98], 3)}


def read_store(path: str) -> dict[str, Any]:
    """``tern diffs``'s summary of the store at ``path``, plus the traffic window, overall
    latency and per-location rows.

    Raises:
        ReportError: missing, not a Tern store, or written by a newer Tern.
    """
    from shadow.store import Store, StoreError

    if not os.path.isfile(path):
        raise ReportError(f"{path}: no such store")
    try:
        store = Store(path, create=False)
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    try:
        summary = store.summary(examples=3)
        db = store.db
        start, end, sources = db.execute(
            "SELECT MIN(ts), MAX(ts), GROUP_CONCAT(DISTINCT source) FROM exchanges").fetchone()
        lat = db.execute("SELECT primary_ms, candidate_ms FROM exchanges").fetchall()
        locations: dict[str, dict[str, Any]] = {}
        for (src, n, dif) in db.execute(
                "SELECT location_source, COUNT(*), SUM(differences > 0)"
                " FROM exchanges WHERE location_source IS NOT NULL"
                " GROUP BY location_source"):
            row = locations.setdefault(src, {"requests": 0, "differing": 0, "examples": []})
            row["requests"] += int(n)
            row["differing"] += int(dif or 0)
        for src, row in locations.items():
            for (method, host, target, ps, cs, d, xid) in db.execute(
                    "SELECT method, host, target, primary_status, candidate_status, differences,"
                    " id FROM exchanges WHERE location_source = ?"
                    " ORDER BY differences > 0 DESC, id LIMIT 3", (src,)):
                diffs = [{"field": f, "nginx": _clip(pv), "tern": _clip(cv)}
                         for f, pv, cv in db.execute(
                             "SELECT field, primary_value, candidate_value FROM differences"
                             " WHERE exchange_id = ? AND verdict = 'difference' ORDER BY id"
                             " LIMIT 3", (xid,))]
                row["examples"].append({"method": method, "host": host, "target": target,
                                        "primary_status": ps, "candidate_status": cs,
                                        "differences": int(d),
                                        "fields": [x["field"] for x in diffs],
                                        "diffs": diffs})
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{path}: cannot read the store ({exc})") from None
    finally:
        store.close()
    summary["source"] = sources or ""
    summary["window"] = {"start": _iso(start), "end": _iso(end)}
    summary["latency"] = {"primary_ms": _percentiles(r[0] for r in lat),
                          "candidate_ms": _percentiles(r[1] for r in lat)}
    summary["locations"] = locations
    return summary


def _clip(value: str | None, limit: int = 240) -> str:
    text = value or ""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# building the model


def _per_location_directives(analysis: Analysis) -> dict[str, dict[str, int]]:
    """``file:line`` of each server/location -> directive occurrences per support level (its
    own directives, not those of nested locations)."""
    from .loader import load

    census = {(e.file, e.line, e.name): e.support.value for e in analysis.census}
    out: dict[str, dict[str, int]] = {}
    tree = load(analysis.config.main_file, analysis.config.prefix)

    def walk(stmts: Sequence[Any], owner: str | None) -> None:
        for st in stmts:
            here = owner
            if st.name in ("server", "location") and st.block is not None:
                here = f"{st.file}:{st.line}"
                out.setdefault(here, {lvl.value: 0 for lvl in Support})
            if owner is not None and here == owner:
                level = census.get((st.file, st.line, st.name))
                if level is not None:
                    out[owner][level] += 1
            if st.block is not None:
                walk(st.block, here)

    walk(tree.stmts, None)
    return out


def _servers(analysis: Analysis, traffic: dict[str, Any] | None) -> list[dict[str, Any]]:
    from proxy import model as m

    per = _per_location_directives(analysis)
    locs_traffic: dict[str, dict[str, Any]] = traffic["locations"] if traffic else {}
    zero = {lvl.value: 0 for lvl in Support}
    rows: list[dict[str, Any]] = []
    servers = analysis.config.http.servers if analysis.config.http else ()

    def walk(locations: Sequence[m.Location], depth: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for loc in locations:
            key = f"{loc.source.file}:{loc.source.line}"
            t = locs_traffic.get(key, {})
            out.append({"match": loc.match, "file": loc.source.file, "line": loc.source.line,
                        "depth": depth, "directives": per.get(key, dict(zero)),
                        "requests": t.get("requests", 0), "differing": t.get("differing", 0),
                        "examples": t.get("examples", [])})
            out.extend(walk(loc.locations, depth + 1))
        return out

    for s in servers:
        key = f"{s.source.file}:{s.source.line}"
        locs = walk(s.locations, 0)
        rows.append({
            "names": [n.value for n in s.names],
            "file": s.source.file, "line": s.source.line,
            "listens": [f"{ln.address}:{ln.port}" if ln.address else str(ln.port)
                        for ln in s.listens],
            "directives": per.get(key, dict(zero)),
            "requests": sum(r["requests"] for r in locs),
            "differing": sum(r["differing"] for r in locs),
            "locations": locs})
    return rows


def _coverage_json(counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    return {"total": total, "counts": counts,
            "shares": {k: (round(v / total, 4) if total else 0.0) for k, v in counts.items()}}


def build(analysis: Analysis, *, store: str | None = None,
          fail_on: Sequence[str] = ("unsupported",), max_diff_rate: float | None = None,
          comparison: Comparison | None = None, nginx: str | None = None,
          now: _dt.datetime | None = None) -> Report:
    """The findings model for ``analysis`` (and the traffic in ``store``).

    Raises:
        ReportError: the configuration has errors, or the store cannot be used.
    """
    from .lint import lint

    errors = [d for d in analysis.diagnostics if d.level is Level.ERROR]
    if errors:
        raise ReportError("the configuration has errors (nginx would refuse it):\n"
                          + "\n".join(d.format() for d in errors))
    traffic = read_store(store) if store is not None else None
    cov = coverage(analysis)
    per_directive: dict[str, dict[str, Any]] = {}
    for e in analysis.census:
        row = per_directive.setdefault(e.name, {"support": e.support.value, "count": 0})
        row["count"] += 1
    lint_findings = tuple(lint(analysis.config))
    gates = tuple(dict.fromkeys(fail_on))

    blocking: list[Blocking] = []
    if "unsupported" in gates:
        for d in analysis.diagnostics:
            if d.level is Level.UNSUPPORTED:
                blocking.append(Blocking(
                    category="unsupported", file=d.file, line=d.line,
                    title=d.message,
                    action=f"Tern cannot run `{d.directive}` yet: remove it or replace it with a "
                           "supported equivalent (docs/differences.md), or keep this server "
                           "on nginx until it is supported."))
    if "lint" in gates:
        for d in lint_findings:
            blocking.append(Blocking(category="lint", file=d.file, line=d.line,
                                     title=f"{d.code}: {d.directive}", action=d.message))
    totals = traffic["totals"] if traffic else None
    if traffic and "diffs" in gates:
        for r in traffic["routes"]:
            if not r["differing"]:
                continue
            ex = next((e for e in r["examples"] if e["differences"]), None)
            where = (ex or {}).get("location_source") or ""
            file, _, line = where.rpartition(":")
            fields = ", ".join(f["field"] for f in r["top_fields"][:3])
            blocking.append(Blocking(
                category="diffs", file=file or traffic["store"],
                line=int(line) if line.isdigit() else 0,
                title=f"{r['route']}: {r['differing']} of {r['exchanges']} answer(s) differ "
                      f"({fields})",
                action=f"Compare the answers with `tern diffs --store {traffic['store']}`; fix "
                       "the config or record the difference as accepted."))
    if totals is not None and max_diff_rate is not None and totals["rate"] > max_diff_rate:
        blocking.append(Blocking(
            category="threshold", file=traffic["store"] if traffic else "", line=0,
            title=f"difference rate {totals['rate']:.2%} exceeds --max-diff-rate "
                  f"{max_diff_rate:.2%} ({totals['differing']} of {totals['exchanges']} "
                  "answers differ)",
            action="Fix the routes with the highest difference rate first (table below)."))

    total = cov.total
    counts = cov.counts
    cov_part = ((counts.get("supported", 0) + counts.get("ignored", 0)
                 + counts.get("partial", 0) / 2) / total) if total else 1.0
    equal = 1.0 - (totals["rate"] if totals and totals["exchanges"] else 0.0)
    lint_part = 1.0 - min(0.2, 0.02 * len(lint_findings))
    score = round(100 * cov_part * equal * lint_part)

    reasons: list[str] = []
    if counts.get("unsupported", 0):
        reasons.append(f"{counts['unsupported']} unsupported directive occurrence(s)")
    if counts.get("partial", 0):
        reasons.append(f"{counts['partial']} directive occurrence(s) run with a stated "
                       "difference (partial)")
    if lint_findings:
        reasons.append(f"{len(lint_findings)} lint finding(s)")
    if totals is not None and totals["differing"]:
        reasons.append(f"{totals['differing']} of {totals['exchanges']} compared answers differ")
    if comparison is not None and comparison.status != "ran":
        reasons.append(f"nginx and Tern were not compared: {comparison.reason}")
    elif traffic is None or not (totals and totals["exchanges"]):
        reasons.append("no traffic compared (no store given, or it is empty)")
    if blocking:
        verdict = "blocked"
    elif reasons:
        verdict = "review"
    else:
        verdict = "ready"
    when = (now or _dt.datetime.now(_dt.UTC)).isoformat(timespec="seconds")
    diag_findings = tuple(d for d in analysis.diagnostics if d.level is not Level.ERROR)
    return Report(
        generated_at=when, tern_version=tern_version(), nginx_version=nginx_version(
            nginx or "nginx"),
        config=analysis.config.main_file, files=tuple(analysis.config.files),
        score=score, verdict=verdict, reasons=tuple(reasons),
        exit_code=EXIT_BLOCKED if blocking else EXIT_READY, fail_on=gates,
        max_diff_rate=max_diff_rate, blocking=tuple(blocking),
        coverage=_coverage_json(dict(counts)), directives=dict(sorted(per_directive.items())),
        findings=diag_findings, lint=lint_findings, traffic=traffic, comparison=comparison,
        servers=tuple(_servers(analysis, traffic)),
        score_parts={"coverage": round(cov_part, 4), "equal": round(equal, 4),
                     "lint": round(lint_part, 4)})


# --------------------------------------------------------------------------------------------
# rendering


def render(report: Report, fmt: str) -> str:
    """The report as ``html``, ``md`` or ``json`` text."""
    doc = report.to_json()
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    from . import report_charts as charts

    env = _env()
    base = os.path.dirname(report.config)
    template = env.get_template("report.html.j2" if fmt == "html" else "report.md.j2")
    return str(template.render(r=doc, base=base, charts=charts, fmt=fmt))


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("migrate", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)

    def rel(path: str, base: str) -> str:
        if not path:
            return ""
        try:
            r = os.path.relpath(path, base)
        except ValueError:
            return path
        return path if r.startswith("../..") else r

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f} ms"

    def short(text: str, base: str) -> str:
        """Paths under the config's directory written relative to it, in free text."""
        return text.replace(base.rstrip("/") + "/", "") if base else text

    env.filters["rel"] = rel
    env.filters["short"] = short
    env.filters["pct"] = pct
    env.filters["ms"] = ms
    env.filters["mdcell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory (rule 4)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tern-report-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)
