"""The shadow store: SQLite, one file, schema versioned.

Schema (version 1; ``schema_version`` holds one row with the version)::

    schema_version(version INTEGER)
    meta(key TEXT PRIMARY KEY, value TEXT)          -- run facts: primary, candidate, started...
    counters(name TEXT PRIMARY KEY, value INTEGER)  -- mirror accounting: eligible, mirrored,
                                                    -- dropped_*, skipped_*, candidate_errors...
    exchanges(
        id INTEGER PRIMARY KEY, ts REAL, source TEXT,    -- 'shadow' or 'replay'
        route TEXT, method TEXT, host TEXT, target TEXT,
        request_headers TEXT,                            -- JSON [[name, value], ...]
        request_body BLOB,                               -- first SAMPLE_BYTES bytes
        primary_status INTEGER, candidate_status INTEGER, secondary_status INTEGER,
        primary_error TEXT, candidate_error TEXT,
        primary_ms REAL, candidate_ms REAL,              -- latency of each side
        primary_headers TEXT, candidate_headers TEXT,    -- JSON, only when they differ
        primary_body BLOB, candidate_body BLOB,          -- SAMPLE_BYTES, only if they differ
        differences INTEGER, noise INTEGER,              -- how many of each
        server TEXT, location TEXT, location_source TEXT)-- attribution (--config), else NULL
    differences(
        id INTEGER PRIMARY KEY, exchange_id INTEGER REFERENCES exchanges(id),
        route TEXT, field TEXT, primary_value TEXT, candidate_value TEXT,
        verdict TEXT,                                    -- 'difference' or 'noise'
        server TEXT, location TEXT, location_source TEXT)
    noise(route TEXT, field TEXT, count INTEGER, PRIMARY KEY(route, field))
                                                    -- times a field differed between primaries
    routes(route TEXT PRIMARY KEY, exchanges INTEGER, differing INTEGER, noisy INTEGER,
           compared_primaries INTEGER, primary_errors INTEGER, candidate_errors INTEGER)

Rules:

1. A store written by a newer Tern (higher version) is refused with :class:`StoreError`, never
   read half-way; an older version would be migrated here (there is none yet).
2. One :class:`Store` object is used from one thread at a time (the shadow analysis thread, or the
   ``tern diffs`` command); writes of one exchange are one transaction.
3. Bodies are kept bounded: at most :data:`SAMPLE_BYTES` bytes of each, and response bodies and
   headers only for exchanges with differences.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMA_VERSION", "SAMPLE_BYTES", "DiffRow", "ExchangeRow", "Store", "StoreError"]

SCHEMA_VERSION = 1
"""Version written by this code."""

SAMPLE_BYTES = 4096
"""Bytes kept of each body."""

_SCHEMA = """
CREATE TABLE schema_version(version INTEGER NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE exchanges(
    id INTEGER PRIMARY KEY, ts REAL, source TEXT, route TEXT, method TEXT, host TEXT,
    target TEXT, request_headers TEXT, request_body BLOB,
    primary_status INTEGER, candidate_status INTEGER, secondary_status INTEGER,
    primary_error TEXT, candidate_error TEXT, primary_ms REAL, candidate_ms REAL,
    primary_headers TEXT, candidate_headers TEXT, primary_body BLOB, candidate_body BLOB,
    differences INTEGER, noise INTEGER, server TEXT, location TEXT, location_source TEXT);
CREATE INDEX exchanges_route ON exchanges(route);
CREATE TABLE differences(
    id INTEGER PRIMARY KEY, exchange_id INTEGER REFERENCES exchanges(id), route TEXT,
    field TEXT, primary_value TEXT, candidate_value TEXT, verdict TEXT,
    server TEXT, location TEXT, location_source TEXT);
CREATE INDEX differences_route ON differences(route, verdict);
CREATE TABLE noise(route TEXT, field TEXT, count INTEGER, PRIMARY KEY(route, field));
CREATE TABLE routes(route TEXT PRIMARY KEY, exchanges INTEGER, differing INTEGER, noisy INTEGER,
    compared_primaries INTEGER, primary_errors INTEGER, candidate_errors INTEGER);
"""


class StoreError(Exception):
    """The store cannot be used (missing, not a store, newer schema)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffRow:
    """One difference to store."""

    field: str
    primary: str
    candidate: str
    verdict: str
    """``difference`` or ``noise``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRow:
    """One compared exchange to store."""

    source: str
    """``shadow`` or ``replay``."""
    route: str
    method: str
    host: str
    target: str
    request_headers: tuple[tuple[str, str], ...] = ()
    request_body: bytes = b""
    primary_status: int | None = None
    candidate_status: int | None = None
    secondary_status: int | None = None
    primary_error: str = ""
    candidate_error: str = ""
    primary_ms: float | None = None
    candidate_ms: float | None = None
    primary_headers: tuple[tuple[str, str], ...] = ()
    candidate_headers: tuple[tuple[str, str], ...] = ()
    primary_body: bytes = b""
    candidate_body: bytes = b""
    server: str | None = None
    """Attribution: ``name (file:line)`` of the server block the candidate's config chose."""
    location: str | None = None
    """Attribution: the location's match (``= /x``, ``~ \\.php$``, ``/``)."""
    location_source: str | None = None
    """Attribution: ``file:line`` of that location."""


class Store:
    """An open store (see the module docstring).

    Args:
        path: the SQLite file.
        create: create the file and schema when missing; else a missing file is a
            :class:`StoreError`.

    Raises:
        StoreError: missing (without ``create``), not a Tern store, or a newer schema.
    """

    def __init__(self, path: str, *, create: bool = True) -> None:
        self.path = path
        self._in_batch = False
        if not create and not os.path.exists(path):
            raise StoreError(f"{path}: no such store")
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a Tern store ({exc})") from None
        if "schema_version" not in tables:
            if tables or not create:
                self.db.close()
                raise StoreError(f"{path}: not a Tern store (no schema_version table)")
            self.db.executescript("BEGIN;" + _SCHEMA + f"INSERT INTO schema_version VALUES "
                                  f"({SCHEMA_VERSION});COMMIT;")
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            self.db.close()
            raise StoreError(f"{path}: store schema version {version} is newer than this Tern "
                             f"understands ({SCHEMA_VERSION}); upgrade Tern")
        if version < 1:
            self.db.close()
            raise StoreError(f"{path}: bad schema version {version}")

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes made inside into one transaction (nested batches join the outer
        one): one commit per batch of exchanges instead of one per exchange."""
        if self._in_batch:
            yield
            return
        self._in_batch = True
        try:
            with self.db:
                self.db.execute("BEGIN")
                yield
        finally:
            self._in_batch = False

    # writing --------------------------------------------------------------------------------

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Set run facts (``primary``, ``candidate``, ``started``...)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def set_counters(self, values: Mapping[str, int]) -> None:
        """Replace the accounting counters (the run's totals so far; added to earlier runs'
        values only by the caller)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)",
                                ((k, int(v)) for k, v in values.items()))

    def counters(self) -> dict[str, int]:
        """The stored counters."""
        return {k: int(v) for k, v in self.db.execute("SELECT name, value FROM counters")}

    def add(self, ex: ExchangeRow, diffs: Iterable[DiffRow], *, learned: Iterable[str] = (),
            compared_primaries: bool = False) -> int:
        """Store one exchange, its differences, and the noise fields it taught.

        Args:
            ex: the exchange.
            diffs: its primary-vs-candidate differences, with verdicts.
            learned: fields that differed between the two primaries this time.
            compared_primaries: a primary-vs-primary comparison was made.

        Returns:
            The exchange id.
        """
        diffs = list(diffs)
        real = sum(1 for d in diffs if d.verdict == "difference")
        noisy = len(diffs) - real
        keep = bool(diffs)

        def hdrs(h: tuple[tuple[str, str], ...]) -> str | None:
            return json.dumps([list(x) for x in h]) if keep else None

        db = self.db
        with self.batch():
            cur = db.execute(
                "INSERT INTO exchanges(ts, source, route, method, host, target, request_headers,"
                " request_body, primary_status, candidate_status, secondary_status,"
                " primary_error, candidate_error, primary_ms, candidate_ms, primary_headers,"
                " candidate_headers, primary_body, candidate_body, differences, noise, server,"
                " location, location_source) VALUES (" + ",".join("?" * 24) + ")",
                (time.time(), ex.source, ex.route, ex.method, ex.host, ex.target,
                 json.dumps([list(x) for x in ex.request_headers]),
                 ex.request_body[:SAMPLE_BYTES], ex.primary_status, ex.candidate_status,
                 ex.secondary_status, ex.primary_error, ex.candidate_error, ex.primary_ms,
                 ex.candidate_ms, hdrs(ex.primary_headers), hdrs(ex.candidate_headers),
                 ex.primary_body[:SAMPLE_BYTES] if keep else None,
                 ex.candidate_body[:SAMPLE_BYTES] if keep else None, real, noisy,
                 ex.server, ex.location, ex.location_source))
            xid = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO differences(exchange_id, route, field, primary_value,"
                " candidate_value, verdict, server, location, location_source)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [(xid, ex.route, d.field, d.primary, d.candidate, d.verdict, ex.server,
                  ex.location, ex.location_source) for d in diffs])
            db.executemany(
                "INSERT INTO noise VALUES (?, ?, 1) ON CONFLICT(route, field)"
                " DO UPDATE SET count = count + 1", [(ex.route, f) for f in learned])
            db.execute(
                "INSERT INTO routes VALUES (?, 1, ?, ?, ?, ?, ?) ON CONFLICT(route) DO UPDATE SET"
                " exchanges = exchanges + 1, differing = differing + excluded.differing,"
                " noisy = noisy + excluded.noisy,"
                " compared_primaries = compared_primaries + excluded.compared_primaries,"
                " primary_errors = primary_errors + excluded.primary_errors,"
                " candidate_errors = candidate_errors + excluded.candidate_errors",
                (ex.route, int(real > 0), int(noisy > 0 and real == 0), int(compared_primaries),
                 int(bool(ex.primary_error) or ex.primary_status is None),
                 int(bool(ex.candidate_error) or ex.candidate_status is None)))
        return xid

    # reading --------------------------------------------------------------------------------

    def noise_seed(self) -> dict[str, dict[str, int]]:
        """``{route: {field: count}}`` learned so far (to continue learning in a new run)."""
        out: dict[str, dict[str, int]] = {}
        for route, fld, count in self.db.execute("SELECT route, field, count FROM noise"):
            out.setdefault(route, {})[fld] = int(count)
        return out

    def summary(self, *, examples: int = 3, top_fields: int = 10) -> dict[str, Any]:
        """What ``tern diffs`` prints: totals, per-route rates, top fields, examples.

        Args:
            examples: example requests per route (those with real differences first).
            top_fields: how many differing fields to list, overall and per route.
        """
        db = self.db
        total, differing, noisy_only = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(differences > 0), 0),"
            " COALESCE(SUM(differences = 0 AND noise > 0), 0) FROM exchanges").fetchone()
        top = [{"field": f, "count": int(n)} for f, n in db.execute(
            "SELECT field, COUNT(*) AS n FROM differences WHERE verdict = 'difference'"
            " GROUP BY field ORDER BY n DESC, field LIMIT ?", (top_fields,))]
        routes: list[dict[str, Any]] = []
        for (route, n, dif, noisy, cmp_, perr, cerr) in db.execute(
                "SELECT route, exchanges, differing, noisy, compared_primaries, primary_errors,"
                " candidate_errors FROM routes ORDER BY CAST(differing AS REAL) / exchanges DESC,"
                " route").fetchall():
            lat = db.execute("SELECT primary_ms, candidate_ms FROM exchanges WHERE route = ?",
                             (route,)).fetchall()
            fields = [{"field": f, "count": int(c)} for f, c in db.execute(
                "SELECT field, COUNT(*) AS c FROM differences WHERE route = ? AND"
                " verdict = 'difference' GROUP BY field ORDER BY c DESC, field LIMIT ?",
                (route, top_fields))]
            noise = [{"field": f, "count": int(c)} for f, c in db.execute(
                "SELECT field, count FROM noise WHERE route = ? ORDER BY count DESC, field"
                " LIMIT ?", (route, top_fields))]
            ex_rows = db.execute(
                "SELECT id, method, host, target, primary_status, candidate_status, differences,"
                " noise, server, location, location_source FROM exchanges WHERE route = ?"
                " ORDER BY differences > 0 DESC, id LIMIT ?", (route, examples)).fetchall()
            exs = []
            for (xid, method, host, target, ps, cs, d, nz, srv, loc, lsrc) in ex_rows:
                dfields = [r[0] for r in db.execute(
                    "SELECT field FROM differences WHERE exchange_id = ? AND"
                    " verdict = 'difference' ORDER BY id LIMIT 5", (xid,))]
                exs.append({"id": xid, "method": method, "host": host, "target": target,
                            "primary_status": ps, "candidate_status": cs, "differences": d,
                            "noise": nz, "fields": dfields, "server": srv, "location": loc,
                            "location_source": lsrc})
            routes.append({
                "route": route, "exchanges": int(n), "differing": int(dif),
                "rate": round(dif / n, 4) if n else 0.0, "noisy_only": int(noisy),
                "compared_primaries": int(cmp_), "primary_errors": int(perr),
                "candidate_errors": int(cerr),
                "primary_ms": _percentiles([r[0] for r in lat]),
                "candidate_ms": _percentiles([r[1] for r in lat]),
                "top_fields": fields, "noise_fields": noise, "examples": exs})
        return {
            "store": self.path, "schema_version": SCHEMA_VERSION,
            "meta": dict(db.execute("SELECT key, value FROM meta").fetchall()),
            "counters": self.counters(),
            "totals": {"exchanges": int(total), "differing": int(differing),
                       "noisy_only": int(noisy_only),
                       "rate": round(differing / total, 4) if total else 0.0},
            "top_fields": top, "routes": routes}


def _percentiles(values: Iterable[float | None]) -> dict[str, float | None]:
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return {"p50": None, "p99": None}
    if len(vs) == 1:
        return {"p50": round(vs[0], 3), "p99": round(vs[0], 3)}
    q = statistics.quantiles(vs, n=100, method="inclusive")
    return {"p50": round(q[49], 3), "p99": round(q[98], 3)}
