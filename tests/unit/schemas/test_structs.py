"""The decoder's fast path agrees with pydantic: the same verdict on every message and, when both
accept, the same values. Messages are the published vectors (every kind), each mutated at one place:
a value swapped for a hostile one, a key dropped or an unknown key added."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from law import Accepted
from schemas.codec import Decoded, decode, encode, sign
from schemas.proposal import Proposal
from schemas.structs import PROPOSAL_STRUCT, as_dict, json_without_none
from schemas.types import MEMO_LENGTH_MAX, NONCE_MAX, QUANTITY_MAX, TICK_MAX
from tests.support.vectors import CASES, vector
from tests.support.world import World, account, signer

ENVELOPES = [{**vector(*case)["input"], "sig": vector(*case)["sig"]} for case in CASES]
BOUNDS = (QUANTITY_MAX, NONCE_MAX, TICK_MAX, 2**31 - 1, 2**53 - 1, 2**63 - 1, 2**64 - 1)
HOSTILE = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1.0, 1.5, "", [], {}, "a\n", "\n", "x" * 65, "solar-1\n"]),
    st.sampled_from(BOUNDS).flatmap(lambda b: st.sampled_from([b - 1, b, b + 1, -b, 2**65])),
    st.sampled_from(["0" * 32, "0" * 64, "0" * 128, "0" * 63 + "\n", "m" * MEMO_LENGTH_MAX, "m" * 281]),
    st.sampled_from(["energy", "gold", "transfer", "genesis", "participant", "operator", "solar-1/offer-7"]),
    st.text(max_size=8),
    st.integers(),
)

Path = tuple[str | int, ...]


def paths(node: Any, at: Path = ()) -> list[Path]:
    """Every place in a parsed message: the root's keys and items at every depth."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = [at] if at else []
    for key, value in children:
        found += paths(value, (*at, key))
    return found


def mutated(message: dict[str, Any], where: Path, how: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(message)
    parent = out
    for part in where[:-1]:
        parent = parent[part]
    last = where[-1]
    if how == "replace":
        parent[last] = value
    elif how == "drop" and isinstance(parent, dict):
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent["zz_unknown"] = value
    return out


def plain(value: Any) -> Any:
    """Models and Structs alike as plain dicts (every field, defaults included; a tag as ``kind``)."""
    if isinstance(value, BaseModel):
        return {name: plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, msgspec.Struct):
        tag = type(value).__struct_config__.tag
        return {**({"kind": tag} if tag else {}), **{n: plain(getattr(value, n)) for n in value.__struct_fields__}}
    if isinstance(value, list | tuple):
        return [plain(x) for x in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def verdicts(message: dict[str, Any]) -> tuple[Any, Any]:
    try:
        fast = plain(msgspec.convert(message, PROPOSAL_STRUCT, strict=True))
    except msgspec.ValidationError:
        fast = None
    try:
        authority = plain(Proposal.model_validate(message))
    except ValidationError:
        authority = None
    return fast, authority


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_the_fast_path_and_pydantic_agree_on_every_mutation_of_every_kind(data: st.DataObject) -> None:
    message = data.draw(st.sampled_from(ENVELOPES))
    where = data.draw(st.sampled_from(paths(message)))
    changed = mutated(message, where, data.draw(st.sampled_from(["replace", "drop", "add"])), data.draw(HOSTILE))
    fast, authority = verdicts(changed)
    event("both accept" if fast is not None else "both refuse" if authority is None else "pydantic decides")
    if fast is not None:  # what the fast path accepts, pydantic accepts, with the same values
        assert fast == authority, (where, changed)
    # The converse can fail: pydantic's Literal[1] accepts ``true`` and ``1.0`` for ``v``; what the
    # fast path refuses, pydantic then decides, so the verdict is always pydantic's.


@pytest.mark.parametrize("message", ENVELOPES, ids=[case[0] for case in CASES])
def test_every_vector_decodes_on_the_fast_path_to_pydantics_values(message: dict[str, Any]) -> None:
    fast, authority = verdicts(message)
    assert fast is not None and fast == authority


@pytest.mark.parametrize("where", [("agent",), ("body", "memo"), ("sig",)], ids=str)
def test_a_trailing_newline_is_refused_by_both(where: Path) -> None:
    transfer = ENVELOPES[0]
    assert verdicts(mutated(transfer, where, "replace", str(_at(transfer, where)) + "\n")) == (None, None)


def _at(node: Any, where: Path) -> Any:
    for part in where:
        node = node[part]
    return node


def test_what_the_fast_path_refuses_is_refused_with_pydantics_reason_and_field() -> None:
    transfer = mutated(ENVELOPES[0], ("body", "quantity"), "replace", QUANTITY_MAX + 1)
    refused = decode(encode(transfer))
    assert not isinstance(refused, Decoded)
    assert (refused.reason_code, refused.field) == ("LIMIT_EXCEEDED", "body.transfer.quantity")


@pytest.mark.parametrize("v", [True, 1.0])
def test_a_message_only_pydantic_accepts_is_decided_by_the_law_as_before(v: Any) -> None:
    world = World().start()
    body = {
        "kind": "transfer",
        "from_account": account("solar"),
        "to_account": account("battery"),
        "resource": "energy",
        "quantity": 5,
    }
    unsigned = {k: val for k, val in world.envelope("solar", body).items() if k != "sig"}
    message = sign({**unsigned, "v": v}, signer("solar"))
    assert verdicts(message)[0] is None
    decoded = decode(encode(message))
    assert isinstance(decoded, Decoded) and isinstance(decoded.proposal, Proposal)
    assert isinstance(world.submit_raw(encode(message)), Accepted)
    assert world.state.balance(account("battery"), "energy") == 1_000_005


def test_registry_fields_and_provenance_json_are_the_same_from_either_path() -> None:
    add = next(m for m in ENVELOPES if m["body"]["kind"] == "participant_add")
    struct = msgspec.convert(add, PROPOSAL_STRUCT, strict=True)
    model = Proposal.model_validate(add)
    assert as_dict(struct.body.participant) == as_dict(model.body.participant)  # type: ignore[attr-defined]
    with_provenance = next(m for m in ENVELOPES if "provenance" in m)
    struct, model = (
        msgspec.convert(with_provenance, PROPOSAL_STRUCT, strict=True),
        Proposal.model_validate(with_provenance),
    )
    assert json_without_none(struct.provenance) == json_without_none(model.provenance)  # type: ignore[attr-defined, arg-type]
