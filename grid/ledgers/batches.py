"""A batch of an import (一批): rows that passed the checks of their own cells, checked
against the file (duplicates of earlier rows, via temporary tables) and the register
(duplicates of its records: the API's 409), then written with COPY, ids reserved from the
tables' sequences first. The kinds of ledger (grid.ledgers.kinds) say what makes a row a
duplicate and what each writes; grid.ledgers.imports describes the whole import.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from grid.ledgers import columns as c
from grid.ledgers.grids import Grids
from grid.ledgers.report import Report, row_problem
from server.auth.actor import Actor


@dataclass
class Pending:
    """A row that passed the checks of its own cells, waiting for its batch."""

    number: int
    area_id: int
    fields: dict[str, Any]
    key: str | None  # what makes it a duplicate (None: nothing)
    values: dict[str, Any]  # the parsed cells (what the kind needs beyond `fields`)
    line: str  # `fields` of the kind's NAMES as a line of CSV (made by the reading thread)


class Writer:
    """The database side of an import of one kind: checks of a batch, then COPY. Used by
    the writing thread only (see grid.ledgers.imports._Pipeline)."""

    key_label: str  # the duplicate's column, for the report

    def __init__(self, s: Session, actor: Actor, report: Report, grids: Grids,
                 header: c.Header, today: date) -> None:
        self.s, self.actor, self.report, self.grids = s, actor, report, grids
        self.header, self.today = header, today
        self.cur = s.connection().connection.cursor()
        self.cur.execute("CREATE TEMP TABLE IF NOT EXISTS ledger_import_keys "
                         "(key text PRIMARY KEY, row integer NOT NULL) ON COMMIT DROP")
        self.cur.execute("CREATE TEMP TABLE IF NOT EXISTS ledger_import_ids "
                         "(id bigint PRIMARY KEY, row integer NOT NULL) ON COMMIT DROP")
        self.cur.execute("TRUNCATE ledger_import_keys, ledger_import_ids")
        self.sequences: dict[str, str] = {}

    # -- problems

    def reject(self, row: Pending, field_name: str | None, message: str) -> None:
        self.report.add(row_problem(self.header, row.number, field_name, message), invalid=True)

    # -- checks shared by every kind

    key_field: str | None = None
    # Records of the register a batch's keys already name: SELECT key, id, area_id … with
    # %(keys)s (text[]) and the parameters of `register_params`.
    REGISTER_SQL: str

    def register_params(self, batch: list[Pending]) -> dict:
        return {}

    def key_of(self, row: Pending) -> tuple[str | None, str]:
        """(the field, how the report names it) of what makes the row a duplicate."""
        return self.key_field, self.key_label

    def register_message(self, row: Pending, record_id: int, area_id: int) -> str:
        raise NotImplementedError

    def duplicates(self, batch: list[Pending]) -> list[Pending]:
        """Drop (and report) the rows whose key an earlier row of the file had, or a record
        of the register has."""
        first: dict[str, int] = {}
        kept: list[Pending] = []
        for row in batch:
            if row.key is None:
                kept.append(row)
            elif row.key in first:
                field_name, label = self.key_of(row)
                self.reject(row, field_name, f"Same {label} as row {first[row.key]}.")
            else:
                first[row.key] = row.number
                kept.append(row)
        if not first:
            return kept
        in_file = self.seen_before(first)
        registered = self.registered(first, kept, in_file)
        if not in_file and not registered:
            return kept
        out = []
        for row in kept:
            field_name, label = self.key_of(row)
            if row.key in in_file:
                self.reject(row, field_name, f"Same {label} as row {in_file[row.key]}.")
            elif row.key in registered:
                self.reject(row, field_name, self.register_message(row, *registered[row.key]))
            else:
                out.append(row)
        return out

    def seen_before(self, first: dict[str, int]) -> dict[str, int]:
        """{key: row} of the batch's keys that earlier batches had; remembers the others
        (in a temporary table: memory holds one batch). Lookups here and below are
        `= ANY(array)`: index scans, whatever the statistics (a join with the batch could
        pick a full scan of a table that grows with every batch)."""
        numbers = list(first.values())
        self.cur.execute("INSERT INTO ledger_import_keys SELECT * FROM unnest(%s::text[], "
                         "%s::int[]) ON CONFLICT (key) DO NOTHING RETURNING row",
                         (pg_array(first), pg_array(numbers)))
        new = {n for (n,) in self.cur.fetchall()}
        if len(new) == len(numbers):
            return {}
        self.cur.execute("SELECT key, row FROM ledger_import_keys WHERE key = ANY(%s::text[])",
                         (pg_array(k for k, n in first.items() if n not in new),))
        return dict(self.cur.fetchall())

    def registered(self, first: dict[str, int], batch: list[Pending],
                   in_file: dict[str, int]) -> dict[str, tuple[int, int]]:
        """{key: (record id, area id)} of the batch's keys the register already has."""
        self.cur.execute(self.REGISTER_SQL, {"keys": pg_array(first),
                                             **self.register_params(batch)})
        return {key: (record_id, area_id) for key, record_id, area_id in self.cur.fetchall()
                if key in first}

    def existing_message(self, message: str, kind: str, record_id: int, area_id: int) -> str:
        """The API's 409, as a line of the report: the record when in scope, else its grid."""
        name, code, in_scope = self.grids.label(area_id)
        if in_scope:
            return f"{message}: {kind} {record_id} in {name} ({code})."
        return f"{message} in {name} ({code}); ask that grid to move it."

    def sequence(self, table: str) -> str:
        """The sequence of `table`'s ids (its identity column's)."""
        if table not in self.sequences:
            self.cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,))
            self.sequences[table] = self.cur.fetchone()[0]
        return self.sequences[table]

    def reserve(self, table: str, n: int) -> list[int]:
        """n ids of `table`, taken from its sequence (so that rows can point at them)."""
        self.cur.execute("SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)",
                         (self.sequence(table), n))
        return self.cur.fetchone()[0]

    def copy(self, table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]],
             count: bool = True) -> int:
        """COPY rows in (CSV: an unquoted empty field is NULL; no value is an empty string)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        n = 0
        for row in rows:
            writer.writerow(row)
            n += 1
        if n:
            data = buf.getvalue().encode()
            # One read of the whole buffer: each read of copy_expert takes the GIL, which
            # the reading thread holds for up to a switch interval (5 ms) at a time.
            self.cur.copy_expert(f"COPY {table} ({', '.join(cols)}) FROM STDIN "
                                 "WITH (FORMAT csv)", io.BytesIO(data), size=len(data))
            if count:
                self.report.wrote(table, n)
        return n

    def copy_records(self, table: str, rows: list[Pending], ids: Iterable[int],
                     extra: Sequence[str] = (), tails: Iterable[str] | None = None) -> None:
        """COPY register rows: what every record has, then the row's line of NAMES (CSV made
        by the reading thread, which has time to spare), then `extra` columns (`tails`)."""
        user = self.actor.user_id
        head = f",import,{'' if user is None else user},{'' if user is None else user},f,1,"
        tails = tails if tails is not None else ("" for _ in rows)
        data = "".join(f"{i},{r.area_id}{head}{r.line}{t}\n"
                       for r, i, t in zip(rows, ids, tails, strict=False)).encode()
        cols = ", ".join((*self.RECORD_COLUMNS, *self.NAMES, *extra))
        self.cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)",
                             io.BytesIO(data), size=len(data))
        self.report.wrote(table, len(rows))

    RECORD_COLUMNS = ("id", "area_id", "source", "created_by", "updated_by", "needs_review",
                      "version")
    NAMES: tuple[str, ...] = ()

    def accept(self, rows: list[Pending]) -> None:
        with self.report.lock:
            self.report.valid += len(rows)
            self.report.grids.update(r.area_id for r in rows)

    def flush(self, batch: list[Pending]) -> None:
        raise NotImplementedError


def pg_array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (cast it in the SQL): a third of the cost of psycopg2's
    ARRAY[…] of a list, for a thousand keys a batch."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"
