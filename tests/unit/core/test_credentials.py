"""Generated secrets: created once, 0600 in a 0700 directory, the same value on every read."""

from __future__ import annotations

from pathlib import Path

from core.credentials import credentials_dir, generated_secret


def test_a_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = generated_secret(tmp_path, "pg-owner")
    assert first == generated_secret(tmp_path, "pg-owner") != generated_secret(tmp_path, "pg-reader")
    assert len(first) == 64 and int(first, 16) >= 0
    assert (credentials_dir(tmp_path) / "pg-owner").stat().st_mode & 0o777 == 0o600
    assert credentials_dir(tmp_path).stat().st_mode & 0o777 == 0o700
