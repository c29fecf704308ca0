"""HMAC keys of participants and the meter, derived from the validator's root secret.

key(agent, 0) = HMAC-SHA256(secret, "grid-agent-key:" + agent); a rekey moves the agent to the next
generation, key(agent, g) = HMAC-SHA256(secret, "grid-agent-key:" + agent + NUL + g). Only the
validator (and an operator command on its host) holds the secret; each participant process is handed
its own key alone (``gridgov keys issue``). The ledger records only the key's fingerprint, and which
generation is in force from which seq, so replay verifies every entry with the key of its time.
"""

from __future__ import annotations

import hashlib
import hmac

KEY_CONTEXT = b"grid-agent-key:"
GENERATION_SEPARATOR = b"\x00"  # not in an agent id, so (agent, generation) pairs cannot collide


def derive_key(secret: bytes, agent: str, generation: int = 0) -> bytes:
    assert generation >= 0, generation
    label = KEY_CONTEXT + agent.encode()
    if generation:
        label += GENERATION_SEPARATOR + str(generation).encode()
    return hmac.new(secret, label, hashlib.sha256).digest()
