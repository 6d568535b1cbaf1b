"""JSON form of the model: ``to_json`` / ``from_json``, exact in both directions.

Rules:

1. A dataclass becomes an object with its fields; a field equal to its default is left out, so the
   JSON stays readable and reading it back restores the default.
2. Where a field may hold more than one dataclass type (``Lit | Var``, a rewrite statement), the
   object carries ``"type": "<ClassName>"``.
3. Tuples become arrays, enums their value, everything else is a JSON scalar. Floats survive the
   trip because Python writes them with ``repr``.
4. The top object carries ``schema_version``; a reader refuses any other version.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from functools import cache
from typing import Any, TypeGuard, TypeVar, Union

from . import nodes
from ._base import NOWHERE, ModelError, SourceSpan

T = TypeVar("T")

_NONE_TYPE = type(None)
_UNSET = object()
_NAMESPACE: dict[str, Any] = {**vars(nodes), "SourceSpan": SourceSpan}


class ModelDecodeError(ModelError):
    """The JSON does not describe a valid model."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=_NAMESPACE)


@cache
def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _is_node_type(tp: Any) -> TypeGuard[type]:
    """A dataclass class (not an instance): a model node type."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _needs_tag(tp: Any) -> bool:
    args = _union_args(tp)
    if args is None:
        return False
    return sum(1 for a in args if dataclasses.is_dataclass(a)) > 1


def _encode(value: Any, tp: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        item_tp = _item_type(tp)
        return [_encode(v, item_tp) for v in value]
    if _is_node_type(type(value)):
        cls: type = type(value)
        hints = _hints(cls)
        defaults = _defaults(cls)
        out: dict[str, Any] = {}
        if _needs_tag(tp):
            out["type"] = cls.__name__
        for f in dataclasses.fields(cls):
            v = getattr(value, f.name)
            if f.name in defaults and defaults[f.name] == v and f.name != "schema_version":
                continue
            out[f.name] = _encode(v, hints[f.name])
        return out
    raise TypeError(f"cannot encode {type(value).__name__}")


def _item_type(tp: Any) -> Any:
    args = _union_args(tp)
    if args is not None:
        for a in args:
            if typing.get_origin(a) is tuple:
                tp = a
                break
    targs = typing.get_args(tp)
    if not targs:
        return Any
    if len(targs) == 2 and targs[1] is Ellipsis:
        return targs[0]
    return targs  # fixed-length tuple: per-position types


def _decode(data: Any, tp: Any, where: str) -> Any:
    if tp is Any:
        return data
    args = _union_args(tp)
    if args is not None:
        if data is None:
            if _NONE_TYPE in args:
                return None
            raise ModelDecodeError(f"{where}: null not allowed", NOWHERE)
        choices = [a for a in args if a is not _NONE_TYPE]
        if len(choices) == 1:
            return _decode(data, choices[0], where)
        if isinstance(data, dict) and "type" in data:
            for a in choices:
                if _is_node_type(a) and a.__name__ == data["type"]:
                    return _decode(data, a, where)
            raise ModelDecodeError(f"{where}: unknown type {data['type']!r}", NOWHERE)
        for a in choices:  # scalar unions such as int | float
            if _scalar_ok(data, a):
                return _decode(data, a, where)
        raise ModelDecodeError(f"{where}: value {data!r} matches none of {choices}", NOWHERE)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(data, list):
            raise ModelDecodeError(f"{where}: expected an array", NOWHERE)
        targs = typing.get_args(tp)
        if len(targs) == 2 and targs[1] is Ellipsis:
            return tuple(_decode(v, targs[0], f"{where}[{i}]") for i, v in enumerate(data))
        if len(targs) != len(data):
            raise ModelDecodeError(f"{where}: expected {len(targs)} items", NOWHERE)
        return tuple(_decode(v, t, f"{where}[{i}]")
                     for i, (v, t) in enumerate(zip(data, targs, strict=True)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise ModelDecodeError(f"{where}: {data!r} is not a {tp.__name__}", NOWHERE) from None
    if _is_node_type(tp):
        if not isinstance(data, dict):
            raise ModelDecodeError(f"{where}: expected an object for {tp.__name__}", NOWHERE)
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        for key, raw in data.items():
            if key == "type":
                continue
            if key not in hints:
                raise ModelDecodeError(f"{where}: unknown field {key!r} in {tp.__name__}", NOWHERE)
            kwargs[key] = _decode(raw, hints[key], f"{where}.{key}")
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise ModelDecodeError(f"{where}: {exc}", NOWHERE) from None
        except ModelError as exc:  # a node nginx would reject (port 0, weight 0...)
            raise ModelDecodeError(f"{where}: {exc.message}", exc.source) from None
    if tp is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
    elif _scalar_ok(data, tp):
        return data
    raise ModelDecodeError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {data!r}", NOWHERE)


def _scalar_ok(data: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(data, bool)
    if tp is int:
        return isinstance(data, int) and not isinstance(data, bool)
    if tp is float:
        return isinstance(data, (int, float)) and not isinstance(data, bool)
    if tp is str:
        return isinstance(data, str)
    return False


def to_dict(config: nodes.Config) -> dict[str, Any]:
    """Encode a model as plain JSON-compatible data.

    Args:
        config: the model.

    Returns:
        A dict that ``from_dict`` turns back into an equal ``Config``.
    """
    out = _encode(config, nodes.Config)
    assert isinstance(out, dict)
    return out


def from_dict(data: Any) -> nodes.Config:
    """Decode a model from plain data.

    Raises:
        ModelDecodeError: unknown fields, wrong types, or another ``schema_version``.
    """
    if not isinstance(data, dict):
        raise ModelDecodeError("model JSON must be an object", NOWHERE)
    version = data.get("schema_version")
    if version != nodes.SCHEMA_VERSION:
        raise ModelDecodeError(
            f"model schema_version {version!r} is not supported (this Tern reads "
            f"{nodes.SCHEMA_VERSION})",
            NOWHERE,
        )
    out = _decode(data, nodes.Config, "$")
    assert isinstance(out, nodes.Config)
    return out


def to_json(config: nodes.Config, *, indent: int | None = 2) -> str:
    """Serialise a model to JSON text (keys in field order, stable for golden files)."""
    return json.dumps(to_dict(config), indent=indent, ensure_ascii=False) + "\n"


def from_json(text: str) -> nodes.Config:
    """Parse JSON text produced by ``to_json``.

    Raises:
        ModelDecodeError: malformed JSON or a model this version cannot read.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelDecodeError(f"not JSON: {exc}", NOWHERE) from None
    return from_dict(data)
