"""The secret agent keys are derived from (see ``schemas.keys``).

``GRID_KEY_SECRET`` (hex) when set; otherwise a random secret created once in ``GRID_HOME`` and kept,
so the same machine signs and verifies with the same keys across runs (and the same scenario and seed
reproduce the same ledger). Production deployments set the variable from their secret store.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.config import Settings

SECRET_BYTES = 32


def key_secret(settings: Settings) -> bytes:
    if settings.key_secret is not None:
        return bytes.fromhex(settings.key_secret.get_secret_value())
    path = Path(settings.home) / "key.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(SECRET_BYTES))
    return bytes.fromhex(path.read_text().strip())
