"""Inline SVG charts for the HTML report (no script, no external resources).

Every function takes plain JSON values from the report and returns markup-safe SVG text; all
text from the configuration or the traffic is escaped.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

__all__ = ["COLORS", "coverage_bar", "diff_rates", "latency", "score_ring"]

COLORS = {"supported": "#2f7d4a", "ignored": "#9aa5b1", "partial": "#d89614",
          "unsupported": "#c2372f", "nginx": "#5b6b7a", "tern": "#2563b0"}
_FONT = "font-family=\"-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif\""


def _t(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start",
       fill: str = "#334155", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}" font-weight="{weight}" {_FONT}>{escape(text)}</text>')


def score_ring(score: int, verdict: str) -> Markup:
    """A ring filled to ``score`` percent, coloured by verdict."""
    color = {"ready": COLORS["supported"], "review": COLORS["partial"],
             "blocked": COLORS["unsupported"]}.get(verdict, "#64748b")
    r = 52
    circ = 2 * 3.14159265 * r
    filled = circ * max(0, min(100, score)) / 100
    return Markup(
        f'<svg class="ring" width="128" height="128" viewBox="0 0 128 128" role="img" '
        f'aria-label="readiness score {score} of 100">'
        f'<circle cx="64" cy="64" r="{r}" fill="none" stroke="#e2e8f0" stroke-width="12"/>'
        f'<circle cx="64" cy="64" r="{r}" fill="none" stroke="{color}" stroke-width="12" '
        f'stroke-linecap="round" stroke-dasharray="{filled:.1f} {circ:.1f}" '
        f'transform="rotate(-90 64 64)"/>'
        + _t(64, 72, str(score), size=30, anchor="middle", fill="#0f172a", weight="700")
        + _t(64, 90, "/ 100", size=11, anchor="middle", fill="#64748b")
        + "</svg>")


def coverage_bar(coverage: dict[str, Any]) -> Markup:
    """One 100% stacked bar of directive occurrences per support level, with a legend."""
    width, height = 1000, 64
    total = coverage["total"] or 1
    x = 0.0
    parts = []
    order = ("supported", "ignored", "partial", "unsupported")
    for level in order:
        n = coverage["counts"].get(level, 0)
        w = width * n / total
        if w > 0:
            parts.append(f'<rect x="{x:.1f}" y="6" width="{w:.1f}" height="26" '
                         f'fill="{COLORS[level]}"><title>{level}: {n}</title></rect>')
        x += w
    legend = []
    lx = 0.0
    for level in order:
        n = coverage["counts"].get(level, 0)
        share = coverage["shares"].get(level, 0.0)
        legend.append(f'<rect x="{lx:.1f}" y="44" width="12" height="12" rx="2" '
                      f'fill="{COLORS[level]}"/>')
        legend.append(_t(lx + 18, 54.5, f"{level} {n} ({100 * share:.1f}%)", size=13))
        lx += 210
    return Markup(
        f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="directive coverage by support level">'
        f'<rect x="0" y="6" width="{width}" height="26" fill="#eef2f6"/>'
        + "".join(parts) + "".join(legend) + "</svg>")


def _label(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_rates(routes: list[dict[str, Any]], limit: int = 14) -> Markup:
    """Horizontal bars: share of differing answers per route (worst first)."""
    rows = sorted(routes, key=lambda r: (-r["rate"], r["route"]))[:limit]
    label_w, bar_w, row_h = 420, 440, 22
    height = row_h * len(rows) + 24
    out = [f'<svg class="chart" width="100%" viewBox="0 0 {label_w + bar_w + 90} {height}" '
           f'role="img" aria-label="difference rate per route">']
    for i, r in enumerate(rows):
        y = 4 + i * row_h
        w = bar_w * r["rate"]
        color = COLORS["unsupported"] if r["rate"] > 0 else COLORS["supported"]
        out.append(_t(label_w - 8, y + 14, _label(r["route"]), size=11, anchor="end"))
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="14" '
                   f'fill="#eef2f6"/>')
        if w > 0:
            out.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 2):.1f}" height="14" '
                       f'fill="{color}"><title>{escape(r["route"])}: {r["differing"]} of '
                       f'{r["exchanges"]}</title></rect>')
        out.append(_t(label_w + bar_w + 8, y + 14,
                      f"{100 * r['rate']:.0f}%  ({r['differing']}/{r['exchanges']})", size=11))
    y = height - 6
    out.append(_t(label_w, y, "0%", size=10, fill="#64748b"))
    out.append(_t(label_w + bar_w, y, "100%", size=10, anchor="end", fill="#64748b"))
    out.append("</svg>")
    return Markup("".join(out))


def latency(routes: list[dict[str, Any]], limit: int = 14) -> Markup:
    """Paired bars per route: median latency of the primary (nginx) and candidate (Tern)."""
    rows = [r for r in routes
            if r["primary_ms"]["p50"] is not None or r["candidate_ms"]["p50"] is not None]
    rows = sorted(rows, key=lambda r: -(r["candidate_ms"]["p50"] or 0))[:limit]
    top = max([v for r in rows for v in (r["primary_ms"]["p50"], r["candidate_ms"]["p50"])
               if v is not None] or [1.0]) or 1.0
    label_w, bar_w, row_h = 420, 440, 30
    height = row_h * len(rows) + 30
    out = [f'<svg class="chart" width="100%" viewBox="0 0 {label_w + bar_w + 90} {height}" '
           f'role="img" aria-label="median latency, nginx vs Tern, per route">']
    for i, r in enumerate(rows):
        y = 4 + i * row_h
        out.append(_t(label_w - 8, y + 15, _label(r["route"]), size=11, anchor="end"))
        for j, (side, key) in enumerate((("nginx", "primary_ms"), ("tern", "candidate_ms"))):
            v = r[key]["p50"]
            if v is None:
                continue
            w = bar_w * v / top
            out.append(f'<rect x="{label_w}" y="{y + 3 + j * 12}" width="{max(w, 1.5):.1f}" '
                       f'height="10" fill="{COLORS[side]}"><title>{side} p50 {v:.2f} ms'
                       f'</title></rect>')
            out.append(_t(label_w + max(w, 1.5) + 6, y + 12 + j * 12, f"{v:.1f} ms", size=10,
                          fill="#475569"))
    y = height - 8
    out.append(f'<rect x="{label_w}" y="{y - 9}" width="10" height="10" '
               f'fill="{COLORS["nginx"]}"/>')
    out.append(_t(label_w + 14, y, "nginx (primary) p50", size=11))
    out.append(f'<rect x="{label_w + 160}" y="{y - 9}" width="10" height="10" '
               f'fill="{COLORS["tern"]}"/>')
    out.append(_t(label_w + 174, y, "Tern (candidate) p50", size=11))
    out.append("</svg>")
    return Markup("".join(out))
