"""Bounded retries with exponential backoff and full jitter, for calls to outside services.

The outside service decides whether a failure is worth retrying: its client raises ``RetryableError``
(5xx, timeouts, rate limits, carrying the server's ``retry_after`` when it named one) or
``PermanentError`` (a request the service will never accept as sent). ``call_with_retries`` retries
the first kind a bounded number of times and then raises ``RetriesExhausted``; it never swallows a
failure. Waiting goes through an injected ``Waiter`` so a shutdown can interrupt a long backoff.

Jitter uses ``random``: the sinks are not the law, and spreading retries of many workers apart is
the point of it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

ATTEMPTS_MAX = 6
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# A server-named wait is honoured in full, then stretched by up to this fraction so that several
# workers released by the same reset do not all arrive in the same instant.
RETRY_AFTER_JITTER_FRACTION = 0.1


class RetryableError(Exception):
    """A transient failure: the same request may succeed later.

    ``maybe_applied`` is False only when the service certainly did not act on the request (it said
    "rate limited"); after a timeout or a 5xx the caller must assume it might have.
    """

    def __init__(self, message: str, retry_after_s: float | None = None, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.maybe_applied = maybe_applied


class PermanentError(Exception):
    """The service refused the request as sent; repeating it will not help."""


class RetriesExhausted(Exception):
    """Every attempt failed; ``last`` is the final failure."""

    def __init__(self, attempts: int, last: Exception) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.attempts = attempts
        self.last = last


class Stopped(Exception):
    """A wait was interrupted because the worker is shutting down."""


class Waiter:
    """Sleeps that a ``stop()`` from another thread (a signal handler, a test) cuts short."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``; raise ``Stopped`` if stopped before or during the wait."""
        if self._stop.wait(max(0.0, seconds)):
            raise Stopped


def header_number(text: str | None) -> float | None:
    """A rate-limit header's number, or None when it is missing or garbled: a header a service got
    wrong must not turn an answer into an exception the caller does not expect."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class RateLimitBucket:
    """What the last response said about a service's request budget, so the next request waits for
    the reset instead of being spent on a known 429.

    The reset is held as a ``time.monotonic()`` deadline: each client converts its header (seconds
    to go, or an epoch) into seconds to go when it reads the response, and from then on a wall-clock
    jump cannot shorten or stretch the wait.
    """

    def __init__(self) -> None:
        self._remaining: float | None = None
        self._reset_at_s: float | None = None  # time.monotonic() when the budget refills

    def remember(self, remaining: float | None, reset_in_s: float | None) -> None:
        """Record one response's headers; either may be missing, and then the last value stands."""
        if remaining is not None:
            self._remaining = remaining
        if reset_in_s is not None:
            self._reset_at_s = time.monotonic() + reset_in_s

    def ready_in_s(self) -> float:
        """How long to hold the next request: 0 unless the budget was spent at the last response."""
        if self._remaining is None or self._remaining > 0 or self._reset_at_s is None:
            return 0.0
        return max(0.0, self._reset_at_s - time.monotonic())


@dataclass(frozen=True)
class RetryPolicy:
    attempts_max: int = ATTEMPTS_MAX
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_cap_s: float = BACKOFF_CAP_S

    def __post_init__(self) -> None:
        if self.attempts_max < 1:
            raise ValueError("attempts_max must be at least 1")

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Wait before attempt ``attempt + 1`` (``attempt`` counts from 0 for the first failure)."""
        if retry_after_s is not None:
            return retry_after_s * (1.0 + random.uniform(0.0, RETRY_AFTER_JITTER_FRACTION))
        ceiling_s = min(self.backoff_cap_s, self.backoff_base_s * 2.0**attempt)
        return random.uniform(0.0, ceiling_s)


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    waiter: Waiter,
    ready_in_s: Callable[[], float] = lambda: 0.0,
    on_retry: Callable[[Exception, float], None] = lambda exc, delay_s: None,
) -> T:
    """Run ``call`` until it succeeds, at most ``policy.attempts_max`` times.

    ``ready_in_s`` is asked before every attempt: a client that has read "0 requests remaining,
    reset in 1.2 s" from the last response returns 1.2 so the request is not sent into a known 429.
    """
    for attempt in range(policy.attempts_max):
        waiter.sleep(ready_in_s())
        try:
            return call()
        except RetryableError as exc:
            if attempt + 1 == policy.attempts_max:
                raise RetriesExhausted(policy.attempts_max, exc) from exc
            delay_s = policy.delay_s(attempt, exc.retry_after_s)
            on_retry(exc, delay_s)
            waiter.sleep(delay_s)
    raise AssertionError("unreachable: the loop returns or raises")
