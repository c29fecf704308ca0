"""The pure fold of the law over a list of raw messages: what a correct validator must have written.
It runs the same ``LedgerStep`` as the validator, with no Kafka or Postgres."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.identities import create_operator
from core.keyring import Keyring
from core.rows import Rejection
from core.step import LedgerStep
from law import State
from law.ledger import Entry
from streams.workload import OPERATOR, synthetic_operator, synthetic_operator_seed


@dataclass
class Expected:
    entries: list[Entry] = field(default_factory=list)
    rejections: dict[int, str] = field(default_factory=dict)  # offset -> reason
    state: State = field(default_factory=State)


def workload_keyring(secret: bytes) -> Keyring:
    """The validator's keys for a ``streams.workload`` stream: its founder is the synthetic operator."""
    return Keyring(secret, [synthetic_operator(secret).public_key])


def fold(raws: list[bytes], secret: bytes, version: str, first_offset: int = 0) -> Expected:
    out = Expected()
    step = LedgerStep(out.state, workload_keyring(secret), version)
    for offset, raw in enumerate(raws, start=first_offset):
        result = step.step(raw, offset)
        if isinstance(result, Rejection):
            out.rejections[offset] = result.reason_code
        else:
            out.entries.append(result)
    return out


def operator_home(home: Path, secret: bytes, password: str | None = None) -> Path:
    """A GRID_HOME whose operator ``operator`` holds the synthetic stream's key, so a console or CLI
    started on it signs as the operator that stream's genesis registered; sealed under ``password``
    when given (how a console user's key is kept)."""
    create_operator(home, OPERATOR, password=password, seed=synthetic_operator_seed(secret))
    return home
