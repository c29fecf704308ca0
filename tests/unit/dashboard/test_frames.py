"""The dashboard's pure reshaping: ledger seqs to grid ticks, balances at the end of each tick, and
untrusted text made inert for chart labels."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from dashboard import fmt, frames

AT = [datetime(2026, 1, 1, 12, 0, s, tzinfo=UTC) for s in (0, 1, 2)]
# The genesis starts tick 0 at seq 0; meter entries start tick 1 at seq 4 and tick 3 at seq 9.
STARTS = pd.DataFrame({"tick": [0, 1, 3], "seq": [0, 4, 9], "source_offset": [0, 5, 11], "at": AT})


def test_a_seq_is_in_the_tick_of_the_last_start_at_or_before_it() -> None:
    seqs = pd.Series([0, 3, 4, 8, 9, 50])
    assert frames.grid_ticks(seqs, STARTS).tolist() == [0, 0, 1, 1, 3, 3]


def test_a_seq_before_the_window_has_no_tick() -> None:
    with pytest.raises(AssertionError):
        frames.grid_ticks(pd.Series([3]), STARTS.iloc[1:])


def test_balances_are_taken_at_the_end_of_each_tick_as_changes_from_before_the_window() -> None:
    now = pd.DataFrame({"account": ["a:main", "b:main"], "participant": ["a", "b"], "balance": [110, 90]})
    changes = pd.DataFrame(
        {
            "seq": [5, 5, 6, 6, 10, 10],
            "tick": [1] * 6,  # the tick each proposal claimed: not the one the grid was in
            "account": ["a:main", "b:main"] * 3,
            "amount": [5, -5, 3, -3, 2, -2],
        }
    )
    history = frames.balance_history(now, changes, points_max=100)
    ends = frames.tick_end_changes(history, STARTS.iloc[1:])
    a = ends[ends["participant"] == "a"]
    assert a["tick"].tolist() == [1, 3]
    assert a["balance"].tolist() == [108, 110] and a["change"].tolist() == [8, 10]
    assert a["at"].tolist() == AT[1:]


def test_no_balance_history_is_an_empty_frame_with_the_columns() -> None:
    empty = frames.balance_history(pd.DataFrame(), pd.DataFrame(), points_max=10)
    assert list(frames.tick_end_changes(empty, STARTS).columns) == ["tick", "at", "participant", "balance", "change"]


def test_wall_times_are_utc_clock_times() -> None:
    assert frames.wall_times(pd.Series(AT[:1])).tolist() == ["12:00:00 UTC"]


def test_chart_labels_show_markup_as_text() -> None:
    assert (
        fmt.plot_text('<a href="https://evil.test">x</a> & <b>')
        == '&lt;a href="https://evil.test"&gt;x&lt;/a&gt; &amp; &lt;b&gt;'
    )
