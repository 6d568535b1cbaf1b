"""proxy.upstream.balancer: nginx 1.22's peer choice and peer health, decision by decision.

Expected sequences are worked out by hand from the nginx sources named in the module docstring
(the arithmetic is in the comments); the hash tests recompute nginx's formulas independently.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.model import NOWHERE, Balancer, Template, Upstream, UpstreamServer, Var
from proxy.upstream.balancer import (
    HASH_MAX_TRIES,
    Attempt,
    Peer,
    PeerGroup,
    UpstreamError,
    resolve,
)

RR = Balancer.ROUND_ROBIN
LC = Balancer.LEAST_CONN
IPH = Balancer.IP_HASH
HASH = Balancer.HASH
CHASH = Balancer.HASH_CONSISTENT


def make(method: Balancer, *specs: dict[str, Any]) -> PeerGroup:
    """A group of peers a, b, c... (10.0.0.1:80, 10.0.0.2:80, ...) with the given parameters."""
    peers = []
    for i, spec in enumerate(specs):
        ip = f"10.0.0.{i + 1}"
        peers.append(Peer(address=f"{ip}:80", host=ip, port=80, **spec))
    return PeerGroup("backend", method, peers)


def letter(peer: Peer | None) -> str:
    return "-" if peer is None else "abcdefghij"[peer.index]


def pick(group: PeerGroup, now: float = 0.0, **begin: Any) -> str:
    """One request that succeeds on its first peer; the peer's letter ("-": no live upstreams)."""
    attempt = group.begin(**begin)
    peer = attempt.next(now)
    if peer is not None:
        attempt.success(now)
    return letter(peer)


def picks(group: PeerGroup, count: int, now: float = 0.0, **begin: Any) -> str:
    return "".join(pick(group, now, **begin) for _ in range(count))


def request(group: PeerGroup, dead: str, now: float = 0.0, **begin: Any) -> str:
    """One request where peers whose letter is in ``dead`` fail; the letters tried, in order."""
    attempt = group.begin(**begin)
    out = ""
    while True:
        peer = attempt.next(now)
        out += letter(peer)
        if peer is None:
            return out
        if out[-1] in dead:
            attempt.failure(now)
            if attempt.tries_left == 0:
                return out
        else:
            attempt.success(now)
            return out


# --------------------------------------------------------------------------------------------
# smooth weighted round robin


def test_smooth_round_robin_5_1_1() -> None:
    """The nginx docs' example: weights 5, 1, 1 give a a b a c a a, and again."""
    group = make(RR, {"weight": 5}, {}, {})
    assert picks(group, 14) == "aabacaa" * 2


def test_equal_weights_cycle_in_order() -> None:
    """Equal weights: ties go to the first peer in config order, so plain rotation."""
    assert picks(make(RR, {}, {}, {}), 7) == "abcabca"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6))
def test_every_window_of_total_weight_is_exact(weights: list[int]) -> None:
    """Smooth WRR: every full cycle of total-weight picks gives each peer exactly its weight."""
    group = make(RR, *({"weight": w} for w in weights))
    total = sum(weights)
    for _ in range(3):
        cycle = picks(group, total)
        assert [cycle.count(letter(p)) for p in group.peers] == weights


def test_down_peer_is_never_chosen() -> None:
    """``down`` is skipped before any weight arithmetic: a, c alternate as if b did not exist."""
    group = make(RR, {}, {"down": True}, {})
    assert picks(group, 6) == "acacac"


def test_failure_lowers_effective_weight_then_it_recovers() -> None:
    """failure: effective_weight -= weight // max_fails; each later consideration adds one back.

    a(w=2, max_fails=2), b(w=1). Request 1: cw a=2 b=1 -> a (a.cw=-1); a fails (eff 1, fails 1),
    retry -> b (b.cw=1). Request 2: a.cw=-1+1=0 (eff back to 2), b.cw=2 -> b (b.cw=0).
    Request 3: a.cw=2, b.cw=1 -> a.
    """
    group = make(RR, {"weight": 2, "max_fails": 2}, {})
    a, b = group.peers
    assert request(group, dead="a", now=5) == "ab"
    assert (a.effective_weight, a.fails, a.accessed, a.checked) == (1, 1, 5, 5)
    assert request(group, dead="", now=6) == "b"
    assert a.effective_weight == 2
    assert request(group, dead="", now=7) == "a"
    assert (a.current_weight, b.current_weight) == (-1, 1)


def test_effective_weight_never_below_zero() -> None:
    """weight // max_fails can exceed what is left; the result is clamped at 0.

    a(w=4, max_fails=1, fail_timeout=0) next to a down peer: 4 - 4 = 0 at second 10; at 11 it is
    considered again (effective weight back to 1) and fails: 1 - 4 -> 0.
    """
    group = make(RR, {"weight": 4, "max_fails": 1, "fail_timeout": 0}, {"down": True})
    a = group.peers[0]
    assert request(group, dead="a", now=10) == "a"
    assert a.effective_weight == 0
    assert request(group, dead="a", now=11) == "a"
    assert (a.effective_weight, a.fails) == (0, 2)


def test_failed_peer_skipped_for_fail_timeout_then_one_trial() -> None:
    """fails >= max_fails and now - checked <= fail_timeout: skipped; after it, a trial request."""
    group = make(RR, {"max_fails": 1, "fail_timeout": 10}, {})
    a = group.peers[0]
    assert request(group, dead="a", now=100.5) == "ab"
    assert (a.fails, a.checked) == (1, 100)
    # 110.9 is second 110: 110 - 100 <= 10, still out
    assert picks(group, 4, now=105) + picks(group, 4, now=110.9) == "b" * 8
    # second 111: back in the rotation, the pick opens a new check window
    assert "a" in picks(group, 3, now=111.0)
    assert a.checked == 111
    assert a.fails == 0  # the trial succeeded: accessed (100) < checked (111)


def test_failed_trial_keeps_peer_out_for_another_fail_timeout() -> None:
    """A trial that fails again restarts the window from the trial's second."""
    group = make(RR, {"max_fails": 1, "fail_timeout": 10}, {})
    a = group.peers[0]
    request(group, dead="a", now=100)
    trial = ""
    while "a" not in trial:
        trial = request(group, dead="a", now=111)
    assert (a.fails, a.checked) == (2, 111)
    assert picks(group, 4, now=121) == "bbbb"
    assert "a" in picks(group, 4, now=122)


def test_success_inside_the_window_does_not_reset_fails() -> None:
    """max_fails=2: a success in the same check window leaves fails alone (accessed == checked),
    so a second failure within fail_timeout takes the peer out."""
    group = make(RR, {"max_fails": 2, "fail_timeout": 10}, {})
    a = group.peers[0]
    assert request(group, dead="a", now=100) == "ab"
    assert "a" in picks(group, 3, now=101)  # served by a, but in the window opened at 100
    assert a.fails == 1
    while a.fails < 2:
        request(group, dead="a", now=102)
    assert picks(group, 4, now=112) == "bbbb"


def test_max_fails_zero_disables_accounting() -> None:
    """max_fails=0: failures are counted but never take the peer out, nor lower its weight."""
    group = make(RR, {"max_fails": 0}, {})
    a = group.peers[0]
    for now in range(5):
        request(group, dead="a", now=now)
    assert a.fails >= 3
    assert a.effective_weight == 1
    assert sorted(picks(group, 4, now=5)) == ["a", "a", "b", "b"]


def test_max_conns_skips_a_full_peer() -> None:
    """max_conns: a peer holding that many connections is skipped until one is finished."""
    group = make(RR, {"max_conns": 1}, {})
    held = group.begin()
    assert letter(held.next(0)) == "a"
    assert picks(group, 3) == "bbb"
    held.success(0)
    assert "a" in picks(group, 2)


# --------------------------------------------------------------------------------------------
# one request: tried peers, tries, backups, no live upstreams


def test_a_request_never_tries_a_peer_twice() -> None:
    """The tried bitmap: three failing peers are each tried once, then tries run out."""
    group = make(RR, {}, {}, {})
    attempt = group.begin()
    assert attempt.tries_left == 3
    seen = []
    while attempt.tries_left:
        peer = attempt.next(0)
        assert peer is not None
        seen.append(letter(peer))
        attempt.failure(0)
    assert sorted(seen) == ["a", "b", "c"]
    assert attempt.next(0) is None  # nginx would not ask; if asked, everything is tried
    assert [letter(p) for p in attempt.tried] == seen


def test_tries_count_non_down_peers_and_respect_next_upstream_tries() -> None:
    """tries = non-down primaries + non-down backups, capped by proxy_next_upstream_tries."""
    group = make(RR, {}, {"down": True}, {}, {"backup": True}, {"backup": True, "down": True})
    assert group.begin().tries_left == 3
    assert group.begin(max_tries=2).tries_left == 2
    assert group.begin(max_tries=9).tries_left == 3


def test_finish_before_asking_again() -> None:
    """next() twice without success()/failure() is an engine bug and raises."""
    attempt = make(RR, {}, {}).begin()
    attempt.next(0)
    with pytest.raises(RuntimeError):
        attempt.next(0)
    attempt.success(0)
    with pytest.raises(RuntimeError):
        attempt.failure(0)


def test_backups_only_when_no_primary_is_available() -> None:
    """Primaries first; when they all fail the same request moves to the backups for good."""
    group = make(
        RR,
        {"fail_timeout": 30},
        {"fail_timeout": 30},
        {"backup": True},
        {"backup": True, "weight": 2},
    )
    assert picks(group, 4) == "abab"
    assert request(group, dead="ab", now=10) == "abd"
    # primaries out for 30s: backups by smooth WRR (weights 1, 2; d already picked once)
    assert picks(group, 6, now=20) == "cddcdd"
    # and back to the primaries after fail_timeout
    assert set(picks(group, 4, now=41)) == {"a", "b"}


def test_after_switching_to_backups_a_request_stays_there() -> None:
    """Within one request the tried bitmap is reused for backups; primaries are never revisited."""
    group = make(RR, {}, {}, {"backup": True}, {"backup": True})
    attempt = group.begin()
    order = ""
    while (peer := attempt.next(0)) is not None:
        order += letter(peer)
        attempt.failure(0)
    assert order == "abcd"
    assert attempt.tries_left == 0
    assert [p.fails for p in group.peers] == [1, 1, 1, 1]


def test_no_live_upstreams_keeps_failure_counts() -> None:
    """All peers unavailable: None (502), and since nginx 1.11.5 fails are NOT reset; the peers
    return only after their fail_timeout."""
    group = make(RR, {"fail_timeout": 5}, {"fail_timeout": 5}, {"backup": True, "fail_timeout": 5})
    assert request(group, dead="abc", now=100) == "abc"
    assert pick(group, now=101) == "-"
    assert [p.fails for p in group.peers] == [1, 1, 1]
    assert pick(group, now=105) == "-"
    assert pick(group, now=106) in ("a", "b")


def test_single_server_is_never_marked_unavailable() -> None:
    """One server and no backup: failures are not counted and leave no retry (tries = 0)."""
    group = make(RR, {"max_fails": 1})
    a = group.peers[0]
    for now in range(3):
        attempt = group.begin()
        assert attempt.tries_left == 1
        assert attempt.next(now) is a
        attempt.failure(now)
        assert attempt.tries_left == 0
    assert (a.fails, a.effective_weight, a.conns) == (0, 1, 0)


def test_single_down_server_means_no_live_upstreams() -> None:
    """The only server is down: nothing to choose."""
    assert pick(make(RR, {"down": True})) == "-"


def test_one_primary_with_a_backup_is_accounted() -> None:
    """With a backup the group is not "single": the primary's failures count."""
    group = make(RR, {}, {"backup": True})
    assert request(group, dead="a", now=0) == "ab"
    assert group.peers[0].fails == 1
    assert pick(group, now=1) == "b"


def test_time_is_floored_to_whole_seconds() -> None:
    """ngx_time() has a one-second grain: 100.9 and 110.99 are seconds 100 and 110."""
    group = make(RR, {"fail_timeout": 10}, {})
    request(group, dead="a", now=100.9)
    assert group.peers[0].checked == 100
    assert group.unavailable(group.peers[0], 110.99)
    assert not group.unavailable(group.peers[0], 111.0)


# --------------------------------------------------------------------------------------------
# least_conn


def test_least_conn_without_load_is_round_robin() -> None:
    """Sequential requests leave conns at 0: every peer ties, so smooth WRR decides."""
    assert picks(make(LC, {"weight": 5}, {}, {}), 14) == "aabacaa" * 2


def test_least_conn_compares_conns_times_weight() -> None:
    """a(w=1) b(w=2) c(w=1), nothing released.

    1: all 0, WRR among all -> b.   2: a, c tie at 0 -> WRR -> a.
    3: a=1/1, b=1/2, c=0 -> c.      4: a=1/1, b=1/2, c=1/1 -> b.
    5: a=1/1, b=2/2, c=1/1 tie -> WRR (cw a=1, b=0, c=3) -> c.
    """
    group = make(LC, {}, {"weight": 2}, {})
    held: list[Attempt] = []
    out = ""
    for _ in range(5):
        attempt = group.begin()
        out += letter(attempt.next(0))
        held.append(attempt)
    assert out == "bacbc"
    assert [p.conns for p in group.peers] == [1, 2, 2]
    for attempt in held:
        attempt.success(0)
    assert [p.conns for p in group.peers] == [0, 0, 0]


def test_least_conn_skips_failed_and_uses_backups() -> None:
    """Unavailable peers are not candidates; without primaries least_conn runs over backups."""
    group = make(LC, {"fail_timeout": 10}, {"backup": True}, {"backup": True})
    busy = group.begin()
    assert request(group, dead="a", now=0) == "ab"
    # a is out for fail_timeout; both backups have 0 connections: WRR (cw b=0, c=2) -> c
    assert letter(busy.next(1)) == "c"
    assert pick(group, now=1) == "b"  # c holds one connection, b none
    busy.success(1)


def test_least_conn_trial_after_fail_timeout() -> None:
    """least_conn shares round robin's health rules: out for fail_timeout, then a trial that opens
    a new check window (down peers tie at 0 connections but are never candidates)."""
    group = make(LC, {"fail_timeout": 10}, {"down": True}, {})
    a = group.peers[0]
    assert request(group, dead="a", now=100) == "ac"
    assert picks(group, 4, now=105) == "cccc"
    assert "a" in picks(group, 4, now=111)
    assert (a.checked, a.fails, a.effective_weight) == (111, 0, 1)


def test_least_conn_nothing_available() -> None:
    """No primary and no backup available: no live upstreams."""
    assert pick(make(LC, {"down": True}, {"down": True}, {"backup": True, "down": True})) == "-"


def test_least_conn_single_server() -> None:
    """A single server goes through round robin's single path (no accounting)."""
    group = make(LC, {})
    assert request(group, dead="a") == "a"
    assert group.peers[0].fails == 0


# --------------------------------------------------------------------------------------------
# ip_hash


def ip_hash_fold(hash_: int, data: bytes) -> int:
    for byte in data:
        hash_ = (hash_ * 113 + byte) % 6271
    return hash_


def weight_walk(value: int, weights: Sequence[int]) -> int:
    w = value % sum(weights)
    for i, weight in enumerate(weights):
        if w < weight:
            return i
        w -= weight
    raise AssertionError


def test_ip_hash_of_127_0_0_1() -> None:
    """89 -> 3913 -> 3199 -> 4040 over 127, 0, 0; 4040 % 3 = 2: the third peer."""
    assert ip_hash_fold(89, b"\x7f\x00\x00") == 4040
    group = make(IPH, {}, {}, {})
    assert picks(group, 5, client_addr="127.0.0.1") == "ccccc"


def test_ip_hash_uses_three_octets_of_ipv4_and_all_of_ipv6() -> None:
    """The last IPv4 octet is ignored; IPv6 hashes 16 bytes; a unix client hashes 0, 0, 0."""
    weights = [1, 2, 1, 3]
    group = make(IPH, *({"weight": w} for w in weights))
    for ip in ("10.1.2.3", "192.0.2.200", "203.0.113.9"):
        a, b, c, _ = (int(x) for x in ip.split("."))
        want = "abcd"[weight_walk(ip_hash_fold(89, bytes((a, b, c))), weights)]
        assert pick(group, client_addr=ip) == want
        assert pick(group, client_addr=f"{a}.{b}.{c}.77") == want
    for ip in ("2001:db8::1", "2001:db8::2", "fe80::1234"):
        data = ipaddress.ip_address(ip).packed
        assert pick(group, client_addr=ip) == "abcd"[weight_walk(ip_hash_fold(89, data), weights)]
    want_pseudo = "abcd"[weight_walk(ip_hash_fold(89, b"\0\0\0"), weights)]
    assert pick(group, client_addr="unix:") == want_pseudo


def test_ip_hash_rehashes_past_an_unavailable_peer_and_retries_continue() -> None:
    """A down pick folds the address again; a retry continues from the stored hash."""
    group = make(IPH, {}, {}, {}, {})
    data = b"\x0a\x00\x00"
    h1 = ip_hash_fold(89, data)
    first = h1 % 4
    group.peers[first].down = True
    h2 = ip_hash_fold(h1, data)
    while h2 % 4 == first:
        h2 = ip_hash_fold(h2, data)
    assert pick(group, client_addr="10.0.0.9") == "abcd"[h2 % 4]
    group.peers[first].down = False
    attempt = group.begin(client_addr="10.0.0.9")
    assert attempt.next(0) is group.peers[first]
    attempt.failure(0)
    h = ip_hash_fold(h1, data)
    while h % 4 == first:
        h = ip_hash_fold(h, data)
    assert attempt.next(0) is group.peers[h % 4]
    attempt.success(0)


def test_ip_hash_falls_back_to_round_robin_after_20_misses() -> None:
    """With every primary unavailable the fold misses 21 times, then round robin takes over
    (and finds the backup)."""
    group = make(IPH, {"down": True}, {"down": True}, {"backup": True})
    attempt = group.begin(client_addr="192.0.2.1")
    assert letter(attempt.next(0)) == "c"
    assert attempt._hash_tries == HASH_MAX_TRIES + 1


def test_ip_hash_single_server_is_round_robin() -> None:
    """A single server skips the hash entirely."""
    assert picks(make(IPH, {}), 2, client_addr="10.0.0.1") == "aa"


# --------------------------------------------------------------------------------------------
# hash KEY


def key_hash_sequence(key: bytes) -> list[int]:
    """nginx's running hash values for one request: round n adds crc32([n] key) >> 16 & 0x7fff."""
    out, total = [], 0
    for n in range(HASH_MAX_TRIES + 1):
        crc = zlib.crc32((str(n).encode() if n else b"") + key)
        total += (crc >> 16) & 0x7FFF
        out.append(total)
    return out


def test_hash_key_picks_by_crc32() -> None:
    """Round 0: (crc32(key) >> 16) & 0x7fff, walked over the weights."""
    weights = [2, 1, 3]
    group = make(HASH, *({"weight": w} for w in weights))
    for key in ("foo", "bar", "/index.html", "user-42", "é"):
        want = weight_walk(key_hash_sequence(key.encode())[0], weights)
        assert pick(group, hash_key=key) == "abc"[want]


def test_hash_key_rehash_prefixes_the_round_number() -> None:
    """A miss adds crc32("1" key), then crc32("2" key)... to the running hash."""
    group = make(HASH, {}, {}, {}, {}, {})
    key = b"some-key"
    seq = key_hash_sequence(key)
    first = seq[0] % 5
    group.peers[first].down = True
    want = next(v % 5 for v in seq[1:] if v % 5 != first)
    assert pick(group, hash_key=key) == "abcde"[want]


def test_hash_key_retry_continues_and_tried_peers_are_skipped() -> None:
    """A retry in the same request continues the rehash sequence, skipping tried peers."""
    group = make(HASH, {}, {}, {})
    key = b"k1"
    seq = [v % 3 for v in key_hash_sequence(key)]
    attempt = group.begin(hash_key=key)
    assert attempt.next(0) is group.peers[seq[0]]
    attempt.failure(0)
    assert attempt.next(0) is group.peers[next(i for i in seq[1:] if i != seq[0])]
    attempt.success(0)


def test_hash_key_peer_health_and_check_window() -> None:
    """A failed hashed peer is rehashed around during fail_timeout and picked again after it."""
    group = make(HASH, {}, {}, {})
    key = b"k1"
    home = key_hash_sequence(key)[0] % 3
    attempt = group.begin(hash_key=key)
    assert attempt.next(100) is group.peers[home]
    attempt.failure(100)
    assert pick(group, now=105, hash_key=key) != "abc"[home]
    assert pick(group, now=111, hash_key=key) == "abc"[home]
    assert (group.peers[home].checked, group.peers[home].fails) == (111, 0)


def test_hash_empty_key_is_round_robin() -> None:
    """An empty key (nginx >= 1.17.1) means round robin."""
    group = make(HASH, {"weight": 5}, {}, {})
    assert picks(group, 7, hash_key="") == "aabacaa"
    assert picks(group, 7, hash_key=None) == "aabacaa"


def test_hash_falls_back_to_round_robin_after_20_misses() -> None:
    """Every primary failed: 21 misses, then round robin -> the backup."""
    group = make(HASH, {"down": True}, {"down": True}, {"backup": True})
    assert pick(group, hash_key="x") == "c"


# --------------------------------------------------------------------------------------------
# hash KEY consistent


def ring_of(servers: Sequence[tuple[str, int]]) -> list[tuple[int, str]]:
    """Independent construction of nginx's ring: crc32(HOST \\0 PORT prev_le32), 160 * weight."""
    points = []
    for text, weight in servers:
        host, _, port = text.rpartition(":")
        prev = 0
        for _ in range(160 * weight):
            prev = zlib.crc32(host.encode() + b"\0" + port.encode() + prev.to_bytes(4, "little"))
            points.append((prev, text))
    points.sort(key=lambda p: p[0])
    dedup: list[tuple[int, str]] = []
    for point in points:
        if not dedup or dedup[-1][0] != point[0]:
            dedup.append(point)
    return dedup


def ring_lookup(ring: list[tuple[int, str]], key: bytes, skip: int = 0) -> str:
    h = zlib.crc32(key)
    i = next((n for n, (v, _) in enumerate(ring) if v >= h), len(ring))
    return ring[(i + skip) % len(ring)][1]


def test_consistent_ring_is_ketama() -> None:
    """160 points per unit of weight from the server text; sorted; the key goes to the first
    point >= crc32(key), wrapping."""
    group = make(CHASH, {}, {"weight": 2}, {})
    ring = ring_of([("10.0.0.1:80", 1), ("10.0.0.2:80", 2), ("10.0.0.3:80", 1)])
    assert list(group.ring) == ring
    assert len(ring) == 640
    for n in range(50):
        key = f"key{n}".encode()
        assert group.peers[ord(pick(group, hash_key=key)) - ord("a")].server == ring_lookup(
            ring, key
        )


def test_consistent_moves_only_keys_of_an_unavailable_server() -> None:
    """Marking one server down remaps its keys to the next point's server and nothing else."""
    group = make(CHASH, {}, {}, {}, {})
    texts = [f"10.0.0.{i}:80" for i in range(1, 5)]
    ring = ring_of([(text, 1) for text in texts])
    keys = [f"k{n}".encode() for n in range(120)]
    before = {k: pick(group, hash_key=k) for k in keys}
    group.peers[1].down = True
    after = {k: pick(group, hash_key=k) for k in keys}
    for k in keys:
        if before[k] != "b":
            assert after[k] == before[k]
            continue
        skip = 1
        while ring_lookup(ring, k, skip) == texts[1]:
            skip += 1
        assert after[k] == "abcd"[texts.index(ring_lookup(ring, k, skip))]
    assert "b" in before.values()


def test_consistent_ring_uses_the_server_text_as_written() -> None:
    """Peers resolved from one ``server`` line share its points and take turns by smooth WRR;
    unix sockets hash their path with an empty port."""
    model = Upstream(
        name="u",
        servers=(
            UpstreamServer(address="app.internal:8080", source=NOWHERE),
            UpstreamServer(address="unix:/run/app.sock", source=NOWHERE),
        ),
        balancer=CHASH,
        hash_key=Template(raw="$uri", parts=(Var(name="uri"),)),
        source=NOWHERE,
    )
    group = PeerGroup.from_model(model, resolver=lambda host: ["10.1.0.1", "10.1.0.2"])
    assert [p.address for p in group.peers] == [
        "10.1.0.1:8080",
        "10.1.0.2:8080",
        "unix:/run/app.sock",
    ]
    assert {s for _, s in group.ring} == {"app.internal:8080", "unix:/run/app.sock"}
    assert len(group.ring) == 320  # the two addresses of app.internal produce the same points
    first = zlib.crc32(b"/run/app.sock\0" + bytes(4))
    assert (first, "unix:/run/app.sock") in group.ring
    key = next(
        f"/p{n}"
        for n in range(100)
        if ring_lookup(list(group.ring), f"/p{n}".encode()) == "app.internal:8080"
    )
    assert [pick(group, hash_key=key) for _ in range(4)] == ["a", "b", "a", "b"]


def test_consistent_failed_peer_recovers_weight_and_window() -> None:
    """On the ring, a peer below max_fails stays a candidate and earns its weight back; the check
    window opens on the first pick after fail_timeout."""
    group = make(CHASH, {"weight": 2, "max_fails": 2}, {})
    key = next(f"k{n}" for n in range(100) if pick(group, hash_key=f"k{n}") == "a")
    a = group.peers[0]
    attempt = group.begin(hash_key=key)
    assert attempt.next(100) is a
    attempt.failure(100)
    assert (a.effective_weight, a.fails, a.checked) == (1, 1, 100)
    assert pick(group, now=101, hash_key=key) == "a"
    assert (a.effective_weight, a.checked, a.fails) == (2, 100, 1)
    assert pick(group, now=111, hash_key=key) == "a"
    assert (a.checked, a.fails) == (111, 0)


def test_consistent_ring_for_a_server_without_port() -> None:
    """``server 10.0.0.9`` (no port written): HOST is the whole text and PORT is empty."""
    model = Upstream(
        name="u",
        servers=(UpstreamServer(address="10.0.0.9", source=NOWHERE),),
        balancer=CHASH,
        hash_key=Template(raw="$uri", parts=(Var(name="uri"),)),
        source=NOWHERE,
    )
    group = PeerGroup.from_model(model)
    assert group.peers[0].address == "10.0.0.9:80"
    assert (zlib.crc32(b"10.0.0.9\0" + bytes(4)), "10.0.0.9") in group.ring


def test_consistent_falls_back_to_round_robin_after_20_moves() -> None:
    """Nothing available on 21 consecutive points: round robin, here to the backup."""
    group = make(CHASH, {"down": True}, {"down": True}, {"backup": True})
    assert pick(group, hash_key="anything") == "c"


def test_consistent_empty_key_is_round_robin() -> None:
    """An empty key skips the ring."""
    assert picks(make(CHASH, {"weight": 5}, {}, {}), 7, hash_key="") == "aabacaa"


# --------------------------------------------------------------------------------------------
# building groups


def server(address: str, **params: Any) -> UpstreamServer:
    return UpstreamServer(address=address, source=NOWHERE, **params)


def test_from_model_one_peer_per_address() -> None:
    """A name resolving to several addresses gives several peers with the line's parameters."""
    calls: list[str] = []

    def resolver(host: str) -> list[str]:
        calls.append(host)
        return {"web": ["192.0.2.1", "2001:db8::1"]}.get(host) or resolve(host)

    model = Upstream(
        name="u",
        servers=(
            server("web:8080", weight=3, max_fails=2, fail_timeout=30.0),
            server("127.0.0.1"),
            server("[::1]:9000", backup=True),
        ),
        source=NOWHERE,
    )
    group = PeerGroup.from_model(model, resolver=resolver)
    assert [(p.address, p.host, p.port) for p in group.peers] == [
        ("192.0.2.1:8080", "192.0.2.1", 8080),
        ("[2001:db8::1]:8080", "2001:db8::1", 8080),
        ("127.0.0.1:80", "127.0.0.1", 80),
        ("[::1]:9000", "::1", 9000),
    ]
    assert [(p.weight, p.max_fails, p.fail_timeout) for p in group.peers[:2]] == [(3, 2, 30)] * 2
    assert [p.backup for p in group.peers] == [False, False, False, True]
    assert group.peers[0].server == "web:8080"
    assert calls == ["web", "127.0.0.1", "::1"]


def test_resolve_literals_without_lookup_and_names_with_getaddrinfo() -> None:
    """IP literals come back as they are; names go through getaddrinfo."""
    assert resolve("10.0.0.1") == ["10.0.0.1"]
    assert resolve("[::1]") == ["::1"]
    found = resolve("localhost")
    assert found and all(ip in ("127.0.0.1", "::1") for ip in found)
    with pytest.raises(LookupError):
        resolve("no-such-host.invalid")


def test_implicit_group_for_proxy_pass_host_port() -> None:
    """proxy_pass http://host:port: one peer per address, max_fails=1 fail_timeout=10."""
    single = PeerGroup.implicit("127.0.0.1", 8080)
    assert single.single
    assert [p.address for p in single.peers] == ["127.0.0.1:8080"]
    double = PeerGroup.implicit("svc", 81, resolver=lambda h: ["10.0.0.1", "10.0.0.2"])
    assert not double.single
    assert [(p.max_fails, p.fail_timeout) for p in double.peers] == [(1, 10), (1, 10)]
    assert request(double, dead="a", now=0) == "ab"
    assert pick(double, now=5) == "b"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            Upstream(name="u", servers=(server("a:1"),), balancer=Balancer.RANDOM, source=NOWHERE),
            "random",
        ),
        (
            Upstream(name="u", servers=(server("a:1"),), balancer=HASH, source=NOWHERE),
            "hash without a key",
        ),
        (
            Upstream(name="u", servers=(server("10.0.0.1", backup=True),), source=NOWHERE),
            "no servers",
        ),
        (Upstream(name="u", servers=(server("10.0.0.1:99999"),), source=NOWHERE), "invalid port"),
        (
            Upstream(name="u", servers=(server("nowhere.invalid"),), source=NOWHERE),
            "host not found",
        ),
        (Upstream(name="u", servers=(server("[::1:80"),), source=NOWHERE), "invalid address"),
        (Upstream(name="u", servers=(server("[::1]x"),), source=NOWHERE), "invalid address"),
    ],
)
def test_groups_nginx_would_refuse(model: Upstream, message: str) -> None:
    """Config-load errors carry the message and where the block was written."""
    with pytest.raises(UpstreamError, match=message):
        PeerGroup.from_model(model, resolver=lambda h: resolve(h))


def test_direct_construction_refuses_random_and_unknown_hosts() -> None:
    """``random`` is not supported; an implicit upstream whose host does not resolve fails."""
    with pytest.raises(UpstreamError, match="random"):
        PeerGroup("u", Balancer.RANDOM, [Peer(address="10.0.0.1:80", host="10.0.0.1", port=80)])
    with pytest.raises(UpstreamError, match="host not found"):
        PeerGroup.implicit("nowhere.invalid", 80)
