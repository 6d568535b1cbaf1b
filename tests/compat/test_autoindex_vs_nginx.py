"""autoindex listings: Tern's equal nginx's byte for byte (names needing escapes, a name
over 50 characters, directories first, sizes, HEAD), in every autoindex_format: html, json,
jsonp (with and without a callback, and a refused one) and xml."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from support.nginx import free_port, http_get, run_nginx
except ImportError:  # pragma: no cover - run as a package
    from tests.support.nginx import free_port, http_get, run_nginx

pytestmark = pytest.mark.nginx
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("autoindex")
    www = root / "www" / "sub"
    (www / "dir2").mkdir(parents=True)
    (www / "a.txt").write_text("hello\n")
    (www / "big.bin").write_bytes(b"x" * 5000)
    (www / "with space & <b>.txt").write_text("q\n")
    (www / ("a" * 64 + ".txt")).write_text("z\n")
    (www / ".hidden").write_text("no\n")
    (www / 'quote " back\\ tab\t.txt').write_text("e\n")
    stamp = 1_700_000_000
    for p in (www, *www.iterdir()):
        os.utime(p, (stamp, stamp))
    return root


def _conf(root: Path, port: int) -> str:
    return ("events {}\nhttp {\n access_log off;\n server {\n"
            f"  listen 127.0.0.1:{port};\n  root {root}/www;\n"
            "  location / { autoindex on; }\n"
            f"  location /j/ {{ alias {root}/www/sub/; autoindex on; autoindex_format json; }}\n"
            f"  location /p/ {{ alias {root}/www/sub/; autoindex on; autoindex_format jsonp; }}\n"
            f"  location /x/ {{ alias {root}/www/sub/; autoindex on; autoindex_format xml; }}\n"
            " }\n}\n")


@pytest.fixture(scope="module")
def ports(tree: Path) -> Iterator[tuple[int, int]]:
    nport, tport = free_port(), free_port()
    ndir, tdir = tree / "nginx", tree / "tern"
    ndir.mkdir()
    tdir.mkdir()
    (tdir / "nginx.conf").write_text(_conf(tree, tport))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tern = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve",
                             str(tdir / "nginx.conf"), "-p", str(tdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        with run_nginx(_conf(tree, nport), ndir):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    http_get(tport, "/", host="t")
                    break
                except OSError:
                    time.sleep(0.05)
            yield nport, tport
    finally:
        tern.send_signal(signal.SIGTERM)
        try:
            tern.wait(10)
        except subprocess.TimeoutExpired:
            tern.kill()


@pytest.mark.parametrize("target", ["/sub/", "/sub/dir2/", "/"])
def test_listing_matches_nginx(ports: tuple[int, int], target: str) -> None:
    """The listing body and status are identical to nginx's."""
    nport, tport = ports
    a = http_get(nport, target, host="t")
    b = http_get(tport, target, host="t")
    assert a.status == 200 and b"Index of" in a.body
    assert (b.status, b.body) == (a.status, a.body)


@pytest.mark.parametrize(
    ("target", "status", "content_type"),
    [("/j/", 200, "application/json"), ("/j/dir2/", 200, "application/json"),
     ("/x/", 200, "text/xml; charset=utf-8"), ("/x/dir2/", 200, "text/xml; charset=utf-8"),
     ("/p/?callback=cb", 200, "application/javascript"),
     ("/p/?callback=a.b_C9", 200, "application/javascript"),
     ("/p/", 200, "application/json"), ("/p/?callback=", 200, "application/json"),
     ("/p/?callback=a%20b", 400, "text/html"), ("/p/?callback=" + "c" * 129, 400, "text/html"),
     ("/p/?callback=" + "c" * 128, 200, "application/javascript")],
    ids=["json", "json-empty-dir", "xml", "xml-empty-dir", "jsonp", "jsonp-dots",
         "jsonp-no-callback", "jsonp-empty-callback", "jsonp-bad-callback",
         "jsonp-long-callback", "jsonp-128"],
)
def test_formats_match_nginx(ports: tuple[int, int], target: str, status: int,
                             content_type: str) -> None:
    """json, jsonp and xml listings: status, Content-Type and body identical to nginx's."""
    nport, tport = ports
    a = http_get(nport, target, host="t")
    b = http_get(tport, target, host="t")
    assert (a.status, a.headers.get("content-type")) == (status, content_type)
    assert (b.status, b.headers.get("content-type")) == (a.status, a.headers.get("content-type"))
    if status == 200:
        assert b"a.txt" in a.body or target.endswith("dir2/")
        assert b.body == a.body
