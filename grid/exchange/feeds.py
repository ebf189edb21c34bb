"""Feeds in from other systems (1+N 多源): city units' systems (API clients of kind `system`)
upsert register records in batches.

Rules:
- idempotent by the system's own key (`record_key`, per client and kind): a row sent again
  with the same values changes nothing; a new key whose ID number (persons) or USCC
  (organisations) the register already has joins that record instead of duplicating it;
- rows are checked as the register checks them (the register's own write schemas: ID
  numbers, USCCs, mobiles, GPS…); a bad row is rejected with its reasons, the others go on;
- personal data is stored as the register stores it (encrypted, blind index, masked);
- provenance per field (数据来源): which system, which record key, when
  (`register_field_sources`); a field without an entry has its record's `source`;
- never a silent overwrite of what a grid worker collected or verified: a field whose
  value came from anyone but another system (grid_worker, import, self_declared, or a
  worker's verdict on a review item) and that the feed contradicts becomes a review item
  (核实任务, grid.exchange.reviews) for the grid's workers; empty fields are filled, and
  values that came from systems are updated;
- the grid of a new record: its parent's (a person's household, a household's house…),
  else its point's (a new building needs one); a record's point is only ever set at
  creation or when empty;
- bounded: at most MAX_FEED_ROWS rows a request (413 beyond), worked in chunks of CHUNK
  rows, a few statements a chunk.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.exchange.indicators import upsert_indicators
from grid.exchange.intake import (
    NATURAL,
    PARENTS,
    SOURCE,
    Report,
    Row,
    Sender,
    check_rows,
    dedupe,
    known_keys,
    remember,
    unnest,
)
from grid.exchange.merging import merge_existing
from grid.exchange.models import FieldSource
from grid.registry.models import House, HouseholdStay, Organisation, Person
from grid.registry.scope import KINDS
from server import audit
from server.auth.actor import Actor

CHUNK = 1000
FEED = "registry:feed"


# --- finding what a row is about ----------------------------------------------------------


def _natural(s: Session, kind: str, rows: list[Row]) -> dict[Any, int]:
    """Records the register already has under a row's ID number or USCC (1+N: the same
    person from another source is the same record)."""
    column = {"person": Person.id_number_bidx, "organisation": Organisation.uscc}.get(kind)
    name = NATURAL.get(kind)
    values = [r.compare[name] for r in rows if r.target_id is None and r.compare.get(name)]
    if column is None or not values:
        return {}
    return dict(s.execute(sa.select(column, KINDS[kind].id).where(
        column == sa.any_(sa.cast(values, ARRAY(sa.Text))))).all())


def _match(s: Session, sender: Sender, kind: str, rows: list[Row]) -> None:
    known = known_keys(s, sender.client_id, kind, (r.key for r in rows))
    for row in rows:
        row.target_id = known.get(row.key)
    natural = _natural(s, kind, rows)
    name = NATURAL.get(kind)
    for row in rows:
        if row.target_id is None and name and row.compare.get(name) in natural:
            row.target_id = natural[row.compare[name]]


def _rooms(s: Session, rows: list[Row], parents: dict[str, tuple[int, int]],
           report: Report) -> list[Row]:
    """Houses: a new key for a room its building already has (unit + room, the register's
    unique rule) is that house; two rows of one room in a batch: the first wins."""
    def room(row: Row) -> tuple:
        return (parents[row.parent_key][0], row.compare.get("unit") or "",
                row.compare.get("room"))

    new = [r for r in rows if r.target_id is None]
    buildings = list({parents[r.parent_key][0] for r in new})
    existing = {}
    if buildings:
        existing = {(b, u, r): i for i, b, u, r in s.execute(
            sa.select(House.id, House.building_id, sa.func.coalesce(House.unit, ""), House.room)
            .where(House.building_id == sa.any_(sa.cast(buildings, ARRAY(sa.BigInteger))),
                   House.ended_at.is_(None))).all()}
    seen: dict[tuple, int] = {}
    kept = []
    for row in rows:
        if row.target_id is None:
            row.target_id = existing.get(room(row))
        if row.target_id is None and room(row) in seen:
            report.reject(row.index, row.key, {"room": [
                f"Same room of the same building as row {seen[room(row)]}."]})
            continue
        seen.setdefault(room(row), row.index)
        kept.append(row)
    return kept


def _parents(s: Session, sender: Sender, kind: str, rows: list[Row], report: Report
             ) -> tuple[list[Row], dict[str, tuple[int, int]]]:
    """{parent key: (id, area)} of the rows' parents; rows naming an unknown one are
    rejected."""
    if kind not in PARENTS:
        return rows, {}
    key_field, parent_kind, _ = PARENTS[kind]
    wanted = {r.parent_key for r in rows if r.parent_key}
    ids = known_keys(s, sender.client_id, parent_kind, wanted)
    model = KINDS[parent_kind]
    found = {}
    if ids:
        area_of = dict(s.execute(sa.select(model.id, model.area_id).where(
            model.id == sa.any_(sa.cast(list(ids.values()), ARRAY(sa.BigInteger))),
            model.ended_at.is_(None))).all())
        found = {k: (i, area_of[i]) for k, i in ids.items() if i in area_of}
    kept = []
    for row in rows:
        if row.parent_key and row.parent_key not in found:
            report.reject(row.index, row.key, {key_field: [
                f"No current {parent_kind} with this key from your system."]})
        else:
            kept.append(row)
    return kept, found


def _grids_at(s: Session, points: list[Any]) -> list[int | None]:
    """The finest grid of each WGS-84 point (None outside every grid), in one statement:
    grid.areas.service.finest_grid for each point of the list."""
    if not points:
        return []
    pts = sa.func.unnest(sa.cast([p.lon for p in points], ARRAY(sa.Float)),
                         sa.cast([p.lat for p in points], ARRAY(sa.Float))
                         ).table_valued("lon", "lat", with_ordinality="i").render_derived()
    point = sa.func.ST_SetSRID(sa.func.ST_MakePoint(pts.c.lon, pts.c.lat), 4326)
    grid = areas.finest_grid(Area.id, point=point).scalar_subquery()
    found = dict(s.execute(sa.select(pts.c.i, grid)).all())
    return [found.get(i + 1) for i in range(len(points))]


# --- writing ----------------------------------------------------------------------------------


def _defaults(model: Any) -> dict:
    """Python-side scalar defaults of the table's columns (Core inserts do not apply them
    when a batch's rows name the column)."""
    out = {}
    for column in model.__table__.columns:
        default = column.default
        if default is not None and getattr(default, "is_scalar", False):
            out[column.key] = default.arg
        elif default is not None and getattr(default, "is_callable", False):
            out[column.key] = default.arg(None)  # e.g. `list` (wrapped to take a context)
    return out


def _gps_columns(fix: Any) -> dict:
    if fix is None:
        return {}
    return {"location": fix.wkt, "gps_crs": fix.crs, "gps_raw_lon": fix.raw_lon,
            "gps_raw_lat": fix.raw_lat, "gps_accuracy_m": fix.accuracy_m,
            "gps_captured_at": fix.captured_at, "gps_device_id": fix.device_id}


def _csv(value: Any) -> Any:
    """A value as COPY's CSV wants it (arrays of codes as array literals)."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return "{" + ",".join(f'"{v}"' for v in value) + "}"
    return value


def copy_new(s: Session, model: Any, rows: list[dict]) -> list[int]:
    """Insert new records with COPY, as ledger imports write them (grid.ledgers.batches):
    their ids reserved from the table's sequence first. An INSERT of the same rows cost
    four times as much (a statement of 5,000 × 25 parameters to parse and plan).
    Returns the ids in the order of `rows`."""
    table = model.__table__
    defaults = _defaults(model)
    names = sorted(set().union(defaults, *(r.keys() for r in rows)) - {"id"})
    cur = s.connection().connection.cursor()
    cur.execute("SELECT array_agg(nextval(pg_get_serial_sequence(%s, 'id'))) "
                "FROM generate_series(1, %s)", (table.name, len(rows)))
    ids = cur.fetchone()[0]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for new_id, row in zip(ids, rows, strict=True):
        writer.writerow([new_id, *(_csv(row.get(n, defaults.get(n))) for n in names)])
    data = buffer.getvalue().encode()
    cur.copy_expert(f"COPY {table.name} (id, {', '.join(names)}) FROM STDIN WITH (FORMAT csv)",
                    io.BytesIO(data), size=len(data))
    return ids


def _create(s: Session, sender: Sender, kind: str, rows: list[Row],
            parents: dict[str, tuple[int, int]], report: Report) -> None:
    """New records (one INSERT … RETURNING per chunk), their keys and their provenance."""
    model = KINDS[kind]
    fk = PARENTS.get(kind, (None, None, None))[2]
    grids = _grids_at(s, [r.point for r in rows if not r.parent_key and r.point is not None])
    grid_of = iter(grids)
    placed: list[tuple[Row, dict]] = []
    for row in rows:
        if row.parent_key:
            parent_id, area_id = parents[row.parent_key]
            values = {fk: parent_id}
        elif row.point is not None and (area_id := next(grid_of)) is not None:
            values = {}
        else:
            report.reject(row.index, row.key, {"location": [
                "The point is outside every grid." if row.point is not None else
                f"A new {kind} needs a location (or its parent's key)."]})
            continue
        columns = {k: v for cols in row.columns.values() for k, v in cols.items()}
        placed.append((row, {**values, **columns, **_gps_columns(row.point),
                             "area_id": area_id, "source": SOURCE, "needs_review": False,
                             "version": 1}))
    if not placed:
        return
    ids = copy_new(s, model, [values for _, values in placed])
    for (row, _), new_id in zip(placed, ids, strict=True):
        row.target_id = new_id
    created = [row for row, _ in placed]
    remember(s, sender, kind, created)
    ids, sources = unnest(([r.target_id for r in created], sa.BigInteger), (
        [json.dumps({f: sender.source(r.key, v) for f, v in r.compare.items()},
                    ensure_ascii=False, default=str) for r in created], sa.Text))
    s.execute(sa.insert(FieldSource).from_select(
        ["object_type", "object_id", "fields"],
        sa.select(sa.literal(kind), ids, sa.cast(sources, JSONB))))
    stays = [r for r in created if kind == "person" and r.parent_key]
    if stays:
        s.execute(sa.insert(HouseholdStay).from_select(
            ["person_id", "household_id", "relation_to_head"], sa.select(*unnest(
                ([r.target_id for r in stays], sa.BigInteger),
                ([parents[r.parent_key][0] for r in stays], sa.BigInteger),
                ([r.compare.get("relation_to_head") for r in stays], sa.Text)))))
    report.created += len(created)


def upsert_batch(s: Session, actor: Actor, sender: Sender, kind: str, raw_rows: list,
                 progress: Callable[[int], None] | None = None) -> Report:
    """Upsert a batch of one kind from one system; returns what each row did."""
    actor.require(FEED)
    report = Report(kind=kind, received=len(raw_rows))
    for start in range(0, len(raw_rows), CHUNK):
        chunk = raw_rows[start:start + CHUNK]
        if kind == "organisation_indicator":
            upsert_indicators(s, sender, chunk, start, report)
        else:
            _chunk(s, sender, kind, chunk, start, report)
        if progress is not None:
            progress(start + len(chunk))
    audit.record(s, actor, "feed_batch", kind, None, changes={
        "client_id": sender.client_id, "received": report.received, "created": report.created,
        "updated": report.updated, "unchanged": report.unchanged,
        "queued_for_review": report.queued_for_review, "rejected": report.rejected})
    return report


def _chunk(s: Session, sender: Sender, kind: str, raw: list, start: int,
           report: Report) -> None:
    rows = dedupe(kind, check_rows(kind, raw, start, report), report)
    rows, parents = _parents(s, sender, kind, rows, report)
    _match(s, sender, kind, rows)
    if kind == "house":
        rows = _rooms(s, rows, parents, report)
    known = [r for r in rows if r.target_id is not None]
    _create(s, sender, kind, [r for r in rows if r.target_id is None], parents, report)
    merge_existing(s, sender, kind, known, parents, report)
