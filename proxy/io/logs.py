"""The log phase: access_log lines written where the configuration says, in its formats.

Rules:

1. The ``access_log`` directives in effect are those of the innermost level that has any
   (array inheritance); ``access_log off`` at that level disables logging.
2. With no ``access_log`` anywhere, nginx logs ``combined`` to its compiled-in path; Tern logs to
   ``<prefix>/logs/access.log`` when that directory exists, else nowhere (a stated difference).
3. Files are opened once per worker in append mode and written one line per request (nginx
   without ``buffer=``). Paths with variables are not supported (the line is dropped and counted).
4. A variable that does not exist logs as ``-`` (``escape=default``), an empty one as nothing:
   the getter returns None for "not found".
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..accesslog import COMBINED, LineFormatter, compile_log_format
from ..model import AccessLog, Config, LogFormat


class AccessLogger:
    """Formats and writes access log lines for one worker."""

    def __init__(self, config: Config, prefix: str) -> None:
        self.prefix = prefix
        self.formats: dict[str, LineFormatter] = {"combined": compile_log_format(COMBINED)}
        http = config.http
        for fmt in (http.log_formats if http else ()):
            self.formats[fmt.name] = compile_log_format(fmt)
        self.files: dict[str, int] = {}
        self.dropped = 0
        default_dir = os.path.join(prefix, "logs")
        self.default: tuple[AccessLog, ...] = ()
        if os.path.isdir(default_dir):
            from ..model import NOWHERE, Template, Lit

            path = os.path.join(default_dir, "access.log")
            self.default = (AccessLog(path=Template(raw=path, parts=(Lit(text=path),)),
                                      source=NOWHERE),)

    def _fd(self, path: str) -> int | None:
        fd = self.files.get(path)
        if fd is None:
            full = path if os.path.isabs(path) else os.path.join(self.prefix, path)
            try:
                fd = os.open(full, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:
                self.dropped += 1
                return None
            self.files[path] = fd
        return fd

    def write(self, logs: tuple[AccessLog, ...] | None,
              get: Callable[[str], str | bytes | None]) -> None:
        """Write one request's line to every log in effect."""
        entries = logs if logs is not None else self.default
        for entry in entries:
            if entry.path is None:
                return  # access_log off
            if not entry.path.is_static:
                self.dropped += 1
                continue
            fmt = self.formats.get(entry.format)
            if fmt is None:
                continue
            fd = self._fd(entry.path.raw)
            if fd is None:
                continue
            try:
                os.write(fd, fmt(get))
            except OSError:
                self.dropped += 1

    def close(self) -> None:
        """Close every file (reload, exit)."""
        for fd in self.files.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.files.clear()


def format_of(fmt: LogFormat) -> LineFormatter:
    """Compile one log format (exposed for tools reading logs back)."""
    return compile_log_format(fmt)
