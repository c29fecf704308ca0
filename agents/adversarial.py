"""An agent that breaks the rules on purpose, so every run shows the validator catching it.

Some attacks break the envelope itself (bytes that are not JSON, a wrong signature, a reused id),
so an attack is a raw proposal plan rather than an ``Intent``: the runner wraps ``body`` in an
envelope (with ``reuse_nonce`` as its nonce when set), signs it (with a wrong key when asked) and sends
it, or sends ``raw`` as the whole message. ``expected_reason`` is the rejection the validator must
return; ``None`` marks a setup step it should accept (posting the offer the self-trade then takes).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.view import AgentView, OpenOffer
from schemas.types import QUANTITY_MAX, RESOURCES

OVERSPEND_MARGIN_MAX = 1_000  # units above the balance, so the amounts vary run to run
SMALL_QUANTITY_MAX = 1_000
SETUP_OFFER_OPEN_TICKS = 10
SPOOF_PRICE_PER_1000 = 1_000  # 1 mc per unit: the escrow equals the quantity
SELF_CROSS_PRICE_PER_1000 = 500_000  # far above any honest bid, so nobody else fills the setup ask
FLOAT_QUANTITY = 12.5
OVERSIZED_QUANTITY = 2**63  # overflows a Postgres bigint; the codec bounds it first
# What a chatty model returns instead of the JSON it was asked for.
NOT_JSON_OUTPUTS = (
    b'Sure! Here is my proposal:\n```json\n{"kind": "offer", "resource": "energy", "quantity": 500',
    b"I think we should sell 5 kWh of energy for 700 millicredits.",
    b"{'kind': 'transfer', 'resource': 'credits', 'quantity': 10}",
)


@dataclass(frozen=True, slots=True)
class Attack:
    name: str
    expected_reason: str | None  # None: a setup step the validator should accept
    body: dict[str, Any] | None = None  # proposal body for the runner to wrap and sign
    raw: bytes | None = None  # the whole Kafka message, sent as is
    reuse_nonce: int | None = None  # a nonce the validator already decided, instead of a fresh one
    sign_with_wrong_key: bool = False


def _transfer(from_account: str, to_account: str, resource: str, quantity: Any) -> dict[str, Any]:
    return {
        "kind": "transfer",
        "from_account": from_account,
        "to_account": to_account,
        "resource": resource,
        "quantity": quantity,
    }


def _own_offer(view: AgentView) -> OpenOffer | None:
    mine = [o for o in view.open_offers if o.seller == view.agent and o.open_until_tick >= view.tick]
    return min(mine, key=lambda o: o.offer_id, default=None)


def _richest(view: AgentView, resources: tuple[str, ...]) -> str:
    return max(resources, key=lambda r: (view.balances.get(r, 0), r))


class AdversarialStrategy:
    name = "adversarial"

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._round = 0
        self._catalogue: tuple[Callable[[AgentView, str, int | None], Attack | None], ...] = (
            self._overspend,
            self._not_owner,
            self._replay,
            self._not_json,
            self._float_quantity,
            self._oversized_quantity,
            self._bad_signature,
            self._self_trade,
            self._unfunded_bid,
            self._self_cross,
        )

    def attacks(self, view: AgentView, victim_account: str, replay_nonce: int | None) -> list[Attack]:
        """Every attack that applies to this view, starting one further along the catalogue each
        call, so a runner that sends only the first few per tick still cycles through them all."""
        start = self._round % len(self._catalogue)
        self._round += 1
        rotated = self._catalogue[start:] + self._catalogue[:start]
        planned = (build(view, victim_account, replay_nonce) for build in rotated)
        return [attack for attack in planned if attack is not None]

    def _overspend(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        resource = min(RESOURCES, key=lambda r: (view.balances.get(r, 0), r))
        quantity = max(view.balances.get(resource, 0), 0) + 1 + self._rng.randrange(OVERSPEND_MARGIN_MAX)
        if quantity > QUANTITY_MAX:
            return None  # a balance this large cannot be overspent within the quantity bound
        return Attack("overspend", "INSUFFICIENT_BALANCE", body=_transfer(view.account, victim, resource, quantity))

    def _not_owner(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        resource = self._rng.choice(RESOURCES)
        quantity = self._rng.randint(1, SMALL_QUANTITY_MAX)
        return Attack("spend_victim_account", "NOT_OWNER", body=_transfer(victim, view.account, resource, quantity))

    def _replay(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        if replay_nonce is None:
            return None
        # A body that would pass on its own, so only the reused nonce can be the reason to reject it.
        body = _transfer(view.account, victim, _richest(view, RESOURCES), 1)
        return Attack("replay", "DUPLICATE_PROPOSAL", body=body, reuse_nonce=replay_nonce)

    def _not_json(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        return Attack("llm_not_json", "MALFORMED", raw=self._rng.choice(NOT_JSON_OUTPUTS))

    def _float_quantity(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        body = _transfer(view.account, victim, "energy", FLOAT_QUANTITY)
        return Attack("llm_float_quantity", "MALFORMED", body=body)

    def _oversized_quantity(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        body = _transfer(view.account, victim, "energy", OVERSIZED_QUANTITY)
        return Attack("llm_oversized_quantity", "LIMIT_EXCEEDED", body=body)

    def _bad_signature(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        body = _transfer(view.account, victim, _richest(view, RESOURCES), 1)
        return Attack("bad_signature", "BAD_SIGNATURE", body=body, sign_with_wrong_key=True)

    def _self_trade(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        offer = _own_offer(view)
        if offer is not None:
            accept = {"kind": "accept", "offer_id": offer.offer_id, "account": view.account}
            return Attack("self_trade", "SELF_TRADE", body=accept)
        resource = _richest(view, ("energy", "water"))
        if view.balances.get(resource, 0) < 1:
            return None
        # Post a tiny genuine offer first; a later round accepts it.
        setup = {
            "kind": "offer",
            "account": view.account,
            "resource": resource,
            "quantity": 1,
            "price": 1,
            "open_until_tick": view.tick + SETUP_OFFER_OPEN_TICKS,
        }
        return Attack("self_trade_setup", None, body=setup)

    def _unfunded_bid(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        """Spoofing: a bid whose escrow (quantity x price / 1000) it cannot hold."""
        price = min(view.price_ceiling.get("energy") or SPOOF_PRICE_PER_1000, SPOOF_PRICE_PER_1000)
        escrow = max(view.balances.get("credits", 0), 0) + 1 + self._rng.randrange(OVERSPEND_MARGIN_MAX)
        quantity = -(-escrow * 1_000 // price)  # reserves at least ``escrow`` credits
        if quantity > min(view.trade_quantity_max.get("energy", QUANTITY_MAX), QUANTITY_MAX):
            return None  # the cap would refuse it first
        body = _order("bid", view, quantity, price)
        return Attack("unfunded_bid", "INSUFFICIENT_BALANCE", body=body)

    def _self_cross(self, view: AgentView, victim: str, replay_nonce: int | None) -> Attack | None:
        """Painting the tape: a bid against its own resting ask (set up first, priced out of reach)."""
        ask = next((o for o in view.own_orders if o.side == "ask" and o.resource == "energy"), None)
        if ask is not None:
            return Attack("self_cross", "SELF_TRADE", body=_order("bid", view, 1, ask.price))
        if view.balances.get("energy", 0) < 1:
            return None
        price = view.price_ceiling.get("energy") or SELF_CROSS_PRICE_PER_1000
        return Attack("self_cross_setup", None, body=_order("ask", view, 1, price))


def _order(side: str, view: AgentView, quantity: int, price: int) -> dict[str, Any]:
    return {
        "kind": side,
        "account": view.account,
        "resource": "energy",
        "quantity": quantity,
        "price": price,
        "open_until_tick": view.tick + SETUP_OFFER_OPEN_TICKS,
    }
