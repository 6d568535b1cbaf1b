"""HTTP/3 client timeouts of ``tern shadow --quic`` (keepalive_timeout, keepalive_requests,
client_body_timeout, send_timeout), with aioquic's client over UDP on 127.0.0.1.

Debian's nginx 1.22.1 has no HTTP/3, so nothing here is compared with nginx: the behaviour
follows nginx 1.25's documented directives (the ones ``tern serve`` applies to HTTP/3, see
docs/protocols.md): a connection without a request in progress is closed with H3_NO_ERROR after
keepalive_timeout, the keepalive_requests-th request goes with a GOAWAY and the connection
closes once it is done, a stalled request body or an answer the client does not acknowledge
resets that stream only. Timeouts are short; every wait is bounded; elapsed times are only
checked as lower bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioquic.h3.connection import ErrorCode

from shadow.echo import EchoServer
from shadow.h3front import quic_configuration
from shadow.mirror import ShadowOptions, server_tls
from tests.protocol.h3_client import H3Client, client_config
from tests.shadow_support import ProxyRunner, make_cert
from tests.test_shadow_timeouts import Primary, _wait

EPS = 0.01
"""Timer granularity allowed in the lower bounds."""


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert(tmp_path_factory.mktemp("certs"))


class Rig:
    def __init__(self, primary: Primary, runner: ProxyRunner, cert: tuple[str, str]) -> None:
        self.primary = primary
        self.runner = runner
        self.cert = cert

    @property
    def stats(self) -> Any:
        return self.runner.proxy.stats


@pytest.fixture
def rig(request: pytest.FixtureRequest, cert: tuple[str, str]) -> Iterator[Rig]:
    opts = getattr(request, "param", {})
    options = ShadowOptions(**{"client_idle_timeout": 1.0, "client_body_timeout": 0.6,
                               "send_timeout": 0.6, "mirror_unsafe": True, **opts})
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", options=options,
                        listen_tls=server_tls(*cert), quic=quic_configuration(*cert)) as r:
        yield Rig(p, r, cert)


class DeafClient(H3Client):
    """An HTTP/3 client that can stop taking datagrams (nothing acknowledged, nothing read)."""

    deaf = False

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if not self.deaf:
            super().datagram_received(data, addr)


def _connect(rig: Rig, protocol: type[H3Client] = H3Client) -> Any:
    from aioquic.asyncio.client import connect

    return connect("127.0.0.1", rig.runner.port,
                   configuration=client_config(Path(rig.cert[0])), create_protocol=protocol,
                   wait_connected=True)


async def _until(cond: Any, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return bool(cond())


def test_idle_connection_closed(rig: Rig) -> None:
    """After its answer, a connection that opens no other stream is closed with H3_NO_ERROR
    once keepalive_timeout has passed (not before); so is one that never opens a stream."""
    async def go() -> list[tuple[Any, Any, float]]:
        out = []
        for path in ("/a", None):
            async with _connect(rig) as cl:
                resp = await cl.request("GET", path) if path else None
                since = time.monotonic()
                await asyncio.wait_for(cl.closed_event.wait(), 10)
                out.append((resp, cl.terminated, time.monotonic() - since))
        return out

    results = asyncio.run(go())
    for _resp, terminated, waited in results:
        assert terminated is not None and terminated.error_code == ErrorCode.H3_NO_ERROR
        assert waited >= 1.0 - EPS
    assert results[0][0].status == 200 and results[0][0].body == b"ok"
    assert rig.stats.timeout_idle == 2
    assert rig.primary.paths == ["/a"]


@pytest.mark.parametrize("rig", [{"keepalive_requests": 2, "client_idle_timeout": 30.0}],
                         indirect=True)
def test_keepalive_requests(rig: Rig) -> None:
    """keepalive_requests 2: the second request is answered with a GOAWAY naming the next
    stream, and the connection is closed (H3_NO_ERROR) once it is done, long before the
    30 s keepalive_timeout could have closed it."""
    async def go() -> tuple[Any, Any, Any, Any]:
        async with _connect(rig) as cl:
            a = await cl.request("GET", "/1")
            b = await cl.request("GET", "/2")
            await asyncio.wait_for(cl.closed_event.wait(), 10)
            return a, b, cl.h3.goaway, cl.terminated

    a, b, goaway, terminated = asyncio.run(go())
    assert a.status == b.status == 200
    assert goaway == 8  # streams 0 and 4 served; 8 would be the next
    assert terminated.error_code == ErrorCode.H3_NO_ERROR
    assert rig.stats.timeout_idle == 0
    assert rig.primary.paths == ["/1", "/2"]


def test_stalled_body_resets_its_stream(rig: Rig) -> None:
    """A POST whose body stops after 1000 of 100000 bytes: after client_body_timeout its stream
    is reset and the primary's connection closed (the part never looks whole to it); the
    connection goes on and serves the next request."""
    async def go() -> tuple[Any, float, Any]:
        async with _connect(rig) as cl:
            sid = cl.send_request("POST", "/upload", headers=[(b"content-length", b"100000")],
                                  body=b"u" * 1000, end=False)
            since = time.monotonic()
            stalled = await cl.response(sid, 10)
            waited = time.monotonic() - since
            after = await cl.request("GET", "/after")
            return stalled, waited, after

    stalled, waited, after = asyncio.run(go())
    assert stalled.reset == ErrorCode.H3_INTERNAL_ERROR and stalled.status == 0
    assert waited >= 0.6 - EPS
    assert after.status == 200
    assert _wait(lambda: "/upload" in rig.primary.cut)
    st = rig.stats
    assert st.timeout_body == 1 and st.primary_errors == 0
    assert "/after" in rig.primary.paths


def test_body_trickling_in_is_not_cut(rig: Rig) -> None:
    """client_body_timeout is between two pieces: a body sent a byte at a time, each within
    the timeout, is served though it takes several times the timeout."""
    async def go() -> Any:
        async with _connect(rig) as cl:
            sid = cl.send_request("POST", "/upload", headers=[(b"content-length", b"8")],
                                  body=b"x", end=False)
            for i in range(7):
                await asyncio.sleep(0.25)
                cl.send_body(sid, b"x", end=i == 6)
            return await cl.response(sid, 10)

    resp = asyncio.run(go())
    assert resp.status == 200 and resp.reset is None
    assert rig.stats.timeout_body == 0 and rig.primary.cut == []


def test_answer_not_acknowledged_resets_stream(rig: Rig) -> None:
    """A client that stops taking datagrams during a 24 MiB answer: after send_timeout without
    an acknowledgement the stream is reset and the primary's connection closed (its send
    fails); the proxy held a bounded part of the answer."""
    async def go() -> float:
        async with _connect(rig, DeafClient) as cl:
            sid = cl.send_request("GET", "/big")
            assert await _until(lambda: cl.responses[sid].status == 200)
            cl.deaf = True
            since = time.monotonic()
            assert await _until(lambda: rig.stats.timeout_send == 1, 15)
            waited = time.monotonic() - since
            cl.deaf = False
            return waited

    waited = asyncio.run(go())
    assert waited >= 0.6 - EPS
    assert _wait(lambda: "/big" in rig.primary.cut)
    assert rig.primary.sent_big < 24 << 20
    assert rig.stats.primary_errors == 0
