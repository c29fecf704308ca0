"""A strategy that asks Gemini for the next intent and falls back to the heuristic when it cannot.

The prompt is a compact JSON summary of the view with every list capped, so its size (and cost) is
bounded whatever the market looks like. The model only proposes: its intent goes through the same
``to_body`` and the same validator as any other, so a bad answer is at worst a rejected proposal.
"""

from __future__ import annotations

import hashlib
import json
import logging
from fractions import Fraction
from typing import Any

from agents.heuristic import REFERENCE_PRICE_PER_1000
from agents.intent import to_body
from agents.strategy import Decision, Strategy
from agents.view import AgentView, OpenOffer, RestingOrder
from connectors.gemini import GeminiClient, GeminiResult
from schemas.intent import Intent
from schemas.types import RESOURCES

log = logging.getLogger(__name__)

MARKET_OFFERS_MAX = 8  # cheapest offers from others shown to the model
OWN_OFFERS_MAX = 4
OWN_ORDERS_MAX = 4
REJECTIONS_MAX = 5
DETAIL_CHARS_MAX = 120
PROMPT_CHARS_MAX = 4_000
RATIONALE_CHARS_MAX = 500
RESPONSE_ID_CHARS_MAX = 128
FALLBACK_CHARS_MAX = 120

SYSTEM_INSTRUCTION = """\
You are the trading agent of one participant on a shared energy and water grid. Each tick you choose
exactly one action; a deterministic validator then accepts or rejects it, and rejected actions only
waste your turn.

Units: energy in Wh (1 kWh = 1000), water in litres, credits in millicredits (1 credit = 1000).
An offer's price is the TOTAL millicredits for the whole quantity. Price ceilings are millicredits
per 1000 units: price * 1000 must not exceed ceiling * quantity. quantity must not exceed the
resource's trade cap. All numbers are whole integers.

Actions (reply with one JSON object, fields not needed for the action omitted):
- offer: sell part of a resource you hold: resource (energy or water), quantity, price, open_for_ticks.
  Keep enough for your own expected consumption. Never offer credits; credits are money.
- accept: buy a whole open offer from another participant by offer_id; you pay its price in credits,
  so its price must not exceed your credits. Never accept your own offer, except a negotiation of
  yours whose turn is yours (the buyer countered): then accepting sells at the buyer's terms.
- An offer may name to_agent: only that agent may take it. Such a negotiation alternates turns
  ("turn" names who moves): on your turn, accept it, reject it (offer_id), or counter (offer_id,
  quantity, price: your terms, total millicredits); at most 8 counters, until its open_until_tick.
- bid: buy up to quantity of a resource at price or less, where price is the LIMIT in millicredits per
  1000 units (not a total). It fills at once against asks at or below it, best price first, possibly
  in parts; the rest rests in the order book until open_for_ticks pass. It holds quantity * price /
  1000 credits in escrow meanwhile, so that must not exceed your credits.
- ask: sell up to quantity at price or more (a limit per 1000 units); the resource is held in escrow
  while it rests. Never ask against your own resting bid (SELF_TRADE).
- cancel: withdraw one of your own open offers or resting orders by offer_id (its escrow comes back).
- transfer: give resource and quantity to to_account. Rarely useful.
- hold: do nothing this tick. Hold when the circuit breaker is open or you were just rate limited.

Learn from your recent rejections and their reason codes. Put a one-sentence reason in rationale."""


def _per_1000(offer: OpenOffer) -> int:
    return offer.price * 1000 // max(offer.quantity, 1)


def _offer_row(offer: OpenOffer) -> dict[str, Any]:
    return {
        "offer_id": offer.offer_id,
        "seller": offer.seller,
        "resource": offer.resource,
        "quantity": offer.quantity,
        "price": offer.price,
        "price_per_1000": _per_1000(offer),
        "open_until_tick": offer.open_until_tick,
        **({"to_agent": offer.to_agent, "turn": offer.turn} if offer.to_agent else {}),
    }


def _order_row(order: RestingOrder) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "side": order.side,
        "resource": order.resource,
        "quantity": order.quantity,
        "price_per_1000": order.price,
        "open_until_tick": order.open_until_tick,
    }


def _per_resource(values: dict[str, int]) -> dict[str, int]:
    """Only the known resources, so a map from the view cannot grow the prompt."""
    return {r: values[r] for r in RESOURCES if r in values}


def _market(view: AgentView) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cheapest offers from others, own offers), each capped."""
    others = sorted(
        (o for o in view.open_offers if o.seller != view.agent and o.quantity > 0),
        key=lambda o: (Fraction(o.price, o.quantity), o.offer_id),
    )
    own = sorted((o for o in view.open_offers if o.seller == view.agent), key=lambda o: o.offer_id)
    return [_offer_row(o) for o in others[:MARKET_OFFERS_MAX]], [_offer_row(o) for o in own[:OWN_OFFERS_MAX]]


def build_prompt(view: AgentView) -> str:
    """The view as compact JSON, under PROMPT_CHARS_MAX: market rows are dropped until it fits."""
    market, own = _market(view)
    summary: dict[str, Any] = {
        "tick": view.tick,
        "me": {"agent": view.agent, "kind": view.participant_kind[:40], "account": view.account},
        "balances": _per_resource(view.balances),
        "expected_production_per_tick": _per_resource(view.expected_production),
        "expected_consumption_per_tick": _per_resource(view.expected_consumption),
        "shortfall_last_tick": _per_resource(view.shortfall),
        "breaker_open": view.breaker_open,
        "price_ceiling_per_1000": _per_resource(view.price_ceiling),
        "reference_price_per_1000": REFERENCE_PRICE_PER_1000,  # a fair price; the market may differ
        "trade_quantity_max": _per_resource(view.trade_quantity_max),
        "my_open_offers": own,
        "market_cheapest_offers": market,
        "my_resting_orders": [
            {
                "order_id": o.order_id,
                "side": o.side,
                "resource": o.resource,
                "quantity": o.quantity,
                "price_per_1000": o.price,
                "open_until_tick": o.open_until_tick,
            }
            for o in view.own_orders[:OWN_ORDERS_MAX]
        ],
        "book_best_bid_ask_per_1000": {r: list(q) for r, q in sorted(view.quotes.items()) if r in RESOURCES},
        "my_recent_rejections": [
            {"kind": r.kind, "reason": r.reason_code, "detail": r.detail[:DETAIL_CHARS_MAX]}
            for r in view.recent_rejections[-REJECTIONS_MAX:]
        ],
    }
    prompt = _render(summary)
    while len(prompt) > PROMPT_CHARS_MAX and (summary["market_cheapest_offers"] or summary["my_open_offers"]):
        key = "market_cheapest_offers" if summary["market_cheapest_offers"] else "my_open_offers"
        summary[key] = summary[key][:-1]
        prompt = _render(summary)
    return prompt


def _render(summary: dict[str, Any]) -> str:
    return "State of the grid for your participant (JSON):\n" + json.dumps(
        summary, separators=(",", ":"), sort_keys=True
    )


def prompt_sha256(system: str, prompt: str) -> str:
    return hashlib.sha256((system + prompt).encode()).hexdigest()


class GeminiStrategy:
    name = "gemini"

    def __init__(self, client: GeminiClient, fallback: Strategy) -> None:
        self._client = client
        self._fallback = fallback

    def choose(self, view: AgentView) -> Decision:
        prompt = build_prompt(view)
        result = self._client.propose(prompt, SYSTEM_INSTRUCTION)
        intent, problem = result.intent, self._problem(result, view)
        if problem is not None or intent is None:
            return self._fall_back(view, result, problem or "invalid output")
        provenance = {
            "source": "gemini",
            "model": self._client.model,
            "prompt_sha256": prompt_sha256(SYSTEM_INSTRUCTION, prompt),
            "response_id": result.response_id[:RESPONSE_ID_CHARS_MAX] if result.response_id else None,
            "prompt_tokens": result.prompt_tokens,
            "output_tokens": result.output_tokens,
            "latency_ms": result.latency_ms,
            "rationale": intent.rationale[:RATIONALE_CHARS_MAX],
        }
        return Decision(intent, provenance)

    @staticmethod
    def _problem(result: GeminiResult, view: AgentView) -> str | None:
        """Why this result cannot be used: an error code, or 'invalid output'."""
        if result.error_code is not None or result.intent is None:
            return result.error_code or "invalid output"
        if result.intent.action != "hold" and to_body(result.intent, view) is None:
            return "invalid output"  # valid JSON, but missing what its action needs
        return None

    def _fall_back(self, view: AgentView, result: GeminiResult, problem: str) -> Decision:
        log.warning(
            "gemini unusable, falling back to heuristic",
            extra={
                "agent": view.agent,
                "tick": view.tick,
                "gemini_model": self._client.model,
                "gemini_problem": problem,
                "gemini_error": result.error or _incomplete(result.intent),
                "latency_ms": result.latency_ms,
            },
        )
        decision = self._fallback.choose(view)
        fallback = f"gemini {problem}"[:FALLBACK_CHARS_MAX]
        return Decision(decision.intent, {**decision.provenance, "source": "heuristic", "fallback": fallback})


def _incomplete(intent: Intent | None) -> str:
    return f"incomplete {intent.action} intent" if intent else "no intent"
