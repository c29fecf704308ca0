"""What the sinks send: Linear issue and comment markdown, Discord messages. Pure functions, no I/O.

Everything here is bounded. Linear descriptions keep their header (reason, counts, offsets, versions,
links) whole and give the rest of the budget to examples, dropping whole examples before cutting one
and saying how many were left out. Discord payloads are built within Discord's limits and passed
through ``fit_payload`` as a last guard.

Producer-supplied text is untrusted: the agent's ``rationale`` goes into fenced code blocks in Linear,
every other producer field (ids, field names, details, model names, reasons) through
``core.text.markdown_literal``, so none can inject links, images, mentions or headings; Discord
messages also carry ``allowed_mentions: {parse: []}``. A rejection of an unauthenticated message names
no agent and no provenance (``core.outgoing``): it is "unauthenticated".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from connectors.discord import COLOR_BY_SEVERITY, fit_payload, truncate
from connectors.linear import PRIORITY_HIGH, PRIORITY_URGENT
from core.text import markdown_literal as md
from schemas.records import AlertRecord, IncidentRecord
from sinks.conflicts import Conflict, Rejection

LINEAR_TITLE_LENGTH_MAX = 200
LINEAR_DESCRIPTION_LENGTH_MAX = 12_000
LINEAR_COMMENT_LENGTH_MAX = 4_000
EXAMPLES_IN_ISSUE_COUNT_MAX = 3
EXAMPLES_IN_COMMENT_COUNT_MAX = 1
RATIONALE_EXCERPT_LENGTH_MAX = 800
DETAIL_EXCERPT_LENGTH_MAX = 300
ALERTS_LISTED_PER_EMBED_COUNT_MAX = 10
ALERT_DETAIL_EXCERPT_LENGTH_MAX = 1_000
DISCORD_USERNAME = "Grid Governance"
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_FENCE_BREAKER = re.compile("`{3,}")


@dataclass(frozen=True, slots=True)
class ConflictTotals:
    """Running totals of a conflict across every batch so far, this one included."""

    occurrences: int
    first_source_offset: int
    last_source_offset: int


@dataclass(frozen=True, slots=True)
class IssueDraft:
    title: str
    description: str
    priority: int
    attachment_url: str  # stable: finds the issue again after a crash


def page_url(dashboard_url: str, page: str, **params: str | int) -> str:
    """The address of one dashboard page (``dashboard.app`` gives each its own path), ``params`` selecting
    the item on it: ``/rejections?offset=12``, ``/ledger?seq=42``, ``/governance``."""
    query = f"?{urlencode(params)}" if params else ""
    return f"{dashboard_url.rstrip('/')}/{page}{query}"


# The page that shows each alert's and incident's subject.
PAGE_BY_KIND = {
    "breaker_trip": "governance",
    "breaker_resume": "governance",
    "rejection_spike": "rejections",
    "replay_anomaly": "replay",
    "sink_failure": "overview",
}


def _fenced(text: str) -> str:
    return "```text\n" + _FENCE_BREAKER.sub("``", text) + "\n```"


def fit_markdown(header: str, optional: Sequence[str], length_max: int, omitted_noun: str) -> str:
    """``header`` whole, then as many ``optional`` sections as fit, then a note of what was left out."""
    parts = [truncate(header, length_max)]
    used = len(parts[0])
    for index, section in enumerate(optional):
        left_out = len(optional) - index
        note = f"\n\n_{left_out} more {omitted_noun} not shown; see the dashboard._"
        if used + 2 + len(section) + len(note) > length_max:
            if used + len(note) <= length_max:
                parts.append(note.strip())
            break
        parts.append(section)
        used += 2 + len(section)
    return "\n\n".join(parts)


def _example(rejection: Rejection, dashboard_url: str) -> str:
    record = rejection.record
    provenance = record.provenance
    source = provenance.source if provenance else "unknown"
    model = f" · model {md(provenance.model)}" if provenance and provenance.model else ""
    link = page_url(dashboard_url, "rejections", offset=record.source_offset)
    lines = [
        f"**Proposal {md(record.proposal_id or '?')}** · tick {record.tick if record.tick is not None else '?'}"
        f" · [source offset {record.source_offset}]({link})"
        f" · from {source}{model}",
        f"Field {md(record.field or '-')}: {md(truncate(record.detail, DETAIL_EXCERPT_LENGTH_MAX))}",
    ]
    if provenance and provenance.rationale:
        lines.append("The agent's rationale:\n" + _fenced(truncate(provenance.rationale, RATIONALE_EXCERPT_LENGTH_MAX)))
    return "\n".join(lines)


def conflict_title(conflict: Conflict) -> str:
    """Deterministic, so an issue can be found again by its title."""
    key = conflict.key
    day = conflict.window_start.date().isoformat()
    return truncate(f"{key.reason_code}: {key.agent} on {key.kind} ({day})", LINEAR_TITLE_LENGTH_MAX)


def _versions(rejection: Rejection) -> str:
    record = rejection.record
    return f"validator `{record.validator_version}` · policy v{record.policy_version}"


def conflict_issue(conflict: Conflict, totals: ConflictTotals, dashboard_url: str) -> IssueDraft:
    key = conflict.key
    explorer = page_url(dashboard_url, "rejections", conflict=conflict.conflict_id)
    header = "\n".join(
        [
            f"The validator rejected **{totals.occurrences}** proposal(s) of kind {md(key.kind)} from "
            f"{md(key.agent)} with reason **{md(key.reason_code)}**.",
            "",
            f"- Source offsets: {totals.first_source_offset} … {totals.last_source_offset}",
            f"- Window: {conflict.window_start.isoformat()} (one issue per conflict per window)",
            f"- Law: {_versions(conflict.rejections[-1])}",
            f"- Dashboard: [conflict {conflict.conflict_id}]({explorer})",
            "",
            "Later occurrences are added as comments with updated counts.",
            "",
            "### Examples",
        ]
    )
    examples = [_example(r, dashboard_url) for r in conflict.rejections[:EXAMPLES_IN_ISSUE_COUNT_MAX]]
    return IssueDraft(
        title=conflict_title(conflict),
        description=fit_markdown(header, examples, LINEAR_DESCRIPTION_LENGTH_MAX, "example(s)"),
        priority=PRIORITY_HIGH,
        attachment_url=explorer,
    )


def delivery_marker(delivery_id: str) -> str:
    """A line in each comment that lets the sink find the comment again after a crash."""
    return f"gridgov-delivery: {delivery_id}"


def conflict_comment(conflict: Conflict, totals: ConflictTotals, delivery_id: str, dashboard_url: str) -> str:
    new = len(conflict.rejections)
    header = "\n".join(
        [
            f"**+{new}** new occurrence(s); **{totals.occurrences}** in total.",
            "",
            f"- New source offsets: {conflict.first_source_offset} … {conflict.last_source_offset}"
            f" (all: {totals.first_source_offset} … {totals.last_source_offset})",
            f"- Law: {_versions(conflict.rejections[-1])}",
        ]
    )
    latest = [_example(r, dashboard_url) for r in conflict.rejections[-EXAMPLES_IN_COMMENT_COUNT_MAX:]]
    footer = f"\n\n`{delivery_marker(delivery_id)}`"
    return fit_markdown(header, latest, LINEAR_COMMENT_LENGTH_MAX - len(footer), "example(s)") + footer


def incident_issue(incident: IncidentRecord, dashboard_url: str) -> IssueDraft:
    # The incident id keeps the address unique: it is the attachment that finds this issue again.
    page = page_url(dashboard_url, PAGE_BY_KIND[incident.kind], incident=incident.incident_id)
    entry = page_url(dashboard_url, "ledger", seq=incident.seq) if incident.seq is not None else None
    telemetry = "\n".join(f"| {name} | {value} |" for name, value in sorted(incident.telemetry.items()))
    header = "\n".join(
        [
            f"**{md(incident.kind)}**: {md(incident.detail, one_line=False)}",
            "",
            f"- Incident: `{incident.incident_id}`"
            + (f" at ledger seq [{incident.seq}]({entry})" if entry is not None else ""),
            f"- Law: validator `{incident.validator_version}` · policy v{incident.policy_version}",
            f"- Dashboard: {page}",
        ]
    )
    table = "| telemetry | value |\n| --- | --- |\n" + telemetry if telemetry else ""
    return IssueDraft(
        title=truncate(f"[{incident.kind}] {incident.title}", LINEAR_TITLE_LENGTH_MAX),
        description=fit_markdown(header, [table] if table else [], LINEAR_DESCRIPTION_LENGTH_MAX, "table(s)"),
        priority=PRIORITY_URGENT,
        attachment_url=page,
    )


def failure_issue(failed_sink: str, delivery_id: str, error: str, dashboard_url: str) -> IssueDraft:
    """The urgent issue that reports a stalled Discord sink through the other channel."""
    return IssueDraft(
        title=truncate(f"[sink_failure] {failed_sink} sink stalled on {delivery_id}", LINEAR_TITLE_LENGTH_MAX),
        description=(
            f"The {failed_sink} sink ran out of retries delivering `{delivery_id}` and stopped there; "
            "nothing after it is delivered until it succeeds.\n\nLast error:\n" + _fenced(truncate(error, 2_000))
        ),
        priority=PRIORITY_URGENT,
        attachment_url=page_url(dashboard_url, PAGE_BY_KIND["sink_failure"], sink_failure=delivery_id),
    )


def _iso(timestamp_s: float) -> str:
    return datetime.fromtimestamp(timestamp_s, tz=UTC).isoformat().replace("+00:00", "Z")


def _alert_line(alert: AlertRecord, dashboard_url: str) -> dict[str, Any]:
    where = [f"`{alert.alert_id}`"]
    if alert.seq is not None:
        where.append(f"[seq {alert.seq}]({page_url(dashboard_url, 'ledger', seq=alert.seq)})")
    if alert.source_offset is not None:
        offset = page_url(dashboard_url, "ledger", offset=alert.source_offset)  # an entry or a rejection
        where.append(f"[offset {alert.source_offset}]({offset})")
    telemetry = ", ".join(f"{k}={v}" for k, v in sorted(alert.telemetry.items()))
    value = " · ".join(where) + (f"\n{telemetry}" if telemetry else "")
    return {"name": md(alert.title), "value": value, "inline": False}


def _kind_embed(alerts: Sequence[tuple[AlertRecord, float]], dashboard_url: str) -> dict[str, Any]:
    worst = min((a for a, _ in alerts), key=lambda a: SEVERITY_RANK[a.severity])
    latest, latest_at_s = alerts[-1]
    listed = alerts[-ALERTS_LISTED_PER_EMBED_COUNT_MAX:]
    fields = [_alert_line(a, dashboard_url) for a, _ in listed]
    if len(alerts) > len(listed):
        fields.append({"name": "…", "value": f"{len(alerts) - len(listed)} earlier alert(s) not listed"})
    footer = f"validator {latest.validator_version} · policy v{latest.policy_version}"
    count = f" ×{len(alerts)}" if len(alerts) > 1 else ""
    return {
        "title": f"{latest.kind}{count}: {md(latest.title)}",
        "url": page_url(dashboard_url, PAGE_BY_KIND[latest.kind]),  # the title links to the kind's page
        "description": md(truncate(latest.detail, ALERT_DETAIL_EXCERPT_LENGTH_MAX), one_line=False),
        "color": COLOR_BY_SEVERITY[worst.severity],
        "timestamp": _iso(latest_at_s),
        "fields": fields,
        "footer": {"text": footer},
    }


def alerts_message(alerts: Sequence[tuple[AlertRecord, float]], dashboard_url: str) -> dict[str, Any]:
    """One Discord message for a burst: an embed per alert kind (five kinds, within the ten allowed),
    coloured by the worst severity in it, most severe first, with counts; each embed's title links to
    the dashboard page of its kind, and each alert to its ledger entry."""
    by_kind: dict[str, list[tuple[AlertRecord, float]]] = {}
    for alert, at_s in alerts:
        by_kind.setdefault(alert.kind, []).append((alert, at_s))
    groups = sorted(by_kind.values(), key=lambda group: min(SEVERITY_RANK[a.severity] for a, _ in group))
    embeds = [_kind_embed(group, dashboard_url) for group in groups]
    severities = [a.severity for a, _ in alerts]
    counts = ", ".join(f"{severities.count(s)} {s}" for s in SEVERITY_RANK if s in severities)
    content = f"**{len(alerts)} alerts** ({counts})" if len(alerts) > 1 else ""
    return fit_payload(
        {"username": DISCORD_USERNAME, "content": content, "allowed_mentions": {"parse": []}, "embeds": embeds}
    )


def failure_message(failed_sink: str, delivery_id: str, error: str, at_s: float) -> dict[str, Any]:
    """The Discord message that reports a stalled Linear sink through the other channel."""
    embed = {
        "title": f"sink_failure: {failed_sink} sink stalled",
        "description": f"Out of retries on `{delivery_id}`; nothing after it is delivered until it succeeds.\n"
        + truncate(error, ALERT_DETAIL_EXCERPT_LENGTH_MAX),
        "color": COLOR_BY_SEVERITY["critical"],
        "timestamp": _iso(at_s),
    }
    return fit_payload({"username": DISCORD_USERNAME, "allowed_mentions": {"parse": []}, "embeds": [embed]})


def with_repeat_note(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` flagged as possibly repeating a message whose confirmation was lost in a crash."""
    note = "_(re-sent after an interrupted delivery: this may repeat an earlier message)_"
    content = payload.get("content", "")
    return fit_payload({**payload, "content": f"{note}\n{content}" if content else note})
