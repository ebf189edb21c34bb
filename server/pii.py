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
from datetime import date

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


# --- masking: what an actor without person:read_pii sees ------------------------------------
#
# The rule (ARCHITECTURE §3): nothing such an actor receives, in any response, list, export,
# tile or profile, combined, narrows an ID number or a phone to fewer than 10,000 candidates.
# Every place that shows a masked value takes it from these functions, so no second mask
# form shows other digits of the same number.

MIN_CANDIDATES = 10_000
AGE_BAND_YEARS = 10


def mask_phone(phone: str | None) -> str | None:
    """138****5678: the first 3 and last 4 digits of a mainland mobile (`^1[3-9]\\d{9}$`).

    Candidates: the 4 hidden digits are free, so 10^4 = 10,000 numbers fit the mask, the
    least the rule allows (it forbids fewer than 10,000). Nothing else shown anywhere carries
    a digit of a phone (no second mask form), so nothing narrows it further.
    Other lengths: a number shorter than 8 is hidden whole."""
    if not phone:
        return phone
    return phone[:3] + "*" * max(0, len(phone) - 7) + phone[-4:] if len(phone) > 7 else "****"


def mask_id_number(id_number: str | None) -> str | None:
    """330183************: the region code (6 digits) and nothing else.

    An 18-character number is region (6) + birth date (8) + sequence (3) + check (1); the
    check is computed from the other 17, and the sequence's last digit is odd for men, even
    for women. An actor without person:read_pii sees this mask, the person's sex and an
    age band (`age_band`, never the birth date). Counting the numbers that fit, at worst:
    - region: shown (1 value);
    - birth date: the band is 10 birth years wide; it moves on 1 January only (it is
      counted from the birth year), so watching it over the years gives the birth year
      at best: 365 days;
    - sequence: 1,000 values, halved by the sex: 500;
    - check: computed, no choice left (1).
    So ≥ 365 × 500 = 182,500 candidates (≥ 1.8 million before the year is learnt), over the
    10,000 of the rule. Showing the last four (the old `330183********2970`) would leave
    365 at worst, and 1 next to the birth date, which is why they are hidden too.
    A number of another length keeps at most its first 6 characters."""
    if not id_number:
        return id_number
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 6)


def age_band(birth_date: date | None, year: int) -> str | None:
    """The 10-year band of the age a person reaches in `year` (year − birth year):
    "0-9", "10-19", …, "90-99", "100+". Counted from the birth year, not the birthday, so
    it changes on 1 January and never tells the birth date (see mask_id_number)."""
    if birth_date is None:
        return None
    age = max(0, year - birth_date.year)
    low = min(age // AGE_BAND_YEARS * AGE_BAND_YEARS, 100)
    return "100+" if low >= 100 else f"{low}-{low + AGE_BAND_YEARS - 1}"
