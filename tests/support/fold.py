"""The pure fold of the law over a list of raw messages: what a correct validator must have written."""

from __future__ import annotations

from dataclasses import dataclass, field

from law import Accepted, State, apply, decide
from law.ledger import GENESIS_PREV_HASH, Entry, seal
from schemas.codec import Decoded, decode
from schemas.keys import keys_for


@dataclass
class Expected:
    entries: list[Entry] = field(default_factory=list)
    rejections: dict[int, str] = field(default_factory=dict)  # offset -> reason
    state: State = field(default_factory=State)


def fold(raws: list[bytes], secret: bytes, agents: list[str], version: str, first_offset: int = 0) -> Expected:
    keys = keys_for(secret, agents)
    out = Expected()
    for offset, raw in enumerate(raws, start=first_offset):
        decoded = decode(raw)
        if not isinstance(decoded, Decoded):
            out.rejections[offset] = decoded.reason_code
            continue
        decision = decide(out.state, decoded, offset, keys)
        if isinstance(decision, Accepted):
            prev = out.entries[-1].hash if out.entries else GENESIS_PREV_HASH
            out.entries.append(seal(prev, out.state.seq_next, offset, decision, version, decoded.signed_bytes.decode()))
            apply(out.state, decision)
        else:
            out.rejections[offset] = decision.reason_code
    return out
