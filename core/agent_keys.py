"""Key files of participants and the meter: one principal's HMAC key and nothing else.

``gridgov keys issue AGENT`` (on the validator's host, which holds the root secret) writes one; the
participant's process is given that file alone and can sign only as that agent, only its own kinds.
A file names its generation: after ``participant_rekey`` the agent needs the next generation's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from core.credentials import write_private
from schemas.keys import derive_key
from schemas.signing import HmacSigner, key_fingerprint

KEYS_DIR_NAME = "keys"
KEY_FILE_FORMAT_VERSION = 1


class KeyFileError(Exception):
    """A key file that is missing, unreadable or not consistent with itself."""


@dataclass(frozen=True)
class AgentKey:
    agent: str
    generation: int
    key: bytes

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)

    @property
    def signer(self) -> HmacSigner:
        return HmacSigner(self.key)


def issue(secret: bytes, agent: str, generation: int = 0) -> AgentKey:
    return AgentKey(agent, generation, derive_key(secret, agent, generation))


def default_path(home: Path, agent: str, generation: int) -> Path:
    return Path(home) / KEYS_DIR_NAME / f"{agent}.g{generation}.key"


def write(path: Path, key: AgentKey) -> None:
    """Write ``key`` to a new 0600 file; refuses to replace one (another key may be in use there)."""
    if path.exists():
        raise KeyFileError(f"{path} exists; choose another --out")
    record = {
        "v": KEY_FILE_FORMAT_VERSION,
        "agent": key.agent,
        "generation": key.generation,
        "key": key.key.hex(),
        "fingerprint": key.fingerprint,
    }
    write_private(path, orjson.dumps(record, option=orjson.OPT_INDENT_2).decode() + "\n")


def load(path: Path) -> AgentKey:
    try:
        record = orjson.loads(Path(path).read_bytes())
        key = AgentKey(record["agent"], int(record["generation"]), bytes.fromhex(record["key"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a key file ({exc})") from exc
    if record.get("v") != KEY_FILE_FORMAT_VERSION or record.get("fingerprint") != key.fingerprint:
        raise KeyFileError(f"{path}: the key does not match its fingerprint or format")
    return key
