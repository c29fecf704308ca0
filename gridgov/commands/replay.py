"""``gridgov replay``: rebuild the ledger from the proposals topic into a fresh database and compare it
with the live one, replay under another version of the law and diff, or reset a group's offsets."""

from __future__ import annotations

import argparse
import sys
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

from connectors.kafka_admin import reset_group_offsets
from core import config
from core.key_secret import key_secret
from core.version import validator_version
from gridgov.market_table import MarketColumn, render_markets
from law.policy import MARKET_MECHANISMS
from streams.counterfactual import counterfactual
from streams.replay import ReplayResult, live_position, replay
from streams.replay_compare import LawDiff, Outcome
from streams.replay_errors import ReplayError

SHOWN_MAX = 50


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-decide the proposals into a fresh database and compare, or diff another law; reset group offsets",
        description="See docs/replay.md for the operator's path with Kafka's own kafka-consumer-groups tool.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--into", metavar="URL", help="fresh database (or schema) to rebuild the ledger into")
    what.add_argument("--reset-group", metavar="GROUP", help="only reset GROUP's offsets on the proposals topic")
    what.add_argument(
        "--mechanism",
        choices=sorted(MARKET_MECHANISMS),
        help="re-decide the log in memory under this market mechanism and compare the markets (writes nothing)",
    )
    parser.add_argument("--to-offset", type=int, metavar="N", help="stop before offset N (default: the live position)")
    parser.add_argument("--to-earliest", action="store_true", help="with --reset-group: to the log start (default)")
    parser.add_argument("--law", metavar="REV", help="git revision of the law to replay under (its own process)")
    parser.add_argument("--database-url", help="the live database (default: GRID_DATABASE_URL or the local cluster)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.database_url:
        settings = settings.replace(database_url_external=args.database_url)
    if args.reset_group:
        return _reset(settings, args)
    if args.mechanism:
        return _mechanism(settings, args)
    try:
        result = replay(settings, args.into, key_secret(settings), validator_version(), args.to_offset, args.law)
    except (ReplayError, psycopg.OperationalError) as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 2
    print(f"run {result.run_id}: offsets [0, {result.to_offset}) into {_dbname(args.into)} in {result.seconds:.1f} s")
    if result.diff is not None:
        print_diff(result, result.diff)
    else:
        print_comparison(result)
    return 0 if result.ok else 1


def _reset(settings: config.Settings, args: argparse.Namespace) -> int:
    if args.to_earliest and args.to_offset is not None:
        print("--to-earliest and --to-offset exclude each other", file=sys.stderr)
        return 2
    target: int | Literal["earliest"] = "earliest" if args.to_offset is None else args.to_offset
    topic = settings.topic("proposals")
    try:
        offsets = reset_group_offsets(settings.kafka("admin"), args.reset_group, topic, target)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for partition, offset in sorted(offsets.items()):
        print(f"group {args.reset_group} on {topic}[{partition}] now at offset {offset}")
    print("a validator still decides from its database position; see docs/replay.md")
    return 0


def _mechanism(settings: config.Settings, args: argparse.Namespace) -> int:
    try:
        bound = args.to_offset
        if bound is None:
            bound = live_position(settings.database_url, settings.topic("proposals"))
        cf = counterfactual(settings, key_secret(settings), bound, args.mechanism)
    except (ReplayError, psycopg.OperationalError) as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 2
    faithful = cf.faithful
    print(f"offsets [0, {bound}) decided twice in memory in {cf.seconds:.1f} s: as the log says, and under "
          f"{cf.mechanism}")  # fmt: skip
    as_decided = "= live head" if faithful else "DIFFERS FROM LIVE (another law or version decided the live ledger)"
    print(render_markets([
        MarketColumn("as decided", cf.as_decided.figures, dict(cf.as_decided.rejected_by_reason),
                     f"{cf.as_decided.head_hash.hex()[:12]} {as_decided}"),
        MarketColumn(f"under {cf.mechanism}", cf.pinned.figures, dict(cf.pinned.rejected_by_reason),
                     f"{cf.pinned.entries:,} entries"),
    ]))  # fmt: skip
    return 0 if faithful else 1


def _dbname(url: str) -> str:
    """The database's name only: a URL may carry a password."""
    return str(conninfo_to_dict(url).get("dbname", "?"))


def print_comparison(result: ReplayResult) -> None:
    c = result.comparison
    assert c is not None
    seq, head_hash = c.replay_head or (-1, b"")
    if c.identical:
        print(f"identical: head seq {seq} hash {head_hash.hex()} ({c.entries} entries compared)")
    elif c.divergence is not None:
        print(f"DIVERGED after {c.entries} matching entries: {c.divergence}")
    else:
        print(
            f"same decisions for all {c.entries} entries, but from seq {c.restamped_seq} the live ledger is stamped "
            f"{c.live_version!r} and this code is {validator_version()!r}, so the hashes cannot match; "
            f"replay with that version's code for a hash comparison (replay head seq {seq} hash {head_hash.hex()})"
        )


def print_diff(result: ReplayResult, d: LawDiff) -> None:
    print(f"law {result.law} against the live ledger, {d.offsets} proposals:")
    print(f"flipped between accepted and rejected: {d.flipped_count}; rejected for another reason: "
          f"{d.reason_changed_count}")  # fmt: skip
    for live, other in d.flipped[:SHOWN_MAX]:
        print(f"  FLIP {_who(live)}: live {_verdict(live)} -> counterfactual {_verdict(other)}")
    for live, other in d.reason_changed[:SHOWN_MAX]:
        print(f"  REASON {_who(live)}: live {_verdict(live)} -> counterfactual {_verdict(other)}")
    shown = min(SHOWN_MAX, len(d.flipped)) + min(SHOWN_MAX, len(d.reason_changed))
    if shown < d.flipped_count + d.reason_changed_count:
        print(f"  … {d.flipped_count + d.reason_changed_count - shown} more in replay_runs.report_json")
    print(f"balance differences: {len(d.balances)}")
    for owner, account, resource, live_balance, other_balance in d.balances[:SHOWN_MAX]:
        delta = other_balance - live_balance
        print(f"  {owner} {account} {resource}: live {live_balance}, counterfactual {other_balance} ({delta:+d})")


def _who(o: Outcome) -> str:
    return f"offset {o.source_offset} {o.proposal_id} ({o.agent}, {o.kind})"


def _verdict(o: Outcome) -> str:
    return "ACCEPTED" if o.accepted else f"{o.verdict} ({o.detail})"
