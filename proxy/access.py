"""Access phase: ``allow``/``deny``, ``auth_basic``, and realip's client address.

Modules: ngx_http_access_module, ngx_http_auth_basic_module, ngx_http_realip_module.

Rules:

1. allow/deny rules are checked in order; the first rule whose address matches decides. No rule
   matching means allowed. ``deny`` answers 403.
2. ``auth_basic`` with a realm (not ``off``) requires ``Authorization: Basic``; a missing or wrong
   user/password answers 401 with ``WWW-Authenticate: Basic realm="<realm>"``. An unreadable user
   file is a 500 (nginx logs the open() error).
3. ``satisfy all`` (default): both modules must allow; ``satisfy any``: either is enough; when
   neither allows, the answer is the auth module's 401 if it asked for credentials, else 403.
4. Password formats of htpasswd files: ``{PLAIN}``, ``{SHA}``, ``{SSHA}``, ``$apr1$`` and ``$1$``
   (MD5-crypt). Other crypt(3) schemes (DES, ``$5$``, ``$6$``) are not verified: they never match
   (listed as a known difference in docs).
5. realip (``set_real_ip_from``, ``real_ip_header``, ``real_ip_recursive``): when the connection
   comes from a trusted address, the client address is the last one of the header
   (``X-Forwarded-For`` lines count as one list); recursively, the walk goes on leftwards while
   the address found is trusted too. An address that does not parse changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass

from .model import AccessAction, AccessRule


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One allow/deny rule, its network parsed once."""

    allow: bool
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    """None means ``all``; ``unix:`` rules never match TCP clients."""
    unix: bool = False


def compile_rules(rules: tuple[AccessRule, ...]) -> tuple[CompiledRule, ...]:
    """Parse allow/deny addresses once, at load."""
    out = []
    for r in rules:
        allow = r.action is AccessAction.ALLOW
        if r.address == "all":
            out.append(CompiledRule(allow, None))
        elif r.address.startswith("unix:"):
            out.append(CompiledRule(allow, None, unix=True))
        else:
            out.append(CompiledRule(allow, ipaddress.ip_network(r.address, strict=False)))
    return tuple(out)


def check_rules(rules: tuple[CompiledRule, ...], addr: str) -> bool | None:
    """True allowed, False denied, None when no rule matched (allowed)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        ip = None
    for r in rules:
        if r.unix:
            if ip is None:
                return r.allow
            continue
        if r.network is None:
            return r.allow
        if ip is not None and ip.version == r.network.version and ip in r.network:
            return r.allow
        if ip is not None and ip.version == 6 and r.network.version == 4:
            mapped = ip.ipv4_mapped  # type: ignore[union-attr]
            if mapped is not None and mapped in r.network:
                return r.allow
    return None


# ---------------------------------------------------------------------------------------------
# htpasswd

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _to64(v: int, n: int) -> str:
    out = []
    for _ in range(n):
        out.append(_ITOA64[v & 0x3F])
        v >>= 6
    return "".join(out)


def md5_crypt(password: bytes, salt: bytes, magic: bytes) -> bytes:
    """The MD5-crypt scheme (``$1$`` and Apache's ``$apr1$``), from its published description."""
    salt = salt[:8]
    alt = hashlib.md5(password + salt + password).digest()
    ctx = hashlib.md5(password + magic + salt)
    plen = len(password)
    while plen > 0:
        ctx.update(alt[: min(16, plen)])
        plen -= 16
    i = len(password)
    while i:
        ctx.update(b"\x00" if i & 1 else password[:1])
        i >>= 1
    final = ctx.digest()
    for i in range(1000):
        c = hashlib.md5()
        c.update(password if i & 1 else final)
        if i % 3:
            c.update(salt)
        if i % 7:
            c.update(password)
        c.update(final if i & 1 else password)
        final = c.digest()
    f = final
    res = (
        _to64((f[0] << 16) | (f[6] << 8) | f[12], 4)
        + _to64((f[1] << 16) | (f[7] << 8) | f[13], 4)
        + _to64((f[2] << 16) | (f[8] << 8) | f[14], 4)
        + _to64((f[3] << 16) | (f[9] << 8) | f[15], 4)
        + _to64((f[4] << 16) | (f[10] << 8) | f[5], 4)
        + _to64(f[11], 2)
    )
    return magic + salt + b"$" + res.encode()


def verify_password(password: bytes, stored: bytes) -> bool:
    """Check a password against one htpasswd hash."""
    if stored.startswith(b"{PLAIN}"):
        return hmac.compare_digest(stored[7:], password)
    if stored.startswith(b"{SHA}"):
        digest = base64.b64encode(hashlib.sha1(password).digest())
        return hmac.compare_digest(stored[5:], digest)
    if stored.startswith(b"{SSHA}"):
        try:
            raw = base64.b64decode(stored[6:])
        except ValueError:
            return False
        digest, salt = raw[:20], raw[20:]
        return hmac.compare_digest(hashlib.sha1(password + salt).digest(), digest)
    for magic in (b"$apr1$", b"$1$"):
        if stored.startswith(magic):
            salt = stored[len(magic):].split(b"$", 1)[0]
            return hmac.compare_digest(md5_crypt(password, salt, magic), stored)
    return False


class UserFileError(OSError):
    """The htpasswd file cannot be read (nginx answers 500)."""


_FILE_CACHE: dict[str, tuple[float, dict[bytes, bytes]]] = {}


def load_user_file(path: str) -> dict[bytes, bytes]:
    """Read ``user:hash`` lines (comments with ``#``), cached until the file changes.

    nginx reads the file on every request; Tern re-reads it when its mtime changes.
    """
    try:
        mtime = os.stat(path).st_mtime
        cached = _FILE_CACHE.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UserFileError(exc.errno, exc.strerror, path) from None
    users: dict[bytes, bytes] = {}
    for line in data.splitlines():
        if not line or line.startswith(b"#"):
            continue
        user, sep, pw = line.partition(b":")
        if sep and user not in users:
            users[user] = pw.split(b":", 1)[0].strip()
    _FILE_CACHE[path] = (mtime, users)
    return users


def check_basic(authorization: str | None, user_file: str) -> tuple[bool, str]:
    """Verify ``Authorization: Basic`` against a user file.

    Returns:
        (ok, remote_user).

    Raises:
        UserFileError: the file cannot be read.
    """
    users = load_user_file(user_file)
    if not authorization:
        return False, ""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False, ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return False, ""
    user, sep, password = decoded.partition(b":")
    if not sep:
        return False, ""
    stored = users.get(user)
    if stored is None:
        return False, user.decode("latin-1")
    return verify_password(password, stored), user.decode("latin-1")


# ---------------------------------------------------------------------------------------------
# realip (ngx_http_realip_module, ngx_http_get_forwarded_addr)


def compile_networks(addresses: tuple[str, ...]) -> tuple[CompiledRule, ...]:
    """``set_real_ip_from`` entries as rules that allow (``unix:`` never matches TCP)."""
    return compile_rules(tuple(_TrustRule(a) for a in addresses))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _TrustRule:
    address: str
    action: AccessAction = AccessAction.ALLOW


def _trusted(rules: tuple[CompiledRule, ...], addr: str) -> bool:
    return check_rules(rules, addr) is True


def parse_addr(text: str) -> tuple[str, int] | None:
    """An address with its optional port as ``ngx_parse_addr_port`` reads it (port 0 when
    absent), the address written as ``ngx_sock_ntop`` writes it; None when it is not one."""
    text = text.strip()
    port = "0"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text, port = host, rest[1:] or "0"
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if int(port) > 65535:
        return None
    return str(ip), int(port)


def forwarded_addr(conn_addr: str, values: list[str], trusted: tuple[CompiledRule, ...],
                   recursive: bool) -> tuple[str, int] | None:
    """The client address (and port, 0 when not given) behind trusted proxies, or None when
    nothing changes.

    ``values`` are the header values in order (several ``X-Forwarded-For`` lines count as one
    list); without ``recursive`` the last address is taken, with it the walk goes on from the
    right while the address found is trusted too.
    """
    addr: tuple[str, int] = (conn_addr, 0)
    found = False
    items: list[str] = []
    for v in values:
        items.extend(p for p in v.replace(" ", ",").split(",") if p)
    while items:
        if not _trusted(trusted, addr[0]):
            break
        new = parse_addr(items.pop())
        if new is None:
            break
        addr, found = new, True
        if not recursive:
            break
    return addr if found else None
