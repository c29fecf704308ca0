"""Building a signed proposal envelope: the producer side of ``schemas.proposal`` and ``schemas.codec``.

Every producer in this project (agents, the meter, governance commands, the CLI) builds its envelope
here, so the field names, the version and the expiry arithmetic exist once.
"""

from __future__ import annotations

from typing import Any

from schemas.codec import sign
from schemas.keys import derive_key
from schemas.proposal import ENVELOPE_VERSION


def build(
    agent: str,
    body: dict[str, Any],
    tick: int,
    ttl: int,
    secret: bytes,
    pid: str,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The signed envelope ``pid`` for ``body``: valid from ``tick`` for ``ttl`` ticks, signed with ``agent``'s
    key. The caller chooses the id (this module is pure: no clock, no randomness)."""
    unsigned: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "id": pid,
        "agent": agent,
        "tick": tick,
        "expires_tick": tick + ttl,
        "body": body,
    }
    if provenance:
        unsigned["provenance"] = provenance
    return sign(unsigned, derive_key(secret, agent))
