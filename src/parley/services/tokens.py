"""JWT access tokens (HS256) and opaque secrets (API keys, refresh tokens)."""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from parley.errors import Unauthenticated

ISSUER = "parley"
ALGORITHM = "HS256"
_ALNUM = string.ascii_letters + string.digits
KEY_PREFIX = "pk_"
REFRESH_PREFIX = "prt_"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified claims Parley puts in an access token."""

    user_id: str
    family_id: str
    role: str
    expires_at: datetime


class TokenSigner:
    """Issues and verifies access tokens with one shared secret.

    Verification pins the algorithm (``alg: none`` and asymmetric-key confusion are
    refused), requires ``exp``/``iat``/``sub``/``fam`` and checks issuer and type.
    """

    def __init__(self, secret: bytes, *, ttl_s: int) -> None:
        self._secret = secret
        self._ttl = ttl_s

    def issue(self, *, user_id: str, family_id: str, role: str) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds."""
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "typ": "access",
            "sub": user_id,
            "fam": family_id,
            "role": role,
            "iat": now,
            "exp": now + timedelta(seconds=self._ttl),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl

    def verify(self, token: str) -> AccessClaims:
        """Verified claims, or ``Unauthenticated`` for anything wrong with the token."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "fam", "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the access token has expired; refresh it") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid access token") from exc
        if claims.get("typ") != "access" or not all(
            isinstance(claims.get(k), str) for k in ("sub", "fam", "role")
        ):
            raise Unauthenticated("invalid access token")
        return AccessClaims(
            user_id=claims["sub"],
            family_id=claims["fam"],
            role=claims["role"],
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


def digest(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret (API key, refresh token).

    A fast hash is right here: these secrets are 256-bit random, not guessable passwords,
    and a lookup must stay cheap.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(public prefix, full key). The key is ``pk_<prefix>_<secret>``."""
    prefix = "".join(secrets.choice(_ALNUM) for _ in range(8))
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix_of(key: str) -> str | None:
    """The public prefix of something shaped like an API key, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    prefix, sep, rest = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 8 or not (prefix.isascii() and prefix.isalnum()) or len(rest) < 20:
        return None
    return prefix


def new_refresh_token() -> str:
    """A fresh opaque refresh token."""
    return f"{REFRESH_PREFIX}{secrets.token_urlsafe(32)}"
