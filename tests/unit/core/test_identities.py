"""Operator and validator keys: sealed under a password, never replaced, public keys readable alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.identities import (
    IdentityError,
    create_operator,
    load_operator,
    operator_public_key,
    operator_public_keys,
    operator_signer,
    validator_signer,
)
from schemas.signing import ed25519_valid


def test_a_sealed_key_opens_only_with_its_password(tmp_path: Path) -> None:
    alice = create_operator(tmp_path, "alice", "correct horse battery")
    assert load_operator(tmp_path, "alice", "correct horse battery").public_key == alice.public_key
    for wrong in ("wrong", None):
        with pytest.raises(IdentityError):
            load_operator(tmp_path, "alice", wrong)
    text = (tmp_path / "operators" / "alice.key").read_text()
    assert "PRIVATE KEY" not in text and alice.public_key not in text


def test_key_files_are_private_and_never_replaced(tmp_path: Path) -> None:
    create_operator(tmp_path, "bob")
    for path in (tmp_path / "operators").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (tmp_path / "operators").stat().st_mode & 0o777 == 0o700
    with pytest.raises(IdentityError, match="already has a key"):
        create_operator(tmp_path, "bob")


def test_public_keys_are_read_without_the_private_keys(tmp_path: Path) -> None:
    carol = create_operator(tmp_path, "carol", "a long password here")
    dave = operator_signer(tmp_path, "dave")  # created on first use, unsealed
    assert operator_public_keys(tmp_path) == {"carol": carol.public_key, "dave": dave.public_key}
    assert operator_public_key(tmp_path, "carol") == carol.public_key
    assert operator_signer(tmp_path, "dave").public_key == dave.public_key


def test_a_seed_gives_a_fixed_key_and_signatures_verify(tmp_path: Path) -> None:
    one = create_operator(tmp_path / "a", "op", seed=bytes(32))
    two = create_operator(tmp_path / "b", "op", seed=bytes(32))
    assert one.public_key == two.public_key
    sig = bytes.fromhex(one.sign(b"resume the breaker"))
    assert ed25519_valid(b"resume the breaker", sig, two.public_key)
    assert not ed25519_valid(b"trip the breaker", sig, two.public_key)


def test_the_validator_key_is_created_once(tmp_path: Path) -> None:
    assert validator_signer(tmp_path).public_key == validator_signer(tmp_path).public_key


@pytest.mark.parametrize("name", ["../escape", "", "a b", "x" * 65])
def test_names_are_agent_ids(tmp_path: Path, name: str) -> None:
    with pytest.raises(IdentityError):
        create_operator(tmp_path, name)
