"""``ssl_verify_client`` in ``tern serve`` against Debian's nginx 1.22.1, with curl --cert/--key.

nginx and Tern run the same config (only the ports differ): one TLS server with
``ssl_verify_client on``, one with ``optional``, one with ``on`` and ``error_page 496``; each
answers ``$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|
$ssl_client_fingerprint``.  Compared: no certificate (400 "No required SSL certificate was sent",
logged as 400), a good certificate (200, equal variables), optional without a certificate
(``NONE``), error_page 496.  A certificate from another CA: nginx answers 400 "The SSL
certificate error"; Tern fails the handshake (Python's ssl has no verify callback; the
documented PARTIAL), which the last test pins down.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocol.tls_support import tern_serve
from tests.support.certs import make_ca, make_leaf
from tests.support.nginx import NGINX_BIN, free_port, run_nginx

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

VARS = "$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|" \
       "$ssl_client_fingerprint"

CONF = """
events {{}}
http {{
    log_format st "$server_port $request_uri $status";
    access_log {logs}/access.log st;
    ssl_certificate {d}/server.test.crt;
    ssl_certificate_key {d}/server.test.key;
    ssl_client_certificate {d}/ca.test.crt;
    server {{
        listen 127.0.0.1:{on} ssl;
        ssl_verify_client on;
        location /raw {{ return 200 "$ssl_client_raw_cert"; }}
        location /cert {{ return 200 "$ssl_client_cert"; }}
        location /escaped {{ return 200 "$ssl_client_escaped_cert"; }}
        location /validity {{
            return 200 "$ssl_client_v_start|$ssl_client_v_end|$ssl_client_v_remain";
        }}
        location / {{ return 200 "{vars}"; }}
    }}
    server {{
        listen 127.0.0.1:{optional} ssl;
        ssl_verify_client optional;
        location /protocol {{ return 200 "$ssl_protocol"; }}
        location / {{ return 200 "{vars}"; }}
    }}
    server {{
        listen 127.0.0.1:{h2} ssl http2;
        ssl_verify_client on;
        location / {{ return 200 "$server_protocol|{vars}"; }}
    }}
    server {{
        listen 127.0.0.1:{page} ssl;
        ssl_verify_client on;
        error_page 496 = /nocert;
        location /nocert {{ return 200 "no cert: $ssl_client_verify"; }}
        location / {{ return 200 "{vars}"; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, dict[str, int]],
                                                                       Path, dict[str, Path]]]:
    d = tmp_path_factory.mktemp("mtls")
    ca = make_ca(d, "ca.test")
    make_leaf(d, "server.test", ca)
    good = make_leaf(d, "client.test", ca)
    other = make_ca(d, "other-ca.test")
    bad = make_leaf(d, "stranger.test", other)
    multi = make_leaf(d, "multi.test", ca, "/C=DE/ST=Berlin/O=Tern, Test/OU=QA"
                      "/CN=multi.test/emailAddress=qa@multi.test")
    ports: dict[str, dict[str, int]] = {}
    used: list[int] = []
    for side in ("nginx", "tern"):
        ports[side] = {}
        for name in ("on", "optional", "page", "h2"):
            p = free_port(exclude=used)
            used.append(p)
            ports[side][name] = p
    (d / "tlogs").mkdir()
    (d / "nginx").mkdir()
    tconf = d / "tern.conf"
    tconf.write_text(CONF.format(d=d, vars=VARS, logs=d / "tlogs", **ports["tern"]))
    nconf = CONF.format(d=d, vars=VARS, logs=d / "nginx" / "logs", **ports["nginx"])
    with run_nginx(nconf, d / "nginx"), tern_serve(tconf, *ports["tern"].values()):
        yield ports, d, {"good": good[0], "good_key": good[1], "bad": bad[0],
                         "bad_key": bad[1], "multi": multi[0], "multi_key": multi[1]}


def curl(port: int, cert: Path | None = None, key: Path | None = None,
         path: str = "/") -> tuple[int, int, str]:
    """(curl exit code, status, body)."""
    cmd = ["curl", "-sk", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
    if cert is not None:
        cmd += ["--cert", str(cert), "--key", str(key)]
    res = subprocess.run([*cmd, f"https://127.0.0.1:{port}{path}"], capture_output=True,
                         timeout=20)
    body, _, code = res.stdout.decode(errors="replace").rpartition("\n")
    return res.returncode, int(code or 0), body


def both(setup: tuple[dict[str, dict[str, int]], Path, dict[str, Path]], server: str,
         cert: str | None = None, path: str = "/") -> tuple[int, int, str]:
    ports, _, certs = setup
    out = {}
    for side in ("nginx", "tern"):
        out[side] = _product(curl(ports[side][server], certs[cert] if cert else None,
                                  certs[cert + "_key"] if cert else None, path))
    assert out["nginx"] == out["tern"], out
    return out["nginx"]


def _product(r: tuple[int, int, str]) -> tuple[int, int, str]:
    """The product token in built-in pages (nginx/1.22.1, tern/0.1.0) reduced to its shape."""
    return r[0], r[1], re.sub(r"<center>(nginx|tern)/[0-9.]+</center>", "<center>P/V</center>",
                              r[2])


def test_no_certificate_is_400(setup: tuple[dict[str, dict[str, int]], Path,
                                            dict[str, Path]]) -> None:
    rc, status, body = both(setup, "on")
    assert rc == 0 and status == 400
    assert "<title>400 No required SSL certificate was sent</title>" in body


def test_good_certificate(setup: tuple[dict[str, dict[str, int]], Path,
                                       dict[str, Path]]) -> None:
    rc, status, body = both(setup, "on", "good")
    assert rc == 0 and status == 200
    verify, s_dn, i_dn, serial, fingerprint = body.split("|")
    assert (verify, s_dn, i_dn) == ("SUCCESS", "CN=client.test", "CN=ca.test")
    assert serial and len(fingerprint) == 40


def test_optional_without_certificate(setup: tuple[dict[str, dict[str, int]], Path,
                                                   dict[str, Path]]) -> None:
    rc, status, body = both(setup, "optional")
    assert rc == 0 and status == 200 and body == "NONE||||"


def test_optional_with_certificate(setup: tuple[dict[str, dict[str, int]], Path,
                                                dict[str, Path]]) -> None:
    rc, status, body = both(setup, "optional", "good")
    assert rc == 0 and status == 200 and body.startswith("SUCCESS|CN=client.test|")


def test_error_page_496(setup: tuple[dict[str, dict[str, int]], Path,
                                     dict[str, Path]]) -> None:
    rc, status, body = both(setup, "page")
    assert rc == 0 and (status, body) == (200, "no cert: NONE")


def test_access_log_status_400(setup: tuple[dict[str, dict[str, int]], Path,
                                            dict[str, Path]]) -> None:
    ports, d, _ = setup
    # nginx runs a sanitised copy of the config (the runner's combined log); Tern the original
    for side, logs, want in (("nginx", d / "nginx" / "logs", '"GET /nocheck HTTP/1.1" 400 '),
                             ("tern", d / "tlogs", f"{ports['tern']['on']} /nocheck 400")):
        curl(ports[side]["on"], path="/nocheck")
        deadline = time.monotonic() + 10  # the log line is written after the answer
        text = ""
        while time.monotonic() < deadline:
            text = (logs / "access.log").read_text()
            if want in text:
                break
            time.sleep(0.05)
        assert want in text, (side, text)


def test_untrusted_certificate(setup: tuple[dict[str, dict[str, int]], Path,
                                            dict[str, Path]]) -> None:
    ports, _, certs = setup
    rc, status, body = curl(ports["nginx"]["on"], certs["bad"], certs["bad_key"])
    assert (rc, status) == (0, 400) and "<title>400 The SSL certificate error</title>" in body
    # Tern (PARTIAL): the handshake fails; curl gets no HTTP answer
    rc, status, _ = curl(ports["tern"]["on"], certs["bad"], certs["bad_key"])
    assert rc != 0 and status == 0


@pytest.mark.parametrize("path", ["/raw", "/cert", "/escaped", "/validity"])
def test_certificate_variables(setup: tuple[dict[str, dict[str, int]], Path, dict[str, Path]],
                               path: str) -> None:
    rc, status, body = both(setup, "on", "good", path)
    assert rc == 0 and status == 200 and len(body) > 20, body


def test_distinguished_name_with_several_attributes(
        setup: tuple[dict[str, dict[str, int]], Path, dict[str, Path]]) -> None:
    rc, status, body = both(setup, "on", "multi")
    assert rc == 0 and status == 200 and body.startswith("SUCCESS|"), body
    assert "multi.test" in body.split("|")[1]


def test_default_ssl_protocols_stop_at_tls12(
        setup: tuple[dict[str, dict[str, int]], Path, dict[str, Path]]) -> None:
    """nginx 1.22's ssl_protocols default has no TLSv1.3 (added in 1.23.4)."""
    assert both(setup, "optional", path="/protocol") == (0, 200, "TLSv1.2")


@pytest.mark.parametrize("cert", [None, "good"])
def test_over_http2(setup: tuple[dict[str, dict[str, int]], Path, dict[str, Path]],
                    cert: str | None) -> None:
    """The same over HTTP/2 (ALPN h2): the 400 page without a certificate, the variables
    with one."""
    rc, status, body = both(setup, "h2", cert)
    assert rc == 0
    if cert is None:
        assert status == 400 and "No required SSL certificate was sent" in body
    else:
        assert status == 200 and body.startswith("HTTP/2.0|SUCCESS|CN=client.test|"), body


def test_http3_is_refused_without_a_certificate(tmp_path: Path) -> None:
    """Tern only (nginx 1.22 has no HTTP/3): QUIC asks for no client certificate, so
    ``ssl_verify_client on`` answers HTTP/3 requests 400 (496) instead of letting them through;
    ``optional`` lets them through with ``$ssl_client_verify`` NONE."""
    import asyncio

    from tests.protocol.h3_client import h3_connect

    ca = make_ca(tmp_path, "ca.test")
    crt, key = make_leaf(tmp_path, "localhost", ca)
    on, opt = free_port(), free_port()
    conf = tmp_path / "h3.conf"
    conf.write_text(f"""events {{}}
http {{
    access_log off;
    ssl_certificate {crt}; ssl_certificate_key {key}; ssl_client_certificate {ca[0]};
    server {{
        listen 127.0.0.1:{on} ssl; listen 127.0.0.1:{on} quic;
        ssl_verify_client on;
        location / {{ return 200 "v=$ssl_client_verify"; }}
    }}
    server {{
        listen 127.0.0.1:{opt} ssl; listen 127.0.0.1:{opt} quic;
        ssl_verify_client optional;
        location / {{ return 200 "v=$ssl_client_verify"; }}
    }}
}}
""")

    async def get(port: int) -> tuple[int, bytes]:
        async with h3_connect(port, ca[0]) as c:
            r = await c.request("GET", "/", timeout=5)
            return r.status, r.body

    with tern_serve(conf, on, opt):
        deadline = time.monotonic() + 20
        while True:  # the UDP socket opens with the TCP one; retry the first request briefly
            try:
                got_on = asyncio.run(get(on))
                break
            except (TimeoutError, ConnectionError, OSError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
        got_opt = asyncio.run(get(opt))
    assert got_on[0] == 400 and b"No required SSL certificate was sent" in got_on[1], got_on
    assert got_opt == (200, b"v=NONE"), got_opt
