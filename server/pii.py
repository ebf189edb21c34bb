"""Personal data at rest: AES-256-GCM encryption, an HMAC blind index, and masking.

Ciphertexts are text `keyid:base64(nonce || ciphertext+tag)`, so keys can rotate: the first
configured key encrypts, any configured key decrypts. The field name is the AEAD associated
data, so a ciphertext copied into another column does not decrypt. The blind index is
HMAC-SHA256 of the normalized value: exact lookup and de-duplication without decrypting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_keys: dict[str, AESGCM] = {}
_write_key_id: str = ""
_blind_key: bytes = b""


def configure(pii_keys: str, blind_index_key: str) -> None:
    """Load keys from the config strings ("k1:base64,k0:base64" and one base64 key)."""
    global _write_key_id, _blind_key
    _keys.clear()
    for i, item in enumerate(k for k in pii_keys.split(",") if k.strip()):
        key_id, _, b64 = item.strip().partition(":")
        raw = base64.b64decode(b64)
        if len(raw) != 32:
            raise ValueError(f"PII key {key_id!r} must be 32 bytes (AES-256)")
        _keys[key_id] = AESGCM(raw)
        if i == 0:
            _write_key_id = key_id
    _blind_key = base64.b64decode(blind_index_key)
    if len(_blind_key) < 32:
        raise ValueError("BLIND_INDEX_KEY must be at least 32 bytes")


def encrypt(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    nonce = os.urandom(12)
    ct = _keys[_write_key_id].encrypt(nonce, value.encode(), field.encode())
    return f"{_write_key_id}:{base64.b64encode(nonce + ct).decode()}"


def decrypt(token: str | None, field: str) -> str | None:
    if token is None:
        return None
    key_id, _, b64 = token.partition(":")
    raw = base64.b64decode(b64)
    return _keys[key_id].decrypt(raw[:12], raw[12:], field.encode()).decode()


def blind_index(value: str | None, field: str) -> str | None:
    """Deterministic keyed hash for equality lookups; the field name separates domains."""
    if value is None:
        return None
    msg = f"{field}\x00{value.strip().upper()}".encode()
    return hmac.new(_blind_key, msg, hashlib.sha256).hexdigest()


def mask_phone(phone: str | None) -> str | None:
    """138****5678"""
    if not phone:
        return phone
    return phone[:3] + "*" * max(0, len(phone) - 7) + phone[-4:] if len(phone) > 7 else "****"


def mask_id_number(id_number: str | None) -> str | None:
    """330183********1234 (region code and last four visible, as ID photocopies are marked)."""
    if not id_number:
        return id_number
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]
