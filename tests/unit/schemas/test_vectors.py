"""The published vectors (``schemas/vectors/proposals.json``) are what the Python codec does, byte for byte."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.codec import Decoded, canonical_bytes, decode
from schemas.keys import derive_key
from schemas.proposal import GOVERNANCE_KINDS, TRADE_KINDS
from schemas.signing import ed25519_valid, hmac_valid
from tests.support import vectors

PUBLISHED: dict[str, Any] = orjson.loads(vectors.VECTORS_PATH.read_bytes())
CASES = PUBLISHED["vectors"]


def test_the_published_file_is_the_generated_one() -> None:
    assert vectors.VECTORS_PATH.read_bytes() == vectors.rendered(), "run python -m tests.support.vectors"


def test_every_kind_and_edge_case_has_a_vector() -> None:
    kinds = {v["kind"] for v in CASES}
    assert kinds >= TRADE_KINDS | GOVERNANCE_KINDS | {"meter", "genesis"}
    names = {v["name"] for v in CASES}
    assert {"unicode", "big_integers", "provenance_and_key_order", "rekeyed_generation_1"} <= names


@pytest.mark.parametrize("case", CASES, ids=[v["name"] for v in CASES])
def test_a_vector_decodes_to_its_canonical_bytes_and_verifies(case: dict[str, Any]) -> None:
    canonical = bytes.fromhex(case["canonical_hex"])
    assert canonical == case["canonical_utf8"].encode() == canonical_bytes(case["input"])
    decoded = decode(case["message"].encode())
    assert isinstance(decoded, Decoded), decoded
    assert decoded.signed_bytes == canonical and decoded.sig.hex() == case["sig"]
    key = case["key"]
    if key["algorithm"] == "ed25519":
        assert ed25519_valid(canonical, decoded.sig, key["public_key_hex"])
        assert key["public_key_hex"] == vectors.operator_signer().public_key
    else:
        derived = derive_key(
            bytes.fromhex(PUBLISHED["root_secret_hex"]), case["input"]["agent"], int(key["generation"])
        )
        assert derived.hex() == key["key_hex"] and hmac_valid(canonical, decoded.sig, derived)
    assert not hmac_valid(canonical + b" ", decoded.sig, bytes.fromhex(key.get("key_hex", "00")))


def test_the_edge_cases_pin_what_a_canonical_encoder_must_do() -> None:
    by_name = {v["name"]: v["canonical_utf8"] for v in CASES}
    assert "Wärme für 🏥" in by_name["unicode"]  # UTF-8 as is, never \\u escapes
    assert '\\"quoted\\" \\\\ back <b>&amp;</b> \u2028' in by_name["unicode"]  # only " and \\ escaped
    assert f'"quantity":{10**15}' in by_name["big_integers"] and f'"nonce":{2**53 - 1}' in by_name["big_integers"]
    keys = list(orjson.loads(by_name["provenance_and_key_order"]))
    assert keys == sorted(keys) and " " not in by_name["transfer"].replace("evening top-up", "")
