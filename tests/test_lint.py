"""``migrate.lint``: the security and correctness lint (issue 5).

Each check has a fixture under ``fixtures/lint/<check>/`` that triggers it; the findings on every
fixture are asserted exactly as (file, line, code). The ``clean`` fixture and the translation
fixtures under ``fixtures/nginx/`` must give no finding beyond the few listed (and justified)
here. The fixtures are valid for nginx 1.22 (checked with ``nginx -t`` when nginx is installed).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from migrate.diagnostics import Level
from migrate.frontend import translate
from migrate.lint import CHECKS, lint
from proxy import model as m

REPO = Path(__file__).resolve().parents[1]
LINT_FIXTURES = REPO / "fixtures" / "lint"
NGINX_FIXTURES = REPO / "fixtures" / "nginx"
NGINX = Path("/usr/sbin/nginx")
needs_nginx = pytest.mark.skipif(not NGINX.exists() and not os.environ.get("CI"),
                                 reason=f"{NGINX} is not installed (CI must have it)")

Finding = tuple[str, int, str]
"""(file relative to the fixture directory, line, code)."""

EXPECTED: dict[str, set[Finding]] = {
    "alias-traversal": {
        ("nginx.conf", 19, "lint-alias-traversal"),  # location /static + alias .../static/
        ("nginx.conf", 37, "lint-alias-traversal"),  # location ^~ /img + alias .../images/
    },
    "add-header-redefinition": {
        # the server's headers (in the snippet) drop http's X-Served-By
        ("snippets/security-headers.conf", 2, "lint-add-header-redefinition"),
        ("nginx.conf", 30, "lint-add-header-redefinition"),  # /assets/ drops the 4 security headers
        ("nginx.conf", 42, "lint-add-header-redefinition"),  # /docs/ drops them too
        ("nginx.conf", 46, "lint-add-header-redefinition"),  # /docs/internal/ drops X-Robots-Tag
    },
    "host-spoofing": {
        ("nginx.conf", 22, "lint-host-spoofing"),  # proxy_set_header Host $http_host
        ("nginx.conf", 27, "lint-host-spoofing"),  # return 302 https://$http_host/...
        ("nginx.conf", 31, "lint-host-spoofing"),  # rewrite ... https://$http_host/... permanent
    },
    "ssrf": {
        ("nginx.conf", 23, "lint-ssrf"),  # proxy_pass $arg_url
        ("nginx.conf", 28, "lint-ssrf"),  # proxy_pass http://$target... ([^/]+ from the URI)
        ("nginx.conf", 32, "lint-ssrf"),  # proxy_pass http://$http_host...
        ("nginx.conf", 32, "lint-host-spoofing"),  # ... which is also $http_host in proxy_pass
    },
    "header-splitting": {
        ("nginx.conf", 22, "lint-header-splitting"),  # return 302 ...$uri
        ("nginx.conf", 26, "lint-header-splitting"),  # add_header X-Action $action ([^.]+)
        ("nginx.conf", 43, "lint-header-splitting"),  # rewrite redirect with a *named* capture
        ("nginx.conf", 48, "lint-header-splitting"),  # proxy_set_header ... $document_uri
    },
    "unanchored-regex": {
        ("nginx.conf", 16, "lint-unanchored-regex"),  # map $http_origin: ~example\.org
        ("nginx.conf", 29, "lint-unanchored-regex"),  # if ($http_origin ~* "https://app.example.com")
        ("nginx.conf", 49, "lint-unanchored-regex"),  # if ($http_referer !~ "^https://partner.example.org")
        ("nginx.conf", 56, "lint-unanchored-regex"),  # valid_referers ... ~\.example\.com
    },
    "missing-resolver": {
        ("nginx.conf", 33, "lint-missing-resolver"),  # literal host name + variable URI
        ("nginx.conf", 38, "lint-missing-resolver"),  # $bucket.s3.amazonaws.com
    },
    "weak-tls": {
        ("nginx.conf", 12, "lint-weak-tls"),  # ssl_protocols TLSv1 TLSv1.1 TLSv1.2 (http)
        ("nginx.conf", 20, "lint-weak-tls"),  # ssl_ciphers with DES-CBC3-SHA and RC4-SHA
        ("nginx.conf", 35, "lint-weak-tls"),  # ssl_protocols SSLv3 TLSv1.2
        ("nginx.conf", 36, "lint-weak-tls"),  # ssl_ciphers aNULL:...
    },
    "if-is-evil": {
        ("nginx.conf", 32, "lint-if-is-evil"),  # add_header in if
        ("nginx.conf", 40, "lint-if-is-evil"),  # proxy_pass in if
        ("nginx.conf", 46, "lint-if-is-evil"),  # if (!-f $request_filename)
    },
    "location-shadowing": {
        ("nginx.conf", 34, "lint-location-shadowing"),  # ~ \.php$ a second time
        ("nginx.conf", 44, "lint-location-shadowing"),  # ~ \.(png|jpg)$ after ~* \.(png|jpg)$
        ("nginx.conf", 52, "lint-location-shadowing"),  # ~ ^/api/ nested in /admin/
        ("nginx.conf", 72, "lint-location-shadowing"),  # /static/ after the catch-all ~ /
        ("nginx.conf", 76, "lint-location-shadowing"),  # ~ \.css$ after the catch-all ~ /
    },
    "clean": set(),
}

NGINX_FIXTURE_FINDINGS: dict[str, set[Finding]] = {
    # if (-f $request_filename) { break; } + rewrite: the textbook try_files case
    "legacy-rewrites": {("conf.d/legacy.conf", 61, "lint-if-is-evil")},
    # proxy_set_header X-Script-Filename $document_root$uri: $uri is decoded (the snippet is
    # included in two locations, reported once); /wp-admin/x%0aX:%201.php reaches it
    "php-app": {("snippets/php-proxy.conf", 4, "lint-header-splitting")},
    # the fixture's own README: location-level add_header drops the server-level snippet headers
    "static-site": {
        ("sites-enabled/www.conf", 14, "lint-add-header-redefinition"),
        ("sites-enabled/www.conf", 26, "lint-add-header-redefinition"),
        ("sites-enabled/www.conf", 34, "lint-add-header-redefinition"),
    },
}
"""Findings on the translation fixtures; every other fixture must be clean."""


def _findings(conf: Path) -> set[Finding]:
    analysis = translate(str(conf))
    errors = [d.format() for d in analysis.diagnostics if d.level is Level.ERROR]
    assert not errors, errors
    base = conf.parent
    return {(os.path.relpath(d.file, base), d.line, d.code) for d in lint(analysis.config)}


def _lint_dirs() -> list[Path]:
    return sorted(p.parent for p in LINT_FIXTURES.glob("*/nginx.conf"))


def test_every_check_has_a_fixture() -> None:
    """Each lint code has a fixture directory named after it, and that fixture triggers it."""
    dirs = {p.name for p in _lint_dirs()}
    assert dirs == set(EXPECTED)
    for code in CHECKS:
        name = code.removeprefix("lint-")
        assert name in dirs, f"no fixtures/lint/{name}/"
        assert any(c == code for _, _, c in EXPECTED[name]), f"{name} does not trigger {code}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lint_fixture_findings(name: str) -> None:
    """The fixture gives exactly the expected (file, line, code) findings."""
    assert _findings(LINT_FIXTURES / name / "nginx.conf") == EXPECTED[name]


@pytest.mark.parametrize("fixture", sorted(p.parent.name for p in
                                           NGINX_FIXTURES.glob("*/nginx.conf")))
def test_translation_fixtures_have_no_unexplained_findings(fixture: str) -> None:
    """The translation fixtures are realistic configs: only the justified findings appear."""
    found = _findings(NGINX_FIXTURES / fixture / "nginx.conf")
    assert found == NGINX_FIXTURE_FINDINGS.get(fixture, set())


def test_diagnostics_are_warnings_with_file_line_and_advice() -> None:
    """Every finding is a WARNING with a known code, a directive, a real line, and a message."""
    for d in _lint_dirs():
        analysis = translate(str(d / "nginx.conf"))
        for diag in lint(analysis.config):
            assert diag.level is Level.WARNING
            assert diag.code in CHECKS
            assert diag.directive
            assert diag.line > 0 and Path(diag.file).is_file()
            assert len(diag.message) > 60, diag.message
            assert diag.to_json()["level"] == "warning"


def test_messages_name_what_to_do() -> None:
    """Messages say what is wrong and what to write instead (one example per check)."""
    def messages(name: str) -> dict[int, str]:
        analysis = translate(str(LINT_FIXTURES / name / "nginx.conf"))
        return {d.line: d.message for d in lint(analysis.config)
                if d.code == f"lint-{name}"}

    assert "location /static/" in messages("alias-traversal")[19]
    hdr = messages("add-header-redefinition")[30]
    assert "Strict-Transport-Security" in hdr and "X-Frame-Options" in hdr
    assert "Content-Security-Policy" in hdr and "security headers" in hdr
    assert "$host" in messages("host-spoofing")[22]
    assert "$arg_url" in messages("ssrf")[23]
    assert "$request_uri" in messages("header-splitting")[22]
    assert "$action" in messages("header-splitting")[26]
    assert "https://app.example.com.evil.example" in messages("unanchored-regex")[29]
    assert "resolver" in messages("missing-resolver")[33]
    assert "TLSv1, TLSv1.1" in messages("weak-tls")[12]
    assert "3DES" in messages("weak-tls")[20] and "RC4" in messages("weak-tls")[20]
    assert "try_files" in messages("if-is-evil")[46]
    assert "~ /" in messages("location-shadowing")[72]


def test_only_filters_codes() -> None:
    """``only`` restricts the run to the named codes; an unknown code is a ValueError."""
    config = translate(str(LINT_FIXTURES / "ssrf" / "nginx.conf")).config
    assert {d.code for d in lint(config, only={"lint-ssrf"})} == {"lint-ssrf"}
    assert lint(config, only=set()) == []
    with pytest.raises(ValueError, match="lint-nope"):
        lint(config, only={"lint-nope"})


def test_config_without_http_block() -> None:
    """A config with no http block (stream only, or empty) has nothing to lint."""
    assert lint(m.Config(main_file="/nonexistent/nginx.conf", prefix="/nonexistent")) == []


def test_lines_fall_back_to_the_block_when_files_are_gone() -> None:
    """ssl_protocols has no line in the model: without the files, the enclosing block is named."""
    config = translate(str(LINT_FIXTURES / "weak-tls" / "nginx.conf")).config
    moved = dataclasses.replace(config, main_file="/nonexistent/nginx.conf")
    lines = {d.line for d in lint(moved, only={"lint-weak-tls"})}
    assert config.http is not None
    http_line = config.http.source.line
    server_lines = {s.source.line for s in config.http.servers}
    assert lines <= {http_line} | server_lines and http_line in lines


def test_findings_are_sorted_and_unique() -> None:
    """Output is ordered by file (reading order) and line, one finding per (file, line, code)."""
    config = translate(str(NGINX_FIXTURES / "php-app" / "nginx.conf")).config
    found = lint(config)
    keys = [(d.file, d.line, d.code) for d in found]
    assert len(keys) == len(set(keys))
    order = {f: i for i, f in enumerate(config.files)}
    assert keys == sorted(keys, key=lambda k: (order[k[0]], k[1], k[2]))


def _lint_text(tmp_path: Path, server_body: str, http_extra: str = "") -> list[tuple[int, str]]:
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n" + http_extra + "server {\nlisten 8080;\n"
                    + server_body + "\n}\n}\n")
    analysis = translate(str(conf))
    assert not analysis.has_errors, [d.format() for d in analysis.diagnostics]
    return [(d.line, d.code) for d in lint(analysis.config)]


@pytest.mark.parametrize(("body", "expected"), [
    # $1 of a (\d+) group cannot hold a line feed; [^/]+ can
    ('location ~ ^/u/(\\d+)$ { return 302 /users/$1; }', []),
    ('location ~ ^/u/([^/]+)$ { return 302 /users/$1; }', [(5, "lint-header-splitting")]),
    # (.*) stops at LF (PCRE "." does not match \n): a bare CR is not a line break (RFC 9112)
    ('location ~ ^/u/(.*)$ { add_header X-U $1; }', []),
    # the captures in effect inside an if are the if's own
    ('location ~ ^/u/([^/]+)$ { if ($arg_x ~ "^(\\d+)$") { return 302 /x/$1; } }', []),
    # values followed through set
    ('location / { set $t $uri; return 301 https://example.com$t; }',
     [(5, "lint-header-splitting")]),
    ('location / { set $h $http_host; proxy_set_header Host $h; proxy_pass http://127.0.0.1; }',
     [(5, "lint-host-spoofing")]),
    # a body text is not a header
    ('location / { return 200 "$uri"; }', []),
    # a port from the request is still a client-chosen destination
    ('location / { proxy_pass http://127.0.0.1:$arg_port; }', [(5, "lint-ssrf")]),
    # an unknown variable (js_set, perl_set...) after the host may start the URI
    ('location / { proxy_pass http://127.0.0.1$js_route$is_args$args; }', []),
    # the port only is variable: no DNS needed
    ('location / { proxy_pass http://127.0.0.1:$server_port/x; }', []),
    ('location / { proxy_pass http://$host:8080; }', [(5, "lint-missing-resolver")]),
    # if in a server block is not "if in location"
    ('if ($request_method = POST) { return 405; } location / { return 204; }', []),
    # maintenance switch on a fixed file: not a try_files case
    ('location / { if (-f /srv/maintenance) { return 503; } }', []),
    # catch-all regex, and a nested one that cannot match
    ('location ~ .* { return 204; } location ~ \\.js$ { return 204; }',
     [(5, "lint-location-shadowing")]),
    ('location ^~ /a/ { location ~* ^/B/ { return 204; } location ~ ^/a/x { return 204; } }',
     [(5, "lint-location-shadowing")]),
    # $ anchored: a catch-all only when provable
    ('location ~ ^/.*$ { return 204; } location ~ \\.js$ { return 204; }', []),
])
def test_small_cases(tmp_path: Path, body: str, expected: list[tuple[int, str]]) -> None:
    """Edge cases of value tracking and regex analysis, one server block each."""
    assert _lint_text(tmp_path, body) == expected


def test_map_values_are_followed(tmp_path: Path) -> None:
    """A map to upstream names needs no resolver; a map capturing [^/]+ of $uri can split."""
    http = ('upstream a { server 127.0.0.1:1; }\nupstream b { server 127.0.0.1:2; }\n'
            'map $request_method $pool { default a; POST b; }\n'
            'map $uri $dest { default ""; ~^/go/(?<rest>[^/]+)$ /to/$rest; }\n')
    found = _lint_text(tmp_path, 'location / { proxy_pass http://$pool; }\n'
                                 'location /go/ { return 301 $dest; }', http)
    assert found == [(10, "lint-header-splitting")]


@needs_nginx
@pytest.mark.nginx
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lint_fixture_is_valid_nginx(name: str, tmp_path: Path) -> None:
    """Every lint fixture passes ``nginx -t`` (run on a copy: nginx creates its log files)."""
    run = tmp_path / name
    shutil.copytree(LINT_FIXTURES / name, run)
    proc = subprocess.run(
        [str(NGINX), "-t", "-q", "-p", str(run), "-c", str(run / "nginx.conf"),
         "-e", str(run / "logs" / "error.log"), "-g", "daemon off; master_process off;"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
