"""The same TLS + HTTP/2 configuration under Debian's nginx 1.22.1 and ``tern serve``, asked
over HTTP/2 by ``tern compare --http2`` (ALPN h2 on the ssl listen, prior knowledge on the
cleartext ``http2`` one): every answer the same, upstream requests included.

Certificates are made for the test (openssl CLI); two servers share the TLS port and SNI picks
between them.  Only 127.0.0.1 is used; every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.compare import Comparison, RequestSpec
from tests.protocol.tls_support import REPO, make_cert
from tests.support.nginx import NGINX_BIN

pytestmark = pytest.mark.nginx

if not NGINX_BIN.exists():  # pragma: no cover - CI has it
    pytest.skip(f"{NGINX_BIN} is not installed", allow_module_level=True)

CONF = """
events {{}}
http {{
    upstream back {{ server 127.0.0.1:9301; }}
    server {{
        listen 8443 ssl http2 default_server;
        server_name a.test;
        ssl_certificate {d}/a.test.crt;
        ssl_certificate_key {d}/a.test.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        add_header X-Srv a;
        location / {{ return 200 "A $scheme $https $server_protocol $ssl_server_name $ssl_protocol\\n"; }}
        location /api/ {{ proxy_pass http://back; proxy_set_header X-Proto $server_protocol; }}
        location = /moved {{ return 301 /api/new; }}
        location /teapot {{ return 418; }}
    }}
    server {{
        listen 8443 ssl http2;
        server_name b.test;
        ssl_certificate {d}/b.test.crt;
        ssl_certificate_key {d}/b.test.key;
        location / {{ return 200 "B $ssl_server_name $request_method $request_uri\\n"; }}
    }}
    server {{
        listen 8080 http2;
        location / {{ return 200 "C $scheme $server_protocol\\n"; }}
        location /api/ {{ proxy_pass http://back; }}
    }}
}}
"""

REQUESTS = [
    {"url": "/", "host": "a.test", "port": 8443},
    {"url": "/x?y=1", "host": "b.test", "port": 8443},
    {"url": "/", "host": "other.test", "port": 8443},
    {"url": "/api/items?id=3", "host": "a.test", "port": 8443,
     "headers": [["Accept", "application/json"], ["Cookie", "a=1"], ["Cookie", "b=2"]]},
    {"method": "POST", "url": "/api/post", "host": "a.test", "port": 8443, "body": "hello h2"},
    {"url": "/moved", "host": "a.test", "port": 8443},
    {"url": "/teapot", "host": "a.test", "port": 8443},
    {"method": "HEAD", "url": "/", "host": "b.test", "port": 8443},
    {"url": "/", "host": "c.test", "port": 8080},
    {"url": "/api/plain", "host": "c.test", "port": 8080},
]


def _product(body: bytes, token: bytes) -> bytes:
    """Built-in error pages name the product (``nginx/1.22.1``, ``tern/0.1.0``): the only
    difference allowed, as in ``tests/compat/servepair.py``."""
    return body.replace(token, b"PRODUCT")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls-h2-compare")
    make_cert(d, "a.test")
    make_cert(d, "b.test", kind="ec")
    (d / "nginx.conf").write_text(CONF.format(d=d))
    with open(d / "requests.jsonl", "w") as fh:
        for r in REQUESTS:
            if r["url"] not in ("/moved", "/teapot"):  # built-in pages name the product
                fh.write(json.dumps(r) + "\n")
    return d


def test_same_answers_over_http2(tree: Path) -> None:
    """Every request over HTTP/2: nginx and Tern answer alike (statuses, headers, bodies with
    the TLS and protocol variables, what the upstream got)."""
    comparison = Comparison(config=str(tree / "nginx.conf"), prefix=None, candidate_config=None,
                            candidate_cmd="{python} -m migrate.cli serve {config} -p {prefix}",
                            nginx=str(NGINX_BIN), timeout=10, start_timeout=20, keep=False,
                            log=lambda _: None, http2=True)
    try:
        comparison.setup()
        specs = [RequestSpec(**{k: v for k, v in r.items() if k in ("method", "host", "port")},
                             target=r["url"], headers=tuple(tuple(h) for h in r.get(
                                 "headers", [])), body=r.get("body", "").encode())
                 for r in REQUESTS]
        outcomes = comparison.run(specs, learn_noise=False)
    finally:
        comparison.close()
    assert len(outcomes) == len(REQUESTS)
    for o in outcomes:
        assert o.primary.status is not None and o.primary.version == "2", (o.spec, o.primary)
        assert o.candidate.version == "2"
        real = [d for d in o.differences if not (
            d.field == "body" and _product(o.primary.body, b"nginx/1.22.1")
            == _product(o.candidate.body, b"tern/0.1.0"))]
        assert not real, (o.spec.target, o.spec.host, real)
    by_target = {(o.spec.host, o.spec.target): o.primary for o in outcomes}
    assert by_target[("a.test", "/")].body == b"A https on HTTP/2.0 a.test TLSv1.3\n"
    assert by_target[("b.test", "/x?y=1")].body.startswith(b"B b.test GET")
    assert by_target[("c.test", "/")].body == b"C http HTTP/2.0\n"


def test_cli_http2_flag(tree: Path) -> None:
    """``tern compare --http2`` from the command line: exit 0, every answer the same."""
    r = subprocess.run([sys.executable, "-m", "migrate.cli", "compare", str(tree / "nginx.conf"),
                        "--requests", str(tree / "requests.jsonl"), "--http2", "--json",
                        "--no-learn-noise"], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    doc = json.loads(r.stdout)
    n = len(REQUESTS) - 2
    assert doc["summary"] == {"requests": n, "same": n, "differ": 0, "exit_code": 0}
