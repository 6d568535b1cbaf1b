"""Issue 4 must-show: nginx and Tern on the same fixture config behind ``tern shadow``.

nginx (primary) and ``tern serve`` (candidate) run port-mapped copies of a fixture config
(:mod:`migrate.portmap`, through :class:`migrate.compare.Comparison`), sharing recording echo
upstreams. ``tern shadow`` runs as a subprocess in front of them with ``--config`` set to the
candidate's config (attribution). A request set over several locations and Host names gives
zero differences; then the candidate is restarted on a copy with one deliberate change in one
location, the same requests are sent again, and exactly the requests that hit that location
differ, on exactly the expected fields, attributed to that location's ``file:line``.

Everything talks to 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migrate.compare import DEFAULT_CANDIDATE, Comparison, Side, _load
from migrate.portmap import free_port
from migrate.portmap import scan as scan_tree

pytestmark = pytest.mark.nginx

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "nginx"
NGINX_BIN = Path("/usr/sbin/nginx")

if not NGINX_BIN.exists():  # pragma: no cover - the marker's environment has it
    pytest.skip("needs Debian's nginx", allow_module_level=True)


# --------------------------------------------------------------------------------------------
# plumbing


def _tern_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the process we started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def shadow(primary_port: int, candidate_port: int, store: Path, config: Path,
           run_dir: Path, *extra: str) -> Iterator[int]:
    """``tern shadow`` as a subprocess; yields its port."""
    port = free_port(set())
    argv = [sys.executable, "-m", "migrate.cli", "shadow", "--listen", f"127.0.0.1:{port}",
            "--primary", f"http://127.0.0.1:{primary_port}",
            "--candidate", f"http://127.0.0.1:{candidate_port}",
            "--store", str(store), "--config", str(config), "--concurrency", "1", *extra]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "shadow.stderr", "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True, env=_tern_env(),
                                cwd=run_dir)
    try:
        _wait_port(port, proc)
        yield port
    finally:
        _stop(proc)


def get(port: int, host: str, target: str) -> int:
    """One GET on a fresh connection; the status (the body is read and dropped)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shadow-test\r\n"
                  f"Connection: close\r\n\r\n".encode())
        buf = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
    assert buf.startswith(b"HTTP/1.1 "), buf[:200]
    return int(buf.split()[1])


def stored(store: Path) -> int:
    """Exchanges in the store so far (read-only; the shadow process writes)."""
    if not store.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def wait_stored(store: Path, n: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored(store) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"store has {stored(store)} of {n} exchanges after {timeout}s")


def diffs_json(store: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "migrate.cli", "diffs", "--store", str(store),
                          "--json", "--examples", "50"],
                         capture_output=True, text=True, timeout=60, env=_tern_env())
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def differences(store: Path, verdict: str = "difference") -> list[dict[str, str | None]]:
    """Every stored difference with that verdict, with its exchange's request."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT e.host, e.target, d.field, d.primary_value, d.candidate_value, d.location,"
            " d.location_source, d.server FROM differences d JOIN exchanges e"
            " ON e.id = d.exchange_id WHERE d.verdict = ? ORDER BY d.id", (verdict,)).fetchall()
    finally:
        db.close()
    keys = ("host", "target", "field", "primary", "candidate", "location", "location_source",
            "server")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def exchanges(store: Path) -> list[tuple[str, str, str | None, str | None, int, int]]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT host, target, location, location_source, primary_status,"
                          " candidate_status FROM exchanges ORDER BY id").fetchall()
    finally:
        db.close()


# --------------------------------------------------------------------------------------------
# scenarios


@dataclass(frozen=True)
class Scenario:
    fixture: str
    """Directory under fixtures/nginx/."""
    endpoint: tuple[str, int]
    """The original listen endpoint ``tern shadow`` fronts."""
    requests: tuple[tuple[str, str], ...]
    """(Host, target) pairs."""
    edit_file: str
    """File (relative to the fixture) changed for the candidate."""
    edit_old: str
    edit_new: str
    location_line: str
    """The exact line (stripped) of the changed location, for its expected file:line."""
    location_match: str
    hits: frozenset[tuple[str, str]]
    """Requests that land in the changed location."""
    fields: frozenset[str]
    """Fields expected to differ for each of those."""
    primary_text: str
    candidate_text: str
    """What the stored body difference shows for each side."""
    attribution: bool = True
    """Check the stored location (False: see test_attribution_follows_the_fronted_listen)."""
    noise: frozenset[str] = frozenset()
    """Fields that may be noise (learned from the primary asked twice, ``--learn-noise``)."""
    noise_required: frozenset[str] = frozenset()
    """Fields that must be noise."""
    rules: str = ""
    """``--rules`` file (TOML) for both runs, if any."""


NESTED = Scenario(
    fixture="nested-locations",
    endpoint=("*", 8080),
    requests=(
        ("docs.example.com", "/"),
        ("docs.example.com", "/index.html"),
        ("docs.example.com", "/a.html"),
        ("docs.example.com", "/img/logo.JPG"),
        ("docs.example.com", "/reports/2024/q1"),
        ("docs.example.com", "/api/"),
        ("docs.example.com", "/api/ping"),
        ("docs.example.com", "/api/v1/users/7/"),
        ("docs.example.com", "/api/v1/"),
        ("other.example.org", "/api/v1/things"),
        ("docs.example.com", "/api/v1/status"),
        ("docs.example.com", "/api/v1/users/42"),
        ("docs.example.com", "/api/v1/static/a.gif"),
        ("docs.example.com", "/api/v1/data/EXPORT/x"),
        ("unknown.test", "/media/a.gif"),
        ("docs.example.com", "/media/b.html"),
        ("docs.example.com", "/media/thumbs/c_small.jpg"),
        ("docs.example.com", "/reports/latest"),
        ("docs.example.com", "/with%20space/"),
        ("docs.example.com", "/caf%C3%A9/"),
        ("docs.example.com", "//api///v1//more"),
    ),
    edit_file="locations/api.conf",
    edit_old='return 200 "loc=api-v1\\n";',
    edit_new='return 200 "loc=api-v1 CHANGED\\n";',
    location_line="location /api/v1/ {",
    location_match="/api/v1/",
    hits=frozenset({("docs.example.com", "/api/v1/"),
                    ("docs.example.com", "/api/v1/users/7/"),
                    ("other.example.org", "/api/v1/things"),
                    ("docs.example.com", "//api///v1//more")}),
    fields=frozenset({"body"}),  # Content-Length is normalised away (framing)
    primary_text="loc=api-v1\\n (11 bytes)",  # the differ's escaped preview
    candidate_text="loc=api-v1 CHANGED\\n (19 bytes)",
)

REVERSE = Scenario(
    fixture="reverse-proxy",
    endpoint=("*", 8080),
    requests=(
        ("shop.example.com", "/"),
        ("shop.example.com", "/products/17?color=red"),
        ("www.shop.example.com", "/cart"),
        ("shop.example.com", "/api/orders/1"),
        ("www.shop.example.com", "/api/ping"),
        ("shop.example.com", "/account/login"),
        ("www.shop.example.com", "/account/orders"),
        ("shop.example.com", "/static/app.css"),
        ("www.shop.example.com", "/static/img/logo.png"),
        ("unknown.test", "/static/app.js"),
        ("unknown.test", "/"),
        ("shop.example.com", "/maintenance.html"),
        ("shop.example.com", "/staticx"),
    ),
    edit_file="sites-enabled/shop.conf",
    edit_old="proxy_next_upstream off;",
    edit_new="proxy_next_upstream off;\n        add_header X-Candidate changed;",
    location_line="location /static/ {",
    location_match="/static/",
    hits=frozenset({("shop.example.com", "/static/app.css"),
                    ("www.shop.example.com", "/static/img/logo.png"),
                    ("unknown.test", "/static/app.js")}),
    fields=frozenset({"header:x-candidate"}),
    primary_text="",
    candidate_text="",
    attribution=False,
    # the echo upstream reflects the request it got: nginx's random $request_id (X-Request-Id,
    # third header line) differs between the two primaries, so it is noise, not a difference
    noise=frozenset({"body:$.headers[2][1]"}),
    noise_required=frozenset({"body:$.headers[2][1]"}),
    # app_backend is least_conn over two weighted servers: which one answers (the echo server's
    # id, in X-Echo-Id and the body) depends on each proxy's balancer state, not on the config;
    # two primaries may agree where the candidate does not, so it is not reliably noise either
    rules='ignore_headers = ["X-Echo-Id"]\nignore_json_paths = ["$.server"]\n',
)


# --------------------------------------------------------------------------------------------
# the test


def _copy_fixture(sc: Scenario, dst: Path) -> Path:
    shutil.copytree(FIXTURES / sc.fixture, dst)
    return dst / "nginx.conf"


def _line_of(path: Path, line: str) -> int:
    found = [i for i, text in enumerate(path.read_text().splitlines(), 1)
             if text.strip() == line]
    assert len(found) == 1, (path, line, found)
    return found[0]


def _check_noise(sc: Scenario, noise: list[dict[str, str | None]]) -> None:
    fields = {str(n["field"]) for n in noise}
    assert sc.noise_required <= fields <= sc.noise, json.dumps(noise, indent=1)


def _rules_args(sc: Scenario, where: Path) -> tuple[str, ...]:
    if not sc.rules:
        return ()
    where.mkdir(parents=True, exist_ok=True)
    (where / "rules.toml").write_text(sc.rules)
    return ("--rules", str(where / "rules.toml"))


def _send_all(sc: Scenario, port: int, store: Path, base: int) -> None:
    """Send the request set one by one, each mirrored and stored before the next."""
    for i, (host, target) in enumerate(sc.requests, 1):
        assert get(port, host, target) < 500
        wait_stored(store, base + i)


@pytest.mark.parametrize("sc", [NESTED, REVERSE], ids=lambda s: s.fixture)
def test_same_config_no_differences_then_one_changed_location(sc: Scenario,
                                                             tmp_path: Path) -> None:
    same_conf = _copy_fixture(sc, tmp_path / "same")
    changed_dir = tmp_path / "changed"
    changed_conf = _copy_fixture(sc, changed_dir)
    edited = changed_dir / sc.edit_file
    text = edited.read_text()
    assert text.count(sc.edit_old) == 1
    edited.write_text(text.replace(sc.edit_old, sc.edit_new))
    expected_source = f"{edited}:{_line_of(edited, sc.location_line)}"

    cmp = Comparison(config=str(same_conf), prefix=str(same_conf.parent), candidate_config=None,
                     candidate_cmd=DEFAULT_CANDIDATE, nginx=str(NGINX_BIN), timeout=5.0,
                     start_timeout=20.0, keep=False, log=lambda _m: None)
    side2: Side | None = None
    try:
        cmp.setup()
        nginx_side, tern_side = cmp.sides
        listen = next(s for s in nginx_side.scan.listens if s.key == sc.endpoint)
        nginx_port = nginx_side.port_for(listen)
        tern_port = tern_side.port_for(listen)
        assert nginx_port and tern_port

        # 1. the same config on both sides: no differences
        store1 = tmp_path / "same.db"
        started = time.monotonic()
        with shadow(nginx_port, tern_port, store1, same_conf, tmp_path / "run1",
                    "--learn-noise", *_rules_args(sc, tmp_path)) as port:
            _send_all(sc, port, store1, 0)
        summary = diffs_json(store1)
        assert summary["totals"]["exchanges"] == len(sc.requests), summary["totals"]
        assert summary["counters"]["mirrored"] == len(sc.requests), summary["counters"]
        assert summary["counters"]["candidate_errors"] == 0, summary["counters"]
        assert differences(store1) == [], json.dumps(differences(store1), indent=1)
        _check_noise(sc, differences(store1, "noise"))
        assert summary["totals"]["differing"] == 0
        assert summary["top_fields"] == []
        # attribution is recorded for every exchange even without differences
        rows = exchanges(store1)
        assert all(r[3] and r[3].startswith(str(same_conf.parent)) for r in rows), rows
        assert all(r[4] == r[5] for r in rows), rows

        # 2. the candidate restarted on the changed copy
        tern_side.stop()
        tree = _load(str(changed_conf), str(changed_conf.parent))
        side2 = Side("tern", tree, scan_tree(tree), os.path.join(cmp.run_dir, "tern-changed"))
        side2.echoes = cmp.echoes
        taken = {e.port for e in cmp.echoes.values()} | {nginx_port, tern_port}
        side2.write_config(taken)
        side2.launch(cmp.candidate_argv(side2))
        side2.wait_listening(time.monotonic() + 20.0)
        tern2_port = side2.port_for(listen)
        assert tern2_port

        store2 = tmp_path / "changed.db"
        with shadow(nginx_port, tern2_port, store2, changed_conf, tmp_path / "run2",
                    "--learn-noise", *_rules_args(sc, tmp_path)) as port:
            _send_all(sc, port, store2, 0)
        elapsed = time.monotonic() - started

        found = differences(store2)
        _check_noise(sc, differences(store2, "noise"))
        by_request: dict[tuple[str, str], set[str]] = {}
        for d in found:
            by_request.setdefault((str(d["host"]), str(d["target"])), set()).add(str(d["field"]))
            if sc.attribution:
                assert d["location"] == sc.location_match, d
                assert d["location_source"] == expected_source, d
            if d["field"] == "body":
                assert d["primary"] == sc.primary_text, d
                assert d["candidate"] == sc.candidate_text, d
        assert set(by_request) == sc.hits, json.dumps(found, indent=1)
        for req, fields in by_request.items():
            assert fields == sc.fields, (req, fields)
        summary = diffs_json(store2)
        assert summary["totals"]["exchanges"] == len(sc.requests)
        assert summary["totals"]["differing"] == len(sc.hits)
        assert {f["field"] for f in summary["top_fields"]} == sc.fields
        # the unchanged locations are attributed elsewhere and do not differ
        for host, target, loc, src, ps, cs in exchanges(store2):
            hit = (host, target) in sc.hits
            assert not sc.attribution or (src == expected_source) == hit, (host, target, loc, src)
            assert ps == cs == 200 or not hit
        print(f"{sc.fixture}: {len(sc.requests)} requests x 2 runs in {elapsed:.1f}s")
    finally:
        if side2 is not None:
            side2.stop()
        cmp.close()


# --------------------------------------------------------------------------------------------
# more same-config runs


def _same_config_differences(fixture: str, requests: tuple[tuple[str, str], ...],
                             tmp_path: Path, *extra: str
                             ) -> tuple[list[dict[str, str | None]], list[dict[str, str | None]]]:
    """(differences, noise) of a run with the same config on both sides."""
    conf = _copy_fixture(Scenario(fixture, ("*", 8080), (), "", "", "", "", "",
                                  frozenset(), frozenset(), "", ""), tmp_path / "same")
    cmp = Comparison(config=str(conf), prefix=str(conf.parent), candidate_config=None,
                     candidate_cmd=DEFAULT_CANDIDATE, nginx=str(NGINX_BIN), timeout=5.0,
                     start_timeout=20.0, keep=False, log=lambda _m: None)
    try:
        cmp.setup()
        nginx_side, tern_side = cmp.sides
        listen = next(s for s in nginx_side.scan.listens if s.key == ("*", 8080))
        nginx_port, tern_port = nginx_side.port_for(listen), tern_side.port_for(listen)
        assert nginx_port and tern_port
        store = tmp_path / "same.db"
        with shadow(nginx_port, tern_port, store, conf, tmp_path / "run", *extra) as port:
            for i, (host, target) in enumerate(requests, 1):
                get(port, host, target)
                wait_stored(store, i)
        return differences(store), differences(store, "noise")
    finally:
        cmp.close()


def test_default_content_types_match_nginx(tmp_path: Path) -> None:
    """Without a `types` block both use nginx's built-in types (html, gif, jpg) only."""
    found, noise = _same_config_differences(
        "nested-locations", (("docs.example.com", "/a.json"), ("docs.example.com", "/x.png"),
                             ("docs.example.com", "/media/b.svg"),
                             ("docs.example.com", "/media/b.jpeg")), tmp_path)
    assert found == [] and noise == [], json.dumps(found + noise, indent=1)


def test_reverse_proxy_same_config_no_differences(tmp_path: Path) -> None:
    """Upstreams that reflect the request they got: the shadow marker the candidate's upstream
    sees is not a difference (the differ removes its own header), and nginx's random
    X-Request-Id ($request_id) is learned as noise from the primary asked twice; nothing else
    differs, and no other field is taken for noise (a real difference there would show)."""
    found, noise = _same_config_differences("reverse-proxy", REVERSE.requests, tmp_path,
                                            "--learn-noise", *_rules_args(REVERSE, tmp_path))
    assert found == [], json.dumps(found, indent=1)
    _check_noise(REVERSE, noise)
    # every proxied request reflected the id, so each has its noise row
    assert {(n["host"], n["target"]) for n in noise} >= {
        ("shop.example.com", "/"), ("shop.example.com", "/static/app.css")}


def test_attribution_follows_the_fronted_listen() -> None:
    """Without a port, a request is attributed on the socket whose server_name matches its
    Host (shop.example.com listens on 8080; admin.conf on 8081 comes first in the tree)."""
    from migrate.shadow_cmd import _load_config, attributor

    conf = FIXTURES / "reverse-proxy" / "nginx.conf"
    att = attributor(_load_config(str(conf)))("GET", "shop.example.com", "/static/app.css")
    assert att is not None
    shop = FIXTURES / "reverse-proxy" / "sites-enabled" / "shop.conf"
    assert att.location == "/static/"
    assert att.location_source == f"{shop}:{_line_of(shop, 'location /static/ {')}"
