"""The commands' progress bar draws only on a terminal: piped, it writes no carriage-return updates."""

from __future__ import annotations

import io

from connectors.progress import progress_bar

UPDATE_COUNT = 1_000


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(stream: io.StringIO, enabled: bool = True) -> str:
    # mininterval=0: every update would be drawn, as a long run's thousands of refreshes are
    with progress_bar(total=UPDATE_COUNT, enabled=enabled, file=stream, mininterval=0, desc="t") as bar:
        for _ in range(UPDATE_COUNT):
            bar.update(1)
    return stream.getvalue()


def test_a_bar_on_a_stream_that_is_not_a_terminal_writes_nothing() -> None:
    written = _drive(io.StringIO())
    assert "\r" not in written
    assert written == ""


def test_a_bar_on_a_terminal_redraws_with_carriage_returns() -> None:
    assert _drive(Terminal()).count("\r") > 1  # what the test above would catch, were the bar drawn when piped


def test_a_disabled_bar_writes_nothing_even_on_a_terminal() -> None:
    assert _drive(Terminal(), enabled=False) == ""


def test_a_bar_over_an_iterable_yields_every_item_when_not_drawn() -> None:
    assert list(progress_bar(range(5), file=io.StringIO())) == [0, 1, 2, 3, 4]
