"""The law's state as canonical JSON, for checkpoints: ``from_json(to_json(s)) == s`` exactly.

Canonical means one byte string per state: object keys sorted, tuple-keyed maps written as sorted
lists of rows, and no floats (every number in the state is an integer). A checkpoint's hash covers
these bytes, so two folds that reach the same state write the same checkpoint.

"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from law.state import AgentInfo, OpenOffer, Order, State, Telemetry

SNAPSHOT_FORMAT_VERSION = 3  # 2: nonces and the breaker's trip seq replace remembered ids; 3: the order book
# Fields a version-2 snapshot lacks, read as empty: a checkpoint made before the book had no orders.
_ADDED_IN_3: dict[str, dict[str, Any]] = {"orders": {}, "orders_by_agent": {}}

# A new State field must be added here and below, or every snapshot would silently drop it.
_STATE_FIELDS = frozenset(
    {
        "seq_next",
        "tick",
        "balances",
        "account_owner",
        "agents",
        "offers",
        "offers_by_seller",
        "orders",
        "orders_by_agent",
        "nonces",
        "tick_counts",
        "tick_count_total",
        "shortfall",
        "telemetry",
        "policy",
        "policy_version",
        "breaker_open",
        "breaker_reason",
        "breaker_grace_until_tick",
        "breaker_trip_seq",
    }
)
# A counterfactual's pins (``State.pinned``) are never part of a ledger's state, so never snapshotted.
_NOT_SNAPSHOTTED = frozenset({"policy_pins"})
assert {f.name for f in dataclasses.fields(State)} == _STATE_FIELDS | _NOT_SNAPSHOTTED, (
    "law/snapshot.py does not cover every State field"
)
_AGENT_FIELDS = tuple(f.name for f in dataclasses.fields(AgentInfo))
_OFFER_FIELDS = tuple(f.name for f in dataclasses.fields(OpenOffer))
_ORDER_FIELDS = tuple(f.name for f in dataclasses.fields(Order))


class SnapshotError(ValueError):
    """The text is not a snapshot this version can read."""


def to_json(state: State) -> str:
    return orjson.dumps(_as_plain(state), option=orjson.OPT_SORT_KEYS).decode()


def from_json(text: str) -> State:
    try:
        plain = orjson.loads(text)
        if not isinstance(plain, dict) or plain.get("v") not in (2, SNAPSHOT_FORMAT_VERSION):
            raise SnapshotError(f"not a version 2 or {SNAPSHOT_FORMAT_VERSION} snapshot")
        if plain["v"] == 2 and not plain.keys() & _ADDED_IN_3.keys():
            plain = {**plain, **_ADDED_IN_3}
        if plain.keys() != _STATE_FIELDS | {"v"}:
            raise SnapshotError(f"unexpected fields: {sorted(plain.keys() ^ (_STATE_FIELDS | {'v'}))}")
        return _from_plain(plain)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"unreadable snapshot: {exc}") from exc


def _as_plain(s: State) -> dict[str, Any]:
    assert not s.policy_pins, "a counterfactual's state is never a checkpoint"
    return {
        "v": SNAPSHOT_FORMAT_VERSION,
        "seq_next": s.seq_next,
        "tick": s.tick,
        "balances": _rows(s.balances),
        "account_owner": s.account_owner,
        "agents": {name: _plain(a, _AGENT_FIELDS) for name, a in s.agents.items()},
        "offers": {offer_id: _plain(o, _OFFER_FIELDS) for offer_id, o in s.offers.items()},
        "offers_by_seller": s.offers_by_seller,
        "orders": {order_id: _plain(o, _ORDER_FIELDS) for order_id, o in s.orders.items()},
        "orders_by_agent": s.orders_by_agent,
        "nonces": s.nonces,
        "tick_counts": s.tick_counts,
        "tick_count_total": s.tick_count_total,
        "shortfall": _rows(s.shortfall),
        "telemetry": s.telemetry.as_dict(),
        "policy": s.policy,
        "policy_version": s.policy_version,
        "breaker_open": s.breaker_open,
        "breaker_reason": s.breaker_reason,
        "breaker_grace_until_tick": s.breaker_grace_until_tick,
        "breaker_trip_seq": s.breaker_trip_seq,
    }


def _plain(obj: AgentInfo | OpenOffer | Order, names: tuple[str, ...]) -> dict[str, Any]:
    # Not dataclasses.asdict: its deep copy is most of a checkpoint's cost with thousands of offers.
    return {name: getattr(obj, name) for name in names}


def _rows(amounts: dict[tuple[str, str], int]) -> list[list[Any]]:
    return [[account, resource, value] for (account, resource), value in sorted(amounts.items())]


def _from_plain(p: dict[str, Any]) -> State:
    return State(
        seq_next=p["seq_next"],
        tick=p["tick"],
        balances={(a, r): v for a, r, v in p["balances"]},
        account_owner=dict(p["account_owner"]),
        agents={name: _agent(a) for name, a in p["agents"].items()},
        offers={offer_id: OpenOffer(**o) for offer_id, o in p["offers"].items()},
        offers_by_seller=dict(p["offers_by_seller"]),
        orders={order_id: Order(**o) for order_id, o in p["orders"].items()},
        orders_by_agent=dict(p["orders_by_agent"]),
        nonces=dict(p["nonces"]),
        tick_counts=dict(p["tick_counts"]),
        tick_count_total=p["tick_count_total"],
        shortfall={(a, r): v for a, r, v in p["shortfall"]},
        telemetry=Telemetry(**p["telemetry"]),
        policy=dict(p["policy"]),
        policy_version=p["policy_version"],
        breaker_open=p["breaker_open"],
        breaker_reason=p["breaker_reason"],
        breaker_grace_until_tick=p["breaker_grace_until_tick"],
        breaker_trip_seq=p["breaker_trip_seq"],
    )


def _agent(a: dict[str, Any]) -> AgentInfo:
    return AgentInfo(**{**a, "accounts": tuple(a["accounts"])})
