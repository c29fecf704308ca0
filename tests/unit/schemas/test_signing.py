"""HMAC for participants and the meter, Ed25519 for operators: each verifies only its own signatures."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from schemas.keys import derive_key
from schemas.signing import Ed25519Signer, HmacSigner, ed25519_valid, hmac_sha256, hmac_valid
from streams.workload import synthetic_operator

OPERATOR: Ed25519Signer = synthetic_operator(b"signing-test")


@given(st.binary(max_size=512), st.binary(min_size=1, max_size=512))
def test_a_signature_covers_exactly_its_message(message: bytes, other: bytes) -> None:
    key = derive_key(b"root", "solar")
    hmac_sig = bytes.fromhex(HmacSigner(key).sign(message))
    ed_sig = bytes.fromhex(OPERATOR.sign(message))
    assert hmac_valid(message, hmac_sig, key) and ed25519_valid(message, ed_sig, OPERATOR.public_key)
    if other != message:
        assert not hmac_valid(other, hmac_sig, key)
        assert not ed25519_valid(other, ed_sig, OPERATOR.public_key)


@given(st.lists(st.binary(max_size=100), min_size=1, max_size=4), st.binary(max_size=512))
def test_the_cached_keyed_state_gives_the_standard_hmac_for_every_key_in_any_order(
    keys: list[bytes], message: bytes
) -> None:
    for key in keys + keys[::-1]:  # reused states are copied, never advanced
        assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


def test_an_hmac_signature_is_no_operator_signature_and_bad_keys_do_not_raise() -> None:
    message = b"policy_set"
    hmac_sig = bytes.fromhex(HmacSigner(derive_key(b"root", "operator")).sign(message))
    assert not ed25519_valid(message, hmac_sig, OPERATOR.public_key)
    assert not ed25519_valid(message, bytes(64), OPERATOR.public_key)
    assert not ed25519_valid(message, bytes.fromhex(OPERATOR.sign(message)), "00" * 31)
    assert not ed25519_valid(message, bytes.fromhex(OPERATOR.sign(message)), "zz")
