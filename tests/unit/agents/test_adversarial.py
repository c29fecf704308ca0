"""AdversarialStrategy: each attack has the shape that must draw its rejection. Envelope-level
attacks are checked through the real codec; rule-level ones decode cleanly and carry the breach."""

from __future__ import annotations

from typing import Any

import pytest

from agents.adversarial import AdversarialStrategy, Attack
from agents.view import AgentView, OpenOffer, RestingOrder
from schemas import codec
from schemas.proposal import ENVELOPE_VERSION
from schemas.signing import HmacSigner, hmac_valid
from schemas.types import QUANTITY_MAX
from tests.support.attacks import ATTACK_REASONS

ME, ACCOUNT, VICTIM = "mallory", "mallory:main", "hospital-3:main"
KEY, WRONG_KEY = b"k" * 32, b"w" * 32
REPLAY_NONCE = 41  # the adversary's last decided nonce


def adversary_view(own_offer: bool = True, **balances: int) -> AgentView:
    offers = [OpenOffer("o-other", "wind-2", "wind-2:main", "energy", 1_000, 150, 30)]
    orders: tuple[RestingOrder, ...] = ()
    if own_offer:
        offers.append(OpenOffer("mallory/o-mine", ME, ACCOUNT, "water", 10, 5, 30))
        orders = (RestingOrder("mallory/o-ask", "ask", "energy", 1, 500_000, 30),)
    return AgentView(
        agent=ME,
        participant_kind="generic",
        account=ACCOUNT,
        tick=20,
        balances={"energy": 5_000, "water": 700, "credits": 90_000, **balances},
        expected_production={},
        expected_consumption={},
        shortfall={},
        open_offers=tuple(offers),
        own_orders=orders,
    )


def by_name(attacks: list[Attack]) -> dict[str, Attack]:
    return {a.name: a for a in attacks}


def envelope(attack: Attack) -> bytes:
    """What the runner sends for ``attack``: raw bytes as they are, else a signed envelope."""
    if attack.raw is not None:
        return attack.raw
    unsigned: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "id": f"p-{attack.name.replace('_', '-')}",
        "agent": ME,
        "nonce": attack.reuse_nonce or REPLAY_NONCE + 1,
        "tick": 20,
        "expires_tick": 25,
        "body": attack.body,
    }
    return codec.encode(codec.sign(unsigned, HmacSigner(WRONG_KEY if attack.sign_with_wrong_key else KEY)))


@pytest.fixture
def attacks() -> dict[str, Attack]:
    return by_name(AdversarialStrategy(seed=3).attacks(adversary_view(), VICTIM, REPLAY_NONCE))


def test_every_attack_is_planned_with_its_expected_reason(attacks: dict[str, Attack]) -> None:
    assert {name: a.expected_reason for name, a in attacks.items()} == ATTACK_REASONS
    for attack in attacks.values():
        assert (attack.body is None) != (attack.raw is None), attack.name


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("llm_float_quantity", "body.transfer.quantity"),
        ("llm_oversized_quantity", "body.transfer.quantity"),
    ],
)
def test_envelope_breaking_bodies_are_refused_by_the_codec(attacks: dict[str, Attack], name: str, field: str) -> None:
    decoded = codec.decode(envelope(attacks[name]))
    assert isinstance(decoded, codec.DecodeError)
    assert (decoded.reason_code, decoded.field) == (attacks[name].expected_reason, field)


def test_not_json_is_malformed(attacks: dict[str, Attack]) -> None:
    decoded = codec.decode(envelope(attacks["llm_not_json"]))
    assert isinstance(decoded, codec.DecodeError) and decoded.reason_code == "MALFORMED"


def test_bad_signature_decodes_but_does_not_verify(attacks: dict[str, Attack]) -> None:
    decoded = codec.decode(envelope(attacks["bad_signature"]))
    assert isinstance(decoded, codec.Decoded)
    assert not hmac_valid(decoded.signed_bytes, decoded.sig, KEY)


@pytest.mark.parametrize("name", ["overspend", "spend_victim_account", "replay", "self_trade"])
def test_rule_breaking_attacks_are_well_formed_and_correctly_signed(attacks: dict[str, Attack], name: str) -> None:
    decoded = codec.decode(envelope(attacks[name]))
    assert isinstance(decoded, codec.Decoded), decoded
    assert hmac_valid(decoded.signed_bytes, decoded.sig, KEY)


def test_rule_breaches(attacks: dict[str, Attack]) -> None:
    view = adversary_view()
    overspend = attacks["overspend"].body
    assert overspend is not None and overspend["from_account"] == ACCOUNT
    assert overspend["quantity"] > view.balances[overspend["resource"]]

    stolen = attacks["spend_victim_account"].body
    assert stolen is not None and (stolen["from_account"], stolen["to_account"]) == (VICTIM, ACCOUNT)

    assert attacks["replay"].reuse_nonce == REPLAY_NONCE
    assert attacks["self_trade"].body == {"kind": "accept", "offer_id": "mallory/o-mine", "account": ACCOUNT}


def test_replay_needs_an_accepted_id() -> None:
    names = by_name(AdversarialStrategy(seed=3).attacks(adversary_view(), VICTIM, None))
    assert "replay" not in names


def test_without_an_own_offer_it_first_posts_one_to_self_trade_later() -> None:
    names = by_name(AdversarialStrategy(seed=3).attacks(adversary_view(own_offer=False), VICTIM, REPLAY_NONCE))
    setup = names["self_trade_setup"]
    assert "self_trade" not in names and setup.expected_reason is None
    assert setup.body is not None and setup.body["kind"] == "offer" and setup.body["resource"] == "energy"
    assert isinstance(codec.decode(envelope(setup)), codec.Decoded)


def test_overspend_is_skipped_when_no_quantity_can_exceed_the_balance() -> None:
    huge = QUANTITY_MAX
    attacks = AdversarialStrategy(seed=3).attacks(
        adversary_view(energy=huge, water=huge, credits=huge), VICTIM, REPLAY_NONCE
    )
    assert "overspend" not in by_name(attacks)


def test_cycles_through_the_attacks() -> None:
    strategy = AdversarialStrategy(seed=5)
    count = len(by_name(strategy.attacks(adversary_view(), VICTIM, REPLAY_NONCE)))
    firsts = [strategy.attacks(adversary_view(), VICTIM, REPLAY_NONCE)[0].name for _ in range(count)]
    assert sorted(firsts) == sorted(by_name(strategy.attacks(adversary_view(), VICTIM, REPLAY_NONCE)))


def test_same_seed_same_attacks() -> None:
    a, b = AdversarialStrategy(seed=9), AdversarialStrategy(seed=9)
    for _ in range(5):
        assert a.attacks(adversary_view(), VICTIM, REPLAY_NONCE) == b.attacks(adversary_view(), VICTIM, REPLAY_NONCE)


def test_matching_attacks_spoof_an_unfunded_bid_and_cross_their_own_ask(attacks: dict[str, Attack]) -> None:
    spoof = attacks["unfunded_bid"].body
    assert spoof is not None and spoof["kind"] == "bid"
    assert -(-spoof["quantity"] * spoof["price"] // 1_000) > adversary_view().balances["credits"]
    cross = attacks["self_cross"].body
    assert cross is not None and (cross["kind"], cross["price"]) == ("bid", 500_000)  # at its own ask


def test_without_an_own_ask_it_first_rests_one_out_of_reach() -> None:
    names = by_name(AdversarialStrategy(seed=3).attacks(adversary_view(own_offer=False), VICTIM, REPLAY_NONCE))
    setup = names["self_cross_setup"]
    assert "self_cross" not in names and setup.expected_reason is None
    assert setup.body is not None and (setup.body["kind"], setup.body["quantity"]) == ("ask", 1)
