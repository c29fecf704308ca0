"""docs/reason-codes.md documents every reason code the records can carry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from schemas.records import ReasonCode

DOC = Path(__file__).resolve().parents[3] / "docs" / "reason-codes.md"
ROW = re.compile(r"^\| `([A-Z_]+)` \|(.*)\|$")


def documented() -> dict[str, list[str]]:
    """Code -> the other cells of its row in the table (meaning, produced by, field)."""
    rows = (ROW.match(line) for line in DOC.read_text().splitlines())
    return {m[1]: [cell.strip() for cell in m[2].split(" | ")] for m in rows if m}


def test_every_reason_code_is_documented_with_its_meaning_check_and_field() -> None:
    # Read at run time: codes added to the Literal must be added to the table too.
    table = documented()
    missing = [code for code in get_args(ReasonCode) if code not in table]
    assert not missing, f"add {missing} to {DOC}"
    for code in get_args(ReasonCode):
        assert len(table[code]) == 3 and all(table[code]), f"{code}: meaning, produced by and field"
