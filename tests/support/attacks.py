"""The adversarial strategy's attacks and the reason the law must give each: one table for the unit
test of the strategy and the end-to-end run of the simulation."""

from __future__ import annotations

ATTACK_REASONS = {
    "overspend": "INSUFFICIENT_BALANCE",
    "spend_victim_account": "NOT_OWNER",
    "replay": "DUPLICATE_PROPOSAL",
    "llm_not_json": "MALFORMED",
    "llm_float_quantity": "MALFORMED",
    "llm_oversized_quantity": "LIMIT_EXCEEDED",
    "bad_signature": "BAD_SIGNATURE",
    "self_trade": "SELF_TRADE",
    "unfunded_bid": "INSUFFICIENT_BALANCE",
    "self_cross": "SELF_TRADE",
}
