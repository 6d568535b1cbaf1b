"""The ``tern`` command line.

Exit codes (stable, documented in docs/cli.md):

- 0: success (for ``check``: no unsupported directives and no errors);
- 1: the configuration is valid but Tern cannot run all of it (``translate --strict``,
  ``check``), or the question had a negative answer;
- 2: a configuration error (syntax, missing include, bad argument, unknown directive) or bad
  usage.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit

import click

from proxy.model import Location, Server, Support, to_json

from .diagnostics import LEVEL_ORDER, Diagnostic, Level
from .frontend import Coverage, coverage, translate

EXIT_OK = 0
EXIT_UNSUPPORTED = 1
EXIT_CONFIG_ERROR = 2


def _print_diagnostics(diags: list[Diagnostic], *, min_level: Level = Level.INFO) -> None:
    for d in diags:
        if LEVEL_ORDER[d.level] <= LEVEL_ORDER[min_level]:
            click.echo(d.format(), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tern")
def main() -> None:
    """Tern: take a team off nginx without surprises."""


_config_arg = click.argument("config", type=click.Path(dir_okay=False, path_type=str))
_prefix_opt = click.option("-p", "--prefix", type=click.Path(file_okay=False, path_type=str),
                           default=None,
                           help="nginx prefix (-p) for relative paths; default: the config's "
                                "directory.")


@main.command("translate")
@_config_arg
@_prefix_opt
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the model JSON here instead of stdout.")
@click.option("--strict", is_flag=True, help="Exit 1 when unsupported directives are present.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors on stderr.")
def translate_cmd(config: str, prefix: str | None, output: str | None, strict: bool,
                  quiet: bool) -> None:
    """Translate CONFIG (nginx.conf or `nginx -T` output) into Tern's model JSON."""
    analysis = translate(config, prefix)
    _print_diagnostics(analysis.diagnostics, min_level=Level.ERROR if quiet else Level.INFO)
    if analysis.has_errors:
        n = sum(1 for d in analysis.diagnostics if d.level is Level.ERROR)
        click.echo(f"tern: {n} configuration error(s); no model written", err=True)
        sys.exit(EXIT_CONFIG_ERROR)
    # a config that is not valid UTF-8 was read with surrogateescape: write its bytes back as read
    data = to_json(analysis.config).encode("utf-8", errors="surrogateescape")
    if output:
        tmp = output + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, output)
    else:
        click.echo(data, nl=False)
    if strict and any(d.level is Level.UNSUPPORTED for d in analysis.diagnostics):
        sys.exit(EXIT_UNSUPPORTED)


def _coverage_json(cov: Coverage) -> dict[str, Any]:
    return {
        "total": cov.total,
        "counts": cov.counts,
        "shares": {k: (round(v / cov.total, 4) if cov.total else 0.0)
                   for k, v in cov.counts.items()},
    }


@main.command("check")
@click.argument("configs", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=str))
@_prefix_opt
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def check_cmd(configs: tuple[str, ...], prefix: str | None, fmt: str) -> None:
    """Report directive coverage and every finding for CONFIG.

    With several CONFIG files (e.g. a whole corpus), print one line per file and the share of
    directive occurrences at each support level over all of them.

    Exit 0 when Tern can run everything, 1 when unsupported directives are present, 2 on
    configuration errors (with several files: the worst of them).
    """
    if len(configs) > 1:
        _check_many(configs, prefix, fmt)
    config = configs[0]
    analysis = translate(config, prefix)
    cov = coverage(analysis)
    per_directive: dict[str, dict[str, Any]] = {}
    for e in analysis.census:
        row = per_directive.setdefault(e.name, {"support": e.support.value, "count": 0})
        row["count"] += 1
    errors = sum(1 for d in analysis.diagnostics if d.level is Level.ERROR)
    unsupported = sum(1 for d in analysis.diagnostics if d.level is Level.UNSUPPORTED)
    code = EXIT_CONFIG_ERROR if errors else (EXIT_UNSUPPORTED if unsupported else EXIT_OK)
    if fmt == "json":
        doc = {
            "schema_version": 1,
            "config": analysis.config.main_file,
            "files": list(analysis.config.files),
            "coverage": _coverage_json(cov),
            "directives": dict(sorted(per_directive.items())),
            "findings": [d.to_json() for d in analysis.diagnostics],
            "summary": {"errors": errors, "unsupported": unsupported,
                        "partial": sum(1 for d in analysis.diagnostics
                                       if d.level is Level.PARTIAL),
                        "exit_code": code},
        }
        click.echo(json.dumps(doc, indent=2))
        sys.exit(code)
    click.echo(f"config: {analysis.config.main_file} ({len(analysis.config.files)} files)")
    click.echo(f"directives: {cov.total}")
    for level, n in cov.counts.items():
        share = 100.0 * n / cov.total if cov.total else 0.0
        click.echo(f"  {level:<12} {n:>6}  {share:5.1f}%")
    if analysis.diagnostics:
        click.echo("findings:")
        for d in sorted(analysis.diagnostics, key=lambda d: LEVEL_ORDER[d.level]):
            click.echo(f"  {d.format()}")
    verdict = {EXIT_OK: "no blocking findings: every directive is supported, partial or ignored",
               EXIT_UNSUPPORTED: f"blocked: {unsupported} unsupported directive occurrence(s)",
               EXIT_CONFIG_ERROR: f"invalid: {errors} configuration error(s)"}[code]
    click.echo(verdict)
    sys.exit(code)


def _check_many(configs: tuple[str, ...], prefix: str | None, fmt: str) -> None:
    """``tern check A B C...``: a line per file and the aggregate coverage."""
    total: dict[str, int] = {lvl.value: 0 for lvl in Support}
    rows = []
    worst = EXIT_OK
    for config in configs:
        analysis = translate(config, prefix)
        cov = coverage(analysis)
        for k, v in cov.counts.items():
            total[k] += v
        errors = sum(1 for d in analysis.diagnostics if d.level is Level.ERROR)
        unsupported = sum(1 for d in analysis.diagnostics if d.level is Level.UNSUPPORTED)
        code = EXIT_CONFIG_ERROR if errors else (EXIT_UNSUPPORTED if unsupported else EXIT_OK)
        worst = max(worst, code)
        rows.append({"config": analysis.config.main_file, "coverage": _coverage_json(cov),
                     "summary": {"errors": errors, "unsupported": unsupported,
                                 "exit_code": code}})
    agg = Coverage(counts=total)
    if fmt == "json":
        click.echo(json.dumps({"schema_version": 1, "configs": rows,
                               "coverage": _coverage_json(agg),
                               "summary": {"files": len(rows), "exit_code": worst}}, indent=2))
        sys.exit(worst)
    for row in rows:
        summ = row["summary"]
        click.echo(f"{row['config']}: {row['coverage']['total']} directives, "
                   f"{summ['errors']} error(s), {summ['unsupported']} unsupported")
    click.echo(f"files: {len(rows)}  directives: {agg.total}")
    for level, n in agg.counts.items():
        share = 100.0 * n / agg.total if agg.total else 0.0
        click.echo(f"  {level:<12} {n:>6}  {share:5.1f}%")
    sys.exit(worst)


@main.command("lint")
@_config_arg
@_prefix_opt
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def lint_cmd(config: str, prefix: str | None, fmt: str) -> None:
    """Security and correctness lint of CONFIG (see docs/lint.md).

    Exit 0 when clean, 1 when there are findings, 2 on configuration errors.
    """
    from .lint import lint

    analysis = translate(config, prefix)
    if analysis.has_errors:
        _print_diagnostics(analysis.diagnostics, min_level=Level.ERROR)
        sys.exit(EXIT_CONFIG_ERROR)
    findings = lint(analysis.config)
    if fmt == "json":
        click.echo(json.dumps({"schema_version": 1, "config": analysis.config.main_file,
                               "findings": [d.to_json() for d in findings]}, indent=2))
    else:
        for d in findings:
            click.echo(d.format())
        click.echo(f"{len(findings)} finding(s)")
    sys.exit(EXIT_UNSUPPORTED if findings else EXIT_OK)


def _server_json(server: Server | None) -> dict[str, Any] | None:
    if server is None:
        return None
    return {"file": server.source.file, "line": server.source.line,
            "names": [n.value for n in server.names]}


def _location_json(loc: Location | None) -> dict[str, Any] | None:
    if loc is None:
        return None
    return {"file": loc.source.file, "line": loc.source.line, "match": loc.match}


@main.command("route")
@_config_arg
@click.argument("url")
@_prefix_opt
@click.option("-X", "--method", default="GET", show_default=True, help="Request method.")
@click.option("-H", "--header", "headers", multiple=True,
              help="Request header 'Name: value' (Host here names the virtual host).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def route_cmd(config: str, url: str, prefix: str | None, method: str, headers: tuple[str, ...],
              as_json: bool) -> None:
    """Explain which server and location answer URL under CONFIG, and why.

    The URL's address and port pick the listening socket (as a connection to them would);
    a Host header given with -H is matched against server_name, else the URL's host.
    """
    from proxy.interp import Interpreter, RouteRequest

    analysis = translate(config, prefix)
    if analysis.has_errors:
        _print_diagnostics(analysis.diagnostics, min_level=Level.ERROR)
        sys.exit(EXIT_CONFIG_ERROR)
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise click.UsageError(f"URL scheme must be http or https: {url}")
    hdrs: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep:
            raise click.UsageError(f"header must be 'Name: value': {h!r}")
        hdrs[name.strip().lower()] = value.strip()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise click.UsageError(f"invalid port in {url}") from None
    host_addr = parts.hostname or "127.0.0.1"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    raw_netloc_host = parts.netloc.rsplit("@", 1)[-1]
    req = RouteRequest(method=method.upper(), target=target,
                       host=hdrs.pop("host", raw_netloc_host), headers=hdrs,
                       scheme=parts.scheme, local_addr=_resolve_local(host_addr),
                       local_port=port)
    result = Interpreter(analysis.config, prefix=prefix).route(req)
    doc = {
        "request": {"method": req.method, "url": url, "host": req.host, "uri": result.uri},
        "server": _server_json(result.server),
        "server_reason": result.server_reason,
        "location": _location_json(result.location),
        "location_reason": result.location_reason,
        "first_location": _location_json(result.first_location),
        "redirects": [
            {"kind": r["kind"], "uri": r["uri"],
             "from": _location_json(r["from"])}  # type: ignore[arg-type]
            for r in result.redirects
        ],
        "status": result.status,
        "redirect_to": result.redirect_to,
        "body": result.body,
        "proxy_pass": result.proxy_url,
        "upstream_uri": result.upstream_uri,
        "steps": [{"kind": s.kind, "detail": s.detail, "uri": s.uri} for s in result.steps],
        "unknown_variables": sorted(result.unknown_variables),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if result.server is None:
        click.echo(f"no server listens on {req.local_addr}:{req.local_port}")
        sys.exit(EXIT_UNSUPPORTED)
    s = result.server
    names = " ".join(n.value for n in s.names) or '""'
    click.echo(f"server   {s.source}  [{names}]  ({result.server_reason})")
    for step in result.steps:
        click.echo(f"  {step.kind:<10} {step.detail}" + (f"   uri={step.uri}" if step.uri else ""))
    if result.location is not None:
        click.echo(f"location {result.location.source}  {result.location.match}")
    else:
        click.echo("location (none)")
    if result.proxy_url:
        sent = f" as {result.upstream_uri}" if result.upstream_uri else ""
        click.echo(f"answer   proxied to {result.proxy_url}{sent}")
    elif result.status is not None:
        extra = f" -> {result.redirect_to}" if result.redirect_to else ""
        click.echo(f"answer   {result.status}{extra}")


def _resolve_local(host: str) -> str:
    """The local address a connection to ``host`` would arrive on (names -> 127.0.0.1)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return "127.0.0.1"


def _register() -> None:
    from .compare import compare_cmd
    from .migrate_cmd import migrate_cmd, report_cmd
    from .serve import serve_cmd
    from .shadow_cmd import diffs_cmd, replay_cmd, shadow_cmd

    for cmd in (serve_cmd, compare_cmd, shadow_cmd, replay_cmd, diffs_cmd, report_cmd,
                migrate_cmd):
        main.add_command(cmd)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
