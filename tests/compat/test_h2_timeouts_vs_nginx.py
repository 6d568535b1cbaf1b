"""HTTP/2 streams that time out in ``tern serve`` are reset as Debian's nginx 1.22.1 resets them.

nginx closes a stream whose request timed out (send_timeout on a window that stays at zero,
client_body_timeout on a body that never comes) with RST_STREAM PROTOCOL_ERROR; a stream cut
for another reason (an upstream failing mid-answer) gets INTERNAL_ERROR.  The same raw frames
go to nginx and to Tern over h2c; what is compared is the status seen (if any) and the
RST_STREAM code, and that the connection still serves a new stream afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hyperframe.frame import SettingsFrame

try:  # the repo root on sys.path (python -m pytest)
    from tests.protocol.tls_support import RawH2, Seen, tern_serve
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx
except ImportError:  # pragma: no cover - depends on how pytest was started
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.protocol.tls_support import RawH2, Seen, tern_serve
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx

pytestmark = pytest.mark.skipif(not NGINX_BIN.exists(), reason="nginx is not installed")

BIG = 1 << 20  # more than the 65,535 bytes a stream window holds at the start

CONF = """
events {}
http {
    access_log off;
    send_timeout 1s;
    client_body_timeout 1s;
    server {
        listen 127.0.0.1:PORT http2;
        root ROOT;
        location / { }
        location /body { proxy_pass http://127.0.0.1:DEAD; }
    }
}
"""


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(nginx's port, Tern's port), the same configuration behind each."""
    tmp = tmp_path_factory.mktemp("h2timeouts")
    root = tmp / "html"
    root.mkdir()
    (root / "big.bin").write_bytes(bytes(i % 251 for i in range(BIG)))
    (root / "small.txt").write_text("small\n")
    dead = free_port()
    n_port = free_port([dead])
    t_port = free_port([dead, n_port])

    def conf(port: int) -> str:
        return CONF.replace("PORT", str(port)).replace("ROOT", str(root)).replace(
            "DEAD", str(dead))

    tern_dir = tmp / "tern"
    tern_dir.mkdir()
    (tern_dir / "logs").mkdir()
    tern_conf = tern_dir / "nginx.conf"
    tern_conf.write_text(conf(t_port))
    with run_nginx(conf(n_port), tmp / "nginx"), tern_serve(tern_conf, t_port):
        yield n_port, t_port


def _after(c: RawH2, sid: int) -> int | None:
    """The connection still serves: a new stream's status (window opened first)."""
    c.send(SettingsFrame(0, settings={0x4: 65535}).serialize() + c.request(sid, "/small.txt"))
    return c.read(want={sid}, until=5, quiet=3).statuses.get(sid)


def _zero_window(port: int) -> tuple[Seen, int | None]:
    c = RawH2(port, settings={0x4: 0})
    try:
        c.send(c.request(1, "/big.bin"))
        seen = c.read(want={1}, until=8, quiet=5)
        return seen, _after(c, 3)
    finally:
        c.close()


def _no_body(port: int) -> tuple[Seen, int | None]:
    c = RawH2(port)
    try:
        c.send(c.request(1, "/body", end=False, method="POST",
                         extra=[("content-length", "10")]))
        seen = c.read(want={1}, until=8, quiet=5)
        return seen, _after(c, 3)
    finally:
        c.close()


@pytest.mark.parametrize("case", [_zero_window, _no_body], ids=["send_timeout", "body_timeout"])
def test_timed_out_stream_reset_as_nginx(ports: tuple[int, int], case: object) -> None:
    n_port, t_port = ports
    got = {}
    for name, port in (("nginx", n_port), ("tern", t_port)):
        seen, after = case(port)  # type: ignore[operator]
        got[name] = (seen.statuses.get(1), seen.resets.get(1), after)
    assert got["tern"] == got["nginx"], got
    assert got["nginx"][1] is not None, got  # the stream was reset (not answered, not left)
