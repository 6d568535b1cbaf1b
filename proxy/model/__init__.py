"""Tern's typed model of an nginx configuration: the contract between migrate, proxy and shadow.

Standard library only (a test enforces it). Build nodes with keyword arguments; read and write
JSON with ``to_json`` / ``from_json``.
"""

from __future__ import annotations

from ._base import NOWHERE, ModelError, SourceSpan
from .codec import ModelDecodeError, from_dict, from_json, to_dict, to_json
from .nodes import (
    SCHEMA_VERSION,
    AccessAction,
    AccessConf,
    AccessLog,
    AccessRule,
    Balancer,
    Break,
    Condition,
    CondOp,
    Config,
    DocumentRoot,
    ErrorPage,
    Expires,
    HeaderValue,
    Http,
    If,
    LimitConnRef,
    LimitConnZone,
    LimitReqRef,
    LimitReqZone,
    LimitsConf,
    Listen,
    Lit,
    Location,
    LocationModifier,
    LogFormat,
    LoggingConf,
    MainConf,
    Map,
    MapEntry,
    MapKeyKind,
    ProxyConf,
    ProxyPass,
    ProxyRedirect,
    RawDirective,
    RealIpConf,
    Return,
    Rewrite,
    RewriteFlag,
    RewriteStmt,
    Scope,
    Server,
    ServerName,
    ServerNameKind,
    SetVar,
    StaticConf,
    Support,
    Template,
    TlsCertificate,
    TlsConf,
    TryFiles,
    Upstream,
    UpstreamServer,
    Var,
)

__all__ = [
    "NOWHERE", "SCHEMA_VERSION", "AccessAction", "AccessConf", "AccessLog", "AccessRule",
    "Balancer", "Break", "CondOp", "Condition", "Config", "DocumentRoot", "ErrorPage", "Expires",
    "HeaderValue", "Http", "If", "LimitConnRef", "LimitConnZone", "LimitReqRef", "LimitReqZone",
    "LimitsConf", "Listen", "Lit", "Location", "LocationModifier", "LogFormat", "LoggingConf",
    "MainConf", "Map", "MapEntry", "MapKeyKind", "ModelDecodeError", "ModelError", "ProxyConf",
    "ProxyPass", "ProxyRedirect", "RawDirective", "RealIpConf", "Return", "Rewrite",
    "RewriteFlag", "RewriteStmt", "Scope", "Server", "ServerName", "ServerNameKind", "SetVar",
    "SourceSpan", "StaticConf", "Support", "Template", "TlsCertificate", "TlsConf", "TryFiles",
    "Upstream", "UpstreamServer", "Var", "from_dict", "from_json", "to_dict", "to_json",
]
