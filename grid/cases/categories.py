"""Reference data of cases: categories (大类/小类) with their stage limits, a street's own
routing (分拨路由) to departments, and the typed questions (extra attributes) a category asks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, Department
from grid.calendar import service as calendar
from grid.cases.models import Case, CaseCategory, CategoryRoute
from server import audit
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, NotFound, check_version, field_errors

# Stage limits when a category names none (a short limit for the office's own steps;
# 30 minutes for verification is the common default).
DEFAULT_LIMITS = {
    "accept": {"amount": 1, "unit": "working_hours"},
    "dispatch": {"amount": 1, "unit": "working_hours"},
    "sign": {"amount": 2, "unit": "working_hours"},
    "handle": {"amount": 1, "unit": "working_days"},
    "verify": {"amount": 0.5, "unit": "working_hours"},
    "close": {"amount": 1, "unit": "working_hours"},
}


def list_categories(s: Session, include_inactive: bool = False) -> list[CaseCategory]:
    stmt = sa.select(CaseCategory).order_by(CaseCategory.code)
    if not include_inactive:
        stmt = stmt.where(CaseCategory.active)
    return list(s.scalars(stmt))


def get_category(s: Session, category_id: int | None = None, code: str | None = None
                 ) -> CaseCategory:
    cond = CaseCategory.id == category_id if category_id is not None else \
        CaseCategory.code == code
    category = s.scalars(sa.select(CaseCategory).where(cond)).first()
    if category is None:
        raise NotFound("No such category")
    return category


def _check_limits(limits: dict) -> None:
    for stage, limit in limits.items():
        if stage not in DEFAULT_LIMITS:
            raise Invalid(field_errors("time_limits", f"Unknown stage {stage!r}."))
        if limit.get("unit") not in calendar.UNITS or not 0 < float(limit.get("amount", 0)) \
                <= 10_000:
            raise Invalid(field_errors(
                "time_limits", f"{stage}: amount > 0 in one of {', '.join(calendar.UNITS)}."))


def save_category(s: Session, actor: Actor, data: dict, category_id: int | None = None,
                  expected: int | None = None) -> CaseCategory:
    """Create or change a category (category:manage: platform administrators, since every
    district shares the categories; a street's own routing is set_route)."""
    actor.require("category:manage")
    if "time_limits" in data:
        _check_limits(data["time_limits"])
    if data.get("default_department_id") is not None and \
            s.get(Department, data["default_department_id"]) is None:
        raise Invalid(field_errors("default_department_id", "No such department."))
    if data.get("parent_id") is not None:
        parent = s.get(CaseCategory, data["parent_id"])
        if parent is None:
            raise Invalid(field_errors("parent_id", "No such category."))
        if parent.parent_id is not None:
            raise Invalid(field_errors("parent_id", "Categories have two levels (大类/小类)."))
    if category_id is None:
        if s.scalar(sa.select(CaseCategory.id).where(CaseCategory.code == data["code"])):
            raise Conflict("Another category has this code")
        category = CaseCategory(**data)
        s.add(category)
    else:
        category = s.scalars(sa.select(CaseCategory).where(CaseCategory.id == category_id)
                             .with_for_update()).first()
        if category is None:
            raise NotFound("No such category")
        check_version(category, expected)
        for key, value in data.items():
            setattr(category, key, value)
    s.flush()
    audit.record(s, actor, "category_saved", "case_category", category.id,
                 changes={k: v for k, v in data.items()})
    return category


def set_route(s: Session, actor: Actor, category_id: int, area_id: int,
              department_id: int | None) -> None:
    """A street's own department for a category (None removes the override)."""
    actor.require("case:dispatch")
    get_category(s, category_id)
    if not areas.area_in_scope(s, actor, area_id):
        raise NotFound("No such area")
    s.execute(sa.delete(CategoryRoute).where(CategoryRoute.category_id == category_id,
                                             CategoryRoute.area_id == area_id))
    if department_id is not None:
        if s.get(Department, department_id) is None:
            raise Invalid(field_errors("department_id", "No such department."))
        s.add(CategoryRoute(category_id=category_id, area_id=area_id,
                            department_id=department_id))
    s.flush()
    audit.record(s, actor, "category_route_set", "case_category", category_id,
                 changes={"area_id": area_id, "department_id": department_id})


def suggested_department(s: Session, case: Case) -> int | None:
    """The department a case goes to: its street's override, else the category's default
    (one statement: it is shown on every dispatcher's read of a case)."""
    grid_path = sa.select(Area.path).where(Area.id == case.area_id).scalar_subquery()
    routed = (sa.select(CategoryRoute.department_id)
              .join(Area, Area.id == CategoryRoute.area_id)
              .where(CategoryRoute.category_id == case.category_id,
                     grid_path.startswith(Area.path))
              .order_by(sa.func.length(Area.path).desc()).limit(1).scalar_subquery())
    default = sa.select(CaseCategory.default_department_id) \
        .where(CaseCategory.id == case.category_id).scalar_subquery()
    return s.scalar(sa.select(sa.func.coalesce(routed, default)))


# --- extra attributes (typed questions) ----------------------------------------------------


def _check_value(spec: dict, value: Any) -> str | None:
    kind = spec.get("datatype", "string")
    keys = {v["key"] for v in spec.get("values", [])}
    if kind in ("string", "text"):
        return None if isinstance(value, str) and len(value) <= 2000 else "Must be text."
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and abs(value) < 1e15 and value == value
        return None if ok else "Must be a number."
    if kind == "datetime":
        try:
            datetime.fromisoformat(str(value))
        except ValueError:
            return "Must be an ISO-8601 date and time."
        return None
    if kind == "singlevaluelist":
        return None if isinstance(value, str) and value in keys else \
            f"Must be one of: {', '.join(sorted(keys))}."
    if kind == "multivaluelist":
        ok = isinstance(value, list) and value and all(isinstance(v, str) and v in keys
                                                        for v in value)
        return None if ok else f"Must be a list of: {', '.join(sorted(keys))}."
    return None


def check_attributes(category: CaseCategory, values: dict) -> dict:
    """The answers to a category's extra questions: required ones present, each of its
    type; unknown ones refused. 422 naming each bad attribute."""
    specs = {a["code"]: a for a in category.attributes}
    errors: dict[str, list[str]] = {}
    for code in values:
        if code not in specs:
            errors[code] = ["This category has no such attribute."]
    for code, spec in specs.items():
        if code not in values or values[code] in (None, "", []):
            if spec.get("required"):
                errors[code] = ["Required."]
            continue
        problem = _check_value(spec, values[code])
        if problem:
            errors[code] = [problem]
    if errors:
        raise Invalid({"json": {"attributes": errors}})
    return {k: v for k, v in values.items() if v not in (None, "", [])}
