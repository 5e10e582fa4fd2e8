"""The one canonical msgpack codec for every message kind.

A message is a frozen, slotted dataclass registered with :func:`message` under a short type
tag. On the wire it is the msgpack array ``[tag, {field: value, ...}]``; nested messages are
maps of their fields (their type is known from the schema), tuples are arrays. Keys are
sorted, and the only value types are int, bytes, str, bool, arrays and maps: no floats, no
nil, no extension types. :func:`decode` accepts only bytes that :func:`encode` would produce
for the message it decodes to (it re-encodes and compares), so every message has exactly one
encoding and hashes and signatures are stable across nodes.

Field limits live in each field's metadata (``max_len``, ``exact_len``, ``min``, ``max``,
``item_max_len``) and are checked in the constructor, so a message that exists is valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from protocol import limits
from protocol.errors import DecodeError, FieldError, LocalError, OversizeError, UnknownTypeError

T = TypeVar("T")

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1

_KINDS: dict[str, type] = {}
_SPECS: dict[type, tuple[_FieldSpec, ...]] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    kind: str  # "int" | "bytes" | "str" | "bool" | "tuple" | "message"
    max_len: int | None = None
    exact_len: int | None = None
    min_value: int = INT64_MIN
    max_value: int = UINT64_MAX
    item: _FieldSpec | None = None
    message_type: type | None = None


def field(
    *,
    max_len: int | None = None,
    exact_len: int | None = None,
    min: int | None = None,  # noqa: A002 - reads naturally at the call site
    max: int | None = None,  # noqa: A002
    item_max_len: int | None = None,
) -> Any:
    """A dataclass field carrying the limits the codec checks in the constructor."""
    meta = {
        "max_len": max_len,
        "exact_len": exact_len,
        "min": min,
        "max": max,
        "item_max_len": item_max_len,
    }
    return dataclasses.field(metadata={k: v for k, v in meta.items() if v is not None})


def message(tag: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a frozen, slotted message dataclass and register it under *tag*."""

    def register(cls: type[T]) -> type[T]:
        if tag in _KINDS:
            raise LocalError(f"message tag {tag!r} registered twice")
        extra_check = getattr(cls, "check", None)

        def __post_init__(self: Any) -> None:  # noqa: N807 - dataclass hook
            _validate(self)
            if extra_check is not None:
                extra_check(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        cls.TAG = tag  # type: ignore[attr-defined]
        made = dataclasses.dataclass(frozen=True, slots=True)(cls)
        _KINDS[tag] = made
        return made

    return register


def kinds() -> dict[str, type]:
    """Every registered message kind by tag (a copy)."""
    return dict(_KINDS)


# --- schema ---------------------------------------------------------------------------------


def _specs(cls: type) -> tuple[_FieldSpec, ...]:
    cached = _SPECS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    specs = []
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name):
        specs.append(_spec_for(f.name, hints[f.name], dict(f.metadata)))
    result = tuple(specs)
    _SPECS[cls] = result
    return result


def _spec_for(name: str, annotation: Any, meta: dict[str, Any]) -> _FieldSpec:
    if annotation is int:
        return _FieldSpec(
            name, "int", min_value=meta.get("min", INT64_MIN), max_value=meta.get("max", UINT64_MAX)
        )
    if annotation in (bytes, str):
        return _FieldSpec(
            name,
            annotation.__name__,
            max_len=meta.get("max_len"),
            exact_len=meta.get("exact_len"),
        )
    if annotation is bool:
        return _FieldSpec(name, "bool")
    origin = typing.get_origin(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise LocalError(f"field {name}: only tuple[X, ...] is supported")
        item_meta = {}
        if "item_max_len" in meta:
            item_meta["max_len"] = meta["item_max_len"]
        item = _spec_for(name, args[0], item_meta)
        if meta.get("max_len") is None:
            raise LocalError(f"field {name}: a tuple field needs max_len")
        return _FieldSpec(name, "tuple", max_len=meta["max_len"], item=item)
    if isinstance(annotation, type) and hasattr(annotation, "TAG"):
        return _FieldSpec(name, "message", message_type=annotation)
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        raise LocalError(f"field {name}: optional or union fields are not allowed (no nil)")
    raise LocalError(f"field {name}: unsupported annotation {annotation!r}")


def _validate(msg: Any) -> None:
    kind = type(msg).TAG
    for spec in _specs(type(msg)):
        _check_value(kind, spec, spec.name, getattr(msg, spec.name))


def _type_name(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


def _check_value(kind: str, spec: _FieldSpec, where: str, value: Any) -> None:
    if spec.kind == "int":
        if type(value) is not int:
            raise FieldError(kind, where, f"expected int, got {_type_name(value)}")
        if not spec.min_value <= value <= spec.max_value:
            raise FieldError(kind, where, f"{value} outside [{spec.min_value}, {spec.max_value}]")
    elif spec.kind in ("bytes", "str"):
        if type(value) is not (bytes if spec.kind == "bytes" else str):
            raise FieldError(kind, where, f"expected {spec.kind}, got {_type_name(value)}")
        _check_len(kind, where, len(value), spec)
    elif spec.kind == "bool":
        if type(value) is not bool:
            raise FieldError(kind, where, f"expected bool, got {_type_name(value)}")
    elif spec.kind == "tuple":
        if type(value) is not tuple:
            raise FieldError(kind, where, f"expected a sequence, got {_type_name(value)}")
        _check_len(kind, where, len(value), spec)
        item = spec.item
        if item is None:
            raise LocalError(f"{kind}.{where}: tuple spec without item")
        for i, v in enumerate(value):
            _check_value(kind, item, f"{where}[{i}]", v)
    elif spec.kind == "message":
        if type(value) is not spec.message_type:
            expected = spec.message_type.TAG  # type: ignore[union-attr]
            raise FieldError(kind, where, f"expected {expected}, got {_type_name(value)}")


def _check_len(kind: str, where: str, length: int, spec: _FieldSpec) -> None:
    if spec.exact_len is not None and length != spec.exact_len:
        raise FieldError(kind, where, f"length {length}, expected exactly {spec.exact_len}")
    if spec.max_len is not None and length > spec.max_len:
        raise FieldError(kind, where, f"length {length} over the limit {spec.max_len}")


# --- encoding -------------------------------------------------------------------------------


def _to_plain(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in _specs(type(msg)):  # sorted by name: canonical key order
        out[spec.name] = _plain_value(spec, getattr(msg, spec.name))
    return out


def _plain_value(spec: _FieldSpec, value: Any) -> Any:
    if spec.kind == "message":
        return _to_plain(value)
    if spec.kind == "tuple":
        item = spec.item
        if item is not None and item.kind in ("message", "tuple"):
            return [_plain_value(item, v) for v in value]
        return list(value)
    return value


def encode(msg: Any) -> bytes:
    """The canonical bytes of a registered message."""
    tag = getattr(type(msg), "TAG", None)
    if tag is None or _KINDS.get(tag) is not type(msg):
        raise LocalError(f"not a registered message: {type(msg).__name__}")
    return msgpack.packb([tag, _to_plain(msg)], use_bin_type=True)


# --- decoding -------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _pairs_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey
    return out


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed")


def decode(raw: bytes, expect: type[T] | None = None, *, max_bytes: int | None = None) -> T:
    """Decode canonical bytes into a message, checking its kind against *expect* if given.

    Raises OversizeError past *max_bytes* (default MESSAGE_BYTES_MAX), DecodeError for bytes
    that are not msgpack or not canonical, UnknownTypeError for an unknown tag, and
    FieldError for a missing, nil, extra or ill-typed field.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise LocalError(f"decode takes bytes, not {type(raw).__name__}")
    limit = limits.MESSAGE_BYTES_MAX if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise OversizeError(f"message of {len(raw)} bytes over the limit {limit}")
    raw = bytes(raw)
    try:
        obj = msgpack.unpackb(
            raw,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_pairs_without_duplicates,
            ext_hook=_reject_ext,
        )
    except _DuplicateKey:
        raise DecodeError("duplicate map key") from None
    except DecodeError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, msgpack.UnpackException) as e:
        raise DecodeError(f"not valid msgpack ({type(e).__name__})") from None
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not str:
        raise DecodeError("expected [tag, fields]")
    tag, fields = obj
    cls = _KINDS.get(tag)
    if cls is None:
        raise UnknownTypeError(f"unknown message tag {tag[:limits.ID_CHARS_MAX]!r}")
    if expect is not None and cls is not expect:
        raise DecodeError(f"expected {expect.TAG}, got {tag}")  # type: ignore[attr-defined]
    msg = _from_plain(cls, fields, tag)
    if encode(msg) != raw:
        raise DecodeError(f"{tag}: not the canonical encoding")
    return msg  # type: ignore[no-any-return]


def _from_plain(cls: type, fields: Any, where: str) -> Any:
    kind = cls.TAG  # type: ignore[attr-defined]
    if type(fields) is not dict:
        raise FieldError(kind, where, f"expected a map, got {_type_name(fields)}")
    specs = _specs(cls)
    names = {s.name for s in specs}
    extra = [k for k in fields if k not in names]
    if extra:
        raise FieldError(kind, str(extra[0])[: limits.ID_CHARS_MAX], "unknown field")
    kwargs = {}
    for spec in specs:
        if spec.name not in fields:
            raise FieldError(kind, spec.name, "missing")
        kwargs[spec.name] = _from_plain_value(kind, spec, fields[spec.name])
    return cls(**kwargs)


def _from_plain_value(kind: str, spec: _FieldSpec, value: Any) -> Any:
    if spec.kind == "message":
        return _from_plain(spec.message_type, value, spec.name)  # type: ignore[arg-type]
    if spec.kind == "tuple":
        if type(value) is not list:
            raise FieldError(kind, spec.name, f"expected an array, got {_type_name(value)}")
        if spec.max_len is not None and len(value) > spec.max_len:
            raise FieldError(kind, spec.name, f"length {len(value)} over the limit {spec.max_len}")
        item = spec.item
        if item is not None and item.kind in ("message", "tuple"):
            return tuple(_from_plain_value(kind, item, v) for v in value)
        return tuple(value)
    return value
