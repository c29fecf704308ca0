"""Fixtures for unit tests: settings that no environment variable or settings file of the machine reaches."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import config


@pytest.fixture
def settings_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting in the environment and the settings file (not created) at the returned path."""
    for variable in config.variables():
        monkeypatch.delenv(variable.name, raising=False)
    path = tmp_path / "grid.env"
    monkeypatch.setenv("GRID_ENV_FILE", str(path))
    return path
