"""The intent a strategy returns (the LLM's structured output schema), and its translation into a
proposal body. The model chooses *what* to do; this code fills in the account it owns and the
proposal id, and the agent's key signs it. Nothing here can spend another agent's account."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.view import AgentView

OFFER_OPEN_TICKS_DEFAULT = 5


class Intent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["offer", "accept", "cancel", "transfer", "hold"]
    resource: Literal["energy", "water", "credits"] | None = None
    quantity: int | None = Field(default=None, ge=1, le=10**15)
    price: int | None = Field(default=None, ge=0, le=10**15, description="total millicredits")
    offer_id: str | None = Field(default=None, max_length=64)
    to_account: str | None = Field(default=None, max_length=64)
    open_for_ticks: int | None = Field(default=None, ge=1, le=50)
    rationale: str = Field(default="", max_length=500)


def to_body(intent: Intent, view: AgentView) -> dict[str, Any] | None:
    """Turn an intent into a proposal body for ``view.account``; None for ``hold`` or an incomplete intent."""
    if intent.action == "offer" and intent.resource and intent.quantity and intent.price is not None:
        return {
            "kind": "offer",
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
