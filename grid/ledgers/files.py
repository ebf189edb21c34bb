"""Reading an uploaded ledger row by row, whatever the community saved it as.

The format is decided by content, not by the file name:
- .xlsx: a zip holding `xl/workbook.xml`; read with openpyxl in read-only mode (the sheet's
  XML is parsed as it is iterated, never loaded whole);
- CSV: UTF-8 with or without BOM, GB18030 (what Chinese Excel writes as "CSV"; a superset
  of GBK/GB2312), or UTF-16 with BOM (Excel's "Unicode text", tab-separated); the
  delimiter (comma, tab, semicolon) is taken from the first line. Read through a text
  wrapper and `csv.reader`: one record at a time.
- anything else (an old .xls, a .docx, an image…) is refused with 415.

Rows are numbered as the user sees them in Excel: the first row of the sheet (or the first
record of the CSV) is row 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from server.errors import DomainError

SAMPLE_BYTES = 1 << 20  # what the encoding is guessed from
csv.field_size_limit(1 << 20)  # one cell up to 1 MiB (the default 128 KiB is a 500 waiting)


class UnsupportedFile(DomainError):
    """415: the upload is neither an .xlsx workbook nor CSV text."""

    status = 415


class UnreadableFile(Exception):
    """The file broke while being read (bad bytes for its encoding, a corrupt workbook)."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.message, self.row = message, row


@dataclass
class Table:
    format: str  # "xlsx" | "csv"
    encoding: str | None  # CSV only
    sheets: Iterator[tuple[str | None, Iterator[tuple[int, tuple]]]]  # (name, numbered rows)


def sniff(stream: IO[bytes]) -> tuple[str, str | None]:
    """("xlsx", None) or ("csv", encoding); 415 for anything else. Leaves the stream at 0."""
    stream.seek(0)
    head = stream.read(SAMPLE_BYTES)
    stream.seek(0)
    if not head:
        raise UnsupportedFile("The file is empty.")
    if head.startswith(b"PK\x03\x04"):
        try:
            names = set(zipfile.ZipFile(stream).namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            raise UnsupportedFile("A zip archive that cannot be opened.") from None
        finally:
            stream.seek(0)
        if "xl/workbook.xml" not in names:
            raise UnsupportedFile("A zip archive but not an Excel workbook (.xlsx).")
        return "xlsx", None
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnsupportedFile("An old Excel (.xls) or other Office file: save it as .xlsx or CSV.")
    if head.startswith(codecs.BOM_UTF8):
        return "csv", "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "csv", "utf-16"
    if b"\x00" in head:
        raise UnsupportedFile("Not a spreadsheet: send an .xlsx workbook or a CSV file.")
    final = len(head) < SAMPLE_BYTES  # a longer file may end the sample mid-character
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=final)
        except UnicodeDecodeError:
            continue
        return "csv", encoding
    raise UnsupportedFile("CSV text must be UTF-8 or GB18030 (GBK).")


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(text: IO[str], encoding: str) -> Iterator[tuple[int, tuple]]:
    number = 0
    try:
        first = text.readline()
        reader = csv.reader(itertools.chain([first], text), delimiter=_delimiter(first))
        for number, row in enumerate(reader, 1):
            yield number, tuple(row)
    except UnicodeDecodeError:
        raise UnreadableFile(f"The file is not valid {encoding} text after row {number}.",
                             number + 1) from None
    except csv.Error as exc:
        raise UnreadableFile(f"The CSV breaks after row {number}: {exc}.", number + 1) from None


def _xlsx_sheets(stream: IO[bytes]) -> Iterator[tuple[str | None, Iterator[tuple[int, tuple]]]]:
    import openpyxl  # only when a workbook is sent

    try:
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    except Exception:  # openpyxl raises KeyError, ValueError, XML errors… on corrupt files
        raise UnsupportedFile("The workbook cannot be read (corrupt or not an .xlsx).") from None
    try:
        for sheet in workbook.worksheets:
            if hasattr(sheet, "iter_rows"):
                yield sheet.title, _sheet_rows(sheet)
    finally:
        workbook.close()


def _sheet_rows(sheet: Any) -> Iterator[tuple[int, tuple]]:
    number = 0
    try:
        # read-only sheets yield every row from 1, empty ones included: enumerate is the row
        for number, row in enumerate(sheet.iter_rows(values_only=True), 1):
            yield number, row
    except Exception:
        raise UnreadableFile(f"The workbook cannot be read after row {number}.",
                             number + 1) from None


@contextmanager
def open_table(stream: IO[bytes]) -> Iterator[Table]:
    """The sheets of an upload (a workbook's worksheets in order; a CSV is one sheet)."""
    kind, encoding = sniff(stream)
    if kind == "xlsx":
        sheets = _xlsx_sheets(stream)
        try:
            yield Table("xlsx", None, sheets)
        finally:
            sheets.close()  # closes the workbook
        return
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    try:
        yield Table("csv", encoding, iter([(None, _csv_rows(text, encoding))]))
    finally:
        text.detach()  # the upload's stream is the caller's to close
