"""GeminiClient and GeminiStrategy against a local stand-in server, through the real google-genai
client: request format, structured output, token accounting, retries and the heuristic fallback,
retired models and a 429's retryDelay."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from agents.gemini_strategy import PROMPT_CHARS_MAX, SYSTEM_INSTRUCTION, GeminiStrategy, build_prompt
from agents.heuristic import HeuristicStrategy
from agents.view import AgentView, OpenOffer, RecentRejection, RestingOrder
from connectors import gemini
from connectors.gemini import GeminiClient, GeminiConfig, response_schema, retry_delay_s
from core.config import load
from schemas.intent import Intent
from schemas.proposal import Provenance
from tests.standins.gemini_server import API_KEY_DEFAULT, GeminiStandIn, rate_limited_reply

MODEL = "gemini-3.8-flash"
RETIRED_MODEL = "gemini-2.5-flash"  # shut down by Google in 2026
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


@dataclass
class FakeTime:
    """The client's clock and sleep: a sleep moves the clock and is recorded, and takes no time."""

    now_s: float = 1_000.0
    sleeps_s: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps_s.append(seconds)
        self.now_s += seconds

    def monotonic(self) -> float:
        return self.now_s


def make_client(
    server: GeminiStandIn, api_key: str = API_KEY_DEFAULT, model: str = MODEL, fake_time: FakeTime | None = None
) -> GeminiClient:
    config = GeminiConfig(
        api_key=api_key,
        model=model,
        base_url=server.base_url,
        timeout_s=5,
        retry_attempts=ATTEMPTS,
        retry_initial_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    if fake_time is None:
        return GeminiClient(config)
    return GeminiClient(config, sleep=fake_time.sleep, now_s=fake_time.monotonic)


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


def test_prompt_carries_the_agents_resting_orders_and_the_books_best_quotes() -> None:
    resting = RestingOrder("solar-1/p9", "ask", "energy", 500, 140, 30)
    prompt = build_prompt(replace(grid_view(), own_orders=(resting,), quotes={"energy": (120, 150)}))
    assert '"my_resting_orders":[{"open_until_tick":30,"order_id":"solar-1/p9","price_per_1000":140' in prompt
    assert '"book_best_bid_ask_per_1000":{"energy":[120,150]}' in prompt
    assert "bid:" in SYSTEM_INSTRUCTION and "LIMIT in millicredits per\n  1000 units" in SYSTEM_INSTRUCTION


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
        "gemini-3.8-flash",
        "http://127.0.0.1:1",
        2.5,
    )
    monkeypatch.setenv("GEMINI_API_KEY", "g")
    assert GeminiConfig.from_settings(load()).api_key == "g"
    monkeypatch.setenv("GRID_GEMINI_MODEL", "gemini-3.7-flash")
    assert GeminiConfig.from_settings(load()).model == "gemini-3.7-flash"


# --- the model: a current default, and a loud error for a retired one ----------------------------------


@pytest.fixture
def no_model_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a fresh process would: no model reported unavailable yet."""
    monkeypatch.setattr(gemini, "_unavailable_models", set())


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "connectors.gemini" and r.levelno >= logging.ERROR]


def test_the_default_model_is_one_google_serves(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY_DEFAULT)
    with GeminiStandIn(models={"gemini-3.8-flash"}) as current:
        monkeypatch.setenv("GRID_GEMINI_BASE_URL", current.base_url)
        current.push_intent({"action": "hold"})
        client = GeminiClient(GeminiConfig.from_settings(load()))
        result = client.propose("prompt", "system")
        client.close()
    assert result.error is None and result.intent == Intent(action="hold")
    assert current.requests[0].model == "gemini-3.8-flash"


def test_a_retired_model_logs_one_error_then_falls_back(
    caplog: pytest.LogCaptureFixture, no_model_reported: None
) -> None:
    retired = GeminiStandIn(models={MODEL})
    with retired, caplog.at_level(logging.WARNING):
        clients = [make_client(retired, model=RETIRED_MODEL) for _ in range(2)]  # two agents, one process
        decisions = [GeminiStrategy(c, HeuristicStrategy(seed=7)).choose(grid_view()) for c in clients * 2]
        for client in clients:
            client.close()

    for decision in decisions:
        assert_fell_back(decision.provenance, "gemini 404 NOT_FOUND")
    assert len(retired.requests) == len(decisions)  # a 404 is not retried
    [error] = errors_logged(caplog)
    assert RETIRED_MODEL in error.getMessage() and "GRID_GEMINI_MODEL" in error.getMessage()
    assert "is not found for API version v1beta" in error.getMessage()
    fallbacks = [r for r in caplog.records if r.name == "agents.gemini_strategy"]
    assert len(fallbacks) == len(decisions) and {r.levelno for r in fallbacks} == {logging.WARNING}


def test_a_503_naming_the_model_is_reported_like_a_404(
    server: GeminiStandIn, client: GeminiClient, caplog: pytest.LogCaptureFixture, no_model_reported: None
) -> None:
    for _ in range(2):
        server.push_unavailable(f"The model models/{MODEL} is no longer available.")
    with caplog.at_level(logging.WARNING):
        results = [client.propose("prompt", "system") for _ in range(2)]

    assert [r.error_code for r in results] == ["503 UNAVAILABLE"] * 2
    assert len(server.requests) == 2  # retrying cannot bring the model back
    [error] = errors_logged(caplog)
    assert MODEL in error.getMessage() and "GRID_GEMINI_MODEL" in error.getMessage()


def test_an_overloaded_model_is_retried_and_not_reported(
    server: GeminiStandIn, strategy: GeminiStrategy, caplog: pytest.LogCaptureFixture, no_model_reported: None
) -> None:
    server.push_unavailable()  # "The model is overloaded": names no model
    server.push_intent({"action": "hold"})
    with caplog.at_level(logging.WARNING):
        assert strategy.choose(grid_view()).provenance["source"] == "gemini"
    assert len(server.requests) == 2 and errors_logged(caplog) == []


# --- thinking tokens ------------------------------------------------------------------------------------


def test_thinking_tokens_count_as_output_tokens(server: GeminiStandIn, strategy: GeminiStrategy) -> None:
    server.push_intent(OFFER_INTENT, prompt_tokens=321, output_tokens=45, thoughts_tokens=812)
    provenance = Provenance.model_validate(strategy.choose(grid_view()).provenance)
    assert (provenance.prompt_tokens, provenance.output_tokens) == (321, 45 + 812)


# --- a 429's retryDelay -----------------------------------------------------------------------------


@pytest.mark.parametrize(("retry_delay", "wait_s"), [("17s", 17.0), ("0.5s", 0.5)])
def test_a_rate_limit_waits_its_retry_delay_before_the_next_attempt(
    server: GeminiStandIn, retry_delay: str, wait_s: float
) -> None:
    fake_time = FakeTime()
    client = make_client(server, fake_time=fake_time)
    server.push_rate_limited(retry_delay)
    server.push_intent({"action": "hold"})
    result = client.propose("prompt", "system")
    client.close()

    assert result.error is None and len(server.requests) == 2
    assert fake_time.sleeps_s == [pytest.approx(wait_s)]
    assert result.latency_ms >= wait_s * 1000  # the wait is part of the call


def test_a_retry_delay_outlasting_the_attempts_delays_the_next_call(server: GeminiStandIn) -> None:
    fake_time = FakeTime()
    client = make_client(server, fake_time=fake_time)
    for _ in range(ATTEMPTS):
        server.push_rate_limited("2s")
    server.push_intent({"action": "hold"})
    first = client.propose("prompt", "system")
    second = client.propose("prompt", "system")
    client.close()

    assert first.error_code == "429 RESOURCE_EXHAUSTED" and second.error is None
    assert len(server.requests) == ATTEMPTS + 1
    # Between attempts, and once more before the next call's request: never sooner than asked.
    assert fake_time.sleeps_s == [pytest.approx(2.0)] * ATTEMPTS


def test_a_retry_delay_longer_than_the_wait_max_holds_requests_until_it_ends(server: GeminiStandIn) -> None:
    assert gemini.RATE_LIMIT_WAIT_MAX_S_DEFAULT < 120
    fake_time = FakeTime()
    client = make_client(server, fake_time=fake_time)
    server.push_rate_limited("120s")
    server.push_intent({"action": "hold"})
    limited = client.propose("prompt", "system")
    fake_time.now_s += 60
    held = client.propose("prompt", "system")
    fake_time.now_s += 60
    resumed = client.propose("prompt", "system")
    client.close()

    assert limited.error is not None and "exceeded your current quota" in limited.error
    assert held.error_code == "429 RESOURCE_EXHAUSTED" and held.error is not None and "not sent" in held.error
    assert resumed.error is None
    assert len(server.requests) == 2 and fake_time.sleeps_s == []  # nothing sent early, no tick blocked


def test_a_rate_limit_without_retry_info_backs_off(server: GeminiStandIn) -> None:
    fake_time = FakeTime()
    client = make_client(server, fake_time=fake_time)
    server.push_rate_limited(retry_delay=None)
    server.push_intent({"action": "hold"})
    assert client.propose("prompt", "system").error is None
    client.close()
    [backoff_s] = fake_time.sleeps_s
    assert 0.01 <= backoff_s <= 0.05


@pytest.mark.parametrize(
    ("retry_delay", "seconds"),
    [("17s", 17.0), ("0.5s", 0.5), ("1.000000001s", 1.000000001), ("soon", None), ("-1s", None), ("", None)],
)
def test_retry_delay_is_read_from_the_retry_info(retry_delay: str, seconds: float | None) -> None:
    body = json.loads(rate_limited_reply(retry_delay=retry_delay or None).body)
    if retry_delay:
        body["error"]["details"][-1]["retryDelay"] = retry_delay
    assert retry_delay_s(body) == seconds
    assert retry_delay_s({"error": "not an object"}) is None and retry_delay_s(None) is None


# --- the response schema ----------------------------------------------------------------------------


def test_the_response_schema_carries_no_class_docstring(
    server: GeminiStandIn, client: GeminiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A developer's note on the class must never reach the model as an instruction.
    monkeypatch.setattr(Intent, "__doc__", "Developer note: validated by to_body, see ADR 7.")
    server.push_intent({"action": "hold"})
    assert client.propose("prompt", "system").error is None

    [request] = server.requests
    schema = request.body["generationConfig"]["responseSchema"]
    assert "description" not in schema and "Developer note" not in json.dumps(request.body)
    assert schema["properties"]["price"]["description"] == Intent.model_fields["price"].description  # it stays


def test_response_schema_drops_nested_class_docstrings_but_keeps_field_descriptions() -> None:
    class Leg(BaseModel):
        """Internal: one leg of a trade."""

        quantity: int = Field(description="units")

    class Trade(BaseModel):
        """Internal: a trade."""

        leg: Leg = Field(description="the leg")

    schema = response_schema(Trade)
    assert "description" not in schema and "description" not in schema["$defs"]["Leg"]
    assert schema["properties"]["leg"]["description"] == "the leg"
    assert schema["$defs"]["Leg"]["properties"]["quantity"]["description"] == "units"
