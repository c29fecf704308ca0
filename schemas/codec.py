"""Canonical encoding, signing and decoding of proposals.

Canonical encoding: the JSON object without ``sig``, keys sorted at every level, no spaces, UTF-8
(orjson with ``OPT_SORT_KEYS``). The signature covers those bytes: HMAC-SHA256 with the key of a
participant or the meter, Ed25519 with an operator's private key (``schemas.signing`` says why).

Decoding never raises for bad input: every failure is a ``DecodeError`` with a machine-readable
reason and the offending field, so the validator can record it as a rejection and move on.

Cost is bounded before pydantic sees a message: its size first, then (for a message large enough to
hold something no legal message has) a walk of the parsed JSON against structural bounds.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.proposal import Genesis, Meter, Opening, Participant, Proposal, Provenance, Reading
from schemas.signing import Signer
from schemas.types import (
    ACCOUNTS_PER_AGENT_COUNT_MAX,
    IDENTIFIER_PATTERN,
    PARTICIPANTS_COUNT_MAX,
    RATIONALE_LENGTH_MAX,
    READINGS_COUNT_MAX,
    TEXT_PATTERN,
)

# A proposal is a few hundred bytes; the largest legal genesis (every participant, account, balance
# and provenance field, short ids) about 120 KB. Anything larger is refused before parsing, so a
# hostile 1 MB message costs a length check, not a parse.
MESSAGE_BYTES_MAX = 128 * 1024
DETAIL_LENGTH_MAX = 300
FIELD_LENGTH_MAX = 120
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

# Structural bounds, checked on the parsed JSON before pydantic: pydantic validates a whole message
# and builds an error per unknown key, so 10,000 keys in 128 KB cost it 10-20 ms; the walk refuses
# them at the first object too wide. Each bound is twice what the largest legal message needs.
_BOUND_HEADROOM = 2
_POLICY_PARAMS_COUNT_MAX = 32  # PolicySet.params; a legal genesis policy has fewer: the known names
# Values (containers included; a key is not a value of its own) of the largest legal messages, in an
# envelope with every provenance field: a genesis with every participant, account, balance (three per
# participant) and policy parameter, and a meter with every reading.
_ENVELOPE_VALUES_COUNT_MAX = 1 + len(Proposal.model_fields) + len(Provenance.model_fields)
_GENESIS_VALUES_COUNT_MAX = (
    len(Genesis.model_fields)
    + _POLICY_PARAMS_COUNT_MAX
    # a participant has a key_fingerprint or a public_key, never both: one field less than the model's
    + PARTICIPANTS_COUNT_MAX * (len(Participant.model_fields) + ACCOUNTS_PER_AGENT_COUNT_MAX)
    + PARTICIPANTS_COUNT_MAX * 3 * (1 + len(Opening.model_fields))
)
_METER_VALUES_COUNT_MAX = len(Meter.model_fields) + READINGS_COUNT_MAX * (1 + len(Reading.model_fields))
LEGAL_VALUES_COUNT_MAX = _ENVELOPE_VALUES_COUNT_MAX + max(_GENESIS_VALUES_COUNT_MAX, _METER_VALUES_COUNT_MAX)
LEGAL_DEPTH_MAX = 5  # envelope > body > participants > participant > accounts
LEGAL_OBJECT_KEYS_COUNT_MAX = _POLICY_PARAMS_COUNT_MAX  # the widest object; a model has fewer fields
LEGAL_STRING_LENGTH_MAX = RATIONALE_LENGTH_MAX  # the longest free text
JSON_VALUES_COUNT_MAX = _BOUND_HEADROOM * LEGAL_VALUES_COUNT_MAX
JSON_DEPTH_MAX = _BOUND_HEADROOM * LEGAL_DEPTH_MAX
JSON_OBJECT_KEYS_COUNT_MAX = _BOUND_HEADROOM * LEGAL_OBJECT_KEYS_COUNT_MAX
JSON_STRING_LENGTH_MAX = _BOUND_HEADROOM * LEGAL_STRING_LENGTH_MAX
# Messages up to this size are not walked: the walk would cost more than orjson's parse of a typical
# 300-450 byte proposal, at 50,000 a second. Such a message cannot hold a string over the bound (it
# and its quotes would take 3 bytes more) nor more than half as many values as bytes; its depth and
# widths go unchecked, but whatever its shape orjson and pydantic refuse it within about 100 µs
# (measured with 1 KB of unknown keys, the costliest shape: pydantic builds an error for each).
STRUCTURE_UNCHECKED_BYTES_MAX = JSON_STRING_LENGTH_MAX + 2
assert (STRUCTURE_UNCHECKED_BYTES_MAX + 1) // 2 <= JSON_VALUES_COUNT_MAX
_ORJSON_DEPTH_MESSAGE = "depth limit exceeded"  # orjson's JSONDecodeError.msg; a unit test pins it

# What ``Proposal.model_validate`` calls, without its per-call wrapper: this runs for every message.
_validate_proposal = Proposal.__pydantic_validator__.validate_python

# Pydantic error types that mean "a bound was exceeded" rather than "the shape is wrong".
_LIMIT_ERROR_TYPES = frozenset({"less_than_equal", "less_than", "too_long", "string_too_long"})


# Structs, not frozen dataclasses: one of the two is built per message (``law.ledger.Entry`` says why).
class DecodeError(msgspec.Struct, frozen=True):
    reason_code: str  # MALFORMED or LIMIT_EXCEEDED
    field: str
    detail: str
    # Best-effort identity for the rejection record, when the JSON had them.
    proposal_id: str | None = None
    agent: str | None = None


class Decoded(msgspec.Struct, frozen=True):
    proposal: Proposal
    signed_bytes: bytes  # canonical bytes the signature covers
    sig: bytes


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def sign(unsigned: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """Return a copy of ``unsigned`` with ``sig`` set; the producer side of the scheme."""
    body = {k: v for k, v in unsigned.items() if k != "sig"}
    return {**body, "sig": signer.sign(canonical_bytes(body))}


def encode(proposal: dict[str, Any]) -> bytes:
    return orjson.dumps(proposal)


def _identifier_or_none(value: object) -> str | None:
    """Keep a hostile message's id or agent for the record only when it is a well-formed identifier."""
    # fullmatch: the pattern's ``$`` would let Python's ``match`` accept a trailing newline
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None


def _identity(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    return _identifier_or_none(obj.get("id")), _identifier_or_none(obj.get("agent"))


# Every C0 and C1 control and DEL, written as a JSON-style escape.
_CONTROL_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str, limit: int = DETAIL_LENGTH_MAX) -> str:
    """Producer-controlled text made safe to store and show: no control character (Postgres text
    refuses NUL; the others garble logs and alerts), bounded length. Cut first: the text may be 128 KB."""
    return text[:limit].translate(_CONTROL_ESCAPES)[:limit]


def _from_validation_error(exc: ValidationError, obj: dict[str, Any]) -> DecodeError:
    first = exc.errors(include_url=False, include_input=False)[0]
    field = printable(".".join(str(part) for part in first["loc"]), FIELD_LENGTH_MAX) or "$"
    reason = "LIMIT_EXCEEDED" if first["type"] in _LIMIT_ERROR_TYPES else "MALFORMED"
    pid, agent = _identity(obj)
    return DecodeError(reason, field, _detail(first), pid, agent)


def _detail(error: ErrorDetails) -> str:
    if error.get("ctx", {}).get("pattern") == TEXT_PATTERN:
        # pydantic would quote the pattern, which says less to a reader than this does
        return "string_pattern_mismatch: text may not hold control characters (U+0000-U+001F, U+007F-U+009F)"
    return printable(f"{error['type']}: {error['msg']}")


JsonPath = tuple[str | int, ...]
Container = dict[str, Any] | list[Any]
Problem = tuple[JsonPath, str]  # where, and which bound
_CONTAINER_TYPES = (dict, list)  # exact types: orjson builds no subclass, and ``type() in`` is the fastest test


def _structure_problem(root: dict[str, Any]) -> Problem | None:
    """The first structural bound the parsed message exceeds, or None. Iterative, so no depth can
    exhaust Python's stack, and it stops at the first bound exceeded."""
    values_count = 1
    stack: list[tuple[Container, JsonPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        values_count += len(node)
        problem = _container_problem(node, path, values_count)
        if problem is not None:
            return problem
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(value, str):
                if len(value) > JSON_STRING_LENGTH_MAX:
                    return (*path, key), f"a string of {len(value)} characters; limit {JSON_STRING_LENGTH_MAX}"
            elif type(value) in _CONTAINER_TYPES:
                stack.append((value, (*path, key)))
    return None


def _container_problem(node: Container, path: JsonPath, values_count: int) -> Problem | None:
    if values_count > JSON_VALUES_COUNT_MAX:
        return (), f"more than {JSON_VALUES_COUNT_MAX} JSON values"
    if len(path) >= JSON_DEPTH_MAX:
        return path, f"nested deeper than {JSON_DEPTH_MAX} levels"
    if not isinstance(node, dict) or not node:
        return None
    if len(node) > JSON_OBJECT_KEYS_COUNT_MAX:
        return path, f"an object of {len(node)} keys; limit {JSON_OBJECT_KEYS_COUNT_MAX}"
    key_length = max(map(len, node))
    if key_length > JSON_STRING_LENGTH_MAX:
        return path, f"a key of {key_length} characters; limit {JSON_STRING_LENGTH_MAX}"
    return None


def _path_field(path: JsonPath) -> str:
    return printable(".".join(str(part) for part in path), FIELD_LENGTH_MAX) or "$"


def _not_json(exc: orjson.JSONDecodeError) -> DecodeError:
    # orjson gives up at 1024 levels, far past the depth bound: the message exceeded that first
    if exc.msg == _ORJSON_DEPTH_MESSAGE:
        return DecodeError("LIMIT_EXCEEDED", "$", f"nested deeper than {JSON_DEPTH_MAX} levels")
    return DecodeError("MALFORMED", "$", printable(f"not JSON: {exc}"))


def _structure_error(obj: dict[str, Any]) -> DecodeError | None:
    problem = _structure_problem(obj)
    if problem is None:
        return None
    return DecodeError("LIMIT_EXCEEDED", _path_field(problem[0]), problem[1], *_identity(obj))


def decode(raw: bytes | None) -> Decoded | DecodeError:
    """Bytes from Kafka to a validated proposal, or the precise reason it is not one."""
    if raw is None:
        return DecodeError("MALFORMED", "$", "empty message (null value)")
    if len(raw) > MESSAGE_BYTES_MAX:
        return DecodeError("LIMIT_EXCEEDED", "$", f"message is {len(raw)} bytes; limit {MESSAGE_BYTES_MAX}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _not_json(exc)
    if not isinstance(obj, dict):
        return DecodeError("MALFORMED", "$", f"expected a JSON object, got {type(obj).__name__}")
    # inline, not in a helper: a call would cost the typical proposal more than this comparison
    if len(raw) > STRUCTURE_UNCHECKED_BYTES_MAX and (error := _structure_error(obj)) is not None:
        return error
    # The parsed object itself is validated (no copy): ``sig`` last and always present, None when
    # missing, then removed again for the canonical bytes it signs.
    sig_hex = obj["sig"] = obj.pop("sig", None)
    try:
        proposal: Proposal = _validate_proposal(obj)
    except ValidationError as exc:
        return _from_validation_error(exc, obj)
    del obj["sig"]
    assert isinstance(sig_hex, str)  # guaranteed by the model's Signature pattern
    return Decoded(proposal, canonical_bytes(obj), bytes.fromhex(sig_hex))
