"""Reading an uploaded ledger row by row, whatever the community saved it as.

The format is decided by content, not by the file name:
- .xlsx: a zip holding `xl/workbook.xml`; read with openpyxl in read-only mode (the sheet's
  XML is parsed as it is iterated, never loaded whole);
- CSV: UTF-8 with or without BOM, GB18030 (what Chinese Excel writes as "CSV"; a superset
  of GBK/GB2312), or UTF-16 with BOM (Excel's "Unicode text", tab-separated); the
  delimiter (comma, tab, semicolon) is taken from the first line. Read through a text
  wrapper and `csv.reader`: one record at a time.
- anything else (an old .xls, a .docx, an image…) is refused with 415.

Bounded before anything is parsed (`inspect`, at upload and again when the job starts):
an .xlsx's declared sizes (the zip's central directory: zipfile never unpacks more than a
part declares, so these hold) — the sum of the parts, the ratio of any large part to its
compressed size (a zip bomb: 300 MB of sheet XML in 300 KB), the shared strings (openpyxl
keeps them all in memory, even read-only) — and its sheets' declared rows (the
`<dimension>` at the top of the sheet XML); a CSV's lines. Then, while reading, rows past
the limit stop the import (a declaration may lie) and cells past `max_columns` are not
read (a cell in column XFD would make every row 16,384 wide). 413 for each.

Rows are numbered as the user sees them in Excel: the first row of the sheet (or the first
record of the CSV) is row 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import IO, Any

from server.errors import DomainError
from server.storage.images import PayloadTooLarge

SAMPLE_BYTES = 1 << 20  # what the encoding is guessed from
csv.field_size_limit(1 << 20)  # one cell up to 1 MiB (the default 128 KiB is a 500 waiting)
HEADER_SEARCH_ROWS = 10  # a title row or two may sit above the header
MIB = 1 << 20
# <dimension ref="A1:L200001"/>: near the top of a sheet's XML, before <sheetData>
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"[A-Z]*\d*:?[A-Z]*(\d+)\"")


@dataclass(frozen=True)
class Limits:
    """What one ledger file may hold (settings LEDGER_*, server/config.py)."""

    max_rows: int = 200_000  # data rows
    max_columns: int = 200
    max_uncompressed: int = 256 * MIB  # .xlsx: all parts, as declared
    max_ratio: int = 100  # .xlsx: uncompressed ÷ compressed, for parts over 1 MiB
    max_shared_strings: int = 64 * MIB  # .xlsx: xl/sharedStrings.xml, held in memory

    @property
    def max_file_rows(self) -> int:
        """Rows of the sheet or records of the CSV: the data, a header and title rows."""
        return self.max_rows + HEADER_SEARCH_ROWS

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(max_rows=config["LEDGER_MAX_ROWS"], max_columns=config["LEDGER_MAX_COLUMNS"],
                   max_uncompressed=config["LEDGER_MAX_UNCOMPRESSED_BYTES"],
                   max_ratio=config["LEDGER_MAX_COMPRESSION_RATIO"])

    def as_dict(self) -> dict:
        return asdict(self)


def _size(n: float) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= MIB else f"{n / 1024:,.0f} KiB"


def _too_large(message: str) -> PayloadTooLarge:
    return PayloadTooLarge(message, errors={"files": {"file": [message]}})


def too_many_rows(limits: Limits, rows: int | None = None) -> PayloadTooLarge:
    said = f" has {rows:,} rows;" if rows is not None else " has more rows than that:"
    return _too_large(f"The ledger{said} at most {limits.max_rows:,} rows an import: split "
                      "the file.")


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
    rows: int | None = None  # as `inspect` found them (for progress)


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


@dataclass(frozen=True)
class Inspected:
    format: str  # "xlsx" | "csv"
    encoding: str | None
    rows: int | None  # rows of the file as declared (a sheet's dimension) or counted (CSV)


def inspect(stream: IO[bytes], limits: Limits) -> Inspected:
    """The file's format and size, checked against `limits` before it is parsed: 415 for
    a file that is not a ledger, 413 beyond a limit. Leaves the stream at 0."""
    kind, encoding = sniff(stream)
    try:
        rows = _xlsx_rows(stream, limits) if kind == "xlsx" else _csv_lines(stream)
    finally:
        stream.seek(0)
    if rows is not None and rows > limits.max_file_rows:
        raise too_many_rows(limits, rows)
    return Inspected(kind, encoding, rows)


MAX_PARTS = 10_000  # an .xlsx of a few sheets has a dozen


def _xlsx_rows(stream: IO[bytes], limits: Limits) -> int | None:
    """Check the archive's declared sizes; the most rows a worksheet declares (None when
    none says)."""
    try:
        archive = zipfile.ZipFile(stream)
        parts = archive.infolist()
        if len(parts) > MAX_PARTS:
            raise _too_large(f"The workbook has {len(parts):,} parts; at most {MAX_PARTS:,}.")
        total = sum(p.file_size for p in parts)
        if total > limits.max_uncompressed:
            raise _too_large(f"The workbook unpacks to {_size(total)}; at most "
                             f"{_size(limits.max_uncompressed)}.")
        for part in parts:
            ratio = part.file_size / max(part.compress_size, 1)
            if part.file_size > MIB and ratio > limits.max_ratio:
                raise _too_large(f"{part.filename} unpacks to {ratio:,.0f} times its size in "
                                 f"the file (at most {limits.max_ratio}): not a ledger a "
                                 "spreadsheet program saves.")
            if part.filename == "xl/sharedStrings.xml" and (
                    part.file_size > limits.max_shared_strings):
                raise _too_large(f"The workbook's text cells unpack to "
                                 f"{_size(part.file_size)}; at most "
                                 f"{_size(limits.max_shared_strings)}.")
        sheets = sorted((p for p in parts if p.filename.startswith("xl/worksheets/")
                         and p.filename.endswith(".xml")), key=lambda p: p.filename)
        declared = None
        for part in sheets:
            with archive.open(part) as fh:
                head = fh.read(64 * 1024)  # the dimension comes before the rows
            found = _DIMENSION.search(head)
            if found:
                declared = max(declared or 0, int(found.group(1)))
        return declared
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError,
            NotImplementedError, RuntimeError):  # RuntimeError: an encrypted part
        raise UnsupportedFile("The workbook cannot be read (corrupt or not an .xlsx).") from None


def _csv_lines(stream: IO[bytes]) -> int:
    """Lines of the file (a cell holding a line break counts twice: an upper bound)."""
    lines, last = 0, b""
    while chunk := stream.read(MIB):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    return lines + (last not in (b"", b"\n"))


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(text: IO[str], encoding: str, limits: Limits) -> Iterator[tuple[int, tuple]]:
    number = 0
    try:
        first = text.readline()
        reader = csv.reader(itertools.chain([first], text), delimiter=_delimiter(first))
        for number, row in enumerate(reader, 1):
            if number > limits.max_file_rows:
                raise too_many_rows(limits)
            yield number, tuple(row[:limits.max_columns])
    except UnicodeDecodeError:
        raise UnreadableFile(f"The file is not valid {encoding} text after row {number}.",
                             number + 1) from None
    except csv.Error as exc:
        raise UnreadableFile(f"The CSV breaks after row {number}: {exc}.", number + 1) from None


def _xlsx_sheets(stream: IO[bytes], limits: Limits
                 ) -> Iterator[tuple[str | None, Iterator[tuple[int, tuple]]]]:
    import openpyxl  # only when a workbook is sent

    try:
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    except Exception:  # openpyxl raises KeyError, ValueError, XML errors… on corrupt files
        raise UnsupportedFile("The workbook cannot be read (corrupt or not an .xlsx).") from None
    try:
        for sheet in workbook.worksheets:
            if hasattr(sheet, "iter_rows"):
                yield sheet.title, _sheet_rows(sheet, limits)
    finally:
        workbook.close()


def _sheet_rows(sheet: Any, limits: Limits) -> Iterator[tuple[int, tuple]]:
    number = 0
    try:
        # Read-only sheets yield every row from 1, empty ones included: enumerate is the row.
        # Without max_row openpyxl stops at the sheet's declared dimension, which may be
        # wrong (rows past it were silently lost); with it, the limit ends the reading.
        for number, row in enumerate(sheet.iter_rows(
                values_only=True, max_col=limits.max_columns,
                max_row=limits.max_file_rows + 1), 1):
            if number > limits.max_file_rows:
                raise too_many_rows(limits)
            yield number, row
    except PayloadTooLarge:
        raise
    except Exception:
        raise UnreadableFile(f"The workbook cannot be read after row {number}.",
                             number + 1) from None


@contextmanager
def open_table(stream: IO[bytes], limits: Limits) -> Iterator[Table]:
    """The sheets of an upload (a workbook's worksheets in order; a CSV is one sheet),
    checked by `inspect` first."""
    found = inspect(stream, limits)
    kind, encoding = found.format, found.encoding
    if kind == "xlsx":
        sheets = _xlsx_sheets(stream, limits)
        try:
            yield Table("xlsx", None, sheets, found.rows)
        finally:
            sheets.close()  # closes the workbook
        return
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    try:
        yield Table("csv", encoding, iter([(None, _csv_rows(text, encoding, limits))]),
                    found.rows)
    finally:
        text.detach()  # the upload's stream is the caller's to close
