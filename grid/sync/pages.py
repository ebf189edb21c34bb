"""A pull page's JSON, built by PostgreSQL (ARCHITECTURE §3 "Geometry in SQL", §8: dumping
thousands of records with marshmallow cost most of a pull).

Each record's `data` is the text the register's masked schema (grid.registry.schemas) would
give through the app's JSON encoder: the same keys (compiled from the schema's fields, so a
field added there comes here, or fails loudly on the first pull and in the tests), the
same values, the same bytes (keys sorted, compact, floats as Python writes them). Only
`location` is left to Python, which converts the stored WGS-84 numbers to the requested
crs (PostGIS has no GCJ-02): PostgreSQL returns the JSON before and after that key, and
ST_X / ST_Y.

Relies on PostgreSQL's default `extra_float_digits` (1: the shortest text that reads back
as the same float, as Python's repr).
"""

from __future__ import annotations

import functools
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by

from geo.fields import output_crs, point_out
from grid.registry import models as m
from grid.registry import schemas as rs

# Where Python puts the point: keys that sort before it go into `head`, after it `tail`.
LOCATION = "location"


def _const(text: str) -> sa.ColumnElement[str]:
    """A SQL string literal written into the statement (no bind parameter per key)."""
    return sa.literal_column("'" + text.replace("'", "''") + "'", sa.Text)


_NULL = _const("null")


def _concat(*parts: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    out = parts[0]
    for part in parts[1:]:
        out = out.op("||")(part)
    return out


def _json(col: Any) -> sa.ColumnElement[str]:
    """Strings, integers, booleans and string arrays: PostgreSQL's JSON is Python's."""
    return sa.cast(sa.func.to_json(col), sa.Text)


def _float(col: Any) -> sa.ColumnElement[str]:
    """Python writes 5.0 where PostgreSQL writes 5; otherwise both write the shortest text
    that reads back as the same float (1e-05, 119.9479, 1e+16)."""
    integral = sa.and_(col == sa.func.trunc(col), sa.func.abs(col) < sa.literal_column("1e15"))
    return sa.case((integral, _concat(sa.cast(sa.cast(col, sa.BigInteger), sa.Text),
                                      _const(".0"))),
                   else_=sa.cast(col, sa.Text))


def _iso(col: Any, *, utc: bool = False) -> sa.ColumnElement[str]:
    """datetime.isoformat(): microseconds only when there are some; the offset of the
    session's time zone (the one psycopg2 hands Python), or +00:00 after astimezone(UTC)."""
    local = sa.func.timezone("UTC", col) if utc else col
    fraction = sa.case((sa.func.date_trunc("second", col) == col, _const("")),
                       else_=sa.func.to_char(local, ".US"))
    offset = _const("+00:00") if utc else sa.func.to_char(col, "TZH:TZM")
    return _concat(_const('"'), sa.func.to_char(local, 'YYYY-MM-DD"T"HH24:MI:SS'), fraction,
                   offset, _const('"'))


def _date(col: Any) -> sa.ColumnElement[str]:
    return _concat(_const('"'), sa.func.to_char(col, "YYYY-MM-DD"), _const('"'))


def _value(field: ma.fields.Field, col: Any) -> sa.ColumnElement[str]:
    """The JSON text of a column as `field` dumps it; 'null' for NULL."""
    if isinstance(field, rs.CodeLabel):  # `col` is the code's column
        text = _json(sa.case(*((col == code, _const(label)) for code, label in field.codes.items()),
                             else_=col))
    elif isinstance(field, ma.fields.AwareDateTime):
        text = _iso(col)
    elif isinstance(field, ma.fields.Date):
        text = _date(col)
    elif isinstance(field, ma.fields.Float):
        text = _float(col)
    elif isinstance(field, (ma.fields.Integer, ma.fields.String, ma.fields.Boolean)) or (
            isinstance(field, ma.fields.List) and isinstance(field.inner, ma.fields.String)):
        text = _json(col)
    else:
        raise TypeError(f"no SQL JSON for {type(field).__name__} fields")
    return sa.func.coalesce(text, _NULL)


def _object(pairs: list[tuple[str, sa.ColumnElement[str]]], *, lead: bool = False
            ) -> list[sa.ColumnElement[str]]:
    """'"k1":v1,"k2":v2' as parts, keys sorted (as the app's JSON encoder writes them);
    `lead`: with a comma before the first key."""
    parts: list[sa.ColumnElement[str]] = []
    for i, (key, value) in enumerate(sorted(pairs, key=lambda kv: kv[0])):
        parts += [_const(("," if i or lead else "") + f'"{key}":'), value]
    return parts


def _fields(schema: ma.Schema, table: sa.Table, special: dict[str, Any]
            ) -> list[tuple[str, sa.ColumnElement[str]]]:
    pairs = []
    for name, field in schema.dump_fields.items():
        key = field.data_key or name
        if name in special:
            pairs.append((key, special[name]))
        else:
            column = field.source if isinstance(field, rs.CodeLabel) else field.attribute or name
            pairs.append((key, _value(field, table.c[column])))
    return pairs


def _gps(table: sa.Table) -> sa.ColumnElement[str]:
    """RecordSchema.dump_gps."""
    c = table.c
    return _concat(_const("{"), *_object([
        ("crs", sa.func.coalesce(_json(c.gps_crs), _NULL)),
        ("raw_lon", sa.func.coalesce(_float(c.gps_raw_lon), _NULL)),
        ("raw_lat", sa.func.coalesce(_float(c.gps_raw_lat), _NULL)),
        ("accuracy_m", sa.func.coalesce(_float(c.gps_accuracy_m), _NULL)),
        ("captured_at", sa.func.coalesce(_iso(c.gps_captured_at, utc=True), _NULL)),
        ("device_id", sa.func.coalesce(_json(c.gps_device_id), _NULL)),
    ]), _const("}"))


def _tags(visible: list[sa.ColumnElement[bool]]) -> sa.ColumnElement[str]:
    """The person's tags the actor may see, as TagSchema dumps them, in with_tags' order."""
    t = m.PersonTag.__table__
    label = sa.case(*((t.c.tag == tag, _const(text))
                      for tag, text in {**m.KEY_TAGS, **m.CARE_TAGS}.items()), else_=t.c.tag)
    one = _concat(_const("{"), *_object(_fields(rs.TagSchema(), t, {"label": _json(label)})),
                  _const("}"))
    listed = sa.func.string_agg(one, aggregate_order_by(_const(","), t.c.start_date, t.c.id))
    return sa.func.coalesce(
        sa.select(_concat(_const("["), listed, _const("]")))
        # the person's id as text: the subquery is compiled on its own (see `_sql`)
        .where(t.c.person_id == sa.literal_column("persons.id"), *visible).scalar_subquery(),
        _const("[]"))


def _age_band(born: Any, year: int) -> sa.ColumnElement[str]:
    """server.pii.age_band in SQL (the band of year − birth year)."""
    age = sa.func.greatest(0, sa.literal(year) - sa.cast(sa.extract("year", born), sa.Integer))
    low = sa.func.least(age // 10 * 10, 100)  # integer division (`/` is true division)
    band = sa.case((low >= 100, _const("100+")),
                   else_=_concat(sa.cast(low, sa.Text), _const("-"), sa.cast(low + 9, sa.Text)))
    return sa.func.coalesce(_json(sa.case((born.is_(None), sa.null()), else_=band)), _NULL)


@functools.cache
def _halves(model: type[m.RegisterRecord], schema: type[ma.Schema],
            tags: tuple[sa.ColumnElement[bool], ...] | None, birth_dates: bool, year: int
            ) -> tuple[sa.ColumnElement[str], sa.ColumnElement[str]]:
    """Built once per type (and tag visibility, birth dates shown, year): the expressions do
    not depend on the page."""
    table = model.__table__
    special: dict[str, Any] = {LOCATION: None, "gps": _gps(table)}
    if tags is not None:
        special["tags"] = _tags(list(tags))
    if model is m.Person:  # registry.with_tags: the birth date only with person:read_pii
        born = table.c.birth_date
        special["birth_date"] = sa.func.coalesce(_date(born), _NULL) if birth_dates else _NULL
        special["age_band"] = _age_band(born, year)
    pairs = _fields(schema(), table, special)
    head = _concat(_const("{"), *_object([p for p in pairs if p[0] < LOCATION]), _const(","))
    tail = _concat(*_object([p for p in pairs if p[0] > LOCATION], lead=True), _const("}"))
    return _sql(head), _sql(tail)


def _sql(expr: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The expression as SQL text, compiled once. SQLAlchemy walks a statement's whole tree
    for its cache key on every execution: these thousands of nodes cost ~15-35 ms a page;
    one text is one string."""
    text = str(expr.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    if "%" in text:  # would be taken for a psycopg2 placeholder
        raise ValueError("a % in the SQL of a sync record")
    return sa.literal_column(f"({text})", sa.Text)


def data_columns(model: type[m.RegisterRecord], schema: type[ma.Schema],
                 tags: tuple[sa.ColumnElement[bool], ...] | None = None,
                 birth_dates: bool = False, year: int = 0) -> list[sa.Label]:
    """`head`, `tail`, `lon`, `lat` of a record: its data is head + "location":… + tail.
    For persons: `tags`, the conditions on person_tags that the actor may see (constant
    expressions: they key a cache); `birth_dates`, whether the actor sees them
    (person:read_pii); `year`, the one age bands count from."""
    head, tail = _halves(model, schema, tags, birth_dates, year)
    location = model.__table__.c.location
    return [head.label("head"), tail.label("tail"),
            sa.func.ST_X(location).label("lon"), sa.func.ST_Y(location).label("lat")]


def point_json(lon: float | None, lat: float | None) -> str:
    """The `location` value (RecordSchema.dump_location) in the request's crs."""
    if lon is None:
        return "null"
    if output_crs() == "wgs84":  # point_out's answer without its checks (stored points)
        return f'{{"crs":"wgs84","lat":{round(lat, 7)!r},"lon":{round(lon, 7)!r}}}'
    p = point_out(lon, lat)
    # float repr is what the JSON encoder writes for a float
    return f'{{"crs":"{p["crs"]}","lat":{p["lat"]!r},"lon":{p["lon"]!r}}}'
