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
   IPv4-mapped is looked up as ``255.255.255.255``); nginx accepts a later range only when it
   does not partially overlap an earlier one, so for any valid configuration the last range
   written that contains the address wins; ``delete start-end`` removes that exact range.
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
    """A geo block nginx would refuse (message names file:line)."""


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
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    """ranges mode: (start, end, value) in config order."""
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
            for start, end, value in reversed(self.spans):
                if start <= v4 <= end:
                    return value
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


def _where(d: RawDirective) -> str:
    return f"{d.source.file}:{d.source.line}"


def _network(text: str, d: RawDirective) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise GeoError(f'{_where(d)}: invalid network "{text}"') from None


def _v4(text: str, d: RawDirective) -> int:
    """A range end as ngx_inet_addr reads it (``255.255.255.255`` is its error value)."""
    try:
        value = int(ipaddress.IPv4Address(text))
    except ValueError:
        value = _NONE
    if value == _NONE:
        raise GeoError(f'{_where(d)}: invalid range "{d.name}"')
    return value


def compile_geo(d: RawDirective) -> Geo:
    """A ``geo`` block as the front end kept it (rows are its children)."""
    if len(d.args) == 2:
        address_var: str | None = d.args[0]
        var = d.args[1]
    elif len(d.args) == 1:
        address_var, var = None, d.args[0]
    else:
        raise GeoError(f'{_where(d)}: invalid number of arguments in "geo" directive')
    if not var.startswith("$") or (address_var is not None and not address_var.startswith("$")):
        raise GeoError(f'{_where(d)}: invalid variable name "{var}"')
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
            raise GeoError(f'{_where(row)}: invalid number of the geo parameters')
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
                    raise GeoError(f'{_where(row)}: invalid range "{value}"')
                key = (_v4(start_s, row), _v4(end_s, row))
                geo.spans = [s for s in geo.spans if (s[0], s[1]) != key]
                continue
            start_s, sep, end_s = name.partition("-")
            if not sep:
                raise GeoError(f'{_where(row)}: invalid range "{name}"')
            start, end = _v4(start_s, row), _v4(end_s, row)
            if start > end:
                raise GeoError(f'{_where(row)}: invalid range "{name}"')
            geo.spans.append((start, end, value))
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
