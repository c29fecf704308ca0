"""``gridgov operators add|list|show``: the people who govern, each with an Ed25519 key of their own.

A key is created under ``GRID_HOME/operators``; with ``--password`` (asked for, never an argument) it
is sealed under that password, as every console user's is. Only public keys leave this machine: the
genesis and ``participants add --role operator`` register them; the validator never sees a private one.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from core import config
from core.config import Settings
from core.identities import IdentityError, create_operator, load_operator, operator_public_keys, operator_signer
from schemas.signing import Ed25519Signer

PASSWORD_LENGTH_MIN = 12


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("operators", help="create, list or show operator identities (Ed25519 keys)")
    parser.add_argument("action", choices=("add", "list", "show"))
    parser.add_argument("name", nargs="?", help="the operator's agent id")
    parser.add_argument("--password", action="store_true", help="seal the key under a password (asked for)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.action == "list":
        for name, key in operator_public_keys(settings.home).items():
            print(f"{name:24} {key}")
        return 0
    if not args.name:
        raise SystemExit(f"operators {args.action} needs a NAME")
    try:
        if args.action == "add":
            password = _new_password() if args.password else None
            signer = create_operator(settings.home, args.name, password)
        else:
            signer = load_operator(settings.home, args.name, _password(args.name))
    except IdentityError as exc:
        raise SystemExit(f"operators: {exc}") from exc
    print(f"{args.name} {signer.public_key}")
    return 0


def cli_signer(settings: Settings) -> Ed25519Signer:
    """``GRID_OPERATOR``'s signer for a command: their key file, opened with their password when it is
    sealed (asked on the terminal); a development machine's first command creates an unsealed one."""
    try:
        return operator_signer(settings.home, settings.operator)
    except IdentityError as exc:
        if not sys.stdin.isatty():
            raise SystemExit(f"{exc}; run the command on a terminal to be asked for it") from exc
    try:
        return load_operator(settings.home, settings.operator, _password(settings.operator))
    except IdentityError as exc:
        raise SystemExit(str(exc)) from exc


def _password(name: str) -> str:
    return getpass.getpass(f"password of operator {name}: ")


def _new_password() -> str:
    password = getpass.getpass("new password: ")
    if len(password) < PASSWORD_LENGTH_MIN:
        raise SystemExit(f"a password has at least {PASSWORD_LENGTH_MIN} characters")
    if getpass.getpass("again: ") != password:
        raise SystemExit("the passwords differ")
    return password
