"""The one canonical msgpack codec for every message kind.

A message is a frozen :class:`msgspec.Struct` made by :func:`message` from a class's
annotated fields and registered under a short type tag. On the wire it is the msgpack array
``[tag, {field: value, ...}]``; nested messages are maps of their fields (their type is
known from the schema), tuples are arrays. Keys are sorted, and the only value types are
int, bytes, str, bool, arrays and maps: no floats, no nil, no extension types.
:func:`decode` accepts only bytes that :func:`encode` would produce for the message it
decodes to (it re-encodes and compares), so every message has exactly one encoding and
hashes and signatures are stable across nodes.

Why that comparison is enough: the encoder (msgspec's, as msgpack's) always picks the
shortest form (fixint before uint8, fixstr before str8, fixarray before array16, ...), strs
are packed as str and bytes as bin, and :func:`encode` is a function of the message's field
values. So if two byte strings decode to equal messages and both survive the comparison,
they are the same bytes. Whatever the decoder tolerates on the way in (non-minimal ints,
str8 for short strings, unsorted or duplicate keys, trailing bytes) therefore never gets
past :func:`decode`.

Field limits live in each field's metadata (``max_len``, ``exact_len``, ``min``, ``max``,
``item_max_len``) and are checked in the constructor, so a message that exists is valid and
encodable: ints lie in [-2**63, 2**64 - 1] (what msgpack can carry), strs are valid Unicode
without lone surrogates, bytes are exactly ``bytes`` (not bytearray or memoryview).

Encoding and decoding are on every hot path (hashing, signing, every peer frame), so both
go through msgspec, in C: :func:`encode` packs the struct with its fields sorted, and
:func:`decode` first tries msgspec's decoder for the tagged class, which checks each field's
type and limits as it builds (the limits become msgspec ``Meta`` constraints), then compares
the re-encoding with the input. Anything it refuses goes through the slower reader below,
which accepts exactly the same inputs (the tests check both on valid, mutated and
near-the-limit input) and names precisely what is wrong; so the fast path never decides an
error message, only how quickly a valid message is read (about four times faster here).
"""

from __future__ import annotations

import dataclasses
import threading
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import msgpack
import msgspec

from protocol import limits
from protocol.errors import (
    DecodeError,
    FieldError,
    LocalError,
    OversizeError,
    RemoteError,
    UnknownTypeError,
)

T = TypeVar("T")

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1

_KINDS: dict[str, type] = {}
_SPECS: dict[type, tuple[_FieldSpec, ...]] = {}
# Per class: the compiled test that every field is within its limits (see _compile_check).
_CHECKS: dict[type, Callable[[Any], bool]] = {}
# Per class: the compiled function building a message from its decoded map (see _compile_read).
_FAST_READERS: dict[type, Callable[[Any, str], Any]] = {}


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
    min: int | None = None,  # shadows the builtin: reads naturally at the call site
    max: int | None = None,
    item_max_len: int | None = None,
) -> Any:
    """A field's limits, checked by the constructor and while decoding (write
    ``name: type = field(...)`` in a :func:`message` class; it is no default)."""
    meta = {
        "max_len": max_len,
        "exact_len": exact_len,
        "min": min,
        "max": max,
        "item_max_len": item_max_len,
    }
    return dataclasses.field(metadata={k: v for k, v in meta.items() if v is not None})


def message(tag: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a frozen message type (a :class:`msgspec.Struct`) of the class's
    annotated fields, methods and properties, and register it under *tag*."""

    def register(cls: type[T]) -> type[T]:
        if tag in _KINDS:
            raise LocalError(f"message tag {tag!r} registered twice")
        namespace: dict[str, Any] = {}
        metadata: dict[str, dict[str, Any]] = {}
        for name, value in cls.__dict__.items():
            if name in ("__dict__", "__weakref__"):
                continue
            if isinstance(value, dataclasses.Field):  # a field() with limits, no default
                metadata[name] = dict(value.metadata)
                continue
            namespace[name] = value
        hints = typing.get_type_hints(cls)  # the messages it refers to come before it
        specs = {name: _spec_for(name, hints[name], metadata.get(name, {})) for name in hints}
        # The fields' limits in msgspec's terms, so its decoders check them as they build.
        namespace["__annotations__"] = {name: _wire_type(spec) for name, spec in specs.items()}
        extra_check = namespace.get("check")
        made: Any = None
        packers = _PACKERS

        def __post_init__(self: Any) -> None:
            # While a decoder builds it (_decode_fast) the fields are checked already.
            if not packers.decoding and not (_CHECKS.get(made) or _compile_check(made))(self):
                _validate(self)  # the generic walk names the field that is wrong
            if extra_check is not None:
                extra_check(self)

        namespace["__post_init__"] = __post_init__
        namespace["TAG"] = tag
        # frozen: immutable and hashable; gc=False: a message holds only atoms, tuples and
        # other messages built before it, so it can never be part of a reference cycle.
        made = types.new_class(
            cls.__name__,
            (msgspec.Struct,),
            {"frozen": True, "forbid_unknown_fields": True, "gc": False},
            lambda ns: ns.update(namespace),
        )
        _SPECS[made] = tuple(specs[name] for name in sorted(specs))
        _KINDS[tag] = made
        return made  # type: ignore[no-any-return]

    return register


def _wire_type(spec: _FieldSpec) -> Any:
    """The annotation by which msgspec decodes and checks a field of *spec*."""
    kind = spec.kind
    if kind == "int":  # msgspec reads ints in [-2**63, 2**64 - 1], as msgpack carries them
        bounds = {}
        if spec.min_value > INT64_MIN:
            bounds["ge"] = spec.min_value
        if spec.max_value < UINT64_MAX:
            bounds["le"] = spec.max_value  # within int64: msgspec takes no wider bound
        return Annotated[int, msgspec.Meta(**bounds)] if bounds else int
    if kind in ("bytes", "str"):
        base = bytes if kind == "bytes" else str
        if spec.exact_len is not None:
            return Annotated[
                base, msgspec.Meta(min_length=spec.exact_len, max_length=spec.exact_len)
            ]
        if spec.max_len is not None:
            return Annotated[base, msgspec.Meta(max_length=spec.max_len)]
        return base
    if kind == "bool":
        return bool
    if kind == "tuple" and spec.item is not None:
        return Annotated[tuple[_wire_type(spec.item), ...], msgspec.Meta(max_length=spec.max_len)]  # type: ignore[misc]
    if kind == "message":
        return spec.message_type
    raise LocalError(f"field {spec.name}: no wire type for kind {kind}")  # pragma: no cover


def replace(msg: T, **changes: Any) -> T:
    """A copy of the message *msg* with *changes*, checked as a new message is."""
    return msgspec.structs.replace(msg, **changes)  # type: ignore[no-any-return,type-var]


def kinds() -> dict[str, type]:
    """Every registered message kind by tag (a copy)."""
    return dict(_KINDS)


# --- schema ---------------------------------------------------------------------------------


def _specs(cls: type) -> tuple[_FieldSpec, ...]:
    """*cls*'s field specs in canonical (sorted) order, made when it was registered."""
    return _SPECS[cls]


def _spec_for(name: str, annotation: Any, meta: dict[str, Any]) -> _FieldSpec:
    if annotation is int:
        min_value = meta.get("min", INT64_MIN)
        max_value = meta.get("max", UINT64_MAX)
        if min_value < INT64_MIN or max_value > UINT64_MAX:
            raise LocalError(f"field {name}: int bounds beyond what msgpack carries")
        return _FieldSpec(name, "int", min_value=min_value, max_value=max_value)
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
    if isinstance(annotation, type) and annotation in _KINDS.values():
        return _FieldSpec(name, "message", message_type=annotation)
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        raise LocalError(f"field {name}: optional or union fields are not allowed (no nil)")
    raise LocalError(f"field {name}: unsupported annotation {annotation!r}")


def _validate(msg: Any) -> None:
    kind = type(msg).TAG
    for spec in _specs(type(msg)):
        _check_value(kind, spec, spec.name, getattr(msg, spec.name))


def _valid_expr(spec: _FieldSpec, expr: str, names: dict[str, type], depth: int = 0) -> str:
    """Python source that is true only if the value *expr* is valid for *spec*.

    It may be false for some valid values (a non-ASCII str): :func:`_validate` then decides.
    Message classes it refers to are added to *names* (the generated code's globals).
    """
    kind = spec.kind
    if kind == "message":
        name = f"_T{len(names)}"
        names[name] = spec.message_type  # type: ignore[assignment]
        return f"type({expr}) is {name}"
    if kind == "bool":
        return f"type({expr}) is bool"
    if kind == "int":
        return f"type({expr}) is int and {spec.min_value} <= {expr} <= {spec.max_value}"
    if kind in ("bytes", "str"):
        parts = [f"type({expr}) is {kind}"]
        if spec.exact_len is not None:
            parts.append(f"len({expr}) == {spec.exact_len}")
        if spec.max_len is not None:
            parts.append(f"len({expr}) <= {spec.max_len}")
        if kind == "str":
            parts.append(f"{expr}.isascii()")
        return " and ".join(parts)
    if kind == "tuple" and spec.item is not None:
        var = f"v{depth}"
        item = _valid_expr(spec.item, var, names, depth + 1)
        return (
            f"type({expr}) is tuple and len({expr}) <= {spec.max_len}"
            f" and all({item} for {var} in {expr})"
        )
    raise LocalError(f"field {spec.name}: no check for kind {kind}")  # pragma: no cover


def _compile_check(cls: type) -> Callable[[Any], bool]:
    """Compile *cls*'s field check once (generated code: a boolean expression beats any
    loop over the field specs): every message constructed outside a decoder runs it."""
    names: dict[str, type] = {}
    body = " and ".join(f"({_valid_expr(s, 'msg.' + s.name, names)})" for s in _specs(cls))
    namespace: dict[str, Any] = dict(names)
    exec(f"def check(msg):\n    return {body or 'True'}\n", namespace)
    check: Callable[[Any], bool] = namespace["check"]
    _CHECKS[cls] = check
    return check


def _type_name(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


def _check_value(kind: str, spec: _FieldSpec, where: str, value: Any) -> None:
    sk = spec.kind
    if sk == "bytes":
        if type(value) is not bytes:
            raise FieldError(kind, where, f"expected bytes, got {_type_name(value)}")
        _check_len(kind, where, len(value), spec)
    elif sk == "int":
        if type(value) is not int:
            raise FieldError(kind, where, f"expected int, got {_type_name(value)}")
        if not spec.min_value <= value <= spec.max_value:
            raise FieldError(kind, where, f"outside [{spec.min_value}, {spec.max_value}]")
    elif sk == "str":
        if type(value) is not str:
            raise FieldError(kind, where, f"expected str, got {_type_name(value)}")
        _check_len(kind, where, len(value), spec)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise FieldError(kind, where, "not encodable as UTF-8") from None
    elif sk == "bool":
        if type(value) is not bool:
            raise FieldError(kind, where, f"expected bool, got {_type_name(value)}")
    elif sk == "tuple":
        if type(value) is not tuple:
            raise FieldError(kind, where, f"expected a tuple, got {_type_name(value)}")
        _check_len(kind, where, len(value), spec)
        item = spec.item
        if item is None:  # pragma: no cover - _spec_for always sets it
            raise LocalError(f"{kind}.{where}: tuple spec without item")
        for i, v in enumerate(value):
            try:
                _check_value(kind, item, where, v)
            except FieldError as e:
                raise FieldError(kind, f"{where}[{i}]", e.problem) from None
    elif sk == "message" and type(value) is not spec.message_type:
        expected = spec.message_type.TAG  # type: ignore[union-attr]
        raise FieldError(kind, where, f"expected {expected}, got {_type_name(value)}")


def _check_len(kind: str, where: str, length: int, spec: _FieldSpec) -> None:
    if spec.exact_len is not None and length != spec.exact_len:
        raise FieldError(kind, where, f"length {length}, expected exactly {spec.exact_len}")
    if spec.max_len is not None and length > spec.max_len:
        raise FieldError(kind, where, f"length {length} over the limit {spec.max_len}")


# --- encoding -------------------------------------------------------------------------------


class _Packers(threading.local):
    """Per thread: one msgpack Packer (``msgpack.packb`` builds a new Packer and its buffer
    on every call, a third of a small message's packing time), one msgspec encoder (fields
    in sorted order: the canonical form) and the msgspec decoders by message class."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True)
        self.encoder = msgspec.msgpack.Encoder(order="sorted")
        self.outer = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw])
        self.decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}
        self.decoding = False  # a decoder is building messages (see _decode_fast)


_PACKERS = _Packers()


def _pack(obj: Any) -> bytes:
    """msgpack bytes of *obj*, packed as :func:`encode` packs (bin for bytes, str for str)."""
    return _PACKERS.packer.pack(obj)  # type: ignore[no-any-return]


def encode(msg: Any) -> bytes:
    """The canonical bytes of a registered message."""
    tag = getattr(type(msg), "TAG", None)
    if tag is None or _KINDS.get(tag) is not type(msg):
        raise LocalError(f"not a registered message: {type(msg).__name__}")
    return _PACKERS.encoder.encode((tag, msg))


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


def _safe_name(value: Any) -> str:
    """A peer-supplied name fit for an error message: an identifier, or a placeholder."""
    if type(value) is str and value.isascii() and value.isidentifier():
        return value[: limits.ID_CHARS_MAX]
    return f"<{_type_name(value)} key>"


def decode(raw: bytes, expect: type[T] | None = None, *, max_bytes: int | None = None) -> T:
    """Decode canonical bytes into a message, checking its kind against *expect* if given.

    Raises OversizeError past *max_bytes* (default, and at most, MESSAGE_BYTES_MAX),
    DecodeError for bytes that are not msgpack or not canonical, UnknownTypeError for an
    unknown tag, and FieldError for a missing, nil, extra or ill-typed field: all of them
    RemoteErrors. A bad *expect* or a non-bytes *raw* is the caller's bug: LocalError.
    """
    if expect is not None and _KINDS.get(getattr(expect, "TAG", None)) is not expect:  # type: ignore[arg-type]
        raise LocalError(f"decode: expect is not a registered message: {expect!r}")
    if isinstance(raw, memoryview):
        size = raw.nbytes
    elif isinstance(raw, (bytes, bytearray)):
        size = len(raw)
    else:
        raise LocalError(f"decode takes bytes, not {type(raw).__name__}")
    limit = limits.MESSAGE_BYTES_MAX
    if max_bytes is not None and max_bytes < limit:
        limit = max_bytes
    if size > limit:
        raise OversizeError(f"message of {size} bytes over the limit {limit}")
    raw = bytes(raw)
    fast = _decode_fast(raw, expect)
    if fast is not None:
        return fast  # type: ignore[no-any-return]
    try:
        # No duplicate-key hook here: a map that had one decodes with fewer entries than
        # it was written with, so the canonical comparison below refuses it anyway;
        # _refusal then names the duplicate.
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except DecodeError:
        raise
    except Exception as e:  # msgpack documents no narrower root for bad input
        raise DecodeError(f"not valid msgpack ({type(e).__name__})") from None
    try:
        msg, tag = _message_of(obj, expect)
    except RemoteError as e:
        raise _refusal(raw, e) from None
    # Canonical: every map in canonical key order (checked when reading it) and nothing but
    # the shortest encoding of each value, which is what packing the decoded values again
    # gives (the same bytes as encode(msg), without building them from the message).
    if _pack(obj) != raw:
        raise _refusal(raw, DecodeError(f"{tag}: not the canonical encoding"))
    return msg  # type: ignore[no-any-return]


def _decode_fast(raw: bytes, expect: type | None) -> Any:
    """*raw*'s message when msgspec decodes it to *expect* (if given) and it is the canonical
    encoding; None for anything else, which :func:`decode` then reads the slow way, to
    accept what this refused wrongly or to say exactly why it refuses.

    The decoders build the messages in C from the same schema, checking each field's type
    and limits (the ``Meta`` constraints of :func:`_wire_type`; a message's own ``check``
    still runs in ``__post_init__``), so what passes here is what the slow way would
    accept: canonical bytes of a valid message."""
    packers = _PACKERS
    try:
        tag, body = packers.outer.decode(raw)
        cls = _KINDS.get(tag)
        if cls is None or (expect is not None and cls is not expect):
            return None
        decoder = packers.decoders.get(cls)
        if decoder is None:
            decoder = packers.decoders[cls] = msgspec.msgpack.Decoder(cls)
        packers.decoding = True
        try:
            msg = decoder.decode(body)
        finally:
            packers.decoding = False
        if packers.encoder.encode((tag, msg)) != raw:
            return None
    except Exception:  # anything msgspec or a check refused: the slow way says why
        return None
    return msg


def _message_of(obj: Any, expect: type | None) -> tuple[Any, str]:
    """The message an unpacked ``[tag, fields]`` describes, and its tag."""
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not str:
        raise DecodeError("expected [tag, fields]")
    tag, fields = obj
    cls = _KINDS.get(tag)
    if cls is None:
        raise UnknownTypeError(f"unknown message tag {_safe_name(tag)}")
    if expect is not None and cls is not expect:
        raise DecodeError(f"expected {expect.TAG}, got {tag}")  # type: ignore[attr-defined]
    return _from_plain(cls, fields, tag), tag


def _refusal(raw: bytes, error: RemoteError) -> RemoteError:
    """*error*, unless the bytes hold a duplicate map key: that is named first, as the
    problem every other one follows from (decode only looks for it once something failed)."""
    try:
        msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            object_pairs_hook=_pairs_without_duplicates,
            ext_hook=_reject_ext,
        )
    except _DuplicateKey:
        return DecodeError("duplicate map key")
    except Exception:  # the first decode already refused anything else it could find
        return error
    return error


def _typed_converter(kind: str, spec: _FieldSpec) -> Callable[[Any], Any] | None:
    """How a decoded value of *spec* becomes the field's value, or None if it already is."""
    if spec.kind == "message":
        name = spec.name
        read = _FAST_READERS.get(spec.message_type) or _compile_read(spec.message_type)  # type: ignore[arg-type]
        return lambda value: read(value, name)
    if spec.kind == "tuple":
        item = spec.item
        inner = None if item is None else _typed_converter(kind, item)
        max_len = spec.max_len
        name = spec.name

        def to_tuple(value: Any) -> tuple[Any, ...]:
            if type(value) is not list:
                raise FieldError(kind, name, f"expected an array, got {_type_name(value)}")
            if max_len is not None and len(value) > max_len:
                raise FieldError(kind, name, f"length {len(value)} over the limit {max_len}")
            return tuple(value) if inner is None else tuple([inner(v) for v in value])

        return to_tuple
    return None  # int, bytes, str, bool: the constructor checks the type


def _from_plain(cls: type, fields: Any, where: str) -> Any:
    """The message of type *cls* whose decoded map is *fields* (*where* names it in errors)."""
    return (_FAST_READERS.get(cls) or _compile_read(cls))(fields, where)


def _compile_read(cls: type) -> Callable[[Any, str], Any]:
    """Compile *cls*'s reader once (generated code, as :func:`_compile_check`): a map with
    exactly the fields in canonical order goes straight into the constructor (which checks
    the values); any other map is refused by :func:`_refuse_map`, which names why."""
    specs = _specs(cls)
    namespace: dict[str, Any] = {
        "_CLS": cls,
        "_ORDER": tuple(s.name for s in specs),
        "_refuse": _refuse_map,
    }
    args = []
    for i, spec in enumerate(specs):
        value = f"fields[{spec.name!r}]"
        convert = _typed_converter(cls.TAG, spec)  # type: ignore[attr-defined]
        if convert is not None:
            namespace[f"_C{i}"] = convert
            value = f"_C{i}({value})"
        args.append(f"{spec.name}={value}")
    exec(
        "def read(fields, where):\n"
        "    if type(fields) is not dict or tuple(fields) != _ORDER:\n"
        "        _refuse(_CLS, fields, where)\n"
        f"    return _CLS({', '.join(args)})\n",
        namespace,
    )
    read: Callable[[Any, str], Any] = namespace["read"]
    _FAST_READERS[cls] = read
    return read


def _refuse_map(cls: type, fields: Any, where: str) -> NoReturn:
    """Why *fields* is not a map of exactly *cls*'s fields in canonical order."""
    kind = cls.TAG  # type: ignore[attr-defined]
    if type(fields) is not dict:
        raise FieldError(kind, where, f"expected a map, got {_type_name(fields)}")
    names = {s.name for s in _specs(cls)}
    for k in fields:
        if k not in names:
            raise FieldError(kind, _safe_name(k), "unknown field")
    for name in sorted(names):
        if name not in fields:
            raise FieldError(kind, name, "missing")
    raise DecodeError(f"{kind}: not the canonical encoding (map keys out of order)")
