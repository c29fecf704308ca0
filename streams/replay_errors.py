"""The one error of a replay, whichever part of it failed: the command reports it and exits 2."""

from __future__ import annotations


class ReplayError(RuntimeError):
    pass
