"""Canonical encoding, signing and decoding of proposals.

Canonical encoding: the JSON object without ``sig``, keys sorted at every level, no spaces, UTF-8
(orjson with ``OPT_SORT_KEYS``). The signature is HMAC-SHA256 over those bytes with the agent's key.

Why HMAC and not Ed25519: the validator must authenticate 50,000 proposals a second on one core of a
2-core machine. HMAC-SHA256 over ~400 bytes costs about 1 µs; an Ed25519 verification about 50 µs,
which alone would cap the validator near 20,000/s. The price is that the validator holds each
agent's secret key; the ledger only ever stores the key's fingerprint.

Decoding never raises for bad input: every failure is a ``DecodeError`` with a machine-readable
reason and the offending field, so the validator can record it as a rejection and move on.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.proposal import Proposal
from schemas.types import IDENTIFIER_PATTERN

# A proposal is a few hundred bytes; a genesis with 256 participants about 60 KB. Anything larger is
# refused before parsing, so a hostile 1 MB message costs a length check, not a parse.
MESSAGE_BYTES_MAX = 128 * 1024
DETAIL_LENGTH_MAX = 300
FIELD_LENGTH_MAX = 120
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

# Pydantic error types that mean "a bound was exceeded" rather than "the shape is wrong".
_LIMIT_ERROR_TYPES = frozenset({"less_than_equal", "less_than", "too_long", "string_too_long"})


@dataclass(frozen=True, slots=True)
class DecodeError:
    reason_code: str  # MALFORMED or LIMIT_EXCEEDED
    field: str
    detail: str
    # Best-effort identity for the rejection record, when the JSON had them.
    proposal_id: str | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    proposal: Proposal
    signed_bytes: bytes  # canonical bytes the signature covers
    sig: bytes


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def sign(unsigned: dict[str, Any], key: bytes) -> dict[str, Any]:
    """Return a copy of ``unsigned`` with ``sig`` set; the producer side of the scheme."""
    body = {k: v for k, v in unsigned.items() if k != "sig"}
    sig = hmac.new(key, canonical_bytes(body), hashlib.sha256).hexdigest()
    return {**body, "sig": sig}


def signature_valid(signed_bytes: bytes, sig: bytes, key: bytes) -> bool:
    expected = hmac.new(key, signed_bytes, hashlib.sha256).digest()
    return hmac.compare_digest(expected, sig)


def key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:32]


def encode(proposal: dict[str, Any]) -> bytes:
    return orjson.dumps(proposal)


def _identifier_or_none(value: object) -> str | None:
    """Keep a hostile message's id or agent for the record only when it is a well-formed identifier."""
    return value if isinstance(value, str) and _IDENTIFIER.match(value) else None


def _identity(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    return _identifier_or_none(obj.get("id")), _identifier_or_none(obj.get("agent"))


def printable(text: str, limit: int = DETAIL_LENGTH_MAX) -> str:
    """Producer-controlled text made safe to store: no NUL (Postgres text refuses it), bounded length."""
    return text.replace("\x00", "\\u0000")[:limit]


def _from_validation_error(exc: ValidationError, obj: dict[str, Any]) -> DecodeError:
    first = exc.errors(include_url=False, include_input=False)[0]
    field = printable(".".join(str(part) for part in first["loc"]), FIELD_LENGTH_MAX) or "$"
    reason = "LIMIT_EXCEEDED" if first["type"] in _LIMIT_ERROR_TYPES else "MALFORMED"
    detail = printable(f"{first['type']}: {first['msg']}")
    pid, agent = _identity(obj)
    return DecodeError(reason, field, detail, pid, agent)


def decode(raw: bytes | None) -> Decoded | DecodeError:
    """Bytes from Kafka to a validated proposal, or the precise reason it is not one."""
    if raw is None:
        return DecodeError("MALFORMED", "$", "empty message (null value)")
    if len(raw) > MESSAGE_BYTES_MAX:
        return DecodeError("LIMIT_EXCEEDED", "$", f"message is {len(raw)} bytes; limit {MESSAGE_BYTES_MAX}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DecodeError("MALFORMED", "$", printable(f"not JSON: {exc}"))
    if not isinstance(obj, dict):
        return DecodeError("MALFORMED", "$", f"expected a JSON object, got {type(obj).__name__}")
    sig_hex = obj.pop("sig", None)
    try:
        proposal = Proposal.model_validate({**obj, "sig": sig_hex})
    except ValidationError as exc:
        return _from_validation_error(exc, obj)
    assert isinstance(sig_hex, str)  # guaranteed by the model's Hex64 pattern
    return Decoded(proposal, canonical_bytes(obj), bytes.fromhex(sig_hex))
