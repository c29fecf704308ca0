"""The published test vectors for producers in other languages: ``schemas/vectors/proposals.json``.

Each vector is an envelope as a producer would write it (keys deliberately out of order), the canonical
bytes its signature covers, the key that signs it and the signature. Everything is fixed (a fixed root
secret, a fixed Ed25519 seed; both signatures are deterministic), so the file is the same on every run:
``tests/unit/schemas/test_vectors.py`` checks it against this module and against the Python codec.
Regenerate after a deliberate change with ``python -m tests.support.vectors``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.codec import canonical_bytes
from schemas.keys import derive_key
from schemas.signing import Ed25519Signer, HmacSigner, Signer
from schemas.types import NONCE_MAX, QUANTITY_MAX, TICK_MAX

VECTORS_PATH = Path(__file__).resolve().parents[2] / "schemas" / "vectors" / "proposals.json"
ROOT_SECRET = bytes(range(32))  # a published test secret: never a real grid's
OPERATOR_SEED = hashlib.sha256(b"grid test vectors: operator seed").digest()
OPERATOR = "alice"
FINGERPRINT_OF = "solar-2"

# (name, agent, key generation, body, extra envelope fields): one per kind, then the edge cases.
CASES: list[tuple[str, str, int, dict[str, Any], dict[str, Any]]] = [
    ("transfer", "solar-1", 0,
     {"to_account": "battery-1", "kind": "transfer", "resource": "energy", "quantity": 250,
      "from_account": "solar-1", "memo": "evening top-up"}, {}),
    ("offer", "solar-1", 0,
     {"price": 12_000, "kind": "offer", "account": "solar-1", "resource": "energy", "quantity": 500,
      "open_until_tick": 40}, {}),
    ("accept", "hospital-1", 0, {"offer_id": "solar-1/offer-7", "kind": "accept", "account": "hospital-1"}, {}),
    ("counter", "hospital-1", 0,
     {"kind": "counter", "offer_id": "solar-1/offer-8", "account": "hospital-1", "quantity": 500,
      "price": 10_000}, {}),
    ("reject", "hospital-1", 0, {"kind": "reject", "offer_id": "solar-1/offer-8"}, {}),
    ("bid", "hospital-1", 0,
     {"kind": "bid", "account": "hospital-1", "resource": "energy", "quantity": 400, "price": 600,
      "open_until_tick": 12}, {}),
    ("ask", "solar-1", 0,
     {"kind": "ask", "account": "solar-1", "resource": "energy", "quantity": 1_000, "price": 500,
      "open_until_tick": 12}, {}),
    ("cancel", "solar-1", 0, {"kind": "cancel", "offer_id": "solar-1/offer-7"}, {}),
    ("meter", "meter", 0,
     {"kind": "meter", "readings": [
         {"resource": "energy", "account": "solar-1", "produced": 900},
         {"consumed": 400, "account": "hospital-1", "resource": "energy", "produced": 0}]}, {}),
    ("genesis", OPERATOR, 0,
     {"kind": "genesis", "policy": {"carbon_tax_per_kwh": 0},
      "participants": [{"agent": OPERATOR, "role": "operator", "public_key": "", "accounts": [OPERATOR]},
                       {"agent": "solar-1", "role": "participant", "key_fingerprint": "", "accounts": ["solar-1"],
                        "kind": "solar_farm"}],
      "balances": [{"account": "solar-1", "resource": "energy", "quantity": 1_000}]}, {}),
    ("policy_set", OPERATOR, 0,
     {"reason": "price carbon", "kind": "policy_set", "params": {"interest_bps": 5, "carbon_tax_per_kwh": 25},
      "expected_policy_version": 3}, {}),
    ("breaker_trip", OPERATOR, 0, {"kind": "breaker_trip", "reason": "reserve below 10 %"}, {}),
    ("breaker_resume", OPERATOR, 0, {"trip_seq": 812, "reason": "reserve restored", "kind": "breaker_resume"}, {}),
    ("participant_add", OPERATOR, 0,
     {"kind": "participant_add", "participant": {
         "kind": "solar_farm", "accounts": ["solar-2"], "agent": "solar-2", "role": "participant",
         "key_fingerprint": "", "emits_carbon": False, "critical_load": False}}, {}),
    ("participant_rekey", OPERATOR, 0,
     {"kind": "participant_rekey", "agent": "solar-2", "key_fingerprint": "", "reason": "laptop lost"}, {}),
    ("participant_suspend", OPERATOR, 0, {"reason": "metering fraud", "kind": "participant_suspend",
                                          "agent": "solar-2"}, {}),
    # edge cases ------------------------------------------------------------------------------------
    ("unicode", "solar-1", 0,
     {"kind": "transfer", "from_account": "solar-1", "to_account": "battery-1", "resource": "water",
      "quantity": 1, "memo": "Wärme für 🏥 · \"quoted\" \\ back <b>&amp;</b> \u2028 é"}, {}),
    ("big_integers", "solar-1", 0,
     {"kind": "offer", "account": "solar-1", "resource": "credits", "quantity": QUANTITY_MAX,
      "price": QUANTITY_MAX, "open_until_tick": TICK_MAX}, {"nonce": NONCE_MAX, "expires_tick": TICK_MAX}),
    ("provenance_and_key_order", "datacentre-1", 0,
     {"resource": "energy", "quantity": 75, "kind": "transfer", "to_account": "solar-1",
      "from_account": "datacentre-1"},
     {"provenance": {"source": "gemini", "rationale": "cheapest ask ≤ 24 credits", "output_tokens": 91,
                     "model": "gemini-3.8-flash", "prompt_tokens": 1_204, "latency_ms": 640}}),
    ("rekeyed_generation_1", "solar-2", 1,
     {"kind": "transfer", "from_account": "solar-2", "to_account": "battery-1", "resource": "energy",
      "quantity": 10}, {}),
]  # fmt: skip


def operator_signer() -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(OPERATOR_SEED))


def _signer(agent: str, generation: int) -> tuple[Signer, dict[str, str]]:
    if agent == OPERATOR:
        signer = operator_signer()
        return signer, {"algorithm": "ed25519", "seed_hex": OPERATOR_SEED.hex(), "public_key_hex": signer.public_key}
    key = derive_key(ROOT_SECRET, agent, generation)
    return HmacSigner(key), {"algorithm": "hmac-sha256", "key_hex": key.hex(), "generation": str(generation)}


def _fill_fingerprints(body: dict[str, Any]) -> dict[str, Any]:
    """Bodies that name a key carry a real one: solar-2's generation-1 fingerprint, the genesis the
    operator's public key and solar-1's fingerprint."""
    fingerprint = hashlib.sha256(derive_key(ROOT_SECRET, FINGERPRINT_OF, 1)).hexdigest()[:32]
    if body["kind"] == "participant_rekey":
        return {**body, "key_fingerprint": fingerprint}
    if body["kind"] == "participant_add":
        return {**body, "participant": {**body["participant"], "key_fingerprint": fingerprint}}
    if body["kind"] == "genesis":
        operator, solar = body["participants"]
        solar_fingerprint = hashlib.sha256(derive_key(ROOT_SECRET, "solar-1")).hexdigest()[:32]
        return {**body, "participants": [
            {**operator, "public_key": operator_signer().public_key}, {**solar, "key_fingerprint": solar_fingerprint},
        ]}  # fmt: skip
    return body


def vector(name: str, agent: str, generation: int, body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    unsigned: dict[str, Any] = {
        "body": _fill_fingerprints(body), "tick": 31, "nonce": 17, "agent": agent, "v": 1,
        "expires_tick": 36, "id": f"vector-{name.replace('_', '-')}", **extra,
    }  # fmt: skip
    signer, key = _signer(agent, generation)
    canonical = canonical_bytes(unsigned)
    signature = signer.sign(canonical)
    return {
        "name": name,
        "kind": unsigned["body"]["kind"],
        "input": unsigned,
        "canonical_utf8": canonical.decode(),
        "canonical_hex": canonical.hex(),
        "key": key,
        "sig": signature,
        "message": orjson.dumps({**unsigned, "sig": signature}).decode(),
    }


def document() -> dict[str, Any]:
    return {
        "about": "Signed-proposal test vectors; see docs/producers.md. canonical = the envelope without "
        "'sig', keys sorted by code point at every level, no whitespace, UTF-8, only \" \\ and the C0 "
        "controls escaped; sig = hex(HMAC-SHA256(key, canonical)) or hex(Ed25519(seed, canonical)).",
        "root_secret_hex": ROOT_SECRET.hex(),
        "agent_key": "HMAC-SHA256(root, 'grid-agent-key:' + agent [+ NUL + generation when > 0])",
        "vectors": [vector(*case) for case in CASES],
    }


def rendered() -> bytes:
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2) + b"\n"


if __name__ == "__main__":
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_PATH.write_bytes(rendered())
    print(f"wrote {VECTORS_PATH}")
