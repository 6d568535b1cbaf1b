"""limit_req and limit_conn (ngx_http_limit_req_module, ngx_http_limit_conn_module).

Rules:

1. limit_req is a leaky bucket per key: ``excess`` grows by one request and drains at ``rate``;
   a request that would push ``excess`` over ``burst`` is refused with ``limit_req_status``
   (503 by default). Within the burst, a request waits until the bucket drained enough, unless
   ``nodelay`` (or within ``delay=`` requests).
2. limit_conn counts requests in progress per key; one over ``number`` is refused with
   ``limit_conn_status`` (503 by default). The count drops when the request ends.
3. An empty key is not limited.
4. Difference from nginx (stated in the directive table as PARTIAL): the state lives in each
   worker process, not in shared memory, so N workers allow up to N times the configured rate.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .model import LimitConnZone, LimitReqZone

MAX_KEYS = 100_000
"""Keys remembered per zone (least recently used forgotten first), standing in for zone size."""


@dataclass(slots=True)
class _Bucket:
    excess: float
    last: float


class ReqZone:
    """One limit_req_zone in this worker."""

    def __init__(self, zone: LimitReqZone) -> None:
        self.zone = zone
        self.rate = zone.rate_per_second
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, key: str, burst: int, now: float) -> float | None:
        """Account one request. Returns None to refuse, else the excess (in requests) after it."""
        b = self.buckets.get(key)
        if b is None:
            excess = 0.0
        else:
            excess = b.excess - self.rate * abs(now - b.last) + 1.0
            if excess < 0:
                excess = 0.0
            self.buckets.move_to_end(key)
        if b is not None and excess > burst:
            return None
        if b is None:
            self.buckets[key] = _Bucket(excess, now)
            if len(self.buckets) > MAX_KEYS:
                self.buckets.popitem(last=False)
        else:
            b.excess, b.last = excess, now
        return excess


class ConnZone:
    """One limit_conn_zone in this worker."""

    def __init__(self, zone: LimitConnZone) -> None:
        self.zone = zone
        self.counts: dict[str, int] = {}

    def acquire(self, key: str, number: int) -> bool:
        """Count one more request for ``key``; False when that would exceed ``number``."""
        n = self.counts.get(key, 0)
        if n >= number:
            return False
        self.counts[key] = n + 1
        return True

    def release(self, key: str) -> None:
        """The request ended."""
        n = self.counts.get(key, 0) - 1
        if n <= 0:
            self.counts.pop(key, None)
        else:
            self.counts[key] = n
