"""Invariants of ``tern shadow`` (DESIGN.md §6), each its own test, on real sockets."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from shadow.echo import Action, Behaviour, EchoServer
from shadow.mirror import MirrorStats, ShadowOptions
from tests.shadow_support import ProxyRunner, RawServer, client, get, read_response

RAW_CL = (b"HTTP/1.1 200 OK\r\nx-lower: a\r\nContent-Type: text/plain\r\nSERVER: odd\r\n"
          b"Set-Cookie: b=2\r\nSet-Cookie: a=1\r\nContent-Length: 5\r\n\r\nhello")
RAW_CHUNKED = (b"HTTP/1.1 201 Created Here\r\nTransfer-Encoding: chunked\r\nX-B: 1\r\n\r\n"
               b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")


def _direct(port: int, request: bytes) -> bytes:
    with client(port) as s:
        s.sendall(request)
        return read_response(s)


@pytest.mark.parametrize("raw", [RAW_CL, RAW_CHUNKED], ids=["content-length", "chunked"])
def test_primary_response_byte_for_byte(raw: bytes) -> None:
    """The client gets exactly the bytes the primary sent: status line, header case and order,
    duplicate headers, chunk framing with extensions."""
    req = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: 1\r\n\r\n"
    with RawServer(raw) as primary, EchoServer("c") as cand:
        direct = _direct(primary.port, req)
        with ProxyRunner(primary.url, f"http://{cand.address}") as r:
            via = _direct(r.port, req)
            r.wait_mirrored(1)
        assert via == direct == raw
        # and the primary received the client's request unchanged
        assert primary.requests[-1] == primary.requests[0] == req


def test_request_reaches_primary_unchanged_with_body() -> None:
    """Header order and case reach the primary as sent, and the body with the client's framing
    (streamed: chunked stays chunked, Content-Length stays); the candidate gets the same body."""
    with EchoServer("p") as p, EchoServer("c") as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         options=ShadowOptions(mirror_unsafe=True)) as r, client(r.port) as s:
            s.sendall(b"POST /u HTTP/1.1\r\nHost: h\r\nx-B: 2\r\nX-a: 1\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            read_response(s)
            s.sendall(b"PUT /v HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nwxyz")
            read_response(s)
            r.wait_mirrored(2)
        rec = p.records[0]
        assert rec.headers == ((b"Host", b"h"), (b"x-B", b"2"), (b"X-a", b"1"),
                               (b"Transfer-Encoding", b"chunked"))
        assert rec.body == b"abc"
        assert rec.header("x-tern-shadow") is None
        assert p.records[1].headers == ((b"Host", b"h"), (b"Content-Length", b"4"))
        assert p.records[1].body == b"wxyz"
        assert sorted(x.body for x in c.records) == [b"abc", b"wxyz"]


def test_never_delayed_by_slow_candidate_keepalive() -> None:
    """A candidate that takes 2 s does not delay the answer, nor the next request on the same
    keep-alive connection."""
    with EchoServer("p") as p, EchoServer("c", behaviours=[Behaviour(delay=2.0)]) as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}") as r:
            with client(r.port) as s:
                times = []
                for i in range(3):
                    t = time.perf_counter()
                    s.sendall(f"GET /k{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    read_response(s)
                    times.append(time.perf_counter() - t)
            assert max(times) < 0.5, times
            r.wait_mirrored(3, timeout=15)
            assert r.proxy.stats.candidate_errors == 0


def _failing_candidate_case(cand_url: str, opts: ShadowOptions) -> MirrorStats:
    with EchoServer("p") as p:
        with ProxyRunner(f"http://{p.address}", cand_url, options=opts) as r:
            for i in range(4):
                t = time.perf_counter()
                out = get(r.port, f"/f{i}")
                assert out.startswith(b"HTTP/1.1 200 OK\r\n")
                assert time.perf_counter() - t < 0.5
            r.wait_mirrored(4, timeout=15)
            stats = r.proxy.stats
        assert len(p.records) == 4
        return stats


def test_candidate_dead() -> None:
    """Nothing listens on the candidate's port: clients are unaffected, errors counted."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    stats = _failing_candidate_case(f"http://127.0.0.1:{port}", ShadowOptions())
    assert stats.candidate_errors == 4 and stats.mirrored == 4


def test_candidate_black_holed() -> None:
    """A candidate that accepts and never answers: clients are unaffected, timeouts counted."""
    with RawServer(None, blackhole=True) as hole:
        stats = _failing_candidate_case(hole.url, ShadowOptions(candidate_timeout=0.5))
    assert stats.candidate_errors == 4


@pytest.mark.parametrize("action", [Action.RESET, Action.CLOSE_MID_RESPONSE])
def test_candidate_resetting(action: Action) -> None:
    """A candidate that resets or cuts its answers short: counted, clients unaffected."""
    with EchoServer("c", behaviours=[Behaviour(action=action)]) as c:
        stats = _failing_candidate_case(f"http://{c.address}", ShadowOptions())
    assert stats.candidate_errors == 4


def test_candidate_erroring(tmp_path: Path) -> None:
    """A candidate answering 500: clients unaffected; stored as a status difference."""
    with EchoServer("p") as p, EchoServer("c", behaviours=[Behaviour(status=500)]) as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         store_path=str(tmp_path / "s.db")) as r:
            assert get(r.port, "/e").startswith(b"HTTP/1.1 200")
            r.wait_mirrored(1)
    db = sqlite3.connect(tmp_path / "s.db")
    fields = {f for (f,) in db.execute("SELECT field FROM differences")}
    db.close()
    assert "status" in fields


def test_overload_accounting_exact() -> None:
    """A black-holed candidate with a tiny queue: drops happen, and afterwards
    mirrored + dropped + skipped = eligible exactly."""
    opts = ShadowOptions(queue_size=2, concurrency=2, candidate_timeout=0.3, drain_timeout=0.1)
    with RawServer(None, blackhole=True) as hole, EchoServer("p") as p:
        with ProxyRunner(f"http://{p.address}", hole.url, options=opts) as r:
            for i in range(30):
                get(r.port, f"/o{i}", method="POST" if i % 5 == 0 else "GET")
            r.stop()
            st = r.proxy.stats
    assert st.eligible == 30
    assert st.skipped_unsafe == 6
    assert st.dropped_queue > 0
    assert st.pending == 0
    assert st.mirrored + st.dropped + st.skipped == st.eligible
    assert st.balanced()


def test_unsafe_methods_not_mirrored_by_default() -> None:
    """POST/PUT/DELETE go to the primary only, unless mirror_unsafe."""
    with EchoServer("p") as p, EchoServer("c") as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}") as r:
            for m in ("POST", "PUT", "DELETE", "PATCH"):
                get(r.port, "/u", method=m, body=b"x")
            get(r.port, "/u")
            r.wait_mirrored(1)
            assert r.proxy.stats.skipped_unsafe == 4
        assert [x.method for x in c.records] == ["GET"]
        assert len(p.records) == 5
        c.clear()
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         options=ShadowOptions(mirror_unsafe=True)) as r:
            get(r.port, "/u", method="POST", body=b"data")
            r.wait_mirrored(1)
        assert [(x.method, x.body) for x in c.records] == [("POST", b"data")]


def test_sampling() -> None:
    """--sample 0 mirrors nothing; --sample 0.5 mirrors about half; all counted."""
    with EchoServer("p") as p, EchoServer("c") as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         options=ShadowOptions(sample=0.0)) as r:
            for _ in range(10):
                get(r.port, "/s")
        assert c.records == [] and r.proxy.stats.skipped_sampled == 10
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         options=ShadowOptions(sample=0.5)) as r:
            r.proxy._rand = random.Random(7)
            for _ in range(100):
                get(r.port, "/s")
            r.stop()
            st = r.proxy.stats
        assert 25 < st.mirrored < 75
        assert st.mirrored + st.skipped_sampled == 100 == st.eligible


def test_marker_header() -> None:
    """Mirrored requests carry X-Tern-Shadow: 1; the primary never sees it."""
    with EchoServer("p") as p, EchoServer("c") as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}") as r:
            get(r.port, "/m")
            r.wait_mirrored(1)
        assert c.records[0].header("X-Tern-Shadow") == "1"
        assert p.records[0].header("X-Tern-Shadow") is None


def _noisy_answer(req: bytes) -> bytes:
    body = json.dumps({"id": str(uuid.uuid4()), "ts": time.time(), "name": "widget",
                       "path": req.split(b" ")[1].decode()}).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: "
            + uuid.uuid4().hex.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def test_noise_learned_from_secondary(tmp_path: Path) -> None:
    """Random ids and timestamps differ between two primaries: they are noise, not
    differences; a real change on the candidate still is a difference."""
    def changed(req: bytes) -> bytes:
        return _noisy_answer(req).replace(b'"widget"', b'"gadget"') if b"/chg" in req \
            else _noisy_answer(req)

    store = tmp_path / "s.db"
    with RawServer(_noisy_answer) as p, RawServer(_noisy_answer) as sec, \
            RawServer(changed) as cand:
        with ProxyRunner(p.url, cand.url, secondary=sec.url, store_path=str(store)) as r:
            for i in range(5):
                get(r.port, f"/item/{i}")
            get(r.port, "/chg")
            r.wait_mirrored(6)
    db = sqlite3.connect(store)
    real = {f for (f,) in db.execute(
        "SELECT field FROM differences WHERE verdict = 'difference'")}
    noise = {f for (f,) in db.execute("SELECT field FROM differences WHERE verdict = 'noise'")}
    learned = dict(db.execute("SELECT field, count FROM noise WHERE route = 'GET /item/{id}'"))
    db.close()
    assert real == {"body:$.name"}
    assert {"body:$.id", "body:$.ts", "header:x-request-id"} <= noise
    assert learned["body:$.id"] == 5


def test_stop_ends_every_worker_even_if_a_cancellation_is_swallowed() -> None:
    """A worker whose cancellation is swallowed by something it awaits (Python 3.11's
    asyncio.wait_for does that when its inner future completes as the cancellation arrives,
    CPython gh-86296; this is why stop() used to hang) still ends: it does not go back to
    sleep on the queue."""
    import asyncio

    from shadow.mirror import _Job

    entered: list[_Job] = []

    async def swallowing(job: _Job) -> None:
        entered.append(job)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # what wait_for did: the result instead of the cancellation

    opts = ShadowOptions(concurrency=2, drain_timeout=0.2)
    with EchoServer("p") as p, EchoServer("c") as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}", options=opts) as r:
            r.proxy._mirror = swallowing  # type: ignore[method-assign]
            get(r.port, "/w")
            deadline = time.monotonic() + 5
            while not entered and time.monotonic() < deadline:
                time.sleep(0.01)
            assert entered
            r.stop()
            assert all(w.done() for w in r.proxy._workers), r.proxy._workers
            st = r.proxy.stats
    assert st.pending == 0 and st.balanced() and st.dropped_shutdown == 1


def test_stop_mid_mirror_many_times() -> None:
    """stop() at arbitrary points of mirroring (queued, in flight, primary still answering):
    every worker has ended afterwards and the accounting balances, every time."""
    opts = ShadowOptions(concurrency=3, queue_size=8, drain_timeout=0.0)
    with EchoServer("p") as p, EchoServer("c") as c:
        for i in range(15):
            with ProxyRunner(f"http://{p.address}", f"http://{c.address}", options=opts) as r:
                for j in range(i % 4 + 1):
                    get(r.port, f"/s{i}-{j}")
                r.stop()
                assert all(w.done() for w in r.proxy._workers), (i, r.proxy._workers)
                st = r.proxy.stats
                assert st.pending == 0 and st.balanced(), (i, st)
                assert st.eligible == i % 4 + 1


def test_back_pressure_slow_primary_pauses_the_client() -> None:
    """The body streams to the primary as it comes; while the primary takes no bytes the proxy
    stops reading the client (it does not buffer the body), the mirror's tee stays bounded
    (the body is over it: skipped_body), and once the primary reads, every byte arrives."""
    import asyncio
    import hashlib
    import socket
    import threading

    total, piece = 64 << 20, 1 << 20
    data = bytes(range(256)) * (piece // 256)
    expected = hashlib.sha256(data * (total // piece)).hexdigest()
    release = threading.Event()
    got: dict[str, object] = {}
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def primary() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            got["head"] = head
            release.wait(30)  # slow: takes no body bytes until released
            h, n = hashlib.sha256(rest), len(rest)
            while n < total:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            got["n"], got["sha"] = n, h.hexdigest()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    sent = [0]

    def sender(s: socket.socket) -> None:
        s.sendall(b"PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // piece):
            s.sendall(data)
            sent[0] += piece

    threads = [threading.Thread(target=primary, daemon=True)]
    threads[0].start()
    opts = ShadowOptions(mirror_unsafe=True, max_body=1 << 20)
    with RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as cand:
        with ProxyRunner(f"http://127.0.0.1:{srv.getsockname()[1]}", cand.url,
                         options=opts) as r, client(r.port) as s:
            threads.append(threading.Thread(target=sender, args=(s,), daemon=True))
            threads[1].start()
            last, still = -1, time.monotonic()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and time.monotonic() - still < 0.5:
                if sent[0] != last:
                    last, still = sent[0], time.monotonic()
                time.sleep(0.02)

            async def snapshot() -> dict[str, object]:
                (front,) = r.proxy._fronts
                cur = front.cur
                assert cur is not None and cur.stream is not None
                conn = cur.stream.conn
                assert conn is not None and conn.transport is not None
                return {"paused": front.reading_paused, "blocked": front.upstream_blocked,
                        "buffered": conn.transport.get_write_buffer_size(),
                        "waiting": cur.stream.waiting_size, "tee": sum(map(len, cur.body)),
                        "tee_over": cur.tee_over}

            snap = asyncio.run_coroutine_threadsafe(snapshot(), r.loop).result(5)
            assert sent[0] < total, sent  # the client is held back...
            assert snap["paused"] and snap["blocked"], snap  # ...because the proxy stopped
            assert isinstance(snap["buffered"], int) and snap["buffered"] < 1 << 20, snap
            assert snap["waiting"] == 0 and snap["tee"] == 0 and snap["tee_over"], snap
            release.set()
            threads[1].join(30)
            assert read_response(s, timeout=30).endswith(b"\r\n\r\nok")
            r.stop()
            st = r.proxy.stats
    threads[0].join(5)
    srv.close()
    assert got["n"] == total and got["sha"] == expected
    assert isinstance(got["head"], bytes) and got["head"].endswith(b"Content-Length: %d" % total)
    assert st.skipped_body == 1 and st.eligible == 1 and st.balanced()


def test_back_pressure_slow_client_pauses_the_primary() -> None:
    """A client that does not read: the proxy stops reading the primary's connection instead of
    buffering its answer, and does not count that as an idle primary; once the client reads,
    the whole answer arrives, byte for byte."""
    import asyncio
    import hashlib
    import socket
    import threading

    total, piece = 64 << 20, 1 << 20
    data = bytes(range(256)) * (piece // 256)
    expected = hashlib.sha256(data * (total // piece)).hexdigest()
    sent = [0]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def primary() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            with contextlib.suppress(OSError):
                for _ in range(total // piece):
                    conn.sendall(data)
                    sent[0] += piece
                conn.recv(1)

    t = threading.Thread(target=primary, daemon=True)
    t.start()
    opts = ShadowOptions(primary_timeout=1.0)
    with ProxyRunner(f"http://127.0.0.1:{srv.getsockname()[1]}", "http://127.0.0.1:9",
                     options=opts, mirror=False) as r, client(r.port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        last, still = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and time.monotonic() - still < 0.5:
            if sent[0] != last:
                last, still = sent[0], time.monotonic()
            time.sleep(0.02)

        async def snapshot() -> dict[str, object]:
            (front,) = r.proxy._fronts
            assert front.transport is not None and front.upstream is not None
            return {"blocked": front.client_blocked, "paused": front.upstream_paused,
                    "reading": front.upstream.is_reading(),
                    "buffered": front.transport.get_write_buffer_size()}

        snap = asyncio.run_coroutine_threadsafe(snapshot(), r.loop).result(5)
        assert sent[0] < total, sent  # the primary is held back...
        assert snap["blocked"] and snap["paused"] and not snap["reading"], snap  # ...by us
        assert isinstance(snap["buffered"], int) and snap["buffered"] < 1 << 20, snap
        time.sleep(1.5)  # longer than primary_timeout: a paused primary is not idle
        h, n = hashlib.sha256(), 0
        s.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        head, _, rest = head.partition(b"\r\n\r\n")
        h.update(rest)
        n = len(rest)
        while n < total:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert n == total and h.hexdigest() == expected
    t.join(5)
    srv.close()


def test_streamed_body_replayed_on_a_stale_kept_alive_connection() -> None:
    """The primary drops a kept-alive connection just as the next request comes on it (it reads
    the request and closes without answering): that request, with a body, is sent again,
    whole, on a fresh connection."""
    import socket
    import threading

    answered: list[bytes] = []
    dropped: list[bytes] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def read_request(conn: socket.socket) -> bytes | None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        while len(rest) < n:
            rest += conn.recv(65536)
        return rest

    def primary() -> None:
        for _ in range(2):
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                body = read_request(conn)
                assert body is not None
                answered.append(body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                late = read_request(conn)  # the next one on this connection: dropped
                if late is not None:
                    dropped.append(late)

    t = threading.Thread(target=primary, daemon=True)
    t.start()
    with ProxyRunner(f"http://127.0.0.1:{srv.getsockname()[1]}", "http://127.0.0.1:9",
                     mirror=False) as r:
        assert get(r.port, "/one", method="POST", body=b"first").endswith(b"ok")
        assert get(r.port, "/two", method="POST", body=b"second body").endswith(b"ok")
        r.stop()
    t.join(5)
    srv.close()
    assert answered == [b"first", b"second body"]
    assert dropped == [b"second body"]  # it did go out on the stale connection first
