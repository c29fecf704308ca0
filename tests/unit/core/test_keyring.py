"""The validator's keys: the derived key of each (agent, generation), and the founders it trusts."""

from __future__ import annotations

from pathlib import Path

from core import config
from core.identities import create_operator
from core.keyring import Keyring, founders
from schemas.keys import derive_key
from schemas.signing import key_fingerprint


def test_each_generation_has_its_own_key_and_fingerprint() -> None:
    ring = Keyring(b"root", [])
    keys = [ring.hmac_key("solar", g) for g in range(3)]
    assert [k for k, _ in keys] == [derive_key(b"root", "solar", g) for g in range(3)]
    assert len({fp for _, fp in keys}) == 3 and keys[0][1] == key_fingerprint(keys[0][0])
    assert ring.hmac_key("solar", 0) is ring.hmac_key("solar", 0), "memoised"


def test_founders_come_from_the_setting_else_the_operator_keys_in_home(tmp_path: Path) -> None:
    signer = create_operator(tmp_path, "operator")
    settings = config.load().replace(home=tmp_path)
    assert founders(settings) == {signer.public_key}
    assert founders(settings.replace(founding_operators=" aa , bb ")) == {"aa", "bb"}
