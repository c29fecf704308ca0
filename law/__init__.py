"""Code-as-law: pure rules. Nothing here imports Kafka, Postgres, HTTP or Streamlit (a test checks)."""

from law.decide import decide, price_ceiling
from law.state import Accepted, Rejected, State, apply

__all__ = ["Accepted", "Rejected", "State", "apply", "decide", "price_ceiling"]
