"""Importing a community's ledger into the register, and exporting a grid's ledger.

Import (`submit_import`, then `import_ledger` in the worker)
------------------------------------------------------------
An import is a background job (server/jobs.py): `submit_import` checks the permission, the
grid and the file's declared size (grid.ledgers.files.inspect: rows, an .xlsx's unpacked
size and compression ratio; 413/415 at once), stores the upload in the blob store and
queues a job ("ledger_import"); the request answers 202 with the job. The worker runs
`import_ledger` as the job's creator, reporting rows read as progress; the report is the
job's result (or, for rows with problems, its 422 error with the report).

The upload is read one row at a time (grid.ledgers.files) and each row is checked by the
register's own rules (grid.ledgers.columns); rows that pass are collected in batches of
BATCH_ROWS, and each batch is checked against the file and the register and written:

1. duplicates within the file: the batch's keys (a USCC, a household's 户号 in its grid, a
   building's name and address in its grid) go into a temporary table of the transaction;
   a key already there names the row it came from. A person's key is the blind index of
   the ID number, which the register's unique index already covers: earlier rows of the
   file are written by then, so the lookup of step 2 finds them, and a temporary table of
   (person id, row) names the row;
2. duplicates against the register: one query per batch (the API answers 409 to these; an
   import reports them with the record, or only its grid when outside the importer's scope);
3. persons with a 户号 join the household of that number in their grid, which is created
   when missing (type from the ledger's 户类型, else registered); a 户主 becomes its head;
4. the rows are written with COPY, ids reserved from the tables' sequences first so that
   household stays, tags and heads can point at them. Triggers, constraints and unique
   indexes apply as to any insert.

Memory holds one batch (plus small caches of grids and areas), never the file: the upload
is on disk (werkzeug spools it), and the keys seen so far are in PostgreSQL.

All or nothing: a problem in any row and nothing is written (422 with the report), unless
`skip_invalid`, which writes the good rows and reports the others. `dry_run` reports what
would happen and writes nothing. The import is one transaction, serialized with other
imports by an advisory lock (so that two imports do not both create a household or see the
same key as new), with one audit row carrying the counts. Records get source="import".

Not done per row, on purpose: an audit row (a history entry "person_created") for each
record, and a client UUID (a re-sent file is harmless anyway: its rows are duplicates).

Export (`export_ledger`)
------------------------
The records of an area's subtree within the actor's scope as an .xlsx with the headers
imports accept, personal data as masked as in API responses (the stored masked copies: no
decryption), key-person groups only for roles that may see them; every cell written through
server.xlsx (text stays text: no formula from a name like "=HYPERLINK(…)"). Rows are read with a
server-side cursor and written by openpyxl in write-only mode to a temporary file: memory
stays bounded whatever the size of the area. Audited (who, which area, how many rows).
"""

from __future__ import annotations

import csv
import io
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

import sqlalchemy as sa
from openpyxl.utils import get_column_letter
from psycopg2 import errors as pg_errors
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, AreaLevel
from grid.ledgers import columns as c
from grid.ledgers import files
from grid.registry import models as m
from server import audit, jobs, pii
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import Conflict, Invalid, field_errors

BATCH_ROWS = 1000
MAX_PROBLEMS = 1000  # problems listed in a report (the count goes on)
HEADER_SEARCH_ROWS = files.HEADER_SEARCH_ROWS
ImportLimits = files.Limits
JOB_KIND = "ledger_import"
_LOCK = "grid.ledgers.import"



# --- the report ----------------------------------------------------------------------------


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


def _problem(header: c.Header, number: int, field_name: str | None, message: str) -> Problem:
    """A problem of a row, named by the file's header and the cell ("C5")."""
    position = header.positions.get(field_name or "")
    if position is None:
        return Problem(number, None, message, field_name)
    return Problem(number, position[1], message, field_name,
                   f"{get_column_letter(position[0] + 1)}{number}")


def _file_error(report: Report, row: int, message: str) -> Invalid:
    report.add(Problem(row, None, message))
    return Invalid({"files": {"file": [message]}}, message=message, report=report.as_dict())


# --- grids and areas -----------------------------------------------------------------------


class _Grids:
    """The areas in the actor's scope, read once (a district has a few thousand): grid codes
    of the file resolve without a query, in the reading thread. Labels of other areas (for
    duplicates outside the scope) are read when needed, by the writing thread."""

    def __init__(self, s: Session, actor: Actor) -> None:
        self.s, self.actor = s, actor
        grid_rank = sa.select(AreaLevel.rank).where(AreaLevel.key == "grid").scalar_subquery()
        self.by_code: dict[str, int | str] = {}  # id, or why not
        self.labels: dict[int, tuple[str, str, bool]] = {}  # area id → name, code, in scope
        for area in s.execute(
                sa.select(Area.id, Area.code, Area.name, Area.level,
                          (AreaLevel.rank >= grid_rank).label("is_grid"))
                .join(AreaLevel, AreaLevel.key == Area.level)
                .where(areas.in_scope(Area.id, actor))):
            self.labels[area.id] = (area.name, area.code, True)
            self.by_code[area.code] = area.id if area.is_grid else (
                f"{area.name} ({area.code}) is a {area.level}, not a grid.")

    def by_id(self, area_id: int) -> int:
        label = self.labels.get(area_id)
        checked = self.code(label[1]) if label else f"Not one of your grids: area {area_id}."
        if isinstance(checked, str):
            raise Invalid(field_errors("area_id", checked, location="query"))
        return checked

    def code(self, code: str) -> int | str:
        return self.by_code.get(code, f"Not one of your grids: {code}.")

    def label(self, area_id: int) -> tuple[str, str, bool]:
        if area_id not in self.labels:
            area = self.s.get(Area, area_id)
            self.labels[area_id] = (area.name, area.code, False)
        return self.labels[area_id]


# --- writing -------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A row that passed the checks of its own cells, waiting for its batch."""

    number: int
    area_id: int
    fields: dict[str, Any]
    key: str | None  # what makes it a duplicate (None: nothing)
    values: dict[str, Any]  # the parsed cells (what the kind needs beyond `fields`)
    line: str  # `fields` of the kind's NAMES as a line of CSV (made by the reading thread)


class _Writer:
    """The database side of an import of one kind: checks of a batch, then COPY. Used by
    the writing thread only (see _Pipeline)."""

    key_label: str  # the duplicate's column, for the report

    def __init__(self, s: Session, actor: Actor, report: Report, grids: _Grids,
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

    def reject(self, row: _Pending, field_name: str | None, message: str) -> None:
        self.report.add(_problem(self.header, row.number, field_name, message), invalid=True)

    # -- checks shared by every kind

    key_field: str | None = None
    # Records of the register a batch's keys already name: SELECT key, id, area_id … with
    # %(keys)s (text[]) and the parameters of `register_params`.
    REGISTER_SQL: str

    def register_params(self, batch: list[_Pending]) -> dict:
        return {}

    def key_of(self, row: _Pending) -> tuple[str | None, str]:
        """(the field, how the report names it) of what makes the row a duplicate."""
        return self.key_field, self.key_label

    def register_message(self, row: _Pending, record_id: int, area_id: int) -> str:
        raise NotImplementedError

    def duplicates(self, batch: list[_Pending]) -> list[_Pending]:
        """Drop (and report) the rows whose key an earlier row of the file had, or a record
        of the register has."""
        first: dict[str, int] = {}
        kept: list[_Pending] = []
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
                         (_array(first), _array(numbers)))
        new = {n for (n,) in self.cur.fetchall()}
        if len(new) == len(numbers):
            return {}
        self.cur.execute("SELECT key, row FROM ledger_import_keys WHERE key = ANY(%s::text[])",
                         (_array(k for k, n in first.items() if n not in new),))
        return dict(self.cur.fetchall())

    def registered(self, first: dict[str, int], batch: list[_Pending],
                   in_file: dict[str, int]) -> dict[str, tuple[int, int]]:
        """{key: (record id, area id)} of the batch's keys the register already has."""
        self.cur.execute(self.REGISTER_SQL, {"keys": _array(first),
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

    def copy_records(self, table: str, rows: list[_Pending], ids: Iterable[int],
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

    def accept(self, rows: list[_Pending]) -> None:
        with self.report.lock:
            self.report.valid += len(rows)
            self.report.grids.update(r.area_id for r in rows)

    def flush(self, batch: list[_Pending]) -> None:
        raise NotImplementedError



class _CsvLine:
    """Values → one line of CSV (no line end), as COPY … (FORMAT csv) reads it."""

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.writer = csv.writer(self.buf, lineterminator="")

    def __call__(self, values: Sequence[Any]) -> str:
        self.buf.seek(0)
        self.buf.truncate()
        self.writer.writerow(values)
        return self.buf.getvalue()


def _array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (cast it in the SQL): a third of the cost of psycopg2's
    ARRAY[…] of a list, for a thousand keys a batch."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def _pg(value: Any) -> Any:
    """A value as COPY's CSV wants it."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return "{" + ",".join(value) + "}"  # enumeration keys: nothing to quote
    return value


_GPS = ("location", "gps_crs", "gps_raw_lon", "gps_raw_lat")


class _Persons(_Writer):
    key_field = "id_number"
    key_label = "ID number"
    NAMES = ("name", "id_number_enc", "id_number_bidx", "id_number_masked", "sex", "birth_date",
             "phone_enc", "phone_bidx", "phone_masked", "ethnicity", "relation_to_head",
             "population_type", "registration_situation")
    REGISTER_SQL = ("SELECT id_number_bidx, id, area_id, id >= %(first_id)s AND source = 'import'"
                    " FROM persons WHERE id_number_bidx = ANY(%(keys)s::text[])")

    first_id: int | None = None  # the first id this import gave a person

    def register_message(self, row: _Pending, record_id: int, area_id: int) -> str:
        return self.existing_message("This ID number is already registered", "person",
                                     record_id, area_id)

    def seen_before(self, first: dict[str, int]) -> dict[str, int]:
        return {}  # the unique index knows: see `registered`

    def registered(self, first: dict[str, int], batch: list[_Pending],
                   in_file: dict[str, int]) -> dict[str, tuple[int, int]]:
        """The register's people with the batch's ID numbers. Earlier rows of this file are
        among them (they are written): those are reported as the rows they came from
        (ledger_import_ids), the others as the API's 409."""
        self.cur.execute(self.REGISTER_SQL, {"keys": _array(first), "first_id": self.first_id})
        found, ours = {}, {}
        for key, record_id, area_id, imported_now in self.cur.fetchall():
            if key in first:
                (ours if imported_now else found)[key] = (record_id, area_id)
        if ours:
            self.cur.execute("SELECT id, row FROM ledger_import_ids WHERE id = ANY(%s::bigint[])",
                             (_array(i for i, _ in ours.values()),))
            rows = dict(self.cur.fetchall())
            in_file.update({key: rows[i] for key, (i, _) in ours.items()})
        return found

    def flush(self, batch: list[_Pending]) -> None:
        batch = self.duplicates(batch)
        if not batch:
            return
        batch, households, ids = self._households(batch)
        if not batch:
            return
        person_id = {id(r): i for r, i in zip(batch, ids, strict=False)}
        new_households = [h for h in households.values() if h["new"]]
        self.copy("households", (*self.RECORD_COLUMNS, "household_no", "type", "head_person_id"),
                  ([h["id"], h["area_id"], "import", self.actor.user_id, self.actor.user_id,
                    False, 1, h["no"], h["type"],
                    person_id[id(h["head_row"])] if "head_row" in h else None]
                   for h in new_households))
        household_of = {id(r): households[(r.area_id, r.values["household_no"])]["id"]
                        for r in batch if "household_no" in r.values}
        self.copy_records("persons", batch, ids, ("household_id", "status"),
                          (f",{household_of.get(id(r), '')},present" for r in batch))
        if self.first_id is None:
            self.first_id = ids[0]
        self.copy("ledger_import_ids", ("id", "row"),
                  ((i, r.number) for r, i in zip(batch, ids, strict=False)), count=False)
        self.copy("household_stays", ("person_id", "household_id", "relation_to_head"),
                  ([person_id[id(r)], household_of[id(r)], r.fields["relation_to_head"]]
                   for r in batch if id(r) in household_of))
        self.copy("person_tags", ("person_id", "kind", "tag", "start_date", "created_by"),
                  ([person_id[id(r)], kind, tag, self.today, self.actor.user_id]
                   for r in batch
                   for kind, tags in (("care", r.values.get("care_tags") or ()),
                                      ("key", r.values.get("key_tags") or ()))
                   for tag in tags))
        heads = [(h["id"], person_id[id(h["head_row"])]) for h in households.values()
                 if not h["new"] and "head_row" in h]
        if heads:
            self.cur.execute(
                "UPDATE households h SET head_person_id = v.person_id, version = h.version + 1, "
                "updated_at = now(), updated_by = %s FROM unnest(%s::bigint[], %s::bigint[]) "
                "AS v(id, person_id) WHERE h.id = v.id",
                (self.actor.user_id, _array(h for h, _ in heads), _array(p for _, p in heads)))
            self.report.wrote("households_headed", len(heads))
        self.accept(batch)

    def _households(self, batch: list[_Pending]) -> tuple[list[_Pending], dict, list[int]]:
        """The household of each row with a 户号 (existing in its grid, or new: its id
        reserved), its head (one 户主 per household), and ids reserved for the persons:
        one statement."""
        wanted = {(r.area_id, r.values["household_no"]) for r in batch
                  if "household_no" in r.values}
        households: dict[tuple[int, str], dict] = {}
        several: set[tuple[int, str]] = set()
        if wanted:
            self.cur.execute(
                "SELECT area_id, household_no, id, head_person_id IS NOT NULL FROM households"
                " WHERE area_id = ANY(%s::bigint[]) AND household_no = ANY(%s::text[])"
                " AND ended_at IS NULL",
                (_array({a for a, _ in wanted}), _array({n for _, n in wanted})))
            for area_id, no, hid, has_head in self.cur.fetchall():
                if (area_id, no) not in wanted:
                    continue
                if (area_id, no) in households:
                    several.add((area_id, no))
                households[(area_id, no)] = {"id": hid, "new": False, "has_head": has_head}
        missing = [k for k in wanted if k not in households]
        self.cur.execute(
            "SELECT (SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)),"
            "       (SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s))",
            (self.sequence("persons"), len(batch), self.sequence("households"), len(missing)))
        ids, new_ids = self.cur.fetchone()
        for (area_id, no), hid in zip(missing, new_ids or (), strict=True):
            households[(area_id, no)] = {"id": hid, "new": True, "has_head": False,
                                         "area_id": area_id, "no": no, "type": None}
        kept = []
        for row in batch:
            key = (row.area_id, row.values.get("household_no"))
            household = households.get(key)
            if household is None:
                kept.append(row)
                continue
            if key in several:
                self.reject(row, "household_no", f"户号 {key[1]} is several households in "
                                                 "this grid: record the person through the API.")
                continue
            if row.fields["relation_to_head"] == "head":
                if household["has_head"]:
                    self.reject(row, "relation_to_head",
                                f"Household {key[1]} already has a head (户主).")
                    continue
                household["has_head"], household["head_row"] = True, row
            if household["new"] and household["type"] is None:
                household["type"] = row.values.get("household_type", "registered")
            kept.append(row)
        # A new household nobody of the batch kept (every member refused) is not written.
        used = {(r.area_id, r.values["household_no"]) for r in kept if "household_no" in r.values}
        return kept, {k: h for k, h in households.items() if k in used}, ids


class _Households(_Writer):
    key_field = "household_no"
    NAMES = ("household_no", "type")
    key_label = "户号 in the grid"
    REGISTER_SQL = ("SELECT area_id || ':' || household_no, id, area_id "
                    "FROM households WHERE ended_at IS NULL AND area_id = ANY(%(areas)s::bigint[]) "
                    "AND household_no = ANY(%(nos)s::text[])")

    def register_params(self, batch: list[_Pending]) -> dict:
        return {"areas": _array({r.area_id for r in batch}),
                "nos": _array({r.fields["household_no"] for r in batch})}

    def register_message(self, row: _Pending, record_id: int, area_id: int) -> str:
        return self.existing_message(
            f"户号 {row.fields['household_no']} is already registered in this grid",
            "household", record_id, area_id)

    def flush(self, batch: list[_Pending]) -> None:
        batch = self.duplicates(batch)
        if batch:
            self.copy_records("households", batch, self.reserve("households", len(batch)))
            self.accept(batch)


class _Buildings(_Writer):
    key_field = "name"
    key_label = "building name and address in the grid"
    NAMES = ("name", "address", "use", "floors", "units", "is_crowded_rental", "is_unsafe",
             "is_live_work_store", "leader_name", "leader_phone_enc", "leader_phone_masked",
             *_GPS)
    REGISTER_SQL = ("SELECT area_id || ':' || name || chr(31) || coalesce(address, ''), "
                    "id, area_id FROM buildings "
                    "WHERE ended_at IS NULL AND area_id = ANY(%(areas)s::bigint[]) "
                    "AND name = ANY(%(names)s::text[])")

    def register_params(self, batch: list[_Pending]) -> dict:
        return {"areas": _array({r.area_id for r in batch}),
                "names": _array({r.fields["name"] for r in batch})}

    def register_message(self, row: _Pending, record_id: int, area_id: int) -> str:
        return self.existing_message(
            "This building (name and address) is already registered in this grid",
            "building", record_id, area_id)

    def flush(self, batch: list[_Pending]) -> None:
        batch = self.duplicates(batch)
        if batch:
            ids = self.reserve("buildings", len(batch))
            self.copy_records("buildings", batch, ids)
            self.accept(batch)
            _review_points(self, "buildings", ids)


class _Organisations(_Writer):
    key_field = "uscc"
    key_label = "USCC"

    def key_of(self, row: _Pending) -> tuple[str | None, str]:
        return ("uscc", "USCC") if row.fields["uscc"] else ("name", "name in the grid")
    NAMES = ("uscc", "name", "kind", "industry", "legal_representative", "employees",
             "address", "phone", "risk_flags", *_GPS)
    REGISTER_SQL = ("SELECT 'u:' || uscc, id, area_id FROM organisations "
                    "WHERE uscc = ANY(%(usccs)s::text[]) UNION ALL "
                    "SELECT 'n:' || area_id || ':' || name, id, area_id "
                    "FROM organisations WHERE ended_at IS NULL "
                    "AND area_id = ANY(%(areas)s::bigint[]) AND name = ANY(%(names)s::text[])")

    def register_params(self, batch: list[_Pending]) -> dict:
        return {"usccs": _array(r.fields["uscc"] for r in batch if r.fields["uscc"]),
                "areas": _array({r.area_id for r in batch}),
                "names": _array({r.fields["name"] for r in batch if not r.fields["uscc"]})}

    def register_message(self, row: _Pending, record_id: int, area_id: int) -> str:
        message = ("This USCC is already registered" if row.fields["uscc"] else
                   "An organisation of this name is already registered in this grid")
        return self.existing_message(message, "organisation", record_id, area_id)

    def flush(self, batch: list[_Pending]) -> None:
        batch = self.duplicates(batch)
        if batch:
            ids = self.reserve("organisations", len(batch))
            self.copy_records("organisations", batch, ids)
            self.accept(batch)
            _review_points(self, "organisations", ids)


def _review_points(writer: _Writer, table: str, ids: list[int]) -> None:
    """A ledger's point outside the row's grid is kept and flagged for review (as the API
    does for a point of a record whose grid its parent decides)."""
    writer.cur.execute(
        f"UPDATE {table} r SET needs_review = true, review_reasons = ARRAY["
        "  coalesce('gps_in_other_grid_' || (SELECT g.code FROM areas g "
        "    JOIN area_levels l ON l.key = g.level WHERE ST_Covers(g.boundary, r.location) "
        "    AND l.rank >= (SELECT rank FROM area_levels WHERE key = 'grid') "
        "    ORDER BY l.rank DESC, g.id LIMIT 1), 'gps_outside_grids')] "
        f"FROM areas a WHERE r.id = ANY(%s) AND a.id = r.area_id AND r.location IS NOT NULL "
        "AND NOT ST_Covers(a.boundary, r.location)", (ids,))
    if writer.cur.rowcount:
        writer.report.wrote(f"{table}_needing_review", writer.cur.rowcount)


_WRITERS: dict[str, type[_Writer]] = {"persons": _Persons, "households": _Households,
                                      "buildings": _Buildings, "organisations": _Organisations}


def _key(kind: str, area_id: int, fields: dict) -> str | None:
    if kind == "persons":
        return fields["id_number_bidx"]
    if kind == "households":
        return f"{area_id}:{fields['household_no']}"
    if kind == "buildings":
        return f"{area_id}:{fields['name']}\x1f{fields['address'] or ''}"
    return f"u:{fields['uscc']}" if fields["uscc"] else f"n:{area_id}:{fields['name']}"


def _fields(kind: str, row: c.Row, key_tags: bool, today: date) -> dict:
    if kind == "persons":
        return c.person_fields(row, key_tags, today)
    if kind == "households":
        return c.household_fields(row)
    if kind == "buildings":
        return c.building_fields(row)
    return c.organisation_fields(row)


# --- import --------------------------------------------------------------------------------


def _find_header(table: files.Table, cols: tuple[c.Column, ...], report: Report
                 ) -> tuple[c.Header, Iterator[tuple[int, tuple]]]:
    """The first sheet with a header row near its top, and the rows under it."""
    for name, rows in table.sheets:
        for number, cells in rows:
            header = c.match_header(cols, cells, number)
            if header is not None:
                report.sheet = name
                return header, rows
            if number >= HEADER_SEARCH_ROWS:
                break
    required = "、".join(col.label for col in cols if col.required)
    raise _file_error(report, 1, f"No header row with the columns of a {report.kind} ledger "
                                 f"(at least {required}) in the first {HEADER_SEARCH_ROWS} rows.")


def submit_import(s: Session, actor: Actor, store: Any, kind: str, stream: IO[bytes], *,
                  area_id: int | None = None, skip_invalid: bool = False,
                  dry_run: bool = False, filename: str | None = None,
                  limits: files.Limits = files.Limits()) -> jobs.Job:
    """Check what can be checked at once (permission, kind, grid, the file's format and
    declared size), store the upload and queue the import as a job of the actor."""
    actor.require("registry:import")
    if kind not in c.KINDS:
        raise Invalid(field_errors("kind", f"One of {', '.join(c.KINDS)}.", location="query"))
    if area_id is not None:
        _Grids(s, actor).by_id(area_id)
    found = files.inspect(stream, limits)
    key = jobs.input_key(found.format)
    store.put(key, stream.read())  # bounded by MAX_CONTENT_LENGTH
    return jobs.create(s, actor, JOB_KIND, area_id=area_id, input_key=key, input_name=filename,
                       total=found.rows, params={
                           "kind": kind, "area_id": area_id, "skip_invalid": skip_invalid,
                           "dry_run": dry_run, "limits": limits.as_dict()})


def _run_import_job(s: Session, actor: Actor, run: jobs.JobRun) -> dict:
    """The worker's side of `submit_import`: the import, with the limits of the upload."""
    p = run.params
    return import_ledger(s, actor, p["kind"], run.input, area_id=p["area_id"],
                         skip_invalid=p["skip_invalid"], dry_run=p["dry_run"],
                         filename=run.input_name, limits=files.Limits(**p["limits"]),
                         progress=run.progress)


jobs.handlers[JOB_KIND] = _run_import_job


def import_ledger(s: Session, actor: Actor, kind: str, stream: IO[bytes], *,
                  area_id: int | None = None, skip_invalid: bool = False,
                  dry_run: bool = False, filename: str | None = None,
                  limits: files.Limits = files.Limits(),
                  progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Import a ledger of `kind` (see the module docstring). Returns the report; raises
    Invalid (422) with the report when any row has a problem and not `skip_invalid`, 413
    when the file is beyond `limits`. `progress(rows read, rows in the file)` is called
    after each batch."""
    actor.require("registry:import")
    if kind not in c.KINDS:
        raise Invalid(field_errors("kind", f"One of {', '.join(c.KINDS)}.", location="query"))
    report = Report(kind=kind, dry_run=dry_run, skip_invalid=skip_invalid)
    grids = _Grids(s, actor)
    default_area = grids.by_id(area_id) if area_id is not None else None
    today = local_today()
    cols = c.columns(kind, today)
    key_tags = actor.can("person:read_key_tags")
    with files.open_table(stream, limits) as table:
        report.format, report.encoding = table.format, table.encoding
        header, rows = _find_header(table, cols, report)
        report.header_row = header.row
        report.columns = {text: name for name, (_, text) in header.positions.items()}
        report.ignored_columns = header.ignored
        if header.problems:
            for text, message in header.problems:
                report.add(Problem(header.row, text, message))
            raise Invalid({"files": {"file": ["The header has problems; see report."]}},
                          message="The header has problems", report=report.as_dict())
        if default_area is None and "area_code" not in header.positions:
            raise Invalid(field_errors("area_id", "Give area_id, or a 网格编码 column.",
                                       location="query"), report=report.as_dict())
        s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _LOCK})
        _plan_for_growth(s)
        # Nothing is written unless the import succeeds: a failure raises, and the unit of
        # work rolls the transaction back; a dry run rolls back this savepoint.
        savepoint = s.begin_nested() if dry_run else None
        writer = _WRITERS[kind](s, actor, report, grids, header, today)
        try:
            _read_rows(kind, rows, cols, header, writer, default_area, key_tags, today,
                       (lambda n: progress(n, table.rows)) if progress else None)
        except files.UnreadableFile as exc:
            raise _file_error(report, exc.row, exc.message) from None
        except pg_errors.UniqueViolation:
            raise Conflict("Someone registered a record of this file while it was being "
                           "imported; nothing was written: import the file again.") from None
        failed = report.invalid and not skip_invalid
        if savepoint is not None:
            savepoint.rollback()
    if failed:
        raise Invalid({"files": {"file": [f"{report.invalid} row(s) have problems; nothing "
                                          "was written (see report)."]}},
                      message=f"{report.invalid} row(s) have problems; nothing was written",
                      report=report.as_dict())
    if dry_run:
        return report.as_dict()
    codes = sorted(s.scalars(sa.select(Area.code).where(Area.id.in_(report.grids))))
    audit.record(s, actor, "ledger_imported", "ledger", kind, changes={
        "kind": kind, "file": filename, "format": report.format, "encoding": report.encoding,
        "rows": report.rows, "valid": report.valid, "invalid": report.invalid,
        "written": report.written, "skip_invalid": skip_invalid, "area_id": area_id,
        "grids": codes[:100], "grid_count": len(codes)})
    return report.as_dict()


def _plan_for_growth(s: Session) -> None:
    """Keep every query of the import on its indexes while the tables grow under it.

    The foreign-key checks of each COPY'd row (a person's household, a stay's person…) look
    up rows this same transaction wrote. Their plans follow the tables' statistics, which
    an import outdates: with the statistics of an empty register (a new district, or a
    table last analyzed when small) the planner picks a sequential scan, and every row then
    scans everything imported before it (measured: 50,000 people took 65 s instead of 7).
    ANALYZE is the owner's, so: no sequential scans in this transaction (every lookup of
    an import has an index), and plans cached earlier by this connection are dropped so that
    none is reused."""
    s.execute(sa.text("SET LOCAL enable_seqscan = off"))
    s.execute(sa.text("DISCARD PLANS"))


class _Pipeline:
    """Batches go to a thread that checks and writes them while this one reads, checks and
    encrypts the next: Python's share of the work and PostgreSQL's overlap (psycopg2
    releases the GIL while it waits). The writing thread alone uses the connection from
    then on. At most QUEUED batches wait, so memory stays bounded; a failure of the writer
    stops the reader at its next batch and is raised here."""

    QUEUED = 2

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.batches: queue.Queue[list[_Pending] | None] = queue.Queue(self.QUEUED)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="ledger-writer", daemon=True)
        self.thread.start()

    def _write(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.error is None:  # after a failure, only drain
                try:
                    self.writer.flush(batch)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                    self.error = exc

    def put(self, batch: list[_Pending]) -> None:
        if self.error is not None:
            raise self.error
        self.batches.put(batch)

    def close(self, failing: bool = False) -> None:
        """Wait for the last batch; raise what the writer raised (unless the reader is
        failing already: its error is the one to report)."""
        if failing and self.error is None:
            self.error = RuntimeError("stopped")  # the writer drains what is queued
        self.batches.put(None)
        self.thread.join()
        if self.error is not None and not failing:
            raise self.error


def _read_rows(kind: str, rows: Iterator[tuple[int, tuple]], cols: tuple[c.Column, ...],
               header: c.Header, writer: _Writer, default_area: int | None, key_tags: bool,
               today: date, progress: Callable[[int], None] | None = None) -> None:
    report = writer.report
    grids = writer.grids
    names = writer.NAMES
    line = _CsvLine()
    batch: list[_Pending] = []
    number = header.row
    pipeline = _Pipeline(writer)
    try:
        for number, cells in rows:
            row = c.read_row(cols, header, number, cells)
            if row is None:
                continue
            report.rows += 1
            code = row.values.pop("area_code", None)
            area_id = default_area
            if code is not None:
                found = grids.code(code)
                if isinstance(found, str):
                    row.errors.append(("area_code", found))
                else:
                    area_id = found
            elif area_id is None:
                row.errors.append(("area_code", "Required (no area_id was given)."))
            fields = _fields(kind, row, key_tags, today)
            if row.errors:
                for i, (field_name, message) in enumerate(row.errors):
                    report.add(_problem(header, number, field_name, message), invalid=i == 0)
                if not report.skip_invalid and report.problems_total >= MAX_PROBLEMS:
                    report.stopped_at_row = number  # it fails anyway: enough to fix first
                    break
                continue
            batch.append(_Pending(number, area_id, fields, _key(kind, area_id, fields),
                                  row.values, line([_pg(fields[n]) for n in names])))
            if len(batch) >= BATCH_ROWS:
                pipeline.put(batch)
                batch = []
                if progress is not None:
                    progress(number)
        if batch:
            pipeline.put(batch)
        if progress is not None:
            progress(number)
    except BaseException:
        pipeline.close(failing=True)
        raise
    pipeline.close()


# --- export --------------------------------------------------------------------------------


def _labels(values: dict[str, str]) -> Any:
    return lambda v: values.get(v, v) if v is not None else None


def _tag_labels(v: str | None) -> str | None:
    """"elderly_alone,disabled" → "独居老人、残疾人" (in the catalogue's order)."""
    if not v:
        return None
    tags = set(v.split(","))
    return "、".join(label for catalogue in (m.CARE_TAGS, m.KEY_TAGS)
                    for key, label in catalogue.items() if key in tags)


def _yes(v: bool | None) -> str | None:
    return None if v is None else ("是" if v else "否")


def _export_query(kind: str, key_tags: bool, birth_dates: bool = True, year: int = 0
                  ) -> tuple[sa.Select, list[tuple[str, Any]]]:
    """The statement and its (header, formatter) columns, for a kind. Without
    `birth_dates` (person:read_pii) persons have 年龄段 (server.pii.age_band of `year`)
    where 出生日期 was: next to the masked ID number a birth date gives the number away."""
    model = {"persons": m.Person, "households": m.Household, "buildings": m.Building,
             "organisations": m.Organisation}[kind]
    grid = sa.orm.aliased(Area)
    base = [grid.code.label("area_code"), grid.name.label("area_name")]
    if kind == "persons":
        P, T = m.Person, m.PersonTag
        tags = {}
        for tag_kind in ("care", "key") if key_tags else ("care",):
            tags[tag_kind] = (sa.select(sa.func.string_agg(T.tag, ","))
                              .where(T.person_id == P.id, T.kind == tag_kind,
                                     T.end_date.is_(None))
                              .scalar_subquery().label(f"{tag_kind}_tags"))
        stmt = (sa.select(P.id, P.name, P.id_number_masked, P.sex, P.birth_date, P.phone_masked,
                          P.ethnicity, m.Household.household_no, m.Household.type,
                          P.relation_to_head, P.population_type, P.registration_situation,
                          P.status, *tags.values(), *base, P.source)
                .outerjoin(m.Household, m.Household.id == P.household_id))
        born = (("出生日期", None) if birth_dates
                else ("年龄段", lambda d: pii.age_band(d, year)))
        cols = [("姓名", None), ("身份证号", None), ("性别", _labels({"M": "男", "F": "女"})),
                born, ("联系电话", None), ("民族", None), ("户号", None),
                ("户类型", _labels(m.HOUSEHOLD_TYPES)), ("与户主关系", _labels(m.RELATIONS)),
                ("人口类型", _labels(m.POPULATION_TYPES)),
                ("户籍情况", _labels(m.REGISTRATION_SITUATIONS)),
                ("状态", _labels(m.PERSON_STATUSES)), ("关爱对象", _tag_labels)]
        if key_tags:
            cols.append(("重点人员", _tag_labels))
    elif kind == "households":
        H, P = m.Household, m.Person
        members = (sa.select(sa.func.count()).where(P.household_id == H.id, P.ended_at.is_(None))
                   .scalar_subquery())
        head = sa.select(P.name).where(P.id == H.head_person_id).scalar_subquery()
        stmt = sa.select(H.id, H.household_no, H.type, head.label("head"),
                         members.label("members"), *base, H.source)
        cols = [("户号", None), ("户类型", _labels(m.HOUSEHOLD_TYPES)), ("户主姓名", None),
                ("现有人数", None)]
    elif kind == "buildings":
        B = m.Building
        stmt = sa.select(B.id, B.name, B.address, B.use, B.floors, B.units, B.is_crowded_rental,
                         B.is_unsafe, B.is_live_work_store, B.leader_name, B.leader_phone_masked,
                         sa.func.ST_X(B.location), sa.func.ST_Y(B.location), *base, B.source)
        cols = [("楼栋名称", None), ("地址", None), ("用途", _labels(m.BUILDING_USES)),
                ("层数", None), ("单元数", None), ("群租房", _yes), ("危房", _yes),
                ("三合一场所", _yes), ("楼栋长", None), ("楼栋长电话", None), ("经度", None),
                ("纬度", None)]
    else:
        O = m.Organisation  # noqa: E741 - the model's initial, as the others
        stmt = sa.select(O.id, O.uscc, O.name, O.kind, O.industry, O.legal_representative,
                         O.employees, O.address, O.phone,
                         sa.func.array_to_string(O.risk_flags, ","),
                         sa.func.ST_X(O.location), sa.func.ST_Y(O.location), *base, O.source)
        flags = lambda v: "、".join(m.ORG_RISK_FLAGS.get(f, f) for f in v.split(",")) if v else None  # noqa: E731
        cols = [("统一社会信用代码", None), ("单位名称", None), ("单位类型", _labels(m.ORG_KINDS)),
                ("行业", None), ("法定代表人", None), ("从业人数", None), ("地址", None),
                ("联系电话", None), ("风险标识", flags), ("经度", None), ("纬度", None)]
    cols += [("网格编码", None), ("网格名称", None), ("来源", _labels(m.SOURCES))]
    stmt = stmt.join(grid, grid.id == model.area_id).order_by(grid.code, model.id)
    return stmt, cols


def export_ledger(s: Session, actor: Actor, kind: str, area_id: int | None,
                  include_ended: bool = False) -> tuple[IO[bytes], str, int]:
    """(the .xlsx as an open temporary file at 0, a file name, the number of rows)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from server import xlsx

    actor.require("registry:export")
    if kind not in c.KINDS:
        raise Invalid(field_errors("kind", f"One of {', '.join(c.KINDS)}.", location="query"))
    model = {"persons": m.Person, "households": m.Household, "buildings": m.Building,
             "organisations": m.Organisation}[kind]
    key_tags = actor.can("person:read_key_tags")
    stmt, cols = _export_query(kind, key_tags, actor.can("person:read_pii"), local_today().year)
    stmt = stmt.where(areas.in_scope(model.area_id, actor))
    root = None
    if area_id is not None:
        root = areas.get_area(s, actor, area_id)
        stmt = stmt.where(model.area_id.in_(
            sa.select(Area.id).where(Area.path.startswith(root.path, autoescape=True))))
    if not include_ended:
        stmt = stmt.where(model.ended_at.is_(None))

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(_SHEETS[kind])
    sheet.freeze_panes = "A2"
    for i, (title, _) in enumerate(cols, 1):
        sheet.column_dimensions[get_column_letter(i)].width = max(10, 2.2 * len(title) + 2)
    bold = Font(bold=True)
    sheet.append([xlsx.safe_cell(sheet, title, font=bold) for title, _ in cols])
    count = 0
    # A server-side cursor: rows come 2,000 at a time, however large the area.
    result = s.connection().execute(stmt.execution_options(stream_results=True, yield_per=2000))
    formatters = [f for _, f in cols]
    for record in result:
        values = record[1:]  # the id orders the rows; it is not a ledger column
        # every cell through server.xlsx: a name like "=HYPERLINK(…)" stays text
        xlsx.append_row(sheet, [f(v) if f is not None and v is not None else v
                                for f, v in zip(formatters, values, strict=True)])
        count += 1
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the response sends and closes it
    workbook.save(out)
    out.seek(0)
    audit.record(s, actor, "ledger_exported", "ledger", kind, changes={
        "kind": kind, "area_id": area_id, "area_code": root.code if root else None,
        "rows": count, "include_ended": include_ended, "key_tags": key_tags})
    stamp = local_today().strftime("%Y%m%d")  # the user's day: at 00:30 Beijing, not UTC's
    return out, f"{kind}-{root.code if root else 'all'}-{stamp}.xlsx", count


_SHEETS = {"persons": "实有人口", "households": "户", "buildings": "楼栋",
           "organisations": "实有单位"}
