"""TLS termination in ``tern serve`` with real clients (curl, openssl s_client) and certificates
made for the test: SNI across servers on one port, ALPN, ssl_reject_handshake, ssl_protocols,
the ``$ssl_*`` variables, and certificate errors reported as ``file:line: error:``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.protocol.tls_support import REPO, free_port, make_cert, run, tern_serve

CONF = """
pid tern.pid;
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{main} ssl http2 default_server;
        server_name a.test;
        ssl_certificate a.test.crt;
        ssl_certificate_key a.test.key;
        location / {{ return 200 "A $scheme $https $ssl_protocol $ssl_server_name $server_protocol $ssl_alpn_protocol\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{main} ssl http2;
        server_name b.test;
        ssl_certificate b.test.crt;
        ssl_certificate_key b.test.key;
        location / {{ return 200 "B $ssl_server_name\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{main} ssl;
        server_name c.test;
        location / {{ return 200 "C $ssl_server_name\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h1only} ssl;
        ssl_certificate a.test.crt;
        ssl_certificate_key a.test.key;
        location / {{ return 200 "H1 $server_protocol\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{reject} ssl default_server;
        ssl_reject_handshake on;
    }}
    server {{
        listen 127.0.0.1:{reject} ssl;
        server_name b.test;
        ssl_certificate b.test.crt;
        ssl_certificate_key b.test.key;
        location / {{ return 200 "B behind reject\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{tls12} ssl;
        ssl_protocols TLSv1.2;
        ssl_session_tickets off;
        ssl_certificate a.test.crt;
        ssl_certificate_key a.test.key;
        location / {{ return 200 "$ssl_protocol $ssl_cipher\\n"; }}
    }}
}}
"""


@dataclass(frozen=True)
class Ports:
    main: int
    h1only: int
    reject: int
    tls12: int


@pytest.fixture(scope="module")
def tern(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    d = tmp_path_factory.mktemp("tls")
    make_cert(d, "a.test")
    make_cert(d, "b.test", kind="ec")
    ports = Ports(*(free_port() for _ in range(4)))
    conf = d / "nginx.conf"
    conf.write_text(CONF.format(main=ports.main, h1only=ports.h1only, reject=ports.reject,
                                tls12=ports.tls12))
    with tern_serve(conf, ports.main, ports.h1only, ports.reject, ports.tls12):
        yield ports


def curl(port: int, host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["curl", "-sk", "--max-time", "10", "--resolve", f"{host}:{port}:127.0.0.1",
                "-w", "|%{http_version}", *args, f"https://{host}:{port}/"])


def subject(port: int, *args: str) -> str:
    out = run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
              timeout=10).stdout
    for line in out.splitlines():
        if line.startswith("subject="):
            return line
    return ""


def test_sni_picks_the_certificate_of_the_server_across_one_port(tern: Ports) -> None:
    """SNI picks b.test's (EC) certificate, a.test's (RSA) for its name, for no SNI and for
    a name no server has (the default server's), as nginx does."""
    assert "CN = b.test" in subject(tern.main, "-servername", "b.test")
    assert "CN = a.test" in subject(tern.main, "-servername", "a.test")
    assert "CN = a.test" in subject(tern.main, "-noservername")
    assert "CN = a.test" in subject(tern.main, "-servername", "nobody.test")


def test_server_without_certificate_keeps_the_default_one(tern: Ports) -> None:
    """A non-default server with no ssl_certificate: nginx accepts the config, SNI keeps the
    default server's certificate, the request is that server's."""
    assert "CN = a.test" in subject(tern.main, "-servername", "c.test")
    r = curl(tern.main, "c.test", "--http2")
    assert r.stdout == "C c.test\n|2"


def test_http2_over_tls_by_alpn_and_ssl_variables(tern: Ports) -> None:
    """curl --http2 negotiates h2 by ALPN; the variables say https, TLS, HTTP/2.0, the SNI."""
    r = curl(tern.main, "a.test", "--http2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "A https on TLSv1.2 a.test HTTP/2.0 h2\n|2"  # 1.22 default
    r = curl(tern.main, "b.test", "--http2")
    assert r.stdout == "B b.test\n|2"
    r = curl(tern.main, "a.test", "--http1.1")
    assert r.stdout == "A https on TLSv1.2 a.test HTTP/1.1 http/1.1\n|1.1"


def test_alpn_offers_h2_only_where_http2_is_configured(tern: Ports) -> None:
    """A TLS listener without http2 selects http/1.1 even when the client prefers h2."""
    out = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.h1only}", "-alpn",
               "h2,http/1.1"], timeout=10).stdout
    assert "ALPN protocol: http/1.1" in out
    out = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.main}", "-alpn",
               "h2,http/1.1"], timeout=10).stdout
    assert "ALPN protocol: h2" in out
    r = curl(tern.h1only, "a.test", "--http2")
    assert r.stdout == "H1 HTTP/1.1\n|1.1"


def test_ssl_reject_handshake(tern: Ports) -> None:
    """The default server rejects handshakes for unknown names and for no SNI with an
    unrecognized_name alert (as nginx); a named server on the same port still answers, and so
    does the next client."""
    bad = curl(tern.reject, "nobody.test")
    assert bad.returncode == 35, (bad.returncode, bad.stdout)  # SSL connect error
    assert subject(tern.reject, "-noservername") == ""
    for args in (["-servername", "nobody.test"], ["-noservername"]):
        r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.reject}", *args],
                timeout=10)
        assert "alert number 112" in r.stderr, r.stderr  # unrecognized_name, as nginx sends
    good = curl(tern.reject, "b.test")
    assert good.stdout == "B behind reject\n|1.1"


def test_ssl_protocols(tern: Ports) -> None:
    """ssl_protocols TLSv1.2: a TLS 1.3-only client fails, TLS 1.2 is served."""
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.tls12}", "-tls1_3"],
            timeout=10)
    assert "Protocol  : TLSv1.3" not in r.stdout and "New, TLSv1.3" not in r.stdout
    ok = curl(tern.tls12, "localhost")
    assert ok.stdout.startswith("TLSv1.2 ") and ok.stdout.endswith("|1.1"), ok.stdout


@pytest.mark.parametrize("case", ["missing", "mismatch", "nocert"])
def test_certificate_errors_name_file_and_line(tmp_path: Path, case: str) -> None:
    """A missing certificate, a key of another certificate, or a TLS listener without any
    certificate: ``file:line: error:``, non-zero exit, no traceback, also under -t."""
    make_cert(tmp_path, "a.test")
    make_cert(tmp_path, "b.test", kind="ec")
    lines = {
        "missing": "ssl_certificate missing.crt;\n        ssl_certificate_key a.test.key;",
        "mismatch": "ssl_certificate a.test.crt;\n        ssl_certificate_key b.test.key;",
        "nocert": "",
    }[case]
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    server {\n        listen 127.0.0.1:%d ssl;\n"
                    "        %s\n    }\n}\n" % (free_port(), lines))
    want_line = 4 if case == "nocert" else 5
    for extra in (["-t"], []):
        r = subprocess.run([sys.executable, "-m", "migrate.cli", "serve", str(conf), *extra],
                           capture_output=True, text=True, timeout=30, cwd=REPO)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert f"{conf}:{want_line}: error: " in r.stderr, r.stderr


def test_session_resumption_and_tickets_off(tern: Ports, tmp_path: Path) -> None:
    """TLS 1.2 sessions resume (OpenSSL's server cache); ``ssl_session_tickets off``: no ticket
    is issued, resumption goes by session id."""
    sess = tmp_path / "sess.pem"
    first = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.tls12}", "-tls1_2",
                 "-sess_out", str(sess)], timeout=10).stdout
    assert "New, TLSv1.2" in first
    assert "TLS session ticket:" not in first
    again = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.tls12}", "-tls1_2",
                 "-sess_in", str(sess)], timeout=10).stdout
    assert "Reused, TLSv1.2" in again
    ticketed = run(["openssl", "s_client", "-connect", f"127.0.0.1:{tern.h1only}", "-tls1_2"],
                   timeout=10).stdout
    assert "TLS session ticket:" in ticketed


def test_reload_with_a_bad_certificate_keeps_serving(tmp_path: Path) -> None:
    """SIGHUP with a certificate path that does not exist: the error names file:line, the
    previous configuration keeps answering over TLS."""
    import signal
    import time

    make_cert(tmp_path, "a.test")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    good = ("events {}\nhttp {\n    server {\n        listen 127.0.0.1:%d ssl;\n"
            "        ssl_certificate a.test.crt;\n        ssl_certificate_key a.test.key;\n"
            "        location / { return 200 \"v1\\n\"; }\n    }\n}\n" % port)
    conf.write_text(good)
    with tern_serve(conf, port) as proc:
        assert curl(port, "a.test").stdout == "v1\n|1.1"
        conf.write_text(good.replace("a.test.crt", "gone.crt").replace('"v1', '"v2'))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        err = b""
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        while b"reload failed" not in err and time.monotonic() < deadline:
            time.sleep(0.2)
            err += proc.stderr.read() or b""
        assert f"{conf}:5: error: cannot load certificate".encode() in err, err
        assert curl(port, "a.test").stdout == "v1\n|1.1"
