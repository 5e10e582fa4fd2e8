"""The canonical codec: every kind round-trips, encodes one way, and bad bytes fail typed.

What this proves, and how:

* Every registered message kind (``protocol.codec.kinds()``) has a hypothesis strategy in
  ``tests/unit/strategies.py``, round-trips ``encode -> decode`` to an equal message of the
  same class, and encodes deterministically (equal messages, equal bytes; re-encoding a
  decoded message gives the bytes back).
* Decoding bad input raises a typed :class:`~protocol.errors.RemoteError` subclass, never
  another exception type: truncated and oversized input, type-confused fields (drawn for
  every field of every kind), unknown tags, duplicate and non-string map keys, every
  non-canonical form we can build by hand (unsorted keys, non-minimal ints, str8/bin16/array16/
  map16 where a shorter form exists), extension types, trailing bytes, deep nesting, missing
  and extra fields, invalid UTF-8, and a top level that is not ``[tag, map]``. Duplicate keys
  and non-minimal forms are written byte by byte, since msgpack's packer never emits them.
* A fuzz test feeds arbitrary bytes, and mutations of valid encodings, to ``decode``: only
  RemoteError subclasses come out, and whatever decodes re-encodes to exactly its input.
* Error messages never echo peer-supplied names that could carry payload.
* :func:`decode` reads valid messages through msgspec (``_decode_fast``), which checks the
  field limits as it builds them, and falls back to the slow, explaining reader for anything
  else: every valid message takes the fast path, and on every input of the tests above and
  on values near each field's limits, both paths accept exactly the same.
* Misuse by the caller (non-bytes input, a non-message ``expect``, a non-message to
  ``encode``) is a LocalError, and constructors reject values that could not be encoded.
"""

from __future__ import annotations

import copy
from unittest import mock

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec, limits
from protocol.codec import (
    INT64_MIN,
    UINT64_MAX,
    _compile_check,
    _decode_fast,
    _FieldSpec,
    _specs,
    _validate,
    decode,
    encode,
    kinds,
    replace,
)
from protocol.errors import (
    DecodeError,
    FieldError,
    LocalError,
    OversizeError,
    RemoteError,
    UnknownTypeError,
)
from protocol.messages import (
    Block,
    ContractEvent,
    Endorsement,
    KVRead,
    Proposal,
    RwSet,
    SignedProposal,
)
from tests.unit.strategies import STRATEGIES, messages, strategy_for

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MORE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def product_kinds() -> dict[str, type]:
    """Registered kinds defined by the product (tests may register kinds of their own)."""
    return {tag: cls for tag, cls in kinds().items() if cls.__module__.startswith("protocol.")}


KINDS = sorted(product_kinds().items())

EVENT = ContractEvent(name="added", payload=b"p")
READ = KVRead(namespace="records", key=b"k", exists=True, version_block=5, version_tx=0)
PROPOSAL = Proposal(
    network_id="net",
    contract="records",
    function="add",
    args=(b"a",),
    creator=b"cert",
    nonce=bytes(range(24)),
    timestamp_ms=1_700_000_000_000,
)


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def plain(msg: object) -> list:
    """The [tag, fields] structure of a message, for building altered encodings."""
    return msgpack.unpackb(encode(msg), raw=False)


def decode_fails(raw: bytes, error: type[RemoteError] = RemoteError) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        decode(raw)
    assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
    return info.value


# --- round trip and determinism -------------------------------------------------------------


def test_strategies_cover_every_registered_kind() -> None:
    missing = sorted(tag for tag, cls in product_kinds().items() if cls not in STRATEGIES)
    assert not missing, f"add a strategy to tests/unit/strategies.py for: {missing}"
    assert set(STRATEGIES) == set(product_kinds().values())


@pytest.mark.parametrize(("tag", "cls"), KINDS, ids=[tag for tag, _ in KINDS])
@FAST
@given(data=st.data())
def test_every_kind_round_trips(tag: str, cls: type, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(cls))
    raw = encode(msg)
    back = decode(raw, cls)
    assert type(back) is cls
    assert back == msg
    assert encode(back) == raw
    assert plain(msg)[0] == tag


@MORE
@given(msg=messages())
def test_the_fast_path_reads_every_valid_message(msg: object) -> None:
    """Every canonical encoding decodes through msgspec (the slow path is for bad input)."""
    fast = _decode_fast(encode(msg), type(msg))
    assert fast == msg and type(fast) is type(msg)


@pytest.mark.parametrize(("tag", "cls"), KINDS, ids=[tag for tag, _ in KINDS])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_path_refuses_every_value_the_field_rules_refuse(
    tag: str, cls: type, data: st.DataObject
) -> None:
    """msgspec checks the limits while it decodes, the constructor's own check does not run
    then: every value near or past a field's limits, of every kind, is read alike both ways."""
    msg = data.draw(strategy_for(cls))
    tag, fields = plain(msg)
    for spec in _specs(type(msg)):
        for value in _near_the_limits(spec):
            if isinstance(value, bytearray):
                continue  # msgpack packs it as bytes: not a different wire value
            changed = {**fields, spec.name: value}
            try:
                raw = pack([tag, changed])
            except (TypeError, OverflowError, ValueError):
                continue  # not packable: no wire form to test
            decode_or_remote_error(raw)


@MORE
@given(msg=messages())
def test_encoding_is_deterministic(msg: object) -> None:
    raw = encode(msg)
    assert encode(msg) == raw
    # An equal message built separately (not the same object) encodes to the same bytes.
    assert encode(replace(msg)) == raw  # type: ignore[type-var]
    # Keys are sorted at every level.
    assert_keys_sorted(msgpack.unpackb(raw, raw=False))


def assert_keys_sorted(obj: object) -> None:
    if isinstance(obj, dict):
        assert list(obj) == sorted(obj)
        for v in obj.values():
            assert_keys_sorted(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_keys_sorted(v)


@pytest.mark.parametrize(
    "value", [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, UINT64_MAX]
)
def test_int_boundaries_round_trip_in_the_shortest_form(value: int) -> None:
    msg = replace(READ, version_block=value)
    raw = encode(msg)
    assert decode(raw) == msg
    width = {127: 1, 255: 2, 65535: 3, 2**32 - 1: 5, UINT64_MAX: 9}
    expected = next(w for bound, w in sorted(width.items()) if value <= bound)
    assert len(raw) - len(encode(replace(READ, version_block=0))) == expected - 1


@pytest.mark.parametrize("name", ["a" * 31, "a" * 32, "é" * 15 + "a", "é" * 16, "🩺" * 8])
def test_str_length_is_utf8_bytes_not_chars(name: str) -> None:
    msg = ContractEvent(name=name, payload=b"")
    raw = encode(msg)
    assert decode(raw) == msg
    utf8 = name.encode()
    header = bytes([0xA0 | len(utf8)]) if len(utf8) < 32 else bytes([0xD9, len(utf8)])
    assert header + utf8 in raw


def test_decode_checks_the_expected_kind() -> None:
    raw = encode(EVENT)
    assert decode(raw, ContractEvent) == EVENT
    decode_fails_with = pytest.raises(DecodeError)
    with decode_fails_with:
        decode(raw, Endorsement)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = encode(EVENT)
    assert decode(bytearray(raw)) == EVENT
    assert decode(memoryview(raw)) == EVENT


# --- truncated, oversized, trailing ---------------------------------------------------------


def test_every_truncation_is_a_decode_error() -> None:
    raw = encode(signed_proposal_sample())
    for end in range(len(raw)):
        decode_fails(raw[:end], DecodeError)


def signed_proposal_sample() -> SignedProposal:
    return SignedProposal(proposal=PROPOSAL, signature=b"s" * 70)


@pytest.mark.parametrize("extra", [b"\x00", b"\xc0", encode(EVENT), b"\x92"])
def test_trailing_bytes_are_rejected(extra: bytes) -> None:
    decode_fails(encode(EVENT) + extra, DecodeError)


def test_input_over_the_message_limit_is_oversize() -> None:
    decode_fails(bytes(limits.MESSAGE_BYTES_MAX + 1), OversizeError)


def test_input_over_max_bytes_is_oversize() -> None:
    raw = encode(EVENT)
    assert decode(raw, max_bytes=len(raw)) == EVENT
    with pytest.raises(OversizeError):
        decode(raw, max_bytes=len(raw) - 1)
    # A memoryview of 8-byte items: its len() counts items, the limit counts bytes.
    wide = memoryview(bytes(8 * len(raw))).cast("Q")
    assert len(wide) <= len(raw) < wide.nbytes
    with pytest.raises(OversizeError):
        decode(wide, max_bytes=len(raw))


def test_max_bytes_cannot_raise_the_message_limit() -> None:
    with pytest.raises(OversizeError):
        decode(bytes(limits.MESSAGE_BYTES_MAX + 1), max_bytes=limits.MESSAGE_BYTES_MAX * 2)


# --- type confusion, nil, missing and extra fields ------------------------------------------

WRONG_VALUES = {
    "int": 7,
    "str": "x",
    "bytes": b"x",
    "bool": True,
    "float": 1.5,
    "nil": None,
    "list": [],
    "map": {},
}
# The wire type each field kind legitimately has; every other entry is a confusion.
RIGHT_WIRE = {
    "int": {"int"},
    "str": {"str"},
    "bytes": {"bytes"},
    "bool": {"bool"},
    "tuple": {"list"},
    "message": {"map"},
}


@MORE
@given(msg=messages(), data=st.data())
def test_type_confused_fields_are_field_errors(msg: object, data: st.DataObject) -> None:
    specs = _specs(type(msg))
    spec = data.draw(st.sampled_from(specs))
    wrong = data.draw(st.sampled_from(sorted(set(WRONG_VALUES) - RIGHT_WIRE[spec.kind])))
    tag, fields = plain(msg)
    fields[spec.name] = WRONG_VALUES[wrong]
    error = decode_fails(pack([tag, fields]), FieldError)
    assert spec.name in str(error)


@MORE
@given(msg=messages(), data=st.data())
def test_type_confused_items_of_arrays_are_field_errors(msg: object, data: st.DataObject) -> None:
    specs = [s for s in _specs(type(msg)) if s.kind == "tuple"]
    tag, fields = plain(msg)
    specs = [s for s in specs if fields[s.name]]  # an item to replace
    if not specs:
        return
    spec = data.draw(st.sampled_from(specs))
    assert spec.item is not None
    wrong = data.draw(st.sampled_from(sorted(set(WRONG_VALUES) - RIGHT_WIRE[spec.item.kind])))
    index = data.draw(st.integers(0, len(fields[spec.name]) - 1))
    fields[spec.name][index] = WRONG_VALUES[wrong]
    decode_fails(pack([tag, fields]), FieldError)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("version_block", True),  # bool where an int belongs
        ("version_block", -1),  # negative int where the field is unsigned
        ("version_block", 1.0),  # integral float
        ("exists", 1),  # int where a bool belongs
        ("key", "k"),  # str where bytes belong
        ("namespace", b"records"),  # bytes where a str belongs
        ("key", [1]),
        ("version_tx", None),
    ],
)
def test_specific_confusions(name: str, value: object) -> None:
    tag, fields = plain(READ)
    fields[name] = value
    decode_fails(pack([tag, fields]), FieldError)


def test_float32_is_rejected() -> None:
    raw = encode(READ).replace(b"\xadversion_block\x05", b"\xadversion_block\xca\x40\xa0\x00\x00")
    assert raw != encode(READ)
    decode_fails(raw, FieldError)


def test_int_out_of_range_is_a_field_error() -> None:
    tag, fields = plain(PROPOSAL)
    fields["nonce"] = b"short"
    decode_fails(pack([tag, fields]), FieldError)


@pytest.mark.parametrize(("tag", "cls"), KINDS, ids=[tag for tag, _ in KINDS])
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_missing_and_extra_fields_are_field_errors(
    tag: str, cls: type, data: st.DataObject
) -> None:
    _, fields = plain(data.draw(strategy_for(cls)))
    name = data.draw(st.sampled_from(sorted(fields)))
    missing = {k: v for k, v in fields.items() if k != name}
    assert "missing" in str(decode_fails(pack([tag, missing]), FieldError))
    extra = dict(sorted({**fields, "zz_extra": 1}.items()))
    assert "unknown field" in str(decode_fails(pack([tag, extra]), FieldError))
    renamed = dict(sorted({**missing, name + "_": fields[name]}.items()))
    decode_fails(pack([tag, renamed]), FieldError)


def test_nested_message_with_a_bad_field() -> None:
    tag, fields = plain(SignedProposal(proposal=PROPOSAL, signature=b"s"))
    fields["proposal"]["timestamp_ms"] = -5
    decode_fails(pack([tag, fields]), FieldError)
    fields["proposal"] = [fields["proposal"]]  # list for map
    decode_fails(pack([tag, fields]), FieldError)


def test_list_for_map_and_map_for_list() -> None:
    tag, fields = plain(RwSet(reads=(READ,), writes=()))
    fields["reads"] = [list(fields["reads"][0].values())]
    decode_fails(pack([tag, fields]), FieldError)
    tag, fields = plain(RwSet(reads=(READ,), writes=()))
    fields["writes"] = {}
    decode_fails(pack([tag, fields]), FieldError)
    decode_fails(pack([tag, list(fields.values())]), FieldError)


def test_array_over_its_limit_is_a_field_error_before_items_are_built() -> None:
    tag, fields = plain(PROPOSAL)
    fields["args"] = [b""] * (limits.ARGS_MAX + 1)
    decode_fails(pack([tag, fields]), FieldError)
    fields["args"] = [1.5] * (limits.ARGS_MAX + 1)
    decode_fails(pack([tag, fields]), FieldError)


# --- tags and top-level shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"tag": "contract_event"},  # a map at top level
        ["contract_event"],
        ["contract_event", {}, {}],
        [],
        [1, {}],  # a tag that is not a str
        [b"contract_event", {"name": "a", "payload": b""}],  # bytes tag
        [None, {}],
        "contract_event",
        7,
        None,
        True,
        b"",
    ],
)
def test_top_level_must_be_tag_and_map(obj: object) -> None:
    decode_fails(pack(obj), DecodeError)


def test_fields_that_are_not_a_map() -> None:
    decode_fails(pack(["contract_event", ["a", b""]]), FieldError)
    decode_fails(pack(["contract_event", None]), FieldError)


@pytest.mark.parametrize("tag", ["nope", "", "Contract_Event", "contract_event ", "x" * 1000])
def test_unknown_tags(tag: str) -> None:
    error = decode_fails(pack([tag, {}]), UnknownTypeError)
    assert len(str(error)) < 200


def test_empty_input() -> None:
    decode_fails(b"", DecodeError)


# --- duplicate and non-string keys ----------------------------------------------------------

# Hand-written msgpack: [ "contract_event", {name: "a", payload: b"p"} ].
TAG_BYTES = b"\xaecontract_event"
NAME = b"\xa4name"
PAYLOAD = b"\xa7payload"


def event_raw(map_header: bytes, *pairs: bytes) -> bytes:
    return b"\x92" + TAG_BYTES + map_header + b"".join(pairs)


def test_hand_written_event_is_the_canonical_encoding() -> None:
    raw = event_raw(b"\x82", NAME, b"\xa1a", PAYLOAD, b"\xc4\x01p")
    assert raw == encode(ContractEvent(name="a", payload=b"p"))


@pytest.mark.parametrize(
    "pairs",
    [
        (NAME, b"\xa1a", NAME, b"\xa1b", PAYLOAD, b"\xc4\x01p"),  # duplicate, different values
        (NAME, b"\xa1a", NAME, b"\xa1a", PAYLOAD, b"\xc4\x01p"),  # duplicate, same value
        (NAME, b"\xa1a", PAYLOAD, b"\xc4\x01p", PAYLOAD, b"\xc4\x01p"),
    ],
)
def test_duplicate_keys_are_rejected(pairs: tuple[bytes, ...]) -> None:
    decode_fails(event_raw(b"\x83", *pairs), DecodeError)


def test_duplicate_keys_in_a_nested_map_are_rejected() -> None:
    read = plain(READ)[1]
    inner = b"".join(pack(k) + pack(v) for k, v in read.items())
    inner = b"\x86" + pack("exists") + pack(True) + inner  # "exists" twice
    raw = b"\x92" + pack("rw_set") + b"\x82" + pack("reads") + b"\x91" + inner
    raw += pack("writes") + b"\x90"
    decode_fails(raw, DecodeError)


@pytest.mark.parametrize(
    "key", [b"\x01", b"\xc3", b"\xc0", b"\xc4\x04name", b"\x90", b"\x80", b"\xcb" + bytes(8)]
)
def test_map_keys_must_be_str(key: bytes) -> None:
    raw = event_raw(b"\x83", key, b"\x00", NAME, b"\xa1a", PAYLOAD, b"\xc4\x01p")
    decode_fails(raw, RemoteError)


def test_errors_do_not_echo_peer_supplied_names() -> None:
    secret = "patient-4711-hiv-positive"
    fields = dict(sorted({"name": "a", "payload": b"", secret: 1}.items()))
    assert secret not in str(decode_fails(pack(["contract_event", fields])))
    assert secret not in str(decode_fails(pack([secret, {}])))
    fields = {"name": "a", "payload": b"", b"secret-bytes": 1}
    assert "secret" not in str(decode_fails(pack(["contract_event", fields])))


# --- non-canonical encodings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        event_raw(b"\x82", PAYLOAD, b"\xc4\x01p", NAME, b"\xa1a"),  # keys unsorted
        event_raw(b"\xde\x00\x02", NAME, b"\xa1a", PAYLOAD, b"\xc4\x01p"),  # map16
        event_raw(b"\xdf\x00\x00\x00\x02", NAME, b"\xa1a", PAYLOAD, b"\xc4\x01p"),  # map32
        event_raw(b"\x82", NAME, b"\xd9\x01a", PAYLOAD, b"\xc4\x01p"),  # str8 value
        event_raw(b"\x82", NAME, b"\xda\x00\x01a", PAYLOAD, b"\xc4\x01p"),  # str16 value
        event_raw(b"\x82", b"\xd9\x04name", b"\xa1a", PAYLOAD, b"\xc4\x01p"),  # str8 key
        event_raw(b"\x82", NAME, b"\xa1a", PAYLOAD, b"\xc5\x00\x01p"),  # bin16
        event_raw(b"\x82", NAME, b"\xa1a", PAYLOAD, b"\xc6\x00\x00\x00\x01p"),  # bin32
        b"\xdc\x00\x02" + TAG_BYTES + b"\x82" + NAME + b"\xa1a" + PAYLOAD + b"\xc4\x01p",
        b"\x92\xd9\x0econtract_event\x82" + NAME + b"\xa1a" + PAYLOAD + b"\xc4\x01p",
    ],
)
def test_non_canonical_forms_of_the_event_are_rejected(raw: bytes) -> None:
    assert msgpack.unpackb(raw, raw=False) == plain(ContractEvent(name="a", payload=b"p"))
    decode_fails(raw, DecodeError)


@pytest.mark.parametrize(
    "value",
    [
        b"\xcc\x05",  # uint8
        b"\xcd\x00\x05",  # uint16
        b"\xce\x00\x00\x00\x05",  # uint32
        b"\xcf" + (5).to_bytes(8, "big"),  # uint64
        b"\xd0\x05",  # int8 for a positive value
        b"\xd1\x00\x05",  # int16
        b"\xd2\x00\x00\x00\x05",  # int32
        b"\xd3" + (5).to_bytes(8, "big"),  # int64
    ],
)
def test_non_minimal_ints_are_rejected(value: bytes) -> None:
    canonical = encode(READ)
    raw = canonical.replace(b"\xadversion_block\x05", b"\xadversion_block" + value)
    assert raw != canonical
    assert msgpack.unpackb(raw, raw=False) == plain(READ)
    decode_fails(raw, DecodeError)


def test_array16_for_a_tiny_array_is_rejected() -> None:
    canonical = encode(PROPOSAL)
    raw = canonical.replace(b"\xa4args\x91", b"\xa4args\xdc\x00\x01")
    assert raw != canonical and msgpack.unpackb(raw, raw=False) == plain(PROPOSAL)
    decode_fails(raw, DecodeError)


def test_unsorted_keys_in_a_nested_map_are_rejected() -> None:
    tag, fields = plain(SignedProposal(proposal=PROPOSAL, signature=b"s"))
    fields["proposal"] = dict(reversed(fields["proposal"].items()))
    decode_fails(pack([tag, fields]), DecodeError)


def test_old_raw_str_for_bytes_is_rejected() -> None:
    # msgpack's pre-2013 spec had no bin type: bytes packed as str.
    raw = msgpack.packb(plain(ContractEvent(name="a", payload=b"p")), use_bin_type=False)
    decode_fails(raw, RemoteError)


# --- extension types, nesting, UTF-8 --------------------------------------------------------


@pytest.mark.parametrize(
    "ext",
    [
        b"\xd4\x05\x00",  # fixext1 type 5
        b"\xc7\x01\x05a",  # ext8
        b"\xd6\xff\x00\x00\x00\x01",  # timestamp32 (type -1): msgpack decodes it itself
        b"\xd7\xff" + bytes(8),  # timestamp64
    ],
)
@pytest.mark.parametrize("where", ["value", "tag", "top"])
def test_extension_types_are_rejected(ext: bytes, where: str) -> None:
    if where == "value":
        raw = event_raw(b"\x82", NAME, ext, PAYLOAD, b"\xc4\x01p")
    elif where == "tag":
        raw = b"\x92" + ext + b"\x80"
    else:
        raw = ext
    decode_fails(raw, RemoteError)


@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1a", b"\x92\xa1x"])
def test_deep_nesting_is_a_decode_error(opener: bytes) -> None:
    decode_fails(opener * 100_000 + b"\xc0", DecodeError)


@pytest.mark.parametrize(
    "raw",
    [
        event_raw(b"\x82", NAME, b"\xa1\xff", PAYLOAD, b"\xc4\x01p"),  # bad value
        event_raw(b"\x82", NAME, b"\xa2\xc3\x28", PAYLOAD, b"\xc4\x01p"),  # bad continuation
        event_raw(b"\x82", NAME, b"\xa3\xed\xa0\x80", PAYLOAD, b"\xc4\x01p"),  # a surrogate
        event_raw(b"\x82", b"\xa4n\xffme", b"\xa1a", PAYLOAD, b"\xc4\x01p"),  # bad key
        b"\x92\xa2\xc0\xaf\x80",  # overlong "/" as the tag
    ],
)
def test_invalid_utf8_is_a_decode_error(raw: bytes) -> None:
    decode_fails(raw, DecodeError)


# --- fuzz -----------------------------------------------------------------------------------


def slow_decode(raw: bytes) -> object:
    """decode without its msgspec fast path: the reading that says why it refuses."""
    with mock.patch.object(codec, "_decode_fast", lambda raw, expect: None):
        return decode(raw)


def decode_or_remote_error(raw: bytes) -> None:
    """*raw* decodes to a canonical message or raises a RemoteError, and the fast path
    takes exactly what the slow one does (refusing it, it leaves the slow one to explain)."""
    # decode checks the size before either path reads anything.
    fast = _decode_fast(raw, None) if len(raw) <= limits.MESSAGE_BYTES_MAX else None
    try:
        msg = slow_decode(raw)
    except RemoteError as e:
        assert fast is None, f"the fast path took a {type(fast).__name__} the slow one refuses: {e}"
        with pytest.raises(RemoteError):
            decode(raw)
        return
    assert encode(msg) == raw  # whatever decodes is canonical
    assert fast == msg and type(fast) is type(msg)
    assert decode(raw) == msg


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_remote_errors(raw: bytes) -> None:
    decode_or_remote_error(raw)


@settings(max_examples=100, deadline=None)
@given(tag=st.sampled_from(sorted(kinds())), body=st.binary(max_size=100))
def test_arbitrary_bodies_after_a_valid_tag(tag: str, body: bytes) -> None:
    decode_or_remote_error(b"\x92" + pack(tag) + body)


@MORE
@given(msg=messages(), data=st.data())
def test_mutated_encodings_decode_or_raise_remote_errors(msg: object, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if action == "flip":
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            raw[i] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw.insert(i, data.draw(st.integers(0, 255)))
        elif len(raw) > 1:
            del raw[i]
    decode_or_remote_error(bytes(raw))


@MORE
@given(
    obj=st.recursive(
        st.none()
        | st.booleans()
        | st.integers().filter(lambda i: -(2**63) <= i < 2**64)
        | st.floats()
        | st.text(max_size=5)
        | st.binary(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=12,
    ),
    tag=st.sampled_from(sorted(kinds())),
)
def test_arbitrary_msgpack_values_under_a_valid_tag(obj: object, tag: str) -> None:
    decode_or_remote_error(pack([tag, obj]))


# --- local misuse and constructor strictness ------------------------------------------------


@pytest.mark.parametrize("raw", ["text", None, 7, [1, 2]])
def test_decode_of_non_bytes_is_local_misuse(raw: object) -> None:
    with pytest.raises(LocalError):
        decode(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("expect", [int, dict, object()])
def test_decode_with_a_non_message_expect_is_local_misuse(expect: object) -> None:
    with pytest.raises(LocalError):
        decode(encode(EVENT), expect)  # type: ignore[arg-type]


@pytest.mark.parametrize("obj", [None, 1, b"x", {"name": "a"}, Block])
def test_encode_of_non_messages_is_local_misuse(obj: object) -> None:
    with pytest.raises(LocalError):
        encode(obj)


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "\ud800"},  # a lone surrogate: no UTF-8 encoding exists
        {"name": "a\udfffb"},
        {"payload": bytearray(b"p")},  # bytes only, so hashes never depend on mutability
        {"payload": memoryview(b"p")},
        {"name": type("S", (str,), {})("a")},  # subclasses could override encoding
        {"payload": None},
        {"name": 1},
    ],
)
def test_constructors_reject_values_that_cannot_be_encoded(changes: dict) -> None:
    with pytest.raises(FieldError):
        replace(EVENT, **changes)


def test_constructors_reject_lists_for_tuples_and_ints_outside_u64() -> None:
    with pytest.raises(FieldError):
        replace(PROPOSAL, args=[b"a"])
    with pytest.raises(FieldError):
        replace(READ, version_block=UINT64_MAX + 1)
    with pytest.raises(FieldError):
        replace(READ, version_block=-1)
    with pytest.raises(FieldError):
        replace(READ, exists=1)


def test_messages_are_frozen_and_slotted() -> None:
    with pytest.raises(AttributeError, match="immutable"):
        EVENT.name = "b"  # type: ignore[misc]
    for cls in kinds().values():
        assert "__slots__" in vars(cls)
        assert "__dict__" not in cls.__slots__
    assert not hasattr(EVENT, "__dict__")


def _near_the_limits(spec: _FieldSpec) -> list[object]:
    """Values on both sides of *spec*'s limits, and of every other type."""
    values: list[object] = [None, 0, 1, True, b"", "", (), [], {}, bytearray(b"x"), "\u00e9"]
    values += [INT64_MIN - 1, INT64_MIN, spec.min_value - 1, spec.min_value]
    values += [spec.max_value, spec.max_value + 1, UINT64_MAX + 1]
    for length in {spec.max_len, spec.exact_len} - {None}:
        assert length is not None
        for n in (length - 1, length, length + 1):
            values += [b"b" * max(n, 0), "s" * max(n, 0), ("x",) * max(n, 0)]
    if spec.item is not None:
        values += [(v,) for v in _near_the_limits(spec.item)]
    return values


@FAST
@given(msg=messages())
def test_the_compiled_check_passes_nothing_the_field_rules_refuse(msg: object) -> None:
    """Construction runs a compiled check and falls back to the generic walk only when the
    check fails, so the check must never pass a value the walk would refuse."""
    check = _compile_check(type(msg))
    for spec in _specs(type(msg)):
        for value in _near_the_limits(spec):
            broken = copy.copy(msg)
            vars(type(broken))[spec.name].__set__(broken, value)  # the slot, past frozen
            if check(broken):
                _validate(broken)  # raises if the check let a bad value through
