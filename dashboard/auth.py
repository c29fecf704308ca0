"""Operator login for the governance console: one user and a PBKDF2 password hash, both from the settings.

``GRID_DASHBOARD_USER`` (default ``operator``) and ``GRID_DASHBOARD_PASSWORD_HASH`` in the form
``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` (``gridgov dashboard hash-password`` makes one).
The plain password is never configured anywhere. In production (``GRID_ENV=production``) a missing hash
means nobody can log in; in development a random one-time password is generated instead, so a fresh
checkout has a working console without a default password anyone could guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from core.config import Settings, revealed

ALGORITHM = "pbkdf2_sha256"
# OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256; about 0.3 s per check here, once per login.
ITERATIONS_DEFAULT = 600_000
ITERATIONS_MIN = 100_000
SALT_BYTES = 16
GENERATED_PASSWORD_BYTES = 12
PASSWORD_LENGTH_MIN = 8


class HashFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    user: str
    password_hash: str | None
    # Development only: the password was generated at startup and printed once on stderr.
    one_time: bool = False
    # Only in the process that generated it, so that process can print it; never shown in the UI.
    generated_password: str | None = None
    # Why nobody may log in, when that is the case.
    refusal: str | None = None


def _derive(password: str, salt: str, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)


def hash_password(password: str, iterations: int = ITERATIONS_DEFAULT, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(SALT_BYTES)
    digest = base64.b64encode(_derive(password, salt, iterations)).decode()
    return f"{ALGORITHM}${iterations}${salt}${digest}"


def parse_hash(encoded: str) -> tuple[int, str, bytes]:
    """(iterations, salt, digest) of an encoded hash; HashFormatError says what is wrong with it."""
    parts = encoded.strip().split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise HashFormatError(f"expected {ALGORITHM}$<iterations>$<salt>$<hash>")
    _, iterations_text, salt, digest_text = parts
    if not iterations_text.isdigit() or int(iterations_text) < ITERATIONS_MIN:
        raise HashFormatError(f"iterations must be a number >= {ITERATIONS_MIN}")
    if not salt:
        raise HashFormatError("the salt is empty")
    try:
        digest = base64.b64decode(digest_text, validate=True)
    except ValueError as exc:
        raise HashFormatError("the hash is not base64") from exc
    if len(digest) != hashlib.sha256().digest_size:
        raise HashFormatError("the hash has the wrong length")
    return int(iterations_text), salt, digest


def verify_password(password: str, encoded: str) -> bool:
    iterations, salt, expected = parse_hash(encoded)
    return hmac.compare_digest(_derive(password, salt, iterations), expected)


def load_credentials(settings: Settings) -> Credentials:
    user = settings.dashboard_user
    configured = revealed(settings.dashboard_password_hash)
    if configured:
        try:
            parse_hash(configured)
        except HashFormatError as exc:
            return Credentials(user, None, refusal=f"GRID_DASHBOARD_PASSWORD_HASH is malformed: {exc}")
        return Credentials(user, configured, one_time=settings.dashboard_password_one_time)
    if settings.production:
        return Credentials(
            user,
            None,
            refusal="Login is disabled: production mode needs GRID_DASHBOARD_PASSWORD_HASH "
            "(make one with `gridgov dashboard hash-password`).",
        )
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    return Credentials(user, hash_password(password), one_time=True, generated_password=password)


def one_time_notice(found: Credentials) -> str:
    return (
        f"governance console (development mode): log in as {found.user!r} "
        f"with the one-time password {found.generated_password}"
    )


def check_login(credentials: Credentials, user: str, password: str) -> bool:
    if credentials.refusal is not None or credentials.password_hash is None:
        return False
    # Both comparisons always run, so the time taken does not reveal whether the user name was right.
    user_ok = hmac.compare_digest(user.strip().encode(), credentials.user.encode())
    password_ok = verify_password(password, credentials.password_hash)
    return user_ok and password_ok
