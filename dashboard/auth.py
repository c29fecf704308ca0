"""Console logins: each person logs in as their own operator, by opening their sealed key.

An operator's Ed25519 key is sealed under their password (``gridgov operators add NAME --password``),
so logging in *is* opening it: the dashboard keeps no password hash, holds no key of anyone who is not
logged in, and keeps the opened signer in that browser session alone. Each command is signed as the
person who sent it, and the ledger names them.

Opening a key costs a scrypt derivation (about 0.1 s of CPU and 32 MiB on the host the validator
shares), so every attempt passes a ``LoginGate`` before any of that work: per user, each failure doubles
the wait before the next attempt, and only a few openings run at once across all sessions.

Development only (``GRID_ENV`` not production), for a fresh machine whose console user has no sealed
key yet: a one-time password is generated at startup, printed on stderr and stored hashed in
``GRID_HOME/dashboard``; its first successful use burns it for good (the file remembers, across
restarts), and that session signs with the machine's unsealed development operator key. From then
on the user needs a sealed key like everyone else.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from core.credentials import write_private
from core.identities import IdentityError, is_sealed, load_operator, operator_signer
from schemas.signing import Ed25519Signer

GENERATED_PASSWORD_BYTES = 12
# Per user: the first failure costs 1 s before the next attempt, each further one doubles it, up to 5 min.
FAILURE_DELAY_BASE_S = 1.0
FAILURE_DELAY_MAX_S = 300.0
# Key openings at once across every session: more would only queue scrypt on the validator's cores.
OPENINGS_CONCURRENT_MAX = 2
# Users whose failures are remembered; the oldest is forgotten first (a bound on a guesser's memory cost).
USERS_TRACKED_MAX = 10_000
ONE_TIME_FILE = Path("dashboard") / "one-time-password.json"


class LoginRefused(Exception):
    """Why a login did not happen, in words fit for the login form."""


@dataclass(frozen=True)
class Session:
    """A logged-in person: their opened key, and when the session began and was last used."""

    user: str
    signer: Ed25519Signer
    started_s: float
    seen_s: float

    def expiry(self, now_s: float, idle_max_s: float, age_max_s: float) -> str | None:
        """Why the session has ended at ``now_s``, or None while it lasts."""
        if now_s - self.started_s > age_max_s:
            return f"your session ended after {age_max_s / 3600:g} h: log in again"
        if now_s - self.seen_s > idle_max_s:
            return f"your session ended after {idle_max_s / 60:g} min without use: log in again"
        return None


@dataclass
class _Failures:
    count: int
    last_s: float


class LoginGate:
    """Admits a login attempt, or refuses it before it costs anything; shared by every session of a process."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        openings_max: int = OPENINGS_CONCURRENT_MAX,
        delay_base_s: float = FAILURE_DELAY_BASE_S,
        delay_max_s: float = FAILURE_DELAY_MAX_S,
        users_max: int = USERS_TRACKED_MAX,
    ) -> None:
        assert openings_max >= 1 and 0 < delay_base_s <= delay_max_s and users_max >= 1
        self._clock, self._users_max = clock, users_max
        self._delay_base_s, self._delay_max_s = delay_base_s, delay_max_s
        self._openings = threading.BoundedSemaphore(openings_max)
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, user: str) -> float:
        """Seconds before ``user`` may try again (0: now)."""
        with self._lock:
            found = self._failures.get(user)
        if found is None:
            return 0.0
        delay_s = min(math.ldexp(self._delay_base_s, found.count - 1), self._delay_max_s)
        return max(0.0, found.last_s + delay_s - self._clock())

    def attempt(self, user: str, open_key: Callable[[], Ed25519Signer]) -> Ed25519Signer:
        """``open_key()``'s signer, if ``user`` may try now and it succeeds; ``LoginRefused`` otherwise."""
        wait_s = self.wait_s(user)
        if wait_s > 0:
            raise LoginRefused(f"Too many failed logins as {user}: try again in {math.ceil(wait_s)} s.")
        if not self._openings.acquire(blocking=False):
            raise LoginRefused("The console is busy with other logins: try again in a moment.")
        try:
            signer = open_key()
        except IdentityError:
            self._failed(user)
            raise LoginRefused("Wrong operator name or password.") from None
        finally:
            self._openings.release()
        with self._lock:
            self._failures.pop(user, None)
        return signer

    def _failed(self, user: str) -> None:
        with self._lock:
            found = self._failures.pop(user, None) or _Failures(0, 0.0)
            self._failures[user] = _Failures(found.count + 1, self._clock())
            while len(self._failures) > self._users_max:
                self._failures.popitem(last=False)


class OneTimePassword:
    """The development console's one-time password: its hash, and whether it was used, in one file."""

    def __init__(self, home: Path) -> None:
        self.path = home / ONE_TIME_FILE

    def burnt(self) -> bool:
        return self.path.exists() and bool(orjson.loads(self.path.read_bytes()).get("burnt"))

    def issue(self) -> str | None:
        """A new password replacing any unused one (None once one was used): printed by the caller, once."""
        if self.burnt():
            return None
        password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        self._write({"sha256": _digest(password), "burnt": False})
        return password

    def use(self, password: str) -> bool:
        """True, once, for the password ``issue`` made; the file then records it burnt."""
        if not self.path.exists() or self.burnt():
            return False
        expected = str(orjson.loads(self.path.read_bytes())["sha256"])
        # a 96-bit random token: a fast hash suffices, no guess can succeed in a reasonable time
        if not hmac.compare_digest(_digest(password), expected):
            return False
        self._write({"sha256": expected, "burnt": True})
        return True

    def _write(self, record: dict[str, object]) -> None:
        self.path.unlink(missing_ok=True)  # write_private never replaces a file
        write_private(self.path, orjson.dumps(record).decode())


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def issue_development_password(home: Path, user: str, production: bool) -> str | None:
    """At startup, in development, while ``user`` has no sealed key: a fresh one-time password (None otherwise)."""
    if production or is_sealed(home, user):
        return None
    return OneTimePassword(home).issue()


def one_time_notice(user: str, password: str) -> str:
    return f"governance console (development mode): log in as {user!r} with the one-time password {password}"


def open_operator_key(
    home: Path, user: str, password: str, one_time: OneTimePassword | None, development_user: str
) -> Ed25519Signer:
    """The signer ``user`` logs in with: their sealed key opened by ``password``, or, in development, the
    machine's development key for ``development_user`` with the one-time password. ``IdentityError`` else."""
    if is_sealed(home, user):
        return load_operator(home, user, password)
    if one_time is not None and user == development_user and one_time.use(password):
        return operator_signer(home, user)
    raise IdentityError(f"{user!r} has no sealed key")
