"""``tern shadow`` with TLS and HTTP/2 clients (curl, nghttp, raw frames), TLS upstreams.

Every DESIGN.md §6 invariant checked for HTTP/1.1 in test_shadow_mirror.py is checked here for
HTTP/2 streams: the primary's answer reaches the client, the candidate gets the mirror (marked),
the store has the exchange (no difference from the client's HTTP version), the accounting
balances, unsafe methods are skipped, and a misbehaving client leaves the next one alone.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame

from shadow.echo import Behaviour, EchoServer, describe
from shadow.mirror import ShadowOptions, make_upstream_tls, server_tls
from tests.shadow_support import ProxyRunner, RawServer, make_cert

REPO = Path(__file__).resolve().parents[1]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
RAW = (b"HTTP/1.1 200 OK\r\nX-Up: raw\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
       b"\r\nhello")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert(tmp_path_factory.mktemp("certs"))


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          timeout=30, check=False)


def _writeout(out: bytes) -> list[tuple[str, str]]:
    """Lines ``<<version code>>`` written by ``-w`` after each transfer."""
    found = []
    for part in out.split(b"<<")[1:]:
        v, _, code = part.split(b">>")[0].decode().partition(" ")
        found.append((v, code))
    return found


def _bodies(out: bytes) -> list[dict[str, object]]:
    return [json.loads(p.rsplit(b"<<", 1)[0] if b"<<" in p else p)
            for p in out.split(b">>\n") if p.strip()]


def _store_counts(path: Path) -> tuple[int, list[str]]:
    db = sqlite3.connect(path)
    try:
        n = db.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0]
        fields = [f for (f,) in db.execute("SELECT field FROM differences")]
    finally:
        db.close()
    return int(n), fields


def test_h2_over_tls_alpn(tmp_path: Path, cert: tuple[str, str]) -> None:
    """curl --http2 over TLS: ALPN picks h2, three streams on one connection; each answer is the
    primary's (its echo of the request it got, as HTTP/1.1), the candidate gets the mirrors with
    the marker, the store has the exchanges with no difference (the client's HTTP/2 is not one),
    and mirrored = eligible."""
    store = tmp_path / "s.db"
    with EchoServer("same") as p, EchoServer("same") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", store_path=str(store),
                        listen_tls=server_tls(*cert)) as r:
        urls = [f"https://localhost:{r.port}/a/{i}?q={i}" for i in range(3)]
        res = curl("--http2", "--cacert", cert[0], "--resolve", f"localhost:{r.port}:127.0.0.1",
                   "-H", "X-Client: 1", "-w", "<<%{http_version} %{http_code}>>\n", *urls)
        assert res.returncode == 0, res.stderr
        assert _writeout(res.stdout) == [("2", "200")] * 3
        r.wait_mirrored(3)
        st = r.proxy.stats
    bodies = _bodies(res.stdout)
    assert [b["target"] for b in bodies] == [f"/a/{i}?q={i}" for i in range(3)]
    by_target = {rec.target: rec for rec in p.records}
    for b in bodies:  # the client got exactly what the primary answered to what it received
        rec = by_target[str(b["target"])]
        assert json.dumps(b, separators=(",", ":")).encode() == describe(rec)
        assert rec.version == "1.1"
        assert rec.header("host") == f"localhost:{r.port}"
        assert rec.header("x-client") == "1"
        assert rec.header("x-tern-shadow") is None
    assert sorted(x.target for x in c.records) == sorted(by_target)
    assert all(x.header("x-tern-shadow") == "1" for x in c.records)
    assert st.eligible == st.mirrored == 3 and st.balanced()
    n, fields = _store_counts(store)
    assert n == 3 and fields == []


def test_h1_over_tls_and_h2c_prior_knowledge_body(tmp_path: Path, cert: tuple[str, str]) -> None:
    """HTTP/1.1 over TLS (ALPN http/1.1) still works; on a cleartext --h2c listener a 200 KiB
    POST over HTTP/2 with prior knowledge (past the 64 KiB stream window: flow control) reaches
    the primary and, with mirror_unsafe, the candidate whole; HTTP/1.1 on the same listener too."""
    body = bytes(range(256)) * 800
    (tmp_path / "body").write_bytes(body)
    with EchoServer("p") as p, EchoServer("c") as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         listen_tls=server_tls(*cert)) as r:
            res = curl("--http1.1", "-k", "-w", "<<%{http_version} %{http_code}>>\n",
                       f"https://127.0.0.1:{r.port}/tls1")
            assert _writeout(res.stdout) == [("1.1", "200")], res.stderr
            r.wait_mirrored(1)
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True,
                         options=ShadowOptions(mirror_unsafe=True)) as r:
            res = curl("--http2-prior-knowledge", "--data-binary", f"@{tmp_path / 'body'}",
                       "-w", "<<%{http_version} %{http_code}>>\n",
                       f"http://127.0.0.1:{r.port}/up")
            assert _writeout(res.stdout) == [("2", "200")], res.stderr
            res1 = curl("--http1.1", "-w", "<<%{http_version} %{http_code}>>\n",
                        f"http://127.0.0.1:{r.port}/plain")
            assert _writeout(res1.stdout) == [("1.1", "200")], res1.stderr
            r.wait_mirrored(2)
            st = r.proxy.stats
    up = [x for x in p.records if x.target == "/up"]
    assert len(up) == 1 and up[0].body == body and up[0].method == "POST"
    assert up[0].header("content-length") == str(len(body))
    assert _bodies(res.stdout)[0]["body_length"] == len(body)
    assert [x.body for x in c.records if x.target == "/up"] == [body]
    assert {x.target for x in c.records} == {"/tls1", "/up", "/plain"}
    assert st.eligible == st.mirrored == 2 and st.balanced()


def test_h2_many_streams_nghttp_and_unsafe_skipped() -> None:
    """nghttp with 40 concurrent streams: all answered by the primary and mirrored; a POST over
    HTTP/2 is not mirrored by default (skipped_unsafe) and the accounting balances."""
    with EchoServer("p") as p, EchoServer("c") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True) as r:
        res = subprocess.run(["nghttp", "-n", "-s", "-m", "40", "-t", "20",
                              f"http://127.0.0.1:{r.port}/many"], capture_output=True,
                             timeout=30, check=False)
        assert res.returncode == 0, res.stderr
        res2 = curl("--http2-prior-knowledge", "-d", "x=1", "-o", "/dev/null", "-w",
                    "<<%{http_version} %{http_code}>>\n", f"http://127.0.0.1:{r.port}/post")
        assert _writeout(res2.stdout) == [("2", "200")], res2.stderr
        r.wait_mirrored(40)
        st = r.proxy.stats
    assert len([x for x in p.records if x.target == "/many"]) == 40
    assert [x.target for x in p.records if x.method == "POST"] == ["/post"]
    assert len(c.records) == 40 and all(x.method == "GET" for x in c.records)
    assert st.eligible == 41 and st.mirrored == 40 and st.skipped_unsafe == 1 and st.balanced()


def test_h2_never_delayed_by_slow_candidate(cert: tuple[str, str]) -> None:
    """A candidate that never answers does not delay HTTP/2 answers: five streams in a row on
    one connection are all answered while no mirrored request has come back (no clock read).
    (TLS: curl 7.88 cannot reuse a prior-knowledge h2c connection, against nginx either.)"""
    with EchoServer("p") as p, RawServer(None, blackhole=True) as c, \
            ProxyRunner(f"http://{p.address}", c.url, listen_tls=server_tls(*cert),
                        options=ShadowOptions(candidate_timeout=60, drain_timeout=0.5)) as r:
        res = curl("--http2", "-k", "-w", "<<%{http_version} %{http_code}>>\n",
                   *(f"https://127.0.0.1:{r.port}/s{i}" for i in range(5)))
        assert _writeout(res.stdout) == [("2", "200")] * 5, res.stderr
        assert r.proxy.stats.mirrored == 0 and r.proxy.stats.pending == 5
        deadline = time.monotonic() + 10
        while len(c.conns) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        r.stop()
        st = r.proxy.stats
    assert len(p.records) == 5 and len(c.conns) == 5  # the candidate did get the mirrors
    assert st.eligible == 5 and st.dropped_shutdown == 5 and st.balanced()


def _frames(data: bytes) -> list[Frame]:
    out = []
    while len(data) >= 9:
        f, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        f.parse_body(memoryview(data[9:9 + length]))
        out.append(f)
        data = data[9 + length:]
    return out


def test_h2_flood_does_not_disturb_next_client() -> None:
    """A PING flood (3000 PINGs whose ACKs the client never reads) gets GOAWAY
    ENHANCE_YOUR_CALM and the connection closed; the next client is served and mirrored."""
    with EchoServer("p") as p, EchoServer("c") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True) as r:
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        flood = PREFACE + SettingsFrame(0).serialize() + b"".join(
            PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(3000))
        try:
            s.sendall(flood)
        except OSError:
            pass  # closed on us mid-send: that is the point
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
        s.close()
        goaway = [f for f in _frames(got) if isinstance(f, GoAwayFrame)]
        assert goaway and goaway[-1].error_code == 0xB
        res = curl("--http2-prior-knowledge", "-w", "<<%{http_version} %{http_code}>>\n",
                   f"http://127.0.0.1:{r.port}/after")
        assert _writeout(res.stdout) == [("2", "200")], res.stderr
        r.wait_mirrored(1)
        st = r.proxy.stats
    assert [x.target for x in p.records] == ["/after"] == [x.target for x in c.records]
    assert st.eligible == st.mirrored == 1 and st.balanced()


def test_h2_rapid_reset_flood_contained() -> None:
    """Rapid reset (CVE-2023-44487): 300 streams opened and reset at once get GOAWAY
    ENHANCE_YOUR_CALM; the streams that were started are aborted and still counted (the
    accounting balances), and the next client is served and mirrored."""
    import h2.config
    import h2.connection

    with EchoServer("p", behaviours=[Behaviour(delay=0.5)]) as p, EchoServer("c") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True) as r:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        for i in range(300):
            sid = 2 * i + 1
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                    (":authority", "x"), (":path", f"/f{i}")], end_stream=True)
            conn.reset_stream(sid)
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        try:
            s.sendall(conn.data_to_send())
        except OSError:
            pass
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not d:
                break
            got += d
        s.close()
        goaway = [f for f in _frames(got) if isinstance(f, GoAwayFrame)]
        assert goaway and goaway[-1].error_code == 0xB
        res = curl("--http2-prior-knowledge", "-w", "<<%{http_version} %{http_code}>>\n",
                   f"http://127.0.0.1:{r.port}/after")
        assert _writeout(res.stdout) == [("2", "200")], res.stderr
        deadline = time.monotonic() + 15
        while r.proxy.stats.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        st = r.proxy.stats
        assert st.pending == 0 and st.balanced(), st
        assert 1 < st.eligible <= 301 and st.mirrored == st.eligible
    assert "/after" in [x.target for x in c.records]


def test_h2_client_reset_of_slow_primary_stream(tmp_path: Path) -> None:
    """A client that resets a stream while the primary is slow: its primary connection is
    aborted, nothing is answered on it, the accounting still balances (the chosen request counts
    as mirrored, with its primary side an error) and the next stream is served."""
    import h2.config
    import h2.connection

    store = tmp_path / "s.db"
    with EchoServer("p", behaviours=[Behaviour(prefix="/slow", delay=1.0)]) as p, \
            EchoServer("c") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True,
                        store_path=str(store)) as r:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/slow")]
        conn.send_headers(1, hdrs, end_stream=True)
        s.sendall(conn.data_to_send())
        time.sleep(0.2)  # the request is with the primary
        conn.reset_stream(1)
        conn.send_headers(3, [*hdrs[:3], (":path", "/next")], end_stream=True)
        s.sendall(conn.data_to_send())
        status = None
        deadline = time.monotonic() + 10
        while status is None and time.monotonic() < deadline:
            data = s.recv(65536)
            assert data
            for ev in conn.receive_data(data):
                if type(ev).__name__ == "ResponseReceived" and ev.stream_id == 3:
                    status = dict(ev.headers)[b":status"]
                assert not (type(ev).__name__ == "ResponseReceived" and ev.stream_id == 1)
            s.sendall(conn.data_to_send())
        s.close()
        assert status == b"200"
        r.wait_mirrored(2)
        st = r.proxy.stats
    # the reset one was chosen before the reset: it is mirrored as HTTP/1.x requests whose
    # client went away are, but with no primary answer it is not compared
    assert sorted(x.target for x in c.records) == ["/next", "/slow"]
    assert st.eligible == st.mirrored == 2 and st.balanced()
    assert st.primary_errors == 0  # a client's reset is not the primary's failure
    n, _ = _store_counts(store)
    assert n == 1


def test_tls_upstreams_verified_by_default(cert: tuple[str, str]) -> None:
    """https:// primary and candidate: a self-signed certificate is refused by default (502, a
    primary error, never a traceback), accepted with its CA given, or with verification off; the
    answer reaches an HTTP/2 client and the candidate gets the mirror over TLS."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    with RawServer(RAW, tls=ctx) as p, RawServer(RAW, tls=ctx) as c:
        with ProxyRunner(p.url, c.url, h2c=True) as r:
            res = curl("--http2-prior-knowledge", "-w", "<<%{http_version} %{http_code}>>\n",
                       "-o", "/dev/null", f"http://127.0.0.1:{r.port}/v")
            assert _writeout(res.stdout) == [("2", "502")], res.stderr
            assert r.proxy.stats.primary_errors == 1
        for up in (make_upstream_tls(cafile=cert[0]), make_upstream_tls(verify=False)):
            before = len(c.requests)
            with ProxyRunner(p.url, c.url, h2c=True, upstream_tls=up) as r:
                res = curl("--http2-prior-knowledge", "-D", "-",
                           f"http://127.0.0.1:{r.port}/v")
                assert res.returncode == 0, res.stderr
                assert res.stdout.startswith(b"HTTP/2 200")
                assert b"x-up: raw" in res.stdout and res.stdout.endswith(b"\r\n\r\nhello")
                r.wait_mirrored(1)
                assert r.proxy.stats.candidate_errors == 0
            assert len(c.requests) == before + 1
            assert b"X-Tern-Shadow: 1" in c.requests[-1]


def _tern(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrate.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, check=False)


def test_cli_tls_errors(tmp_path: Path, cert: tuple[str, str]) -> None:
    """Bad TLS options: a clear message and exit 2, no traceback."""
    base = ["shadow", "--listen", "127.0.0.1:0", "--primary", "http://127.0.0.1:1",
            "--candidate", "http://127.0.0.1:2", "--store", str(tmp_path / "s.db")]
    for extra, words in (
            (["--tls-cert", str(tmp_path / "none.crt"), "--tls-key", cert[1]], "none.crt"),
            (["--tls-cert", cert[0], "--tls-key", cert[0]], cert[0]),
            (["--tls-cert", cert[0]], "--tls-key"),
            (["--upstream-ca", str(tmp_path / "ca.pem")], "ca.pem"),
            (["--quic"], "--quic needs --tls-cert")):
        res = _tern(*base, *extra)
        assert res.returncode == 2, res
        assert words in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_cli_shadow_tls_h2_end_to_end(tmp_path: Path, cert: tuple[str, str]) -> None:
    """``tern shadow --tls-cert --tls-key --quic`` as a process, curl --http2 and an HTTP/3
    client through it: the answers are the primary's, the store has the exchanges and the
    counters balance."""
    import asyncio

    from tests.protocol.h3_client import h3_connect

    store = tmp_path / "s.db"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with EchoServer("same") as p, EchoServer("same") as c:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrate.cli", "shadow", "--listen", f"127.0.0.1:{port}",
             "--primary", f"http://{p.address}", "--candidate", f"http://{c.address}",
             "--store", str(store), "--tls-cert", cert[0], "--tls-key", cert[1],
             "--quic", "--duration", "20"], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            res = curl("--http2", "-k", "-w", "<<%{http_version} %{http_code}>>\n",
                       f"https://127.0.0.1:{port}/cli")
            assert _writeout(res.stdout) == [("2", "200")], res.stderr

            async def h3() -> object:
                async with h3_connect(port, Path(cert[0])) as cl:
                    return await cl.request("GET", "/cli3")

            resp3 = asyncio.run(h3())
            assert resp3.status == 200  # type: ignore[attr-defined]
            assert json.loads(resp3.body)["target"] == "/cli3"  # type: ignore[attr-defined]
            deadline = time.monotonic() + 10
            while len(c.records) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            proc.send_signal(2)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "2 requests, 2 eligible, 2 mirrored, 0 dropped, 0 skipped" in err
    assert _bodies(res.stdout)[0]["server"] == "same"
    assert sorted(x.target for x in c.records) == ["/cli", "/cli3"]
    n, fields = _store_counts(store)
    assert n == 2 and fields == []


def test_h2_back_pressure_window_closed_pauses_the_primary() -> None:
    """A client that opens no window past the first 64 KiB: the proxy stops reading the primary
    (its answer stays in the primary, the proxy holds a bounded amount) instead of buffering the
    16 MiB; once the client opens its windows, the whole answer arrives, byte for byte."""
    import h2.config
    import h2.connection
    import h2.events

    size = 16 << 20
    payload = bytes(range(251)) * (size // 251) + b"x" * (size % 251)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + payload
    with RawServer(raw) as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True) as r:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                              (":path", "/big")], end_stream=True)
        s.sendall(conn.data_to_send())
        got = bytearray()
        ended = False

        def pump(seconds: float, ack: bool) -> None:
            nonlocal ended
            s.settimeout(0.2)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not ended:
                try:
                    data = s.recv(1 << 20)
                except TimeoutError:
                    continue
                assert data
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        got.extend(ev.data)
                        if ack:
                            conn.acknowledge_received_data(ev.flow_controlled_length,
                                                           ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        ended = True
                s.sendall(conn.data_to_send())

        pump(1.5, ack=False)
        assert len(got) <= 65535 and not ended
        fronts = list(r.proxy._fronts)
        assert len(fronts) == 1
        stream = fronts[0].streams[1]
        assert stream.up_paused  # the primary's connection is not read
        held = fronts[0].adapter.buffered(1)
        assert held < 4 << 20, held  # bounded, far from the 16 MiB
        conn.increment_flow_control_window(1 << 30)
        conn.increment_flow_control_window(1 << 30, stream_id=1)
        s.sendall(conn.data_to_send())
        pump(60, ack=True)
        s.close()
        assert ended
        r.wait_mirrored(1)
    assert bytes(got) == payload


def test_h3_quic_streams_mirrored(tmp_path: Path, cert: tuple[str, str]) -> None:
    """HTTP/3 (aioquic client) on the listener's port over UDP: five concurrent GETs answered
    by the primary and mirrored (no difference in the store), a 200 KB POST (past the 64 KiB
    stream window) reaches the primary whole and is not mirrored by default, a malformed
    request resets its stream only and the next one is served; the accounting balances."""
    import asyncio

    from shadow.h3front import quic_configuration
    from tests.protocol.h3_client import h3_connect

    store = tmp_path / "s.db"
    post_body = bytes(range(200)) * 1000
    with EchoServer("same") as p, EchoServer("same") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", store_path=str(store),
                        listen_tls=server_tls(*cert), quic=quic_configuration(*cert)) as r:
        async def go() -> tuple[list[object], object, object, object]:
            async with h3_connect(r.port, Path(cert[0])) as cl:
                rs = await asyncio.gather(*(cl.request("GET", f"/q/{i}") for i in range(5)))
                post = await cl.request("POST", "/p", body=post_body, timeout=20)
                bad = await cl.response(cl.send_request("GET", "/bad", raw=[
                    (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost"),
                    (b":path", b"/bad"), (b"Bad", b"x")]))
                after = await cl.request("GET", "/after")
                return list(rs), post, bad, after

        rs, post, bad, after = asyncio.run(go())
        r.wait_mirrored(6)
        st = r.proxy.stats
    by_target = {rec.target: rec for rec in p.records}
    for i, resp in enumerate(rs):
        assert resp.status == 200  # type: ignore[attr-defined]
        assert resp.body == describe(by_target[f"/q/{i}"])  # type: ignore[attr-defined]
        assert by_target[f"/q/{i}"].version == "1.1"
    assert post.status == 200  # type: ignore[attr-defined]
    assert by_target["/p"].body == post_body
    assert bad.reset is not None and "/bad" not in by_target  # type: ignore[attr-defined]
    assert after.status == 200  # type: ignore[attr-defined]
    assert sorted(x.target for x in c.records) == sorted([f"/q/{i}" for i in range(5)]
                                                         + ["/after"])
    assert all(x.header("x-tern-shadow") == "1" for x in c.records)
    assert st.eligible == 7 and st.mirrored == 6 and st.skipped_unsafe == 1 and st.balanced()
    n, fields = _store_counts(store)
    assert n == 6 and fields == []


def test_h2_upload_to_stalled_primary_held_by_flow_control() -> None:
    """A primary that never reads: an HTTP/2 upload of 32 MiB is held by the client's windows
    (the proxy gives bytes back only as the primary's connection takes them), not buffered."""
    import h2.config
    import h2.connection
    import h2.events

    with RawServer(None, blackhole=True) as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True,
                        options=ShadowOptions(mirror_unsafe=True)) as r:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        total = 32 << 20
        conn.send_headers(1, [(":method", "PUT"), (":scheme", "http"), (":authority", "x"),
                              (":path", "/up"), ("content-length", str(total))])
        s.sendall(conn.data_to_send())
        sent = 0
        s.settimeout(0.02)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < total:
            room = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size,
                       total - sent)
            if room > 0:
                conn.send_data(1, b"u" * room)
                sent += room
                s.sendall(conn.data_to_send())
                continue
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            assert data
            conn.receive_data(data)
            s.sendall(conn.data_to_send())
        # what waits in the proxy for the primary: about the transport's high-water mark (the
        # rest of what the client could send sits in the kernel's socket buffers)
        waiting = [u.transport.get_write_buffer_size() for u in list(r.proxy.primary._all)
                   if u.transport is not None]
        s.close()
    assert 0 < sent < total, sent
    assert len(waiting) == 1 and waiting[0] <= 192 << 10, waiting


def test_nginx_https_primary_and_candidate(tmp_path: Path, cert: tuple[str, str]) -> None:
    """Debian's nginx as an https:// primary and an https:// candidate (verified with the CA
    made in the test), HTTP/2 clients in front: the client gets nginx's primary answer, the
    store records the candidate's real difference (and nothing about the HTTP version)."""
    from tests.support.nginx import free_port, run_nginx

    pp = free_port()
    cp = free_port(exclude=(pp,))
    conf = f"""
events {{}}
http {{
    ssl_certificate {cert[0]};
    ssl_certificate_key {cert[1]};
    default_type text/plain;
    server {{ listen 127.0.0.1:{pp} ssl; server_name localhost;
        location / {{ return 200 "answer $request_uri $server_protocol\\n"; }} }}
    server {{ listen 127.0.0.1:{cp} ssl; server_name localhost;
        location / {{ return 200 "answer $request_uri $server_protocol\\n"; }}
        location /changed {{ return 200 "changed\\n"; }} }}
}}
"""
    store = tmp_path / "s.db"
    with run_nginx(conf, tmp_path / "ngx"), \
            ProxyRunner(f"https://localhost:{pp}", f"https://localhost:{cp}",
                        store_path=str(store), listen_tls=server_tls(*cert),
                        upstream_tls=make_upstream_tls(cafile=cert[0])) as r:
        res = curl("--http2", "--cacert", cert[0], "--resolve",
                   f"localhost:{r.port}:127.0.0.1", "-w", "<<%{http_version} %{http_code}>>\n",
                   f"https://localhost:{r.port}/same", f"https://localhost:{r.port}/changed")
        assert _writeout(res.stdout) == [("2", "200")] * 2, res.stderr
        r.wait_mirrored(2)
        st = r.proxy.stats
    assert res.stdout.startswith(b"answer /same HTTP/1.1\n")  # nginx was asked over HTTP/1.1
    assert b"answer /changed HTTP/1.1\n" in res.stdout
    assert st.mirrored == 2 and st.candidate_errors == 0 and st.primary_errors == 0
    n, fields = _store_counts(store)
    assert n == 2
    assert "body" in fields and all(f.startswith(("body", "header:content-length"))
                                    for f in fields), fields


def test_replay_https_upstreams(tmp_path: Path, cert: tuple[str, str]) -> None:
    """``tern replay`` to https:// primary and candidate, verified with ``--upstream-ca``; the
    two TLS options together are refused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    src = tmp_path / "cap.jsonl"
    src.write_text('{"url": "/r1", "host": "a.example"}\n')
    with RawServer(RAW, tls=ctx) as p, RawServer(RAW, tls=ctx) as c:
        res = _tern("replay", str(src), "--primary", p.url, "--candidate", c.url, "--store",
                    str(tmp_path / "s.db"), "--upstream-ca", cert[0], "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["sent"] == 1 and out["analysed"] == 1 and out["differing"] == 0, out
        assert p.requests and c.requests and p.requests[0].startswith(b"GET /r1 HTTP/1.1")
        bad = _tern("replay", str(src), "--primary", p.url, "--candidate", c.url, "--store",
                    str(tmp_path / "s2.db"), "--upstream-ca", cert[0], "--insecure-upstream")
        assert bad.returncode == 2 and "exclude each other" in bad.stderr


def test_h2_primary_failures() -> None:
    """The primary resetting before its head: 502 on that stream; cutting its body short: that
    stream is reset (the client sees the cut, not a short answer taken as whole); the
    connection and the next stream go on."""
    import h2.config
    import h2.connection
    import h2.events

    from shadow.echo import Action

    with EchoServer("p", behaviours=[Behaviour(prefix="/reset", action=Action.RESET),
                                     Behaviour(prefix="/cut", body=b"z" * 100000,
                                               action=Action.CLOSE_MID_RESPONSE)]) as p, \
            EchoServer("c") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True) as r:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        for sid, path in ((1, "/reset"), (3, "/cut"), (5, "/fine")):
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                    (":authority", "x"), (":path", path)], end_stream=True)
        s.sendall(conn.data_to_send())
        status: dict[int, bytes] = {}
        body: dict[int, int] = {1: 0, 3: 0, 5: 0}
        outcome: dict[int, str] = {}
        deadline = time.monotonic() + 10
        while len(outcome) < 3 and time.monotonic() < deadline:
            data = s.recv(65536)
            assert data
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body[ev.stream_id] += len(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    outcome[ev.stream_id] = "ended"
                elif isinstance(ev, h2.events.StreamReset):
                    outcome[ev.stream_id] = "reset"
            s.sendall(conn.data_to_send())
        s.close()
        r.wait_mirrored(3)
        st = r.proxy.stats
    assert status[1] == b"502" and outcome[1] == "ended"
    assert status[3] == b"200" and outcome[3] == "reset" and body[3] < 100000
    assert status[5] == b"200" and outcome[5] == "ended"
    assert st.primary_errors == 2 and st.eligible == st.mirrored == 3 and st.balanced()


def test_h2_idle_client_closed() -> None:
    """An HTTP/2 client that opens no stream (``client_header_timeout``, as nginx), or none
    after its last one (``client_idle_timeout``), is sent GOAWAY NO_ERROR and closed (waits
    bounded, no clock asserted)."""
    with EchoServer("p") as p, EchoServer("c") as c, \
            ProxyRunner(f"http://{p.address}", f"http://{c.address}", h2c=True,
                        options=ShadowOptions(client_idle_timeout=0.3,
                                              client_header_timeout=0.3)) as r:
        for with_request in (False, True):
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            s.sendall(PREFACE + SettingsFrame(0).serialize())
            if with_request:
                import h2.config
                import h2.connection
                conn = h2.connection.H2Connection(
                    h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                conn.clear_outbound_data_buffer()  # the preface went already
                conn.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "x"), (":path", "/i")], end_stream=True)
                s.sendall(conn.data_to_send())
            got = b""
            while True:
                d = s.recv(65536)  # the 10 s socket timeout bounds the wait
                if not d:
                    break
                got += d
            s.close()
            frames = _frames(got)
            goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
            assert goaway and goaway[-1].error_code == 0, frames
            assert any(isinstance(f, HeadersFrame) for f in frames) == with_request
        r.wait_mirrored(1)
    assert [x.target for x in p.records] == ["/i"]
