"""Wire schemas: strict refusals, precise reasons, and JSON Schema files in step with the models."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import MESSAGE_BYTES_MAX, Decoded, DecodeError, decode, encode, sign
from schemas.export import JSON_DIR, MODELS, render
from schemas.proposal import ENVELOPE_VERSION
from schemas.signing import HmacSigner
from schemas.types import QUANTITY_MAX

KEY = HmacSigner(b"k" * 32)


def transfer(quantity: Any) -> dict[str, Any]:
    body = {
        "kind": "transfer",
        "from_account": "a:main",
        "to_account": "b:main",
        "resource": "energy",
        "quantity": quantity,
    }
    return {"v": ENVELOPE_VERSION, "id": "p1", "agent": "a", "nonce": 1, "tick": 1, "expires_tick": 3, "body": body}


def test_a_valid_proposal_decodes_with_its_signed_bytes() -> None:
    decoded = decode(encode(sign(transfer(5), KEY)))
    assert isinstance(decoded, Decoded)
    assert decoded.proposal.body.kind == "transfer"
    assert orjson.loads(decoded.signed_bytes) == transfer(5)


@settings(max_examples=200)
@given(
    st.one_of(
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),
    )
)
def test_non_integer_quantities_are_malformed(value: Any) -> None:
    raw = (
        orjson.dumps(sign(transfer(value), KEY))
        if not (isinstance(value, float) and not math.isfinite(value))
        else (encode(sign(transfer(0), KEY)).replace(b'"quantity":0', b'"quantity":NaN'))
    )
    result = decode(raw)
    assert isinstance(result, DecodeError)
    assert result.reason_code == "MALFORMED"


@settings(max_examples=200)
@given(st.integers(min_value=QUANTITY_MAX + 1, max_value=2**64 - 1))
def test_out_of_range_quantities_exceed_the_limit(value: int) -> None:
    result = decode(encode(sign(transfer(value), KEY)))
    assert isinstance(result, DecodeError)
    assert (result.reason_code, result.field) == ("LIMIT_EXCEEDED", "body.transfer.quantity")
    assert (result.proposal_id, result.agent) == ("p1", "a")


@given(st.integers(min_value=-(2**63), max_value=0))
def test_zero_and_negative_quantities_are_malformed(value: int) -> None:
    result = decode(encode(sign(transfer(value), KEY)))
    assert isinstance(result, DecodeError) and result.reason_code == "MALFORMED"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(decode(raw), Decoded | DecodeError)


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (b"", "MALFORMED", "$"),
        (None, "MALFORMED", "$"),
        (b"[1,2]", "MALFORMED", "$"),
        (b"x" * (MESSAGE_BYTES_MAX + 1), "LIMIT_EXCEEDED", "$"),
        (b"{" + b" " * 1_000_000 + b"}", "LIMIT_EXCEEDED", "$"),
        (orjson.dumps({**sign(transfer(1), KEY), "surprise": 1}), "MALFORMED", "surprise"),
        (orjson.dumps({**transfer(1), "sig": "zz"}), "MALFORMED", "sig"),
        (orjson.dumps(sign({**transfer(1), "body": {"kind": "steal"}}, KEY)), "MALFORMED", "body"),
    ],
)
def test_hostile_messages_get_a_precise_reason(raw: bytes | None, code: str, field: str) -> None:
    result = decode(raw)
    assert isinstance(result, DecodeError)
    assert (result.reason_code, result.field) == (code, field)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_json_schema_files_match_the_models(name: str) -> None:
    path = JSON_DIR / f"{name}.schema.json"
    assert path.read_text() == render(MODELS[name]), f"{path} drifted: run `python -m schemas.export`"
