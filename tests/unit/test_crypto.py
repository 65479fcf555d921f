"""SecretBox: AES-256-GCM for provider keys at rest, bound to the row that owns them."""

from __future__ import annotations

import base64

import pytest

from parley.errors import ParleyError
from parley.services.crypto import SecretBox, SecretDecryptError

KEY = bytes(range(32))
PLAINTEXT = "sk-live-0123456789abcdefghij"
CONTEXT = "user-1:openai"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(KEY)


def test_round_trip(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, context=CONTEXT)
    assert token.startswith("v1:")
    assert box.decrypt(token, context=CONTEXT) == PLAINTEXT


def test_round_trip_of_unicode_and_empty_text(box: SecretBox) -> None:
    for text in ("", "clé secrète ✓"):
        assert box.decrypt(box.encrypt(text, context=CONTEXT), context=CONTEXT) == text


def test_another_context_cannot_decrypt(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, context=CONTEXT)
    with pytest.raises(SecretDecryptError):
        box.decrypt(token, context="user-2:openai")
    with pytest.raises(SecretDecryptError):
        box.decrypt(token, context="user-1:anthropic")


def test_another_key_cannot_decrypt(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, context=CONTEXT)
    with pytest.raises(SecretDecryptError):
        SecretBox(bytes(32)).decrypt(token, context=CONTEXT)


def test_tampered_ciphertext_is_rejected(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, context=CONTEXT)
    raw = bytearray(base64.urlsafe_b64decode(token[3:]))
    for index in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        changed = bytearray(raw)
        changed[index] ^= 0x01
        forged = "v1:" + base64.urlsafe_b64encode(bytes(changed)).decode()
        with pytest.raises(SecretDecryptError):
            box.decrypt(forged, context=CONTEXT)


@pytest.mark.parametrize("token", ["", "v2:abcd", "v1:!!!", "v1:" + "A" * 8, "plain"])
def test_malformed_values_are_rejected(box: SecretBox, token: str) -> None:
    with pytest.raises(SecretDecryptError) as info:
        box.decrypt(token, context=CONTEXT)
    assert isinstance(info.value, ParleyError)
    assert info.value.code == "secret_unreadable"


def test_each_encryption_uses_a_fresh_nonce(box: SecretBox) -> None:
    first = box.encrypt(PLAINTEXT, context=CONTEXT)
    second = box.encrypt(PLAINTEXT, context=CONTEXT)
    assert first != second
    assert base64.urlsafe_b64decode(first[3:])[:12] != base64.urlsafe_b64decode(second[3:])[:12]


def test_ciphertext_does_not_reveal_the_plaintext(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, context=CONTEXT)
    assert PLAINTEXT not in token
    assert PLAINTEXT[-8:] not in token
    assert PLAINTEXT.encode() not in base64.urlsafe_b64decode(token[3:])


def test_the_key_must_be_32_bytes() -> None:
    for size in (0, 16, 24, 31, 33):
        with pytest.raises(ValueError):
            SecretBox(bytes(size))
