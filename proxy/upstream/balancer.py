"""Peer selection and peer health of an ``upstream`` group, decision for decision as nginx 1.22.

Sans-I/O: nothing here connects anywhere, and time is an argument (``now``, seconds of a monotonic
clock). Only :func:`resolve` touches the network stack, at config load, exactly where nginx calls
``getaddrinfo()`` (``ngx_parse_url`` for every ``server`` line).

The rules, with the nginx source they come from (``src/http/ngx_http_upstream_round_robin.c``
and ``src/http/modules/ngx_http_upstream_{least_conn,ip_hash,hash}_module.c``, 1.22.1):

1. **Peers.** Every address of every ``server`` line is one peer (a name resolving to three
   addresses gives three peers sharing the line's parameters). Primaries and ``backup`` servers are
   two separate lists; ``peers->single`` is true only for exactly one primary and no backup.
2. **Time has a one-second grain.** nginx compares ``ngx_time()`` (whole seconds) with
   ``fail_timeout`` (whole seconds); ``now`` is floored to an integer second before any use.
3. **Availability.** A peer is skipped when it is ``down``; or when ``max_fails`` is non-zero,
   ``fails >= max_fails`` and ``now - checked <= fail_timeout``; or when ``max_conns`` is non-zero
   and ``conns >= max_conns``; or when this request already tried it (the ``tried`` bitmap).
4. **Smooth weighted round robin** (``ngx_http_upstream_get_peer``): every available peer gets
   ``current_weight += effective_weight``, ``effective_weight`` creeps back up by one towards
   ``weight``, the first peer with the strictly largest ``current_weight`` wins and loses the sum
   of the effective weights. Weights 5, 1, 1 give ``a a b a c a a``.
5. **A chosen peer opens a check window**: when ``now - checked > fail_timeout``, ``checked = now``.
6. **Failure** (``free`` with ``NGX_PEER_FAILED``): ``fails += 1``, ``accessed = checked = now``,
   and when ``max_fails`` is non-zero ``effective_weight -= weight // max_fails`` (not below 0).
   **Success** (``free`` with state 0 or ``NGX_PEER_NEXT``): ``fails = 0`` only when
   ``accessed < checked`` -- a peer that failed is declared live again only by a success that
   started a new check window (rule 5), i.e. the trial request after ``fail_timeout``.
   Both end the connection: ``conns -= 1``. A single-peer group does no accounting at all and
   leaves no retry (``tries = 0``); that is why one ``server`` is never marked unavailable.
7. **Backups.** When the primaries yield nothing, the request switches to the backup list for
   good (its ``tried`` bitmap is cleared and reused for backups). When backups yield nothing too,
   the result is "no live upstreams" (502). Since nginx 1.11.5 the failure counters are *not*
   reset then; the peers come back only after their ``fail_timeout``.
8. **Tries.** A request may try ``non-down primaries + non-down backups`` peers, capped by
   ``proxy_next_upstream_tries``; every finished try takes one off.
9. **least_conn**: the available peer with the fewest ``conns`` relative to weight wins (compare
   ``conns_a * weight_b`` with ``conns_b * weight_a``; the first in config order on equality); on a
   tie, smooth round robin runs among the tied peers from the first of them onwards.
10. **ip_hash**: ``hash = 89``, then for each of the first three octets of an IPv4 client (all 16
    bytes of an IPv6 one; ``0, 0, 0`` for anything else) ``hash = (hash * 113 + byte) % 6271``;
    the peer is found by walking primaries' weights with ``hash % total_weight``. An unusable pick
    folds the address in again; after 20 misses (or for a single peer) it is round robin. The
    hash is kept per request, so a retry continues the sequence.
11. **hash KEY**: ``hash += (crc32([str(n)] KEY) >> 16) & 0x7fff`` where ``n`` counts previous
    rounds of this request (omitted in round 0), then the weight walk of rule 10; 20 misses,
    a single peer or an empty key mean round robin.
12. **hash KEY consistent**: every primary contributes ``160 * weight`` points
    ``crc32(HOST "\\0" PORT prev)`` (``prev``: the previous point as 4 little-endian bytes, 0 at
    first), where HOST and PORT come from the ``server`` text *as written*; points are sorted,
    duplicates dropped. A request starts at the first point ``>= crc32(KEY)`` (wrapping), takes
    the available peers of that point's server (smooth round robin among them) or moves one point
    on; 20 moves, a single peer or an empty key mean round robin.
"""

from __future__ import annotations

import ipaddress
import math
import socket  # config load only: resolve() is nginx's getaddrinfo() in ngx_parse_url
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from proxy.model import NOWHERE, Balancer, SourceSpan, Template, Upstream

__all__ = [
    "HASH_MAX_TRIES",
    "IMPLICIT_FAIL_TIMEOUT",
    "IMPLICIT_MAX_FAILS",
    "Attempt",
    "Peer",
    "PeerGroup",
    "PeerList",
    "UpstreamError",
    "resolve",
]

HASH_MAX_TRIES = 20
"""Misses allowed to ip_hash / hash / hash consistent before falling back to round robin."""

CHASH_POINTS_PER_WEIGHT = 160
"""Points a server puts on the consistent-hash ring per unit of weight."""

IMPLICIT_MAX_FAILS = 1
"""``max_fails`` of the peers of an implicit upstream (``proxy_pass http://name:port``)."""

IMPLICIT_FAIL_TIMEOUT = 10
"""``fail_timeout`` (seconds) of the peers of an implicit upstream."""

_IP_HASH_PSEUDO = b"\x00\x00\x00"
"""What ip_hash hashes for clients that are neither IPv4 nor IPv6 (unix sockets)."""


class UpstreamError(ValueError):
    """An upstream group nginx would refuse to load; carries where it was written."""

    def __init__(self, message: str, source: SourceSpan) -> None:
        super().__init__(f"{source}: {message}")
        self.message = message
        self.source = source


# ---------------------------------------------------------------------------------------------
# peers


@dataclass(slots=True, eq=False, kw_only=True)
class Peer:
    """One address of an upstream group: its parameters and its shared, mutable health state.

    Identity matters (``eq=False``): the group owns its peers and the state is per peer.
    """

    address: str
    """nginx's peer name, as ``$upstream_addr`` shows it: ``127.0.0.1:80``, ``[::1]:80``,
    ``unix:/path``."""
    host: str
    """The IP address to connect to (no brackets), or ``unix:/path``."""
    port: int
    """TCP port (0 for unix sockets)."""
    server: str = ""
    """The ``server`` argument as written (``localhost:9001``); the consistent-hash ring is built
    from it. Empty means ``address``."""
    weight: int = 1
    """``weight=``."""
    max_fails: int = 1
    """``max_fails=``; 0 disables failure accounting."""
    fail_timeout: int = 10
    """``fail_timeout=`` in whole seconds."""
    max_conns: int = 0
    """``max_conns=``; 0 is unlimited."""
    backup: bool = False
    """``backup``."""
    down: bool = False
    """``down``."""
    index: int = -1
    """Position in :attr:`PeerGroup.peers` (primaries first, then backups); set by the group."""

    # state, shared by all requests (nginx keeps it per worker; Tern has one worker per group)
    current_weight: int = 0
    """Smooth round-robin accumulator."""
    effective_weight: int = field(default=0)
    """Weight after failure penalties; starts at ``weight``."""
    conns: int = 0
    """Connections handed out and not yet finished."""
    fails: int = 0
    """Failures counted since the peer was last declared live."""
    accessed: int = 0
    """Second of the last failure."""
    checked: int = 0
    """Second the current check window opened (last failure, or a pick after fail_timeout)."""

    def __post_init__(self) -> None:
        if not self.server:
            self.server = self.address
        self.effective_weight = self.weight


@dataclass(slots=True, frozen=True)
class PeerList:
    """nginx's ``ngx_http_upstream_rr_peers_t``: the primaries, or the backups."""

    peers: tuple[Peer, ...]
    """The peers in config order."""
    single: bool
    """Exactly one primary and no backups: no health accounting, no retries."""
    total_weight: int
    """Sum of all weights, down peers included (the hash walks use it)."""
    tries: int
    """Peers that are not ``down``."""


def _peer_list(peers: Sequence[Peer], *, single: bool) -> PeerList:
    return PeerList(
        peers=tuple(peers),
        single=single,
        total_weight=sum(p.weight for p in peers),
        tries=sum(1 for p in peers if not p.down),
    )


# ---------------------------------------------------------------------------------------------
# addresses


def resolve(host: str) -> list[str]:
    """Resolve a ``server`` host to all its addresses, in the order nginx uses them.

    Args:
        host: An IPv4/IPv6 literal (brackets allowed) or a host name.

    Returns:
        The addresses as text, IPv6 without brackets. A literal is returned as is, without a
        lookup. Names go through ``getaddrinfo(host, NULL, {AF_UNSPEC, SOCK_STREAM,
        AI_ADDRCONFIG})``, exactly nginx's call, and keep its order (duplicates included).

    Raises:
        LookupError: The name does not resolve ("host not found" in nginx).
    """
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return [str(ipaddress.ip_address(literal))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(
            host, None, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG
        )
    except (OSError, UnicodeError) as exc:
        raise LookupError(f"host not found: {host}") from exc
    found = [
        str(info[4][0]).partition("%")[0]
        for info in infos
        if info[0] in (socket.AF_INET, socket.AF_INET6)
    ]
    if not found:
        raise LookupError(f"host not found: {host}")
    return found


def _split_address(address: str, source: SourceSpan) -> tuple[str, int]:
    """``host[:port]`` / ``[v6][:port]`` -> (host, port); the port defaults to 80 (nginx)."""
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UpstreamError(f"invalid address {address!r}", source)
        port_text = rest[1:]
    elif ":" in address:
        host, _, port_text = address.rpartition(":")
    else:
        host, port_text = address, ""
    if not port_text:
        return host, 80
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UpstreamError(f"invalid port in {address!r}", source)
    return host, int(port_text)


def _peer_name(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _chash_base(server: str) -> bytes:
    """``HOST "\\0" PORT`` of a ``server`` text, split as ``ngx_http_upstream_init_chash`` does.

    ``unix:`` (any case) keeps the path as HOST and no PORT; otherwise PORT is the run of digits
    after the last ``:`` when the text ends in one, else the whole text is HOST.
    """
    raw = server.encode("utf-8", errors="surrogateescape")
    if raw[:5].lower() == b"unix:":
        return raw[5:] + b"\x00"
    j = len(raw)
    while j > 0 and raw[j - 1 : j].isdigit():
        j -= 1
    if j > 0 and raw[j - 1 : j] == b":":
        return raw[: j - 1] + b"\x00" + raw[j:]
    return raw + b"\x00"


@lru_cache(maxsize=4096)
def _ip_hash_bytes(client_addr: str) -> bytes:
    """The bytes ip_hash folds: three octets of IPv4, sixteen of IPv6, else ``0 0 0``."""
    try:
        ip = ipaddress.ip_address(client_addr)
    except ValueError:
        return _IP_HASH_PSEUDO
    packed = ip.packed
    return packed[:3] if ip.version == 4 else packed


def _key_bytes(key: str | bytes | None) -> bytes:
    if key is None:
        return b""
    if isinstance(key, bytes):
        return key
    return key.encode("utf-8", errors="surrogateescape")


# ---------------------------------------------------------------------------------------------
# the group


class PeerGroup:
    """An ``upstream`` block (or an implicit one) at run time: peers, method and shared state."""

    __slots__ = (
        "name",
        "method",
        "hash_key",
        "peers",
        "primary",
        "backup",
        "_ring_hashes",
        "_ring_servers",
        "_server_peers",
    )

    name: str
    """Group name; ``$upstream_addr`` shows it when no peer is live."""
    method: Balancer
    """Balancing method."""
    hash_key: Template | None
    """The ``hash`` key template (the engine evaluates it and passes the value to :meth:`begin`)."""
    peers: tuple[Peer, ...]
    """All peers: primaries in config order, then backups."""
    primary: PeerList
    """The primary peers (nginx's ``peers``)."""
    backup: PeerList | None
    """The backup peers (nginx's ``peers->next``), if any."""
    _ring_hashes: list[int]
    _ring_servers: list[int]
    _server_peers: list[tuple[int, ...]]

    def __init__(
        self,
        name: str,
        method: Balancer,
        peers: Iterable[Peer],
        *,
        hash_key: Template | None = None,
        source: SourceSpan = NOWHERE,
    ) -> None:
        """Build a group from ready peers (``backup`` peers go to the backup list).

        Raises:
            UpstreamError: No primary peer ("no servers in upstream"), or ``random``.
        """
        if method is Balancer.RANDOM:
            raise UpstreamError(f'upstream "{name}": "random" balancing is not supported', source)
        all_peers = list(peers)
        primaries = [p for p in all_peers if not p.backup]
        backups = [p for p in all_peers if p.backup]
        if not primaries:
            raise UpstreamError(f'no servers in upstream "{name}"', source)
        self.name = name
        self.method = method
        self.hash_key = hash_key
        self.peers = tuple(primaries + backups)
        for i, peer in enumerate(self.peers):
            peer.index = i
        self.primary = _peer_list(primaries, single=len(primaries) == 1 and not backups)
        self.backup = _peer_list(backups, single=False) if backups else None
        self._ring_hashes = []
        self._ring_servers = []
        self._server_peers = []
        if method is Balancer.HASH_CONSISTENT:
            self._build_ring()

    @property
    def single(self) -> bool:
        """One primary and no backup: no health accounting and no retries (rule 6)."""
        return self.primary.single

    @classmethod
    def from_model(
        cls, upstream: Upstream, *, resolver: Callable[[str], list[str]] = resolve
    ) -> PeerGroup:
        """Build the run-time group of an ``upstream`` block, resolving host names now.

        Args:
            upstream: The model node.
            resolver: Turns a host into its addresses (default :func:`resolve`).

        Raises:
            UpstreamError: A host does not resolve, an address is malformed, there is no
                primary server, ``hash`` has no key, or the method is ``random``.
        """
        if upstream.balancer is Balancer.RANDOM:
            raise UpstreamError(
                f'upstream "{upstream.name}": "random" balancing is not supported',
                upstream.source,
            )
        if upstream.balancer in (Balancer.HASH, Balancer.HASH_CONSISTENT) and (
            upstream.hash_key is None
        ):
            raise UpstreamError(f'upstream "{upstream.name}": hash without a key', upstream.source)
        peers: list[Peer] = []
        for srv in upstream.servers:
            if srv.address.lower().startswith("unix:"):
                targets = [(srv.address, srv.address, 0)]
            else:
                host, port = _split_address(srv.address, srv.source)
                try:
                    ips = resolver(host)
                except LookupError as exc:
                    raise UpstreamError(
                        f'host not found in upstream "{srv.address}"', srv.source
                    ) from exc
                targets = [(_peer_name(ip, port), ip, port) for ip in ips]
            for name, host, port in targets:
                peers.append(
                    Peer(
                        address=name,
                        host=host,
                        port=port,
                        server=srv.address,
                        weight=srv.weight,
                        max_fails=srv.max_fails,
                        fail_timeout=int(srv.fail_timeout),
                        max_conns=srv.max_conns,
                        backup=srv.backup,
                        down=srv.down,
                    )
                )
        return cls(
            upstream.name,
            upstream.balancer,
            peers,
            hash_key=upstream.hash_key,
            source=upstream.source,
        )

    @classmethod
    def implicit(
        cls, host: str, port: int, *, resolver: Callable[[str], list[str]] = resolve
    ) -> PeerGroup:
        """The group nginx makes for ``proxy_pass http://host:port`` without an ``upstream``.

        One peer per address, round robin, ``max_fails=1 fail_timeout=10``; with a single address
        the group is "single" (no health accounting, no retries).

        Raises:
            UpstreamError: The host does not resolve.
        """
        try:
            ips = resolver(host[1:-1] if host.startswith("[") else host)
        except LookupError as exc:
            raise UpstreamError(f'host not found in upstream "{host}:{port}"', NOWHERE) from exc
        peers = [
            Peer(
                address=_peer_name(ip, port),
                host=ip,
                port=port,
                server=f"{host}:{port}",
                max_fails=IMPLICIT_MAX_FAILS,
                fail_timeout=IMPLICIT_FAIL_TIMEOUT,
            )
            for ip in ips
        ]
        return cls(f"{host}:{port}", Balancer.ROUND_ROBIN, peers)

    # -- per request ---------------------------------------------------------------------------

    def begin(
        self, *, client_addr: str = "", hash_key: str | bytes | None = None, max_tries: int = 0
    ) -> Attempt:
        """Start choosing peers for one request (nginx's ``peer.init``).

        Args:
            client_addr: The client's IP address (``$remote_addr``), for ``ip_hash``.
            hash_key: The evaluated ``hash`` key, for ``hash`` / ``hash ... consistent``.
            max_tries: ``proxy_next_upstream_tries`` (0: unlimited).
        """
        return Attempt(self, client_addr, _key_bytes(hash_key), max_tries)

    # -- shared state: nginx's peer.free ------------------------------------------------------

    def success(self, peer: Peer, now: float) -> None:
        """A connection to ``peer`` ended without failure (``free`` with state 0 or NEXT).

        Declares a failed peer live again when this try opened a new check window
        (``accessed < checked``); ends the connection (``conns -= 1``).
        """
        if not self.primary.single and peer.accessed < peer.checked:
            peer.fails = 0
        peer.conns -= 1

    def failure(self, peer: Peer, now: float) -> None:
        """A try on ``peer`` failed (``free`` with ``NGX_PEER_FAILED``); ends the connection.

        Counts the failure, opens a check window at ``now`` and lowers ``effective_weight``
        by ``weight // max_fails``. A single-peer group counts nothing.
        """
        if not self.primary.single:
            sec = math.floor(now)
            peer.fails += 1
            peer.accessed = sec
            peer.checked = sec
            if peer.max_fails:
                peer.effective_weight -= peer.weight // peer.max_fails
            if peer.effective_weight < 0:
                peer.effective_weight = 0
        peer.conns -= 1

    def unavailable(self, peer: Peer, now: float) -> bool:
        """True when round robin would skip ``peer`` at ``now`` (down, failed or at max_conns)."""
        return _skipped(peer, math.floor(now))

    # -- consistent hashing ring ---------------------------------------------------------------

    def _build_ring(self) -> None:
        servers: dict[str, int] = {}
        members: list[list[int]] = []
        points: list[tuple[int, int]] = []
        for i, peer in enumerate(self.primary.peers):
            sid = servers.setdefault(peer.server, len(servers))
            if sid == len(members):
                members.append([])
            members[sid].append(i)
            base = zlib.crc32(_chash_base(peer.server))
            prev = 0
            for _ in range(peer.weight * CHASH_POINTS_PER_WEIGHT):
                prev = zlib.crc32(prev.to_bytes(4, "little"), base)
                points.append((prev, sid))
        points.sort(key=lambda point: point[0])  # stable: equal hashes keep config order
        for h, sid in points:
            if not self._ring_hashes or self._ring_hashes[-1] != h:
                self._ring_hashes.append(h)
                self._ring_servers.append(sid)
        self._server_peers = [tuple(m) for m in members]

    def chash_point(self, key: str | bytes) -> int:
        """Index of the first ring point at or after ``crc32(key)`` (may equal the ring size)."""
        return bisect_left(self._ring_hashes, zlib.crc32(_key_bytes(key)))

    @property
    def ring(self) -> tuple[tuple[int, str], ...]:
        """The consistent-hash ring as sorted (hash, server text) pairs; empty for other methods."""
        names = {sid: self.primary.peers[m[0]].server for sid, m in enumerate(self._server_peers)}
        return tuple(zip(self._ring_hashes, (names[s] for s in self._ring_servers), strict=True))


def _skipped(peer: Peer, sec: int) -> bool:
    """Rule 3 without the tried bitmap."""
    return (
        peer.down
        or (
            peer.max_fails != 0
            and peer.fails >= peer.max_fails
            and sec - peer.checked <= peer.fail_timeout
        )
        or (peer.max_conns != 0 and peer.conns >= peer.max_conns)
    )


# ---------------------------------------------------------------------------------------------
# one request


class Attempt:
    """The peers tried for one request: nginx's per-request peer data (``rrp`` + hash state).

    Call :meth:`next`; finish the peer it returned with :meth:`success` or :meth:`failure` before
    asking again. Retry only while :attr:`tries_left` is non-zero (nginx's ``pc->tries``).
    """

    __slots__ = (
        "group",
        "tries_left",
        "tried",
        "current",
        "_list",
        "_in_backup",
        "_bits",
        "_key",
        "_addr",
        "_hash",
        "_hash_tries",
        "_rehash",
    )

    group: PeerGroup
    """The group."""
    tries_left: int
    """Tries still allowed (rule 8)."""
    tried: list[Peer]
    """Peers handed out for this request, in order (``$upstream_addr``)."""
    current: Peer | None
    """The peer handed out last and not finished yet."""

    def __init__(self, group: PeerGroup, client_addr: str, key: bytes, max_tries: int) -> None:
        self.group = group
        tries = group.primary.tries + (group.backup.tries if group.backup else 0)
        if max_tries and tries > max_tries:
            tries = max_tries
        self.tries_left = tries
        self.tried = []
        self.current = None
        self._list = group.primary
        self._in_backup = False
        self._bits = 0
        self._key = key
        self._addr = _IP_HASH_PSEUDO
        self._hash = 0
        self._hash_tries = 0
        self._rehash = 0
        method = group.method
        if method is Balancer.IP_HASH:
            self._addr = _ip_hash_bytes(client_addr)
            self._hash = 89
        elif method is Balancer.HASH_CONSISTENT:
            self._hash = group.chash_point(key)

    def next(self, now: float) -> Peer | None:
        """Choose the next peer (nginx's ``peer.get``).

        Args:
            now: Seconds of a monotonic clock.

        Returns:
            The peer to connect to (its ``conns`` already counts this connection), or None for
            "no live upstreams" (nginx answers 502).

        Raises:
            RuntimeError: The previous peer was not finished.
        """
        if self.current is not None:
            raise RuntimeError("Attempt.next() before the previous peer was finished")
        sec = math.floor(now)
        method = self.group.method
        if method is Balancer.LEAST_CONN:
            peer = self._least_conn(sec)
        elif method is Balancer.ROUND_ROBIN or self._in_backup:
            peer = self._round_robin(sec)
        elif method is Balancer.IP_HASH:
            peer = self._ip_hash(sec)
        elif method is Balancer.HASH:
            peer = self._hash_key(sec)
        elif method is Balancer.HASH_CONSISTENT:
            peer = self._consistent(sec)
        else:
            raise RuntimeError(f"Unexpected balancer {method}")
        if peer is not None:
            peer.conns += 1
            self.current = peer
            self.tried.append(peer)
        return peer

    def success(self, now: float) -> None:
        """The current peer served the request (or answered a status passed to the next one)."""
        peer = self._finish()
        self.group.success(peer, now)
        self._after_free()

    def failure(self, now: float) -> None:
        """The current peer failed (connect error, timeout, or a ``proxy_next_upstream`` status)."""
        peer = self._finish()
        self.group.failure(peer, now)
        self._after_free()

    def _finish(self) -> Peer:
        peer = self.current
        if peer is None:
            raise RuntimeError("Attempt finished without a current peer")
        self.current = None
        return peer

    def _after_free(self) -> None:
        if self._list.single:
            self.tries_left = 0
        elif self.tries_left:
            self.tries_left -= 1

    # -- the methods ---------------------------------------------------------------------------

    def _to_backup(self) -> bool:
        """Switch to the backup list when the primaries gave nothing (rule 7)."""
        if self._in_backup or self.group.backup is None:
            return False
        self._list = self.group.backup
        self._in_backup = True
        self._bits = 0
        return True

    def _smooth(self, peers: tuple[Peer, ...], sec: int) -> Peer | None:
        """``ngx_http_upstream_get_peer``: smooth weighted round robin over ``peers``."""
        best: Peer | None = None
        best_i = 0
        total = 0
        bits = self._bits
        for i, peer in enumerate(peers):
            if bits >> i & 1 or _skipped(peer, sec):
                continue
            peer.current_weight += peer.effective_weight
            total += peer.effective_weight
            if peer.effective_weight < peer.weight:
                peer.effective_weight += 1
            if best is None or peer.current_weight > best.current_weight:
                best = peer
                best_i = i
        if best is None:
            return None
        self._bits |= 1 << best_i
        best.current_weight -= total
        if sec - best.checked > best.fail_timeout:
            best.checked = sec
        return best

    def _round_robin(self, sec: int) -> Peer | None:
        """``ngx_http_upstream_get_round_robin_peer``."""
        while True:
            peers = self._list
            if peers.single:
                only = peers.peers[0]
                if not only.down and not (only.max_conns and only.conns >= only.max_conns):
                    return only
            else:
                peer = self._smooth(peers.peers, sec)
                if peer is not None:
                    return peer
            if not self._to_backup():
                return None

    def _least_conn(self, sec: int) -> Peer | None:
        """``ngx_http_upstream_get_least_conn_peer``."""
        while True:
            plist = self._list
            if plist.single:
                return self._round_robin(sec)
            peers = plist.peers
            bits = self._bits
            best: Peer | None = None
            best_i = 0
            many = False
            for i, peer in enumerate(peers):
                if bits >> i & 1 or _skipped(peer, sec):
                    continue
                if best is None or peer.conns * best.weight < best.conns * peer.weight:
                    best = peer
                    best_i = i
                    many = False
                elif peer.conns * best.weight == best.conns * peer.weight:
                    many = True
            if best is None:
                if self._to_backup():
                    continue
                return None
            total = 0
            if many:
                first = best
                for i in range(best_i, len(peers)):
                    peer = peers[i]
                    if bits >> i & 1 or peer.conns * first.weight != first.conns * peer.weight:
                        continue
                    if _skipped(peer, sec):
                        continue
                    peer.current_weight += peer.effective_weight
                    total += peer.effective_weight
                    if peer.effective_weight < peer.weight:
                        peer.effective_weight += 1
                    if peer.current_weight > best.current_weight:
                        best = peer
                        best_i = i
            best.current_weight -= total
            if sec - best.checked > best.fail_timeout:
                best.checked = sec
            self._bits |= 1 << best_i
            return best

    def _weight_walk(self, value: int) -> int:
        """Index of the primary that ``value % total_weight`` falls on, walking weights."""
        peers = self._list.peers
        w = value % self._list.total_weight
        p = 0
        while w >= peers[p].weight:
            w -= peers[p].weight
            p += 1
        return p

    def _take_hashed(self, p: int, sec: int) -> Peer:
        peer = self._list.peers[p]
        if sec - peer.checked > peer.fail_timeout:
            peer.checked = sec
        self._bits |= 1 << p
        return peer

    def _ip_hash(self, sec: int) -> Peer | None:
        """``ngx_http_upstream_get_ip_hash_peer``."""
        if self._hash_tries > HASH_MAX_TRIES or self._list.single:
            return self._round_robin(sec)
        h = self._hash
        addr = self._addr
        peers = self._list.peers
        while True:
            for byte in addr:
                h = (h * 113 + byte) % 6271
            p = self._weight_walk(h)
            if not (self._bits >> p & 1 or _skipped(peers[p], sec)):
                break
            self._hash_tries += 1
            if self._hash_tries > HASH_MAX_TRIES:
                return self._round_robin(sec)
        self._hash = h
        return self._take_hashed(p, sec)

    def _hash_key(self, sec: int) -> Peer | None:
        """``ngx_http_upstream_get_hash_peer``."""
        if self._hash_tries > HASH_MAX_TRIES or self._list.single or not self._key:
            return self._round_robin(sec)
        key = self._key
        peers = self._list.peers
        while True:
            # Cache::Memcached compatible: ((crc32([REHASH] KEY) >> 16) & 0x7fff) + PREV_HASH
            if self._rehash:
                crc = zlib.crc32(key, zlib.crc32(b"%d" % self._rehash))
            else:
                crc = zlib.crc32(key)
            self._hash = (self._hash + ((crc >> 16) & 0x7FFF)) & 0xFFFFFFFF
            self._rehash += 1
            p = self._weight_walk(self._hash)
            if not (self._bits >> p & 1 or _skipped(peers[p], sec)):
                return self._take_hashed(p, sec)
            self._hash_tries += 1
            if self._hash_tries > HASH_MAX_TRIES:
                return self._round_robin(sec)

    def _consistent(self, sec: int) -> Peer | None:
        """``ngx_http_upstream_get_chash_peer``."""
        if self._hash_tries > HASH_MAX_TRIES or self._list.single or not self._key:
            return self._round_robin(sec)
        group = self.group
        ring = group._ring_servers
        npoints = len(ring)
        peers = self._list.peers
        while True:
            members = group._server_peers[ring[self._hash % npoints]]
            best: Peer | None = None
            best_i = 0
            total = 0
            for i in members:
                peer = peers[i]
                if self._bits >> i & 1 or _skipped(peer, sec):
                    continue
                peer.current_weight += peer.effective_weight
                total += peer.effective_weight
                if peer.effective_weight < peer.weight:
                    peer.effective_weight += 1
                if best is None or peer.current_weight > best.current_weight:
                    best = peer
                    best_i = i
            if best is not None:
                best.current_weight -= total
                return self._take_hashed(best_i, sec)
            self._hash += 1
            self._hash_tries += 1
            if self._hash_tries > HASH_MAX_TRIES:
                return self._round_robin(sec)
