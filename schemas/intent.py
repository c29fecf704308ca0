"""The intent a strategy returns: the LLM's structured output schema. The model chooses *what* to do;
``agents.intent.to_body`` fills in the account the agent owns and the proposal id, and the agent's
key signs it. Nothing in an intent can spend another agent's account."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import QUANTITY_MAX, Resource


class Intent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["offer", "accept", "counter", "reject", "bid", "ask", "cancel", "transfer", "hold"]
    resource: Resource | None = None
    quantity: int | None = Field(default=None, ge=1, le=QUANTITY_MAX)
    price: int | None = Field(
        default=None, ge=0, le=QUANTITY_MAX, description="offer: total millicredits; bid, ask: limit per 1000 units"
    )
    offer_id: str | None = Field(default=None, max_length=129)  # seller/id, also of an order to cancel
    to_account: str | None = Field(default=None, max_length=64)
    to_agent: str | None = Field(default=None, max_length=64, description="offer: the one agent it is addressed to")
    open_for_ticks: int | None = Field(default=None, ge=1, le=50)
    rationale: str = Field(default="", max_length=500)
