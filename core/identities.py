"""Ed25519 identities: operators (people) and the validator, each with its own private key file.

Operators keep ``GRID_HOME/operators/<name>.key`` and ``<name>.pub`` (the public key, hex). The key
file is PKCS#8 PEM, or, when the operator has a password (every console user has), the raw private
key sealed with AES-256-GCM under a key scrypt derives from the password: each guess then costs about
0.1 s and 32 MiB, so a stolen file resists an offline search (PKCS#8's own encryption uses a cheap KDF). The
validator needs only the ``.pub`` files: they are the operators it trusts to found a ledger. The
validator's own key, which signs its checkpoints, is ``GRID_HOME/credentials/validator.pem``.
Private key files are 0600 in 0700 directories and are never overwritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from core.credentials import credentials_dir, write_private
from schemas.signing import Ed25519Signer, public_key_hex

OPERATORS_DIR_NAME = "operators"
VALIDATOR_KEY_NAME = "validator.key"
SEALED_FORMAT_VERSION = 1
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # about 0.1 s and 32 MiB per password guess
SALT_BYTES, NONCE_BYTES, AES_KEY_BYTES = 16, 12, 32
PEM_PREFIX = "-----BEGIN"
OPERATORS_COUNT_MAX = 1_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # an agent id (schemas.types.IDENTIFIER_PATTERN)


class IdentityError(Exception):
    """A key that is missing, or a password that does not open it."""


def operators_dir(home: Path) -> Path:
    return Path(home) / OPERATORS_DIR_NAME


def _paths(home: Path, name: str) -> tuple[Path, Path]:
    if not _NAME.match(name):
        raise IdentityError(f"{name!r} is not an agent id")
    base = operators_dir(home) / name
    return base.with_suffix(".key"), base.with_suffix(".pub")


def create_operator(home: Path, name: str, password: str | None = None, seed: bytes | None = None) -> Ed25519Signer:
    """A new operator key (from ``seed``, 32 bytes, when a test needs a fixed one); refuses to replace one."""
    pem_path, pub_path = _paths(home, name)
    if pem_path.exists():
        raise IdentityError(f"operator {name!r} already has a key at {pem_path}")
    key = Ed25519PrivateKey.from_private_bytes(seed) if seed is not None else Ed25519PrivateKey.generate()
    write_private(pem_path, _pem(key, password))
    write_private(pub_path, public_key_hex(key) + "\n")
    return load_operator(home, name, password)


def load_operator(home: Path, name: str, password: str | None = None) -> Ed25519Signer:
    """The operator's signer; ``IdentityError`` when there is no key or the password does not open it."""
    pem_path, _ = _paths(home, name)
    if not pem_path.exists():
        raise IdentityError(f"operator {name!r} has no key (create one: gridgov operators add {name})")
    return Ed25519Signer(_load(pem_path, password))


def is_sealed(home: Path, name: str) -> bool:
    """Whether ``name`` has a key sealed under a password (the only kind a console login opens)."""
    try:
        pem_path, _ = _paths(home, name)
    except IdentityError:
        return False
    return pem_path.exists() and not pem_path.read_text().startswith(PEM_PREFIX)


def operator_signer(home: Path, name: str) -> Ed25519Signer:
    """The operator's unencrypted key, created on first use: the scripted operator of a simulation and
    a single-user development machine. People on the console have encrypted keys instead."""
    pem_path, _ = _paths(home, name)
    return load_operator(home, name) if pem_path.exists() else create_operator(home, name)


def operator_public_key(home: Path, name: str) -> str:
    _, pub_path = _paths(home, name)
    if not pub_path.exists():
        raise IdentityError(f"operator {name!r} has no public key at {pub_path}")
    return pub_path.read_text().strip()


def operator_public_keys(home: Path) -> dict[str, str]:
    """name -> public key (hex) of every operator with a key under ``home``."""
    found = sorted(operators_dir(home).glob("*.pub"))[:OPERATORS_COUNT_MAX]
    return {path.stem: path.read_text().strip() for path in found}


def validator_signer(home: Path) -> Ed25519Signer:
    """The validator's own key, created on first use."""
    path = credentials_dir(home) / VALIDATOR_KEY_NAME
    if not path.exists():
        write_private(path, _pem(Ed25519PrivateKey.generate(), None))
    return Ed25519Signer(_load(path, None))


def _pem(key: Ed25519PrivateKey, password: str | None) -> str:
    if not password:
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    sealed = AESGCM(_derive(password, salt)).encrypt(nonce, raw, None)
    record = {
        "v": SEALED_FORMAT_VERSION,
        "kdf": "scrypt",
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "sealed": sealed.hex(),
    }
    return orjson.dumps(record).decode()


def _derive(password: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=AES_KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(password.encode())


def _load(path: Path, password: str | None) -> Ed25519PrivateKey:
    text = path.read_text()
    if text.startswith(PEM_PREFIX):
        key = load_pem_private_key(text.encode(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path} is not an Ed25519 key")
        return key
    if not password:
        raise IdentityError(f"{path.name}: this key needs its password")
    record = orjson.loads(text)
    assert record["v"] == SEALED_FORMAT_VERSION and record["kdf"] == "scrypt", f"{path}: unknown key format"
    try:
        raw = AESGCM(_derive(password, bytes.fromhex(record["salt"]))).decrypt(
            bytes.fromhex(record["nonce"]), bytes.fromhex(record["sealed"]), None
        )
    except InvalidTag as exc:
        raise IdentityError(f"{path.name}: the password does not open this key") from exc
    return Ed25519PrivateKey.from_private_bytes(raw)
