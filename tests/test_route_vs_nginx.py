"""``tern route`` picks the same server and location as real nginx (Debian's 1.22.1).

For every fixture tree ``fixtures/nginx/*/nginx.conf`` a routing-probe config is derived
(see :func:`support.nginx.derive_config`): each location answers ``200 "L<n>"``, each server adds
``X-Srv: S<m>``, roots point nowhere and everything needing an upstream, TLS or a module we do not
run is dropped.  Real nginx is started on that file and asked a few hundred (Host, URL) pairs
generated from the config itself (every server name shape, every location kind, encoded / dot /
slash-heavy URIs, unknown hosts, every port).  ``tern route <derived conf> <url> -H 'Host: h'
--json`` must then name the same ``server`` line, the same answering ``location`` line (when nginx
answered with a tag) and the same status.  All mismatches are collected and reported as one table.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
import subprocess
import sys
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import pytest

try:  # tests/ on sys.path (pytest's default rootdir-less import) or the repo root on it
    from support.nginx import (
        NGINX_BIN,
        DerivedConfig,
        DerivedLocation,
        DerivedServer,
        HttpResponse,
        derive_config,
        run_nginx,
    )
except ImportError:  # pragma: no cover - depends on how pytest was started
    from tests.support.nginx import (  # type: ignore[no-redef]
        NGINX_BIN,
        DerivedConfig,
        DerivedLocation,
        DerivedServer,
        HttpResponse,
        derive_config,
        run_nginx,
    )

pytestmark = pytest.mark.nginx

if not NGINX_BIN.exists() and not os.environ.get("CI"):
    pytest.skip(f"{NGINX_BIN} is not installed (CI must have it)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = sorted((REPO / "fixtures" / "nginx").glob("*/nginx.conf"))

MIN_PAIRS = 300
MAX_PAIRS_PER_FIXTURE = 250
"""Keeps the whole module well under a minute (nginx answers ~1 ms, tern a few ms per pair)."""

UNKNOWN_HOSTS = ("unknown.invalid", "127.0.0.1")

EXTRA_URIS: dict[str, tuple[str, ...]] = {
    "legacy-rewrites": (
        "/shop/item/1",
        "/store/item/42",
        "/store/x",
        "/downloads/pricelist.txt",
        "/fetch",
        "/old/x",
        "/blog/2014/06/summer.html",
        "/index.php",
        "/promo/x?utm=1",
        "/?page_id=42",
        "/discontinued",
        "/login",
        "/shop/%2e%2e/x",
    ),
    "php-app": (
        "/index.php",
        "/wp-admin/index.php",
        "/wp-admin/a.gif",
        "/uploads/x.php",
        "/uploads/a.GIF",
        "/legacy/index.php",
        "/media/a.jpg",
        "/media/x",
        "/.htaccess",
        "/a.JPG",
        "/x.PHP",
        "/blog/post-1?p=2",
        "/.ht.php",
        "/.htx.jpg",
        "/wp-admin/.ht.gif",
    ),
    "static-site": (
        "/index.html",
        "/404.html",
        "/_partials/footer.html",
        "/assets/app.3f9c1a.css",
        "/legacy.css",
        "/LEGACY.CSS",
        "/docs/",
        "/docs/install.html",
        "/healthz/",
        "/about",
    ),
    "nested-locations": (
        "/api/v1/users/42",
        "/api/v1/users/x",
        "/api/v1/EXPORT/a",
        "/api/v1/export/a",
        "/API/v1/export/a",
        "/api/x.json",
        "/api/v1/static/a.json",
        "/media/a.svg",
        "/media/A.SVG",
        "/media/thumbs/x_small.png",
        "/media/thumbs/x_small.gif",
        "/media/a.png",
        "/reports/2024/x",
        "/reports/2024/a.json",
        "/reports/2024/a.PNG",
        "/reports/latest",
        "/reports/latest/",
        "/with%20space/",
        "/literal%2541/",
        "/literal%41/",
        "/caf%C3%A9/",
        "/tag/a%20b",
        "/tag/a%2Fb%20c",
        "//api///v1//status",
        "/api/v1/static/../users/1",
        "/api/ping/.",
        "/api/ping/..",
        "/api%2Fv1%2Fusers%2F7",
        "/api/v1/users/1%0A",
        "/a%2F..%2Fapi/ping",
        "/api%2F%2Fping",
        "/api/%2e/ping",
        "/api/ping%3Fx",
        "/api\\ping",
    ),
    "tls-h2-h3": ("/.well-known/acme-challenge/test-token", "/.well-known/x"),
    "map-if-set": ("/old-pricing", "/kb/12", "/_debug/vars?foo=1", "/search?q=x", "/searchx"),
    "limits-auth": ("/healthz", "/metrics", "/internal/x", "/v1/login", "/v1/uploads/a"),
    "reverse-proxy": ("/api/orders/1", "/account/", "/maintenance.html", "/ws/", "/reports/x"),
}
"""Hand-picked URIs per fixture on top of the generated ones (sent with each server's 1st name)."""

EXTRA_HOSTS: dict[str, tuple[str, ...]] = {
    "vhosts": (
        "www.example",
        "example.com..",
        "a..example.com",
        ".example.com",
        "a.b.example.org",
        "Alice.users.example.net",
        "shard12.example.net",
        "db-x.example.net",
        "example.com:abc",
        "xn--caf-dma.example.com",
        "_",
        "lb-health.internal",
        "status.internal",
    ),
    "map-if-set": ("staging.example.com", "x.beta.example.com", "beta.example.com"),
}
"""Extra Host headers per fixture, each sent as ``GET /`` to every port."""

REQUIRED_CATEGORIES = frozenset(
    {
        "loc:exact",
        "loc:noregex",
        "loc:prefix",
        "loc:regex",
        "loc:regex-ci-case",
        "loc:regex-order",
        "loc:nested-prefix",
        "loc:nested-regex",
        "loc:named",
        "uri:percent",
        "uri:dot-segment",
        "uri:merged-slashes",
        "uri:query",
        "host:exact",
        "host:wildcard-start",
        "host:wildcard-end",
        "host:dot-wildcard",
        "host:regex",
        "host:default",
        "host:default_server",
        "host:case",
        "host:trailing-dot",
        "host:with-port",
        "port:non-first",
        "status:400",
        "status:403",
        "status:404",
        "status:410",
        "status:444",
        "status:500",
    }
)
"""What the probes must exercise, counted from nginx's answers, so the test cannot shrink."""

_URI_SAFE = "/-._~!$&'()*+,;=:@"


# --------------------------------------------------------------------------------------------
# probes


@dataclass(frozen=True)
class Probe:
    """One request: Host header and request target (exactly as sent) on a derived port."""

    port: int
    host: str
    target: str
    host_kind: str | None = None
    """How the host was made ("exact", "wildcard-start", "regex", "unknown", ...)."""
    for_server: int | None = None
    """The server the host was generated from (None for unknown hosts)."""


@dataclass(frozen=True)
class NginxAnswer:
    """What nginx said: status (444 = closed without response), X-Srv id, L<n> id, body."""

    status: int
    server: int | None
    location: int | None
    body: str

    @classmethod
    def from_response(cls, response: HttpResponse) -> NginxAnswer:
        """Read the ids out of one raw response."""
        if response.status is None:
            return cls(status=444, server=None, location=None, body="")
        body = response.body.decode("utf-8", errors="replace")
        srv = re.fullmatch(r"S(\d+)", response.headers.get("x-srv", ""))
        loc = re.fullmatch(r"L(\d+)", body)
        return cls(
            status=response.status,
            server=int(srv.group(1)) if srv else None,
            location=int(loc.group(1)) if loc else None,
            body=body,
        )


def wire(path: str) -> str:
    """Percent-encode a decoded path for the request line (``%`` itself included)."""
    return urllib.parse.quote(path, safe=_URI_SAFE)


def decoded_path(target: str) -> str:
    """Approximately the URI nginx matches: decoded, slashes merged, dot segments resolved."""
    path = urllib.parse.unquote(target.split("?", 1)[0], errors="replace")
    path = re.sub(r"/{2,}", "/", path)
    resolved = posixpath.normpath(path)
    if path.endswith(("/", "/.", "/..")) and resolved != "/":
        resolved += "/"
    return resolved


def python_regex(pattern: str) -> str:
    """PCRE -> Python ``re``: ``(?<name>`` named groups become ``(?P<name>``."""
    return re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)


def compile_nginx_regex(pattern: str, caseless: bool) -> re.Pattern[str] | None:
    """The pattern as a Python regex, or None when Python cannot read it."""
    try:
        return re.compile(python_regex(pattern), re.IGNORECASE if caseless else 0)
    except re.error:
        return None


_CANDIDATE_CHARS = "a0b1xZ-_."


def _in_class(ch: str, items: list[tuple[Any, Any]]) -> bool:
    for op, av in items:
        if op == sre_c.LITERAL and ch == chr(av):
            return True
        if op == sre_c.RANGE and av[0] <= ord(ch) <= av[1]:
            return True
        if op == sre_c.CATEGORY:
            tests = {
                sre_c.CATEGORY_DIGIT: ch.isdigit(),
                sre_c.CATEGORY_NOT_DIGIT: not ch.isdigit(),
                sre_c.CATEGORY_WORD: ch.isalnum() or ch == "_",
                sre_c.CATEGORY_NOT_WORD: not (ch.isalnum() or ch == "_"),
                sre_c.CATEGORY_SPACE: ch.isspace(),
                sre_c.CATEGORY_NOT_SPACE: not ch.isspace(),
            }
            if tests.get(av, False):
                return True
    return False


def _pick_from_class(items: list[tuple[Any, Any]]) -> str | None:
    negated = bool(items) and items[0][0] == sre_c.NEGATE
    members = items[1:] if negated else items
    if not negated and members:
        op, av = members[0]
        if op == sre_c.LITERAL:
            return str(chr(av))
        if op == sre_c.RANGE:
            return str(chr(av[0]))
    for ch in _CANDIDATE_CHARS:
        if _in_class(ch, members) != negated:
            return ch
    return None


def _examples(items: list[tuple[Any, Any]], limit: int) -> list[str]:
    """Strings matching a parsed regex sequence (several when alternations/repeats allow)."""
    results = [""]
    for op, av in items:
        options: list[str]
        if op == sre_c.LITERAL:
            options = [chr(av)]
        elif op == sre_c.NOT_LITERAL:
            options = ["a" if av != ord("a") else "b"]
        elif op == sre_c.ANY:
            options = ["a"]
        elif op == sre_c.IN:
            picked = _pick_from_class(list(av))
            options = [picked] if picked is not None else []
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av
            counts = sorted({max(low, 1) if high != 0 else 0, low}, reverse=True)
            subs = _examples(list(sub), limit)
            options = [s * n for n in counts for s in subs]
        elif op in (sre_c.SUBPATTERN, getattr(sre_c, "ATOMIC_GROUP", None)):
            options = _examples(list(av[-1]), limit)
        elif op == sre_c.BRANCH:
            options = [s for alt in av[1] for s in _examples(list(alt), limit)]
        elif op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
            options = [""]
        else:  # back-references, conditionals: give up
            return []
        if not options:
            return []
        results = [r + o for r in results for o in options][: limit * 4]
    return list(dict.fromkeys(results))[:limit]


def regex_examples(pattern: str, limit: int = 4) -> list[str]:
    """Hand-rolled: a few strings that (should) match an nginx regex; [] when too hard."""
    try:
        tree = sre_parse.parse(python_regex(pattern))
    except (re.error, sre_c.error):
        return []
    return _examples(list(tree), limit)


def regex_uris(loc: DerivedLocation, parent_prefix: str | None) -> list[str]:
    """Decoded URIs that the location's regex matches (inside the parent's prefix if nested)."""
    regex = compile_nginx_regex(loc.pattern, loc.modifier == "~*")
    if regex is None:
        return []
    found: list[str] = []
    for example in regex_examples(loc.pattern):
        bases = [example] if example.startswith("/") else ["/x" + example, "/" + example]
        if parent_prefix:
            bases = [parent_prefix + b.lstrip("/") for b in bases] + bases
        for uri in bases:
            inside = parent_prefix is None or uri.startswith(parent_prefix)
            if uri.startswith("/") and inside and regex.search(uri) and "\n" not in uri:
                found.append(uri)
                break
    return list(dict.fromkeys(found))


def host_variants(name: str) -> list[tuple[str, str]]:
    """Host headers that a ``server_name`` entry should catch, with their kind."""
    if name.startswith("~"):
        hosts = [h.lower() for h in regex_examples(name[1:])]
        regex = compile_nginx_regex(name[1:], caseless=False)
        return [
            (h, "regex")
            for h in hosts
            if regex and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", h) and regex.search(h)
        ][:2]
    if not name or "$" in name:
        return []
    if name.startswith("*."):
        return [("a." + name[2:], "wildcard-start"), ("b.c." + name[2:], "wildcard-start")]
    if name.endswith(".*"):
        return [(name[:-2] + ".org", "wildcard-end"), (name[:-2] + ".co.uk", "wildcard-end")]
    if name.startswith("."):
        return [(name[1:], "dot-wildcard"), ("sub" + name, "dot-wildcard")]
    return [(name, "exact")]


def _prefix_of(cfg: DerivedConfig, loc: DerivedLocation | None) -> str | None:
    """The closest enclosing prefix/exact pattern a nested URI must start with."""
    while loc is not None:
        if loc.modifier in ("", "^~", "="):
            return loc.pattern
        loc = cfg.locations.get(loc.parent) if loc.parent is not None else None
    return None


def location_uris(cfg: DerivedConfig, loc: DerivedLocation) -> list[str]:
    """Request targets (wire form) aimed at one location and its edges."""
    parent = cfg.locations.get(loc.parent) if loc.parent is not None else None
    if loc.modifier == "@":
        return []
    if loc.modifier == "=":
        return [wire(loc.pattern), wire(loc.pattern) + "/", wire(loc.pattern) + "x"]
    if loc.is_regex:
        targets: list[str] = []
        for uri in regex_uris(loc, _prefix_of(cfg, parent)):
            targets.append(wire(uri))
            cut = len(_prefix_of(cfg, parent) or "/")
            targets.append(wire(uri[:cut] + uri[cut:].swapcase()))
        return targets
    p = loc.pattern
    w = wire(p)
    targets = [w, w + "x", w.rstrip("/") + "/sub/file.html", w + "a.php", w + "a.CSS"]
    if p.endswith("/") and len(p) > 1:
        targets += [w[:-1], w[:-1] + "%2Fx", w.replace("/", "//") + "x", w + "x?q=/a/../b"]
    if len(p) > 1 and p[1].isascii() and p[1] not in "%/":
        targets.append(f"/%{ord(p[1]):02x}" + wire(p[2:]) + "x")  # /%61ssets/x
    targets += ["/zz/.." + w + "x", "/." + w + "x", w.upper()]
    return targets


def server_uris(cfg: DerivedConfig, server: DerivedServer) -> list[str]:
    """Generic targets plus those aimed at each of the server's locations."""
    targets = ["/", "/index.html", "/nothing-here", "/with%20space/", "/../x", "/%2e%2e/x"]
    for number in server.locations:
        targets += location_uris(cfg, cfg.locations[number])
    return targets


def plan_probes(fixture: str, cfg: DerivedConfig) -> list[Probe]:
    """All (Host, URL) pairs for one derived config, deduplicated and capped."""
    probes: list[Probe] = []
    for server in cfg.servers:
        hosts = [hv for name in server.names for hv in host_variants(name)]
        if hosts:
            primary, kind = hosts[0]
        elif cfg.default_server(server.ports[0]) is server:
            primary, kind = UNKNOWN_HOSTS[0], "unknown"
        else:
            continue
        uris = server_uris(cfg, server)
        for target in uris + list(EXTRA_URIS.get(fixture, ())):
            probes.append(Probe(server.ports[0], primary, target, kind, server.number))
        if kind == "exact":
            for variant, vkind in (
                (primary.upper(), "case"),
                (primary + ".", "trailing-dot"),
                (f"{primary}:{server.ports[0]}", "with-port"),
            ):
                probes.append(Probe(server.ports[0], variant, "/", vkind, server.number))
        for host, hkind in hosts:
            for port in server.ports:
                for target in ["/", *uris[6:8]]:
                    probes.append(Probe(port, host, target, hkind, server.number))
    all_ports = sorted({p for s in cfg.servers for p in s.ports})
    for port in all_ports:
        for host in UNKNOWN_HOSTS:
            for target in ("/", "/nothing/here", "/../x"):
                probes.append(Probe(port, host, target, "unknown"))
        for host in EXTRA_HOSTS.get(fixture, ()):
            probes.append(Probe(port, host, "/"))
    unique = list(dict.fromkeys(probes))
    # Keep a spread when capping: every k-th probe, the planning order mixes all servers.
    if len(unique) > MAX_PAIRS_PER_FIXTURE:
        step = len(unique) / MAX_PAIRS_PER_FIXTURE
        unique = [unique[int(i * step)] for i in range(MAX_PAIRS_PER_FIXTURE)]
    return unique


# --------------------------------------------------------------------------------------------
# categories


def categories(cfg: DerivedConfig, probe: Probe, answer: NginxAnswer) -> set[str]:
    """What this pair exercised, judged from nginx's own answer."""
    cats: set[str] = set()
    path_part = probe.target.split("?", 1)[0]
    if "%" in path_part:
        cats.add("uri:percent")
    if re.search(r"/(\.|%2e){1,2}(/|$)", path_part, re.IGNORECASE):
        cats.add("uri:dot-segment")
    if "//" in path_part:
        cats.add("uri:merged-slashes")
    if "?" in probe.target:
        cats.add("uri:query")
    if answer.location is None or answer.status != 200:
        cats.add(f"status:{answer.status}")

    loc = cfg.locations.get(answer.location) if answer.location is not None else None
    if loc is not None:
        kinds = {"=": "exact", "^~": "noregex", "~": "regex", "~*": "regex-ci", "@": "named"}
        cats.add("loc:" + kinds.get(loc.modifier, "prefix"))
        if loc.parent is not None:
            cats.add("loc:nested-regex" if loc.is_regex else "loc:nested-prefix")
        path = decoded_path(probe.target)
        strict = compile_nginx_regex(loc.pattern, caseless=False)
        if loc.modifier == "~*" and strict is not None and not strict.search(path):
            cats.add("loc:regex-ci-case")
        if loc.is_regex:
            for other in cfg.locations.values():
                if (
                    other.is_regex
                    and other.server == loc.server
                    and other.parent == loc.parent
                    and other.number > loc.number
                ):
                    regex = compile_nginx_regex(other.pattern, other.modifier == "~*")
                    if regex is not None and regex.search(path):
                        cats.add("loc:regex-order")

    if answer.server is not None:
        ports = sorted({p for s in cfg.servers for p in s.ports})
        if probe.port != ports[0]:
            cats.add("port:non-first")
        if probe.host_kind and probe.host_kind != "unknown" and answer.server == probe.for_server:
            cats.add(f"host:{probe.host_kind}")
    if probe.host_kind == "unknown":
        default = cfg.default_server(probe.port)
        if answer.server == default.number or answer.status == 444:
            cats.add("host:default")
        on_port = [s for s in cfg.servers if probe.port in s.ports]
        if answer.server == default.number and on_port[0] is not default:
            cats.add("host:default_server")  # explicit default_server beat the first server
    return cats


# --------------------------------------------------------------------------------------------
# running both sides


@dataclass
class FixtureRun:
    """One fixture: its derived config and what nginx answered to each probe."""

    name: str
    cfg: DerivedConfig
    answers: list[tuple[Probe, NginxAnswer]] = field(default_factory=list)


@pytest.fixture(scope="module")
def nginx_runs(tmp_path_factory: pytest.TempPathFactory) -> list[FixtureRun]:
    """Derive every fixture, run nginx on it, and record its answers to every probe."""
    assert FIXTURES, f"no fixtures under {REPO / 'fixtures' / 'nginx'}"
    runs: list[FixtureRun] = []
    for source in FIXTURES:
        name = source.parent.name
        prefix = tmp_path_factory.mktemp(f"route-{name}")
        cfg = derive_config(source, prefix)
        run = FixtureRun(name=name, cfg=cfg)
        with run_nginx(cfg.path, prefix) as nginx:
            for probe in plan_probes(name, cfg):
                response = nginx.get(probe.port, probe.target, probe.host)
                run.answers.append((probe, NginxAnswer.from_response(response)))
        runs.append(run)
    return runs


def _describe_nginx(cfg: DerivedConfig, answer: NginxAnswer) -> str:
    parts = [str(answer.status)]
    if answer.server is not None:
        parts.append(f"server@{cfg.server(answer.server).line}")
    if answer.location is not None:
        loc = cfg.locations[answer.location]
        parts.append(f"location@{loc.line} ({loc.match})")
    elif answer.body and not answer.body.lstrip().startswith("<html>"):
        parts.append(repr(answer.body.strip()[:30]))
    return " ".join(parts)


def _describe_tern(result: dict[str, Any]) -> str:
    if "error" in result:
        return str(result["error"])
    parts = [str(result.get("status"))]
    server = result.get("server") or {}
    parts.append(f"server@{server.get('line')}")
    location = result.get("location")
    if location:
        parts.append(f"location@{location.get('line')} ({location.get('match')})")
    else:
        parts.append("location=null")
    return " ".join(parts)


def compare(cfg: DerivedConfig, answer: NginxAnswer, result: dict[str, Any]) -> list[str]:
    """What differs between nginx's answer and ``tern route``'s JSON ([] when they agree)."""
    if "error" in result:
        return ["tern failed"]
    problems: list[str] = []
    if answer.server is not None:
        want = cfg.server(answer.server)
        got = result.get("server") or {}
        same_file = Path(str(got.get("file", ""))).resolve() == cfg.path.resolve()
        if got.get("line") != want.line or not same_file:
            problems.append("server")
    if answer.location is not None:
        got_loc = result.get("location") or {}
        if got_loc.get("line") != cfg.locations[answer.location].line:
            problems.append("location")
    if result.get("status") != answer.status:
        problems.append("status")
    return problems


RouteRunner = Callable[[list[str]], tuple[int, str, str]]


@functools.cache
def route_runner() -> RouteRunner:
    """Run ``tern <args>`` in-process through click, or as ``python -m migrate.cli``."""
    try:
        from click.testing import CliRunner

        from migrate.cli import main
    except ImportError:

        def run_subprocess(args: list[str]) -> tuple[int, str, str]:
            done = subprocess.run(
                [sys.executable, "-m", "migrate.cli", *args],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=REPO,
                check=False,
            )
            return done.returncode, done.stdout, done.stderr

        return run_subprocess

    runner = CliRunner()

    def run_in_process(args: list[str]) -> tuple[int, str, str]:
        result = runner.invoke(main, args)
        err = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            err += f"{type(result.exception).__name__}: {result.exception}"
        return result.exit_code, result.stdout, err

    return run_in_process


def tern_route(cfg: DerivedConfig, probe: Probe) -> dict[str, Any]:
    """``tern route <derived conf> http://127.0.0.1:<port><target> -H 'Host: h' --json``."""
    url = f"http://127.0.0.1:{probe.port}{probe.target}"
    args = ["route", str(cfg.path), url, "-H", f"Host: {probe.host}", "--json"]
    code, out, err = route_runner()(args)
    if code != 0:
        return {"error": f"exit {code}: {(err or out).strip()[-200:]}"}
    try:
        parsed = json.loads(out)
    except json.JSONDecodeError:
        return {"error": f"not JSON: {out.strip()[:200]!r}"}
    if not isinstance(parsed, dict):
        return {"error": f"not a JSON object: {out.strip()[:200]!r}"}
    return parsed


def _all_answers(runs: list[FixtureRun]) -> Iterator[tuple[FixtureRun, Probe, NginxAnswer]]:
    for run in runs:
        for probe, answer in run.answers:
            yield run, probe, answer


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# tests


def test_nginx_answers_every_probe_with_ids(nginx_runs: list[FixtureRun]) -> None:
    """The nginx half works: every derived config runs, answers carry server ids, and the probes
    reach at least MIN_PAIRS pairs and every category in REQUIRED_CATEGORIES."""
    counts = {run.name: len(run.answers) for run in nginx_runs}
    print("\n(Host, URL) pairs per fixture:", counts, "total", sum(counts.values()))
    seen: Counter[str] = Counter()
    untagged: list[str] = []
    for run, probe, answer in _all_answers(nginx_runs):
        seen.update(categories(run.cfg, probe, answer))
        if answer.server is None and answer.status != 444:
            untagged.append(f"{run.name}: {probe.host} {probe.target} -> {answer.status}")
        if answer.location is not None:
            assert answer.location in run.cfg.locations
    print("categories:", dict(sorted(seen.items())))
    assert not untagged, "responses without X-Srv:\n" + "\n".join(untagged)
    assert sum(counts.values()) >= MIN_PAIRS
    missing = sorted(REQUIRED_CATEGORIES - seen.keys())
    assert not missing, f"probes no longer exercise: {missing}"
    for run in nginx_runs:
        answered = {answer.server for _, answer in run.answers}
        silent = [s.line for s in run.cfg.servers if s.number not in answered]
        assert not silent, f"{run.name}: servers at lines {silent} never answered"


def test_route_matches_nginx(nginx_runs: list[FixtureRun]) -> None:
    """For every (Host, URL) pair, ``tern route`` names nginx's server, answering location and
    status; all mismatches are listed in one table."""
    code, out, err = route_runner()(["route", "--help"])
    if code != 0:
        pytest.fail(f"`tern route` is not available (exit {code}): {(err or out).strip()[-300:]}")
    rows: list[tuple[str, ...]] = [("fixture", "Host", "URL", "nginx says", "tern says", "differs")]
    compared = 0
    for run, probe, answer in _all_answers(nginx_runs):
        result = tern_route(run.cfg, probe)
        compared += 1
        problems = compare(run.cfg, answer, result)
        if problems:
            rows.append(
                (
                    run.name,
                    probe.host,
                    f":{probe.port}{probe.target}",
                    _describe_nginx(run.cfg, answer),
                    _describe_tern(result),
                    ",".join(problems),
                )
            )
    assert compared >= MIN_PAIRS
    if len(rows) > 1:
        pytest.fail(
            f"tern route disagrees with nginx on {len(rows) - 1} of {compared} pairs "
            f"(derived configs under {nginx_runs[0].cfg.prefix.parent}):\n{_table(rows)}",
            pytrace=False,
        )
