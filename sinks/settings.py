"""The sinks' settings: credentials and endpoints of the outside services, and their bounds.

Built from the project's ``Settings``. Credentials (``LINEAR_API_KEY``, ``LINEAR_TEAM_ID``,
``DISCORD_WEBHOOK_URL``) come from the environment or the settings file, never from code; a sink whose
credentials are missing runs offline and fills its outbox. The ``GRID_SINK_*`` bounds exist so tests
can shrink backoffs and windows; production keeps defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.retry import RetryPolicy
from core.config import Settings, revealed


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
    conflicts_per_window_max: int
    linger_s: float
    batch_age_max_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> SinkSettings:
        return cls(
            linear_api_key=revealed(s.linear_api_key),
            linear_team_id=s.linear_team_id,
            linear_url=s.linear_url,
            discord_webhook_url=revealed(s.discord_webhook_url),
            dashboard_url=s.dashboard_url,
            retry=RetryPolicy(s.sink_retry_attempts, s.sink_backoff_base_s, s.sink_backoff_cap_s),
            stall_probe_s=s.sink_stall_probe_s,
            conflict_window_s=s.sink_conflict_window_s,
            conflicts_per_window_max=s.sink_conflicts_per_window_max,
            linger_s=s.sink_linger_s,
            batch_age_max_s=s.sink_batch_age_max_s,
        )

    @property
    def linear_online(self) -> bool:
        return self.linear_api_key is not None and self.linear_team_id is not None

    @property
    def discord_online(self) -> bool:
        return self.discord_webhook_url is not None
