"""The same log under another market mechanism: a counterfactual replay, in memory.

The proposals at offsets [0, bound) are read once and each is decided twice, by two ledger steps in
lockstep: one as the log says (its head hash must equal the live ledger's, which proves the replay
faithful), and one whose state pins ``market_mechanism`` (``law.state.State.pinned``) whatever the
genesis and the policy changes in the log set. Both feed the same market fold
(``connectors.readmodel.market``), so the two columns are measured by the same code. Nothing is
written: the counterfactual ledger is a measurement, not a ledger anyone could trade on.

The order flow stays what the agents sent under the live mechanism; what changes is only how the
law matched it. That is the question an operator asks before a policy change of the mechanism.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from connectors.readmodel.market import LedgerRow, MarketFigures, MarketFold
from connectors.readmodel.replay import head_below
from core.config import Settings
from core.keyring import Keyring, validator_keyring
from core.rows import Rejection
from core.step import LedgerStep
from law import State
from law.ledger import Entry
from law.policy import MARKET_MECHANISMS, invalid_param
from streams.log_reader import read_log
from streams.replay_errors import ReplayError


@dataclass
class Decided:
    """One column: the log as one ledger step decided it."""

    label: str
    fold: MarketFold = field(default_factory=MarketFold)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    entries: int = 0
    head_hash: bytes = b""

    def record(self, outcome: Entry | Rejection) -> None:
        if isinstance(outcome, Entry):
            self.entries += 1
            self.head_hash = outcome.hash
            self.fold.add(LedgerRow.of(outcome))
        else:
            self.rejected_by_reason[outcome.reason_code] += 1

    @property
    def figures(self) -> MarketFigures:
        return self.fold.figures()


@dataclass
class Counterfactual:
    to_offset: int
    mechanism: str
    as_decided: Decided
    pinned: Decided
    seconds: float
    live_head: bytes

    @property
    def faithful(self) -> bool:
        """The log as decided again reproduces the live ledger's head."""
        return self.as_decided.head_hash == self.live_head


def mechanism_pins(mechanism: str) -> dict[str, int]:
    if mechanism not in MARKET_MECHANISMS:
        raise ReplayError(f"mechanism {mechanism!r}: choose from {', '.join(MARKET_MECHANISMS)}")
    pins = {"market_mechanism": MARKET_MECHANISMS[mechanism]}
    assert invalid_param(pins) is None
    return pins


def decide_both(
    messages: Iterator[tuple[int, bytes | None]], keyring: Keyring, version: str, mechanism: str
) -> tuple[Decided, Decided]:
    """Each message decided as the log says and with the mechanism pinned, in offset order."""
    as_is, pinned = (
        LedgerStep(State(), keyring, version),
        LedgerStep(State.pinned(mechanism_pins(mechanism)), keyring, version),
    )
    columns = Decided("as decided"), Decided(f"under {mechanism}")
    for offset, raw in messages:
        for step, column in zip((as_is, pinned), columns, strict=True):
            column.record(step.step(raw, offset))
    return columns


def counterfactual(settings: Settings, secret: bytes, to_offset: int, mechanism: str) -> Counterfactual:
    """Offsets [0, to_offset) of the proposals topic, as decided and under ``mechanism``.

    Both steps stamp the live head's version, not this code's: the as-decided head can only equal the
    live one with the stamp it was sealed with (a ledger decided by several versions cannot match,
    and the comparison says so)."""
    started = time.perf_counter()
    head = head_below(settings.database_url, to_offset)
    if head is None:
        raise ReplayError(f"the live ledger has no entry below offset {to_offset}")
    live_head, version = head
    messages = read_log(settings.kafka("admin"), settings.topic("proposals"), to_offset, "gridgov-counterfactual")
    log = ((offset, msg.value()) for offset, msg in messages)
    as_decided, pinned = decide_both(log, validator_keyring(settings, secret), version, mechanism)
    return Counterfactual(to_offset, mechanism, as_decided, pinned, time.perf_counter() - started, live_head)
