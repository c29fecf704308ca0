"""Policy parameters: what humans may set, their defaults and their bounds.

Every parameter is an integer. Rates are in basis points (1 bp = 0.01 %) or per-mille so that the
law never needs a float; every division rounds toward zero (floor for non-negative values), which is
stated beside each rule that divides.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.types import QUANTITY_MAX

BPS_DENOMINATOR = 10_000
MARKET_CONTINUOUS, MARKET_UNIFORM_PRICE = 0, 1
# The mechanisms by the names the commands use (``simulate --market``, ``replay --mechanism``).
MARKET_MECHANISMS = {"book": MARKET_CONTINUOUS, "clearing": MARKET_UNIFORM_PRICE}
PERMILLE_DENOMINATOR = 1_000
# Ceilings are quoted per 1,000 units: per kWh for energy, per m³ for water.
PRICE_QUOTE_UNITS = 1_000

DEFAULT_POLICY: dict[str, int] = {
    # Carbon tax on the energy an emitting participant sells or sends, in millicredits per kWh (1,000
    # Wh), paid by the emitter to system:treasury. tax = ceil(quantity * rate / 1_000): by quantity, so
    # a price of 0 does not avoid it, and rounded up, so splitting a trade into small ones never pays
    # less than the whole.
    "carbon_tax_per_kwh": 0,
    # Interest paid by system:treasury on positive credit balances every interest_period_ticks
    # (0 = off). interest = balance * bps // 10_000 (floor). Balances cannot go negative here, so
    # there is no interest charged on debt.
    "interest_bps": 0,
    "interest_period_ticks": 0,
    # Per-trade quantity caps (units). Exceeding one is POLICY_CAP.
    "trade_quantity_max_energy": 10**12,
    "trade_quantity_max_water": 10**12,
    "trade_quantity_max_credits": 10**12,
    # Price ceilings in millicredits per 1,000 units (0 = no ceiling). Exceeding one is PRICE_CEILING.
    "price_ceiling_energy": 0,
    "price_ceiling_water": 0,
    # When the grid is stressed the ceilings are multiplied by this percentage (floor).
    "stressed_ceiling_pct": 100,
    # Accepted trade proposals per agent per tick, and of all agents together. Exceeding either is
    # RATE_LIMITED. Both default to a finite number: a flood from one agent, or from many, is refused
    # by the law instead of growing a tick without bound.
    "proposals_per_tick_max": 1_000,
    "proposals_per_tick_grid_max": 100_000,
    # Grid health. reserve_permille = energy held by participants * 1000 // energy demanded this tick.
    # Stressed below stress_reserve_permille; the breaker trips below breaker_reserve_min_permille
    # (0 = off) or when unmet critical load exceeds breaker_critical_shortfall_max (-1 = off).
    "stress_reserve_permille": 0,
    "breaker_reserve_min_permille": 0,
    "breaker_critical_shortfall_max": -1,
    # After a human resume, automatic trips wait this many ticks so operators can act.
    "breaker_grace_ticks": 3,
    # Rejections within one grid tick above which a critical "rejection spike" alert goes to Discord
    # (0 = off). Telemetry for humans: no rule reads it.
    "rejection_spike_per_tick": 200,
    # How bids and asks trade (law/book.py): 0 = continuous, each order fills against the resting book
    # as it arrives; 1 = uniform-price clearing, orders collect during the tick and the meter entry
    # that ends it clears them at one price per resource (pay-as-clear).
    "market_mechanism": 0,
}

POLICY_BOUNDS: dict[str, tuple[int, int]] = {
    "carbon_tax_per_kwh": (0, 10**9),
    "interest_bps": (0, 1_000),
    "interest_period_ticks": (0, 1_000_000),
    "trade_quantity_max_energy": (1, QUANTITY_MAX),
    "trade_quantity_max_water": (1, QUANTITY_MAX),
    "trade_quantity_max_credits": (1, QUANTITY_MAX),
    "price_ceiling_energy": (0, 10**12),
    "price_ceiling_water": (0, 10**12),
    "stressed_ceiling_pct": (1, 100),
    "proposals_per_tick_max": (1, 1_000_000),
    "proposals_per_tick_grid_max": (1, 10_000_000),
    "stress_reserve_permille": (0, 10**9),
    "breaker_reserve_min_permille": (0, 10**9),
    "breaker_critical_shortfall_max": (-1, QUANTITY_MAX),
    "breaker_grace_ticks": (0, 10_000),
    "rejection_spike_per_tick": (0, 10**9),
    "market_mechanism": (0, 1),
}
assert POLICY_BOUNDS.keys() == DEFAULT_POLICY.keys()


def invalid_param(params: Mapping[str, int]) -> tuple[str, str] | None:
    """The first (key, why) that makes ``params`` unacceptable, or None."""
    for key, value in sorted(params.items()):
        bounds = POLICY_BOUNDS.get(key)
        if bounds is None:
            return key, f"unknown policy parameter {key!r}"
        if type(value) is not int or not bounds[0] <= value <= bounds[1]:
            return key, f"{key}={value!r} outside [{bounds[0]}, {bounds[1]}]"
    return None
