"""A tiny in-memory grid for law tests: signs proposals like an agent and decides them with the
validator's own ``LedgerStep``, with no Kafka or Postgres."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from core.keyring import Keyring
from core.rows import ConsumedNonce, Rejection
from core.step import LedgerStep
from law import Accepted, Rejected, State, apply
from law.ledger import Entry, as_accepted
from law.state import consume
from schemas.codec import encode
from schemas.envelope import build
from schemas.keys import derive_key
from schemas.signing import Ed25519Signer, HmacSigner, Signer, key_fingerprint
from schemas.types import RESOURCES
from streams.workload import synthetic_operator

SECRET = b"test-secret-not-for-production"
OPERATOR = "operator"
METER = "meter"
AGENTS = ("solar", "battery", "hospital", "datacentre")
OPERATOR_SIGNER = synthetic_operator(SECRET)


def keyring() -> Keyring:
    """The validator's keys for these tests: SECRET's derived keys, and OPERATOR as the founder."""
    return Keyring(SECRET, [OPERATOR_SIGNER.public_key])


# Names these tests registered as operators (``participant(name, "operator")``): they sign with
# ``operator_key(name)``, everyone else with an HMAC key.
_OPERATOR_NAMES = {OPERATOR}


def operator_key(agent: str) -> Ed25519Signer:
    """A fixed Ed25519 key per name (OPERATOR's is the founder's)."""
    return OPERATOR_SIGNER if agent == OPERATOR else synthetic_operator(SECRET + agent.encode())


def signer(agent: str) -> Signer:
    """A registered operator's Ed25519 key, else the agent's HMAC key derived from SECRET."""
    return operator_key(agent) if agent in _OPERATOR_NAMES else HmacSigner(derive_key(SECRET, agent))


def account(agent: str) -> str:
    return f"{agent}:main"


def participant(agent: str, role: str = "participant", **extra: Any) -> dict[str, Any]:
    if role == "operator":
        _OPERATOR_NAMES.add(agent)
        key = {"public_key": operator_key(agent).public_key}
    else:
        key = {"key_fingerprint": key_fingerprint(derive_key(SECRET, agent))}
    return {"agent": agent, "role": role, **key, "accounts": [account(agent)], **extra}


def genesis_body(agents: tuple[str, ...] = AGENTS, opening: int = 1_000_000, **policy: int) -> dict[str, Any]:
    participants = [participant(OPERATOR, "operator"), participant(METER, "meter")]
    participants += [participant(a, emits_carbon=(a == "solar"), critical_load=(a == "hospital")) for a in agents]
    balances = [{"account": account(a), "resource": r, "quantity": opening} for a in agents for r in RESOURCES]
    return {"kind": "genesis", "participants": participants, "balances": balances, "policy": policy}


@dataclass
class World:
    state: State = field(default_factory=State)
    entries: list[Entry] = field(default_factory=list)
    # Everything the state is folded from, in offset order: entries, and nonces that refusals used up.
    decided: list[Entry | ConsumedNonce] = field(default_factory=list)
    offset: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]
    ids: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]
    nonces: dict[str, int] = field(default_factory=dict)  # the last nonce each agent signed
    raws: list[bytes] = field(default_factory=list)  # every message submitted, in offset order
    step: LedgerStep = field(init=False)

    def __post_init__(self) -> None:
        self.step = LedgerStep(self.state, keyring(), "test")

    def envelope(
        self,
        agent: str,
        body: dict[str, Any],
        *,
        pid: str | None = None,
        ttl: int = 10,
        tick: int | None = None,
        nonce: int | None = None,
    ) -> dict[str, Any]:
        """Signed as ``agent`` with its next nonce (or ``nonce``, to replay or skip ahead)."""
        t = self.state.tick if tick is None else tick
        if nonce is None:
            nonce = self.nonces.get(agent, 0) + 1
        self.nonces[agent] = max(nonce, self.nonces.get(agent, 0))
        return build(agent, body, t, ttl, signer(agent), pid or f"p{next(self.ids)}", nonce)

    def submit_raw(self, raw: bytes) -> Accepted | Rejected:
        """The law's decision on ``raw`` (as the validator's step took it)."""
        self.raws.append(raw)
        result = self.step.step(raw, next(self.offset))
        if isinstance(result, Rejection):
            if result.nonce is not None and result.agent is not None:
                self.decided.append(ConsumedNonce(result.source_offset, result.agent, result.nonce))
            return Rejected(result.reason_code, result.detail, result.field, result.nonce is not None)
        self.entries.append(result)
        self.decided.append(result)
        return as_accepted(result)

    def submit(self, agent: str, body: dict[str, Any], **kw: Any) -> Accepted | Rejected:
        return self.submit_raw(encode(self.envelope(agent, body, **kw)))

    def start(self, **policy: int) -> World:
        decision = self.submit(OPERATOR, genesis_body(**policy))
        assert isinstance(decision, Accepted), decision
        return self

    def meter(self, tick: int, readings: list[dict[str, Any]]) -> Accepted | Rejected:
        return self.submit(METER, {"kind": "meter", "readings": readings}, tick=tick)


def refold(decided: list[Entry | ConsumedNonce], state: State | None = None) -> State:
    """The state the ledger's entries and the refusals' used-up nonces give, folded in order."""
    state = state if state is not None else State()
    for item in decided:
        if isinstance(item, ConsumedNonce):
            consume(state, item.agent, item.nonce)
        else:
            apply(state, as_accepted(item))
    return state
