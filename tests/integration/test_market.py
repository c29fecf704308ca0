"""The order book through the real validator, broker and database: bids and asks fill in price-time
priority with escrow, and the ledger they leave verifies and rehydrates."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from connectors.readmodel.ledger import audit_database
from core.config import Settings
from law.state import SYSTEM_ESCROW
from streams.rehydrate import rehydrate
from streams.workload import OPENING_UNITS
from tests.integration.test_total_law import Grid
from tests.integration.test_validator import SECRET, settings
from tests.support.fold import workload_keyring

__all__ = ["settings"]

SELLER, BUYERS = "solar", ["alice", "bob", "hospital"]


def order(side: str, agent: str, quantity: int, price: int) -> dict[str, Any]:
    return {
        "kind": side,
        "account": f"{agent}:main",
        "resource": "energy",
        "quantity": quantity,
        "price": price,
        "open_until_tick": 5,
    }


def fills(settings: Settings) -> list[tuple[str, str, int, int, int]]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT effects_json FROM ledger ORDER BY seq").fetchall()
    found = [e for (text,) in rows for e in orjson.loads(text) if e["t"] == "fill"]
    return [(f["maker"], f["taker"], f["quantity"], f["price"], f["payment"]) for f in found]


def test_three_buyers_bidding_for_one_sellers_energy_each_get_a_fill_as_priced(settings: Settings) -> None:
    grid = Grid(settings, agents=[SELLER, *BUYERS])
    grid.start()
    assert grid.send(SELLER, order("ask", SELLER, 1_000, 500), "ask-1") == "ACCEPTED"
    decisions = [grid.send(b, order("bid", b, 400, 600), f"bid-{b}") for b in BUYERS]
    assert decisions == ["ACCEPTED"] * 3  # no OFFER_NOT_OPEN storm: each bid fills what is left
    assert fills(settings) == [
        ("solar/ask-1", "alice/bid-alice", 400, 500, 200),
        ("solar/ask-1", "bob/bid-bob", 400, 500, 200),
        ("solar/ask-1", "hospital/bid-hospital", 200, 500, 100),
    ]
    assert grid.balance("hospital:main", "energy") == OPENING_UNITS + 200
    assert grid.balance(f"{SELLER}:main", "credits") == OPENING_UNITS + 500
    # the rest of hospital's bid rests: ceil(400 x 600 / 1000) = 240 reserved, 100 paid, 140 held
    assert grid.balance(SYSTEM_ESCROW, "credits") == 140
    assert grid.meter() == "ACCEPTED"  # the clock runs on with an order resting
    report = audit_database(settings.database_url, workload_keyring(SECRET))
    assert report.ok, report.problems
    assert rehydrate(settings).ok


def test_a_negotiation_through_the_validator_alternates_turns_in_the_cache_and_rehydrates(settings: Settings) -> None:
    grid = Grid(settings, agents=[SELLER, *BUYERS])
    grid.start()
    offer = {"kind": "offer", "account": f"{SELLER}:main", "resource": "energy", "quantity": 1_000, "price": 900}
    assert grid.send(SELLER, {**offer, "open_until_tick": 5, "to_agent": "bob"}, "deal") == "ACCEPTED"
    assert grid.send("alice", {"kind": "accept", "offer_id": "solar/deal", "account": "alice:main"}, "a") == (
        "NOT_ADDRESSED"
    )
    countered = {"kind": "counter", "offer_id": "solar/deal", "account": "bob:main", "quantity": 800, "price": 600}
    assert grid.send("bob", countered, "c1") == "ACCEPTED"
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT to_agent, turn, buyer_account, quantity, price, rounds FROM open_offers").fetchone()
    assert row == ("bob", SELLER, "bob:main", 800, 600, 1)
    assert rehydrate(settings).ok  # the cache of a countered offer matches the fold
    taken = {"kind": "accept", "offer_id": "solar/deal", "account": f"{SELLER}:main"}
    assert grid.send(SELLER, taken, "take") == "ACCEPTED"
    assert grid.balance("bob:main", "energy") == OPENING_UNITS + 800
    assert audit_database(settings.database_url, workload_keyring(SECRET)).ok
