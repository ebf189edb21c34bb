"""Validation of Chinese identifiers (python-stdnum implements the check characters)."""

from __future__ import annotations

from datetime import date

from marshmallow import ValidationError
from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric, uscc

from server.clock import local_today

# Province-level codes of GB/T 2260 (first two digits of the region code); 81/82/83 are the
# residence permits of Hong Kong, Macao and Taiwan residents.
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42,
                        43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83})


def normalize_id_number(value: str, today: date | None = None) -> str:
    """A 身份证 number (GB 11643), upper-case X, with a valid check character and a
    plausible birth date (not in the future, not before 1890). Raises ValidationError.

    The region code is checked at province level only. `ric.validate` also requires the
    county code to have existed in the birth year, but the code is the one where the number
    was issued (or the 15-digit number upgraded in 1999), not where the person was born:
    everyone of 富阳 (330183, a code of 1994–2014) born before 1994 would be refused.
    """
    number = ric.compact(value or "").upper()
    if len(number) != 18 or not number[:17].isdigit():
        raise ValidationError("An ID number has 17 digits and a check character.")
    if number[-1] != ric.calc_check_digit(number):
        raise ValidationError("The check character is wrong (GB 11643).")
    if int(number[:2]) not in _PROVINCES:
        raise ValidationError("The region code in it is not valid.")
    try:
        born = _birth_date(number)
    except ValueError:
        raise ValidationError("The birth date in it is not valid.") from None
    # Beijing's day, not the machine's: until 08:00 a baby born today would be "in the future".
    if born > (today or local_today()) or born.year < 1890:
        raise ValidationError("The birth date in it is not plausible.")
    return number


def id_number_facts(number: str) -> tuple[str, date]:
    """Sex (M/F: the 17th digit, odd = male) and birth date derived from an ID number as
    normalize_id_number returns it."""
    return ("M" if int(number[16]) % 2 else "F"), _birth_date(number)


def _birth_date(number: str) -> date:
    """Digits 7-14 of a compacted ID number as a date (ValueError if none). stdnum's
    get_birth_date compacts the number again, character by character: a fifth of a
    ledger import's CPU when called twice a row."""
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def normalize_uscc(value: str) -> str:
    """A 统一社会信用代码 (GB 32100) with a valid check character."""
    code = (value or "").strip().upper()
    try:
        return uscc.validate(code)
    except stdnum_errors.InvalidChecksum:
        raise ValidationError("The check character is wrong (GB 32100).") from None
    except stdnum_errors.ValidationError:
        raise ValidationError("A USCC has 18 characters from 0-9 and A-Y without I, O, S, V, Z."
                              ) from None
