"""``shadow.diff``: normalisation rules, JSON paths and every kind of difference."""

from __future__ import annotations

import json

import pytest

from shadow.diff import (
    ABSENT,
    CapturedRequest,
    CapturedResponse,
    Difference,
    DiffOptions,
    Framing,
    diff,
    diff_requests,
    diff_responses,
)


def resp(status: int | None = 200, *headers: tuple[str, str], body: bytes = b"",
         version: str = "1.1", error: str = "") -> CapturedResponse:
    return CapturedResponse(status=status, version=version, body=body, error=error,
                            headers=tuple((n.encode(), v.encode()) for n, v in headers))


def req(*headers: tuple[str, str], method: str = "GET", target: str = "/", version: str = "1.0",
        body: bytes = b"", framing: Framing = Framing.NONE, upstream: str = "") -> CapturedRequest:
    return CapturedRequest(method=method, target=target, version=version, body=body,
                           framing=framing, upstream=upstream,
                           headers=tuple((n.encode(), v.encode()) for n, v in headers))


def fields(diffs: list[Difference]) -> list[str]:
    return [d.field for d in diffs]


# --------------------------------------------------------------------------------------------
# normalisation


def test_identical_responses_have_no_difference() -> None:
    """The same response twice compares equal."""
    r = resp(200, ("Content-Type", "text/plain"), body=b"hello")
    assert diff(r, r) == []


def test_header_name_case_and_order_are_ignored() -> None:
    """Rule 1: names are case-insensitive and the order of different names does not matter."""
    a = resp(200, ("Content-Type", "text/plain"), ("X-A", "1"), ("x-b", "2"))
    b = resp(200, ("X-B", "2"), ("CONTENT-TYPE", "text/plain"), ("x-a", "1"))
    assert diff(a, b) == []


def test_values_of_one_name_keep_their_order() -> None:
    """Rule 1: two Set-Cookie lines in swapped order differ, shown as JSON lists."""
    a = resp(200, ("Set-Cookie", "a=1"), ("X-Other", "x"), ("Set-Cookie", "b=2"))
    b = resp(200, ("Set-Cookie", "b=2"), ("Set-Cookie", "a=1"), ("X-Other", "x"))
    assert diff(a, b) == [Difference(field="header:set-cookie", primary='["a=1", "b=2"]',
                                     candidate='["b=2", "a=1"]')]


def test_surrounding_whitespace_of_values_is_ignored() -> None:
    """Rule 1: OWS around a value is not part of it."""
    assert diff(resp(200, ("X-A", " v ")), resp(200, ("X-A", "v"))) == []


@pytest.mark.parametrize("name", ["Connection", "Keep-Alive", "Transfer-Encoding", "TE",
                                  "Trailer", "Upgrade", "Proxy-Connection"])
def test_hop_by_hop_headers_are_ignored(name: str) -> None:
    """Rule 2: hop-by-hop headers never count, present or not, whatever their value."""
    assert diff(resp(200, (name, "x")), resp(200)) == []
    assert diff(resp(200, (name, "x")), resp(200, (name, "y"))) == []


def test_caller_can_ignore_more_headers() -> None:
    """Rule 2: ``DiffOptions.ignoring`` adds names (any case)."""
    a = resp(200, ("X-Tern-Compare-Id", "1"))
    b = resp(200, ("X-Tern-Compare-Id", "2"))
    assert fields(diff(a, b)) == ["header:x-tern-compare-id"]
    assert diff(a, b, options=DiffOptions().ignoring("X-Tern-Compare-Id")) == []


def test_options_reject_upper_case_names() -> None:
    """Names in DiffOptions are compared lower-cased, so upper case there is a mistake."""
    with pytest.raises(ValueError, match="lower case"):
        DiffOptions(mask_headers=frozenset({"Date"}))


@pytest.mark.parametrize("name", ["Date", "Server"])
def test_date_and_server_are_masked(name: str) -> None:
    """Rule 3: differing values are equal; missing on one side is still a difference."""
    assert diff(resp(200, (name, "one")), resp(200, (name, "two"))) == []
    assert diff(resp(200, (name, "one")), resp(200)) == [
        Difference(field=f"header:{name.lower()}", primary="one", candidate=ABSENT)]


def test_chunked_and_content_length_are_the_same_framing() -> None:
    """Rule 4: a body sent chunked equals the same bytes sent with Content-Length."""
    chunked = resp(200, ("Transfer-Encoding", "chunked"), body=b"hello")
    sized = resp(200, ("Content-Length", "5"), body=b"hello")
    assert diff(chunked, sized) == []


def test_content_length_that_is_not_framing_is_compared() -> None:
    """Rule 4: a HEAD answer announces a length it does not send: that length is compared."""
    a = resp(200, ("Content-Length", "1234"))
    b = resp(200, ("Transfer-Encoding", "chunked"))
    assert diff(a, b) == [Difference(field="header:content-length", primary="1234",
                                     candidate=ABSENT)]
    assert diff(a, resp(200, ("Content-Length", "1234"))) == []


# --------------------------------------------------------------------------------------------
# status, version, transport


def test_status_difference() -> None:
    """A different status is the ``status`` field."""
    assert diff(resp(200), resp(404)) == [Difference(field="status", primary="200",
                                                     candidate="404")]


def test_no_response_is_a_status() -> None:
    """A closed connection (nginx 444) shows as status "no response (...)"; nothing else is
    compared then."""
    closed = resp(None, error="closed")
    assert diff(closed, resp(None, error="closed")) == []
    assert diff(closed, resp(200, ("X-A", "1"), body=b"x")) == [
        Difference(field="status", primary="no response (closed)", candidate="200")]
    assert fields(diff(closed, resp(None, error="timeout"))) == ["status"]


def test_version_difference() -> None:
    """The HTTP version of the status line is compared."""
    assert diff(resp(200, version="1.1"), resp(200, version="1.0")) == [
        Difference(field="version", primary="1.1", candidate="1.0")]


def test_transport_difference() -> None:
    """A body cut short on one side is the ``transport`` field."""
    a = resp(200, body=b"abc")
    b = resp(200, body=b"abc", error="incomplete body (closed)")
    assert diff(a, b) == [Difference(field="transport", primary="complete",
                                     candidate="incomplete body (closed)")]


def test_header_fields_are_sorted_and_named_in_lower_case() -> None:
    """Output order is deterministic: status, then headers by name, then the body."""
    a = resp(200, ("X-Zed", "1"), ("Location", "/a"), body=b"a")
    b = resp(301, ("x-zed", "2"), ("location", "/b"), body=b"b")
    assert fields(diff(a, b)) == ["status", "header:location", "header:x-zed", "body"]


# --------------------------------------------------------------------------------------------
# bodies


def test_body_bytes_difference_shows_both_bodies() -> None:
    """Non-JSON bodies compare as bytes; control characters are escaped, the length given."""
    d = diff(resp(200, body=b"ok\n"), resp(200, body=b"ko\r\n"))
    assert d == [Difference(field="body", primary="ok\\n (3 bytes)",
                            candidate="ko\\r\\n (4 bytes)")]


def test_empty_body_difference() -> None:
    """An empty body is shown as "(empty)"."""
    assert diff(resp(200, body=b""), resp(200, body=b"x"))[0].primary == "(empty)"


def test_long_bodies_are_shown_around_the_first_difference() -> None:
    """Long bodies are shown from a little before the first differing byte, with its offset."""
    a = b"x" * 1000 + b"A" + b"y" * 1000
    b = b"x" * 1000 + b"B" + b"y" * 1000
    d = diff(resp(200, body=a), resp(200, body=b))[0]
    assert d.field == "body"
    assert d.primary.startswith("@960: …") and "A" in d.primary and d.primary.endswith(
        "… (2001 bytes)")
    assert "B" in d.candidate


def test_json_bodies_report_paths() -> None:
    """Rule 5: JSON bodies report each differing path, sorted."""
    a = {"a": {"b": 1, "c": [1, 2, 3]}, "gone": True, "k": 1, "we ird": "x"}
    b = {"a": {"b": 2, "c": [1, 2]}, "new": None, "k": 1.0, "we ird": "y"}
    d = diff(resp(200, ("Content-Type", "application/json"), body=json.dumps(a).encode()),
             resp(200, ("Content-Type", "application/json; charset=utf-8"),
                  body=json.dumps(b).encode()))
    assert d[0].field == "header:content-type"
    assert d[1:] == [
        Difference(field="body:$.a.b", primary="1", candidate="2"),
        Difference(field="body:$.a.c[2]", primary="3", candidate=ABSENT),
        Difference(field="body:$.gone", primary="true", candidate=ABSENT),
        Difference(field="body:$.k", primary="1", candidate="1.0"),
        Difference(field="body:$.new", primary=ABSENT, candidate="null"),
        Difference(field='body:$["we ird"]', primary='"x"', candidate='"y"'),
    ]


def test_json_suffix_media_types_count_as_json() -> None:
    """Rule 5: ``application/problem+json`` is JSON too."""
    ct = ("Content-Type", "application/problem+json")
    d = diff(resp(400, ct, body=b'{"title": "a"}'), resp(400, ct, body=b'{"title": "b"}'))
    assert fields(d) == ["body:$.title"]


def test_json_equal_but_different_bytes_is_one_body_difference() -> None:
    """Rule 5: re-encoded JSON (spacing, key order) is reported once, as ``body``."""
    ct = ("Content-Type", "application/json")
    d = diff(resp(200, ct, body=b'{"a":1,"b":2}'), resp(200, ct, body=b'{"b": 2, "a": 1}'))
    assert fields(d) == ["body"]
    assert d[0].primary.startswith("JSON-equal, bytes differ")


def test_json_paths_need_json_on_both_sides() -> None:
    """Rule 5: a JSON body against a text body (or invalid JSON) compares as bytes."""
    ct = ("Content-Type", "application/json")
    assert fields(diff(resp(200, ct, body=b'{"a":1}'),
                       resp(200, ("Content-Type", "text/plain"), body=b'{"a":2}'))) == [
        "header:content-type", "body"]
    assert fields(diff(resp(200, ct, body=b'{"a":1}'), resp(200, ct, body=b"{nope"))) == [
        "body"]


def test_ignored_json_paths() -> None:
    """Rule 5: ignored paths and everything below them do not count."""
    ct = ("Content-Type", "application/json")
    a = resp(200, ct, body=b'{"meta": {"took": 3, "n": [1]}, "v": 1}')
    b = resp(200, ct, body=b'{"meta": {"took": 5, "n": [2]}, "v": 1}')
    assert diff(a, b, options=DiffOptions(ignore_json_paths=frozenset({"$.meta"}))) == []
    assert fields(diff(a, b, options=DiffOptions(ignore_json_paths=frozenset(
        {"$.meta.took"})))) == ["body:$.meta.n[0]"]


def test_json_paths_are_capped() -> None:
    """At most ``max_json_paths`` paths, then one line counting the rest."""
    ct = ("Content-Type", "application/json")
    a = resp(200, ct, body=json.dumps({f"k{i:02}": i for i in range(10)}).encode())
    b = resp(200, ct, body=json.dumps({f"k{i:02}": -i for i in range(1, 10)}).encode())
    d = diff(a, b, options=DiffOptions(max_json_paths=3))
    assert len(d) == 4
    assert d[-1] == Difference(field="body:…", primary="7 more JSON differences",
                               candidate="7 more JSON differences")


def test_long_values_are_clipped() -> None:
    """Values longer than ``preview`` are cut and their length given."""
    d = diff(resp(200, ("X-A", "a" * 500)), resp(200, ("X-A", "b")),
             options=DiffOptions(preview=10))
    assert d[0].primary == "aaaaaaaaaa… (500 chars)"


# --------------------------------------------------------------------------------------------
# upstream requests


def test_upstream_not_compared_unless_both_sides_captured() -> None:
    """Rule 6: None means "not captured" and compares with nothing."""
    assert diff(resp(), resp(), primary_upstream=req(), candidate_upstream=None) == []


def test_upstream_count_when_one_side_sent_nothing() -> None:
    """Rule 6: one side's upstream saw no request."""
    assert diff(resp(), resp(), primary_upstream=[req()], candidate_upstream=[]) == [
        Difference(field="upstream:count", primary="1", candidate="0")]


def test_upstream_fields() -> None:
    """Rule 6: address, method, target, version, headers, framing and body, in that order."""
    a = req(("Host", "app"), ("X-Forwarded-For", "127.0.0.1"), method="POST", target="/v2/x",
            version="1.0", body=b"abc", framing=Framing.CONTENT_LENGTH, upstream="10.0.0.1:80")
    b = req(("host", "app"), method="PUT", target="/v2/y", version="1.1", body=b"abcd",
            framing=Framing.CHUNKED, upstream="10.0.0.2:80")
    assert diff(resp(), resp(), primary_upstream=a, candidate_upstream=b) == [
        Difference(field="upstream:address", primary="10.0.0.1:80", candidate="10.0.0.2:80"),
        Difference(field="upstream:method", primary="POST", candidate="PUT"),
        Difference(field="upstream:target", primary="/v2/x", candidate="/v2/y"),
        Difference(field="upstream:version", primary="1.0", candidate="1.1"),
        Difference(field="upstream:header:x-forwarded-for", primary="127.0.0.1",
                   candidate=ABSENT),
        Difference(field="upstream:framing", primary="content-length", candidate="chunked"),
        Difference(field="upstream:body", primary="abc (3 bytes)", candidate="abcd (4 bytes)"),
    ]


def test_upstream_framing_headers_are_left_to_the_framing_field() -> None:
    """Rule 6: Content-Length / Transfer-Encoding are not compared as upstream headers."""
    a = req(("Content-Length", "3"), body=b"abc", framing=Framing.CONTENT_LENGTH)
    b = req(("Content-Length", "3"), body=b"abc", framing=Framing.CONTENT_LENGTH)
    assert diff_requests(a, b) == []
    c = req(("Transfer-Encoding", "chunked"), body=b"abc", framing=Framing.CHUNKED)
    assert fields(diff_requests(a, c)) == ["upstream:framing"]


def test_upstream_hop_by_hop_and_unknown_address_are_ignored() -> None:
    """Rule 2 applies upstream too; an empty ``upstream`` name is not compared."""
    a = req(("Connection", "close"), upstream="")
    b = req(("Connection", "keep-alive"), upstream="10.0.0.2:80")
    assert diff_requests(a, b) == []


def test_upstream_json_body_paths() -> None:
    """Rule 5 applies to upstream bodies: ``upstream:body:$.path``."""
    ct = ("Content-Type", "application/json")
    a = req(ct, body=b'{"sku": 1}', framing=Framing.CONTENT_LENGTH)
    b = req(ct, body=b'{"sku": 2}', framing=Framing.CONTENT_LENGTH)
    assert fields(diff_requests(a, b)) == ["upstream:body:$.sku"]


def test_second_upstream_request_fields_are_indexed() -> None:
    """Rule 6: retries and subrequests are compared pairwise as ``upstream[i]:``."""
    p = [req(target="/a"), req(target="/b")]
    c = [req(target="/a"), req(target="/c"), req(target="/d")]
    assert diff(resp(), resp(), primary_upstream=p, candidate_upstream=c) == [
        Difference(field="upstream:count", primary="2", candidate="3"),
        Difference(field="upstream[1]:target", primary="/b", candidate="/c"),
    ]


def test_responses_only_entry_point() -> None:
    """``diff_responses`` is the response half of ``diff``."""
    assert diff_responses(resp(200), resp(500)) == diff(resp(200), resp(500))
