"""``proxy_pass https://...`` in ``tern serve`` answers as Debian's nginx 1.22.1 does.

nginx and ``tern serve`` run the same config (only the listen port differs) in front of the same
TLS echo upstreams (:mod:`tests.support.tls_echo`), which report per connection the SNI they
received, the client certificate presented, and the request number on that connection.  Each case
sends the same request to both and asserts equal status and equal echoed facts: SNI on/off and
its name (``proxy_ssl_server_name``, ``proxy_ssl_name`` literal and with variables, the group name
as ``$proxy_host``), ``proxy_ssl_verify`` success and failure (502 for an untrusted chain or a name
mismatch, ``proxy_next_upstream`` to the next peer), a client certificate sent to the upstream, and
keep-alive reuse of the TLS connection.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocol.tls_support import REPO, tern_serve
from tests.support.certs import make_ca, make_leaf
from tests.support.nginx import NGINX_BIN, free_port, http_get, run_nginx
from tests.support.tls_echo import TlsEcho

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

CONF = """
events {{}}
http {{
    access_log off;
    # a resumed session reports its first handshake's SNI and client certificate to the echo,
    # and nginx shares one session per peer across locations (Tern: per peer and settings):
    # the facts compared here come from full handshakes; /resume tests resumption
    proxy_ssl_session_reuse off;
    upstream backend.test {{ server 127.0.0.1:{up}; }}
    upstream kept {{ server 127.0.0.1:{up}; keepalive 4; }}
    upstream twopeers {{ server 127.0.0.1:{bad}; server 127.0.0.1:{up}; }}
    upstream mtls {{ server 127.0.0.1:{mtls}; }}
    upstream resume {{ server 127.0.0.1:{up}; }}
    upstream untrusted_first {{ server 127.0.0.1:{stranger}; server 127.0.0.1:{up}; }}
    server {{
        listen 127.0.0.1:{port};
        location /plain {{ proxy_pass https://127.0.0.1:{up}; }}
        location /group {{ proxy_pass https://backend.test; }}
        location /sni-group {{ proxy_ssl_server_name on; proxy_pass https://backend.test; }}
        location /sni-ip {{ proxy_ssl_server_name on; proxy_pass https://127.0.0.1:{up}; }}
        location /sni-name {{
            proxy_ssl_server_name on; proxy_ssl_name named.test;
            proxy_pass https://127.0.0.1:{up};
        }}
        location /sni-var {{
            proxy_ssl_server_name on; proxy_ssl_name $http_x_name;
            proxy_pass https://127.0.0.1:{up};
        }}
        location /verify-ok {{
            proxy_ssl_verify on; proxy_ssl_trusted_certificate {dir}/ca.test.crt;
            proxy_pass https://backend.test;
        }}
        location /verify-name-ok {{
            proxy_ssl_verify on; proxy_ssl_trusted_certificate {dir}/ca.test.crt;
            proxy_ssl_name backend.test;
            proxy_pass https://127.0.0.1:{up};
        }}
        location /verify-mismatch {{
            proxy_ssl_verify on; proxy_ssl_trusted_certificate {dir}/ca.test.crt;
            proxy_ssl_name other.test;
            proxy_pass https://127.0.0.1:{up};
        }}
        location /verify-untrusted {{
            proxy_ssl_verify on; proxy_ssl_trusted_certificate {dir}/stranger.test.crt;
            proxy_pass https://backend.test;
        }}
        location /next {{ proxy_pass https://twopeers; }}
        location /client-cert {{
            proxy_ssl_certificate {dir}/client.test.crt;
            proxy_ssl_certificate_key {dir}/client.test.key;
            proxy_pass https://mtls;
        }}
        location /no-client-cert {{ proxy_pass https://mtls; }}
        location /var {{
            set $target backend.test;
            proxy_ssl_server_name on;
            proxy_pass https://$target;
        }}
        location /next-after-verify {{
            proxy_ssl_verify on; proxy_ssl_trusted_certificate {dir}/ca.test.crt;
            proxy_ssl_name backend.test;
            add_header X-Upstream $upstream_addr;
            proxy_pass https://untrusted_first;
        }}
        location /resume {{ proxy_ssl_session_reuse on; proxy_pass https://resume; }}
        location /ws {{
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
            proxy_pass https://backend.test;
        }}
        location /kept {{
            proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_pass https://kept;
        }}
    }}
}}
"""


class Sides:
    def __init__(self, nginx_port: int, tern_port: int) -> None:
        self.ports = {"nginx": nginx_port, "tern": tern_port}

    def get(self, target: str, headers: dict[str, str] | None = None
            ) -> dict[str, tuple[int | None, dict[str, str]]]:
        out = {}
        for side, port in self.ports.items():
            if headers:
                out[side] = _get_with_headers(port, target, headers)
            else:
                r = http_get(port, target, "localhost", timeout=10)
                out[side] = (r.status, _facts(r.body))
        return out


def _get_with_headers(port: int, target: str, headers: dict[str, str]
                      ) -> tuple[int | None, dict[str, str]]:
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    res = subprocess.run([*cmd, f"http://127.0.0.1:{port}{target}"], capture_output=True,
                         timeout=20)
    body, _, code = res.stdout.rpartition(b"\n")
    return int(code), _facts(body)


def _facts(body: bytes) -> dict[str, str]:
    """The echo's facts, without the connection number (the sides share the echo)."""
    facts = dict(re.findall(r"^(sni|req|client|resumed|version)=(.*)$",
                            body.decode(errors="replace"), re.M))
    return facts


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Sides, TlsEcho, TlsEcho, TlsEcho]]:
    d = tmp_path_factory.mktemp("uptls")
    ca = make_ca(d, "ca.test")
    crt, key = make_leaf(d, "backend.test", ca)
    make_ca(d, "stranger.test")
    make_leaf(d, "client.test", ca)
    echo = TlsEcho(crt, key)
    mtls = TlsEcho(crt, key, ca=ca[0])
    # the same name from another CA: fails proxy_ssl_verify
    (d / "other").mkdir()
    stranger = TlsEcho(*make_leaf(d / "other", "backend.test", make_ca(d, "other-ca.test")))
    bad = free_port()  # nothing listens there: connect() fails, the next peer is tried
    nport, tport = free_port(), free_port(exclude=[bad])
    fmt = {"up": echo.port, "mtls": mtls.port, "bad": bad, "dir": d, "stranger": stranger.port}
    tconf = d / "tern.conf"
    tconf.write_text(CONF.format(port=tport, **fmt))
    try:
        with run_nginx(CONF.format(port=nport, **fmt), d / "nginx") as _nginx, \
                tern_serve(tconf, tport):
            yield Sides(nport, tport), echo, mtls, stranger
    finally:
        echo.close()
        mtls.close()
        stranger.close()


def both(res: dict[str, tuple[int | None, dict[str, str]]]) -> tuple[int | None, dict[str, str]]:
    assert res["nginx"] == res["tern"], res
    return res["nginx"]


def test_plain_https_upstream(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/plain"))
    assert status == 200 and facts["sni"] == "-"


def test_no_sni_by_default(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/group"))
    assert status == 200 and facts["sni"] == "-"


def test_sni_is_the_group_name(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/sni-group"))
    assert status == 200 and facts["sni"] == "backend.test"


def test_no_sni_for_an_ip_address(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/sni-ip"))
    assert status == 200 and facts["sni"] == "-"


def test_proxy_ssl_name(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/sni-name"))
    assert status == 200 and facts["sni"] == "named.test"


def test_proxy_ssl_name_with_variable(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/sni-var", {"X-Name": "from-header.test"}))
    assert status == 200 and facts["sni"] == "from-header.test"


@pytest.mark.parametrize("path", ["/verify-ok", "/verify-name-ok"])
def test_verify_success(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho], path: str) -> None:
    status, facts = both(sides[0].get(path))
    assert status == 200 and facts["sni"] == "-"


@pytest.mark.parametrize("path", ["/verify-mismatch", "/verify-untrusted"])
def test_verify_failure_is_502(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho], path: str) -> None:
    status, _ = both(sides[0].get(path))
    assert status == 502


def test_next_upstream_after_connect_error(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/next"))
    assert status == 200 and facts["sni"] == "-"


def test_client_certificate_to_upstream(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/client-cert"))
    assert status == 200 and facts["client"] == "client.test"
    status, facts = both(sides[0].get("/no-client-cert"))
    assert status == 200 and facts["client"] == "-"


def test_keepalive_reuses_the_tls_connection(
        sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    s, echo = sides[0], sides[1]
    before = echo.handshakes
    reqs = {side: [] for side in s.ports}
    for _ in range(3):
        for side, (status, facts) in s.get("/kept").items():
            assert status == 200
            reqs[side].append(facts["req"])
    assert reqs["nginx"] == reqs["tern"] == ["1", "2", "3"], reqs
    assert echo.handshakes - before == 2  # one kept connection per side


def test_session_reuse(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    s = sides[0]
    first = both(s.get("/resume"))
    second = both(s.get("/resume"))
    assert first[1]["resumed"] == "0" and second[1]["resumed"] == "1", (first, second)


def test_default_protocols_stop_at_tls12(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    """nginx 1.22's proxy_ssl_protocols default has no TLSv1.3 (added in 1.23.4)."""
    status, facts = both(sides[0].get("/plain"))
    assert status == 200 and facts["version"] == "TLSv1.2"


def _tunnel(port: int) -> tuple[bytes, bytes]:
    """An Upgrade request, then b"ping" through the tunnel: (response head, echoed bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        c.sendall(b"ping")
        while len(rest) < 4 and time.monotonic() < deadline:
            chunk = c.recv(4096)
            if not chunk:
                break
            rest += chunk
        return head.split(b"\r\n")[0], rest


def test_websocket_over_https_upstream(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    s = sides[0]
    got = {side: _tunnel(port) for side, port in s.ports.items()}
    assert got["nginx"] == got["tern"] == (b"HTTP/1.1 101 Switching Protocols", b"ping"), got


@pytest.mark.parametrize("directive", ["proxy_ssl_trusted_certificate", "proxy_ssl_certificate"])
def test_missing_file_refused_like_nginx_t(tmp_path: Path, directive: str) -> None:
    # nginx reads the trusted file only with proxy_ssl_verify on
    extra = "proxy_ssl_certificate_key {d}/missing.key;" if directive == "proxy_ssl_certificate" \
        else "proxy_ssl_verify on;"
    conf = tmp_path / "nginx.conf"
    conf.write_text(("events {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:1;\n"
                     "        location / {{\n"
                     "            " + directive + " {d}/missing.crt; " + extra + "\n"
                     "            proxy_pass https://127.0.0.1:1;\n        }}\n    }}\n}}\n"
                     ).format(d=tmp_path))
    (tmp_path / "logs").mkdir()
    nginx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                            "-g", "error_log stderr;"], capture_output=True, timeout=30)
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "serve", "-t", str(conf)],
                          capture_output=True, timeout=60, cwd=REPO)
    assert nginx.returncode != 0 and b"missing.crt" in nginx.stderr, nginx.stderr
    assert tern.returncode == 2, tern.stderr
    assert f"{conf}:6: error: cannot load certificate".encode() in tern.stderr, tern.stderr
    assert b"Traceback" not in tern.stderr


def test_verify_without_trusted_refused_like_nginx_t(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    server {\n        listen 127.0.0.1:1;\n"
                    "        location / {\n            proxy_ssl_verify on;\n"
                    "            proxy_pass https://127.0.0.1:1;\n        }\n    }\n}\n")
    (tmp_path / "logs").mkdir()
    nginx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                            "-g", "error_log stderr;"], capture_output=True, timeout=30)
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "serve", "-t", str(conf)],
                          capture_output=True, timeout=60, cwd=REPO)
    assert nginx.returncode != 0
    assert b"no proxy_ssl_trusted_certificate for proxy_ssl_verify" in nginx.stderr
    assert tern.returncode == 2 and b"Traceback" not in tern.stderr, tern.stderr
    assert f"{conf}:6: error: no proxy_ssl_trusted_certificate for proxy_ssl_verify".encode() \
        in tern.stderr, tern.stderr


def test_trusted_file_unread_without_verify(tmp_path: Path) -> None:
    """A missing proxy_ssl_trusted_certificate with proxy_ssl_verify off passes both checks."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    server {\n        listen 127.0.0.1:1;\n"
                    "        location / {\n"
                    f"            proxy_ssl_trusted_certificate {tmp_path}/missing.crt;\n"
                    "            proxy_pass https://127.0.0.1:1;\n        }\n    }\n}\n")
    (tmp_path / "logs").mkdir()
    nginx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                            "-g", "error_log stderr;"], capture_output=True, timeout=30)
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "serve", "-t", str(conf)],
                          capture_output=True, timeout=60, cwd=REPO)
    assert nginx.returncode == 0, nginx.stderr
    assert tern.returncode == 0, tern.stderr


def test_url_with_variables(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    status, facts = both(sides[0].get("/var"))
    assert status == 200 and facts["sni"] == "backend.test"


def test_next_upstream_after_verify_failure(sides: tuple[Sides, TlsEcho, TlsEcho, TlsEcho]) -> None:
    """A certificate that fails proxy_ssl_verify is an error: the next peer answers."""
    stranger = sides[3]
    before = stranger.accepted
    status, facts = both(sides[0].get("/next-after-verify"))
    assert status == 200 and facts["client"] == "-"
    assert stranger.accepted - before == 2  # each side tried the untrusted peer first
