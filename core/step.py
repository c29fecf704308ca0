"""The one ledger step: raw bytes at an offset in, one entry or one rejection out.

decode -> decide -> seal -> apply. The validator, replay, the benchmark, the test oracle and every
fold of raw messages call ``LedgerStep.step``; nothing else decodes, decides or seals. Pure: it holds
the state, the chain's head hash and the keyring, and touches no clock, network or database.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.keyring import Keyring
from core.rows import Rejection
from law import Accepted, State, apply, decide
from law.ledger import GENESIS_PREV_HASH, Entry, seal
from law.state import consume
from schemas.codec import Decoded, DecodeError, decode


@dataclass
class LedgerStep:
    state: State
    keyring: Keyring
    version: str
    head_hash: bytes = GENESIS_PREV_HASH

    def step(self, raw: bytes | None, offset: int) -> Entry | Rejection:
        """Decide the message read at ``offset``; fold an accepted one into the state and the chain."""
        decoded = decode(raw)
        if isinstance(decoded, DecodeError):
            return self._decode_rejection(offset, decoded)
        decision = decide(self.state, decoded, offset, self.keyring)
        if not isinstance(decision, Accepted):
            nonce = decoded.proposal.nonce if decision.consumes_nonce else None
            if nonce is not None:
                consume(self.state, decoded.proposal.agent, nonce)
            return self._law_rejection(offset, decoded, decision.reason_code, decision.detail, decision.field, nonce)
        proposal_json, sig = decoded.signed_bytes.decode(), decoded.sig.hex()
        entry = seal(self.head_hash, self.state.seq_next, offset, decision, self.version, proposal_json, sig)
        apply(self.state, decision)
        self.head_hash = entry.hash
        return entry

    def _decode_rejection(self, offset: int, e: DecodeError) -> Rejection:
        return Rejection(
            source_offset=offset,
            proposal_id=e.proposal_id,
            agent=e.agent,
            kind=None,
            reason_code=e.reason_code,
            field=e.field,
            detail=e.detail,
            tick=None,
            validator_version=self.version,
            policy_version=self.state.policy_version,
            provenance_json=None,
        )

    def _law_rejection(
        self, offset: int, d: Decoded, code: str, detail: str, field: str | None, nonce: int | None
    ) -> Rejection:
        p = d.proposal
        return Rejection(
            source_offset=offset,
            proposal_id=p.id,
            agent=p.agent,
            kind=p.body.kind,
            reason_code=code,
            field=field,
            detail=detail,
            tick=p.tick,
            validator_version=self.version,
            policy_version=self.state.policy_version,
            provenance_json=p.provenance.model_dump_json(exclude_none=True) if p.provenance else None,
            nonce=nonce,
        )
