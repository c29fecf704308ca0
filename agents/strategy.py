"""What every strategy is: a function of the agent's view to one intent per tick, plus provenance.

Strategies decide *what* to do. They never sign, never pick the account (``to_body`` fills in
``view.account``) and do no I/O except the Gemini strategy's model call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agents.view import AgentView
from schemas.intent import Intent


@dataclass(frozen=True, slots=True)
class Decision:
    intent: Intent
    # Fields of schemas.proposal.Provenance; at least {"source": ...}.
    provenance: dict[str, Any]


class Strategy(Protocol):
    name: str

    def choose(self, view: AgentView) -> Decision: ...
