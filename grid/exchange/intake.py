"""What a feed row is (feeds in, 1+N 多源): the batch's report, the sending system as
provenance names it, and a row checked and converted as the register checks and stores it
(the register's own write schemas; personal data encrypted, indexed and masked)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from grid.exchange import schemas
from grid.exchange.models import FeedRecord
from grid.registry.history import _history_value
from grid.registry.scope import ID_FIELD, PHONE_FIELD
from grid.registry.validation import id_number_facts, normalize_id_number, normalize_uscc
from server import pii
from server.clock import local_today

SOURCE = "other_system"
# Parent reference of each kind: (the row's key field, the parent kind, the column).
PARENTS = {"person": ("household_key", "household", "household_id"),
           "household": ("house_key", "house", "house_id"),
           "house": ("building_key", "building", "building_id"),
           "organisation": ("building_key", "building", "building_id")}
# What makes two records of a kind the same whoever sent them (the register's unique rules).
NATURAL = {"person": "id_number", "organisation": "uscc"}
# Fields stored as several columns: compared by the first, shown by the second.
PII = {("person", "id_number"): ("id_number_bidx", "id_number_masked"),
       ("person", "phone"): ("phone_bidx", "phone_masked")}


@dataclass
class Report:
    """What a batch did (per row: created, updated, unchanged, queued or rejected)."""

    kind: str
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    queued_for_review: int = 0
    rejections: list[dict] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.rejections)

    def reject(self, index: int, key: Any, errors: dict) -> None:
        self.rejections.append({"row": index, "record_key": key if isinstance(key, str)
                                else None, "errors": errors})


@dataclass
class Row:
    """A row that passed its checks: the columns it writes, and per field the value to
    compare (a blind index for personal data), to show (masked) and to keep (clear), each
    by field."""

    index: int
    key: str
    columns: dict[str, dict]
    compare: dict
    shown: dict
    clear: dict
    parent_key: str | None
    point: Any
    target_id: int | None = None


@dataclass(frozen=True)
class Sender:
    """The system a batch comes from, as provenance names it."""

    client_id: int
    client_name: str
    received_at: datetime

    def source(self, key: str, value: Any = None) -> dict:
        """Provenance of a value this system sent (`value_key`: what it was, so that a
        later correction by a worker is told from it)."""
        return {"source": SOURCE, "client_id": self.client_id, "client": self.client_name,
                "record_key": key, "at": self.received_at.isoformat(),
                "value_key": value_key(value)}


# --- rows -------------------------------------------------------------------------------------


def field_columns(kind: str, name: str, value: Any, today: date | None = None
                  ) -> tuple[dict, Any, Any, Any]:
    """(columns, compared, shown, clear) of one field of a row."""
    if (kind, name) == ("person", "id_number"):
        if value is None:
            return ({"id_number_enc": None, "id_number_bidx": None, "id_number_masked": None},
                    None, None, None)
        number = normalize_id_number(value, today=today)
        sex, born = id_number_facts(number)
        bidx, masked = pii.blind_index(number, ID_FIELD), pii.mask_id_number(number)
        return ({"id_number_enc": pii.encrypt(number, ID_FIELD), "id_number_bidx": bidx,
                 "id_number_masked": masked, "sex": sex, "birth_date": born},
                bidx, masked, number)
    if (kind, name) == ("person", "phone"):
        bidx, masked = pii.blind_index(value, PHONE_FIELD), pii.mask_phone(value)
        return ({"phone_enc": pii.encrypt(value, PHONE_FIELD), "phone_bidx": bidx,
                 "phone_masked": masked}, bidx, masked, value)
    if (kind, name) == ("organisation", "uscc") and value is not None:
        value = normalize_uscc(value)
    return {name: value}, value, _history_value(name, value), None


def load_row(schema: Any, item: Any) -> dict:
    """A row through its schema's fields (their types and validators: the register's
    rules), without the schema's per-load machinery, which cost as much as the checks
    themselves at 5,000 rows a batch. The row schemas have no hooks but the register's
    ID number and USCC checks, which `field_columns` runs where it converts them."""
    if not isinstance(item, dict):
        raise ValidationError({"_schema": ["A row is an object."]})
    fields = schema.load_fields
    data, errors = {}, {}
    for name, raw in item.items():
        field = fields.get(name)
        if field is None:
            errors[name] = ["Unknown field."]
            continue
        try:
            data[name] = field.deserialize(raw, name, item)
        except ValidationError as exc:
            errors[name] = exc.messages
    for name, field in fields.items():
        if field.required and name not in item:
            errors[name] = ["Missing data for required field."]
    if errors:
        raise ValidationError(errors)
    return data


def check_rows(kind: str, raw: list, start: int, report: Report) -> list[Row]:
    """Check and convert raw rows (index from `start`); rejected ones go to the report."""
    schema = schemas.FEED_ROWS[kind]()
    today = local_today()
    parent = PARENTS.get(kind, (None,))[0]
    out: list[Row] = []
    for offset, item in enumerate(raw):
        index = start + offset
        try:
            data = load_row(schema, item)
            row = Row(index, data.pop("record_key"), {}, {}, {}, {},
                      data.pop(parent, None) if parent else None, data.pop("location", None))
            for name, value in data.items():
                try:
                    (row.columns[name], row.compare[name], row.shown[name],
                     row.clear[name]) = field_columns(kind, name, value, today)
                except ValidationError as exc:
                    raise ValidationError({name: exc.messages}) from None
        except ValidationError as exc:
            key = item.get("record_key") if isinstance(item, dict) else None
            messages = exc.messages if isinstance(exc.messages, dict) else {"_row": exc.messages}
            report.reject(index, key, messages)
            continue
        out.append(row)
    return out


def dedupe(kind: str, rows: list[Row], report: Report) -> list[Row]:
    """One row per record key, and per ID number / USCC, in a batch (the first wins)."""
    seen: dict[Any, int] = {}
    kept = []
    for row in rows:
        natural = row.compare.get(NATURAL.get(kind, ""))
        clash = seen.get(("key", row.key))
        if clash is None and natural is not None:
            clash = seen.get(("natural", natural))
        if clash is not None:
            report.reject(row.index, row.key, {"record_key": [f"Same record as row {clash}."]})
            continue
        seen[("key", row.key)] = row.index
        if natural is not None:
            seen[("natural", natural)] = row.index
        kept.append(row)
    return kept




def value_key(value: Any) -> str:
    """What a value is compared by (a blind index for personal data: no clear value)."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return repr(float(value))
    return json.dumps(value, default=str, ensure_ascii=False)


# --- the systems' keys ------------------------------------------------------------------------


def known_keys(s: Session, client_id: int, kind: str, keys: Iterable[str]) -> dict[str, int]:
    """{record_key: register id} of keys this system sent before."""
    keys = list(set(keys))
    if not keys:
        return {}
    return dict(s.execute(sa.select(FeedRecord.record_key, FeedRecord.object_id).where(
        FeedRecord.client_id == client_id, FeedRecord.kind == kind,
        FeedRecord.record_key == sa.any_(sa.cast(keys, ARRAY(sa.Text))))).all())


def unnest(*columns: tuple[list, Any]) -> list:
    """SQL: the columns of a batch (values, SQL type) as rows, one statement for the batch
    (executemany would be a round trip a row)."""
    arrays = [sa.cast(values, ARRAY(type_)) for values, type_ in columns]
    table = sa.func.unnest(*arrays).table_valued(
        *(f"c{i}" for i in range(len(columns)))).render_derived()
    return [table.c[f"c{i}"] for i in range(len(columns))]


def remember(s: Session, sender: Sender, kind: str, rows: list[Row]) -> None:
    """This system's keys of these records (new keys only; a known key keeps its record)."""
    if rows:
        s.execute(pg_insert(FeedRecord).from_select(
            ["client_id", "kind", "record_key", "object_id", "received_at"],
            sa.select(sa.literal(sender.client_id), sa.literal(kind), *unnest(
                ([r.key for r in rows], sa.Text), ([r.target_id for r in rows], sa.BigInteger)),
                sa.literal(sender.received_at, sa.DateTime(timezone=True))))
            .on_conflict_do_nothing())
