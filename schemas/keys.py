"""Agent keys derived from one secret, so the validator holds a single secret instead of a key file.

key(agent) = HMAC-SHA256(secret, "grid-agent-key:" + agent). The ledger records only the key's
fingerprint; the validator rebuilds the fingerprint -> key map from the registered agents.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from schemas.codec import key_fingerprint

KEY_CONTEXT = b"grid-agent-key:"


def derive_key(secret: bytes, agent: str) -> bytes:
    return hmac.new(secret, KEY_CONTEXT + agent.encode(), hashlib.sha256).digest()


def keys_for(secret: bytes, agents: Iterable[str]) -> dict[str, bytes]:
    """fingerprint -> key for the given agents."""
    keys = (derive_key(secret, agent) for agent in agents)
    return {key_fingerprint(key): key for key in keys}
