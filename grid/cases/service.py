"""Cases: intake from every channel, the workflow of grid/cases/workflow.py, deadlines and
escalation (督办), queues, and the evaluation statistics (综合评价).

Every change happens under a row lock on the case with the client's version checked first
(412 with the current case if stale), appends a timeline row, writes the audit row and the
notifications (outbox) in the same transaction.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.areas.models import Area, Department, DepartmentMember, Membership
from grid.calendar import service as calendar
from grid.cases import workflow
from grid.cases.models import (
    CHOOSE_PUBLIC_CHANNELS,
    OPEN_STATES,
    PRIVATE_CATEGORIES,
    PUBLISHED_CHANNELS,
    RESIDENT_CHANNELS,
    STAGE_OF_STATE,
    STAT_COUNTS,
    STATES,
    Case,
    CaseCategory,
    CaseEvent,
    CaseFollower,
    CaseRequest,
    CaseStatsDaily,
    CategoryRoute,
)
from notifications.service import notify, notify_each, register_template
from server import audit, db, idempotency, pii, ratelimit
from server.auth.actor import Actor
from server.clock import local_zone, now
from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    check_version,
    field_errors,
)
from server.storage import service as storage

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
WARN_AT, RED_AT = 0.8, 1.5  # green ≤ 80 % of the limit; red card at 150 %
REOPEN_DAYS = 7
CLOCKED_STATES = tuple(STAGE_OF_STATE)

# --- notification texts (zh-CN, en) --------------------------------------------------------

register_template("case_new", ("新事件待受理", "{code} {category}：{address}"),
                  ("New case to accept", "{code} {category}: {address}"))
register_template("case_changed", ("事件{action}", "{code} {category}：{state}"),
                  ("Case update: {action_en}", "{code} {category}: {state_en}"))
register_template("case_dispatched", ("新派遣事件", "{code} {category}：{address}，请及时签收"),
                  ("Case dispatched to you", "{code} {category}: {address}"))
register_template("case_request", ("待审批申请", "{code}：{action}，理由：{reason}"),
                  ("Request awaiting approval", "{code}: {action_en}: {reason}"))
register_template("case_escalated", ("事件督办：{card}", "{code} {category} 已超期，请尽快处置"),
                  ("Case escalated: {card_en}", "{code} {category} is overdue"), urgent=True)
register_template("case_joined", ("有居民反映了同一问题", "{code} 共 {joined} 人反映"),
                  ("Someone reported the same problem", "{code}: {joined} reports"))


# --- scope and loading ---------------------------------------------------------------------


def visible(actor: Actor) -> sa.ColumnElement[bool]:
    """THE case scope: grids in the actor's areas, cases of their departments, and cases
    they reported, joined or follow."""
    scope, own = _scope_terms(actor)
    in_scope = scope(Case.area_id, Case.department_id)
    return in_scope if own is None else sa.or_(own, in_scope)


def _scope_terms(actor: Actor) -> tuple[Any, sa.ColumnElement[bool] | None]:
    """visible() in two parts: a function of (area_id, department_id) columns — what the
    daily roll-up of the statistics can be filtered by — and the cases that are the
    actor's own (reported, joined, followed), or None when there is nothing to add."""
    # The permission first: `unrestricted` (a platform admin) says *where* an actor acts,
    # never *what* it may do; without case:read there is no case data, admin or not.
    if actor.user_id is None or not actor.can("case:read"):
        return (lambda area_id, department_id: sa.false()), None
    if actor.unrestricted:
        return (lambda area_id, department_id: sa.true()), None

    def scope(area_id: Any, department_id: Any) -> sa.ColumnElement[bool]:
        ors = []
        if _works_in_areas(actor):
            ors.append(areas.in_scope(area_id, actor))
        if actor.department_ids:
            ors.append(department_id.in_(actor.department_ids))
        return sa.or_(*ors) if ors else sa.false()

    # = ANY(ARRAY(…)), not IN (…): an array the planner can look up in the primary key
    # (a bitmap with the reporter's index), where IN would test every candidate row
    mine = sa.select(CaseFollower.case_id).where(CaseFollower.user_id == actor.user_id)
    return scope, sa.or_(Case.reporter_id == actor.user_id,
                         Case.id == sa.any_(sa.func.array(mine.scalar_subquery())))


def _works_in_areas(actor: Actor) -> bool:
    """Staff see the cases of their areas; a resident's membership only says where they
    live (they see their own cases, not their neighbours')."""
    return bool(actor.area_paths) and bool(actor.roles - {"resident"})


def get_case(s: Session, actor: Actor, case_id: int, *, for_update: bool = False) -> Case:
    stmt = sa.select(Case).where(Case.id == case_id, visible(actor))
    case = s.scalars(stmt.with_for_update(of=Case) if for_update else stmt).first()
    if case is None:
        raise NotFound("No such case")
    return case


storage.object_access["case"] = lambda s, actor, case_id: get_case(s, actor, case_id)


def light_of(case: Case, at: datetime | None = None) -> str | None:
    """绿灯/黄灯/红灯 of the current stage (frozen while on hold)."""
    if case.due_at is None:
        return None
    at = case.held_at or at or now()
    if at <= case.warn_at:
        return "green"
    return "yellow" if at <= case.due_at else "red"


def light_sql() -> sa.ColumnElement[str]:
    at = sa.func.coalesce(Case.held_at, sa.func.now())
    return sa.case((Case.due_at.is_(None), None), (at <= Case.warn_at, "green"),
                   (at <= Case.due_at, "yellow"), else_="red")


def overdue_sql() -> sa.ColumnElement[bool]:
    """Overdue: marked by the sweep, or past its due time since the last sweep."""
    return sa.or_(Case.overdue, light_sql() == "red")


# --- reference data ------------------------------------------------------------------------


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
        check_version(category, expected, lambda c: {"version": c.version})
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


# --- extra attributes (typed questions) ---------------------------------------------------


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


# --- the clock -----------------------------------------------------------------------------


def _working_time(s: Session, case: Case) -> calendar.WorkingTime:
    return calendar.working_time(s, s.get(Area, case.area_id))


def _start_stage(s: Session, case: Case, at: datetime) -> None:
    """Start the clock of the stage the case's state belongs to (or stop it)."""
    stage = STAGE_OF_STATE.get(case.state)
    case.stage = stage
    case.escalation, case.overdue = 0, False  # 督办 is per stage: a new stage starts clean
    if stage is None:
        case.stage_unit = case.stage_started_at = case.warn_at = case.due_at = None
        case.red_at = None
        return
    category = s.get(CaseCategory, case.category_id)
    limit = category.time_limits.get(stage) or DEFAULT_LIMITS[stage]
    wt = _working_time(s, case)
    amount, unit = float(limit["amount"]), limit["unit"]
    case.stage_unit, case.stage_started_at = unit, at
    case.warn_at = calendar.limit_end(wt, at, amount * WARN_AT, unit)
    case.due_at = calendar.limit_end(wt, at, amount, unit)
    case.red_at = calendar.limit_end(wt, at, amount * RED_AT, unit)


def _shift_clock(wt: calendar.WorkingTime, case: Case, since: datetime, at: datetime) -> float:
    """Move the stage's pending thresholds by the time spent on hold from `since` to `at`;
    returns that time in working seconds (for the handling-time statistics)."""
    unit = case.stage_unit or "working_hours"
    for name in ("warn_at", "due_at", "red_at"):
        moment = getattr(case, name)
        if moment is not None and moment > since:
            remaining = calendar.elapsed(wt, since, moment, unit)
            setattr(case, name, calendar.limit_end(wt, at, remaining / 3600, "working_hours")
                    if unit.startswith("working") else at + (moment - since))
    return wt.between(since, at)


# --- recipients ----------------------------------------------------------------------------


def _members_above_select(grid_path: Any, role: str) -> sa.Select:
    """Users with `role` in an area that contains the grid at `grid_path` (its street,
    district…)."""
    return (sa.select(Membership.user_id).join(Area, Area.id == Membership.area_id)
            .where(Membership.role == role, grid_path.startswith(Area.path)))


def _members_above(s: Session, case: Case, role: str) -> list[int]:
    grid_path = sa.select(Area.path).where(Area.id == case.area_id).scalar_subquery()
    return list(s.scalars(_members_above_select(grid_path, role)))


def _department_people(s: Session, department_id: int | None, heads_only: bool = False
                       ) -> list[int]:
    if department_id is None:
        return []
    stmt = sa.select(DepartmentMember.user_id).where(
        DepartmentMember.department_id == department_id)
    if heads_only:
        stmt = stmt.where(DepartmentMember.is_head)
    return list(s.scalars(stmt))


def _followers(s: Session, case: Case) -> list[int]:
    return list(s.scalars(sa.select(CaseFollower.user_id)
                          .where(CaseFollower.case_id == case.id)))


def _grid_workers(s: Session, case: Case) -> list[int]:
    return list(s.scalars(sa.select(Membership.user_id).where(
        Membership.area_id == case.area_id,
        Membership.role.in_(("grid_worker", "grid_chief")))))


def _notice_data(s: Session, case: Case, **extra: Any) -> dict:
    category = s.get(CaseCategory, case.category_id)
    return {"case_id": case.id, "code": case.code, "category": category.name,
            "address": case.address or "", "state": STATES[case.state],
            "state_en": case.state, **extra}


def _tell(s: Session, case: Case, kind: str, recipients: list[int | None], actor: Actor | None,
          **extra: Any) -> None:
    """Notify everyone concerned except the one who acted."""
    skip = actor.user_id if actor is not None else None
    notify(s, [r for r in recipients if r != skip], kind, _notice_data(s, case, **extra),
           collapse_key=f"case:{case.id}")


# --- timeline ------------------------------------------------------------------------------


def _event(s: Session, case: Case, actor: Actor | None, action: str, from_state: str | None,
           note: str | None = None, photo_ids: list[int] | None = None,
           to_state: str | None = None, **data: Any) -> None:
    s.add(CaseEvent(case_id=case.id, actor_id=actor.user_id if actor else None, action=action,
                    from_state=from_state, to_state=to_state or case.state, note=note,
                    photo_ids=photo_ids or [], data={k: v for k, v in data.items()
                                                      if v is not None}))


def timeline(s: Session, actor: Actor, case_id: int) -> list:
    case = get_case(s, actor, case_id)
    events = list(s.scalars(sa.select(CaseEvent).where(CaseEvent.case_id == case_id)
                            .order_by(CaseEvent.id)))
    if not sees_whole_case(s, actor, case):
        return _resident_timeline(s, actor, case, events)
    if CaseView(case, actor).reporter_id is None and case.reporter_id is not None:
        # the anonymous reporter's own entries do not name them either
        return [{c: getattr(e, c) for c in ("id", "at", "action", "from_state", "to_state",
                                            "note", "data", "photo_ids")}
                | {"actor_id": None if e.actor_id == case.reporter_id else e.actor_id}
                for e in events]
    return events


def _link_photos(s: Session, actor: Actor, case: Case, photo_ids: list[int]) -> None:
    for photo_id in photo_ids:
        storage.link(s, actor, photo_id, "case", case.id)


# --- intake --------------------------------------------------------------------------------

ROLE_CHANNELS = (("grid_worker", "worker_app"), ("grid_chief", "worker_app"),
                 ("resident", "resident_app"))
STAFF_CHANNELS = ("console", "wechat", "visit", "other_system")


def _channel(actor: Actor, asked: str | None) -> str:
    """The channel a report came by: the app the role uses, or what staff entered."""
    staff = bool(actor.roles & {"community_staff", "street_dispatcher", "admin",
                                "district_admin"})
    if asked is not None:
        if asked == "hotline":
            raise Invalid(field_errors("channel", "Hotline cases come through /cases/hotline."))
        if asked in STAFF_CHANNELS and staff or asked == _channel(actor, None):
            return asked
        raise Invalid(field_errors("channel", "You cannot enter cases for this channel."))
    for role, channel in ROLE_CHANNELS:
        if role in actor.roles:
            return channel
    return "console"


def private_category_ids() -> sa.Select:
    """Ids of the private categories (PRIVATE_CATEGORIES and their 小类)."""
    private = sa.select(CaseCategory.id).where(CaseCategory.code.in_(PRIVATE_CATEGORIES))
    return sa.select(CaseCategory.id).where(sa.or_(CaseCategory.id.in_(private),
                                                   CaseCategory.parent_id.in_(private)))


def published() -> sa.ColumnElement[bool]:
    """Cases the public may see (Open311): public ones (公开: Open311 apps' and grid
    workers' by default, residents' by their choice), never of a private category."""
    return sa.and_(Case.public, Case.category_id.not_in(private_category_ids()))


def _duplicates_of(s: Session, actor: Actor, category: CaseCategory, lon: float,
                   lat: float) -> sa.Select | None:
    """The duplicate rule: open cases of the same category within its radius, reported in
    its last N days, with their distance (`distance_m`). None when the actor may not learn
    of such cases (a private category and an actor who does not work in areas: residents do
    not learn of their neighbours' disputes)."""
    if not _works_in_areas(actor) and s.scalar(
            private_category_ids().where(CaseCategory.id == category.id)) is not None:
        return None
    point = sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), 4326)
    here, there = sa.cast(point, Geography), sa.cast(Case.location, Geography)
    # A bound in degrees first (a metre of longitude is the most degrees), so that the
    # geometry's GiST index finds the candidates; then the exact distance in metres.
    degrees = category.duplicate_radius_m / (111_320 * max(0.01, math.cos(math.radians(lat))))
    return (sa.select(Case.id, Case.code, Case.state, Case.joined_count, Case.address,
                      Case.reported_at, sa.func.ST_Distance(there, here).label("distance_m"))
            .where(Case.category_id == category.id, Case.state.in_(OPEN_STATES),
                   Case.reported_at >= sa.func.now() - timedelta(days=category.duplicate_days),
                   sa.func.ST_DWithin(Case.location, point, degrees * 1.01),
                   sa.func.ST_DWithin(there, here, category.duplicate_radius_m)))


def likely_duplicates(s: Session, actor: Actor, category: CaseCategory, lon: float,
                      lat: float, exclude_id: int | None = None,
                      radius_m: float | None = None) -> list[ResidentView]:
    """The ten nearest cases the duplicate rule (`_duplicates_of`) finds at a point (within
    `radius_m` too, if given), in the resident view with their `distance_m`."""
    query = _duplicates_of(s, actor, category, lon, lat)
    if query is None:
        return []
    query = query.where(Case.id != (exclude_id or -1))
    if radius_m is not None:
        query = query.where(query.selected_columns.distance_m <= radius_m)
    rows = s.execute(query.order_by(query.selected_columns.distance_m).limit(10)).all()
    if not rows:
        return []
    found = {c.id: c for c in s.scalars(sa.select(Case).where(
        Case.id.in_([r.id for r in rows])))}
    views = resident_views(s, actor, [found[r.id] for r in rows])
    for view_, row in zip(views, rows, strict=True):
        view_.distance_m = row.distance_m
    return views


# Built once (per-request construction of the expressions costs more than the lookup).
@functools.cache
def _intake_statement() -> sa.Select:
    """One round trip for what a report needs before it is written: the category, the grid
    at the point (:lon, :lat; without its boundary), a case id from the sequence unless
    :client_uuid was claimed already (a replay spends no number, so no case code) and the
    street dispatchers over that grid (who hear of the new case)."""
    grid = sa.orm.aliased(Area, areas.finest_grid(Area).subquery("grid").lateral(), name="grid")
    dispatchers = sa.func.array(
        _members_above_select(grid.path, "street_dispatcher").scalar_subquery())
    case_id = sa.case((idempotency.unclaimed(sa.bindparam("client_uuid", type_=sa.Uuid())),
                       sa.func.nextval(sa.func.pg_get_serial_sequence("cases", "id"))))
    return (sa.select(CaseCategory, grid, case_id.label("case_id"),
                      dispatchers.label("dispatchers"))
            .outerjoin(grid, sa.true())
            .where(CaseCategory.id == sa.bindparam("category_id"))
            .options(sa.orm.defer(grid.boundary)))


def _new_case(s: Session, category: CaseCategory, grid: Area, channel: str, data: dict,
              reporter_id: int | None, case_id: int | None = None) -> Case:
    at = now()
    if case_id is None:
        case_id = s.scalar(sa.select(sa.func.nextval(
            sa.func.pg_get_serial_sequence("cases", "id"))))
    case = Case(id=case_id, code=f"{grid.code[:6]}{at.astimezone(local_zone()):%Y%m%d}"
                                 f"{case_id:06d}",
                category_id=category.id, channel=channel, state="reported", area_id=grid.id,
                address=data.get("address"), description=data["description"],
                attributes=data.get("attributes") or {}, priority=category.priority,
                reporter_id=reporter_id, reporter_anonymous=data.get("anonymous", False),
                public=data.get("public", channel in PUBLISHED_CHANNELS),
                contact_name=data.get("contact_name"), external_ref=data.get("external_ref"),
                reported_at=at)
    if data.get("contact_phone"):
        case.contact_phone_enc = pii.encrypt(data["contact_phone"], "case.contact_phone")
        case.contact_phone_masked = pii.mask_phone(data["contact_phone"])
    if data.get("location") is not None:
        case.set_gps(data["location"])
    return case


def report_case(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None = None
                ) -> tuple[Case, list[dict], bool]:
    """Report a problem (上报). Returns the case, its likely duplicates and whether this
    request created it (False: a replay of the same client_uuid).

    With `self_handle` ({result, photo_ids}) a grid worker reports a problem they already
    solved on the spot (自行处置): the case starts handled and goes to verification.
    """
    actor.require("case:report")
    fix = data["location"]
    found = s.execute(_intake_statement(), {"category_id": data["category_id"],
                                            "lon": fix.lon, "lat": fix.lat,
                                            "client_uuid": client_uuid}).first()
    if client_uuid is not None:
        # No case id was drawn only when the UUID was claimed already (claims are kept):
        # this claim then finds that one (a replay, or a 409 for other content).
        prior = idempotency.claim(s, client_uuid, actor.user_id, "report_case", data,
                                  result=("case", found.case_id) if found else None)
        if prior is not None:
            case = get_case(s, actor, int(prior[1]))
            return case, [], False
    if found is None:
        raise NotFound("No such category")
    category, grid = found.CaseCategory, found.grid
    if grid is not None:
        s.info.setdefault("grid_paths", {})[grid.id] = grid.path
    if category.parent_id is None or not category.active:
        raise Invalid(field_errors("category_id", "Choose an active 小类 (sub-category)."))
    data["attributes"] = check_attributes(category, data.get("attributes") or {})
    if grid is None:
        raise Invalid(field_errors("location", "The point is outside every grid."))
    channel = _channel(actor, data.get("channel"))
    if data.get("public") and channel not in CHOOSE_PUBLIC_CHANNELS:
        raise Invalid(field_errors("public", "Only reporters' own words are published (a "
                                             "resident's or a grid worker's report); cases "
                                             "entered for others never are."))
    self_handle = data.get("self_handle")
    if self_handle is not None:
        actor.require("case:handle")
        if not (actor.roles & {"grid_worker", "grid_chief"}) or \
                not _area_in_scope(s, actor, grid.id):
            raise Forbidden("Only a worker of this grid can handle a problem on the spot")
        if category.result_photo_required and not self_handle.get("photo_ids"):
            raise Invalid({"json": {"self_handle": {"photo_ids": ["A result photo is "
                                                                  "required."]}}})
    duplicates = likely_duplicates(s, actor, category, fix.lon, fix.lat)
    case = _new_case(s, category, grid, channel, data, actor.user_id, found.case_id)
    if self_handle is not None:
        case.state, case.self_handled, case.result = "handled", True, self_handle["result"]
        case.accepted_at = case.dispatched_at = case.handled_at = case.reported_at
        case.handled_in_time, case.handling_working_s = True, 0.0
    _start_stage(s, case, case.reported_at)  # the clock goes in with the INSERT
    s.add(case)
    s.flush()
    s.add(CaseFollower(case_id=case.id, user_id=actor.user_id, kind="reporter"))
    _link_photos(s, actor, case, data.get("photo_ids") or [])
    _event(s, case, actor, "report", None, note=data["description"],
           photo_ids=data.get("photo_ids"), to_state="reported", channel=channel)
    if self_handle is not None:
        _link_photos(s, actor, case, self_handle.get("photo_ids") or [])
        _event(s, case, actor, "self_handle", "reported", note=self_handle["result"],
               photo_ids=self_handle.get("photo_ids"))
        _tell(s, case, "case_changed", _grid_workers(s, case) + (found.dispatchers or []),
              actor, action="自行处置待核查",
              action_en="self-handled, to verify")
    else:
        _tell(s, case, "case_new", found.dispatchers or [], actor)
    audit.record(s, actor, "case_reported", "case", case.id,
                 changes={"category": category.code, "channel": channel,
                          "self_handled": self_handle is not None})
    s.flush()
    return case, duplicates, True


def report_from_hotline(s: Session, actor: Actor, data: dict) -> tuple[Case, bool]:
    """A 12345 hotline ticket (server to server): idempotent by the ticket number — the
    same ticket again returns its case, the same number with other content is a 409."""
    ticket = data["ticket_no"]
    case, _, created = report_from_system(s, actor, data, "hotline", ticket,
                                          event_data={"ticket_no": ticket},
                                          audit_data={"ticket": ticket})
    return case, created


def report_from_system(s: Session, actor: Actor, data: dict, channel: str, ref: str | None,
                       *, category_field: str = "category_code",
                       event_data: dict | None = None, audit_data: dict | None = None
                       ) -> tuple[Case, list[dict], bool]:
    """A report another system sends server to server (12345 hotline, Open311 apps): the
    actor is the client's system actor, so there is no reporter user, only the contact
    it gave. `data` names the 小类 by `category_code` and the place by `location` (a GpsFix)
    or `grid_code`. Returns the case, its likely duplicates and whether it was created.

    With `ref`, the caller's own id of the report (unique per channel, kept as
    external_ref), it is idempotent: the same ref with the same content returns the
    original case (created False), with other content it is a 409.
    """
    content = idempotency.content_hash({k: v for k, v in data.items() if k != "location"}
                                       | {"location": _fix_key(data.get("location"))})
    if ref is not None:
        existing = s.scalars(sa.select(Case).where(Case.channel == channel,
                                                   Case.external_ref == ref)).first()
        if existing is not None:
            first = s.scalar(sa.select(CaseEvent.data["content_hash"].astext)
                             .where(CaseEvent.case_id == existing.id,
                                    CaseEvent.action == "report"))
            if first != content:
                raise Conflict("This reference was already used for other content",
                               existing={"id": existing.id, "code": existing.code})
            return existing, [], False
    category = get_category(s, code=data["category_code"])
    if category.parent_id is None or not category.active:
        raise Invalid(field_errors(category_field, "Choose an active 小类 (sub-category)."))
    data["attributes"] = check_attributes(category, data.get("attributes") or {})
    grid = _system_grid(s, data)
    fix = data.get("location")
    duplicates = [] if fix is None else likely_duplicates(s, actor, category, fix.lon, fix.lat)
    case = _new_case(s, category, grid, channel, data | {"external_ref": ref}, None)
    _start_stage(s, case, case.reported_at)  # the clock goes in with the INSERT
    s.add(case)
    try:
        with s.begin_nested():
            s.flush()
    except sa.exc.IntegrityError:  # the same reference arriving twice at the same moment
        if case in s:
            s.expunge(case)
        if ref is None:
            raise
        return report_from_system(s, actor, data, channel, ref, category_field=category_field,
                                  event_data=event_data, audit_data=audit_data)
    _event(s, case, None, "report", None, note=data["description"], channel=channel,
           **(event_data or {}), client=actor.request_id, content_hash=content,
           likely_duplicates=[d.id for d in duplicates] or None)
    _tell(s, case, "case_new", _members_above(s, case, "street_dispatcher"), None)
    audit.record(s, actor, "case_reported", "case", case.id,
                 changes={"category": category.code, "channel": channel,
                          **(audit_data or {})})
    s.flush()
    return case, duplicates, True


def _fix_key(fix: Any) -> Any:
    return None if fix is None else [fix.raw_lon, fix.raw_lat, fix.crs]


def _system_grid(s: Session, data: dict) -> Area:
    if data.get("location") is not None:
        grid = areas.grid_at(s, data["location"].lon, data["location"].lat)
        if grid is None:
            raise Invalid(field_errors("location", "The point is outside every grid."))
        return grid
    if data.get("grid_code"):
        grid = s.scalars(sa.select(Area).where(Area.code == data["grid_code"])).first()
        if grid is None:
            raise Invalid(field_errors("grid_code", "No such grid."))
        return grid
    raise Invalid(field_errors("location", "Give a location or a grid_code."))


# --- "me too", follow, merge -----------------------------------------------------------------


def _joined_users(s: Session, case: Case) -> int:
    """The accounts that joined `case` (me too, or whose own report was merged into it),
    its reporter apart."""
    return s.scalar(sa.select(sa.func.count()).where(
        CaseFollower.case_id == case.id, CaseFollower.kind == "joined",
        CaseFollower.user_id != sa.func.coalesce(case.reporter_id, -1)))


def _callers(s: Session, case: Case) -> int:
    """The people counted in joined_count who have no account (the 12345 callers of cases
    merged into it): joined_count beyond its joined accounts."""
    return case.joined_count - _joined_users(s, case)


def _add_joiner(s: Session, case: Case, user_id: int) -> bool:
    """`user_id` joins `case` (a mere follower becomes a joiner); False if they already
    had joined or reported it."""
    stmt = sa.dialects.postgresql.insert(CaseFollower).values(
        case_id=case.id, user_id=user_id, kind="joined")
    return s.execute(stmt.on_conflict_do_update(
        index_elements=[CaseFollower.case_id, CaseFollower.user_id],
        set_={"kind": "joined"}, where=CaseFollower.kind == "follower")
        .returning(CaseFollower.user_id)).first() is not None


def duplicate_lookup(s: Session, actor: Actor, category_id: int, fix: GpsFix,
                     radius_m: float | None, limit: tuple[int, int]) -> list[dict]:
    """The pre-report lookup (查重): the open cases of this 小类 that a report at `fix` would
    list as likely duplicates, in the resident view (PUBLIC_FIELDS), nearest first, at most
    ten, within `radius_m` if smaller than the category's radius. Needs case:report and is
    counted against `limit` ((lookups, seconds) per user): the lookup offers what may be
    joined, it is no directory of cases."""
    actor.require("case:report")
    category = get_category(s, category_id)
    if category.parent_id is None or not category.active:
        raise Invalid(field_errors("category_id", "Choose an active 小类 (sub-category).",
                                   location="query"))
    _count_lookup(s, actor, limit)
    return likely_duplicates(s, actor, category, fix.lon, fix.lat, radius_m=radius_m)


def _count_lookup(s: Session, actor: Actor, limit: tuple[int, int]) -> None:
    ratelimit.hit(s, f"case_lookup:{actor.user_id}", limit[0], limit[1],
                  "Too many duplicate lookups: try again later")


def join_case(s: Session, actor: Actor, case_id: int, data: dict,
              limit: tuple[int, int]) -> Case:
    """"Me too": a resident who sees the same problem joins the open case instead of filing
    anew: counted once, told of its progress, and shown its resident view from then on.

    Only a case the actor was offered can be joined (the ids of other cases are no way in):
    - `report_case_id`: one of the actor's own reports, whose likely duplicates (the
      duplicate rule at that report's point and category) include this case; or
    - `location` + `category_id`: the pre-report lookup the app made where the resident
      stands; the lookup there for that category offers this case. Counted against the
      lookup's limit, so joining is no faster a probe than looking up.
    Anything else is a 404, as for a case that does not exist."""
    actor.require("case:report")
    case = s.scalars(sa.select(Case).where(Case.id == case_id).with_for_update()).first()
    if case is None or case.state not in OPEN_STATES:
        raise NotFound("No such open case")
    if data.get("report_case_id") is not None:
        own = s.scalars(sa.select(Case).where(Case.id == data["report_case_id"],
                                              Case.reporter_id == actor.user_id)).first()
        if own is None:
            raise Invalid(field_errors("report_case_id", "Not a case you reported."))
        point = own.point
        offered = own.id != case.id and own.category_id == case.category_id \
            and point is not None and _offers(s, actor, case, *point)
    else:
        _count_lookup(s, actor, limit)
        fix = data["location"]
        offered = data["category_id"] == case.category_id and \
            _offers(s, actor, case, fix.lon, fix.lat)
    if not offered:
        raise NotFound("No such open case near you")
    if _add_joiner(s, case, actor.user_id):
        case.joined_count += 1
        _event(s, case, actor, "join", case.state)
        _tell(s, case, "case_joined", [case.reporter_id], actor, joined=case.joined_count + 1)
        s.flush()
    return case


def _offers(s: Session, actor: Actor, case: Case, lon: float, lat: float) -> bool:
    """The duplicate rule at (lon, lat) finds `case` (any case it finds, not only the ten
    nearest a suggestion lists)."""
    category = s.get(CaseCategory, case.category_id)
    near = _duplicates_of(s, actor, category, lon, lat)
    return near is not None and bool(s.scalar(sa.select(near.where(Case.id == case.id)
                                                        .exists())))


def follow_case(s: Session, actor: Actor, case_id: int, following: bool) -> None:
    case = get_case(s, actor, case_id)
    if following:
        s.execute(sa.dialects.postgresql.insert(CaseFollower)
                  .values(case_id=case.id, user_id=actor.user_id, kind="follower")
                  .on_conflict_do_nothing())
    else:
        s.execute(sa.delete(CaseFollower).where(CaseFollower.case_id == case.id,
                                                CaseFollower.user_id == actor.user_id,
                                                CaseFollower.kind == "follower"))


# --- the workflow --------------------------------------------------------------------------


def _relation_ok(s: Session, actor: Actor, case: Case, who: str) -> bool:
    if actor.unrestricted:
        return True
    in_area = _works_in_areas(actor) and _area_in_scope(s, actor, case.area_id)
    if who == "street":
        return in_area and bool(actor.roles & {"street_dispatcher", "district_admin"})
    if who == "department":
        if case.department_id is None and case.self_handled:
            # a self-handled case sent back by its checker: the grid's workers redo it
            return in_area and bool(actor.roles & {"grid_worker", "grid_chief"})
        if case.department_id not in actor.department_ids:
            return False
        if case.assignee_id is None or case.assignee_id == actor.user_id:
            return True
        return actor.user_id in _department_people(s, case.department_id, heads_only=True)
    if who == "evaluator":
        return may_evaluate(s, actor, case)
    if who == "verifier":
        if case.self_handled and case.reporter_id == actor.user_id:
            return False  # whoever solved it on the spot does not check their own work
        return in_area or case.reporter_id == actor.user_id
    if who == "involved":
        return in_area or case.reporter_id == actor.user_id or \
            case.department_id in actor.department_ids
    raise ValueError(who)


def may_evaluate(s: Session, actor: Actor, case: Case) -> bool:
    """Who evaluates (评价) or reopens a closed case: its resident reporter; for a case
    without one (a grid worker's, the console's, a hotline ticket), the residents who
    joined it ("me too", or their own report merged into it). Nobody else: a case with
    neither closes without a rating (evaluable_sql)."""
    if case.channel in RESIDENT_CHANNELS:
        return case.reporter_id is not None and case.reporter_id == actor.user_id
    return actor.user_id is not None and s.scalar(sa.select(sa.exists().where(
        CaseFollower.case_id == case.id, CaseFollower.user_id == actor.user_id,
        CaseFollower.kind == "joined"))) or False


def evaluable_sql() -> sa.ColumnElement[bool]:
    """SQL: someone may evaluate the case (may_evaluate) — a resident reporter, or anyone
    joined it. Migration 0011's roll-up trigger counts the same."""
    return sa.or_(Case.channel.in_(RESIDENT_CHANNELS), Case.joined_count > 0)


def _area_in_scope(s: Session, actor: Actor, area_id: int) -> bool:
    """areas.area_in_scope, without a round trip for a grid whose path this session noted
    (the grid an intake just located): the path against the actor's subtrees."""
    path = s.info.get("grid_paths", {}).get(area_id)
    if path is None:
        return areas.area_in_scope(s, actor, area_id)
    return areas.path_in_scope(actor, path)


def allowed_actions(s: Session, actor: Actor, case: Case, pending: bool | None = None
                    ) -> list[str]:
    """What this actor may do to this case now (409 bodies and the case's `actions`).
    `pending`: whether a request awaits a decision, when the caller knows (a new case has
    none); looked up otherwise."""
    candidates = [t for t in workflow.transitions_from(case.state)
                  if actor.can(t.permission) and _relation_ok(s, actor, case, t.who)]
    if not candidates:
        return []
    if pending is None:
        pending = _pending_request(s, case) is not None
    return [t.action for t in candidates
            if not (t.action in ("approve", "refuse") and not pending)
            and not (t.action in workflow.REQUEST_ACTIONS and pending)]


def _pending_request(s: Session, case: Case) -> CaseRequest | None:
    return s.scalars(sa.select(CaseRequest).where(CaseRequest.case_id == case.id,
                                                  CaseRequest.state == "pending")).first()


def _require(transition: workflow.Transition, data: dict) -> None:
    missing = {name: ["Required for this action."] for name in transition.requires
               if data.get(name) in (None, "", [])}
    if missing:
        raise Invalid({"json": missing})


def act(s: Session, actor: Actor, case_id: int, action: str, data: dict,
        expected: int | None, as_dict: Any) -> Case:
    """Apply one workflow action. 404 outside scope, 428 without a version, 412 stale,
    409 not possible in this state (with the allowed actions), 403 not yours, 422 data."""
    transition = workflow.BY_ACTION.get(action)
    if transition is None:
        raise NotFound(f"No such action {action!r}")
    case = get_case(s, actor, case_id, for_update=True)
    check_version(case, expected, lambda c: as_dict(c, allowed_actions(s, actor, c)))
    if case.state not in transition.sources:
        raise Conflict(f"Cannot {action} a case that is {case.state}",
                       allowed=allowed_actions(s, actor, case))
    actor.require(transition.permission)
    if not _relation_ok(s, actor, case, transition.who):
        raise Forbidden(f"This case is not yours to {action}")
    _require(transition, data)
    before = case.state
    at = now()
    handler = _HANDLERS[action]
    recipients, note = handler(s, actor, case, data, at)
    if transition.target is not None:
        case.state = transition.target
        _start_stage(s, case, at)
    photo_ids = data.get("photo_ids") or []
    _link_photos(s, actor, case, photo_ids)
    _event(s, case, actor, action, before, note=note, photo_ids=photo_ids,
           **{k: v for k, v in data.items() if k in ("department_id", "assignee_id",
                                                     "into_case_id", "rating",
                                                     "extension_hours", "request_id")})
    audit.record(s, actor, f"case_{action}", "case", case.id,
                 changes={"state": [before, case.state]})
    if recipients:
        _tell(s, case, "case_changed", recipients, actor, action=transition.label,
              action_en=action)
    s.flush()
    return case


def _case_people(s: Session, case: Case) -> list[int]:
    return _followers(s, case) + ([case.reporter_id] if case.reporter_id else [])


def _on_accept(s, actor, case, data, at):
    case.accepted_at = at
    return _case_people(s, case), data.get("note")


def _on_reject(s, actor, case, data, at):
    return _case_people(s, case), data["reason"]


def _on_merge(s, actor, case, data, at):
    kept = get_case(s, actor, data["into_case_id"], for_update=True)
    if kept.id == case.id or kept.state not in OPEN_STATES or kept.merged_into_id:
        raise Invalid(field_errors("into_case_id", "Merge into another open case."))
    case.merged_into_id = kept.id
    # joined_count counts people, not events: accounts once each, callers without one
    callers = _callers(s, kept) + _callers(s, case) + (case.reporter_id is None)
    followers = s.execute(sa.select(CaseFollower.user_id, CaseFollower.kind)
                          .where(CaseFollower.case_id == case.id)).all()
    # its reporter and joiners join the kept case, its followers follow it: each person
    # once, whether or not they had joined the kept case already
    joiners = {u for u, kind in followers if kind != "follower"} | (
        {case.reporter_id} if case.reporter_id else set())
    for user_id in joiners:
        _add_joiner(s, kept, user_id)
    for user_id in {u for u, kind in followers} - joiners:
        s.execute(sa.dialects.postgresql.insert(CaseFollower)
                  .values(case_id=kept.id, user_id=user_id, kind="follower")
                  .on_conflict_do_nothing())
    s.flush()
    kept.joined_count = _joined_users(s, kept) + callers
    ids = joiners | {u for u, _ in followers}
    _event(s, kept, actor, "merged_in", kept.state, note=data.get("note"),
           merged_case_id=case.id)
    return list(ids), data.get("note")


def _on_dispatch(s, actor, case, data, at):
    data["department_id"] = data.get("department_id") or suggested_department(s, case)
    if data["department_id"] is None:
        raise Invalid(field_errors("department_id", "This category has no department to "
                                                    "route to: name one."))
    department = s.get(Department, data["department_id"])
    if department is None:
        raise Invalid(field_errors("department_id", "No such department."))
    assignee = data.get("assignee_id")
    if assignee is not None and assignee not in _department_people(s, department.id):
        raise Invalid(field_errors("assignee_id", "Not a handler of that department."))
    case.department_id, case.assignee_id = department.id, assignee
    case.dispatched_at = case.dispatched_at or at
    targets = [assignee] if assignee else _department_people(s, department.id)
    _tell(s, case, "case_dispatched", targets, actor)
    return _case_people(s, case), data.get("note")


def _on_sign(s, actor, case, data, at):
    case.assignee_id = case.assignee_id or actor.user_id
    return _case_people(s, case), data.get("note")


def _on_return(s, actor, case, data, at):
    case.return_count += 1
    previous = case.department_id
    case.department_id = case.assignee_id = None
    return _members_above(s, case, "street_dispatcher"), \
        f"{data['reason']}（退回自部门 {previous}）"


def _on_handle(s, actor, case, data, at):
    category = s.get(CaseCategory, case.category_id)
    if category.result_photo_required and not data.get("photo_ids"):
        raise Invalid(field_errors("photo_ids", "This category needs a result photo."))
    wt = _working_time(s, case)
    case.result, case.handled_at = data["result"], at
    case.handled_in_time = case.due_at is None or at <= case.due_at
    case.handling_working_s = max(0.0, wt.between(case.dispatched_at or case.reported_at, at)
                                  - case.held_working_s)
    return (_grid_workers(s, case) + _members_above(s, case, "street_dispatcher")
            + _case_people(s, case)), data["result"]


def _on_verify(s, actor, case, data, at):
    return _members_above(s, case, "street_dispatcher"), data.get("note")


def _on_reject_result(s, actor, case, data, at):
    case.rework_count += 1
    people = _department_people(s, case.department_id)
    return (people or _grid_workers(s, case)), data["reason"]


def _on_close(s, actor, case, data, at):
    case.closed_at = at
    case.closed_in_time = bool(case.handled_in_time) and (case.due_at is None
                                                          or at <= case.due_at)
    return _case_people(s, case), data.get("note")


def _on_evaluate(s, actor, case, data, at):
    case.rating, case.rating_comment = data["rating"], data.get("comment")
    return _members_above(s, case, "street_dispatcher"), data.get("comment")


def _on_reopen(s, actor, case, data, at):
    if case.closed_at is None or at - case.closed_at > timedelta(days=REOPEN_DAYS):
        raise Conflict(f"A case can be reopened within {REOPEN_DAYS} days of closing",
                       allowed=[])
    case.rework_count += 1
    case.closed_at = case.closed_in_time = None
    return _members_above(s, case, "street_dispatcher"), data["reason"]


def _on_request(kind: str):
    def handler(s, actor, case, data, at):
        if _pending_request(s, case) is not None:
            raise Conflict("Another request on this case awaits a decision",
                           allowed=["approve", "refuse"])
        if kind == "extension" and not 0 < data["extension_hours"] <= 2000:
            raise Invalid(field_errors("extension_hours", "Between 0 and 2000 working hours."))
        request = CaseRequest(case_id=case.id, kind=kind, reason=data["reason"],
                              extension_hours=data.get("extension_hours")
                              if kind == "extension" else None,
                              requested_by=actor.user_id)
        s.add(request)
        s.flush()
        data["request_id"] = request.id
        _tell(s, case, "case_request", _members_above(s, case, "street_dispatcher"), actor,
              action=workflow.BY_ACTION[f"request_{kind}"].label, action_en=f"request {kind}",
              reason=data["reason"])
        return [], data["reason"]
    return handler


def _decide(approve: bool):
    def handler(s, actor, case, data, at):
        request = _pending_request(s, case)
        if request is None:
            raise Conflict("No request awaits a decision", allowed=[])
        if request.requested_by == actor.user_id:
            raise Forbidden("A request is decided by someone other than who made it")
        request.state = "approved" if approve else "refused"
        request.decided_by, request.decided_at = actor.user_id, at
        request.decision_note = data.get("reason") or data.get("note")
        data["request_id"] = request.id
        if approve:
            _apply_request(s, case, request, at)
        return [request.requested_by] + _case_people(s, case), \
            f"{request.kind}: {request.decision_note or ''}".strip(": ")
    return handler


def _apply_request(s: Session, case: Case, request: CaseRequest, at: datetime) -> None:
    if request.kind == "void":
        case.state = "voided"
        _start_stage(s, case, at)
    elif request.kind == "extension":
        wt = _working_time(s, case)
        seconds = request.extension_hours * 3600
        for name, share in (("warn_at", WARN_AT), ("due_at", 1.0), ("red_at", RED_AT)):
            moment = getattr(case, name)
            if moment is not None:
                setattr(case, name, wt.add(max(moment, at) if name != "warn_at" else moment,
                                           seconds * share))
    else:  # defer (缓办) or backlog (挂账): the clock stops until resumed
        case.held_from_state, case.hold_kind, case.held_at = case.state, request.kind, at
        case.state = "on_hold"


def _on_resume(s, actor, case, data, at):
    wt = _working_time(s, case)
    case.held_working_s += _shift_clock(wt, case, case.held_at, at)
    case.state, case.held_at, case.hold_kind = case.held_from_state, None, None
    case.held_from_state = None
    return _department_people(s, case.department_id) + _case_people(s, case), data.get("note")


_HANDLERS = {
    "accept": _on_accept, "reject": _on_reject, "merge": _on_merge, "dispatch": _on_dispatch,
    "sign": _on_sign, "return": _on_return, "handle": _on_handle, "verify": _on_verify,
    "reject_result": _on_reject_result, "close": _on_close, "evaluate": _on_evaluate,
    "reopen": _on_reopen, "request_extension": _on_request("extension"),
    "request_defer": _on_request("defer"), "request_backlog": _on_request("backlog"),
    "request_void": _on_request("void"), "approve": _decide(True), "refuse": _decide(False),
    "resume": _on_resume,
}
assert set(_HANDLERS) == set(workflow.BY_ACTION), "every transition needs its handler"


# --- the sweep (督办) ------------------------------------------------------------------------

CARDS = {1: ("黄牌", "yellow card"), 2: ("红牌", "red card")}


def sweep(s: Session, at: datetime | None = None) -> dict:
    """Mark overdue cases and escalate them: past due → yellow card (the street's
    dispatchers and the department's head), past 150 % → red card (also the district's
    leaders). Set-based: one UPDATE per level, then one read of the escalated cases, of the
    people to tell and of the timeline and notification rows each, whatever their number."""
    at = at or now()
    done = {}
    leaders = s.execute(
        sa.select(Membership.user_id, Membership.role, Area.path)
        .join(Area, Area.id == Membership.area_id)
        .where(Membership.role.in_(("street_dispatcher", "district_admin")))).all()
    heads: dict[int, list[int]] = {}
    for dept, user in s.execute(sa.select(DepartmentMember.department_id,
                                          DepartmentMember.user_id)
                                .where(DepartmentMember.is_head)):
        heads.setdefault(dept, []).append(user)
    for level, threshold in ((1, Case.due_at), (2, Case.red_at)):
        ids = s.execute(
            sa.update(Case).where(Case.state.in_(CLOCKED_STATES), threshold < at,
                                  Case.escalation < level)
            .values(escalation=level, overdue=True, version=Case.version + 1)
            .returning(Case.id)
            .execution_options(synchronize_session=False)).scalars().all()
        card, card_en = CARDS[level]
        done[card_en] = len(ids)
        if not ids:
            continue
        s.execute(sa.insert(CaseEvent), [
            {"case_id": i, "action": "escalate", "note": card, "data": {"level": level},
             "from_state": None, "to_state": None} for i in ids])
        escalated = s.execute(
            sa.select(Case.id, Case.code, Case.state, Case.address, Case.department_id,
                      CaseCategory.name.label("category"), Area.path)
            .join(CaseCategory, CaseCategory.id == Case.category_id)
            .join(Area, Area.id == Case.area_id).where(Case.id.in_(ids))).all()
        roles = ("street_dispatcher", "district_admin") if level == 2 else ("street_dispatcher",)
        messages = []
        for c in escalated:
            targets = [u for u, role, path in leaders if role in roles
                       and c.path.startswith(path)] + heads.get(c.department_id, [])
            data = {"case_id": c.id, "code": c.code, "category": c.category,
                    "address": c.address or "", "state": STATES[c.state], "state_en": c.state,
                    "card": card, "card_en": card_en}
            messages.append((targets, "case_escalated", data, f"case:{c.id}:escalation"))
        notify_each(s, messages)
    return done if any(done.values()) else {}


def compact_stats(s: Session) -> dict:
    """Fold each (day, grid, department) key of the daily roll-up into one row (the
    triggers append a row per change). Rows appended by transactions still running are not
    seen and are folded next time; two runs at once fold disjoint rows (the second's DELETE
    skips what the first removed). Keys adding up to no case are dropped."""
    t = CaseStatsDaily.__table__
    keys = (t.c.day, t.c.area_id, t.c.department_id)
    summed = [*STAT_COUNTS, "handling_s"]
    dup = sa.select(*keys).group_by(*keys).having(sa.func.count() > 1).cte("dup")
    gone = (sa.delete(t).where(t.c.day == dup.c.day, t.c.area_id == dup.c.area_id,
                               t.c.department_id.is_not_distinct_from(dup.c.department_id))
            .returning(*t.c).cte("gone"))
    folded = s.execute(sa.insert(t).from_select(
        ["day", "area_id", "department_id", *summed],
        sa.select(gone.c.day, gone.c.area_id, gone.c.department_id,
                  *[sa.func.sum(gone.c[n]) for n in summed])
        .group_by(gone.c.day, gone.c.area_id, gone.c.department_id)
        .having(sa.func.sum(gone.c.reported) != 0)).returning(t.c.id)).all()
    return {"folded_keys": len(folded)} if folded else {}


def register_sweep() -> None:
    from server.cli import PeriodicTask, periodic_tasks

    if not any(t.name == "case_sweep" for t in periodic_tasks):
        periodic_tasks.append(PeriodicTask("case_sweep", 60, lambda s: sweep(s)))
    if not any(t.name == "case_stats_compact" for t in periodic_tasks):
        periodic_tasks.append(PeriodicTask("case_stats_compact", 600, compact_stats))


register_sweep()


# --- queues --------------------------------------------------------------------------------


def _scope_parts(actor: Actor) -> list[sa.ColumnElement[bool]]:
    """visible() as disjoint parts — the actor's areas and departments, then their own
    cases outside those — for counting: each part is served by one index (an index-only
    scan of (area_id, state) for a street's open cases), whereas the OR of visible() makes
    PostgreSQL test every open case of the district."""
    scope, own = _scope_terms(actor)
    inside = scope(Case.area_id, Case.department_id)
    if own is None:
        return [inside]
    return [inside, sa.and_(own, sa.not_(sa.func.coalesce(inside, False)))]


def _conditions(s: Session, actor: Actor, f: dict) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of the queue's filters `f` (the scope apart)."""
    cond: list[sa.ColumnElement[bool]] = []
    if f.get("state"):
        cond.append(Case.state.in_(f["state"]))
    if f.get("open"):
        cond.append(Case.state.in_(OPEN_STATES))
    if f.get("category_id") is not None:
        sub = sa.select(CaseCategory.id).where(sa.or_(
            CaseCategory.id == f["category_id"], CaseCategory.parent_id == f["category_id"]))
        cond.append(Case.category_id.in_(sub))
    if f.get("area_id") is not None:
        area = areas.get_area(s, actor, f["area_id"])
        subtree = areas.subtree_ids(area)
        cond.append(Case.area_id.in_(subtree))
    if f.get("department_id") is not None:
        cond.append(Case.department_id == f["department_id"])
    if f.get("light"):
        cond.append(light_sql() == f["light"])
    if f.get("overdue") is not None:
        late = sa.and_(Case.state.in_(CLOCKED_STATES), Case.due_at < sa.func.now())
        cond.append(late if f["overdue"] else sa.not_(late))
    if f.get("escalation") is not None:
        cond.append(Case.escalation == f["escalation"])
    if f.get("assigned_to_me"):
        mine = sa.or_(Case.assignee_id == actor.user_id, sa.and_(
            Case.assignee_id.is_(None), Case.department_id.in_(actor.department_ids or [-1])))
        cond.append(mine)
    if f.get("reported_by_me"):
        cond.append(Case.reporter_id == actor.user_id)
    if f.get("bbox") is not None:
        cond.append(Case.location.intersects(
            sa.func.ST_MakeEnvelope(*f["bbox"], 4326)))
    if f.get("near") is not None:
        lon, lat, radius = f["near"]
        here = sa.cast(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), 4326), Geography)
        cond.append(sa.func.ST_DWithin(sa.cast(Case.location, Geography), here, radius))
    if f.get("reported_from"):
        cond.append(Case.reported_at >= f["reported_from"])
    if f.get("reported_to"):
        cond.append(Case.reported_at < f["reported_to"])
    return cond


SORTS = {"-reported_at": Case.reported_at.desc(), "reported_at": Case.reported_at.asc(),
         "due_at": Case.due_at.asc().nulls_last(), "priority": Case.priority.asc(),
         "-updated_at": Case.updated_at.desc()}


def list_cases(s: Session, actor: Actor, filters: dict, page: Any) -> list[Case]:
    actor.require("case:read")
    conditions = _conditions(s, actor, filters)
    stmt = (sa.select(Case).where(visible(actor), *conditions)
            .order_by(SORTS[filters.get("sort") or "-reported_at"], Case.id.desc()))
    counted = sa.union_all(*(sa.select(sa.literal(1)).select_from(Case).where(part, *conditions)
                             for part in _scope_parts(actor))).subquery("counted")
    return db.paginate(s, stmt, page, count=sa.select(sa.func.count()).select_from(counted))


def count_by_state(s: Session, actor: Actor, filters: dict) -> dict[str, int]:
    """Badges: how many cases per state under the same filters (state filter ignored)."""
    actor.require("case:read")
    conditions = _conditions(s, actor, {k: v for k, v in filters.items() if k != "state"})
    counted = sa.union_all(*(sa.select(Case.state).where(part, *conditions)
                             for part in _scope_parts(actor))).subquery("counted")
    rows = s.execute(sa.select(counted.c.state, sa.func.count())
                     .group_by(counted.c.state)).all()
    return {state: n for state, n in rows}


def requests_of(s: Session, actor: Actor, case_id: int) -> list[CaseRequest]:
    """The case's requests; in the resident view only the actor's own (the staff's
    requests, reasons and deciders are the office's business)."""
    case = get_case(s, actor, case_id)
    stmt = sa.select(CaseRequest).where(CaseRequest.case_id == case_id)
    if not sees_whole_case(s, actor, case):
        stmt = stmt.where(CaseRequest.requested_by == actor.user_id)
    return list(s.scalars(stmt.order_by(CaseRequest.id)))


def contact_of(s: Session, actor: Actor, case_id: int, purpose: audit.Purpose) -> dict:
    """The hotline caller's phone in clear, for a stated purpose (audited; a refusal too)."""
    try:  # 404 out of scope before 403 (ARCHITECTURE §3)
        case = get_case(s, actor, case_id)
        actor.require("case:accept")
    except (Forbidden, NotFound) as exc:
        raise audit.refused(s, actor, "case_contact_revealed", "case", case_id, purpose,
                            exc) from None
    audit.record(s, actor, "case_contact_revealed", "case", case.id, purpose=purpose)
    return {"contact_name": case.contact_name,
            "contact_phone": pii.decrypt(case.contact_phone_enc, "case.contact_phone")}


# --- presenting a case ---------------------------------------------------------------------


def sees_whole_case(s: Session, actor: Actor, case: Case) -> bool:
    """THE predicate of the two views of a case: its staff — an actor with case:read in
    whose areas (as staff) or departments the case lies — see the whole case (CaseView:
    reporter, contact, assignee, internal notes, every photo). Anyone else who sees it at
    all (its reporter, a resident who joined or follows it) sees the resident view."""
    if not actor.can("case:read"):
        return False
    if actor.unrestricted:
        return True
    if case.department_id is not None and case.department_id in actor.department_ids:
        return True
    return _works_in_areas(actor) and _area_in_scope(s, actor, case.area_id)


def _staff_case_ids(s: Session, actor: Actor, ids: list[int]) -> set[int]:
    """sees_whole_case for a page of cases, in one statement."""
    if not ids or not actor.can("case:read"):
        return set()
    scope, _ = _scope_terms(actor)
    return set(s.scalars(sa.select(Case.id).where(Case.id.in_(ids),
                                                  scope(Case.area_id, Case.department_id))))


class CaseView:
    """A case as its staff see it: the reporter hidden from handlers when the resident
    asked to stay anonymous, and the actions this actor may take now."""

    resident_view = False

    def __init__(self, case: Case, actor: Actor, actions: list[str] | None = None,
                 duplicates: list | None = None,
                 suggested_department_id: int | None = None) -> None:
        self._case = case
        self.actions = actions
        self.suggested_department_id = suggested_department_id
        self.likely_duplicates = duplicates
        hidden = case.reporter_anonymous and case.reporter_id != actor.user_id \
            and not actor.can("case:accept")
        self.reporter_id = None if hidden else case.reporter_id
        self.contact_name = None if hidden else case.contact_name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._case, name)


# What the resident view shows of a case (schemas.ResidentCaseSchema): no reporter, contact,
# assignee or staff member, no internal notes; the description and typed answers only to
# their author or when the case is public (公开: `Case.public`).
PUBLIC_FIELDS = ("id", "code", "category_id", "state", "area_id", "point", "address", "public",
                 "joined_count", "stage", "due_at", "reported_at", "accepted_at", "dispatched_at",
                 "handled_at", "closed_at", "result", "rating", "version")


class ResidentView:
    """A case in the resident view (居民视图), for whoever is not its staff."""

    resident_view = True

    def __init__(self, case: Case, actor: Actor, relation: str | None,
                 department_name: str | None, actions: list[str] | None = None) -> None:
        for name in PUBLIC_FIELDS:
            setattr(self, name, getattr(case, name))
        own = case.reporter_id is not None and case.reporter_id == actor.user_id
        words = own or case.public
        self.description = case.description if words else None
        self.attributes = case.attributes if words else None
        self.relation = "reporter" if own else relation
        self.department_name = department_name
        self.light = light_of(case)
        self.actions = actions
        self.likely_duplicates: list | None = None
        self.distance_m: float | None = None


def resident_views(s: Session, actor: Actor, cases: list[Case],
                   actions: dict[int, list[str]] | None = None) -> list[ResidentView]:
    """The resident view of each case (two statements, whatever their number)."""
    ids = [c.id for c in cases]
    relations = dict(s.execute(sa.select(CaseFollower.case_id, CaseFollower.kind).where(
        CaseFollower.case_id.in_(ids), CaseFollower.user_id == actor.user_id)).all()) \
        if actor.user_id is not None and ids else {}
    departments = _department_names(s, {c.department_id for c in cases})
    return [ResidentView(c, actor, relations.get(c.id), departments.get(c.department_id),
                         (actions or {}).get(c.id)) for c in cases]


def _department_names(s: Session, ids: set[int | None]) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    return dict(s.execute(sa.select(Department.id, Department.name)
                          .where(Department.id.in_(ids))).all()) if ids else {}


def present(s: Session, actor: Actor, cases: list[Case]) -> list[CaseView | ResidentView]:
    """A page of cases, each in the view sees_whole_case gives this actor."""
    staff = _staff_case_ids(s, actor, [c.id for c in cases])
    residents = iter(resident_views(s, actor, [c for c in cases if c.id not in staff]))
    return [CaseView(c, actor) if c.id in staff else next(residents) for c in cases]


def view(s: Session, actor: Actor, case: Case, duplicates: list | None = None,
         new: bool = False) -> CaseView | ResidentView:
    """One case with the actions this actor may take now, in its view (sees_whole_case).
    `new`: the case was created in this transaction (no request can be pending)."""
    actions = allowed_actions(s, actor, case, pending=False if new else None)
    return shown(s, actor, case, actions, duplicates)


def shown(s: Session, actor: Actor, case: Case, actions: list[str],
          duplicates: list | None = None) -> CaseView | ResidentView:
    """The case in the view sees_whole_case gives this actor, with `actions`."""
    if not sees_whole_case(s, actor, case):
        resident = resident_views(s, actor, [case], {case.id: actions})[0]
        resident.likely_duplicates = duplicates
        return resident
    suggested = suggested_department(s, case) if "dispatch" in actions else None
    return CaseView(case, actor, actions, duplicates, suggested)


# Timeline entries whose note a resident reads: the refusal's reason and the result (as
# Open311 publishes them); other notes are the staff's working notes.
PUBLIC_NOTES = ("reject", "handle", "self_handle")
# Entries whose photos a resident sees: the result of the work (处置结果照片); the other
# photos (the report's, the verification's) may show people and places, so a resident sees
# only those they took themselves.
PUBLIC_PHOTOS = ("handle", "self_handle")
DEPARTMENT_ACTIONS = ("dispatch", "sign", "return", "handle", "request_extension",
                      "request_defer", "request_backlog")


@dataclass
class ResidentEvent:
    """A line of the public timeline (schemas.ResidentEventSchema)."""

    id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str | None
    note: str | None
    department_name: str | None
    photo_ids: list[int]
    resident_view = True


def _resident_timeline(s: Session, actor: Actor, case: Case, events: list[CaseEvent]
                       ) -> list[ResidentEvent]:
    """The public timeline: the steps that moved the case (and joins, merges), by
    department name only, with public notes and photos (PUBLIC_NOTES, PUBLIC_PHOTOS)."""
    departments = _department_names(s, {e.data.get("department_id") for e in events}
                                    | {case.department_id})
    own_words = case.reporter_id == actor.user_id or case.public
    lines, department = [], None
    for e in events:
        if e.action == "dispatch":
            department = e.data.get("department_id")
        if e.action not in ("report", "join", "merged_in") and e.from_state == e.to_state:
            continue  # requests, decisions that left the state, 督办: the office's business
        mine = e.actor_id is not None and e.actor_id == actor.user_id
        public_note = e.action in PUBLIC_NOTES or mine or (e.action == "report" and own_words)
        lines.append(ResidentEvent(
            e.id, e.at, e.action, e.from_state, e.to_state,
            note=e.note if public_note else None,
            department_name=departments.get(department)
            if e.action in DEPARTMENT_ACTIONS else None,
            photo_ids=list(e.photo_ids) if e.action in PUBLIC_PHOTOS or mine else []))
        if e.action == "return":
            department = None
    return lines


def _case_photo_shown(s: Session, actor: Actor, attachment: Any) -> bool:
    """A case's photo for an actor who may see the case: all of them for its staff; in
    the resident view, the results' photos and the actor's own."""
    if attachment.uploaded_by is not None and attachment.uploaded_by == actor.user_id:
        return True
    case = s.get(Case, attachment.object_id)
    if case is None or sees_whole_case(s, actor, case):
        return case is not None
    return s.scalar(sa.select(sa.exists().where(
        CaseEvent.case_id == case.id, CaseEvent.action.in_(PUBLIC_PHOTOS),
        attachment.id == sa.any_(CaseEvent.photo_ids)))) or False


storage.attachment_filters["case"] = _case_photo_shown


# --- statistics (综合评价) ------------------------------------------------------------------

GRADES = (("A", 90), ("B", 75), ("C", 60), ("D", 40))


def _rate(part: Any, whole: Any) -> Any:
    return sa.func.round(sa.cast(100.0 * part / sa.func.nullif(whole, 0), sa.Numeric), 2)


def _contributions() -> list:
    """What one case adds to each column of CaseStatsDaily (the same as migration 0009's
    trigger adds: a test compares the two)."""
    def one(cond: Any) -> Any:
        return sa.case((cond, 1), else_=0)

    dispatched = sa.and_(Case.dispatched_at.is_not(None), sa.not_(Case.self_handled))
    return [
        sa.literal(1).label("reported"), one(Case.accepted_at.is_not(None)).label("accepted"),
        one(dispatched).label("dispatched"),
        one(sa.and_(dispatched, Case.return_count == 0)).label("correctly_dispatched"),
        one(Case.handled_at.is_not(None)).label("handled"),
        one(Case.handled_in_time.is_(True)).label("handled_in_time"),
        one(Case.closed_at.is_not(None)).label("closed"),
        one(Case.closed_in_time.is_(True)).label("closed_in_time"),
        one(Case.self_handled).label("self_handled"),
        sa.cast(Case.rework_count, sa.Integer).label("reworks"),
        one(Case.rework_count > 0).label("reworked"),
        one(Case.rating.is_not(None)).label("rated"), one(Case.rating >= 4).label("satisfied"),
        one(Case.handling_working_s.is_not(None)).label("handling_n"),
        one(sa.and_(Case.closed_at.is_not(None), evaluable_sql())).label("evaluable"),
        sa.func.coalesce(Case.handling_working_s, 0.0).label("handling_s"),
    ]


def _measures(c: Any) -> list:
    """The figures of a group from the summed columns of `c` (a union of roll-up rows and
    cases' contributions)."""
    def total(name: str) -> Any:
        return sa.func.coalesce(sa.func.sum(c[name]), 0)

    accepted, dispatched = total("accepted"), total("dispatched")
    correct, handled, in_time = total("correctly_dispatched"), total("handled"), \
        total("handled_in_time")
    closed, closed_in_time, rated = total("closed"), total("closed_in_time"), total("rated")
    return [
        total("reported").label("reported"), accepted.label("accepted"),
        dispatched.label("dispatched"), correct.label("correctly_dispatched"),
        _rate(correct, dispatched).label("correct_dispatch_rate"),
        handled.label("handled"), in_time.label("handled_in_time"),
        (handled - in_time).label("handled_late"),
        _rate(in_time, handled).label("on_time_handling_rate"),
        handled.label("due_for_closure"), closed.label("closed"),
        _rate(closed, accepted).label("closure_rate"),
        closed_in_time.label("closed_in_time"),
        _rate(closed_in_time, closed).label("on_time_closure_rate"),
        total("self_handled").label("self_handled"), total("reworks").label("reworks"),
        _rate(total("reworked"), handled).label("rework_rate"),
        sa.func.round(sa.cast(sa.func.sum(c.handling_s) / sa.func.nullif(
            sa.func.sum(c.handling_n), 0) / 3600, sa.Numeric), 2).label("mean_handling_hours"),
        total("evaluable").label("evaluable"), rated.label("rated"),
        _rate(total("satisfied"), rated).label("satisfaction_rate"),
    ]


def _score(row: dict, max_accepted: int, weights: dict) -> None:
    """立案数分值×w1 + 结案率×w2 + 按期处置率×w3 + (1−返工率)×w4, each on 0–100; the
    立案数 score is relative to the busiest row of the same table."""
    parts = {
        "accepted": 100.0 * row["accepted"] / max_accepted if max_accepted else None,
        "closure_rate": row["closure_rate"],
        "on_time_handling_rate": row["on_time_handling_rate"],
        "no_rework": None if row["rework_rate"] is None else 100 - float(row["rework_rate"]),
    }
    if row["accepted"] == 0 or any(v is None for v in parts.values()):
        row["score"], row["grade"] = None, None
        return
    # Graded on the score as shown: the rates are already rounded to 0.01 (5/6 → 83.33), so
    # an exact 90 can come out as 89.998 (and float sums drift): one figure, one grade.
    row["score"] = round(sum(float(parts[k]) * weights[k] for k in parts), 2)
    row["grade"] = next((g for g, floor in GRADES if row["score"] >= floor), "E")


def _scored(rows: list[dict], weights: dict) -> list[dict]:
    for row in rows:
        for key, value in row.items():
            if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):
                row[key] = float(value)  # Decimal from round(numeric)
    top = max((r["accepted"] for r in rows), default=0)
    for row in rows:
        _score(row, top, weights)
    return rows


def _whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The UTC days lying wholly in [start, end), as [first midnight, last midnight)."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    last = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (first, last) if first < last else None


def performance(s: Session, actor: Actor, filters: dict, weights: dict) -> dict:
    """The evaluation of one period (cases reported in [from, to), each counted as it is
    now), for everything the actor may see under the filters: the total, per department,
    per grid. All in SQL, one statement.

    The whole days of the period are read from the daily roll-up (CaseStatsDaily), within
    the actor's areas and departments; the cases of the partial days at either end, and
    those the actor sees only as reporter or follower, are added from `cases` directly.
    """
    actor.require("stats:read")
    start, end = filters["start"], filters["end"]
    case_cond = [Case.state != "merged"]
    daily_cond = []
    if filters.get("area_id") is not None:
        area = areas.get_area(s, actor, filters["area_id"])
        case_cond.append(Case.area_id.in_(areas.subtree_ids(area)))
        daily_cond.append(CaseStatsDaily.area_id.in_(areas.subtree_ids(area)))
    if filters.get("department_id") is not None:
        case_cond.append(Case.department_id == filters["department_id"])
        daily_cond.append(CaseStatsDaily.department_id == filters["department_id"])
    dims = (CaseStatsDaily.day, CaseStatsDaily.area_id, CaseStatsDaily.department_id)
    summed = [CaseStatsDaily.__table__.c[n] for n in (*STAT_COUNTS, "handling_s")]

    def cases_in(*cond: Any) -> sa.Select:
        return sa.select(Case.area_id, Case.department_id, *_contributions()).where(
            *case_cond, *cond)

    days = _whole_days(start, end)
    if days is None:
        parts = [cases_in(visible(actor), Case.reported_at >= start, Case.reported_at < end)]
    else:
        first, last = days
        # the roll-up is kept per area and department: the scope's own terms
        scope, extra = _scope_terms(actor)
        parts = [
            # added up per grid × department first: ~400 rows into the GROUPING SETS below
            # instead of the period's ~150,000
            sa.select(*dims[1:], *[sa.func.sum(c).label(c.key) for c in summed]).where(
                CaseStatsDaily.day >= first.date(), CaseStatsDaily.day < last.date(),
                scope(CaseStatsDaily.area_id, CaseStatsDaily.department_id), *daily_cond)
            .group_by(*dims[1:]),
            cases_in(visible(actor), sa.or_(
                sa.and_(Case.reported_at >= start, Case.reported_at < first),
                sa.and_(Case.reported_at >= last, Case.reported_at < end))),
        ]
        if extra is not None:
            parts.append(cases_in(Case.reported_at >= first, Case.reported_at < last, extra,
                                  sa.not_(sa.func.coalesce(
                                      scope(Case.area_id, Case.department_id), False))))
    c = sa.union_all(*parts).subquery("c")
    # grouping(): 3 = the total, 1 = per department, 2 = per grid
    level = sa.func.grouping(c.c.department_id, c.c.area_id).label("level")
    rows = [dict(r._mapping) for r in s.execute(
        sa.select(level, c.c.department_id, c.c.area_id, *_measures(c.c))
        .group_by(sa.text("GROUPING SETS ((), (c.department_id), (c.area_id))")))]
    # a group whose cases all left it (moved, merged) leaves rows adding up to nothing
    rows = [r for r in rows if r["level"] == 3 or r["reported"]]
    names = {("d", r.id): r for r in s.execute(sa.select(Department.id, Department.code,
                                                         Department.name))}
    grid_ids = [r["area_id"] for r in rows if r["level"] == 2]
    names |= {("a", r.id): r for r in s.execute(
        sa.select(Area.id, Area.code, Area.name).where(Area.id.in_(grid_ids or [-1])))}

    def named(kind: str, key: str, level_: int) -> list[dict]:
        out = []
        for r in rows:
            if r["level"] == level_ and r[key] is not None:
                ref = names[(kind, r[key])]
                out.append({"id": ref.id, "code": ref.code, "name": ref.name,
                            **{k: v for k, v in r.items()
                               if k not in ("level", "department_id", "area_id")}})
        return sorted(out, key=lambda x: x["code"])

    empty = {k: 0 for k in ("reported", "accepted", "dispatched", "correctly_dispatched",
                            "handled", "handled_in_time", "handled_late", "due_for_closure",
                            "closed", "closed_in_time", "self_handled", "reworks",
                            "evaluable", "rated")}
    total = next(({k: v for k, v in r.items() if k not in ("level", "department_id",
                                                           "area_id")}
                  for r in rows if r["level"] == 3), None) or {
        **empty, **{k: None for k in ("correct_dispatch_rate", "on_time_handling_rate",
                                      "closure_rate", "on_time_closure_rate", "rework_rate",
                                      "mean_handling_hours", "satisfaction_rate")}}
    total = _scored([total], weights)[0]
    departments = _scored(named("d", "department_id", 1), weights)
    grids = _scored(named("a", "area_id", 2), weights)
    return {"start": filters["start"], "end": filters["end"], "weights": weights,
            "total": total, "departments": departments, "grids": grids}
