"""The sinks' settings: credentials and endpoints of the outside services, and their bounds.

Credentials come only from the environment (``LINEAR_API_KEY``, ``LINEAR_TEAM_ID``,
``DISCORD_WEBHOOK_URL``); a sink whose credentials are missing runs offline and fills its outbox.
The ``GRID_SINK_*`` bounds exist so tests can shrink backoffs and windows; production keeps defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from connectors.linear import LINEAR_URL_DEFAULT
from connectors.retry import ATTEMPTS_MAX, BACKOFF_BASE_S, BACKOFF_CAP_S, RetryPolicy
from sinks.conflicts import CONFLICT_WINDOW_S
from sinks.delivery import STALL_PROBE_INTERVAL_S

DASHBOARD_URL_DEFAULT = "http://127.0.0.1:8501"
LINGER_S = 1.0  # a batch is flushed once no record arrived for this long…
BATCH_AGE_MAX_S = 5.0  # …or once its first record is this old, so a steady trickle still flushes


def _text(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _number(name: str, default: float) -> float:
    value = _text(name)
    return float(value) if value is not None else default


@dataclass(frozen=True)
class SinkSettings:
    linear_api_key: str | None
    linear_team_id: str | None
    linear_url: str
    discord_webhook_url: str | None
    dashboard_url: str
    retry: RetryPolicy
    stall_probe_s: float
    conflict_window_s: int
    linger_s: float
    batch_age_max_s: float

    @property
    def linear_online(self) -> bool:
        return self.linear_api_key is not None and self.linear_team_id is not None

    @property
    def discord_online(self) -> bool:
        return self.discord_webhook_url is not None


def load() -> SinkSettings:
    return SinkSettings(
        linear_api_key=_text("LINEAR_API_KEY"),
        linear_team_id=_text("LINEAR_TEAM_ID"),
        linear_url=_text("GRID_LINEAR_URL") or LINEAR_URL_DEFAULT,
        discord_webhook_url=_text("DISCORD_WEBHOOK_URL"),
        dashboard_url=_text("GRID_DASHBOARD_URL") or DASHBOARD_URL_DEFAULT,
        retry=RetryPolicy(
            attempts_max=int(_number("GRID_SINK_RETRY_ATTEMPTS", ATTEMPTS_MAX)),
            backoff_base_s=_number("GRID_SINK_BACKOFF_BASE_S", BACKOFF_BASE_S),
            backoff_cap_s=_number("GRID_SINK_BACKOFF_CAP_S", BACKOFF_CAP_S),
        ),
        stall_probe_s=_number("GRID_SINK_STALL_PROBE_S", STALL_PROBE_INTERVAL_S),
        conflict_window_s=int(_number("GRID_SINK_CONFLICT_WINDOW_S", CONFLICT_WINDOW_S)),
        linger_s=_number("GRID_SINK_LINGER_S", LINGER_S),
        batch_age_max_s=_number("GRID_SINK_BATCH_AGE_MAX_S", BATCH_AGE_MAX_S),
    )
