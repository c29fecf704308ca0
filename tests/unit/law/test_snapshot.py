"""Checkpoint snapshots: the state round-trips exactly, the text is canonical, corrupt text is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given

from law import State
from law.snapshot import SnapshotError, from_json, to_json
from tests.support.world import refold
from tests.unit.law.test_decide_properties import fast, run, sequences


@fast
@given(sequences)
def test_every_reachable_state_round_trips_exactly(sequence: list[tuple[str, dict[str, Any]]]) -> None:
    world, _ = run(sequence)
    text = to_json(world.state)
    assert from_json(text) == world.state
    assert to_json(from_json(text)) == text


@fast
@given(sequences)
def test_a_state_restored_from_a_snapshot_folds_on_like_the_original(
    sequence: list[tuple[str, dict[str, Any]]],
) -> None:
    world, _ = run(sequence)
    half = len(world.decided) // 2
    resumed = from_json(to_json(refold(world.decided[:half])))
    assert refold(world.decided[half:], resumed) == world.state


def test_the_text_does_not_depend_on_insertion_order() -> None:
    a, b = State(), State()
    a.balances = {("x:main", "energy"): 1, ("a:main", "water"): 2}
    b.balances = {("a:main", "water"): 2, ("x:main", "energy"): 1}
    a.nonces, b.nonces = {"solar": 3, "battery": 4}, {"battery": 4, "solar": 3}
    assert to_json(a) == to_json(b)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(v=1),
        lambda p: p.pop("nonces"),
        lambda p: p.update(extra=1),
        lambda p: p.update(balances=[["a", "energy"]]),
        lambda p: p["telemetry"].update(unknown=1),
    ],
    ids=["version", "missing field", "extra field", "short row", "bad telemetry"],
)
def test_corrupt_snapshots_are_refused(mutate: Any) -> None:
    plain = orjson.loads(to_json(State()))
    mutate(plain)
    with pytest.raises(SnapshotError):
        from_json(orjson.dumps(plain).decode())


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(SnapshotError):
        from_json('{"v": 2, ')


def test_a_version_2_snapshot_from_before_the_order_book_reads_with_an_empty_book() -> None:
    plain = orjson.loads(to_json(State(tick=7)))
    del plain["orders"], plain["orders_by_agent"]
    restored = from_json(orjson.dumps({**plain, "v": 2}).decode())
    assert restored == State(tick=7) and restored.orders == {}
    with pytest.raises(SnapshotError):
        from_json(orjson.dumps(plain).decode())  # a version-3 snapshot must have them
