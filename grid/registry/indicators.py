"""Organisations' monthly indicators (单位月度指标): employees, water, electricity, wage
arrears, social-insurance arrears (社保欠缴) and rent arrears (欠租), one row a month;
reading them is audited (wage arrears are sensitive business data)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from grid.registry.collecting import _now
from grid.registry.history import _history_value, apply_changes
from grid.registry.models import Organisation, OrganisationIndicator
from grid.registry.scope import get_record
from server import audit
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import Invalid, field_errors

INDICATOR_FIELDS = ("employees", "water_m3", "electricity_kwh", "wage_arrears_yuan",
                    "social_insurance_arrears_yuan", "rent_arrears_yuan")
MONEY_FIELDS = ("wage_arrears_yuan", "social_insurance_arrears_yuan", "rent_arrears_yuan")


def _this_month() -> date:
    return local_today().replace(day=1)


def set_indicators(s: Session, actor: Actor, org_id: int, month: date, values: dict
                   ) -> OrganisationIndicator:
    """Upsert one month's indicators: the fields sent are set (null clears one), the others
    kept. Re-sending the same values changes nothing and writes no history."""
    actor.require("registry:write")
    org = get_record(s, actor, Organisation, org_id)
    if month > _this_month():
        raise Invalid(field_errors("month", "The month is in the future.", location="path"))
    values = {k: _decimal(k, values[k]) for k in INDICATOR_FIELDS if k in values}
    if not values:
        raise Invalid(field_errors("_schema", "Send at least one indicator."))
    inserted = s.execute(
        pg_insert(OrganisationIndicator)
        .values(organisation_id=org.id, month=month, recorded_by=actor.user_id, **values)
        .on_conflict_do_nothing(index_elements=["organisation_id", "month"])
        .returning(OrganisationIndicator.month)
    ).first()
    row = s.scalars(sa.select(OrganisationIndicator).where(
        OrganisationIndicator.organisation_id == org.id, OrganisationIndicator.month == month)
        .with_for_update().execution_options(populate_existing=True)).one()
    if inserted is not None:
        diff = {k: [None, _history_value(k, v)] for k, v in values.items() if v is not None}
    else:
        diff = apply_changes(row, values)
        if diff:
            row.recorded_by, row.recorded_at = actor.user_id, _now()
            s.flush()
    if inserted is not None or diff:
        audit.record(s, actor, "organisation_indicators_set", "organisation", org.id,
                     changes={"month": month.strftime("%Y-%m"), **diff})
    return row


def _decimal(name: str, value: Any) -> Any:
    """Money as the Numeric(14, 2) column holds it, so that a resend compares equal."""
    if name in MONEY_FIELDS and value is not None:
        return Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return value


def list_indicators(s: Session, actor: Actor, org_id: int, since: date | None,
                    until: date | None) -> list[OrganisationIndicator]:
    """The monthly series between two months (inclusive), oldest first. The read is audited
    (wage arrears are sensitive business data)."""
    org = get_record(s, actor, Organisation, org_id)
    if since is not None and until is not None and until < since:
        raise Invalid(field_errors("to", "Before `from`.", location="query"))
    stmt = sa.select(OrganisationIndicator).where(
        OrganisationIndicator.organisation_id == org.id).order_by(OrganisationIndicator.month)
    if since is not None:
        stmt = stmt.where(OrganisationIndicator.month >= since)
    if until is not None:
        stmt = stmt.where(OrganisationIndicator.month <= until)
    rows = list(s.scalars(stmt))
    audit.record(s, actor, "organisation_indicators_read", "organisation", org.id,
                 changes={"from": since.strftime("%Y-%m") if since else None,
                          "to": until.strftime("%Y-%m") if until else None,
                          "months": len(rows)})
    return rows
