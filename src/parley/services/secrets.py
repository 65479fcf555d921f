"""Server secrets: the JWT signing secret and the key that encrypts users' provider keys.

Both are resolved once at start-up (from the entry point) and passed down; a bad value
raises ``ConfigurationError`` so the server refuses to start instead of running weakly.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from parley.errors import ConfigurationError
from parley.settings import Settings

MIN_SECRET_BYTES = 32
SECRET_FILE_NAME = "jwt_secret"

_GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# Changing either constant makes every stored provider key unreadable: they are part of the
# key derivation, hence the explicit version.
_ENCRYPTION_INFO = b"parley provider keys v1"
_CONFIGURED_KEY_SALT = b"parley configured encryption key v1"
_JWT_DERIVED_SALT = b"parley jwt-derived encryption key v1"
# A process that loses the creation race may read the file between the winner's create and
# write; it waits this long (in total) for the content to appear.
_RACE_WAIT_S = 2.0
_RACE_POLL_S = 0.05
# Refuse to follow a symlink planted in place of the secret file (where the OS supports it).
_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)

log = structlog.get_logger(__name__)


def resolve_jwt_secret(settings: Settings) -> bytes:
    """The JWT signing secret: configured, or generated once into the data dir (SQLite only)."""
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value().encode("utf-8")
        if len(value) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"PARLEY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                f"(it has {len(value)}); {_GENERATE_HINT}"
            )
        return value
    if not settings.is_sqlite:
        # A generated per-host secret would make tokens issued by one instance invalid on
        # the others, so an external database (= possibly several instances) needs it set.
        raise ConfigurationError(
            "PARLEY_JWT_SECRET must be set when the database is external: every instance "
            "sharing the database must sign and verify tokens with the same secret "
            f"(at least {MIN_SECRET_BYTES} bytes); {_GENERATE_HINT}"
        )
    return _load_or_create_secret_file(settings.data_dir / SECRET_FILE_NAME)


def resolve_encryption_key(settings: Settings, jwt_secret: bytes) -> bytes:
    """The 32-byte key for provider keys at rest: from PARLEY_ENCRYPTION_KEY or the JWT secret.

    When derived from the JWT secret, rotating that secret makes stored provider keys
    unreadable; set PARLEY_ENCRYPTION_KEY to rotate them independently.
    """
    if settings.encryption_key is not None:
        material = settings.encryption_key.get_secret_value().encode("utf-8")
        if len(material) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"PARLEY_ENCRYPTION_KEY must be at least {MIN_SECRET_BYTES} bytes "
                f"(it has {len(material)}); {_GENERATE_HINT}"
            )
        return _derive(material, salt=_CONFIGURED_KEY_SALT)
    # A distinct salt keeps this key unrelated to the signing key it is derived from.
    return _derive(jwt_secret, salt=_JWT_DERIVED_SALT)


def _derive(material: bytes, *, salt: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_ENCRYPTION_INFO)
    return hkdf.derive(material)


def _load_or_create_secret_file(path: Path) -> bytes:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        value = secrets.token_urlsafe(48).encode("ascii")
        try:
            _create_exclusive(path, value)
        except FileExistsError:
            pass  # another process won the race: use its secret, read below
        else:
            log.info("jwt_secret_generated", path=str(path))
            return value
    return _read_secret_file(path)


def _create_exclusive(path: Path, value: bytes) -> None:
    # 0600 from creation: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_NOFOLLOW, 0o600)
    try:
        view = memoryview(value)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        # A truncated secret left behind would stop every later start.
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _read_secret_file(path: Path) -> bytes:
    deadline = time.monotonic() + _RACE_WAIT_S
    while True:
        value = _read_owner_only(path)
        if len(value) >= MIN_SECRET_BYTES:
            return value
        if time.monotonic() >= deadline:
            raise ConfigurationError(
                f"{path} holds fewer than {MIN_SECRET_BYTES} bytes; delete it to generate a "
                "new secret (this signs out everyone) or set PARLEY_JWT_SECRET"
            )
        time.sleep(_RACE_POLL_S)


def _read_owner_only(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the JWT secret file {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"the JWT secret file {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
            log.warning(
                "jwt_secret_permissions_fixed",
                path=str(path),
                old_mode=oct(stat.S_IMODE(info.st_mode)),
                new_mode="0o600",
            )
        chunks: list[bytes] = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    # Tolerate a trailing newline from an editor; the secret itself never has whitespace.
    return b"".join(chunks).strip()
