"""Secrets a grid generates for itself, each in its own 0600 file under ``GRID_HOME/credentials``.

One place creates them (exclusively, so two processes starting at once agree on one value) and
reads them back; the infra scripts, the migrations and the services all ask here by name.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

CREDENTIALS_DIR_NAME = "credentials"
SECRET_BYTES = 32
NAME_LENGTH_MAX = 64


def credentials_dir(home: Path) -> Path:
    return Path(home) / CREDENTIALS_DIR_NAME


def generated_secret(home: Path, name: str, nbytes: int = SECRET_BYTES) -> str:
    """The hex secret ``name`` of this grid: created once (``nbytes`` random bytes), then read back."""
    assert name.replace("-", "").replace("_", "").isalnum() and len(name) <= NAME_LENGTH_MAX, name
    path = credentials_dir(home) / name
    if not path.exists():
        write_private(path, secrets.token_hex(nbytes))
    value = path.read_text().strip()
    assert value, f"{path} is empty"
    return value


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read; an existing file is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: its value is the one
    with os.fdopen(fd, "w") as f:
        f.write(text)
