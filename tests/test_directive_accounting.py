"""Every directive the table calls supported or partial is read by some code.

limit_conn_dry_run and limit_req_dry_run were once marked partial and silently dropped: the
analyzer accepted them and nothing looked at them.  This guard catches the next such entry: a
supported or partial directive's name must appear (as a string) in migrate/ or proxy/ outside
the table itself, unless it is listed below with the reason the table gives for not applying it.
"""

from __future__ import annotations

import re
from pathlib import Path

from migrate.directives import DIRECTIVES

REPO = Path(__file__).resolve().parents[1]

NOT_APPLIED = {
    # name: a phrase the table's reason must contain (it tells the user it is not applied)
    "quic_host_key": "managed by aioquic",
    "quic_active_connection_id_limit": "left to aioquic",
    "ssl_ecdh_curve": "Python's ssl defaults",
    "proxy_ssl_verify_depth": "default verification depth",
    "fastcgi_buffering": "always streams",
}


def _names_in_code() -> set[str]:
    names: set[str] = set()
    for path in [*REPO.glob("migrate/**/*.py"), *REPO.glob("proxy/**/*.py")]:
        if path.name == "directives.py" and path.parent.name == "migrate":
            continue
        names |= set(re.findall(r"[\"']([a-z0-9_]+)[\"']", path.read_text()))
        names |= set(re.findall(r"\b([a-z0-9]+(?:_[a-z0-9]+)+)\b", path.read_text()))
    return names


def test_supported_and_partial_directives_are_read() -> None:
    names = _names_in_code()
    unread = sorted(n for n, spec in DIRECTIVES.items()
                    if spec.support.value in ("supported", "partial") and n not in names
                    and n not in NOT_APPLIED)
    assert unread == [], f"marked supported/partial but never read: {unread}"


def test_not_applied_entries_say_so() -> None:
    for name, phrase in NOT_APPLIED.items():
        spec = DIRECTIVES[name]
        assert spec.support.value == "partial", name
        assert phrase in (spec.reason or ""), (name, spec.reason)
