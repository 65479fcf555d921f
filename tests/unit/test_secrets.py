"""Server secrets: the JWT signing secret and the provider-key encryption key."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from parley.errors import ConfigurationError
from parley.services import secrets as secrets_module
from parley.services.secrets import (
    MIN_SECRET_BYTES,
    SECRET_FILE_NAME,
    resolve_encryption_key,
    resolve_jwt_secret,
)
from parley.settings import Settings

POSTGRES_URL = "postgresql+asyncpg://x@127.0.0.1/db"
GOOD_SECRET = "s" * MIN_SECRET_BYTES


@pytest.fixture(autouse=True)
def _no_secrets_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_JWT_SECRET", raising=False)
    monkeypatch.delenv("PARLEY_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)


def make_settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_short_configured_secret_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_secret="x" * (MIN_SECRET_BYTES - 1))
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        resolve_jwt_secret(settings)


def test_length_is_counted_in_utf8_bytes(tmp_path: Path) -> None:
    # 16 two-byte characters are 32 bytes.
    settings = make_settings(tmp_path, jwt_secret="é" * 16)
    assert resolve_jwt_secret(settings) == ("é" * 16).encode()


def test_a_configured_secret_of_32_bytes_is_used_as_is(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_secret=GOOD_SECRET)
    assert resolve_jwt_secret(settings) == GOOD_SECRET.encode()
    assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()


def test_a_configured_secret_works_with_an_external_database(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_secret=GOOD_SECRET, database_url=POSTGRES_URL)
    assert resolve_jwt_secret(settings) == GOOD_SECRET.encode()


def test_embedded_secret_is_generated_once_owner_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    data_dir = tmp_path / "data"
    assert not data_dir.exists()

    first = resolve_jwt_secret(settings)

    path = data_dir / SECRET_FILE_NAME
    assert data_dir.is_dir()
    assert mode_of(data_dir) & 0o077 == 0
    assert mode_of(path) == 0o600
    assert len(first) >= MIN_SECRET_BYTES
    assert path.read_bytes() == first
    assert resolve_jwt_secret(settings) == first
    assert resolve_jwt_secret(make_settings(tmp_path)) == first


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    secret = resolve_jwt_secret(settings)
    path = tmp_path / "data" / SECRET_FILE_NAME
    path.chmod(0o644)

    assert resolve_jwt_secret(settings) == secret
    assert mode_of(path) == 0o600


def test_an_existing_file_is_read_with_a_trailing_newline_tolerated(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / SECRET_FILE_NAME
    path.write_bytes(GOOD_SECRET.encode() + b"\n")
    path.chmod(0o600)
    assert resolve_jwt_secret(make_settings(tmp_path)) == GOOD_SECRET.encode()


def test_a_short_secret_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets_module, "_RACE_WAIT_S", 0.0)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / SECRET_FILE_NAME
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="fewer than 32 bytes"):
        resolve_jwt_secret(make_settings(tmp_path))


def test_the_loser_of_a_creation_race_reads_the_winners_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    winner = b"w" * 64
    real_create = secrets_module._create_exclusive

    def other_process_wins(path: Path, value: bytes) -> None:
        real_create(path, winner)  # the other process creates the file first ...
        real_create(path, value)  # ... so our O_EXCL create fails

    monkeypatch.setattr(secrets_module, "_create_exclusive", other_process_wins)
    assert resolve_jwt_secret(settings) == winner


def test_an_external_database_needs_a_configured_secret(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=POSTGRES_URL)
    with pytest.raises(ConfigurationError, match="PARLEY_JWT_SECRET must be set"):
        resolve_jwt_secret(settings)
    assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()


def test_encryption_key_derived_from_jwt_secret(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    jwt_secret = GOOD_SECRET.encode()

    key = resolve_encryption_key(settings, jwt_secret)

    assert len(key) == 32
    assert key == resolve_encryption_key(settings, jwt_secret)
    assert key != jwt_secret
    assert key != jwt_secret[:32]
    assert key != resolve_encryption_key(settings, b"t" * MIN_SECRET_BYTES)


def test_configured_encryption_key_is_used_instead_of_the_jwt_secret(tmp_path: Path) -> None:
    configured = make_settings(tmp_path, encryption_key="k" * 40)
    jwt_secret = GOOD_SECRET.encode()

    key = resolve_encryption_key(configured, jwt_secret)

    assert len(key) == 32
    assert key == resolve_encryption_key(configured, b"t" * MIN_SECRET_BYTES)
    assert key != resolve_encryption_key(make_settings(tmp_path), jwt_secret)
    # The same string as key material or as JWT secret gives different keys (distinct salts).
    same = make_settings(tmp_path, encryption_key=GOOD_SECRET)
    assert resolve_encryption_key(same, jwt_secret) != resolve_encryption_key(
        make_settings(tmp_path), jwt_secret
    )
    assert key != b"k" * 32


def test_a_short_encryption_key_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, encryption_key="k" * (MIN_SECRET_BYTES - 1))
    with pytest.raises(ConfigurationError, match="PARLEY_ENCRYPTION_KEY must be at least"):
        resolve_encryption_key(settings, GOOD_SECRET.encode())


def test_the_secret_is_never_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from parley.logging import configure_logging

    configure_logging(json=True, cache=False)
    settings = make_settings(tmp_path)
    secret = resolve_jwt_secret(settings)
    os.chmod(tmp_path / "data" / SECRET_FILE_NAME, 0o640)
    resolve_jwt_secret(settings)

    err = capsys.readouterr().err
    assert "jwt_secret_generated" in err
    assert "jwt_secret_permissions_fixed" in err
    assert secret.decode() not in err
