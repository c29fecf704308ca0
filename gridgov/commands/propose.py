"""``gridgov propose``: build, sign and send one proposal (or raw bytes, for testing hostile input)."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import orjson

from connectors.kafka_io import send_proposals
from connectors.readmodel.ledger import producer_position
from core import agent_keys, config
from schemas.codec import encode
from schemas.envelope import Nonces, build

TTL_TICKS_DEFAULT = 10


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "propose",
        help="sign and send a proposal: body as JSON on stdin, e.g. "
        '{"kind":"transfer","from_account":"solar:main","to_account":"hospital:main","resource":"energy","quantity":500}',
    )
    parser.add_argument("--key", type=Path, help="the agent's key file (`gridgov keys issue`); it names the agent")
    parser.add_argument("--id", help="proposal id (default: a random UUID)")
    parser.add_argument("--tick", type=int, help="grid tick seen (default: the ledger's current tick)")
    parser.add_argument("--nonce", type=int, help="the agent's nonce (default: one above the last the ledger decided)")
    parser.add_argument("--ttl", type=int, default=TTL_TICKS_DEFAULT, help="ticks until the proposal expires")
    parser.add_argument("--raw", action="store_true", help="send stdin bytes exactly as given, unsigned")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    data = sys.stdin.buffer.read()
    if args.raw:
        payload = data
    else:
        if not args.key:
            print("--key is required unless --raw", file=sys.stderr)
            return 2
        try:
            key = agent_keys.load(args.key)
        except agent_keys.KeyFileError as exc:
            print(exc, file=sys.stderr)
            return 2
        tick, decided = producer_position(settings.database_url, key.agent)
        tick = args.tick if args.tick is not None else tick
        nonce = args.nonce if args.nonce is not None else Nonces().next(decided)
        proposal = build(
            key.agent,
            orjson.loads(data),
            tick,
            args.ttl,
            key.signer,
            args.id or str(uuid.uuid4()),
            nonce,
            {"source": "cli"},
        )
        payload = encode(proposal)
        print(proposal["id"])
    send_proposals(settings, [payload])
    return 0
