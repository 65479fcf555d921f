"""Authenticated encryption for small secrets stored in the database (users' provider keys)."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from parley.errors import ParleyError

_VERSION = "v1:"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretDecryptError(ParleyError):
    """A stored secret could not be decrypted (wrong key, wrong owner, or altered data)."""

    code = "secret_unreadable"


class SecretBox:
    """AES-256-GCM authenticated encryption for small secrets at rest."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        """Use ``key`` (exactly 32 bytes, e.g. from ``resolve_encryption_key``)."""
        if len(key) != _KEY_BYTES:
            raise ValueError(f"SecretBox needs a {_KEY_BYTES}-byte key, got {len(key)} bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` bound to ``context`` (e.g. ``f"{user_id}:{provider}"``).

        The context is authenticated but not stored, so a ciphertext copied to another
        row or user fails to decrypt there.
        """
        # A random 96-bit nonce per message: safe for far more secrets than we will store.
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str, *, context: str) -> str:
        """Decrypt a value from :meth:`encrypt`; raise ``SecretDecryptError`` if it cannot be."""
        if not token.startswith(_VERSION):
            raise SecretDecryptError("stored secret has an unknown format")
        try:
            raw = base64.urlsafe_b64decode(token[len(_VERSION) :].encode("ascii"))
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise SecretDecryptError("stored secret is not valid base64") from exc
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise SecretDecryptError("stored secret is truncated")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, sealed, context.encode("utf-8"))
        except InvalidTag as exc:
            raise SecretDecryptError(
                "stored secret cannot be decrypted: the encryption key changed, it belongs "
                "to another record, or it was altered"
            ) from exc
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError as exc:  # authentic but not written by encrypt()
            raise SecretDecryptError("stored secret is not text") from exc
