"""What a ``gridgov simulate`` run is asked to do, and its defaults: shared by every part of the run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents.scenario import Scenario
from connectors.gemini import GeminiConfig
from law.policy import MARKET_UNIFORM_PRICE

TICKS_DEFAULT = 48
SEED_DEFAULT = 1
AUTO_RESUME_TICKS_DEFAULT = 3
TICK_TIMEOUT_S_DEFAULT = 90.0  # a Gemini turn can take three attempts of 20 s each
# Proposal ids are "<run>-<agent>-<tick>-<n>", at most 64 characters: 24 + 1 + 24 + 1 + 12 + 2.
RUN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")
RUN_ID_RULE = "1 to 24 characters: lowercase letters, digits and '-', starting with a letter or digit"
# Services started beside the validator, with the run's GRID_DATABASE_URL and GRID_TOPIC_PREFIX:
# the seam for the sinks and the dashboard, e.g. ("sinks", (sys.executable, "-m", "gridgov.cli", "sinks")).
EXTRA_SERVICES: tuple[tuple[str, tuple[str, ...]], ...] = ()


# How the participants trade: "offers" (take-it-or-leave-it offers and accepts), "book" (bids and asks
# on the continuous order book), "clearing" (the same orders, cleared once per tick at one price).
MARKETS = ("offers", "book", "clearing")
MARKET_DEFAULT = "offers"


class SimulationError(RuntimeError):
    pass


@dataclass(frozen=True)
class SimulationConfig:
    scenario: Scenario
    ticks: int = TICKS_DEFAULT
    seed: int = SEED_DEFAULT
    run_id: str | None = None  # default: "<scenario>-<seed>"
    adversarial: bool = False
    free_running: bool = False
    auto_resume_ticks: int = AUTO_RESUME_TICKS_DEFAULT  # 0: the breaker stays open once tripped
    gemini: GeminiConfig | None = None  # participants with strategy "auto" or "gemini" use it
    database_url: str | None = None  # default: a database of the run's own, recreated
    topic_prefix: str | None = None  # default: "<GRID_TOPIC_PREFIX>.<run id>.<random>"
    tick_timeout_s: float = TICK_TIMEOUT_S_DEFAULT
    progress: bool = True
    extra_services: tuple[tuple[str, tuple[str, ...]], ...] = EXTRA_SERVICES
    market: str = MARKET_DEFAULT

    @property
    def effective_run_id(self) -> str:
        market = "" if self.market == MARKET_DEFAULT else f"{self.market}-"
        run_id = self.run_id or f"{self.scenario.name}-{market}{self.seed}"
        if not RUN_ID.fullmatch(run_id):
            raise SimulationError(f"run id {run_id!r}: {RUN_ID_RULE} (choose one with --run-id)")
        return run_id


def for_market(scenario: Scenario, market: str) -> Scenario:
    """``scenario`` with the genesis policy ``market`` needs: uniform-price clearing for "clearing"."""
    if market not in MARKETS:
        raise SimulationError(f"market {market!r}: choose from {', '.join(MARKETS)}")
    if market != "clearing":
        return scenario
    return scenario.model_copy(update={"policy": {**scenario.policy, "market_mechanism": MARKET_UNIFORM_PRICE}})
