"""Types for Tern's nginx directive table (the data lives in ``migrate.directives``).

Each row says where a directive may appear (contexts), how many arguments it takes (arity),
whether it opens a block, and how well Tern runs it (support level, with the reason a report shows).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from proxy.model import Support

__all__ = ["ANY_ARGS", "Ctx", "DirectiveSpec", "Support"]


class Ctx(enum.Enum):
    """nginx configuration contexts (NGX_*_CONF flags), named as nginx names them."""

    MAIN = "main"
    EVENTS = "events"
    HTTP = "http"
    SERVER = "server"  # http server {}
    LOCATION = "location"  # http location {}
    LIMIT_EXCEPT = "limit_except"
    IF_SERVER = "if_server"  # if {} inside server (NGX_HTTP_SIF_CONF)
    IF_LOCATION = "if_location"  # if {} inside location (NGX_HTTP_LIF_CONF)
    UPSTREAM = "upstream"  # http upstream {}
    MAP = "map"  # inside map {} / geo {} / split_clients {} / types {} / charset_map {}: raw rows
    STREAM = "stream"
    STREAM_SERVER = "stream_server"
    STREAM_UPSTREAM = "stream_upstream"
    MAIL = "mail"
    MAIL_SERVER = "mail_server"


# Support levels are part of the model (a RawDirective carries one); re-exported here.


ANY_ARGS = -1
"""Sentinel for ``max_args``: no upper bound (NGX_CONF_1MORE, NGX_CONF_ANY...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectiveSpec:
    """One row of the directive table."""

    name: str
    """Directive name as written in nginx.conf."""
    module: str
    """nginx module that defines it, e.g. ``ngx_http_proxy_module``."""
    contexts: frozenset[Ctx]
    """Contexts where nginx accepts it."""
    min_args: int
    """Fewest arguments accepted."""
    max_args: int
    """Most arguments accepted, or ``ANY_ARGS``."""
    block: bool = False
    """True when the directive opens a ``{ }`` block (NGX_CONF_BLOCK)."""
    flag: bool = False
    """True for on/off directives (NGX_CONF_FLAG): exactly one argument, ``on`` or ``off``."""
    support: Support
    """Tern's support level."""
    reason: str
    """Why that level; shown in diagnostics and reports. Empty only for SUPPORTED."""
