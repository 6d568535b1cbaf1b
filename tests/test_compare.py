"""``tern compare``: request sets, the raw client, the echo upstream, and nginx against nginx.

Until ``tern serve`` runs these configs, the candidate is a second Debian nginx started through
``--candidate-cmd`` on the candidate's own port-mapped copy: the same config must compare equal
(exit 0, no difference), and a copy with one deliberate change must show exactly that change
(exit 1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from migrate.compare import (
    RequestSetError,
    RequestSpec,
    _parse_response,
    build_request,
    compare_cmd,
    load_requests,
    send,
)
from shadow.diff import Framing
from shadow.echo import Action, Behaviour, EchoServer, describe, sequence_mark

pytestmark = pytest.mark.nginx

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "nginx"
NGINX = Path("/usr/sbin/nginx")
NGINX_CANDIDATE = f'{NGINX} -p {{prefix}} -c {{config}} -g "daemon off; master_process off;"'
needs_nginx = pytest.mark.skipif(not NGINX.exists() and not os.environ.get("CI"),
                                 reason=f"{NGINX} is not installed (CI must have it)")


# --------------------------------------------------------------------------------------------
# request sets


def test_jsonl_request_set(tmp_path: Path) -> None:
    """JSON Lines: every key, defaults, absolute URLs, comments and blank lines."""
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([
        "# comment",
        json.dumps({"method": "post", "url": "/p?q=1", "host": "shop.example.com",
                    "port": 8080, "headers": [["X-A", "1"], ["x-a", "2"]], "body": "hé"}),
        "",
        json.dumps({"url": "https://api.example.com:8443/v1", "headers": {"Accept": "*/*"}}),
        json.dumps({"url": "/", "host": None, "version": "HTTP/1.0", "address": "127.0.0.1",
                    "body_base64": "AAE=", "name": "raw", "scheme": "http"}),
    ]))
    specs = load_requests(str(path))
    assert specs == [
        RequestSpec(method="POST", target="/p?q=1", host="shop.example.com", port=8080,
                    headers=(("X-A", "1"), ("x-a", "2")), body="hé".encode(), line=2),
        RequestSpec(target="/v1", host="api.example.com:8443", port=8443, scheme="https",
                    headers=(("Accept", "*/*"),), line=4),
        RequestSpec(target="/", host=None, version="1.0", address="127.0.0.1", body=b"\0\1",
                    name="raw", scheme="http", line=5),
    ]


@pytest.mark.parametrize(("line", "message"), [
    ('{"url": "/", "prot": 1}', "unknown key(s): prot"),
    ('{"url": "/", "port": 0}', '"port" must be an integer'),
    ('{"method": "GET"}', '"url" (a string) is required'),
    ('{"url": "/", "headers": [["a"]]}', '"headers" must be'),
    ('{"url": "/", "version": "2"}', "HTTP version must be 1.0 or 1.1"),
    ('{"url": "ftp://x/"}', "scheme must be http or https"),
    ("[1]", "each line must be a JSON object"),
    ('{"url": "/",', "not JSON"),
])
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    """A malformed request is an error with file:line, not a traceback."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"url": "/"}\n' + line + "\n")
    with pytest.raises(RequestSetError, match="r.jsonl:2: .*" + re.escape(message)):
        load_requests(str(path))


def test_text_request_set(tmp_path: Path) -> None:
    """The plain-text form: ### separators, comments, headers, Host override, bodies."""
    path = tmp_path / "r.http"
    path.write_text(
        "# first request\n"
        "GET http://shop.example.com:8080/a?b=1 HTTP/1.1\n"
        "Accept: text/html\n"
        "\n"
        "###\n"
        "POST http://shop.example.com/cart\r\n"
        "Content-Type: application/json\r\n"
        "Host: other.example.com\r\n"
        "\r\n"
        '{"sku": 1}\r\n'
        "line two\r\n"
        "\r\n"
        "###\n"
        "\n"
        "HEAD /x HTTP/1.0\n"
        "Host: h\n"
        "###\n")
    assert load_requests(str(path)) == [
        RequestSpec(target="/a?b=1", host="shop.example.com:8080", port=8080, scheme="http",
                    headers=(("Accept", "text/html"),), line=2),
        RequestSpec(method="POST", target="/cart", host="other.example.com", scheme="http",
                    headers=(("Content-Type", "application/json"),),
                    body=b'{"sku": 1}\nline two', line=6),
        RequestSpec(method="HEAD", target="/x", host="h", version="1.0", line=15),
    ]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("GET\n", 1, "expected 'METHOD URL"),
    ("GET example.com/x\n", 1, "URL must be absolute"),
    ("GET http://a/ HTTP/2.0\n", 1, "HTTP version"),
    ("GET http://a/\nno colon here\n", 2, "expected 'Name: value'"),
    ("GET http://a:99999/\n", 1, "invalid port"),
    ("###\n\n###\n", 0, "no requests"),
])
def test_text_errors_name_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    """Text-form mistakes point at their line."""
    path = tmp_path / "r.txt"
    path.write_text(text)
    with pytest.raises(RequestSetError, match=f"r.txt:{line}: " + re.escape(message)):
        load_requests(str(path))


def test_build_request_bytes() -> None:
    """What goes on the wire: request line, Host, headers in order, the tag, framing, close."""
    spec = RequestSpec(method="POST", target="/a%2Fb?x", host="h:8080",
                       headers=(("X-A", "1"),), body=b"hello")
    assert build_request(spec, "t-1") == (
        b"POST /a%2Fb?x HTTP/1.1\r\nHost: h:8080\r\nX-A: 1\r\nX-Tern-Compare-Id: t-1\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    own = RequestSpec(host=None, version="1.0", headers=(("Connection", "keep-alive"),
                                                         ("Transfer-Encoding", "chunked")),
                      body=b"0\r\n\r\n")
    assert build_request(own, "t") == (
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
        b"X-Tern-Compare-Id: t\r\n\r\n0\r\n\r\n")


# --------------------------------------------------------------------------------------------
# response parsing


def test_parse_response_framings() -> None:
    """Content-Length, chunked (with trailers), read-to-close, HEAD, interim 100s."""
    cl = _parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA", False,
                         eof=False)
    assert cl is not None and cl.body == b"abc" and cl.error == ""
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
    assert _parse_response(chunked[:-2], False, eof=False) is None
    done = _parse_response(chunked, False, eof=False)
    assert done is not None and done.body == b"abcde"
    assert _parse_response(b"HTTP/1.0 200 OK\r\n\r\nabc", False, eof=False) is None
    eof = _parse_response(b"HTTP/1.0 200 OK\r\n\r\nabc", False, eof=True, error="closed")
    assert eof is not None and eof.body == b"abc" and eof.version == "1.0" and not eof.error
    head = _parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", True, eof=False)
    assert head is not None and head.body == b""
    interim = _parse_response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                              False, eof=False)
    assert interim is not None and interim.status == 204


def test_parse_response_cut_short() -> None:
    """A body cut by the peer is kept with an ``incomplete body`` error; no head is no status."""
    cut = _parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", False, eof=True,
                          error="closed")
    assert cut is not None and cut.status == 200 and cut.error == "incomplete body (closed)"
    nothing = _parse_response(b"", False, eof=True, error="reset")
    assert nothing is not None and nothing.status is None and nothing.error == "reset"


# --------------------------------------------------------------------------------------------
# the echo upstream


def test_echo_records_exactly_what_arrived() -> None:
    """Rule 1: method, raw target, version, headers in order and case, body, framing, peer."""
    with EchoServer("up-1") as echo:
        mark = sequence_mark()
        raw = (b"POST /a%2F..//b?x=%41 HTTP/1.1\r\nHost: x\r\nX-MiXeD: One\r\n"
               b"x-mixed: two\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)  # a half-close still gets its answer
            data = _read_all(sock)
        [record] = echo.records_since(mark)
        assert record.seq > mark and sequence_mark() >= record.seq
        assert (record.method, record.target, record.version) == ("POST", "/a%2F..//b?x=%41",
                                                                  "1.1")
        assert record.headers == ((b"Host", b"x"), (b"X-MiXeD", b"One"), (b"x-mixed", b"two"),
                                  (b"Transfer-Encoding", b"chunked"))
        assert record.body == b"abc" and record.framing is Framing.CHUNKED
        assert record.peer[0] == "127.0.0.1" and record.server_id == "up-1"
        assert record.header("x-mixed") == "One"
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nX-Echo-Id: up-1" in head
        assert body == describe(record)
        assert json.loads(body)["headers"][1] == ["X-MiXeD", "One"]
        captured = record.captured()
        assert captured.upstream == "up-1" and captured.framing is Framing.CHUNKED


def test_echo_keep_alive_and_pipelining() -> None:
    """Rule 5: pipelined requests are answered in order on one connection."""
    with EchoServer("ka", behaviours=[Behaviour(prefix="/slow", delay=0.2, body=b"slow")]) as e:
        with socket.create_connection(("127.0.0.1", e.port), timeout=5) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
                         b"GET /last HTTP/1.0\r\n\r\n")
            data = _read_all(sock)
        assert data.count(b"HTTP/1.1 200 OK") == 3
        assert data.index(b"slow") < data.index(b'"/fast"') < data.index(b'"/last"')
        assert [r.framing for r in e.records] == [Framing.NONE, Framing.CONTENT_LENGTH,
                                                  Framing.NONE]


def test_echo_behaviours() -> None:
    """Rule 4: status, headers, body, close half-way and reset, by longest path prefix."""
    table = [
        Behaviour(prefix="/", status=503, headers=(("Retry-After", "1"),), body=b"busy"),
        Behaviour(prefix="/ok", status=200),
        Behaviour(prefix="/ok/cut", action=Action.CLOSE_MID_RESPONSE),
        Behaviour(prefix="/rst", action=Action.RESET),
    ]
    with EchoServer("b", behaviours=table) as echo:
        spec = RequestSpec(target="/x")
        busy = send(spec, echo.port, "t", tls=False, timeout=5)
        assert busy.status == 503 and busy.body == b"busy"
        assert (b"Retry-After", b"1") in busy.headers
        ok = send(RequestSpec(target="/ok?q"), echo.port, "t", tls=False, timeout=5)
        assert ok.status == 200 and json.loads(ok.body)["target"] == "/ok?q"
        cut = send(RequestSpec(target="/ok/cut"), echo.port, "t", tls=False, timeout=5)
        assert cut.status == 200 and cut.error == "incomplete body (closed)"
        reset = send(RequestSpec(target="/rst"), echo.port, "t", tls=False, timeout=5)
        assert reset.status is None and reset.error in ("reset", "closed")
        assert len(echo.records) == 4  # every request is recorded before it is answered


def test_echo_stop_is_idempotent_and_frees_the_port() -> None:
    """stop() closes the socket; a second stop() does nothing."""
    echo = EchoServer("s").start()
    port = echo.port
    echo.stop()
    echo.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_send_reports_refused_and_timeout() -> None:
    """Network trouble becomes a response without status, never an exception."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        refused = send(RequestSpec(), port, "t", tls=False, timeout=1)
        assert refused.status is None and refused.error.startswith("connect failed")
        s.listen()
        started = time.monotonic()
        silent = send(RequestSpec(), port, "t", tls=False, timeout=0.3)
        assert silent.status is None and silent.error == "timeout"
        assert time.monotonic() - started < 2


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


# --------------------------------------------------------------------------------------------
# nginx against nginx


def run_compare(*args: str) -> Result:
    return CliRunner().invoke(compare_cmd, [*args, "--candidate-cmd", NGINX_CANDIDATE],
                              catch_exceptions=False)


def write_requests(tmp_path: Path, lines: list[dict[str, object]]) -> str:
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


REVERSE_PROXY_REQUESTS: list[dict[str, object]] = [
    {"url": "/", "host": "shop.example.com", "port": 8080},
    {"url": "/api/orders/1?x=1", "host": "shop.example.com", "port": 8080},
    {"method": "POST", "url": "/api/cart", "host": "shop.example.com", "port": 8080,
     "headers": [["Content-Type", "application/json"]], "body": '{"sku": 1}'},
    {"url": "/static/app.js", "host": "shop.example.com", "port": 8080},
    {"url": "/account/me", "host": "shop.example.com", "port": 8080},
    {"url": "/account", "host": "shop.example.com", "port": 8080},
    {"url": "/maintenance.html", "host": "shop.example.com", "port": 8080},
    {"url": "/ws/chat", "host": "shop.example.com", "port": 8080,
     "headers": [["Upgrade", "websocket"], ["Connection", "Upgrade"]]},
    {"url": "/reports/q3.csv", "host": "admin.shop.example.com", "port": 8081},
    {"url": "/", "host": "admin.shop.example.com", "port": 8081},
]

VHOSTS_REQUESTS: list[dict[str, object]] = [
    {"url": "/", "host": "example.com", "port": 8080},
    {"url": "/", "host": "api.example.com", "port": 8080},
    {"url": "/x", "host": "www.example.com", "port": 8081},
    {"url": "/", "host": "nobody.invalid", "port": 8081},
    {"url": "/", "host": "status.internal", "port": 8082, "address": "127.0.0.1"},
    {"url": "/", "host": "status.internal", "port": 8082},
    {"url": "/", "host": "shard7.example.net", "port": 8080},
    {"method": "HEAD", "url": "/", "host": "www.example.org", "port": 8443},
    {"url": "/", "host": None, "version": "1.0", "port": 8080},
]


@needs_nginx
def test_same_config_compares_equal(tmp_path: Path) -> None:
    """nginx against a second nginx on the same reverse-proxy tree: exit 0, no difference.

    Responses and upstream requests are compared; the server-level ``X-Request-Id
    $request_id`` differs between any two answers and is learnt as noise.
    """
    requests = write_requests(tmp_path, REVERSE_PROXY_REQUESTS)
    result = run_compare(str(FIXTURES / "reverse-proxy" / "nginx.conf"), "--requests", requests,
                         "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"] == {"requests": 10, "same": 10, "differ": 0, "exit_code": 0}
    assert all(r["differences"] == [] for r in doc["requests"])
    noise = {d["field"] for r in doc["requests"] for d in r["noise"]}
    assert noise == {"upstream:header:x-request-id"}
    statuses = [r["status"]["nginx"] for r in doc["requests"]]
    assert statuses == [200, 200, 200, 200, 200, 301, 404, 200, 200, 200]


@needs_nginx
def test_same_config_compares_equal_without_noise_learning(tmp_path: Path) -> None:
    """Without the second round trip, a deterministic config still has no difference at all
    (444 close, specific listen address, HEAD, HTTP/1.0 without Host included)."""
    requests = write_requests(tmp_path, VHOSTS_REQUESTS)
    result = run_compare(str(FIXTURES / "vhosts" / "nginx.conf"), "--requests", requests,
                         "--json", "--no-learn-noise")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["status"]["nginx"] for r in doc["requests"]] == [
        200, 200, 200, None, 200, 200, 200, 200, 404]
    assert all(r["differences"] == [] and r["noise"] == [] for r in doc["requests"])


def copy_fixture(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


@needs_nginx
def test_changed_return_text_is_the_only_difference(tmp_path: Path) -> None:
    """A candidate whose one ``return`` text differs: exit 1, exactly that body reported."""
    tree = copy_fixture(tmp_path, "vhosts")
    site = tree / "sites-enabled" / "example-com.conf"
    text = site.read_text()
    assert 'return 200 "exact api.example.com\\n";' in text
    site.write_text(text.replace('return 200 "exact api.example.com\\n";',
                                 'return 200 "exact api.example.com!\\n";'))
    requests = write_requests(tmp_path, VHOSTS_REQUESTS)
    result = run_compare(str(FIXTURES / "vhosts" / "nginx.conf"), "--requests", requests,
                         "--candidate-config", str(tree / "nginx.conf"), "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"]["differ"] == 1
    differing = [r for r in doc["requests"] if r["verdict"] == "differ"]
    assert [r["request"] for r in differing] == ["GET http://api.example.com:8080/"]
    assert differing[0]["differences"] == [
        {"field": "body", "nginx": "exact api.example.com\\n (22 bytes)",
         "tern": "exact api.example.com!\\n (23 bytes)"}]


@needs_nginx
def test_removed_proxy_set_header_is_the_only_difference(tmp_path: Path) -> None:
    """A candidate without one server-level ``proxy_set_header``: exit 1, and the text report
    names exactly that upstream header for exactly the requests that use the server's list."""
    tree = copy_fixture(tmp_path, "reverse-proxy")
    shop = tree / "sites-enabled" / "shop.conf"
    line = "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
    text = shop.read_text()
    assert text.count(line) == 2  # the server's list, then /api/'s own
    shop.write_text(text.replace(line, "", 1))
    requests = write_requests(tmp_path, REVERSE_PROXY_REQUESTS)
    result = run_compare(str(FIXTURES / "reverse-proxy" / "nginx.conf"), "--requests", requests,
                         "--candidate-config", str(tree / "nginx.conf"))
    assert result.exit_code == 1, result.output
    out = result.stdout
    # "/", "/static/app.js" and "/account/me" inherit the server's list; /api/ and /ws/ have
    # their own, /account (301) and /maintenance.html go nowhere, 8081 is another server
    rows = [ln for ln in out.splitlines() if " DIFF " in ln]
    assert [ln.split()[2] for ln in rows] == [
        "http://shop.example.com:8080/", "http://shop.example.com:8080/static/app.js",
        "http://shop.example.com:8080/account/me"]
    assert all(ln.rstrip().endswith("upstream:header:x-forwarded-for") for ln in rows)
    assert out.count("  upstream:header:x-forwarded-for\n    nginx: 127.0.0.1\n"
                     "    tern:  (absent)\n") == 3
    assert "10 request(s): 7 same, 3 differ" in out


# --------------------------------------------------------------------------------------------
# setup errors: exit 2 with a message, never a traceback


@needs_nginx
def test_nginx_t_failure_is_exit_2_with_nginx_message(tmp_path: Path) -> None:
    """nginx -t's own message is shown, with the original file:line of the bad directive."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    server {\n        listen 8080;\n"
                    "        bogus_directive on;\n    }\n}\n")
    requests = write_requests(tmp_path, [{"url": "/"}])
    result = run_compare(str(conf), "--requests", requests)
    assert result.exit_code == 2
    assert 'unknown directive "bogus_directive"' in result.stderr
    assert f"(from {conf}:5)" in result.stderr
    assert "Traceback" not in result.output


@needs_nginx
def test_candidate_that_does_not_start_is_exit_2(tmp_path: Path) -> None:
    """A candidate that exits before listening: exit 2 with its stderr."""
    requests = write_requests(tmp_path, [{"url": "/"}])
    result = CliRunner().invoke(compare_cmd, [
        str(FIXTURES / "vhosts" / "nginx.conf"), "--requests", requests, "--candidate-cmd",
        "{python} -c \"import sys; sys.stderr.write('no can do\\\\n'); sys.exit(3)\"",
        "--start-timeout", "5"])
    assert result.exit_code == 2, result.output
    assert "tern exited with status 3 before listening" in result.stderr
    assert "no can do" in result.stderr


@needs_nginx
def test_request_to_a_port_the_config_does_not_listen_on_is_exit_2(tmp_path: Path) -> None:
    """The request set must name original listen ports."""
    requests = write_requests(tmp_path, [{"url": "/", "port": 9999}])
    result = run_compare(str(FIXTURES / "vhosts" / "nginx.conf"), "--requests", requests)
    assert result.exit_code == 2
    assert "does not listen on port 9999" in result.stderr


def test_bad_config_and_bad_request_set_are_exit_2(tmp_path: Path) -> None:
    """Loader errors and request-set errors stop before anything is started."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("http { server {\n")
    requests = write_requests(tmp_path, [{"url": "/"}])
    result = run_compare(str(conf), "--requests", requests)
    assert result.exit_code == 2
    assert "cannot read the configuration" in result.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("GET nowhere\n")
    result = run_compare(str(FIXTURES / "vhosts" / "nginx.conf"), "--requests", str(bad))
    assert result.exit_code == 2
    assert "bad.txt:1: URL must be absolute" in result.stderr


@needs_nginx
def test_answers_are_normalised_back_to_original_ports(tmp_path: Path) -> None:
    """Each side's new listen and echo ports read as the original ones in headers and upstream
    requests (``host:port`` forms and whole values), but other numbers are left alone."""
    from migrate.compare import Comparison

    conf = tmp_path / "nginx.conf"
    conf.write_text("""
events {}
http {
    server {
        listen 8080;
        location /r { return 302 /x; }
        location /p { add_header X-Port $server_port; return 200 "p"; }
        location /u { proxy_pass http://10.9.9.9:9999; proxy_set_header X-P $server_port; }
    }
}
""")
    comparison = Comparison(config=str(conf), prefix=None, candidate_config=None,
                            candidate_cmd=NGINX_CANDIDATE, nginx=str(NGINX), timeout=5,
                            start_timeout=10, keep=False, log=lambda _: None)
    try:
        comparison.setup()
        listen = comparison.listen_for(RequestSpec(port=8080))
        for side in comparison.sides:
            r = comparison.exchange(side, listen, RequestSpec(target="/r", host="h",
                                                              scheme="http"), "t1")
            assert dict(r.response.headers)[b"Location"] == b"http://h:8080/x"
            p = comparison.exchange(side, listen, RequestSpec(target="/p", host="h",
                                                              scheme="http"), "t2")
            assert dict(p.response.headers)[b"X-Port"] == b"8080"
            assert dict(p.response.headers)[b"Content-Length"] == b"1"
            u = comparison.exchange(side, listen, RequestSpec(target="/u", host="h",
                                                              scheme="http"), "t3")
            [up] = u.upstream
            assert up.upstream == "10.9.9.9:9999" and u.echoed
            assert dict(up.headers)[b"Host"] == b"10.9.9.9:9999"
            assert dict(up.headers)[b"X-P"] == b"8080"
            assert b'"10.9.9.9:9999"' in u.response.body
    finally:
        comparison.close()


ERROR_PAGE_CONF = """events {}
http {
    server {
        listen 8080;
        server_name err.test;
        location = /gone { return 410; }
        location = /teapot { return 404 "not here\\n"; }
        location / { root html-does-not-exist; }
    }
}
"""


def run_tern_compare(*args: str) -> Result:
    """``tern compare`` with its default candidate, ``tern serve``."""
    return CliRunner().invoke(compare_cmd, list(args), catch_exceptions=False)


@needs_nginx
def test_error_page_signature_is_masked_but_the_page_is_compared(tmp_path: Path) -> None:
    """nginx against tern serve: built-in error pages end with each product's signature
    (``nginx/1.22.1`` vs ``tern/...``, the documented ``error-page-tail``), which is masked
    like the Server header; a page whose other bytes differ is still a difference."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(ERROR_PAGE_CONF)
    requests = write_requests(tmp_path, [
        {"url": "/gone", "host": "err.test", "port": 8080},
        {"url": "/missing", "host": "err.test", "port": 8080},
        {"method": "HEAD", "url": "/missing", "host": "err.test", "port": 8080},
        {"url": "/teapot", "host": "err.test", "port": 8080}])
    result = run_tern_compare(str(conf), "--requests", requests, "--json", "--no-learn-noise")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["status"]["nginx"] for r in doc["requests"]] == [410, 404, 404, 404]
    # the candidate answers 410 with its own text: only that request differs, in its body
    changed = tmp_path / "changed.conf"
    changed.write_text(ERROR_PAGE_CONF.replace("return 410;", 'return 410 "gone\\n";'))
    result = run_tern_compare(str(conf), "--requests", requests, "--json", "--no-learn-noise",
                         "--candidate-config", str(changed))
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert [(r["request"], [d["field"] for d in r["differences"]])
            for r in doc["requests"] if r["verdict"] == "differ"] == [
        ("GET http://err.test:8080/gone", ["header:content-type", "body"])]
