"""Organisations' monthly indicators from other systems (water, electricity, social
insurance…: 单位月度指标, for labour-dispute early warning): one row per organisation and
month, keyed by the organisation's record key of the same system. A month a grid worker
recorded (recorded_by set) is not overwritten: a differing value becomes a review item of
the organisation (field `indicators.YYYY-MM.<name>`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from grid.exchange import schemas
from grid.exchange.intake import Report, Sender, known_keys, load_row
from grid.exchange.merging import propose, record_sources, same
from grid.registry.history import _history_value
from grid.registry.indicators import INDICATOR_FIELDS
from grid.registry.models import COLLECTED, Organisation, OrganisationIndicator


def _checked(raw: list, start: int, report: Report) -> list[tuple[int, dict]]:
    schema = schemas.IndicatorFeedRow()
    rows = []
    for offset, item in enumerate(raw):
        try:
            rows.append((start + offset, load_row(schema, item)))
        except ValidationError as exc:
            key = item.get("record_key") if isinstance(item, dict) else None
            report.reject(start + offset, key, exc.messages)
    return rows


def upsert_indicators(s: Session, sender: Sender, raw: list, start: int,
                      report: Report) -> None:
    rows = _checked(raw, start, report)
    orgs = known_keys(s, sender.client_id, "organisation", (r["organisation_key"] for _, r in rows))
    for index, row in rows:
        org_id = orgs.get(row["organisation_key"])
        if org_id is None:
            report.reject(index, row["record_key"], {"organisation_key": [
                "No organisation with this key from your system."]})
            continue
        org = s.execute(sa.select(Organisation.id, Organisation.area_id, Organisation.source)
                        .where(Organisation.id == org_id)).mappings().one()
        _one(s, sender, org, row, report)


def _one(s: Session, sender: Sender, org: Any, row: dict, report: Report) -> None:
    month = row["month"]
    values = {k: row[k] for k in INDICATOR_FIELDS if row.get(k) is not None}
    inserted = s.execute(pg_insert(OrganisationIndicator).values(
        organisation_id=org["id"], month=month, recorded_by=None, **values)
        .on_conflict_do_nothing(index_elements=["organisation_id", "month"])
        .returning(OrganisationIndicator.month)).first()
    prefix = f"indicators.{month.strftime('%Y-%m')}."
    key = row["record_key"]
    if inserted is not None:
        record_sources(s, "organisation", org["id"],
                       {prefix + k: sender.source(key, v) for k, v in values.items()})
        report.created += 1
        return
    current = s.execute(sa.select(OrganisationIndicator.__table__).where(
        OrganisationIndicator.organisation_id == org["id"],
        OrganisationIndicator.month == month).with_for_update()).mappings().one()
    fill, proposals = {}, []
    for name, new in values.items():
        if same(current[name], new):
            continue
        if current[name] is None or current["recorded_by"] is None:
            fill[name] = new
        else:
            proposals.append((name, new))
    if fill:
        s.execute(sa.update(OrganisationIndicator).where(
            OrganisationIndicator.organisation_id == org["id"],
            OrganisationIndicator.month == month).values(**fill))
        record_sources(s, "organisation", org["id"],
                       {prefix + k: sender.source(key, v) for k, v in fill.items()})
    record = {**org, **{prefix + k: current[k] for k in INDICATOR_FIELDS}}
    for name, new in proposals:
        propose(s, "organisation", record, prefix + name,
                {"source": COLLECTED, "user_id": current["recorded_by"]},
                _history_value(name, new), None, new, sender.source(key, new))
    if proposals:
        report.queued_for_review += 1
    elif fill:
        report.updated += 1
    else:
        report.unchanged += 1
