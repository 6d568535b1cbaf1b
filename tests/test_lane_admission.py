"""The lane's cache admission (``proxy.lane._Admission``): what a table keyed by request bytes
or paths remembers, with traffic that repeats and with traffic that does not."""

from __future__ import annotations

from proxy.lane import COLD_ADMIT, TUNE_EVERY, _Admission


def _run(adm: _Admission, lookups: int, hit_every: int) -> int:
    """``lookups`` look-ups, one in ``hit_every`` a hit (0: none); returns the entries taken."""
    taken = 0
    for i in range(lookups):
        if hit_every and i % hit_every == 0:
            adm.hits += 1
        elif adm.miss():
            taken += 1
    return taken


def test_everything_taken_while_it_pays() -> None:
    adm = _Admission()
    taken = _run(adm, 4 * TUNE_EVERY, hit_every=2)  # half the look-ups hit
    assert adm.every == 1
    assert taken == 2 * TUNE_EVERY  # every miss remembered


def test_distinct_traffic_turns_cold_then_samples() -> None:
    adm = _Admission()
    first = _run(adm, TUNE_EVERY, hit_every=0)
    assert first == TUNE_EVERY  # hot until the first look at the hit rate
    assert adm.every == COLD_ADMIT
    later = _run(adm, 8 * TUNE_EVERY, hit_every=0)
    assert later <= 8 * TUNE_EVERY // COLD_ADMIT + 8  # one in COLD_ADMIT (+ the looks)
    assert later >= 8 * TUNE_EVERY // COLD_ADMIT


def test_repeats_turn_it_hot_again() -> None:
    adm = _Admission()
    _run(adm, TUNE_EVERY, hit_every=0)
    assert adm.every == COLD_ADMIT
    # requests start repeating: one look-up in 8 hits (above the 1 in 16 threshold)
    _run(adm, 2 * TUNE_EVERY, hit_every=8)
    assert adm.every == 1


def test_rare_hits_stay_cold() -> None:
    adm = _Admission()
    _run(adm, TUNE_EVERY, hit_every=0)
    _run(adm, 4 * TUNE_EVERY, hit_every=40)  # 1 in 40 hits: not worth remembering all
    assert adm.every == COLD_ADMIT
