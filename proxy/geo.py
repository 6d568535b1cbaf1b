"""``geo`` variables: nginx's ngx_http_geo_module (1.22.1).

``geo [$address] $variable { ... }`` at http level is kept by the front end as a raw block (its
rows are data, like ``map``'s); this module compiles it once per configuration and looks the
variable up per request:

1. The address is the client's (after realip), or the value of ``$address`` parsed as an IPv4
   or IPv6 address (no port); one that does not parse is looked up as ``255.255.255.255``.
2. ``proxy`` networks: when the address is one of them, ``X-Forwarded-For`` gives the address
   (the last one; ``proxy_recursive``: the walk goes on leftwards while the address found is a
   proxy too), as ngx_http_get_forwarded_addr does for realip.
3. CIDR mode (default): the longest prefix that contains the address wins; IPv4-mapped IPv6
   addresses are looked up as IPv4. ``default`` is ``0.0.0.0/0`` and ``::/0``; without one the
   value is empty. A network written again replaces the value; ``delete`` removes a network.
   Host bits after the mask are ignored (nginx warns and masks them).
4. ``ranges`` mode: ``start-end value`` rows, IPv4 only (an IPv6 address that is not
   IPv4-mapped is looked up as ``255.255.255.255``, which no range can end with). Kept as
   nginx keeps them: cut at /16 boundaries, each piece added to its /16's sorted fragments
   (the same piece replaces the value, a piece inside a fragment splits it, any other overlap
   is refused as nginx refuses it); ``delete start-end`` removes the pieces that are exactly
   fragments.
5. Values are plain strings (geo values are not templates).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .access import compile_networks, forwarded_addr

if TYPE_CHECKING:
    from .access import CompiledRule
    from .model import Config, RawDirective

_NONE = 0xFFFFFFFF
"""INADDR_NONE: what an address that does not parse is looked up as."""


class GeoError(ValueError):
    """A geo block nginx would refuse; ``file`` and ``line`` are the row's (or block's)."""

    def __init__(self, message: str, file: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


@dataclass(slots=True)
class Geo:
    """One compiled ``geo`` block."""

    variable: str
    address_var: str | None = None
    ranges: bool = False
    default: str | None = None
    default6: str | None = None
    v4: dict[int, dict[int, str]] = field(default_factory=dict)
    """prefix length -> network (as int) -> value."""
    v6: dict[int, dict[int, str]] = field(default_factory=dict)
    segments: dict[int, list[list[int | str]]] = field(default_factory=dict)
    """ranges mode, as nginx keeps them: high 16 bits -> sorted, disjoint [low start, low end,
    value] fragments."""
    proxies: tuple[CompiledRule, ...] = ()
    proxy_recursive: bool = False

    def value_for(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str:
        """The value for ``ip`` (None: an address that did not parse)."""
        v4: int | None
        if ip is None:
            v4 = _NONE
        elif isinstance(ip, ipaddress.IPv6Address):
            v4 = int(ip.ipv4_mapped) if ip.ipv4_mapped is not None else None
        else:
            v4 = int(ip)
        if self.ranges:
            if v4 is None:
                v4 = _NONE
            low = v4 & 0xFFFF
            for lo, hi, value in self.segments.get(v4 >> 16, ()):
                if lo <= low <= hi:  # type: ignore[operator]
                    return str(value)
            return self.default or ""
        if v4 is not None:
            return _longest(self.v4, v4, 32, self.default)
        assert ip is not None
        return _longest(self.v6, int(ip), 128, self.default6)


def _longest(table: dict[int, dict[int, str]], addr: int, bits: int, default: str | None
             ) -> str:
    for plen in sorted(table, reverse=True):
        net = addr & (((1 << plen) - 1) << (bits - plen)) if plen else 0
        got = table[plen].get(net)
        if got is not None:
            return got
    return default or ""


def _fail(d: RawDirective, message: str) -> GeoError:
    return GeoError(message, d.source.file, d.source.line)


def _network(text: str, d: RawDirective) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _fail(d, f'invalid network "{text}"') from None


def _v4(text: str, d: RawDirective) -> int:
    """A range end as ngx_inet_addr reads it (``255.255.255.255`` is its error value)."""
    try:
        value = int(ipaddress.IPv4Address(text))
    except ValueError:
        value = _NONE
    if value == _NONE:
        raise _fail(d, f'invalid range "{d.name}"')
    return value


def _fragments(start: int, end: int) -> list[tuple[int, int, int]]:
    """A range cut at /16 boundaries: (high 16 bits, low start, low end)."""
    out = []
    n = start
    while n <= end:
        lo = n & 0xFFFF if n == start else 0
        hi = end & 0xFFFF if (n | 0xFFFF) > end else 0xFFFF
        out.append((n >> 16, lo, hi))
        n = (n + 0x10000) & ~0xFFFF
    return out


def _add_fragment(frags: list[list[int | str]], h: int, s: int, e: int, value: str, name: str,
                  row: RawDirective) -> None:
    """ngx_http_geo_add_range for one /16: equal replaces, inside splits, disjoint inserts,
    any other overlap is refused."""
    i = len(frags)
    while i:
        i -= 1
        lo, hi = int(frags[i][0]), int(frags[i][1])
        if e < lo:
            continue
        if s > hi:
            frags.insert(i + 1, [s, e, value])
            return
        if s == lo and e == hi:
            frags[i][2] = value
            return
        if s > lo and e < hi:
            old = frags[i][2]
            frags[i:i + 1] = [[lo, s - 1, old], [s, e, value], [e + 1, hi, old]]
            return
        if s == lo and e < hi:
            frags[i][0] = e + 1
            frags.insert(i, [s, e, value])
            return
        if s > lo and e == hi:
            frags[i][1] = s - 1
            frags.insert(i + 1, [s, e, value])
            return
        a = ipaddress.IPv4Address((h << 16) | lo)
        b = ipaddress.IPv4Address((h << 16) | hi)
        raise _fail(row, f'range "{name}" overlaps "{a}-{b}"')
    frags.insert(0, [s, e, value])


def compile_geo(d: RawDirective) -> Geo:
    """A ``geo`` block as the front end kept it (rows are its children)."""
    if len(d.args) == 2:
        address_var: str | None = d.args[0]
        var = d.args[1]
    elif len(d.args) == 1:
        address_var, var = None, d.args[0]
    else:
        raise _fail(d, 'invalid number of arguments in "geo" directive')
    if not var.startswith("$") or (address_var is not None and not address_var.startswith("$")):
        raise _fail(d, f'invalid variable name "{var}"')
    geo = Geo(variable=var[1:], address_var=address_var[1:] if address_var else None)
    proxies: list[str] = []
    geo.ranges = any(r.name == "ranges" and not r.args for r in d.children)
    for row in d.children:
        name, args = row.name, row.args
        if name == "ranges" and not args:
            continue
        if name == "proxy_recursive" and not args:
            geo.proxy_recursive = True
            continue
        if len(args) != 1:
            raise _fail(row, 'invalid number of the geo parameters')
        value = args[0]
        if name == "proxy":
            _network(value, row)
            proxies.append(value)
            continue
        if name == "default":
            geo.default = value
            geo.default6 = value
            continue
        if geo.ranges:
            if name == "delete":
                start_s, sep, end_s = value.partition("-")
                if not sep:
                    raise _fail(row, f'invalid range "{value}"')
                for h, lo, hi in _fragments(_v4(start_s, row), _v4(end_s, row)):
                    frags = geo.segments.get(h, [])
                    frags[:] = [f for f in frags if (f[0], f[1]) != (lo, hi)]
                continue
            start_s, sep, end_s = name.partition("-")
            if not sep:
                raise _fail(row, f'invalid range "{name}"')
            start, end = _v4(start_s, row), _v4(end_s, row)
            if start > end:
                raise _fail(row, f'invalid range "{name}"')
            for h, lo, hi in _fragments(start, end):
                _add_fragment(geo.segments.setdefault(h, []), h, lo, hi, value, name, row)
            continue
        if name == "delete":
            net = _network(value, row)
            table = geo.v4 if net.version == 4 else geo.v6
            table.get(net.prefixlen, {}).pop(int(net.network_address), None)
            continue
        net = _network(name, row)
        table = geo.v4 if net.version == 4 else geo.v6
        if net.prefixlen == 0:
            if net.version == 4:
                geo.default = value
            else:
                geo.default6 = value
            continue
        table.setdefault(net.prefixlen, {})[int(net.network_address)] = value
    geo.proxies = compile_networks(tuple(proxies))
    return geo


def compile_all(config: Config) -> dict[str, Geo]:
    """Every http-level ``geo`` block by variable name (a later block of the same name wins,
    as nginx's last definition of a variable's handler does)."""
    out: dict[str, Geo] = {}
    if config.http is None:
        return out
    for d in config.http.scope.other:
        if d.name == "geo":
            geo = compile_geo(d)
            out[geo.variable] = geo
    return out


def inet_addr(text: str) -> int | None:
    """ngx_inet_addr: dotted decimal with exactly three dots, octets up to 255 (leading zeros
    and empty octets allowed); None for anything else and for 255.255.255.255."""
    addr = octet = dots = 0
    for c in text:
        if "0" <= c <= "9":
            octet = octet * 10 + ord(c) - 48
            if octet > 255:
                return None
        elif c == ".":
            addr = (addr << 8) + octet
            octet = 0
            dots += 1
        else:
            return None
    if dots != 3:
        return None
    addr = ((addr << 8) + octet) & 0xFFFFFFFF
    return None if addr == _NONE else addr


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """ngx_parse_addr: IPv4 as ngx_inet_addr reads it, else IPv6."""
    v4 = inet_addr(text)
    if v4 is not None:
        return ipaddress.IPv4Address(v4)
    if ":" not in text or "%" in text:
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def lookup(geo: Geo, client_addr: str, address_value: str | None,
           forwarded: list[str]) -> str:
    """The variable's value: ``client_addr`` is the client address (after realip),
    ``address_value`` the ``$address`` variable's value when the block names one (None: not
    found), ``forwarded`` the ``X-Forwarded-For`` values in order."""
    text = client_addr if geo.address_var is None else address_value
    ip = _parse(text) if text is not None else None
    if ip is not None and forwarded and geo.proxies:
        new = forwarded_addr(str(ip), forwarded, geo.proxies, geo.proxy_recursive)
        if new is not None:
            ip = _parse(new[0])
    return geo.value_for(ip)
