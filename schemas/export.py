"""JSON Schema files for producers and consumers written in other languages.

``python -m schemas.export`` rewrites ``schemas/json/``; a unit test fails when the files drift from
the models, so the published contract and the code cannot disagree silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.proposal import Proposal
from schemas.records import AlertRecord, IncidentRecord, LedgerEvent, RejectionRecord

JSON_DIR = Path(__file__).resolve().parent / "json"

MODELS: dict[str, type[BaseModel]] = {
    "proposal": Proposal,
    "rejection": RejectionRecord,
    "ledger-event": LedgerEvent,
    "alert": AlertRecord,
    "incident": IncidentRecord,
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in MODELS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(render(model))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export():
        print(path)
