"""An intent's translation into a proposal body: this code fills in the account the agent owns, and the
agent's key signs it. Nothing an intent says can spend another agent's account."""

from __future__ import annotations

from typing import Any

from agents.view import AgentView
from schemas.intent import Intent

OFFER_OPEN_TICKS_DEFAULT = 5


def to_body(intent: Intent, view: AgentView) -> dict[str, Any] | None:
    """Turn an intent into a proposal body for ``view.account``; None for ``hold`` or an incomplete intent."""
    if intent.action == "offer" and intent.resource and intent.quantity and intent.price is not None:
        addressed = {"to_agent": intent.to_agent} if intent.to_agent else {}
        return {
            "kind": "offer",
            "account": view.account,
            "resource": intent.resource,
            "quantity": intent.quantity,
            "price": intent.price,
            "open_until_tick": view.tick + (intent.open_for_ticks or OFFER_OPEN_TICKS_DEFAULT),
            **addressed,
        }
    if intent.action == "counter" and intent.offer_id and intent.quantity and intent.price is not None:
        return {
            "kind": "counter",
            "offer_id": intent.offer_id,
            "account": view.account,
            "quantity": intent.quantity,
            "price": intent.price,
        }
    if intent.action == "reject" and intent.offer_id:
        return {"kind": "reject", "offer_id": intent.offer_id}
    if intent.action in ("bid", "ask") and intent.resource and intent.quantity and intent.price is not None:
        return {
            "kind": intent.action,
            "account": view.account,
            "resource": intent.resource,
            "quantity": intent.quantity,
            "price": intent.price,
            "open_until_tick": view.tick + (intent.open_for_ticks or OFFER_OPEN_TICKS_DEFAULT),
        }
    if intent.action == "accept" and intent.offer_id:
        return {"kind": "accept", "offer_id": intent.offer_id, "account": view.account}
    if intent.action == "cancel" and intent.offer_id:
        return {"kind": "cancel", "offer_id": intent.offer_id}
    if intent.action == "transfer" and intent.resource and intent.quantity and intent.to_account:
        return {
            "kind": "transfer",
            "from_account": view.account,
            "to_account": intent.to_account,
            "resource": intent.resource,
            "quantity": intent.quantity,
        }
    return None
