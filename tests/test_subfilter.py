"""The sub_filter body matcher gives the same bytes however the body is cut into pieces
(nginx's parser keeps partial matches across buffers; only the end of the body is special)."""

from __future__ import annotations

import random

from proxy.subfilter import Matcher


def _run(matches: list[bytes], once: bool, pieces: list[bytes]) -> bytes:
    m = Matcher(matches, lambda i: b"<%d>" % i, once)
    out = [m.feed(p) for p in pieces[:-1]]
    out.append(m.feed(pieces[-1], last=True))
    return b"".join(out)


def test_pieces_do_not_change_the_result() -> None:
    rnd = random.Random(1130)
    for _ in range(3000):
        matches = list(dict.fromkeys(
            bytes(rnd.choice(b"ab") for _ in range(rnd.randint(1, 4)))
            for _ in range(rnd.randint(1, 3))))
        body = bytes(rnd.choice(b"abAB ") for _ in range(rnd.randint(0, 40)))
        once = rnd.random() < 0.5
        whole = _run(matches, once, [body])
        cuts = sorted(rnd.sample(range(len(body) + 1), min(len(body) + 1, rnd.randint(0, 5))))
        pieces, at = [], 0
        for c in cuts:
            pieces.append(body[at:c])
            at = c
        pieces.append(body[at:])
        assert _run(matches, once, pieces) == whole, (matches, once, body, pieces)


def test_known_answers() -> None:
    # nginx 1.22.1's answers (tests/compat/test_sub_filter_vs_nginx.py compares live)
    assert _run([b"hello", b"world", b"hello world"], True,
                [b"Hello World hello world HELLO"]) == b"<0> <1> <2> HELLO"
    assert _run([b"ab", b"a", b"bb"], False, [b"aA"]) == b"<1>A"  # the end blocks 'a'
    assert _run([b"aa"], False, [b"aaa"]) == b"<0>a"
