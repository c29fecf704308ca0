"""Synthetic proposal streams for benchmarks and tests: a genesis, then a deterministic (seeded) mix of
valid trades, meter readings and hostile input, each tagged with the reason the law should give."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.codec import encode
from schemas.envelope import build
from schemas.keys import derive_key
from schemas.signing import Ed25519Signer, HmacSigner, Signer, key_fingerprint
from schemas.types import RESOURCES

OPERATOR = "operator"
METER = "meter"
_OPERATOR_SEED_CONTEXT = b"grid-synthetic-operator:"
OPENING_UNITS = 10**12
TICK_EVERY_COUNT = 1_000  # one meter reading per this many proposals advances the grid clock
TTL_TICKS = 10


@dataclass(frozen=True, slots=True)
class Message:
    raw: bytes
    expect: str  # "ACCEPTED" or the reason code the law should give (None-equivalent "?" when state-dependent)


def agent_names(count: int) -> list[str]:
    return [f"agent{i:03d}" for i in range(count)]


def synthetic_operator(secret: bytes) -> Ed25519Signer:
    """The operator of synthetic streams: a fixed key per secret, so a benchmark or a test can name it
    in ``GRID_FOUNDING_OPERATORS`` and the same stream always hashes alike. Never a real operator."""
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(synthetic_operator_seed(secret)))


def synthetic_operator_seed(secret: bytes) -> bytes:
    """The synthetic operator's private key bytes, for a test that gives it a key file."""
    return hashlib.sha256(_OPERATOR_SEED_CONTEXT + secret).digest()


def stream_signer(secret: bytes, agent: str) -> Signer:
    """The key ``agent`` signs with in a synthetic stream: the operator's Ed25519 key, else the agent's
    HMAC key derived from ``secret``."""
    return synthetic_operator(secret) if agent == OPERATOR else HmacSigner(derive_key(secret, agent))


def genesis(secret: bytes, agents: list[str], pid: str = "genesis", policy: dict[str, int] | None = None) -> bytes:
    """The genesis, signed by the synthetic operator with nonce 1 (its first proposal on an empty
    ledger): the operator, the meter and ``agents`` with their opening balances."""
    operator = synthetic_operator(secret)
    participants = [
        {"agent": OPERATOR, "role": "operator", "public_key": operator.public_key, "accounts": [f"{OPERATOR}:main"]},
        _participant(secret, METER, "meter"),
        *(_participant(secret, a, "participant") for a in agents),
    ]
    balances = [{"account": f"{a}:main", "resource": r, "quantity": OPENING_UNITS} for a in agents for r in RESOURCES]
    body = {"kind": "genesis", "participants": participants, "balances": balances, "policy": policy or {}}
    return encode(_signed(operator, OPERATOR, pid, 1, 0, body))


def _participant(secret: bytes, agent: str, role: str) -> dict[str, Any]:
    fingerprint = key_fingerprint(derive_key(secret, agent))
    return {"agent": agent, "role": role, "key_fingerprint": fingerprint, "accounts": [f"{agent}:main"]}


def _signed(
    signer: Signer, agent: str, pid: str, nonce: int, tick: int, body: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return build(agent, body, tick, TTL_TICKS, signer, pid, nonce, extra.get("provenance"))


class Workload:
    """A seeded stream: ``messages(count)`` after ``genesis``. Valid fraction about 85 %."""

    def __init__(self, secret: bytes, agent_count: int = 20, seed: int = 1, run_id: str = "w") -> None:
        self.secret, self.rng, self.run_id = secret, random.Random(seed), run_id
        self.agents = agent_names(agent_count)
        self.tick = 0
        self.index = 0  # ids keep counting across calls to messages()
        self.offers: list[tuple[str, str]] = []  # (offer id, seller)
        self.accepted_ids: list[tuple[str, bytes]] = []
        self.nonces: dict[str, int] = {OPERATOR: 1}  # the genesis used the operator's first
        self.signers: dict[str, Signer] = {}

    def signer(self, agent: str) -> Signer:
        found = self.signers.get(agent)
        if found is None:
            found = self.signers[agent] = stream_signer(self.secret, agent)
        return found

    def _sign(self, agent: str, pid: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return _signed(self.signer(agent), agent, pid, self.next_nonce(agent), self.tick, body, **extra)

    def next_nonce(self, agent: str) -> int:
        """The agent's next nonce in this stream (callers adding their own messages use it too)."""
        self.nonces[agent] = self.nonces.get(agent, 0) + 1
        return self.nonces[agent]

    def genesis(self) -> bytes:
        return genesis(self.secret, self.agents, f"{self.run_id}-genesis")

    def messages(self, count: int) -> Iterator[Message]:
        for i in range(self.index, self.index + count):
            self.index = i + 1
            if i and i % TICK_EVERY_COUNT == 0:
                yield self._meter(i)
            else:
                yield self._one(i)

    def _meter(self, i: int) -> Message:
        self.tick += 1
        readings = [
            {
                "account": f"{a}:main",
                "resource": "energy",
                "produced": self.rng.randrange(0, 5000),
                "consumed": self.rng.randrange(0, 5000),
            }
            for a in self.rng.sample(self.agents, k=min(8, len(self.agents)))
        ]
        body = {"kind": "meter", "readings": readings}
        pid = f"{self.run_id}-{i}"
        return Message(encode(self._sign(METER, pid, body)), "ACCEPTED")

    def _one(self, i: int) -> Message:
        roll = self.rng.random()
        pid = f"{self.run_id}-{i}"
        agent, other = self.rng.sample(self.agents, 2)
        if roll < 0.60:
            return self._valid(pid, agent, self._transfer(agent, other, self.rng.randrange(1, 1000)))
        if roll < 0.70:
            self.offers.append((f"{agent}/{pid}", agent))
            body = {
                "kind": "offer",
                "account": f"{agent}:main",
                "resource": "energy",
                "quantity": self.rng.randrange(1, 5000),
                "price": self.rng.randrange(1, 5000),
                "open_until_tick": self.tick + 5,
            }
            return self._valid(pid, agent, body, "?")  # LIMIT_EXCEEDED once the agent has many offers open
        if roll < 0.78 and self.offers:
            offer_id, seller = self.offers.pop(self.rng.randrange(len(self.offers)))
            buyer = other if other != seller else agent
            return self._valid(pid, buyer, {"kind": "accept", "offer_id": offer_id, "account": f"{buyer}:main"}, "?")
        if roll < 0.85:
            provenance = {
                "source": "bench",
                "model": "synthetic",
                "rationale": "rebalancing reserve after a sunny tick",
            }
            return self._valid(pid, agent, self._transfer(agent, other, 5), provenance=provenance)
        return self._hostile(pid, agent, other)

    def _transfer(self, src: str, dst: str, qty: int) -> dict[str, Any]:
        return {
            "kind": "transfer",
            "from_account": f"{src}:main",
            "to_account": f"{dst}:main",
            "resource": "energy",
            "quantity": qty,
        }

    def _valid(self, pid: str, agent: str, body: dict[str, Any], expect: str = "ACCEPTED", **extra: Any) -> Message:
        raw = encode(self._sign(agent, pid, body, **extra))
        if expect == "ACCEPTED" and len(self.accepted_ids) < 1000:
            self.accepted_ids.append((pid, raw))
        return Message(raw, expect)

    def _hostile(self, pid: str, agent: str, other: str) -> Message:
        kind = self.rng.randrange(6)
        if kind == 0:
            return Message(b"\x00garbage" + pid.encode(), "MALFORMED")
        if kind == 1:
            forged = {
                **self._sign(agent, pid, self._transfer(agent, other, 1)),
                "sig": "0" * 64,
            }
            return Message(encode(forged), "BAD_SIGNATURE")
        if kind == 2:
            return Message(
                encode(self._sign(agent, pid, self._transfer(other, agent, 1))),
                "NOT_OWNER",
            )
        if kind == 3:
            body = self._transfer(agent, other, OPENING_UNITS * 10)
            return Message(
                encode(self._sign(agent, pid, body)),
                "INSUFFICIENT_BALANCE",
            )
        if kind == 4 and self.accepted_ids:
            _, raw = self.accepted_ids[self.rng.randrange(len(self.accepted_ids))]
            return Message(raw, "DUPLICATE_PROPOSAL")  # its nonce was used: decided once, for good
        body = {**self._transfer(agent, other, 1), "quantity": 1.5}
        return Message(encode(self._sign(agent, pid, body)), "MALFORMED")
