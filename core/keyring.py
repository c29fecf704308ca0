"""The keys the law checks signatures with: fingerprint -> HMAC key for the registered agents.

Rebuilt only when the registry grows, so deciding a proposal costs a dictionary lookup. Before
genesis nobody is registered, so the keys are those of the agents the genesis names; the law still
checks that its signer is an operator it registers.
"""

from __future__ import annotations

from law.decide import Keys
from law.state import State
from schemas.codec import Decoded
from schemas.keys import keys_for
from schemas.proposal import Genesis


class Keyring:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._keys: dict[str, bytes] = {}
        self._agent_count = -1

    def keys(self, state: State, decoded: Decoded) -> Keys:
        body = decoded.proposal.body
        if not state.agents and isinstance(body, Genesis):
            return keys_for(self._secret, [p.agent for p in body.participants])
        if len(state.agents) != self._agent_count:
            self._keys = keys_for(self._secret, state.agents)
            self._agent_count = len(state.agents)
        return self._keys
