"""The validator's side of ``law.decide.Keys``: HMAC keys derived from its root secret, memoised, and
the operators it trusts to found a ledger.

Deciding a proposal costs one dictionary lookup; a key is derived once per (agent, generation).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.config import Settings
from core.identities import operator_public_keys
from schemas.keys import derive_key
from schemas.signing import key_fingerprint

# Registered agents times their key generations; far above any real registry, so the memo is cleared
# (and refilled) only if something derives keys for ever more names.
MEMO_COUNT_MAX = 100_000


class Keyring:
    def __init__(self, secret: bytes, founders: Iterable[str]) -> None:
        self._secret = secret
        self.founders = frozenset(founders)
        self._memo: dict[tuple[str, int], tuple[bytes, str]] = {}

    def hmac_key(self, agent: str, generation: int) -> tuple[bytes, str]:
        found = self._memo.get((agent, generation))
        if found is None:
            if len(self._memo) >= MEMO_COUNT_MAX:
                self._memo.clear()
            key = derive_key(self._secret, agent, generation)
            found = self._memo[(agent, generation)] = (key, key_fingerprint(key))
        return found


def founders(settings: Settings) -> frozenset[str]:
    """The operators' public keys the validator trusts to sign a genesis."""
    if settings.founding_operators:
        return frozenset(k.strip() for k in settings.founding_operators.split(",") if k.strip())
    return frozenset(operator_public_keys(settings.home).values())


def validator_keyring(settings: Settings, secret: bytes) -> Keyring:
    return Keyring(secret, founders(settings))
