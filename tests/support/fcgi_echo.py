"""A recording FastCGI responder on 127.0.0.1 (or a unix socket) for tests: what nginx and tern send to a FastCGI app.

Every request's params (in the order received), stdin and BEGIN_REQUEST flags are recorded. The
answer is chosen by the longest ``answers`` prefix of the REQUEST_URI param (else DOCUMENT_URI,
else SCRIPT_NAME); the default answer is a description of the request: ``text/plain``, one
``NAME=value`` line per param (values that differ per side — ports, the compare tag — masked),
then the stdin's length and bytes.

Real sockets, one thread per connection, every wait bounded.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from proxy.protocol.fastcgi import RecordType, decode_pairs, record

MASKED = frozenset({b"REMOTE_PORT", b"SERVER_PORT", b"HTTP_X_TERN_COMPARE_ID"})


@dataclass(frozen=True)
class Answer:
    """What the app does for a request."""

    stdout: bytes | None = None
    """Raw stdout (CGI headers, empty line, body); None: the description."""
    stderr: bytes = b""
    """Sent on FCGI_STDERR before stdout (after it with ``stderr_last``)."""
    stderr_last: bool = False
    delay: float = 0.0
    """Seconds to wait before answering (for read timeouts)."""
    hang_up: bool = False
    """Close the connection without answering."""
    pieces: int = 1
    """Stdout split into this many records, sent 20 ms apart."""
    app_status: int = 0
    close: bool = False
    """Close the connection after answering, even when KEEP_CONN asked to keep it."""


@dataclass
class FcgiRequest:
    params: list[tuple[bytes, bytes]]
    stdin: bytes
    keep_conn: bool
    stdin_records: int
    conn_id: int = 0
    """Which accepted connection carried it (1, 2, ... in accept order)."""

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name.encode():
                return v.decode("latin-1")
        return None

    def comparable(self) -> list[tuple[bytes, bytes]]:
        return [(k, b"*" if k in MASKED else v) for k, v in self.params]


def describe(req: FcgiRequest) -> bytes:
    lines = [k + b"=" + v for k, v in req.comparable() if k not in MASKED]
    body = b"\n".join(lines) + b"\nstdin:%d:" % len(req.stdin) + req.stdin + b"\n"
    return b"Content-Type: text/plain\r\n\r\n" + body


@dataclass
class FcgiEcho:
    port: int = 0
    unix: str | None = None
    """Listen on this unix socket path instead of 127.0.0.1:port."""
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[FcgiRequest] = field(default_factory=list)
    _lsock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _conns: int = 0

    def start(self) -> FcgiEcho:
        if self.unix is not None:
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lsock.bind(self.unix)
        else:
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("127.0.0.1", self.port))
            self.port = lsock.getsockname()[1]
        lsock.listen(64)
        lsock.settimeout(0.1)
        self._lsock = lsock
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._lsock is not None:
            self._lsock.close()

    def since(self, mark: int) -> list[FcgiRequest]:
        with self._lock:
            return list(self.requests[mark:])

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def _accept(self) -> None:
        assert self._lsock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns += 1
                conn_id = self._conns
            threading.Thread(target=self._serve, args=(conn, conn_id), daemon=True).start()

    def _serve(self, conn: socket.socket, conn_id: int) -> None:
        conn.settimeout(10.0)
        buf = bytearray()

        def read_record() -> tuple[int, int, bytes] | None:
            while len(buf) < 8 or len(buf) < 8 + struct.unpack_from(">H", buf, 4)[0] + buf[6]:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return None
                if not data:
                    return None
                buf.extend(data)
            _, rtype, rid, clen, plen = struct.unpack_from(">BBHHB", buf, 0)
            content = bytes(buf[8:8 + clen])
            del buf[:8 + clen + plen]
            return rtype, rid, content

        try:
            while True:
                keep = False
                params = b""
                stdin = bytearray()
                nstdin = 0
                rid = 1
                params_done = False
                while True:
                    rec = read_record()
                    if rec is None:
                        return
                    rtype, rid, content = rec
                    if rtype == RecordType.BEGIN_REQUEST:
                        keep = bool(content[2] & 1)
                    elif rtype == RecordType.PARAMS:
                        if content:
                            params += content
                        else:
                            params_done = True
                    elif rtype == RecordType.STDIN:
                        nstdin += 1
                        if not content and params_done:
                            break
                        stdin += content
                    elif rtype == RecordType.ABORT_REQUEST:
                        return
                req = FcgiRequest(decode_pairs(params), bytes(stdin), keep, nstdin, conn_id)
                with self._lock:
                    self.requests.append(req)
                closing = self._answer(conn, rid, req)
                if not keep or closing:
                    return
        finally:
            conn.close()

    def _choose(self, req: FcgiRequest) -> Answer:
        key = req.param("REQUEST_URI") or req.param("DOCUMENT_URI") or \
            req.param("SCRIPT_NAME") or ""
        path = key.split("?", 1)[0]
        best = ""
        for prefix in self.answers:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.answers.get(best, Answer()) if best else self.answers.get("", Answer())

    def _answer(self, conn: socket.socket, rid: int, req: FcgiRequest) -> bool:
        """Answer ``req``; True when the connection is to be closed."""
        ans = self._choose(req)
        if ans.delay:
            end = time.monotonic() + ans.delay
            while time.monotonic() < end and not self._stop.is_set():
                time.sleep(0.02)
        if ans.hang_up:
            conn.close()
            return True
        out = b""
        if ans.stderr and not ans.stderr_last:
            out += record(RecordType.STDERR, rid, ans.stderr)
        stdout = describe(req) if ans.stdout is None else ans.stdout
        n = max(1, ans.pieces)
        size = min(-(-len(stdout) // n) or 1, 60000)
        chunks = [stdout[i:i + size] for i in range(0, len(stdout), size)]
        try:
            for i, chunk in enumerate(chunks):
                conn.sendall(out + record(RecordType.STDOUT, rid, chunk))
                out = b""
                if i + 1 < len(chunks):
                    time.sleep(0.02)
            if ans.stderr and ans.stderr_last:
                time.sleep(0.05)
                out += record(RecordType.STDERR, rid, ans.stderr)
            conn.sendall(out + record(RecordType.STDOUT, rid)
                         + record(RecordType.END_REQUEST, rid,
                                  struct.pack(">IB3x", ans.app_status, 0)))
        except OSError:
            return True
        return ans.close
