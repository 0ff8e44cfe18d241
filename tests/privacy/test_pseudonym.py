"""Keyed pseudonymisation: stable, keyed, rotatable, and loud about bad keys."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest

from shoprec.errors import ConfigError
from shoprec.privacy.pseudonym import (
    ENV_KEY,
    ENV_KEY_FILE,
    ENV_KEY_ID,
    Pseudonymizer,
    check_key_outside,
    generate_key_file,
)

SECRET = "0123456789abcdef0123456789abcdef"  # 32 bytes
OTHER = "fedcba9876543210fedcba9876543210"


def test_pseudonym_is_the_keyed_hmac_sha256_of_the_id_with_the_key_id():
    p = Pseudonymizer.from_secret(SECRET, key_id="k1")
    expected = hmac.new(SECRET.encode(), b"12347", hashlib.sha256).hexdigest()[:32]
    assert p.pseudonymize("12347") == f"k1.{expected}"


def test_same_id_same_pseudonym_and_different_ids_differ():
    p = Pseudonymizer.from_secret(SECRET)
    assert p("alice") == p("alice")
    assert p("alice") != p("alice ")
    assert len({p(f"user{i}") for i in range(1000)}) == 1000


def test_another_key_gives_unlinkable_pseudonyms():
    a, b = Pseudonymizer.from_secret(SECRET, "a"), Pseudonymizer.from_secret(OTHER, "a")
    assert a("alice").split(".")[1] != b("alice").split(".")[1]


def test_pseudonym_does_not_contain_the_raw_id():
    p = Pseudonymizer.from_secret(SECRET)
    assert "alice" not in p("alice")


def test_derived_key_id_is_stable_and_does_not_reveal_the_key():
    p = Pseudonymizer.from_secret(SECRET)
    assert p.key_id == Pseudonymizer.from_secret(SECRET).key_id
    assert p.key_id not in SECRET and len(p.key_id) == 8
    assert SECRET not in repr(p)


@pytest.mark.parametrize(
    "secret, message",
    [
        ("short", "must be at least 32 bytes. Got 5 bytes instead."),
        ("hex:abcd", "must be at least 32 bytes. Got 2 bytes instead."),
        ("hex:zz" + "0" * 64, "starts with 'hex:' but is not hex"),
    ],
)
def test_short_or_malformed_keys_are_refused_with_a_clear_message(secret, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Pseudonymizer.from_secret(secret)


def test_hex_keys_are_decoded():
    raw = bytes(range(32))
    assert Pseudonymizer.from_secret("hex:" + raw.hex(), "x")("a") == Pseudonymizer([("x", raw)])("a")


def test_missing_key_names_both_environment_variables():
    with pytest.raises(ConfigError) as info:
        Pseudonymizer.from_env({})
    assert ENV_KEY in str(info.value) and ENV_KEY_FILE in str(info.value)


def test_key_from_environment_with_key_id():
    p = Pseudonymizer.from_env({ENV_KEY: SECRET, ENV_KEY_ID: "2026-11"})
    assert p.key_id == "2026-11" and p("a").startswith("2026-11.")


def test_bad_key_id_is_refused():
    with pytest.raises(ConfigError, match=r"must be 1-16 characters from \[A-Za-z0-9_-\]"):
        Pseudonymizer.from_env({ENV_KEY: SECRET, ENV_KEY_ID: "has space"})


def test_key_and_key_file_together_are_ambiguous(tmp_path):
    with pytest.raises(ConfigError, match="either"):
        Pseudonymizer.from_env({ENV_KEY: SECRET, ENV_KEY_FILE: str(tmp_path / "k")})


def test_rotation_key_file_finds_data_written_under_the_old_key(tmp_path):
    old = Pseudonymizer.from_secret(SECRET, "old")
    path = tmp_path / "keys"
    path.write_text(f"# rotated\nnew {OTHER}\n\nold {SECRET}\n")
    ring = Pseudonymizer.from_file(path)
    assert ring.key_ids == ("new", "old")
    assert ring("alice").startswith("new.")  # new data goes under the new key
    assert old("alice") in ring.candidates("alice")  # old data is still found


def test_key_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"new {OTHER}\nold short\n")
    with pytest.raises(ConfigError, match=r"keys, line 2 must be at least 32 bytes"):
        Pseudonymizer.from_file(path)
    with pytest.raises(ConfigError, match="Cannot read the pseudonym key file"):
        Pseudonymizer.from_file(tmp_path / "absent")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no key"):
        Pseudonymizer.from_file(tmp_path / "empty")


def test_duplicate_key_ids_are_refused():
    with pytest.raises(ConfigError, match="used twice"):
        Pseudonymizer([("a", SECRET.encode()), ("a", OTHER.encode())])


def test_key_file_inside_the_data_directory_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    key = generate_key_file(data / "pseudonym.key")
    with pytest.raises(ConfigError, match="inside the data directory"):
        check_key_outside(key, data)
    with pytest.raises(ConfigError, match="inside the data directory"):
        Pseudonymizer.from_env({ENV_KEY_FILE: str(key)}, data_dir=data)
    check_key_outside(key, tmp_path / "elsewhere")  # no error


def test_generated_key_file_is_private_and_never_overwritten(tmp_path):
    path = generate_key_file(tmp_path / "conf" / "pseudonym.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    p = Pseudonymizer.from_file(path)
    assert p("a") == Pseudonymizer.from_file(path)("a")
    with pytest.raises(ConfigError, match="exists already"):
        generate_key_file(path)


@pytest.mark.parametrize("raw", ["", None, "x" * 257])
def test_invalid_shopper_ids_are_refused(raw):
    with pytest.raises(ConfigError, match="shopper id"):
        Pseudonymizer.from_secret(SECRET)(raw)
