"""Comparing two ledgers decided from the same proposals: entry by entry for the same law (where the
hashes must match), outcome by outcome and balance by balance for another law."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from connectors.readmodel.replay import account_owners, balances, entry_digests
from connectors.readmodel.replay import outcomes as read_outcomes
from streams.replay_errors import ReplayError

FETCH_COUNT = 10_000  # rows per round trip of a streamed query
REPORTED_MAX = 1_000


@dataclass
class Comparison:
    entries: int = 0
    live_head: tuple[int, bytes] | None = None
    replay_head: tuple[int, bytes] | None = None
    divergence: str | None = None  # the first entry decided differently, or with other content
    divergence_seq: int | None = None
    # From here on the live entries carry another version stamp, so (chained) hashes cannot match;
    # the decisions are still compared.
    restamped_seq: int | None = None
    live_version: str | None = None

    @property
    def identical(self) -> bool:
        return self.divergence is None and self.restamped_seq is None


def compare_ledgers(live_url: str, target_url: str, to_offset: int) -> Comparison:
    """Entry by entry (seq, proposal id, hash) for the entries decided from offsets below the bound."""
    out = Comparison()
    live_rows, replay_rows = entry_digests(live_url, to_offset), entry_digests(target_url, to_offset)
    for live, replay in _zip_longest(live_rows, replay_rows):
        if live is not None:
            out.live_head = (live[0], bytes(live[4]))
        if replay is not None:
            out.replay_head = (replay[0], bytes(replay[4]))
        out.divergence = _entry_divergence(live, replay, out)
        if out.divergence is not None:
            out.divergence_seq = (live or replay or (None,))[0]
            break
        out.entries += 1
    return out


def _zip_longest(a: Iterator[Any], b: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    while True:
        x, y = next(a, None), next(b, None)
        if x is None and y is None:
            return
        yield x, y


def _entry_divergence(live: tuple[Any, ...] | None, replay: tuple[Any, ...] | None, out: Comparison) -> str | None:
    if live is None or replay is None:
        present, side = (live, "live") if live is not None else (replay, "replay")
        assert present is not None
        return f"seq {present[0]} ({present[2]!r}, offset {present[1]}) exists only in the {side} ledger"
    seq, offset, proposal_id, version, entry_hash = live
    if (seq, offset, proposal_id) != replay[:3]:
        return f"seq {seq}: live has {proposal_id!r} from offset {offset}, replay has {replay[2]!r} from {replay[1]}"
    if bytes(entry_hash) == bytes(replay[4]) or out.restamped_seq is not None:
        return None
    if version != replay[3]:
        out.restamped_seq, out.live_version = seq, version
        return None
    return f"seq {seq} ({proposal_id!r}): same proposal, different content (effects, postings or policy version)"


# --- diffing two laws ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    source_offset: int
    proposal_id: str | None
    agent: str | None
    kind: str | None
    verdict: str  # "ACCEPTED" or the rejection's reason code
    detail: str

    @property
    def accepted(self) -> bool:
        return self.verdict == "ACCEPTED"


@dataclass
class LawDiff:
    offsets: int = 0
    flipped: list[tuple[Outcome, Outcome]] = field(default_factory=list)
    flipped_count: int = 0
    reason_changed: list[tuple[Outcome, Outcome]] = field(default_factory=list)
    reason_changed_count: int = 0
    balances: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # agent, account, resource, live, cf


def outcomes(url: str, to_offset: int) -> Iterator[Outcome]:
    for row in read_outcomes(url, to_offset):
        yield Outcome(*row)


def diff_laws(live_url: str, target_url: str, to_offset: int) -> LawDiff:
    out = LawDiff()
    for live, other in _zip_longest(outcomes(live_url, to_offset), outcomes(target_url, to_offset)):
        if live is None or other is None or live.source_offset != other.source_offset:
            raise ReplayError(f"the two runs did not decide the same offsets (near {live or other})")
        out.offsets += 1
        if live.accepted != other.accepted:
            out.flipped_count += 1
            if len(out.flipped) < REPORTED_MAX:
                out.flipped.append((live, other))
        elif live.verdict != other.verdict:
            out.reason_changed_count += 1
            if len(out.reason_changed) < REPORTED_MAX:
                out.reason_changed.append((live, other))
    out.balances = balance_differences(live_url, target_url, to_offset)
    return out


def balance_differences(live_url: str, target_url: str, to_offset: int) -> list[tuple[str, str, str, int, int]]:
    """(owner, account, resource, live, counterfactual) wherever the two ledgers end with other balances."""
    live, other = balances(live_url, to_offset), balances(target_url, to_offset)
    owners = account_owners(live_url)
    keys = sorted(k for k in set(live) | set(other) if live.get(k, 0) != other.get(k, 0))
    return [(owners.get(a, a), a, r, live.get((a, r), 0), other.get((a, r), 0)) for a, r in keys][:REPORTED_MAX]
