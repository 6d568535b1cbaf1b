"""When no location matches, nginx still runs the access and try_files phases with the server's
configuration; `tern route` must answer the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from support.nginx import free_port, http_get, run_nginx
except ImportError:  # pragma: no cover - run as a package
    from tests.support.nginx import free_port, http_get, run_nginx

pytestmark = pytest.mark.nginx

CONF = """events {{}}
http {{
    server {{
        listen 127.0.0.1:{port};
        server_name tf.test;
        root {root}/none;
        try_files $uri /fallback;
        location = /fallback {{ return 200 "fb"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name deny.test;
        deny all;
        location = /open {{ allow all; return 200 "open"; }}
    }}
}}
"""


@pytest.mark.parametrize(("host", "target"), [
    ("tf.test", "/x"), ("tf.test", "/a/b.html"), ("tf.test", "/fallback"),
    ("deny.test", "/x"), ("deny.test", "/open"),
])
def test_no_location_phases_match_nginx(tmp_path: Path, host: str, target: str) -> None:
    """Status (and body for returns) of `tern route` equal nginx's."""
    port = free_port()
    text = CONF.format(port=port, root=tmp_path)
    conf = tmp_path / "tern.conf"
    conf.write_text(text)
    with run_nginx(text, tmp_path / "nginx"):
        resp = http_get(port, target, host=host)
    out = subprocess.run([sys.executable, "-m", "migrate.cli", "route", str(conf),
                          f"http://127.0.0.1:{port}{target}", "-H", f"Host: {host}", "--json"],
                         capture_output=True, text=True, timeout=60, check=True)
    doc = json.loads(out.stdout)
    assert doc["status"] == resp.status
    if resp.status == 200:
        assert (doc["body"] or "").encode() == resp.body
