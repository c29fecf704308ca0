"""The bound on every balance, and the two ways the law keeps to it.

Every balance, system accounts included, stays within +-BALANCE_MAX (``schemas.types``): it fits a
Postgres bigint a thousand times over and every JSON reader exactly. What a participant asks for
(a genesis, a trade, a transfer, a policy) and would cross the bound is refused with
``LIMIT_EXCEEDED``. What the grid itself books (meter readings, interest) is capped instead, so the
clock never stops: production past the bound is curtailed, consumption past the system account's
bound counts as unmet, interest is paid only up to the bound. No posting is ever larger than the bound.
"""

from __future__ import annotations

from collections.abc import Iterable

from law.state import State, balances_after
from schemas.types import BALANCE_MAX

Posting = tuple[str, str, int]


def crossing(state: State, postings: Iterable[Posting]) -> tuple[str, str, int] | None:
    """The first (account, resource, balance) that ``postings`` would push outside +-BALANCE_MAX."""
    return beyond_bound(balances_after(state, postings))


def beyond_bound(after: dict[tuple[str, str], int]) -> tuple[str, str, int] | None:
    """The first of the balances ``after`` (``law.state.balances_after``) outside +-BALANCE_MAX."""
    return next(((a, r, v) for (a, r), v in after.items() if abs(v) > BALANCE_MAX), None)


def room_up(balance: int) -> int:
    """How much more a balance may grow."""
    return max(0, BALANCE_MAX - balance)


def room_down(balance: int) -> int:
    """How much more a balance may shrink (system accounts go negative as the grid's counterparty)."""
    return max(0, balance + BALANCE_MAX)
