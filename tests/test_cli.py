"""The ``tern`` command line, run as a real process: exit codes, stdout/stderr, JSON contracts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "nginx"

ERROR_LINE = re.compile(r"^(?P<file>\S.*?):(?P<line>\d+): error: (?P<message>\S.*)$")


def tern(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``python -m migrate.cli ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "migrate.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          errors="surrogateescape")


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# translate


def test_translate_fixture_prints_model_json() -> None:
    """translate on a fixture exits 0 and prints the model JSON with schema_version."""
    proc = tern("translate", str(FIXTURES / "reverse-proxy" / "nginx.conf"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert doc["main_file"] == str(FIXTURES / "reverse-proxy" / "nginx.conf")
    assert len(doc["http"]["servers"]) == 2


def test_translate_output_file(tmp_path: Path) -> None:
    """translate -o FILE writes the model there, prints nothing on stdout, leaves no temp file."""
    out = tmp_path / "model.json"
    proc = tern("translate", str(FIXTURES / "vhosts" / "nginx.conf"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["schema_version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]
    from proxy.model import from_json

    assert from_json(out.read_text(encoding="utf-8")).main_file == doc["main_file"]


GZIP_CONF = "events {}\nhttp {\n    ssi on;\n    server {\n        listen 8080;\n    }\n}\n"


def test_translate_strict_fails_on_unsupported(tmp_path: Path) -> None:
    """translate --strict exits 1 when an unsupported directive is present; without it, 0."""
    conf = write(tmp_path / "nginx.conf", GZIP_CONF)
    strict = tern("translate", "--strict", str(conf))
    assert strict.returncode == 1
    assert json.loads(strict.stdout)["schema_version"] == 1
    assert f"{conf}:3: unsupported: " in strict.stderr
    plain = tern("translate", str(conf))
    assert plain.returncode == 0
    assert "Traceback" not in strict.stderr + plain.stderr


def test_translate_quiet_prints_only_errors(tmp_path: Path) -> None:
    """translate -q keeps unsupported findings off stderr."""
    conf = write(tmp_path / "nginx.conf", GZIP_CONF)
    proc = tern("translate", "-q", str(conf))
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_translate_non_utf8_config(tmp_path: Path) -> None:
    """A Latin-1 config translates (exit 0, no traceback) and its bytes survive into the output."""
    conf = write(tmp_path / "nginx.conf",
                 b"events {}\nhttp {\n    server {\n        server_name caf\xe9.example;\n"
                 b"    }\n}\n")
    out = tmp_path / "model.json"
    proc = tern("translate", str(conf), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert b"caf\xe9.example" in out.read_bytes()
    proc = tern("translate", str(conf))
    assert proc.returncode == 0, proc.stderr
    assert "caf\udce9.example" in proc.stdout


PY_SCRIPT = '''import sys


def main():
    print("hello")


if __name__ == "__main__":
    main()
'''

JSON_DOC = '{\n  "name": "tern",\n  "servers": [1, 2, 3],\n  "nested": {"a": null}\n}\n'


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, int, str]]:
    """name -> (config path, expected line, expected message fragment)."""
    data = bytearray(os.urandom(512))
    data[200] = 0
    blob = write(tmp_path / "blob.conf", bytes(data))
    nul_line = bytes(data[:data.index(0)]).count(b"\n") + 1
    return {
        "missing-semicolon": (write(tmp_path / "semi.conf",
                                    "events {}\nhttp {\n    server {\n        listen 80\n"
                                    "    }\n}\n"), 5, 'unexpected "}"'),
        "missing-semicolon-eof": (write(tmp_path / "eof.conf", "events {}\nworker_processes 1\n"),
                                  2, "unexpected end of file"),
        "unknown-directive": (write(tmp_path / "unknown.conf",
                                    "events {}\nhttp {\n    server {\n        lisen 80;\n"
                                    "    }\n}\n"), 4, 'unknown directive "lisen"'),
        "wrong-context": (write(tmp_path / "ctx.conf",
                                "events {}\nhttp {\n    proxy_pass http://127.0.0.1;\n}\n"),
                          3, '"proxy_pass" directive is not allowed here'),
        "missing-include": (write(tmp_path / "inc.conf",
                                  "events {}\nhttp {\n\n    include sites/none.conf;\n}\n"),
                            4, "sites/none.conf"),
        "python-script": (write(tmp_path / "script.py", PY_SCRIPT), 8, 'unexpected ":"'),
        "json-document": (write(tmp_path / "doc.json", JSON_DOC), 2, "unexpected"),
        "binary": (blob, nul_line, "not an nginx configuration"),
        "nonexistent": (tmp_path / "does" / "not" / "exist.conf", 0, "cannot read"),
    }


BAD_NAMES = ["missing-semicolon", "missing-semicolon-eof", "unknown-directive", "wrong-context",
             "missing-include", "python-script", "json-document", "binary", "nonexistent"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", ["translate", "check"])
def test_bad_input_is_one_error_line(tmp_path: Path, name: str, command: str) -> None:
    """Bad input exits 2 with exactly one 'file:line: error: message' line and no traceback."""
    conf, line, fragment = _bad_inputs(tmp_path)[name]
    proc = tern(command, str(conf))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    stream = proc.stderr if command == "translate" else proc.stdout
    matches = [mt for mt in map(ERROR_LINE.match, stream.splitlines()) if mt]
    if command == "check":  # text report: findings are indented under "findings:"
        matches = [mt for mt in (ERROR_LINE.match(ln.strip()) for ln in stream.splitlines())
                   if mt]
    assert len(matches) == 1, stream
    (mt,) = matches
    assert mt["file"] == str(conf)
    assert int(mt["line"]) == line
    assert fragment in mt["message"]
    if command == "translate":
        assert proc.stdout == ""
        others = [ln for ln in proc.stderr.splitlines() if not ERROR_LINE.match(ln)]
        assert all(ln.startswith("tern: ") for ln in others), others


@pytest.mark.parametrize("name", ["unknown-directive", "binary", "nonexistent"])
def test_bad_input_route_exits_2(tmp_path: Path, name: str) -> None:
    """route on a bad config exits 2 with one error line and no traceback."""
    conf, line, _ = _bad_inputs(tmp_path)[name]
    proc = tern("route", str(conf), "http://127.0.0.1/")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    matches = [mt for mt in map(ERROR_LINE.match, proc.stderr.splitlines()) if mt]
    assert [(m["file"], int(m["line"])) for m in matches] == [(str(conf), line)]


def test_bad_usage_exits_2_without_traceback() -> None:
    """Unknown options and missing arguments are usage errors: exit 2, no traceback."""
    for args in (["translate"], ["translate", "--bogus", "x"], ["nosuchcommand"],
                 ["route", str(FIXTURES / "vhosts" / "nginx.conf"), "ftp://x/"]):
        proc = tern(*args)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr
        assert "Usage" in proc.stderr or "Error" in proc.stderr


# ---------------------------------------------------------------------------------------------
# check --format json: a documented contract

CHECK_KEYS = {"schema_version", "config", "files", "coverage", "directives", "findings", "summary"}
COVERAGE_KEYS = {"total", "counts", "shares"}
LEVELS = {"supported", "partial", "ignored", "unsupported"}
FINDING_KEYS = {"file", "line", "level", "code", "directive", "message"}
SUMMARY_KEYS = {"errors", "unsupported", "partial", "exit_code"}


def _check_json(conf: Path) -> tuple[int, dict[str, Any]]:
    proc = tern("check", "--format", "json", str(conf))
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _assert_check_shape(doc: dict[str, Any]) -> None:
    assert set(doc) == CHECK_KEYS
    assert doc["schema_version"] == 1
    assert set(doc["coverage"]) == COVERAGE_KEYS
    assert set(doc["coverage"]["counts"]) == LEVELS
    assert set(doc["coverage"]["shares"]) == LEVELS
    assert doc["coverage"]["total"] == sum(doc["coverage"]["counts"].values())
    for row in doc["directives"].values():
        assert set(row) == {"support", "count"} and row["support"] in LEVELS
    assert sum(r["count"] for r in doc["directives"].values()) == doc["coverage"]["total"]
    for f in doc["findings"]:
        assert set(f) == FINDING_KEYS
        assert isinstance(f["line"], int) and f["file"]
    assert set(doc["summary"]) == SUMMARY_KEYS


def test_check_json_keys_on_unsupported(tmp_path: Path) -> None:
    """check --format json has exactly the documented keys; unsupported -> exit 1."""
    conf = write(tmp_path / "nginx.conf", GZIP_CONF)
    code, doc = _check_json(conf)
    assert code == 1
    _assert_check_shape(doc)
    assert doc["config"] == str(conf)
    assert doc["files"] == [str(conf)]
    assert doc["coverage"]["counts"] == {"supported": 4, "partial": 0, "ignored": 0,
                                         "unsupported": 1}
    assert doc["coverage"]["shares"]["unsupported"] == 0.2
    assert doc["directives"]["ssi"] == {"support": "unsupported", "count": 1}
    assert list(doc["directives"]) == sorted(doc["directives"])
    assert doc["findings"] == [{"file": str(conf), "line": 3, "level": "unsupported",
                                "code": "unsupported", "directive": "ssi",
                                "message": doc["findings"][0]["message"]}]
    assert doc["summary"] == {"errors": 0, "unsupported": 1, "partial": 0, "exit_code": 1}


def test_check_json_on_errors(tmp_path: Path) -> None:
    """check --format json reports errors in findings and summary, exit 2."""
    conf = write(tmp_path / "nginx.conf", "events {}\nhttp {\n    bogus 1;\n}\n")
    code, doc = _check_json(conf)
    assert code == 2
    _assert_check_shape(doc)
    assert doc["summary"] == {"errors": 1, "unsupported": 0, "partial": 0, "exit_code": 2}
    (finding,) = doc["findings"]
    assert (finding["line"], finding["level"], finding["code"]) == (3, "error",
                                                                    "unknown-directive")


def test_check_json_clean_fixture() -> None:
    """check on a fully supported fixture exits 0 with the documented keys."""
    code, doc = _check_json(FIXTURES / "vhosts" / "nginx.conf")
    assert code == 0
    _assert_check_shape(doc)
    assert doc["summary"] == {"errors": 0, "unsupported": 0, "partial": 0, "exit_code": 0}
    assert doc["files"][0] == str(FIXTURES / "vhosts" / "nginx.conf")
    assert doc["directives"]["server"]["count"] == 12


def test_check_text_verdict(tmp_path: Path) -> None:
    """check in text mode ends with a verdict line and uses the same exit codes."""
    conf = write(tmp_path / "nginx.conf", GZIP_CONF)
    proc = tern("check", str(conf))
    assert proc.returncode == 1
    assert "1 unsupported directive" in proc.stdout.splitlines()[-1]
    assert f"{conf}:3: unsupported: " in proc.stdout


# ---------------------------------------------------------------------------------------------
# route --json on fixtures (expected answers read off the fixture configs)

VHOSTS = FIXTURES / "vhosts"
NESTED = FIXTURES / "nested-locations"


@pytest.mark.parametrize(
    ("url", "host", "server", "status", "body"),
    [
        ("http://127.0.0.1:8080/", "example.com", ("example-com.conf", 1), 200,
         "exact example.com\n"),
        ("http://127.0.0.1:8080/", "EXAMPLE.com.", ("example-com.conf", 1), 200,
         "exact example.com\n"),
        ("http://127.0.0.1:8080/", "api.example.com", ("example-com.conf", 11), 200,
         "exact api.example.com\n"),
        ("http://127.0.0.1:8080/", "foo.example.com", ("example-com.conf", 20), 200,
         "leading wildcard *.example.com\n"),
        ("http://127.0.0.1:8080/", "www.example.net", ("example-com.conf", 30), 200,
         "trailing wildcard www.example.*\n"),
        ("http://127.0.0.1:8080/", "example.org", ("example-org.conf", 2), 200,
         "special form .example.org\n"),
        ("http://127.0.0.1:8080/", "unknown.test", ("00-default.conf", 2), 404,
         "no such site\n"),
        ("http://127.0.0.1:8081/", "unknown.test", ("00-default.conf", 12), 444, None),
        ("http://127.0.0.1:8082/", "public.example.com", ("internal.conf", 3), 200,
         "loopback status\n"),
        ("http://10.1.2.3:8082/", "status.internal", ("internal.conf", 11), 200,
         "wildcard-address 8082\n"),
        ("http://127.0.0.1:8080/", "alice.users.example.net", ("users.conf", 2), 200,
         "user=alice\n"),
        ("http://127.0.0.1:8080/", "shard7.example.net", ("users.conf", 11), 200, "shard 7\n"),
        ("http://127.0.0.1:8443/", "x.example.org", ("example-org.conf", 2), 200,
         "special form .example.org\n"),
        ("http://127.0.0.1:8443/", "nobody.test", ("example-org.conf", 11), 200,
         "8443 default\n"),
    ],
)
def test_route_vhosts(url: str, host: str, server: tuple[str, int], status: int,
                      body: str | None) -> None:
    """route --json picks the server nginx would pick for a Host on a socket."""
    proc = tern("route", str(VHOSTS / "nginx.conf"), url, "-H", f"Host: {host}", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["server"]["file"], doc["server"]["line"]) == (
        str(VHOSTS / "sites-enabled" / server[0]), server[1])
    assert doc["status"] == status
    assert doc["body"] == body
    assert doc["request"]["host"] == host


@pytest.mark.parametrize(
    ("uri", "location", "match", "body"),
    [
        ("/", ("sites-enabled/docs.conf", 5), "= /", "loc=exact-root\n"),
        ("/index.html", ("sites-enabled/docs.conf", 9), "/", "loc=root-prefix\n"),
        ("/x.json", ("sites-enabled/docs.conf", 14), r"~ \.json$", "loc=outer-json\n"),
        # nested ^~ only skips its own level's regexes (README)
        ("/api/v1/static/a.json", ("locations/api.conf", 5), r"~ \.json$", "loc=api-json\n"),
        ("/api/v1/static/a.png", ("sites-enabled/docs.conf", 18), r"~* \.(png|jpe?g|gif)$",
         "loc=outer-image\n"),
        ("/api/v1/static/a.txt", ("locations/api.conf", 27), "^~ /api/v1/static/",
         "loc=api-v1-static\n"),
        # top-level ^~ hides the outer regexes but keeps its nested ones
        ("/media/a.png", ("locations/media.conf", 1), "^~ /media/", "loc=media-noregex\n"),
        ("/media/a.svg", ("locations/media.conf", 5), r"~* \.svg$", "loc=media-svg\n"),
        ("/media/thumbs/x_small.png", ("locations/media.conf", 12), r"~ _small\.(png|jpg)$",
         "loc=media-thumbs-small\n"),
        ("/api/v1/users/42", ("locations/api.conf", 20), r"~ ^/api/v1/users/(\d+)$",
         "loc=api-v1-user id=42\n"),
        ("/api/v1/status", ("locations/api.conf", 16), "= /api/v1/status",
         "loc=api-v1-exact-status\n"),
        ("/reports/2024/q1", ("sites-enabled/docs.conf", 22), r"~ ^/reports/\d{4}/",
         "loc=outer-report-year\n"),
        ("/reports/latest", ("locations/media.conf", 21), "= /reports/latest",
         "loc=reports-exact-latest\n"),
        ("//api///v1/", ("locations/api.conf", 13), "/api/v1/", "loc=api-v1\n"),
        ("/with%20space/", ("locations/odd-names.conf", 3), "/with space/", "loc=with-space\n"),
        ("/caf%C3%A9/", ("locations/odd-names.conf", 13), "/café/", "loc=utf8-cafe\n"),
    ],
)
def test_route_nested_locations(uri: str, location: tuple[str, int], match: str,
                                body: str) -> None:
    """route --json picks the location nginx would pick, nested and ^~ rules included."""
    proc = tern("route", str(NESTED / "nginx.conf"), f"http://127.0.0.1:8080{uri}", "-H",
                "Host: docs.example.com", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["server"]["file"], doc["server"]["line"]) == (
        str(NESTED / "sites-enabled" / "docs.conf"), 1)
    assert (doc["location"]["file"], doc["location"]["line"], doc["location"]["match"]) == (
        str(NESTED / location[0]), location[1], match)
    assert (doc["status"], doc["body"]) == (200, body)


def test_route_text_output() -> None:
    """route without --json names the server and location as file:line."""
    proc = tern("route", str(NESTED / "nginx.conf"), "http://127.0.0.1:8080/media/a.svg")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"server   {NESTED / 'sites-enabled' / 'docs.conf'}:1")
    assert f"location {NESTED / 'locations' / 'media.conf'}:5" in proc.stdout


def test_route_no_server_on_port() -> None:
    """route to a port nothing listens on says so and exits 1 (text) / null server (json)."""
    proc = tern("route", str(VHOSTS / "nginx.conf"), "http://127.0.0.1:9999/")
    assert proc.returncode == 1
    assert "no server listens" in proc.stdout
    proc = tern("route", str(VHOSTS / "nginx.conf"), "http://127.0.0.1:9999/", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["server"] is None


def test_check_many_configs_aggregates_coverage(tmp_path: Path) -> None:
    """`tern check A B` prints a line per file and the aggregate share per support level;
    the exit code is the worst file's."""
    good = tmp_path / "good.conf"
    good.write_text("events {}\nhttp { server { listen 8080; location / { return 200; } } }\n")
    bad = tmp_path / "bad.conf"
    bad.write_text("events {}\nhttp { ssi on; }\n")
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(good), str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"{good}: " in proc.stdout and f"{bad}: " in proc.stdout
    assert "files: 2" in proc.stdout and "unsupported" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "check", "--format", "json",
                           str(good), str(bad)], capture_output=True, text=True, timeout=120)
    doc = json.loads(proc.stdout)
    assert set(doc) == {"schema_version", "configs", "coverage", "summary"}
    assert doc["summary"] == {"files": 2, "exit_code": 1}
    assert doc["coverage"]["total"] == sum(c["coverage"]["total"] for c in doc["configs"])
