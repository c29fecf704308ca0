"""Agent key files: one agent's key of one generation, 0600, checked against its own fingerprint."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from core import agent_keys
from schemas.keys import derive_key

SECRET = b"agent-keys-test-secret"


def test_a_key_file_round_trips_and_is_private(tmp_path: Path) -> None:
    key = agent_keys.issue(SECRET, "solar", generation=2)
    path = agent_keys.default_path(tmp_path, "solar", 2)
    agent_keys.write(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert agent_keys.load(path) == key
    assert key.key == derive_key(SECRET, "solar", 2) != derive_key(SECRET, "solar", 1)
    with pytest.raises(agent_keys.KeyFileError, match="exists"):
        agent_keys.write(path, key)


def test_an_edited_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "solar.key"
    agent_keys.write(path, agent_keys.issue(SECRET, "solar"))
    record = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**record, "key": derive_key(SECRET, "hospital").hex()}))
    with pytest.raises(agent_keys.KeyFileError, match="fingerprint"):
        agent_keys.load(path)
    path.write_text("not json")
    with pytest.raises(agent_keys.KeyFileError):
        agent_keys.load(path)
