"""GeminiClient and GeminiStrategy against a local stand-in server, through the real google-genai
client: request format, structured output, token accounting, retries and the heuristic fallback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agents.gemini_strategy import PROMPT_CHARS_MAX, SYSTEM_INSTRUCTION, GeminiStrategy, build_prompt
from agents.heuristic import HeuristicStrategy
from agents.view import AgentView, OpenOffer, RecentRejection
from connectors.gemini import GeminiClient, GeminiConfig
from core.config import load
from schemas.intent import Intent
from schemas.proposal import Provenance
from tests.standins.gemini_server import API_KEY_DEFAULT, GeminiStandIn

MODEL = "gemini-2.5-flash"
ATTEMPTS = 3
OFFER_INTENT = {
    "action": "offer",
    "resource": "energy",
    "quantity": 4_000,
    "price": 600,
    "open_for_ticks": 3,
    "rationale": "surplus solar at midday",
}


def grid_view(**offers_and_more: object) -> AgentView:
    return AgentView(
        agent="solar-1",
        participant_kind="solar_farm",
        account="solar-1:main",
        tick=12,
        balances={"energy": 90_000, "water": 30_000, "credits": 500_000},
        expected_production={"energy": 6_000},
        expected_consumption={"energy": 1_000, "water": 10_000},
        shortfall={},
        open_offers=(OpenOffer("o-1", "wind-2", "wind-2:main", "water", 5_000, 9_000, 20),),
        recent_rejections=(RecentRejection("p-3", "offer", "PRICE_CEILING", "price above ceiling"),),
        price_ceiling={"energy": 400},
        **offers_and_more,  # type: ignore[arg-type]
    )


@pytest.fixture
def server() -> Iterator[GeminiStandIn]:
    with GeminiStandIn() as standin:
        yield standin


def make_client(server: GeminiStandIn, api_key: str = API_KEY_DEFAULT) -> GeminiClient:
    config = GeminiConfig(
        api_key=api_key,
        model=MODEL,
        base_url=server.base_url,
        timeout_s=5,
        retry_attempts=ATTEMPTS,
        retry_initial_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    return GeminiClient(config)


@pytest.fixture
def client(server: GeminiStandIn) -> Iterator[GeminiClient]:
    gemini = make_client(server)
    yield gemini
    gemini.close()


@pytest.fixture
def strategy(client: GeminiClient) -> GeminiStrategy:
    return GeminiStrategy(client, HeuristicStrategy(seed=7))


def assert_fell_back(decision_provenance: dict[str, object], fallback: str) -> None:
    provenance = Provenance.model_validate(decision_provenance)
    assert provenance.source == "heuristic" and provenance.fallback == fallback


# --- the happy path -------------------------------------------------------------------------------


def test_valid_output_becomes_the_intent_with_full_provenance(server: GeminiStandIn, strategy: GeminiStrategy) -> None:
    server.push_intent(OFFER_INTENT, response_id="resp-abc", prompt_tokens=321, output_tokens=45)
    decision = strategy.choose(grid_view())

    assert decision.intent == Intent.model_validate(OFFER_INTENT)
    provenance = Provenance.model_validate(decision.provenance)
    assert provenance.source == "gemini" and provenance.model == MODEL
    assert provenance.response_id == "resp-abc"
    assert (provenance.prompt_tokens, provenance.output_tokens) == (321, 45)
    assert provenance.latency_ms is not None and provenance.latency_ms >= 0
    assert provenance.rationale == "surplus solar at midday"
    assert provenance.fallback is None
    assert provenance.prompt_sha256 is not None and len(provenance.prompt_sha256) == 64


def test_request_carries_schema_mime_type_system_instruction_and_key(
    server: GeminiStandIn, strategy: GeminiStrategy
) -> None:
    server.push_intent({"action": "hold"})
    strategy.choose(grid_view())

    [request] = server.requests
    assert request.path == f"/v1beta/models/{MODEL}:generateContent"
    assert request.api_key == API_KEY_DEFAULT
    generation = request.body["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert generation["temperature"] == 0.2
    schema = generation["responseSchema"]
    assert schema["type"] == "OBJECT" and schema["required"] == ["action"]
    assert set(schema["properties"]) == set(Intent.model_fields)
    # The Developer API rejects this field (400 "Unknown name"); Intent's extra="forbid" would emit it.
    assert "additional_properties" not in schema and "additionalProperties" not in schema
    assert request.body["systemInstruction"]["parts"][0]["text"] == SYSTEM_INSTRUCTION
    assert request.body["contents"][0]["parts"][0]["text"] == build_prompt(grid_view())


def test_prompt_shows_market_rejections_and_limits_and_stays_bounded() -> None:
    many = tuple(OpenOffer(f"o-{i:03}", f"seller-{'x' * 50}{i}", "a", "energy", 1_000, i, 99) for i in range(500))
    rejections = tuple(RecentRejection(f"p-{i}", "offer", "POLICY_CAP", "d" * 2_000) for i in range(50))
    prompt = build_prompt(grid_view(trade_quantity_max={"energy": 5_000}))
    crowded = build_prompt(replace(grid_view(), open_offers=many, recent_rejections=rejections))
    for fragment in ('"o-1"', "PRICE_CEILING", '"price_ceiling_per_1000":{"energy":400}', '"energy":5000'):
        assert fragment in prompt
    assert len(crowded) <= PROMPT_CHARS_MAX
    assert '"o-000"' in crowded  # the cheapest offers survive the trimming


# --- fallbacks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_output", "detail"),
    [
        ("Sure! I will offer some energy.", "invalid output"),
        ('{"action": "offer", "resource": "energy", "quantity": 1.5, "price": 10}', "quantity"),
        ('{"action": "sell", "resource": "energy"}', "action"),
        ('{"action": "hold", "secret": "unknown field"}', "secret"),
    ],
)
def test_invalid_output_falls_back_to_the_heuristic(
    server: GeminiStandIn, client: GeminiClient, model_output: str, detail: str
) -> None:
    server.push_text(model_output)
    result = client.propose("prompt", "system")
    assert result.intent is None and result.error_code == "invalid output"
    assert result.error is not None and detail in result.error
    assert result.response_id == "resp-1"  # the call itself succeeded and is accounted for

    server.push_text(model_output)
    heuristic_alone = HeuristicStrategy(seed=7).choose(grid_view())
    decision = GeminiStrategy(client, HeuristicStrategy(seed=7)).choose(grid_view())
    assert decision.intent == heuristic_alone.intent
    assert_fell_back(decision.provenance, "gemini invalid output")


def test_incomplete_intent_falls_back(server: GeminiStandIn, strategy: GeminiStrategy) -> None:
    server.push_intent({"action": "offer", "resource": "energy"})  # no quantity, no price
    assert_fell_back(strategy.choose(grid_view()).provenance, "gemini invalid output")


def test_rate_limited_once_then_succeeds_after_retry(server: GeminiStandIn, strategy: GeminiStrategy) -> None:
    server.push_rate_limited()
    server.push_intent(OFFER_INTENT)
    decision = strategy.choose(grid_view())
    assert decision.provenance["source"] == "gemini"
    assert len(server.requests) == 2


def test_server_error_is_retried(server: GeminiStandIn, strategy: GeminiStrategy) -> None:
    server.push_server_error()
    server.push_intent({"action": "hold"})
    assert strategy.choose(grid_view()).provenance["source"] == "gemini"
    assert len(server.requests) == 2


def test_persistent_rate_limit_is_bounded_then_falls_back(
    server: GeminiStandIn, strategy: GeminiStrategy, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(ATTEMPTS + 2):
        server.push_rate_limited()
    with caplog.at_level(logging.WARNING, logger="agents.gemini_strategy"):
        decision = strategy.choose(grid_view())

    assert len(server.requests) == ATTEMPTS
    assert_fell_back(decision.provenance, "gemini 429 RESOURCE_EXHAUSTED")
    [record] = [r for r in caplog.records if r.name == "agents.gemini_strategy"]
    assert record.levelno == logging.WARNING
    assert (record.agent, record.tick, record.gemini_problem) == ("solar-1", 12, "429 RESOURCE_EXHAUSTED")


def test_client_error_is_not_retried(server: GeminiStandIn) -> None:
    wrong_key = make_client(server, api_key="wrong-key")
    result = wrong_key.propose("prompt", "system")
    wrong_key.close()
    assert result.intent is None and result.error_code == "400 INVALID_ARGUMENT"
    assert result.error is not None and "API key not valid" in result.error
    assert len(server.requests) == 1


def test_unreachable_server_falls_back() -> None:
    with GeminiStandIn() as gone:
        unreachable = make_client(gone)
    strategy = GeminiStrategy(unreachable, HeuristicStrategy(seed=7))
    decision = strategy.choose(grid_view())
    unreachable.close()
    assert_fell_back(decision.provenance, "gemini transport ConnectError")


# --- configuration ------------------------------------------------------------------------------------


def test_config_from_settings(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        GeminiConfig.from_settings(load())
    for name, value in {"GOOGLE_API_KEY": "k", "GRID_GEMINI_BASE_URL": "http://127.0.0.1:1"}.items():
        monkeypatch.setenv(name, value)
    settings_file.write_text("GRID_GEMINI_TIMEOUT_S=2.5\n")
    config = GeminiConfig.from_settings(load())
    assert (config.api_key, config.model, config.base_url, config.timeout_s) == (
        "k",
        "gemini-2.5-flash",
        "http://127.0.0.1:1",
        2.5,
    )
    monkeypatch.setenv("GEMINI_API_KEY", "g")
    assert GeminiConfig.from_settings(load()).api_key == "g"
