"""Seqs and offsets from links and the search box are untrusted text: only what a ledger could hold
becomes a number, so no link makes a page fail."""

from __future__ import annotations

import pytest

from dashboard.fmt import BIGINT_MAX, position


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), (str(BIGINT_MAX), BIGINT_MAX)])
def test_a_seq_or_offset_is_read_as_a_number(text: str, value: int) -> None:
    assert position(text) == value


@pytest.mark.parametrize("text", [None, "", "-1", "4.2", " 42", "²", "١٢", str(BIGINT_MAX + 1), "9" * 5_000])
def test_anything_else_is_not_a_position(text: str | None) -> None:
    assert position(text) is None
