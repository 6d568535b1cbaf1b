"""The ``tern shadow``, ``tern replay`` and ``tern diffs`` commands (click).

The lead registers them in :mod:`migrate.cli` (``main.add_command(shadow_cmd)`` etc.). This layer
reads ``--config`` with :func:`migrate.frontend.translate` and hands :mod:`shadow` a plain
callable for attribution, so ``shadow/`` never imports ``migrate``.

Exit codes: 0 done (``diffs``: also when differences exist; they are data), 2 bad usage, a store
that cannot be used (missing, newer schema), a config or rules file with errors, an unreadable
replay source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import sys
import time
from typing import Any

import click

from proxy.accesslog import COMBINED
from proxy.interp import Interpreter, RouteRequest
from proxy.model import Config, LogFormat
from proxy.routing import BadRequest
from shadow.mirror import (
    Analyzer,
    AnalyzerProcess,
    Attribution,
    Attributor,
    ShadowOptions,
    ShadowProxy,
    make_upstream_tls,
    server_tls,
)
from shadow.noise import BROTLI, NoiseModel
from shadow.replay import ReplaySummary, SourceError, read_source, replay
from shadow.rules import Rules, RulesError, load_rules
from shadow.store import Store, StoreError

from .frontend import translate

__all__ = ["attributor", "diffs_cmd", "replay_cmd", "shadow_cmd"]

EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"tern: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _load_config(path: str) -> Config:
    analysis = translate(path)
    if analysis.has_errors:
        for d in analysis.diagnostics:
            click.echo(d.format(), err=True)
        _fail(f"{path}: configuration has errors")
    return analysis.config


def attributor(config: Config, port: int | None = None) -> Attributor:
    """A callable naming the server and location ``config`` chooses for a request.

    ``port`` is the listen port (as written in ``config``) the mirrored traffic arrives on. When
    it is not given or not in the config, each request is routed on the first socket with a
    server whose ``server_name`` matches its Host (else the first socket): a Host names its
    virtual server, whichever port the shadow proxy fronts.
    """
    interp = Interpreter(config)
    interp.explain = False
    router = interp.router
    sockets = [key for key in router.sockets if not key[0].startswith("quic:")]
    fixed = [key for key in sockets if key[1] == port] if port is not None else []

    def local(key: tuple[str, int]) -> tuple[str, int]:
        addr = key[0]
        return ("127.0.0.1" if addr in ("*", "[::]") else addr.strip("[]")), key[1]

    def socket_for(host: str | None) -> tuple[str, int]:
        if fixed:
            return local(fixed[0])
        for key in sockets:
            try:
                match = router.select_server(router.sockets[key], host)
            except BadRequest:
                continue
            if not match.reason.startswith("no name matched"):
                return local(key)
        return local(sockets[0]) if sockets else ("127.0.0.1", 80)

    def attribute(method: str, host: str | None, target: str) -> Attribution | None:
        addr, lport = socket_for(host)
        res = interp.route(RouteRequest(method=method, target=target, host=host,
                                        local_addr=addr, local_port=lport))
        if res.server is None:
            return None
        names = ",".join(n.value for n in res.server.names) or '""'
        loc = res.location or res.first_location
        return Attribution(
            server=f"{names} ({res.server.source.file}:{res.server.source.line})",
            location=loc.match if loc else None,
            location_source=f"{loc.source.file}:{loc.source.line}" if loc else None)

    return attribute


def _url_port(url: str) -> int | None:
    """The port of a URL (the candidate's: where its config listens), if it has one."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url if "://" in url else "http://" + url).port
    except ValueError:
        return None


def _rules(path: str | None) -> Rules:
    if path is None:
        return Rules()
    try:
        return load_rules(path)
    except RulesError as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable


def _store(path: str, *, create: bool) -> Store:
    try:
        return Store(path, create=create)
    except StoreError as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable


def _split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        _fail(f"--listen must be HOST:PORT: {value}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _run_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


_SECONDS = click.FloatRange(0.0, min_open=True)
"""A timeout: seconds, above 0."""


@click.command("shadow")
@click.option("--listen", required=True, help="HOST:PORT to accept clients on.")
@click.option("--primary", required=True, help="Origin URL that answers clients.")
@click.option("--candidate", required=True, help="Origin URL that gets the mirrored requests.")
@click.option("--secondary", help="A second primary: answers compared to learn noise.")
@click.option("--store", "store_path", required=True, help="SQLite store to write.")
@click.option("--sample", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="Share of eligible requests mirrored.")
@click.option("--mirror-unsafe", is_flag=True, help="Mirror POST, PUT, DELETE, PATCH... too.")
@click.option("--learn-noise", is_flag=True,
              help="Without --secondary: send mirrored requests to the primary twice.")
@click.option("--config", "config_path", help="The candidate's nginx.conf (attribution).")
@click.option("--rules", "rules_path", help="Ignore rules file (JSON or TOML).")
@click.option("--concurrency", type=click.IntRange(1), default=16, show_default=True)
@click.option("--queue", "queue_size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--candidate-timeout", type=float, default=5.0, show_default=True)
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (tests, benchmarks).")
@click.option("--no-mirror", is_flag=True, help="Only proxy to the primary (benchmarks).")
@click.option("--tls-cert", help="Certificate (PEM chain) for TLS on the listener (ALPN h2, "
              "http/1.1).")
@click.option("--tls-key", help="Private key (PEM) of --tls-cert.")
@click.option("--quic", is_flag=True,
              help="Serve HTTP/3 on UDP at the same address and port (needs --tls-cert).")
@click.option("--h2c", is_flag=True,
              help="Cleartext listener: accept HTTP/2 with prior knowledge too.")
@click.option("--insecure-upstream", is_flag=True,
              help="https:// primary/candidate: do not verify their certificates.")
@click.option("--upstream-ca", help="CA file (PEM) to verify https:// primary/candidate with "
              "(default: the system's trust store).")
@click.option("--keepalive-timeout", type=_SECONDS, default=75.0, show_default=True,
              help="Seconds an idle client connection stays open after its last answer "
              "(nginx's keepalive_timeout; HTTP/2 and HTTP/3 too).")
@click.option("--keepalive-requests", type=click.IntRange(1), default=1000, show_default=True,
              help="HTTP/2 and HTTP/3: requests per client connection, then GOAWAY (nginx's "
              "keepalive_requests).")
@click.option("--client-header-timeout", type=_SECONDS, default=60.0, show_default=True,
              help="Seconds for a request head (HTTP/2: a header block, or the first stream) "
              "to arrive whole (nginx's client_header_timeout).")
@click.option("--client-body-timeout", type=_SECONDS, default=60.0, show_default=True,
              help="Seconds between two reads of a request body (HTTP/2, HTTP/3: per stream) "
              "(nginx's client_body_timeout).")
@click.option("--send-timeout", type=_SECONDS, default=60.0, show_default=True,
              help="Seconds a client may take no byte of its answer before it and its primary "
              "connection are closed (HTTP/2, HTTP/3: the stream is reset) (nginx's "
              "send_timeout).")
@click.option("--tunnel-idle-timeout", type=_SECONDS, default=3600.0, show_default=True,
              help="Seconds an upgraded (WebSocket) connection may pass no byte either way.")
def shadow_cmd(listen: str, primary: str, candidate: str, secondary: str | None,
               store_path: str, sample: float, mirror_unsafe: bool, learn_noise: bool,
               config_path: str | None, rules_path: str | None, concurrency: int,
               queue_size: int, candidate_timeout: float, duration: float | None,
               no_mirror: bool, tls_cert: str | None, tls_key: str | None, quic: bool,
               h2c: bool,
               insecure_upstream: bool, upstream_ca: str | None, keepalive_timeout: float,
               keepalive_requests: int, client_header_timeout: float,
               client_body_timeout: float, send_timeout: float,
               tunnel_idle_timeout: float) -> None:
    """Answer clients from the primary and mirror their requests to the candidate."""
    host, port = _split_listen(listen)
    listen_tls = None
    if (tls_cert is None) != (tls_key is None):
        _fail("--tls-cert and --tls-key go together")
    if tls_cert is not None and tls_key is not None:
        try:
            listen_tls = server_tls(tls_cert, tls_key)
        except ValueError as exc:
            _fail(str(exc))
    quic_cfg = None
    if quic:
        if tls_cert is None or tls_key is None:
            _fail("--quic needs --tls-cert and --tls-key")
            return
        from shadow.h3front import quic_configuration
        try:
            quic_cfg = quic_configuration(tls_cert, tls_key)
        except ValueError as exc:
            _fail(str(exc))
    up_tls = _upstream_tls(insecure_upstream, upstream_ca)
    rules = _rules(rules_path)
    attribute = (attributor(_load_config(config_path), _url_port(candidate))
                 if config_path else None)
    store = _store(store_path, create=True)
    store.set_meta({"primary": primary, "candidate": candidate, "secondary": secondary or "",
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "brotli": "decoded" if BROTLI else "not decoded (no brotli module)"})
    options = ShadowOptions(sample=sample, mirror_unsafe=mirror_unsafe, learn_noise=learn_noise,
                            concurrency=concurrency, queue_size=queue_size,
                            candidate_timeout=candidate_timeout,
                            client_idle_timeout=keepalive_timeout,
                            keepalive_requests=keepalive_requests,
                            client_header_timeout=client_header_timeout,
                            client_body_timeout=client_body_timeout, send_timeout=send_timeout,
                            tunnel_idle_timeout=tunnel_idle_timeout)
    seed = store.noise_seed()
    store.close()  # the analysis process opens its own connection (none may cross a fork)

    def make_analyzer() -> Analyzer:
        return Analyzer(_store(store_path, create=False), rules=rules, noise=NoiseModel(seed),
                        attribute=attribute)

    analyzer = AnalyzerProcess(make_analyzer)
    try:
        proxy = ShadowProxy(primary, candidate, analyzer=analyzer, secondary=secondary,
                            options=options, mirror=not no_mirror, listen_tls=listen_tls,
                            h2c=h2c, upstream_tls=up_tls, quic=quic_cfg)
    except ValueError as exc:
        _fail(str(exc))
        return
    analyzer.counters = proxy.stats.as_dict
    analyzer.start()  # before the event loop and any thread exist
    loop = _run_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        bound = await proxy.start(host, port)
        click.echo(f"tern shadow: listening on {bound[0]}:{bound[1]}, primary {primary}, "
                   f"candidate {candidate}", err=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        await stop.wait()
        await proxy.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        analyzer.close()
    st = proxy.stats
    click.echo(f"tern shadow: {st.requests} requests, {st.eligible} eligible, {st.mirrored} "
               f"mirrored, {st.dropped} dropped, {st.skipped} skipped, "
               f"{st.candidate_errors} candidate errors; {analyzer.differing} of "
               f"{analyzer.analysed} compared differ", err=True)


def _upstream_tls(insecure: bool, cafile: str | None) -> ssl.SSLContext:
    """The context for https:// upstreams from ``--insecure-upstream`` / ``--upstream-ca``."""
    if insecure and cafile is not None:
        _fail("--insecure-upstream and --upstream-ca exclude each other")
    try:
        return make_upstream_tls(verify=not insecure, cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        _fail(f"cannot load --upstream-ca {cafile}: {getattr(exc, 'strerror', None) or exc}")
        raise  # not reached: _fail exits


def _log_format(config: Config | None, name: str | None) -> LogFormat:
    if name in (None, "combined"):
        return COMBINED
    formats = {f.name: f for f in (config.http.log_formats if config and config.http else ())}
    if name not in formats:
        _fail(f"no log_format {name!r} in the config" if config else
              f"--format {name} needs --config (the file that defines it)")
    return formats[name]


@click.command("replay")
@click.argument("source")
@click.option("--primary", required=True)
@click.option("--candidate", required=True)
@click.option("--secondary")
@click.option("--store", "store_path", required=True)
@click.option("--config", "config_path", help="nginx.conf: log_format and attribution.")
@click.option("--format", "format_name", help="log_format name to read an access log with "
              "(default combined).")
@click.option("--rules", "rules_path")
@click.option("--concurrency", type=click.IntRange(1), default=8, show_default=True)
@click.option("--rate", type=float, default=None, help="Requests started per second at most.")
@click.option("--learn-noise", is_flag=True)
@click.option("--safe-only", is_flag=True, help="Skip unsafe methods.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--insecure-upstream", is_flag=True,
              help="https:// primary/candidate: do not verify their certificates.")
@click.option("--upstream-ca", help="CA file (PEM) to verify https:// primary/candidate with.")
def replay_cmd(source: str, primary: str, candidate: str, secondary: str | None,
               store_path: str, config_path: str | None, format_name: str | None,
               rules_path: str | None, concurrency: int, rate: float | None,
               learn_noise: bool, safe_only: bool, as_json: bool, insecure_upstream: bool,
               upstream_ca: str | None) -> None:
    """Replay an access log, a HAR file or a JSONL capture to primary and candidate."""
    up_tls = _upstream_tls(insecure_upstream, upstream_ca)
    config = _load_config(config_path) if config_path else None
    fmt = _log_format(config, format_name)
    rules = _rules(rules_path)
    try:
        kind, items = read_source(source, fmt)
    except SourceError as exc:
        _fail(str(exc))
        return
    store = _store(store_path, create=True)
    store.set_meta({"primary": primary, "candidate": candidate, "source": source})
    analyzer = Analyzer(store, rules=rules, noise=NoiseModel(store.noise_seed()),
                        attribute=attributor(config, _url_port(candidate)) if config
                        else None).start()
    summary = ReplaySummary(kind=kind)
    tty = sys.stderr.isatty()

    def progress(s: ReplaySummary) -> None:
        line = (f"\rreplay: {s.sent}/{s.read} sent, {len(s.malformed)} malformed, "
                f"{analyzer.differing} differing, {s.elapsed:.1f}s")
        click.echo(line if tty else line.lstrip("\r") + "\n", err=True, nl=False)

    loop = _run_loop()
    try:
        loop.run_until_complete(replay(
            items, primary=primary, candidate=candidate, analyzer=analyzer,
            secondary=secondary, learn_noise=learn_noise, concurrency=concurrency, rate=rate,
            safe_only=safe_only, progress=progress, summary=summary, upstream_tls=up_tls))
    except ValueError as exc:
        _fail(str(exc))
    finally:
        loop.close()
        analyzer.close()
        store.close()
    if tty:
        click.echo("", err=True)
    result = summary.to_json()
    result["analysed"] = analyzer.analysed
    result["differing"] = analyzer.differing
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for line, why in summary.malformed[:20]:
        click.echo(f"{source}:{line}: malformed: {why}", err=True)
    if len(summary.malformed) > 20:
        click.echo(f"... and {len(summary.malformed) - 20} more malformed lines", err=True)
    click.echo(f"replayed {summary.sent} of {summary.read} requests ({kind}) in "
               f"{summary.elapsed:.1f}s: {analyzer.differing} differ, {len(summary.malformed)} "
               f"malformed line(s), {summary.primary_errors} primary errors, "
               f"{summary.candidate_errors} candidate errors; store {store_path}")


@click.command("diffs")
@click.option("--store", "store_path", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--examples", type=click.IntRange(0), default=3, show_default=True)
def diffs_cmd(store_path: str, as_json: bool, examples: int) -> None:
    """Summarise a shadow/replay store: totals, per-route rates, top fields, examples."""
    store = _store(store_path, create=False)
    try:
        summary = store.summary(examples=examples)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(_render(summary))


def _ms(v: dict[str, Any]) -> str:
    return "-" if v["p50"] is None else f"{v['p50']:.1f}/{v['p99']:.1f}"


def _render(s: dict[str, Any]) -> str:
    t = s["totals"]
    out = [f"store {s['store']} (schema {s['schema_version']})",
           f"exchanges {t['exchanges']}, differing {t['differing']} ({t['rate']:.1%}), "
           f"noise only {t['noisy_only']}"]
    c = s["counters"]
    if c:
        out.append(f"mirror: eligible {c.get('eligible', 0)}, mirrored {c.get('mirrored', 0)}, "
                   f"dropped {c.get('dropped', 0)}, skipped {c.get('skipped', 0)}, "
                   f"candidate errors {c.get('candidate_errors', 0)}")
    if s["top_fields"]:
        out.append("top differing fields:")
        out += [f"  {f['count']:>6}  {f['field']}" for f in s["top_fields"]]
    out.append("")
    out.append(f"{'route':<40} {'n':>6} {'diff':>6} {'rate':>7}  {'primary ms':>12} "
               f"{'cand. ms':>12}")
    for r in s["routes"]:
        out.append(f"{r['route'][:40]:<40} {r['exchanges']:>6} {r['differing']:>6} "
                   f"{r['rate']:>7.1%}  {_ms(r['primary_ms']):>12} {_ms(r['candidate_ms']):>12}")
        if r["top_fields"]:
            out.append("    fields: " + ", ".join(f"{f['field']} ({f['count']})"
                                                  for f in r["top_fields"][:5]))
        if r["noise_fields"]:
            out.append("    noise:  " + ", ".join(f"{f['field']} ({f['count']})"
                                                  for f in r["noise_fields"][:5]))
        for e in r["examples"]:
            where = f" -> {e['location']} @ {e['location_source']}" if e["location"] else ""
            fields = f" [{', '.join(e['fields'])}]" if e["fields"] else ""
            out.append(f"    e.g. {e['method']} {e['host']}{e['target']} "
                       f"{e['primary_status']}/{e['candidate_status']}{fields}{where}")
    return "\n".join(out)
