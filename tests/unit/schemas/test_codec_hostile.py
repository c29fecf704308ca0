"""Hostile input to the codec: bounded cost before pydantic, clean text, whole-string patterns, and a
``DecodeError`` (never an exception) for anything at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from law.policy import DEFAULT_POLICY
from schemas import codec
from schemas.codec import MESSAGE_BYTES_MAX, Decoded, DecodeError, decode, encode, printable
from schemas.envelope import build
from schemas.signing import HmacSigner
from schemas.types import (
    ACCOUNTS_PER_AGENT_COUNT_MAX,
    MEMO_LENGTH_MAX,
    PARTICIPANTS_COUNT_MAX,
    RATIONALE_LENGTH_MAX,
    READINGS_COUNT_MAX,
)

SECRET = b"s" * 32
CONTROLS = "".join(map(chr, (*range(0x20), *range(0x7F, 0xA0))))
TRANSFER = {"kind": "transfer", "from_account": "a:main", "to_account": "b:main", "resource": "energy", "quantity": 5}
PARTICIPANT = {"agent": "c", "key_fingerprint": "0" * 32, "accounts": ["c:main"]}
FULL_PROVENANCE = {
    "source": "gemini",
    "model": "m" * 80,
    "prompt_sha256": "0" * 64,
    "response_id": "r" * 128,
    "prompt_tokens": 10**9,
    "output_tokens": 10**9,
    "latency_ms": 10**9,
    "rationale": "y" * RATIONALE_LENGTH_MAX,
    "fallback": "f" * 120,
}


def envelope(body: dict[str, Any], provenance: dict[str, Any] | None = None, agent: str = "a") -> dict[str, Any]:
    return build(agent, body, tick=1, ttl=2, signer=HmacSigner(SECRET), pid="p1", nonce=1, provenance=provenance)


def rejected(raw: bytes | None) -> DecodeError:
    result = decode(raw)
    assert isinstance(result, DecodeError), result
    return result


def padded(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with an unknown key making it large enough to be walked, so the walk, not pydantic, refuses."""
    return {**obj, "zz_padding": "x" * codec.JSON_STRING_LENGTH_MAX}


# --- the bounds follow from the largest legal messages ------------------------------------------


def largest_genesis() -> dict[str, Any]:
    participants = [
        {
            **PARTICIPANT,
            "agent": f"a{i}",
            "role": "operator" if i == 0 else "participant",
            "accounts": [f"a{i}:{j}" for j in range(ACCOUNTS_PER_AGENT_COUNT_MAX)],
            "kind": "k" * 40,
            "emits_carbon": False,
            "critical_load": False,
        }
        for i in range(PARTICIPANTS_COUNT_MAX)
    ]
    balances = [
        {"account": f"a{i}:0", "resource": resource, "quantity": 10**12}
        for i in range(PARTICIPANTS_COUNT_MAX)
        for resource in ("energy", "water", "credits")
    ]
    body = {"kind": "genesis", "participants": participants, "balances": balances, "policy": DEFAULT_POLICY}
    return envelope(body, FULL_PROVENANCE, agent="a0")


def largest_meter() -> dict[str, Any]:
    readings = [
        {"account": f"a{i}:0", "resource": "energy", "produced": 10**12, "consumed": 10**12}
        for i in range(READINGS_COUNT_MAX)
    ]
    return envelope({"kind": "meter", "readings": readings}, FULL_PROVENANCE)


def widest_policy_set() -> dict[str, Any]:
    return envelope({"kind": "policy_set", "params": {f"p{i}": 0 for i in range(32)}, "reason": "z" * MEMO_LENGTH_MAX})


class Shape(NamedTuple):
    values: int
    depth: int
    widest: int  # keys of the widest object
    longest: int  # characters of the longest string or key


def shape(value: Any) -> Shape:
    """The shape of a JSON value, counted independently of the codec's walk."""
    if isinstance(value, dict):
        own, children = Shape(1, 1, len(value), max(map(len, value), default=0)), list(value.values())
    elif isinstance(value, list):
        own, children = Shape(1, 1, 0, 0), value
    else:
        return Shape(1, 0, 0, len(value) if isinstance(value, str) else 0)
    parts = [shape(child) for child in children]
    return Shape(
        own.values + sum(p.values for p in parts),
        own.depth + max((p.depth for p in parts), default=0),
        max([own.widest, *(p.widest for p in parts)]),
        max([own.longest, *(p.longest for p in parts)]),
    )


LARGEST_LEGAL = {"genesis": largest_genesis, "meter": largest_meter, "policy_set": widest_policy_set}


@pytest.mark.parametrize("name", sorted(LARGEST_LEGAL))
def test_the_largest_legal_messages_decode_within_the_legal_bounds(name: str) -> None:
    message = LARGEST_LEGAL[name]()
    raw = encode(message)
    assert len(raw) <= MESSAGE_BYTES_MAX
    assert isinstance(decode(raw), Decoded)
    measured = shape(message)
    assert measured.values <= codec.LEGAL_VALUES_COUNT_MAX
    assert measured.depth <= codec.LEGAL_DEPTH_MAX
    assert measured.widest <= codec.LEGAL_OBJECT_KEYS_COUNT_MAX
    assert measured.longest <= codec.LEGAL_STRING_LENGTH_MAX


def test_the_legal_bounds_are_reached_and_the_structural_bounds_leave_headroom() -> None:
    genesis = shape(largest_genesis())
    # the value count formula allows a full map of 32 policy parameters; a genesis holds the known ones
    assert codec.LEGAL_VALUES_COUNT_MAX - genesis.values <= 32 - len(DEFAULT_POLICY)
    assert genesis.depth == codec.LEGAL_DEPTH_MAX
    assert shape(widest_policy_set()).widest == codec.LEGAL_OBJECT_KEYS_COUNT_MAX
    assert shape(largest_meter()).longest == codec.LEGAL_STRING_LENGTH_MAX
    assert (codec.JSON_VALUES_COUNT_MAX, codec.JSON_DEPTH_MAX) == (
        2 * codec.LEGAL_VALUES_COUNT_MAX,
        2 * codec.LEGAL_DEPTH_MAX,
    )
    assert (codec.JSON_OBJECT_KEYS_COUNT_MAX, codec.JSON_STRING_LENGTH_MAX) == (
        2 * codec.LEGAL_OBJECT_KEYS_COUNT_MAX,
        2 * codec.LEGAL_STRING_LENGTH_MAX,
    )


# --- structural bounds ---------------------------------------------------------------------------


def ten_thousand_keys() -> dict[str, str]:
    return {f"{i:x}": "" for i in range(10_000)}


def nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def spread_values() -> list[Any]:
    """More values than the bound, in objects and lists each within the width bounds."""
    per_object = {f"k{i}": [0, 0, 0] for i in range(60)}
    return [per_object] * (codec.JSON_VALUES_COUNT_MAX // 240 + 1)


STRING_ROOM = MESSAGE_BYTES_MAX - len(encode(envelope(TRANSFER))) - 20

HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "10,000 keys in the body": (lambda: encode({**envelope(TRANSFER), "body": TRANSFER | ten_thousand_keys()}), "body"),
    "10,000 keys at the root": (lambda: encode(envelope(TRANSFER) | ten_thousand_keys()), "$"),
    "depth 10,000 unterminated": (lambda: b"[" * 10_000, "$"),
    "depth 10,000 closed": (lambda: b"[" * 10_000 + b"]" * 10_000, "$"),
    "depth one over the bound": (
        lambda: encode(padded({**envelope(TRANSFER), "extra": nested(codec.JSON_DEPTH_MAX)})),
        "extra" + ".0" * (codec.JSON_DEPTH_MAX - 1),
    ),
    "a 128 KB memo": (lambda: encode(envelope({**TRANSFER, "memo": "m" * STRING_ROOM})), "body.memo"),
    "a 128 KB key": (lambda: encode({**envelope(TRANSFER), "k" * STRING_ROOM: 0}), "$"),
    "values spread in narrow objects": (lambda: encode({**envelope(TRANSFER), "extra": spread_values()}), "$"),
    "a too long string in a list": (
        lambda: encode({**envelope(TRANSFER), "extra": [0, "s" * (codec.JSON_STRING_LENGTH_MAX + 1)]}),
        "extra.1",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_structures_exceed_a_limit_before_pydantic(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make, field = HOSTILE[name]
    raw = make()
    monkeypatch.setattr(codec, "Proposal", None)  # reaching pydantic would raise
    assert len(raw) <= MESSAGE_BYTES_MAX
    result = rejected(raw)
    assert (result.reason_code, result.field) == ("LIMIT_EXCEEDED", field), result.detail


def test_a_structural_rejection_keeps_the_identity_it_could_read() -> None:
    result = rejected(encode({**envelope(TRANSFER), "body": TRANSFER | ten_thousand_keys()}))
    assert (result.proposal_id, result.agent) == ("p1", "a")


def test_orjson_reports_depth_as_the_codec_expects() -> None:
    with pytest.raises(orjson.JSONDecodeError) as raised:
        orjson.loads(b"[" * 2_000)
    assert raised.value.msg == codec._ORJSON_DEPTH_MESSAGE


def test_a_small_message_is_not_walked_and_the_schema_refuses_its_shape() -> None:
    raw = encode({**envelope(TRANSFER), "extra": nested(codec.JSON_DEPTH_MAX + 5)})
    assert len(raw) <= codec.STRUCTURE_UNCHECKED_BYTES_MAX
    result = rejected(raw)
    assert (result.reason_code, result.field) == ("MALFORMED", "extra")


# --- clean text ----------------------------------------------------------------------------------


def provenance_with(name: str) -> Callable[[str], dict[str, Any]]:
    return lambda text: envelope(TRANSFER, {"source": "gemini", name: text})


# Each free-text field, by the path a rejection names, and a valid signed envelope with a text there.
TEXT_FIELDS: dict[str, Callable[[str], dict[str, Any]]] = {
    "body.transfer.memo": lambda text: envelope({**TRANSFER, "memo": text}),
    "body.policy_set.reason": lambda text: envelope(
        {"kind": "policy_set", "params": {"interest_bps": 1}, "reason": text}
    ),
    "body.breaker_trip.reason": lambda text: envelope({"kind": "breaker_trip", "reason": text}),
    "body.breaker_resume.reason": lambda text: envelope({"kind": "breaker_resume", "reason": text, "trip_seq": 4}),
    "body.participant_suspend.reason": lambda text: envelope(
        {"kind": "participant_suspend", "agent": "b", "reason": text}
    ),
    "body.participant_add.participant.kind": lambda text: envelope(
        {"kind": "participant_add", "participant": {**PARTICIPANT, "kind": text}}
    ),
    "body.genesis.participants.0.kind": lambda text: envelope(
        {"kind": "genesis", "participants": [{**PARTICIPANT, "kind": text}], "balances": []}
    ),
    "provenance.model": provenance_with("model"),
    "provenance.response_id": provenance_with("response_id"),
    "provenance.rationale": provenance_with("rationale"),
    "provenance.fallback": provenance_with("fallback"),
}


def with_text(field: str, text: str) -> dict[str, Any]:
    return TEXT_FIELDS[field](text)


@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
def test_every_text_field_takes_clean_text(field: str) -> None:
    assert isinstance(decode(encode(with_text(field, "Grüße, 5 kWh – ok ☀ \u00a0"))), Decoded)


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"], ids=repr)
@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
def test_a_control_character_in_any_text_field_is_malformed_there(field: str, char: str) -> None:
    result = rejected(encode(with_text(field, f"before{char}after")))
    assert (result.reason_code, result.field) == ("MALFORMED", field), result.detail
    assert "control characters" in result.detail


def test_every_control_character_is_refused() -> None:
    for char in CONTROLS:
        assert rejected(encode(with_text("body.transfer.memo", char))).reason_code == "MALFORMED", repr(char)


@pytest.mark.parametrize("kind", ["policy_set", "genesis"])
def test_a_control_character_in_a_policy_name_is_malformed_and_the_field_is_escaped(kind: str) -> None:
    params = {"carbon_tax_bps\x00\x1b[31m": 1}
    body: dict[str, Any] = (
        {"kind": "policy_set", "params": params}
        if kind == "policy_set"
        else {"kind": "genesis", "participants": [PARTICIPANT], "balances": [], "policy": params}
    )
    result = rejected(encode(envelope(body)))
    assert result.reason_code == "MALFORMED"
    assert result.field.startswith(f"body.{kind}.") and "\\u0000\\u001b" in result.field


# --- whole-string patterns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("agent", "agent\n", "agent"),
        ("id", "p1\n", "id"),
        ("sig", "0" * 64 + "\n", "sig"),
        ("id", "\np1", "id"),
        ("agent", "ok agent", "agent"),
    ],
)
def test_identifiers_and_hex_match_whole_strings(key: str, value: str, field: str) -> None:
    result = rejected(encode({**envelope(TRANSFER), key: value}))
    assert (result.reason_code, result.field) == ("MALFORMED", field)
    assert result.agent != value and result.proposal_id != value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**TRANSFER, "to_account": "b:main\n"}, "body.transfer.to_account"),
        (
            {"kind": "participant_add", "participant": {**PARTICIPANT, "key_fingerprint": "0" * 32 + "\n"}},
            "body.participant_add.participant.key_fingerprint",
        ),
    ],
)
def test_a_trailing_newline_in_a_body_identifier_is_malformed(body: dict[str, Any], field: str) -> None:
    result = rejected(encode(envelope(body)))
    assert (result.reason_code, result.field) == ("MALFORMED", field)


# --- safe details ----------------------------------------------------------------------------------


def test_printable_escapes_every_control_character_and_bounds_the_length() -> None:
    assert printable(CONTROLS) == "".join(f"\\u{ord(c):04x}" for c in CONTROLS)[: codec.DETAIL_LENGTH_MAX]
    assert printable("a\x00b", 300) == "a\\u0000b"
    assert len(printable("\x00" * 10_000)) == codec.DETAIL_LENGTH_MAX
    assert printable("ok é ☀") == "ok é ☀"


def assert_storable(result: Decoded | DecodeError) -> None:
    """A rejection's text must go into Postgres text and a log line as it is."""
    if isinstance(result, DecodeError):
        for text in (result.field, result.detail):
            assert not set(text) & set(CONTROLS), repr(text)
        assert len(result.field) <= codec.FIELD_LENGTH_MAX and len(result.detail) <= codec.DETAIL_LENGTH_MAX


def test_an_unknown_key_full_of_controls_is_named_safely() -> None:
    result = rejected(encode({**envelope(TRANSFER), "\x00\x1b[2J\x85": 1}))
    assert result.reason_code == "MALFORMED"
    assert_storable(result)


# --- nothing raises ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300)
@given(st.binary(max_size=4_000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert_storable(decode(raw))


@settings(max_examples=300)
@given(JSON_VALUES)
def test_arbitrary_json_never_raises(value: Any) -> None:
    assert_storable(decode(orjson.dumps(value)))


ENVELOPE_KEYS = ["v", "id", "agent", "tick", "expires_tick", "body", "provenance", "sig", "extra"]


@settings(max_examples=300)
@given(st.sampled_from(ENVELOPE_KEYS), JSON_VALUES, st.booleans())
def test_arbitrary_json_in_any_envelope_field_never_raises(key: str, value: Any, walked: bool) -> None:
    message = {**envelope(TRANSFER, {"source": "cli"}), key: value}
    assert_storable(decode(orjson.dumps(padded(message) if walked else message)))


@settings(max_examples=300)
@given(st.sampled_from(sorted(TEXT_FIELDS)), st.text(max_size=600))
def test_arbitrary_text_in_any_text_field_never_raises(field: str, text: str) -> None:
    result = decode(encode(with_text(field, text)))
    assert_storable(result)
    assert isinstance(result, Decoded) or result.field == field
