"""Building a signed proposal envelope: the producer side of ``schemas.proposal`` and ``schemas.codec``.

Every producer in this project (agents, the meter, governance commands, the CLI) builds its envelope
here, so the field names, the version and the expiry arithmetic exist once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.codec import sign
from schemas.proposal import ENVELOPE_VERSION
from schemas.signing import Signer


def build(
    agent: str,
    body: dict[str, Any],
    tick: int,
    ttl: int,
    signer: Signer,
    pid: str,
    nonce: int,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The signed envelope ``pid`` (nonce ``nonce``) for ``body``: valid from ``tick`` for ``ttl`` ticks,
    with ``signer``, the key of ``agent``. The caller chooses id and nonce (this module is pure: no clock, no
    randomness)."""
    unsigned: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "id": pid,
        "agent": agent,
        "nonce": nonce,
        "tick": tick,
        "expires_tick": tick + ttl,
        "body": body,
    }
    if provenance:
        unsigned["provenance"] = provenance
    return sign(unsigned, signer)


@dataclass
class Nonces:
    """One producer's nonces for one agent: strictly increasing, and above the last nonce the validator
    decided for the agent (``decided``, read from the ledger when a producer starts or resyncs), so a
    restarted producer never reuses one. Two producers signing as one agent can still collide: the
    later one is then ``DUPLICATE_PROPOSAL`` and should resync."""

    last: int = 0

    def next(self, decided: int = 0) -> int:
        self.last = max(self.last, decided) + 1
        return self.last
