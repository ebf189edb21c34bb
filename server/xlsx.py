"""Writing spreadsheets of user data safely: every export's cells go through here.

A cell value from user data that starts with `=`, `+`, `-` or `@` is a formula to Excel,
LibreOffice and WPS (a person named `=HYPERLINK("http://…","点我")` or `=cmd|' /C calc'!A0`
becomes a live link or a DDE command in the ledger someone opens); a leading tab or carriage
return hides such a value from a quick look. As OWASP recommends ("CSV/formula injection"),
such text is prefixed with a single quote, and every text cell is written with the string
data type, so that no value becomes a formula whatever the reader does with it. Characters
XML 1.0 cannot hold (control characters other than tab and line breaks), on which openpyxl
would raise, are dropped.

Use `safe_cell` (one cell, e.g. with a style) or `append_row` (a row of values) with
openpyxl's write-only worksheets; numbers, dates and booleans keep their types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text value as it may be written (quoted when a spreadsheet would read a formula,
    illegal characters dropped); anything else unchanged."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def safe_cell(sheet: Any, value: Any, **style: Any) -> WriteOnlyCell:
    """A write-only cell of `value` (neutralised; text typed as text), with `style`
    attributes (font=…, number_format=…) set."""
    cell = WriteOnlyCell(sheet, value=neutralise(value))
    if isinstance(cell.value, str):
        cell.data_type = "s"  # never "f", whatever openpyxl guessed
    for name, attr in style.items():
        setattr(cell, name, attr)
    return cell


def append_row(sheet: Any, values: Iterable[Any]) -> None:
    """Append a row of user data to a write-only worksheet."""
    sheet.append([safe_cell(sheet, v) for v in values])
