"""Run Debian's real nginx on a throw-away config, and derive "routing probe" configs from fixtures.

Two halves, both used by tests that compare Tern with nginx:

* :func:`run_nginx` starts ``/usr/sbin/nginx`` in the foreground (``daemon off; master_process
  off;``) on a config written below a temporary prefix directory, waits until every TCP listen
  port accepts connections and stops it again.  :func:`http_get` sends one raw HTTP/1.1 request
  to it (raw socket: the request target goes on the wire byte for byte, no client-side cleaning).
* :func:`derive_config` turns a fixture tree (``nginx.conf`` plus includes) into a single-file
  config that keeps only what decides routing (servers, names, listens, locations, rewrites,
  try_files, error_page, index, internal, ...) and tags every answer: each location returns
  ``200 "L<n>"`` and each server adds ``X-Srv: S<m>``.  The returned :class:`DerivedConfig` maps
  those ids back to line numbers in the derived file, which is the file Tern is pointed at.

Everything is bounded in time and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crossplane

NGINX_BIN = Path("/usr/sbin/nginx")
"""Debian's nginx (1.22.1 on bookworm)."""

START_TIMEOUT = 10.0
"""Seconds to wait for ``nginx -t`` and for every listen port to accept connections."""

STOP_TIMEOUT = 5.0
"""Seconds to wait after SIGTERM before SIGKILL."""

Stmt = dict[str, Any]
"""One crossplane directive: ``{"directive", "args", "line", "block"?}``."""


class NginxError(RuntimeError):
    """nginx rejected the config or did not come up; the message carries nginx's own output."""


# --------------------------------------------------------------------------------------------
# ports and HTTP


def free_port(exclude: Iterable[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then close).

    ``exclude`` lists ports already handed out for the same nginx, so one config never gets the
    same port twice even if the kernel hands a just-closed port back.
    """
    taken = set(exclude)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


@dataclass(frozen=True)
class HttpResponse:
    """What nginx sent back for one request.

    ``status`` is None when nginx closed the connection without a response (``return 444``).
    Header names are lower-cased; a repeated header keeps its last value.
    """

    status: int | None
    headers: dict[str, str]
    body: bytes

    @property
    def closed_without_response(self) -> bool:
        """True when the connection was closed before any byte of a response arrived."""
        return self.status is None


def http_get(
    port: int,
    target: str,
    host: str | None,
    *,
    address: str = "127.0.0.1",
    timeout: float = 5.0,
) -> HttpResponse:
    """Send ``GET target`` with ``Host: host`` to ``address:port`` and read the whole response.

    The target is sent exactly as given (UTF-8 encoded), so percent-encodings, dot segments and
    repeated slashes reach nginx untouched.  ``host=None`` sends an HTTP/1.0 request without a
    Host header.  Redirects are not followed.  The connection is closed after one exchange.
    """
    if host is None:
        head = f"GET {target} HTTP/1.0\r\n"
    else:
        head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
    request = (head + "Connection: close\r\nUser-Agent: tern-tests\r\n\r\n").encode("utf-8")
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(request)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete response from {address}:{port} for {target!r}")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return _parse_response(b"".join(chunks))


def _parse_response(raw: bytes) -> HttpResponse:
    if not raw:
        return HttpResponse(status=None, headers={}, body=b"")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return HttpResponse(status=int(parts[1]), headers=headers, body=body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


# --------------------------------------------------------------------------------------------
# running nginx

_MAIN_OVERRIDDEN = frozenset({"daemon", "master_process", "pid", "error_log", "user"})
"""Main-context directives that the runner owns (they clash with ``-g`` or leave the prefix)."""

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass
class NginxProcess:
    """A running nginx started by :func:`run_nginx`."""

    process: subprocess.Popen[bytes]
    prefix: Path
    conf: Path
    """The config file nginx runs (for a derived config: the very file Tern reads)."""
    endpoints: list[tuple[str, int]]
    """Every TCP (address, port) nginx listens on; each accepted a connection during start-up."""

    @property
    def error_log(self) -> Path:
        """nginx's error log inside the prefix."""
        return self.prefix / "logs" / "error.log"

    def error_log_tail(self, lines: int = 40) -> str:
        """The last lines of the error log, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def get(self, port: int, target: str, host: str | None, timeout: float = 5.0) -> HttpResponse:
        """:func:`http_get` against this nginx on 127.0.0.1."""
        return http_get(port, target, host, timeout=timeout)


def _parse_file(path: Path, *, combine: bool) -> list[Stmt]:
    payload = crossplane.parse(
        str(path),
        combine=combine,
        single=not combine,
        check_ctx=False,
        check_args=False,
        catch_errors=False,
    )
    if payload["status"] != "ok":
        raise NginxError(f"crossplane could not parse {path}: {payload['errors']}")
    parsed: list[Stmt] = payload["config"][0]["parsed"]
    return parsed


def _runner_main(prefix: Path) -> list[Stmt]:
    """The main-context directives the runner puts at the top of every config it runs."""
    logs = prefix / "logs"
    return [
        {"directive": "pid", "args": [str(logs / "nginx.pid")]},
        {"directive": "error_log", "args": [str(logs / "error.log"), "info"]},
    ]


def _runner_http(prefix: Path) -> list[Stmt]:
    """Temp paths (Debian's defaults live in /var/lib/nginx) and the access log, inside prefix."""
    out: list[Stmt] = [
        {"directive": f"{name}_temp_path", "args": [str(prefix / "tmp" / name)]}
        for name in _TEMP_PATHS
    ]
    out.append({"directive": "access_log", "args": [str(prefix / "logs" / "access.log")]})
    return out


def _is_runnable_as_is(parsed: list[Stmt], prefix: Path) -> bool:
    """True when the main context already has the runner's pid/error_log and nothing it owns."""
    seen: dict[str, list[str]] = {}
    for stmt in parsed:
        if stmt["directive"] in _MAIN_OVERRIDDEN:
            if stmt["directive"] in seen:
                return False
            seen[stmt["directive"]] = stmt["args"]
    wanted = {s["directive"]: s["args"] for s in _runner_main(prefix)}
    return seen == wanted


def sanitize_config(conf: Path, prefix: Path) -> Path:
    """Write a runnable copy of ``conf`` (includes inlined) below ``prefix`` and return its path.

    Drops the main-context directives the runner owns (pid, error_log, user, daemon,
    master_process) and puts its own pid/error_log in; points temp paths and the access log into
    the prefix; adds an ``events {}`` block if there is none.  Relative paths left in the config
    (``root html``) now resolve against ``prefix``.
    """
    parsed = _parse_file(conf, combine=True)
    main = [s for s in parsed if s["directive"] not in _MAIN_OVERRIDDEN]
    if not any(s["directive"] == "events" for s in main):
        main.insert(0, {"directive": "events", "args": [], "block": []})
    for stmt in main:
        if stmt["directive"] == "http":
            ours = {s["directive"] for s in _runner_http(prefix)}
            kept = [s for s in stmt["block"] if s["directive"] not in ours]
            stmt["block"] = _runner_http(prefix) + kept
    out = prefix / "conf" / "nginx.runnable.conf"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(crossplane.build(_runner_main(prefix) + main) + "\n")
    return out


def listen_endpoints(parsed: list[Stmt]) -> list[tuple[str, int]]:
    """The TCP (address, port) pairs of every ``listen`` in http servers, as a client reaches them.

    Wildcard addresses become 127.0.0.1 / ::1; unix sockets and QUIC (UDP) listens are skipped.
    """
    found: list[tuple[str, int]] = []
    for http in (s for s in parsed if s["directive"] == "http"):
        for server in (s for s in http.get("block", []) if s["directive"] == "server"):
            for listen in (s for s in server.get("block", []) if s["directive"] == "listen"):
                key = listen_key(listen["args"])
                if key is None:
                    continue
                addr, port = key
                addr = {"*": "127.0.0.1", "[::]": "::1"}.get(addr, addr.strip("[]"))
                if (addr, port) not in found:
                    found.append((addr, port))
    return found


def _default_port() -> int:
    """The port nginx listens on for a server without ``listen``: 80 as root, else 8000."""
    return 80 if os.geteuid() == 0 else 8000


def listen_key(args: list[str]) -> tuple[str, int] | None:
    """Normalise a ``listen`` directive's arguments to (address, port), None for unix:/quic.

    ``80``, ``*:80`` and ``0.0.0.0:80`` are all ``("*", 80)``; ``[::]:80`` is ``("[::]", 80)``
    (a socket of its own in nginx); a bare address listens on port 80.
    """
    if not args:
        return None
    addr = args[0]
    if addr.startswith("unix:") or "quic" in args[1:]:
        return None
    if addr.startswith("["):
        host, _, port = addr.partition("]")
        host += "]"
        port = port.lstrip(":") or "80"
    elif addr.isdigit():
        host, port = "*", addr
    elif ":" in addr:
        host, _, port = addr.rpartition(":")
    else:
        host, port = addr, "80"
    if host == "0.0.0.0":
        host = "*"
    return host, int(port)


def _nginx_cmd(prefix: Path, conf: Path, *extra: str) -> list[str]:
    return [
        str(NGINX_BIN),
        *extra,
        "-p",
        f"{prefix}/",
        "-e",
        str(prefix / "logs" / "error.log"),
        "-c",
        str(conf),
        "-g",
        "daemon off; master_process off;",
    ]


def _prepare_prefix(prefix: Path) -> None:
    for sub in ("conf", "logs", *(f"tmp/{name}" for name in _TEMP_PATHS)):
        (prefix / sub).mkdir(parents=True, exist_ok=True)


def check_config(conf: Path, prefix: Path) -> None:
    """Run ``nginx -t`` on ``conf``; raise :class:`NginxError` with nginx's stderr if it fails."""
    _prepare_prefix(prefix)
    try:
        done = subprocess.run(
            _nginx_cmd(prefix, conf, "-t", "-q"),
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NginxError(f"nginx -t on {conf} took longer than {START_TIMEOUT}s") from exc
    if done.returncode != 0:
        raise NginxError(
            f"nginx -t rejected {conf}:\n{done.stderr.decode(errors='replace')}"
            f"{done.stdout.decode(errors='replace')}"
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _wait_listening(
    process: subprocess.Popen[bytes], endpoints: list[tuple[str, int]], deadline: float
) -> None:
    pending = list(endpoints)
    while pending:
        if process.poll() is not None:
            raise NginxError(f"nginx exited with status {process.returncode} during start-up")
        addr, port = pending[0]
        try:
            with socket.create_connection((addr, port), timeout=0.2):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise NginxError(f"nginx did not accept connections on {addr}:{port} in time")
        time.sleep(0.02)


@contextlib.contextmanager
def run_nginx(conf: str | Path, prefix: Path) -> Iterator[NginxProcess]:
    """Run nginx in the foreground on ``conf`` below ``prefix``; stop it when the block ends.

    ``conf`` is config text (a ``str``, written to ``prefix/conf/nginx.conf``) or the path of a
    config file.  A config whose main context already holds exactly the runner's ``pid`` and
    ``error_log`` (what :func:`derive_config` writes) runs as is, so line numbers stay those of
    the file; anything else runs from a sanitised copy (see :func:`sanitize_config`).

    ``nginx -t`` runs first; then nginx starts with ``daemon off; master_process off;`` and the
    block is entered once every TCP listen port accepts a connection (at most
    :data:`START_TIMEOUT` seconds).  On exit nginx gets SIGTERM, then SIGKILL if it lingers.
    """
    if not NGINX_BIN.exists():
        raise NginxError(f"{NGINX_BIN} is not installed")
    prefix = prefix.resolve()
    _prepare_prefix(prefix)
    if isinstance(conf, str):
        conf_path = prefix / "conf" / "nginx.conf"
        conf_path.write_text(conf)
    else:
        conf_path = conf.resolve()
    if not _is_runnable_as_is(_parse_file(conf_path, combine=False), prefix):
        conf_path = sanitize_config(conf_path, prefix)
    check_config(conf_path, prefix)
    endpoints = listen_endpoints(_parse_file(conf_path, combine=True))

    logs = prefix / "logs"
    with open(logs / "stdout.log", "wb") as out, open(logs / "stderr.log", "wb") as err:
        process = subprocess.Popen(
            _nginx_cmd(prefix, conf_path), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    running = NginxProcess(process=process, prefix=prefix, conf=conf_path, endpoints=endpoints)
    try:
        try:
            _wait_listening(process, endpoints, time.monotonic() + START_TIMEOUT)
        except NginxError as exc:
            stderr = (logs / "stderr.log").read_text(errors="replace")
            raise NginxError(f"{exc}\n{stderr}\n{running.error_log_tail()}") from None
        yield running
    finally:
        _stop(process)


# --------------------------------------------------------------------------------------------
# deriving routing-probe configs

KEPT_AS_IS = frozenset(
    {
        "absolute_redirect",
        "break",
        "client_header_buffer_size",
        "default_type",
        "error_page",
        "ignore_invalid_headers",
        "index",
        "internal",
        "large_client_header_buffers",
        "log_not_found",
        "merge_slashes",
        "msie_refresh",
        "port_in_redirect",
        "recursive_error_pages",
        "server_name",
        "server_name_in_redirect",
        "server_names_hash_bucket_size",
        "server_names_hash_max_size",
        "try_files",
        "types",
        "types_hash_bucket_size",
        "types_hash_max_size",
        "underscores_in_headers",
    }
)
"""Directives copied unchanged into a derived config (when no dropped variable is referenced).

Besides these, derivation keeps ``server``/``location`` (recursively), ``listen`` (rewritten),
``root``/``alias`` (pointed at a missing directory), ``rewrite`` with ``last``/``break``/no
flag, and ``return`` (a ``return 200 ...`` inside a location becomes the location's tag).
Everything else (ssl, http2/3, proxy/fastcgi, upstream, auth, limits, access control, logs,
``map``/``set``/``if``, headers, expires, ...) is dropped.
"""

_VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_NAMED_CAPTURE_RE = re.compile(r"\(\?(?:P?<|')([A-Za-z_][A-Za-z0-9_]*)[>']")
_REGEX_DEFINERS_ARG0 = frozenset({"set", "perl_set", "js_set", "auth_request_set"})
_REGEX_DEFINERS_LAST = frozenset({"geo", "split_clients"})


@dataclass(frozen=True)
class DerivedListen:
    """One ``listen`` of a derived server: the original endpoint and its 127.0.0.1 port."""

    original: tuple[str, int]
    port: int
    default_server: bool


@dataclass(frozen=True)
class DerivedLocation:
    """A ``location`` of the derived config; ``number`` is the n of its ``L<n>`` tag."""

    number: int
    modifier: str
    """``""`` (prefix), ``"="``, ``"^~"``, ``"~"``, ``"~*"`` or ``"@"`` (named)."""
    pattern: str
    server: int
    parent: int | None
    """Number of the enclosing location, None at server level."""
    tagged: bool
    """True when the location answers ``200 "L<n>"`` (it has no try_files, or had a return 200)."""
    line: int = 0
    """Line of the ``location`` directive in the derived file."""

    @property
    def match(self) -> str:
        """The location as Tern's JSON spells it: ``"= /x"``, ``"~* \\.php$"``, ``"/"``, ``"@x"``.

        (Informational: the comparison uses line numbers, not this string.)
        """
        if self.modifier in ("", "@"):
            return self.pattern
        return f"{self.modifier} {self.pattern}"

    @property
    def is_regex(self) -> bool:
        """True for ``~`` and ``~*`` locations."""
        return self.modifier in ("~", "~*")


@dataclass(frozen=True)
class DerivedServer:
    """A ``server`` of the derived config; ``number`` is the m of its ``X-Srv: S<m>`` header."""

    number: int
    names: tuple[str, ...]
    listens: tuple[DerivedListen, ...]
    locations: tuple[int, ...]
    """Numbers of all its locations (nested ones included), in config order."""
    line: int = 0
    """Line of the ``server`` directive in the derived file."""

    @property
    def ports(self) -> tuple[int, ...]:
        """The derived ports this server listens on."""
        return tuple(listen.port for listen in self.listens)


@dataclass(frozen=True)
class DerivedConfig:
    """A routing-probe config derived from a fixture, and how its tags map back to lines."""

    source: Path
    path: Path
    """The derived single-file config (give this to nginx and to Tern)."""
    prefix: Path
    docroot: Path
    """Where every root/alias points: a directory that does not exist."""
    ports: dict[tuple[str, int], int]
    """Original listen endpoint -> derived port on 127.0.0.1."""
    servers: tuple[DerivedServer, ...]
    locations: dict[int, DerivedLocation]

    def server(self, number: int) -> DerivedServer:
        """The server tagged ``S<number>``."""
        return self.servers[number - 1]

    def default_server(self, port: int) -> DerivedServer:
        """The server nginx falls back to on ``port``: its ``default_server``, else the first."""
        on_port = [s for s in self.servers if port in s.ports]
        for server in on_port:
            if any(lst.port == port and lst.default_server for lst in server.listens):
                return server
        return on_port[0]


@dataclass
class _Deriver:
    prefix: Path
    docroot: Path
    dropped_vars: frozenset[str]
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    servers: list[DerivedServer] = field(default_factory=list)
    locations: list[DerivedLocation] = field(default_factory=list)

    def port_for(self, key: tuple[str, int]) -> int:
        if key not in self.ports:
            self.ports[key] = free_port(self.ports.values())
        return self.ports[key]

    def references_dropped(self, stmt: Stmt) -> bool:
        return any(v in self.dropped_vars for arg in stmt["args"] for v in _VAR_RE.findall(arg))

    def main(self, parsed: list[Stmt]) -> list[Stmt]:
        out = _runner_main(self.prefix)
        out.append({"directive": "events", "args": [], "block": []})
        for stmt in parsed:
            if stmt["directive"] == "http":
                out.append({"directive": "http", "args": [], "block": self.http(stmt["block"])})
        return out

    def http(self, block: list[Stmt]) -> list[Stmt]:
        out = _runner_http(self.prefix)
        out.append({"directive": "root", "args": [str(self.docroot)]})
        for stmt in block:
            if stmt["directive"] == "server":
                server = self.server(stmt["block"])
                if server is not None:
                    out.append(server)
            elif stmt["directive"] in ("root", "alias"):
                continue  # the http-level root above replaces it
            else:
                out.extend(self.common(stmt))
        return out

    def common(self, stmt: Stmt) -> list[Stmt]:
        """Directives handled the same in http, server and location context."""
        name = stmt["directive"]
        if name == "types":
            return [copy.deepcopy(stmt)]
        if name in KEPT_AS_IS and not self.references_dropped(stmt):
            return [{"directive": name, "args": list(stmt["args"])}]
        if name == "rewrite" and not self.references_dropped(stmt):
            flag = stmt["args"][2] if len(stmt["args"]) > 2 else None
            if flag in (None, "last", "break"):
                return [{"directive": name, "args": list(stmt["args"])}]
        if name == "return" and not self.references_dropped(stmt):
            return [{"directive": name, "args": list(stmt["args"])}]
        if name in ("root", "alias"):
            target = str(self.docroot) + ("/" if stmt["args"][0].endswith("/") else "")
            return [{"directive": name, "args": [target]}]
        return []

    def server(self, block: list[Stmt]) -> Stmt | None:
        listens: list[DerivedListen] = []
        has_quic = False
        body: list[Stmt] = []
        number = len(self.servers) + 1
        first_location = len(self.locations)
        for stmt in block:
            name = stmt["directive"]
            if name == "listen":
                key = listen_key(stmt["args"])
                if key is None:
                    has_quic = has_quic or "quic" in stmt["args"][1:]
                    continue
                if any(lst.original == key for lst in listens):
                    continue
                default = any(a in ("default_server", "default") for a in stmt["args"][1:])
                listens.append(DerivedListen(key, self.port_for(key), default))
            elif name == "location":
                body.append(self.location(stmt, number, None))
            else:
                body.extend(self.common(stmt))
        if not listens:
            if has_quic:
                del self.locations[first_location:]  # QUIC-only server: not reachable over TCP
                return None
            key = ("*", _default_port())
            listens.append(DerivedListen(key, self.port_for(key), False))
        names = tuple(a for s in block if s["directive"] == "server_name" for a in s["args"])
        head: list[Stmt] = [
            {
                "directive": "listen",
                "args": [f"127.0.0.1:{lst.port}"]
                + (["default_server"] if lst.default_server else []),
            }
            for lst in listens
        ]
        head.append({"directive": "add_header", "args": ["X-Srv", f"S{number}", "always"]})
        self.servers.append(
            DerivedServer(
                number=number,
                names=names,
                listens=tuple(listens),
                locations=tuple(loc.number for loc in self.locations[first_location:]),
            )
        )
        return {"directive": "server", "args": [], "block": head + body}

    def location(self, stmt: Stmt, server: int, parent: int | None) -> Stmt:
        number = len(self.locations) + 1
        modifier, pattern = split_location_args(stmt["args"])
        index = len(self.locations)
        self.locations.append(DerivedLocation(number, modifier, pattern, server, parent, False))
        tag: Stmt = {"directive": "return", "args": ["200", f"L{number}"]}
        body: list[Stmt] = []
        tagged = False
        for child in stmt.get("block", []):
            if child["directive"] == "location":
                body.append(self.location(child, server, number))
            elif child["directive"] == "return" and child["args"][:1] == ["200"]:
                body.append(dict(tag))  # its own "return 200 text" becomes the tag, in place
                tagged = True
            else:
                body.extend(self.common(child))
        if not tagged and not any(s["directive"] == "try_files" for s in body):
            body.append(dict(tag))
            tagged = True
        self.locations[index] = dataclasses.replace(self.locations[index], tagged=tagged)
        return {"directive": "location", "args": list(stmt["args"]), "block": body}


def split_location_args(args: list[str]) -> tuple[str, str]:
    """``["~*", "\\.php$"]`` -> ``("~*", "\\.php$")``; also ``["=/x"]`` and ``["@name"]``."""
    if len(args) == 2:
        return args[0], args[1]
    arg = args[0]
    if arg.startswith("@"):
        return "@", arg
    for modifier in ("^~", "~*", "~", "="):
        if arg.startswith(modifier):
            return modifier, arg[len(modifier) :]
    return "", arg


def _walk(block: list[Stmt]) -> Iterator[Stmt]:
    for stmt in block:
        yield stmt
        yield from _walk(stmt.get("block", []))


def _dropped_variables(parsed: list[Stmt]) -> frozenset[str]:
    """Variables that only exist thanks to directives derivation drops (set, map, if, ...)."""
    dropped: set[str] = set()
    kept: set[str] = set()
    for stmt in _walk(parsed):
        name, args = stmt["directive"], stmt["args"]
        if name in _REGEX_DEFINERS_ARG0 and args:
            dropped.add(args[0].lstrip("$"))
        elif name == "map" and len(args) > 1:
            dropped.add(args[1].lstrip("$"))
            for row in stmt.get("block", []):
                dropped.update(_NAMED_CAPTURE_RE.findall(row["directive"]))
        elif name in _REGEX_DEFINERS_LAST and args:
            dropped.add(args[-1].lstrip("$"))
        elif name == "if":
            dropped.update(_NAMED_CAPTURE_RE.findall(" ".join(args)))
        elif name in ("location", "server_name", "rewrite"):
            kept.update(_NAMED_CAPTURE_RE.findall(" ".join(args)))
    return frozenset(dropped - kept)


def derive_config(source: Path, prefix: Path) -> DerivedConfig:
    """Derive the routing-probe config of fixture ``source`` into ``prefix/conf/nginx.conf``.

    * every ``listen`` becomes ``127.0.0.1:<port>`` (one fresh port per original endpoint, so
      servers that shared a socket still do; ``default_server`` kept; ssl/http2/quic/... params
      dropped; QUIC-only servers dropped);
    * every ``root``/``alias`` points at :attr:`DerivedConfig.docroot`, which does not exist, so
      no file, and no directory, is ever found;
    * each location without ``try_files`` gets ``return 200 "L<n>"`` (appended; a ``return 200
      ...`` it already had is replaced in place), named locations included;
    * each server gets ``add_header X-Srv "S<m>" always``;
    * everything that needs what a test machine lacks is dropped (see :data:`KEPT_AS_IS`).

    The result is re-parsed so every ``S<m>``/``L<n>`` carries the line of its ``server`` /
    ``location`` directive in the derived file.
    """
    source = source.resolve()
    prefix = prefix.resolve()
    _prepare_prefix(prefix)
    docroot = prefix / "no-such-docroot"
    if docroot.exists():
        shutil.rmtree(docroot)
    parsed = _parse_file(source, combine=True)
    deriver = _Deriver(prefix=prefix, docroot=docroot, dropped_vars=_dropped_variables(parsed))
    derived = deriver.main(parsed)
    path = prefix / "conf" / "nginx.conf"
    path.write_text(
        f"# Derived by tests/support/nginx.py from {source}; routing-relevant parts only.\n"
        + crossplane.build(derived)
        + "\n"
    )

    # Re-parse: traversal order is unchanged, so the k-th server/location is S<k>/L<k>.
    reparsed = _parse_file(path, combine=False)
    server_lines: list[int] = []
    location_lines: list[int] = []
    for http in (s for s in reparsed if s["directive"] == "http"):
        for server in (s for s in http["block"] if s["directive"] == "server"):
            server_lines.append(server["line"])
            location_lines.extend(
                s["line"] for s in _walk(server["block"]) if s["directive"] == "location"
            )
    if len(server_lines) != len(deriver.servers) or len(location_lines) != len(deriver.locations):
        raise AssertionError(f"re-parsing {path} did not find the servers/locations written")
    servers = tuple(
        dataclasses.replace(s, line=line)
        for s, line in zip(deriver.servers, server_lines, strict=True)
    )
    locations = {
        loc.number: dataclasses.replace(loc, line=line)
        for loc, line in zip(deriver.locations, location_lines, strict=True)
    }
    return DerivedConfig(
        source=source,
        path=path,
        prefix=prefix,
        docroot=docroot,
        ports=dict(deriver.ports),
        servers=servers,
        locations=locations,
    )
