"""JSON Schema files for producers and consumers written in other languages.

``python -m schemas.export`` rewrites ``schemas/json/``; a unit test fails when the files drift from
the models, so the published contract and the code cannot disagree silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

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


class ContractJsonSchema(GenerateJsonSchema):
    """Pydantic writes a map's key pattern as ``patternProperties``, under which a key that does not
    match is an additional property and passes with any value; ``propertyNames`` states the contract."""

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        json_schema = super().dict_schema(schema)
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            [(pattern, values_schema)] = patterns.items()
            json_schema["additionalProperties"] = values_schema
            json_schema["propertyNames"] = {**json_schema.get("propertyNames", {}), "pattern": pattern}
        return json_schema


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation", schema_generator=ContractJsonSchema)
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
