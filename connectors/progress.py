"""The one progress bar the commands show (bench, replay, rehydrate, simulate): drawn only on a terminal.

tqdm redraws a bar with a carriage return several times a second; piped into a file or a CI log that
is thousands of updates. ``disable=None`` is tqdm's own switch for this: the bar is off when its
stream (stderr unless given) is not a TTY.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm


def progress_bar(
    iterable: Iterable[Any] | None = None, *, enabled: bool = True, file: TextIO | None = None, **options: Any
) -> tqdm[Any]:
    """A tqdm bar over ``iterable`` (or updated by hand) on ``file``, drawn only when ``enabled`` and
    ``file`` is a terminal; ``options`` are tqdm's (total, desc, unit, ...)."""
    return tqdm(iterable, file=file, disable=None if enabled else True, **options)
