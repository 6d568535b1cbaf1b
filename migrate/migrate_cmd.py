"""``tern report`` and ``tern migrate`` (click).

``tern report CONFIG [--store FILE]`` builds the readiness report (:mod:`migrate.report`) from
the config and, optionally, a shadow/replay store. ``tern migrate CONFIG -o DIR`` is the main
job: translate, check, lint, generate a request set from the config
(:mod:`migrate.requestgen`), compare nginx and Tern on it with ``tern compare``'s machinery
(:class:`migrate.compare.Comparison`) when nginx is installed, keep the answers in a store of
the same format ``tern diffs`` reads, and write the report as HTML, JSON and Markdown.

Exit codes (both commands): 0 no blocking item (verdict ``ready`` or ``review``), 1 blocking
items or a threshold exceeded, 2 bad input (unreadable or invalid config, missing store, store
from a newer Tern, bad option); on exit 2 no report is written.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import click

from .diagnostics import Level
from .frontend import translate
from .report import (
    EXIT_BAD_INPUT,
    FAIL_ON,
    Comparison,
    Report,
    ReportError,
    build,
    render,
    write_atomic,
)

__all__ = ["migrate_cmd", "report_cmd"]

MIGRATE_CANDIDATE = "{python} -m migrate.cli serve {config} -p {prefix} --allow-unsupported"
"""The candidate for ``tern migrate``: unsupported directives are run (and show up as
differences) instead of refusing to start."""

STORE_NAME = "tern-migrate.sqlite"
REQUESTS_NAME = "requests.jsonl"


def _fail(message: str) -> None:
    click.echo(f"tern: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _analysis(config: str, prefix: str | None) -> Any:
    """Translate ``config``; exit 2 with the errors when it cannot be read or is invalid."""
    if not os.path.exists(config):
        _fail(f"{config}: no such file")
    if os.path.isdir(config):
        _fail(f"{config}: is a directory, not a configuration file")
    analysis = translate(config, prefix)
    errors = [d for d in analysis.diagnostics if d.level is Level.ERROR]
    if errors:
        for d in errors:
            click.echo(d.format(), err=True)
        _fail(f"{config}: {len(errors)} configuration error(s); no report written")
    return analysis


def _max_rate(value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be a fraction between 0 and 1 (0.05 = 5%)",
                                 param_hint="--max-diff-rate")
    return value


def _summary_line(report: Report) -> str:
    return (f"verdict: {report.verdict}  score: {report.score}/100  "
            f"blocking: {len(report.blocking)}")


_fail_on_opt = click.option(
    "--fail-on", "fail_on", multiple=True, type=click.Choice(FAIL_ON),
    help="Categories that block (repeatable; default: unsupported). 'lint': any lint finding; "
         "'diffs': any route whose answers differ.")
_max_rate_opt = click.option(
    "--max-diff-rate", type=float, default=None,
    help="Block when the share of differing answers exceeds this fraction (e.g. 0.01).")


@click.command("report")
@click.argument("config", type=click.Path(path_type=str))
@click.option("-p", "--prefix", type=click.Path(file_okay=False, path_type=str), default=None,
              help="nginx prefix (-p) for relative paths; default: the config's directory.")
@click.option("--store", type=click.Path(path_type=str), default=None,
              help="A shadow/replay/migrate store (SQLite) with compared traffic.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the report here (atomically) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default=None,
              help="Output format; default: from the -o suffix (.html/.md/.json), else md.")
@_max_rate_opt
@_fail_on_opt
def report_cmd(config: str, prefix: str | None, store: str | None, output: str | None,
               fmt: str | None, max_diff_rate: float | None, fail_on: tuple[str, ...]) -> None:
    """Migration readiness report for CONFIG (and the traffic in --store): score, verdict,
    blocking items, coverage, lint, per-route differences and latency (docs/report.md).

    Exit 0 no blocking item, 1 blocking items or threshold exceeded, 2 bad input.
    """
    max_diff_rate = _max_rate(max_diff_rate)
    if fmt is None:
        ext = os.path.splitext(output or "")[1].lower()
        fmt = {".html": "html", ".htm": "html", ".json": "json"}.get(ext, "md")
    analysis = _analysis(config, prefix)
    try:
        report = build(analysis, store=store, fail_on=fail_on or ("unsupported",),
                       max_diff_rate=max_diff_rate)
    except ReportError as exc:
        _fail(f"{exc}; no report written")
        return
    text = render(report, fmt)
    if output:
        try:
            write_atomic(output, text)
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror}")
        click.echo(f"report: {os.path.abspath(output)}", err=True)
        click.echo(_summary_line(report), err=True)
    else:
        click.echo(text, nl=False)
    sys.exit(report.exit_code)


# --------------------------------------------------------------------------------------------
# tern migrate


@dataclass
class _Timings:
    """Milliseconds per (side, tag), recorded around each exchange."""

    ms: dict[tuple[str, str], float] = field(default_factory=dict)


def _timed_comparison(**kwargs: Any) -> Any:
    """A :class:`migrate.compare.Comparison` whose exchanges are timed (send + upstream record
    collection, as the client saw it)."""
    from .compare import Comparison as Runner

    timings = _Timings()

    class Timed(Runner):
        def exchange(self, side: Any, listen: Any, spec: Any, tag: str) -> Any:
            t0 = time.perf_counter()
            try:
                return super().exchange(side, listen, spec, tag)
            finally:
                timings.ms[(side.name, tag)] = (time.perf_counter() - t0) * 1000.0

    return Timed(**kwargs), timings


def _best(timings: _Timings, side: str, tag: str) -> float | None:
    """The lower of the two sends of one request to one side (the first send to a freshly
    started side also pays for its warm-up)."""
    values = [v for v in (timings.ms.get((side, tag)), timings.ms.get((side, tag + "-again")))
              if v is not None]
    return min(values) if values else None


def _hdrs(headers: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)


def _store_outcomes(path: str, outcomes: list[Any], timings: _Timings, nonce_of: dict[int, str],
                    config: Any, learn_noise: bool) -> None:
    """Write compare outcomes into a new store (the format ``tern diffs`` reads)."""
    from shadow.noise import route_key
    from shadow.store import DiffRow, ExchangeRow, Store

    from .shadow_cmd import attributor

    attribute_by_port: dict[int, Any] = {}
    store = Store(path, create=True)
    try:
        store.set_meta({"source": "tern migrate", "config": config.main_file,
                        "primary": "nginx", "candidate": "tern serve",
                        "started": str(time.time())})
        for o in outcomes:
            spec = o.spec
            attribute = attribute_by_port.get(o.port)
            if attribute is None:
                attribute = attribute_by_port[o.port] = attributor(config, o.port)
            where = attribute(spec.method, spec.host, spec.target)
            tag = nonce_of.get(o.index, "")
            _, path_part = route_key(spec.method, spec.target).split(" ", 1)
            row = ExchangeRow(
                source="compare", route=f"{spec.method} {spec.host or '-'}:{o.port}{path_part}",
                method=spec.method, host=spec.host or "", target=spec.target,
                request_headers=spec.headers, request_body=spec.body,
                primary_status=o.primary.status, candidate_status=o.candidate.status,
                primary_error=o.primary.error, candidate_error=o.candidate.error,
                primary_ms=_best(timings, "nginx", tag),
                candidate_ms=_best(timings, "tern", tag),
                primary_headers=_hdrs(o.primary.headers),
                candidate_headers=_hdrs(o.candidate.headers),
                primary_body=o.primary.body, candidate_body=o.candidate.body,
                server=where.server if where else None,
                location=where.location if where else None,
                location_source=where.location_source if where else None)
            diffs = [DiffRow(field=d.field, primary=d.primary, candidate=d.candidate,
                             verdict="difference") for d in o.differences]
            diffs += [DiffRow(field=d.field, primary=d.primary, candidate=d.candidate,
                              verdict="noise") for d in o.noise]
            store.add(row, diffs, learned=[d.field for d in o.noise],
                      compared_primaries=learn_noise)
    finally:
        store.close()


def _run_comparison(config: str, prefix: str | None, analysis: Any, requests: Any,
                    store_path: str, nginx_bin: str, timeout: float,
                    log: Any) -> tuple[str, str]:
    """Compare nginx and Tern on the generated requests; ``(status, reason)``. What the
    comparison warns about (e.g. upstreams it cannot redirect) goes to ``log``."""
    from .compare import CompareError
    from .report import nginx_version

    if nginx_version(nginx_bin) is None:
        return "skipped", f"nginx is not installed ({nginx_bin} not found)"
    if not requests.requests:
        return "skipped", "the configuration defines no HTTP server to send requests to"
    runner, timings = _timed_comparison(
        config=config, prefix=prefix, candidate_config=None, candidate_cmd=MIGRATE_CANDIDATE,
        nginx=nginx_bin, timeout=timeout, start_timeout=15.0, keep=False, log=log)
    try:
        runner.setup()
        specs = [g.spec for g in requests.requests]
        outcomes = runner.run(specs, learn_noise=True)
    except CompareError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        return "failed", " / ".join(lines[:6]) or "setup error"
    finally:
        runner.close()
    # Comparison.run tags request i "<nonce>-<i>" (and "<nonce>-<i>-again" for the noise run)
    nonce_of: dict[int, str] = {}
    for (side, tag) in timings.ms:
        head, _, idx = tag.rpartition("-")
        if side == "nginx" and idx.isdigit():
            nonce_of[int(idx)] = tag
    _store_outcomes(store_path, outcomes, timings, nonce_of, analysis.config, True)
    same = sum(1 for o in outcomes if o.same)
    return "ran", f"{len(outcomes)} request(s): {same} same, {len(outcomes) - same} differ"


@click.command("migrate")
@click.argument("config", type=click.Path(path_type=str))
@click.option("-p", "--prefix", type=click.Path(file_okay=False, path_type=str), default=None,
              help="nginx prefix (-p) for relative paths; default: the config's directory.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=str),
              default="tern-report", show_default=True,
              help="Directory for report.html, report.json, report.md, the request set and "
                   "the store.")
@click.option("--nginx", "nginx_bin", default="/usr/sbin/nginx", show_default=True,
              help="The nginx binary to compare against (skipped when absent).")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds per request of the comparison.")
@_max_rate_opt
@_fail_on_opt
def migrate_cmd(config: str, prefix: str | None, out_dir: str, nginx_bin: str, timeout: float,
                max_diff_rate: float | None, fail_on: tuple[str, ...]) -> None:
    """The main job: translate, check, lint, compare nginx and Tern on requests generated from
    CONFIG (when nginx is installed), and write the readiness report into DIR.

    Exit 0 no blocking item, 1 blocking items or threshold exceeded, 2 bad input.
    """
    from .requestgen import generate

    max_diff_rate = _max_rate(max_diff_rate)

    warnings: list[str] = []

    def log(message: str) -> None:
        click.echo(message, err=True)
        if message.startswith("tern compare: "):
            warnings.append(message.removeprefix("tern compare: ").replace(
                os.path.dirname(os.path.abspath(config)) + os.sep, ""))

    analysis = _analysis(config, prefix)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot create {out_dir}: {exc.strerror}")
    requests = generate(analysis.config)
    work = tempfile.mkdtemp(prefix=".tern-migrate-", dir=out_dir)
    try:
        req_tmp = os.path.join(work, REQUESTS_NAME)
        with open(req_tmp, "w", encoding="utf-8") as fh:
            fh.write(requests.to_jsonl())
        store_tmp = os.path.join(work, STORE_NAME)
        log(f"tern migrate: {len(requests.requests)} request(s) generated from the config")
        status, reason = _run_comparison(config, prefix, analysis, requests, store_tmp,
                                         nginx_bin, timeout, log)
        log(f"tern migrate: comparison {status}: {reason}")
        store_final = os.path.join(out_dir, STORE_NAME)
        req_final = os.path.join(out_dir, REQUESTS_NAME)
        comparison = Comparison(status=status, reason=reason if status != "ran" else "",
                                requests=len(requests.requests),
                                notes=tuple(requests.notes) + tuple(warnings),
                                request_file=os.path.abspath(req_final))
        # the store and the request set are complete: move them into place, then the reports
        if status == "ran":
            for suffix in ("", "-wal", "-shm"):
                with _quiet():
                    os.unlink(store_final + suffix)
            os.replace(store_tmp, store_final)
        os.replace(req_tmp, req_final)
        try:
            report = build(analysis, store=os.path.abspath(store_final) if status == "ran"
                           else None, fail_on=fail_on or ("unsupported",),
                           max_diff_rate=max_diff_rate, comparison=comparison, nginx=nginx_bin)
        except ReportError as exc:
            _fail(f"{exc}; no report written")
            return
        texts = {fmt: render(report, fmt) for fmt in ("html", "json", "md")}
        paths = {}
        for fmt, text in texts.items():
            paths[fmt] = os.path.abspath(os.path.join(out_dir, f"report.{fmt}"))
            write_atomic(paths[fmt], text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    click.echo(f"report:   {paths['html']}")
    click.echo(f"          {paths['json']}")
    click.echo(f"          {paths['md']}")
    if status == "ran":
        click.echo(f"store:    {os.path.abspath(store_final)}  (tern diffs --store ...)")
    else:
        click.echo(f"compare:  {status}: {reason}")
    click.echo(_summary_line(report))
    sys.exit(report.exit_code)


def _quiet() -> Any:
    import contextlib

    return contextlib.suppress(OSError)
