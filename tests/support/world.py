"""A tiny in-memory grid for law tests: signs proposals like an agent and folds decisions like the
validator, with no Kafka or Postgres."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from law import Accepted, Rejected, State, apply, decide
from law.ledger import GENESIS_PREV_HASH, Entry, seal
from schemas.codec import Decoded, decode, encode, key_fingerprint, sign
from schemas.keys import derive_key, keys_for

SECRET = b"test-secret-not-for-production"
OPERATOR = "operator"
AGENTS = ("solar", "battery", "hospital", "datacentre")


def account(agent: str) -> str:
    return f"{agent}:main"


def participant(agent: str, role: str = "participant", **extra: Any) -> dict[str, Any]:
    return {
        "agent": agent,
        "role": role,
        "key_fingerprint": key_fingerprint(derive_key(SECRET, agent)),
        "accounts": [account(agent)],
        **extra,
    }


def genesis_body(agents: tuple[str, ...] = AGENTS, opening: int = 1_000_000, **policy: int) -> dict[str, Any]:
    participants = [participant(OPERATOR, "operator")]
    participants += [participant(a, emits_carbon=(a == "solar"), critical_load=(a == "hospital")) for a in agents]
    balances = [
        {"account": account(a), "resource": r, "quantity": opening}
        for a in agents
        for r in ("energy", "water", "credits")
    ]
    return {"kind": "genesis", "participants": participants, "balances": balances, "policy": policy}


@dataclass
class World:
    state: State = field(default_factory=State)
    keys: dict[str, bytes] = field(default_factory=lambda: keys_for(SECRET, (OPERATOR, *AGENTS, "newcomer")))
    entries: list[Entry] = field(default_factory=list)
    offset: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]
    ids: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def envelope(
        self, agent: str, body: dict[str, Any], *, pid: str | None = None, ttl: int = 10, tick: int | None = None
    ) -> dict[str, Any]:
        t = self.state.tick if tick is None else tick
        unsigned = {
            "v": 1,
            "id": pid or f"p{next(self.ids)}",
            "agent": agent,
            "tick": t,
            "expires_tick": t + ttl,
            "body": body,
        }
        return sign(unsigned, derive_key(SECRET, agent))

    def submit_raw(self, raw: bytes) -> Accepted | Rejected:
        offset = next(self.offset)
        decoded = decode(raw)
        if not isinstance(decoded, Decoded):
            return Rejected(decoded.reason_code, decoded.detail, decoded.field)
        decision = decide(self.state, decoded, offset, self.keys)
        if isinstance(decision, Accepted):
            prev = self.entries[-1].hash if self.entries else GENESIS_PREV_HASH
            self.entries.append(
                seal(prev, self.state.seq_next, offset, decision, "test", decoded.signed_bytes.decode())
            )
            apply(self.state, decision)
        return decision

    def submit(self, agent: str, body: dict[str, Any], **kw: Any) -> Accepted | Rejected:
        return self.submit_raw(encode(self.envelope(agent, body, **kw)))

    def start(self, **policy: int) -> World:
        decision = self.submit(OPERATOR, genesis_body(**policy))
        assert isinstance(decision, Accepted), decision
        return self

    def meter(self, tick: int, readings: list[dict[str, Any]]) -> Accepted | Rejected:
        return self.submit(OPERATOR, {"kind": "meter", "readings": readings}, tick=tick)
