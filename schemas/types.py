"""Scalar types shared by every message: identifiers, resources and fixed-point quantities.

Quantities are integers in fixed-point units: energy in Wh (1 kWh = 1,000 units), water in litres,
credits in millicredits (1 credit = 1,000 units). Pydantic runs in strict mode, so a float, a string
of digits or a boolean never passes for an integer, and bounds are checked before any rule sees the
value.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, StringConstraints

# 10^15 units is far above any grid we simulate (10^12 kWh) yet leaves a factor of 9,000 of head room
# under 2^63, so a sum of many maximal quantities can never overflow a Postgres bigint.
QUANTITY_MAX = 10**15
# Every balance, system accounts included, stays within +-BALANCE_MAX: 2^53 - 1 is the largest integer
# every JSON reader holds exactly (JavaScript's Number.MAX_SAFE_INTEGER), and 1,000 times under a
# Postgres bigint, so sums of a batch's postings cannot overflow either. The law refuses or caps what
# would cross it (law/bounds.py states each rule).
BALANCE_MAX = 2**53 - 1
# A proposal's nonce: strictly increasing per agent, never reused (see schemas.proposal.Proposal).
NONCE_MAX = 2**53 - 1
# Ticks are the grid's only clock; 2^40 ticks of one second each is 34,000 years.
TICK_MAX = 2**40
# Bounds on collections inside one message: a limit on everything.
READINGS_COUNT_MAX = 256
PARTICIPANTS_COUNT_MAX = 256
ACCOUNTS_PER_AGENT_COUNT_MAX = 8
MEMO_LENGTH_MAX = 280
RATIONALE_LENGTH_MAX = 500
# Policy parameter names are a closed set (the law refuses unknown ones); the longest is 30 characters.
POLICY_PARAM_NAME_LENGTH_MAX = 64


# A Literal, not an Enum: strict validation of decoded JSON then accepts the plain strings.
Resource = Literal["energy", "water", "credits"]
RESOURCES: tuple[str, ...] = get_args(Resource)


IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
Identifier = Annotated[str, StringConstraints(strict=True, pattern=IDENTIFIER_PATTERN)]
# An offer is named by its seller and the id of the proposal that opened it: "seller/id".
OFFER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}/[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
OfferId = Annotated[str, StringConstraints(strict=True, pattern=OFFER_ID_PATTERN)]
AgentId = Identifier
AccountId = Identifier
ProposalId = Identifier
Quantity = Annotated[int, Field(strict=True, ge=1, le=QUANTITY_MAX)]
Price = Annotated[int, Field(strict=True, ge=0, le=QUANTITY_MAX)]
Amount = Annotated[int, Field(strict=True, ge=-QUANTITY_MAX, le=QUANTITY_MAX)]
Tick = Annotated[int, Field(strict=True, ge=0, le=TICK_MAX)]
Nonce = Annotated[int, Field(strict=True, ge=1, le=NONCE_MAX)]
Seq = Annotated[int, Field(strict=True, ge=0, le=2**62)]
Hex64 = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}$")]
Hex32 = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{32}$")]
# HMAC-SHA256 (32 bytes) from participants and the meter, Ed25519 (64 bytes) from operators.
Signature = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}(?:[0-9a-f]{64})?$")]

# Free text refuses the C0 controls (NUL to US), DEL and the C1 controls: Postgres text cannot hold
# NUL, and the others are invisible on the dashboard yet can forge line breaks or terminal escapes in
# logs, alerts and issues. Patterns run on pydantic-core's Rust regex, where ``$`` is the end of the
# text (Python's ``re`` also matches ``$`` before a final newline: use ``fullmatch`` there).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def text(length_max: int, length_min: int | None = None) -> StringConstraints:
    """The constraints of a free-text field, used as ``Annotated[str, text(80)]``."""
    return StringConstraints(strict=True, min_length=length_min, max_length=length_max, pattern=TEXT_PATTERN)


Memo = Annotated[str, text(MEMO_LENGTH_MAX)]
PolicyParamName = Annotated[str, text(POLICY_PARAM_NAME_LENGTH_MAX)]
