"""``proxy.accesslog``: escaping, compiled formats and the log module's own variables.

The byte-for-byte comparison with real nginx is ``test_accesslog_vs_nginx.py``; these tests pin
the rules one at a time, with reference escapers written straight from nginx's C tables.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.accesslog import (
    COMBINED,
    COMBINED_FORMAT,
    LOG_VARIABLES,
    UTC,
    compile_log_format,
    compile_template,
    escape_default,
    escape_json,
    log_status,
    msec,
    request_time,
    time_iso8601,
    time_local,
)
from proxy.model import NOWHERE, Lit, LogFormat, Template, Var

try:  # the analyser's template parser, used to build formats the way Tern's loader does
    from migrate.grammars import parse_template
except ImportError:  # pragma: no cover
    parse_template = None  # type: ignore[assignment]


def ref_escape_default(value: bytes) -> bytes:
    """ngx_http_log_escape: its escape[] table marks 0x00-0x1f, '"', '\\\\' and 0x7f-0xff."""
    out = bytearray()
    for b in value:
        if b < 0x20 or b >= 0x7F or b in (0x22, 0x5C):
            out += b"\\x" + b"0123456789ABCDEF"[b >> 4 : (b >> 4) + 1] + b"0123456789ABCDEF"[
                b & 15 : (b & 15) + 1
            ]
        else:
            out.append(b)
    return bytes(out)


def ref_escape_json(value: bytes) -> bytes:
    """ngx_escape_json, transcribed."""
    out = bytearray()
    for b in value:
        if b in (0x5C, 0x22):
            out += bytes((0x5C, b))
        elif b <= 0x1F:
            short = {0x0A: b"n", 0x0D: b"r", 0x09: b"t", 0x08: b"b", 0x0C: b"f"}.get(b)
            if short is not None:
                out += b"\\" + short
            else:
                low = b"0123456789ABCDEF"[b & 15 : (b & 15) + 1]
                out += b"\\u00" + bytes((0x30 + (b >> 4),)) + low
        else:
            out.append(b)
    return bytes(out)


def fmt(raw: str, escape: str = "default") -> LogFormat:
    """A LogFormat node for ``raw`` (split with the analyser's parser when available)."""
    template = parse_template(raw) if parse_template is not None else None
    if template is None:  # pragma: no cover
        raise RuntimeError("migrate.grammars is needed")
    return LogFormat(name="t", escape=escape, format=template, source=NOWHERE)


def getter(values: dict[str, str | bytes | None]):  # type: ignore[no-untyped-def]
    """A getter over a dict; missing keys are not found (None)."""
    return values.get


# ---------------------------------------------------------------------------------------------
# escaping


def test_escape_default_every_byte() -> None:
    """Each of the 256 byte values escapes as nginx's table says."""
    for b in range(256):
        assert escape_default(bytes([b])) == ref_escape_default(bytes([b])), b


def test_escape_json_every_byte() -> None:
    """Each of the 256 byte values escapes as ngx_escape_json does."""
    for b in range(256):
        assert escape_json(bytes([b])) == ref_escape_json(bytes([b])), b


def test_escape_examples() -> None:
    """The characteristic cases, spelled out."""
    assert escape_default(b'a"b\\c\x01\x7f\t\xc3\xa9') == b"a\\x22b\\x5Cc\\x01\\x7F\\x09\\xC3\\xA9"
    assert escape_json(b'a"b\\c\x01\x7f\t\n\r\x08\x0c\x1f\xc3\xa9') == (
        b'a\\"b\\\\c\\u0001\x7f\\t\\n\\r\\b\\f\\u001F\xc3\xa9'
    )
    assert escape_default(b"plain text/1.0") == b"plain text/1.0"


@given(st.binary(max_size=200))
def test_escapers_match_reference(value: bytes) -> None:
    """On arbitrary bytes the fast escapers equal the transcribed C ones."""
    assert escape_default(value) == ref_escape_default(value)
    assert escape_json(value) == ref_escape_json(value)


# ---------------------------------------------------------------------------------------------
# formats


def test_combined_is_nginx_predefined() -> None:
    """The predefined format text and its parts."""
    assert COMBINED.name == "combined"
    assert COMBINED.escape == "default"
    assert COMBINED.format.raw == COMBINED_FORMAT
    assert COMBINED.format.variables == (
        "remote_addr", "remote_user", "time_local", "request", "status", "body_bytes_sent",
        "http_referer", "http_user_agent",
    )  # fmt: skip
    if parse_template is not None:
        assert parse_template(COMBINED_FORMAT) == COMBINED.format


def test_combined_line() -> None:
    """A typical combined line; not-found referer and user are ``-``."""
    line = compile_log_format(COMBINED)(
        getter(
            {
                "remote_addr": "127.0.0.1",
                "time_local": "30/Nov/2026:02:50:00 +0000",
                "request": "GET /a?b=1 HTTP/1.1",
                "status": "200",
                "body_bytes_sent": "612",
                "http_user_agent": 'curl/8.0 "x"',
            }
        )
    )
    assert line == (
        b'127.0.0.1 - - [30/Nov/2026:02:50:00 +0000] "GET /a?b=1 HTTP/1.1" 200 612 "-" '
        b'"curl/8.0 \\x22x\\x22"\n'
    )


@pytest.mark.parametrize(
    ("escape", "missing", "empty"),
    [("default", b"-", b""), ("json", b"", b""), ("none", b"", b"")],
)
def test_not_found_and_empty(escape: str, missing: bytes, empty: bytes) -> None:
    """Not found is ``-`` only with escape=default; a found empty value is always empty."""
    line = compile_log_format(fmt("[$http_a][$http_b]", escape))(getter({"http_b": ""}))
    assert line == b"[" + missing + b"][" + empty + b"]\n"


@pytest.mark.parametrize("escape", ["default", "json", "none"])
def test_literals_are_not_escaped(escape: str) -> None:
    """Literal text (quotes, backslashes, UTF-8) is copied as written."""
    line = compile_log_format(fmt('"é\\ $x"', escape))(getter({"x": "1"}))
    assert line == '"é\\ 1"\n'.encode()


def test_escape_modes_on_values() -> None:
    """The same value under each escaping."""
    value = b'q"\\\x01\xff'
    results = {
        esc: compile_log_format(fmt("$v", esc))(getter({"v": value}))
        for esc in ("default", "json", "none")
    }
    assert results == {
        "default": b"q\\x22\\x5C\\x01\\xFF\n",
        "json": b'q\\"\\\\\\u0001\xff\n',
        "none": value + b"\n",
    }


def test_log_variables_are_not_escaped() -> None:
    """The log module's own variables are written without escaping (they never need it)."""
    assert "status" in LOG_VARIABLES and "request_time" in LOG_VARIABLES
    line = compile_log_format(fmt("$status $other"))(getter({"status": '"', "other": '"'}))
    assert line == b'" \\x22\n'


def test_str_values_keep_raw_bytes() -> None:
    """A str value is encoded UTF-8 with surrogateescape: undecodable bytes come back."""
    raw = b"\xff\xfe-\xc3\xa9"
    value = raw.decode("utf-8", "surrogateescape")
    assert compile_log_format(fmt("$v", "none"))(getter({"v": value})) == raw + b"\n"
    assert compile_log_format(fmt("$v"))(getter({"v": value})) == b"\\xFF\\xFE-\\xC3\\xA9\n"


def test_braced_and_case_insensitive_names() -> None:
    """``${name}x`` and ``$Name`` read the variable by its lower-case name."""
    values = getter({"http_host": "h", "http_x": "y"})
    line = compile_log_format(fmt("${http_host}x $HTTP_X"))(values)
    assert line == b"hx y\n"


def test_no_variables_and_empty_format() -> None:
    """A format of literals only is one constant line."""
    only = LogFormat(name="t", format=Template(raw="hi", parts=(Lit(text="hi"),)), source=NOWHERE)
    assert compile_log_format(only)(getter({})) == b"hi\n"
    empty = LogFormat(name="t", format=Template(raw=""), source=NOWHERE)
    assert compile_log_format(empty)(getter({})) == b"\n"
    adjacent = Template(raw="$a$b", parts=(Var(name="a"), Var(name="b")))
    assert compile_template(adjacent)(getter({"a": "1", "b": "2"})) == b"12\n"


def test_unknown_escape() -> None:
    """Only default, json and none exist."""
    with pytest.raises(ValueError, match="escaping"):
        compile_template(Template(raw=""), "xml")


# ---------------------------------------------------------------------------------------------
# time and number fields


def test_time_local_and_iso8601() -> None:
    """Common log format time and ISO 8601, in UTC and in zones east and west."""
    ts = 1796006969.793  # 2026-11-30 02:49:29.793 UTC
    assert time_local(ts, UTC) == "30/Nov/2026:02:49:29 +0000"
    assert time_iso8601(ts, UTC) == "2026-11-30T02:49:29+00:00"
    india = timezone(timedelta(hours=5, minutes=30))
    assert time_local(ts, india) == "30/Nov/2026:08:19:29 +0530"
    assert time_iso8601(ts, india) == "2026-11-30T08:19:29+05:30"
    west = timezone(-timedelta(hours=8))
    assert time_local(ts, west) == "29/Nov/2026:18:49:29 -0800"
    assert time_iso8601(ts, west) == "2026-11-29T18:49:29-08:00"
    newfoundland = timezone(-timedelta(hours=3, minutes=30))
    assert time_local(0, newfoundland) == "31/Dec/1969:20:30:00 -0330"


def test_time_local_default_zone_is_local() -> None:
    """Without a zone the process' local zone is used (nginx: ngx_localtime)."""
    from datetime import datetime

    ts = 1796006969
    local = datetime.fromtimestamp(ts).astimezone()
    assert time_local(ts).startswith(local.strftime("%d/%b/%Y:%H:%M:%S "))


def test_msec_and_request_time() -> None:
    """Three decimals, truncated to the millisecond; request_time never negative."""
    assert msec(1764471000.123) == "1764471000.123"
    assert msec(1764471000.1239) == "1764471000.123"
    assert msec(1764471000) == "1764471000.000"
    assert request_time(10.0, 10.0) == "0.000"
    assert request_time(10.0005, 10.0014) == "0.001"  # 10000 ms -> 10001 ms
    assert request_time(10.0, 72.5) == "62.500"
    assert request_time(10.0, 9.0) == "0.000"


def test_log_status() -> None:
    """``$status`` in the log is always three digits."""
    assert log_status(200) == "200"
    assert log_status(9) == "009"
    assert log_status(0) == "000"
