"""The market fold over a ledger's rows: demand and what went unmet (critical loads apart),
self-sufficiency, the emitters' production and the carbon tax they paid, and the book's trades."""

from __future__ import annotations

from connectors.readmodel.market import LedgerRow, fold_market
from law import Accepted
from tests.support.world import World, account
from tests.unit.law.test_book import ask, bid, place

OPENING = 1_000_000  # of every resource, for every agent (``tests.support.world.genesis_body``)


def test_unmet_demand_self_sufficiency_and_carbon_from_the_meter_and_the_fills() -> None:
    world = World().start(carbon_tax_per_kwh=20)  # solar emits, hospital is a critical load
    place(world, "hospital", bid(4_000, 900))
    place(world, "solar", ask(3_000, 800))  # fills 3,000 at 900: tax ceil(3,000 x 20 / 1,000) = 60
    readings = [
        {"account": account("solar"), "resource": "energy", "produced": 5_000},
        {"account": account("hospital"), "resource": "energy", "consumed": OPENING + 3_000 + 2_000},
        {"account": account("battery"), "resource": "energy", "produced": 700, "consumed": 1_000},
        {"account": account("datacentre"), "resource": "water", "consumed": OPENING + 10},
    ]
    assert isinstance(world.meter(1, readings), Accepted)
    figures = fold_market(LedgerRow.of(e) for e in world.entries)
    energy, water = figures.resources["energy"], figures.resources["water"]
    assert (energy.demand, energy.unmet, energy.unmet_critical) == (OPENING + 6_000, 2_000, 2_000)
    assert (water.demand, water.unmet, water.unmet_critical) == (OPENING + 10, 10, 0)
    assert energy.self_sufficiency_pct == 100 * (OPENING + 4_000) / (OPENING + 6_000)
    assert figures.emitted_energy_wh == 5_000  # solar's; battery does not emit
    assert figures.carbon_tax_mc == 60
    assert (energy.volume, energy.paid_mc, figures.trades) == (3_000, 2_700, 1)
    assert figures.surplus_mc == (900 - 800) * 3_000 // 1_000
    assert figures.orders == {"placed": 2, "filled": 1, "partly filled": 1, "unfilled": 0}
