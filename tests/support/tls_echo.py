"""A TLS HTTP/1.1 echo upstream for tests: records what each TLS client sent.

Every response is ``200`` with a text body naming what the server saw on that connection:
``sni=<name or ->``, ``conn=<connection number>``, ``req=<request number on it>``,
``client=<client certificate subject CN or ->``, ``resumed=<1 for a resumed TLS session, else
0>`` and the request line.  Connections stay open
(HTTP/1.1 keep-alive) until the client closes them.  A request with ``Upgrade`` gets ``101``
and the connection then echoes every byte back.  Listens on 127.0.0.1 only; threads are
daemons and every socket read has a timeout.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

__all__ = ["TlsEcho"]


class TlsEcho:
    """``TlsEcho(cert, key)``; ``ca`` (a CA file) makes it ask for a client certificate."""

    def __init__(self, cert: Path, key: Path, *, ca: Path | None = None) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        if ca is not None:
            self.ctx.verify_mode = ssl.CERT_OPTIONAL
            self.ctx.load_verify_locations(cafile=str(ca))
        self.snis: list[str | None] = []
        self.handshakes = 0
        self.accepted = 0
        """TCP connections accepted (a failed handshake counts here, not in ``handshakes``)."""
        self._lock = threading.Lock()

        def on_sni(sslobj: ssl.SSLObject, name: str | None, _c: ssl.SSLContext) -> None:
            sslobj.sni = name  # type: ignore[attr-defined]

        self.ctx.sni_callback = on_sni  # type: ignore[assignment]
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.5)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with self._lock:
            self.handshakes += 1
            number = self.handshakes
            sni = getattr(conn, "sni", None)
            self.snis.append(sni)
        peer = conn.getpeercert()
        client = "-"
        if peer:
            for rdn in peer.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        client = v
        buf, served = b"", 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                served += 1
                if b"\r\nupgrade:" in head.lower():
                    # a tunnel (WebSocket-ish): 101, then every byte echoed back
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: upgrade\r\n\r\n" + buf)
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            return
                        conn.sendall(data)
                body = (f"sni={sni or '-'}\nconn={number}\nreq={served}\nclient={client}\n"
                        f"resumed={int(conn.session_reused)}\nversion={conn.version()}\n"
                        ).encode() + head.split(b"\r\n")[0] + b"\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except (OSError, ValueError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)
