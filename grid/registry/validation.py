"""Validation of Chinese identifiers (python-stdnum implements the check characters)."""

from __future__ import annotations

from datetime import date

from marshmallow import ValidationError
from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric, uscc


def normalize_id_number(value: str, today: date | None = None) -> str:
    """A 身份证 number (GB 11643), upper-case X, with a valid check character and a
    plausible birth date (not in the future, not before 1890). Raises ValidationError."""
    number = (value or "").strip().upper()
    try:
        number = ric.validate(number)
    except stdnum_errors.InvalidChecksum:
        raise ValidationError("The check character is wrong (GB 11643).") from None
    except stdnum_errors.InvalidComponent:
        raise ValidationError("The birth date or region code in it is not valid.") from None
    except stdnum_errors.ValidationError:
        raise ValidationError("An ID number has 17 digits and a check character.") from None
    born = ric.get_birth_date(number)
    if born > (today or date.today()) or born.year < 1890:
        raise ValidationError("The birth date in it is not plausible.")
    return number


def id_number_facts(number: str) -> tuple[str, date]:
    """Sex (M/F: the 17th digit, odd = male) and birth date derived from an ID number."""
    return ("M" if int(number[16]) % 2 else "F"), ric.get_birth_date(number)


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
