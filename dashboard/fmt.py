"""Numbers with their units, and the units of law.policy's parameters.

Quantities are stored as integers in fixed-point units: energy in Wh, water in litres, credits in
millicredits. The dashboard shows energy and water with SI prefixes and credits in whole credits.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from law.policy import PRICE_QUOTE_UNITS


@dataclass(frozen=True)
class DisplayUnit:
    symbol: str
    per_stored_unit: float  # display value = stored integer * this
    si_prefixes: bool  # k, M, G, T


DISPLAY_UNITS: dict[str, DisplayUnit] = {
    "energy": DisplayUnit("Wh", 1.0, True),
    "water": DisplayUnit("L", 1.0, True),
    "credits": DisplayUnit("credits", 1 / 1_000, False),
}
SI_PREFIXES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k"))

# Unit and meaning of each policy parameter; the bounds and defaults live in law.policy.
POLICY_UNITS: dict[str, tuple[str, str]] = {
    "carbon_tax_per_kwh": ("millicredits per kWh an emitter sells or sends", "0 = off; rounded up"),
    "interest_bps": ("bp per period", "0 = off"),
    "interest_period_ticks": ("ticks", "0 = off"),
    "trade_quantity_max_energy": ("Wh per trade", ""),
    "trade_quantity_max_water": ("L per trade", ""),
    "trade_quantity_max_credits": ("millicredits per trade", ""),
    "price_ceiling_energy": (f"millicredits per {PRICE_QUOTE_UNITS:,} Wh", "0 = no ceiling"),
    "price_ceiling_water": (f"millicredits per {PRICE_QUOTE_UNITS:,} L", "0 = no ceiling"),
    "stressed_ceiling_pct": ("% of ceiling when stressed", ""),
    "proposals_per_tick_max": ("trade proposals per agent per tick", ""),
    "proposals_per_tick_grid_max": ("trade proposals per tick, all agents", ""),
    "stress_reserve_permille": ("‰ of demand", "0 = never stressed"),
    "breaker_reserve_min_permille": ("‰ of demand", "0 = off"),
    "breaker_critical_shortfall_max": ("Wh unmet critical load", "-1 = off"),
    "breaker_grace_ticks": ("ticks after a resume", ""),
    "rejection_spike_per_tick": ("rejections per tick", "0 = off; alerts only"),
    "market_mechanism": ("mechanism", "0 = continuous book, 1 = uniform-price clearing per tick"),
}


def display_value(resource: str, stored: int | float) -> float:
    return stored * DISPLAY_UNITS[resource].per_stored_unit


def quantity(resource: str, stored: int | float) -> str:
    """``12.5 kWh``, ``3 L``, ``1,000,000 credits``."""
    unit = DISPLAY_UNITS[resource]
    value = display_value(resource, stored)
    if unit.si_prefixes:
        for scale, prefix in SI_PREFIXES:
            if abs(value) >= scale:
                return f"{value / scale:,.3g} {prefix}{unit.symbol}"
        return f"{value:,.0f} {unit.symbol}"
    return f"{value:,.3f}".rstrip("0").rstrip(".") + f" {unit.symbol}"


def energy(stored_wh: int | float) -> str:
    return quantity("energy", stored_wh)


def rate(per_s: float) -> str:
    return f"{per_s:,.1f}/s"


def plot_text(text: str) -> str:
    """``text`` as a chart label that shows it verbatim: plotly renders tags such as <a href> and <b> in
    labels, legends and hover text, and decodes entities, so the markup characters go in as entities."""
    return html.escape(text, quote=False)


BIGINT_MAX = 2**63 - 1  # Postgres's bigint: a seq or offset beyond it is not in any ledger


def position(text: str | None) -> int | None:
    """A seq or offset typed or linked (untrusted text): ASCII digits within bigint, else None.
    ``str.isdigit`` alone also passes "²", which ``int`` refuses, and any length, which Postgres does."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > len(str(BIGINT_MAX)):
        return None
    value = int(text)
    return value if value <= BIGINT_MAX else None
