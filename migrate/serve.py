"""``tern serve``: check the configuration the way nginx would, then run the proxy."""

from __future__ import annotations

import os
import sys

import click

from proxy.model import Config, ModelDecodeError, from_json

from .diagnostics import Level
from .frontend import translate

def make_loader(path: str, prefix: str | None, allow_unsupported: bool):  # type: ignore[no-untyped-def]
    """A callable that loads and checks the configuration (used at start and on SIGHUP)."""
    from proxy.io.workers import ConfigLoadError

    def load() -> Config:
        if path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as fh:
                    model = from_json(fh.read())
            except (OSError, ModelDecodeError) as exc:
                raise ConfigLoadError(f"{path}: {exc}") from None
            return _check_tls(model)
        analysis = translate(path, prefix)
        errors = [d for d in analysis.diagnostics if d.level is Level.ERROR]
        if errors:
            raise ConfigLoadError("\n".join(d.format() for d in errors))
        blocking = [d.format() for d in analysis.diagnostics if d.level is Level.UNSUPPORTED]
        if blocking and not allow_unsupported:
            raise ConfigLoadError(
                "\n".join(blocking) + f"\n{len(blocking)} unsupported directive(s) change how "
                "this configuration answers; fix them or start with --allow-unsupported")
        return _check_tls(analysis.config)

    def _check_tls(config: Config) -> Config:
        # certificates and keys are loaded now, as nginx -t does (file:line: error: ...)
        from proxy.io.tls import check_config

        problems = check_config(config)
        if not problems:  # servers that only listen on quic have no TCP context to build
            from proxy.io.h3conn import quic_problems

            problems = quic_problems(config)
        if problems:
            raise ConfigLoadError("\n".join(problems))
        return config

    return load


@click.command("serve")
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@click.option("-p", "--prefix", type=click.Path(file_okay=False, path_type=str), default=None,
              help="nginx prefix (-p) for relative paths; default: the config's directory.")
@click.option("-w", "--workers", type=int, default=None,
              help="Worker processes (default: worker_processes from the config, else 1).")
@click.option("--allow-unsupported", is_flag=True,
              help="Serve even when unsupported directives are present (they are ignored).")
@click.option("-t", "--test", "test_only", is_flag=True,
              help="Check the configuration as `nginx -t` does, then exit.")
def serve_cmd(config: str, prefix: str | None, workers: int | None, allow_unsupported: bool,
              test_only: bool) -> None:
    """Run CONFIG as a reverse proxy with nginx's semantics (foreground; `daemon` is ignored).

    Signals: HUP reloads (a bad configuration keeps the old one serving), QUIT drains and
    exits, TERM and INT exit at once.
    """
    from proxy.io.workers import ConfigLoadError, run

    load = make_loader(config, prefix, allow_unsupported)
    try:
        model = load()
    except ConfigLoadError as exc:
        click.echo(str(exc), err=True)
        click.echo(f"tern: configuration {config} test failed", err=True)
        sys.exit(2)
    if test_only:
        click.echo(f"tern: configuration {config} test is successful", err=True)
        return
    base = prefix or (model.prefix if model.prefix else os.path.dirname(os.path.abspath(config)))
    try:
        code = run(lambda: load(), prefix=base, workers=workers)
    except OSError as exc:
        click.echo(f"tern: cannot start: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)
