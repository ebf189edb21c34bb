"""An import's report (导入报告): the rows read, valid and invalid, what was written, and the
problems, each named by the file's own header and cell ("C5") so that a community can fix its
spreadsheet. Both the reading and the writing thread of an import add to it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from openpyxl.utils import get_column_letter

from grid.ledgers import columns as c

MAX_PROBLEMS = 1000  # problems listed in a report (the count goes on)


@dataclass
class Problem:
    row: int
    column: str | None  # the header as the file has it
    message: str
    field: str | None = None
    cell: str | None = None  # "C5"

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Report:
    kind: str
    dry_run: bool
    skip_invalid: bool
    format: str | None = None
    encoding: str | None = None
    sheet: str | None = None
    header_row: int | None = None
    columns: dict[str, str] = field(default_factory=dict)  # header → field
    ignored_columns: list[str] = field(default_factory=list)
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    written: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    stopped_at_row: int | None = None
    grids: set[int] = field(default_factory=set)
    # The reading thread and the writing thread both report problems.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, problem: Problem, invalid: bool = False) -> None:
        with self.lock:
            self.problems_total += 1
            self.invalid += invalid
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(problem)

    def wrote(self, table: str, n: int) -> None:
        with self.lock:
            self.written[table] = self.written.get(table, 0) + n

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "dry_run": self.dry_run, "skip_invalid": self.skip_invalid,
            "format": self.format, "encoding": self.encoding, "sheet": self.sheet,
            "header_row": self.header_row, "columns": self.columns,
            "ignored_columns": self.ignored_columns, "rows": self.rows, "valid": self.valid,
            "invalid": self.invalid, "written": self.written,
            "errors": [p.as_dict() for p in sorted(self.problems, key=lambda p: p.row)],
            "errors_total": self.problems_total,
            "errors_truncated": self.problems_total > len(self.problems),
            "stopped_at_row": self.stopped_at_row,
        }


def row_problem(header: c.Header, number: int, field_name: str | None, message: str) -> Problem:
    """A problem of a row, named by the file's header and the cell ("C5")."""
    position = header.positions.get(field_name or "")
    if position is None:
        return Problem(number, None, message, field_name)
    return Problem(number, position[1], message, field_name,
                   f"{get_column_letter(position[0] + 1)}{number}")
