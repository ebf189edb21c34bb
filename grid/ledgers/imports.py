"""Importing a community's ledger (台账导入) into the register: the request's checks, the
job, reading the file and the pipeline of batches.

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
"""

from __future__ import annotations

import csv
import io
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import IO, Any

import sqlalchemy as sa
from psycopg2 import errors as pg_errors
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.ledgers import columns as c
from grid.ledgers import files
from grid.ledgers.batches import Pending, Writer
from grid.ledgers.grids import Grids
from grid.ledgers.kinds import WRITERS, row_fields, row_key
from grid.ledgers.report import MAX_PROBLEMS, Problem, Report, row_problem
from server import audit, jobs
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import Conflict, Invalid, field_errors

BATCH_ROWS = 1000
HEADER_SEARCH_ROWS = files.HEADER_SEARCH_ROWS
ImportLimits = files.Limits
JOB_KIND = "ledger_import"
_LOCK = "grid.ledgers.import"


def _file_error(report: Report, row: int, message: str) -> Invalid:
    report.add(Problem(row, None, message))
    return Invalid({"files": {"file": [message]}}, message=message, report=report.as_dict())


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


def _check_header(header: c.Header, report: Report, default_area: int | None) -> None:
    """Put the header in the report; 422 for its problems, or for rows without a grid."""
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
        Grids(s, actor).by_id(area_id)
    found = files.inspect(stream, limits)
    key = jobs.input_key(found.format)
    store.put(key, stream.read())  # bounded by MAX_CONTENT_LENGTH
    return jobs.create(s, actor, JOB_KIND, area_id=area_id, input_key=key, input_name=filename,
                       total=found.rows, params={
                           "kind": kind, "area_id": area_id, "skip_invalid": skip_invalid,
                           "dry_run": dry_run, "limits": limits.as_dict()})


def run_import_job(s: Session, actor: Actor, run: jobs.JobRun) -> dict:
    """The worker's side of `submit_import`: the import, with the limits of the upload."""
    p = run.params
    return import_ledger(s, actor, p["kind"], run.input, area_id=p["area_id"],
                         skip_invalid=p["skip_invalid"], dry_run=p["dry_run"],
                         filename=run.input_name, limits=files.Limits(**p["limits"]),
                         progress=run.progress)



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
    grids = Grids(s, actor)
    default_area = grids.by_id(area_id) if area_id is not None else None
    today = local_today()
    cols = c.columns(kind, today)
    key_tags = actor.can("person:read_key_tags")
    with files.open_table(stream, limits) as table:
        report.format, report.encoding = table.format, table.encoding
        header, rows = _find_header(table, cols, report)
        _check_header(header, report, default_area)
        s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _LOCK})
        _plan_for_growth(s)
        # Nothing is written unless the import succeeds: a failure raises, and the unit of
        # work rolls the transaction back; a dry run rolls back this savepoint.
        savepoint = s.begin_nested() if dry_run else None
        writer = WRITERS[kind](s, actor, report, grids, header, today)
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

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.batches: queue.Queue[list[Pending] | None] = queue.Queue(self.QUEUED)
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

    def put(self, batch: list[Pending]) -> None:
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
               header: c.Header, writer: Writer, default_area: int | None, key_tags: bool,
               today: date, progress: Callable[[int], None] | None = None) -> None:
    report = writer.report
    grids = writer.grids
    names = writer.NAMES
    line = _CsvLine()
    batch: list[Pending] = []
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
            fields = row_fields(kind, row, key_tags, today)
            if row.errors:
                for i, (field_name, message) in enumerate(row.errors):
                    report.add(row_problem(header, number, field_name, message), invalid=i == 0)
                if not report.skip_invalid and report.problems_total >= MAX_PROBLEMS:
                    report.stopped_at_row = number  # it fails anyway: enough to fix first
                    break
                continue
            batch.append(Pending(number, area_id, fields, row_key(kind, area_id, fields),
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


def _pg(value: Any) -> Any:
    """A value as COPY's CSV wants it."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return "{" + ",".join(value) + "}"  # enumeration keys: nothing to quote
    return value
