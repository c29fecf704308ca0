"""Pure reshaping of query results into what the charts plot; no I/O, so unit tests need no database."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LINKS_SHOWN_MAX = 40
OTHERS = "others"


def balance_history(now: pd.DataFrame, changes: pd.DataFrame, points_max: int) -> pd.DataFrame:
    """Columns seq, tick, participant, balance: each participant's balance after every entry in the window.

    Balances are reconstructed backwards from the current ones: the balance before the window (at the
    seq just before it) is the current balance minus every change inside it, and the running sum of
    changes rebuilds the rest.
    At most ``points_max`` entries are kept (evenly spaced, always the last), so a long window stays light.
    """
    if changes.empty or now.empty:
        return pd.DataFrame(columns=["seq", "tick", "participant", "balance"])
    deltas = changes.pivot_table(index="seq", columns="account", values="amount", aggfunc="sum", fill_value=0)
    deltas = deltas.reindex(columns=now["account"], fill_value=0)
    start = now.set_index("account")["balance"] - deltas.sum()
    # One row for the balances just before the window, so every line starts where the window does.
    before = pd.DataFrame([start], index=pd.Index([deltas.index.min() - 1], name="seq"))
    balances = pd.concat([before, deltas.cumsum() + start])
    owner = now.set_index("account")["participant"]
    by_participant = balances.T.groupby(owner).sum().T
    by_participant = _downsample(by_participant, points_max)
    ticks = changes.groupby("seq")["tick"].max()
    long = by_participant.reset_index().melt(id_vars="seq", var_name="participant", value_name="balance")
    long["tick"] = long["seq"].map(ticks)
    return long[["seq", "tick", "participant", "balance"]]


def with_change(history: pd.DataFrame) -> pd.DataFrame:
    """Adds ``change``: each participant's balance minus its first balance in the window."""
    first = history.sort_values("seq").groupby("participant")["balance"].transform("first")
    return history.assign(change=history["balance"] - first)


def _downsample(frame: pd.DataFrame, points_max: int) -> pd.DataFrame:
    if len(frame) <= points_max:
        return frame
    step = -(-len(frame) // points_max)  # ceiling division
    keep = list(range(0, len(frame), step))
    if keep[-1] != len(frame) - 1:
        keep.append(len(frame) - 1)
    return frame.iloc[keep]


def most_active(history: pd.DataFrame, count: int) -> list[str]:
    """The ``count`` participants whose balance moved most in the window."""
    if history.empty:
        return []
    spread = history.groupby("participant")["balance"].agg(lambda b: b.max() - b.min())
    return list(spread.sort_values(ascending=False).index[:count])


@dataclass(frozen=True)
class Sankey:
    labels: list[str]
    sources: list[int]
    targets: list[int]
    values: list[float]
    hidden_links: int  # pairs folded into "others"


def sankey(flows: pd.DataFrame, links_max: int = LINKS_SHOWN_MAX) -> Sankey:
    """A two-column Sankey: senders on the left, receivers on the right.

    Two columns, not one node per participant, because trades go both ways and a Sankey cannot draw
    cycles; the smallest pairs beyond ``links_max`` are folded into one link between "others".
    """
    top = flows.nlargest(links_max, "amount")
    rest = flows.drop(top.index)
    links = list(top[["source", "target", "amount"]].itertuples(index=False, name=None))
    if not rest.empty:
        links.append((OTHERS, OTHERS, float(rest["amount"].sum())))
    senders = sorted({s for s, _, _ in links})
    receivers = sorted({t for _, t, _ in links})
    labels = senders + receivers
    return Sankey(
        labels=labels,
        sources=[senders.index(s) for s, _, _ in links],
        targets=[len(senders) + receivers.index(t) for _, t, _ in links],
        values=[float(v) for _, _, v in links],
        hidden_links=len(rest),
    )


def wall_times(at: pd.Series) -> pd.Series:
    """``14:03:07 UTC`` for each timestamp: the wall-clock time shown beside a tick, never on an axis."""
    return pd.to_datetime(at, utc=True).dt.strftime("%H:%M:%S UTC")


def grid_ticks(seqs: pd.Series, starts: pd.DataFrame) -> pd.Series:
    """The grid tick each ledger seq was decided in: that of the last tick start (``starts``: columns
    tick and seq, oldest first) at or before it. Every seq must be at or after the first start."""
    position = np.searchsorted(starts["seq"].to_numpy(), seqs.to_numpy(), side="right") - 1
    assert (position >= 0).all(), "a seq before the first tick start has no tick in this window"
    return pd.Series(starts["tick"].to_numpy()[position], index=seqs.index)


def tick_end_changes(history: pd.DataFrame, starts: pd.DataFrame) -> pd.DataFrame:
    """Columns tick, at, participant, balance, change: each participant's balance at the end of every
    tick of ``starts``, and its change since the balance before the first of them.

    ``history`` is ``balance_history`` from the first start's seq: its row just before that seq is the
    baseline, and the last entry of each tick gives that tick's balance.
    """
    if history.empty:
        return pd.DataFrame(columns=["tick", "at", "participant", "balance", "change"])
    changed = with_change(history)
    inside = changed[changed["seq"] >= starts["seq"].iloc[0]]
    inside = inside.assign(tick=grid_ticks(inside["seq"], starts))
    ends = inside.sort_values("seq").groupby(["participant", "tick"], as_index=False).last()
    ends = ends.merge(starts[["tick", "at"]], on="tick", how="left")
    return ends[["tick", "at", "participant", "balance", "change"]].sort_values(["tick", "participant"])
