"""Visits (走访), visit policies (走访频次) and the worker's to-do list.

Rules:
- scope: a visit belongs to its target's grid (`area_id`) and exists for an actor only in
  their scope (404 otherwise); its target must be in their scope when it is recorded.
- GPS: where the visit happened must lie in one of the visitor's grids (422 naming the grid
  it falls in, as the register answers).
- a visit is recorded once (client UUID idempotency) and never edited, except that its
  follow-up is completed once (with the version it was based on).
- key-person groups (重点人员) stay invisible to actors without person:read_key_tags: their
  policies do not exist for them, their due visits never reach their list, and visits marked
  confidential are not listed to them.
- policies: the most specific area's row wins (a grid's over its community's over its
  district's…); with no row DEFAULT_POLICIES applies; a group with neither is not scheduled.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.areas.models import Area
from grid.registry import scope
from grid.registry.models import (
    CARE_TAGS,
    KEY_TAGS,
    Building,
    House,
    Household,
    Organisation,
    Person,
    PersonTag,
)
from grid.visits.models import DEFAULT_POLICIES, Visit, VisitPolicy
from server import audit, db, idempotency
from server.auth.actor import Actor
from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    Stale,
    check_version,
    field_errors,
)
from server.storage import service as storage

TARGETS: dict[str, type] = {"household": Household, "person": Person,
                            "organisation": Organisation}
# A phone's clock may run a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)
# /me/tasks returns at most this many due visits and as many records to review (with totals).
TASKS_MAX = 500
KEY_TAGS_PERMISSION = "person:read_key_tags"


def _now() -> datetime:
    return datetime.now(UTC)


# --- visits: reading -----------------------------------------------------------------------


def scoped_visits(actor: Actor) -> sa.Select:
    """`SELECT visits` limited to the actor's grids (and to visits they may see)."""
    actor.require("registry:read")
    stmt = sa.select(Visit).where(areas.in_scope(Visit.area_id, actor))
    if not actor.can(KEY_TAGS_PERMISSION):
        stmt = stmt.where(Visit.confidential.is_(False))
    return stmt


def get_visit(s: Session, actor: Actor, visit_id: int, *, for_update: bool = False) -> Visit:
    stmt = scoped_visits(actor).where(Visit.id == visit_id)
    visit = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if visit is None:
        raise NotFound("No such visit")
    return visit


def list_visits(s: Session, actor: Actor, filters: dict, page: Any) -> list[Visit]:
    """Visits in scope, newest first, filtered by target, worker, type, time, area subtree."""
    stmt = scoped_visits(actor).order_by(Visit.visited_at.desc(), Visit.id.desc())
    for name in ("person_id", "household_id", "organisation_id", "worker_id", "type"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Visit, name) == filters[name])
    if filters.get("since") is not None:
        stmt = stmt.where(Visit.visited_at >= filters["since"])
    if filters.get("until") is not None:
        stmt = stmt.where(Visit.visited_at < filters["until"])
    if filters.get("area_id") is not None:
        root = areas.get_area(s, actor, filters["area_id"])
        stmt = stmt.where(Visit.area_id.in_(
            sa.select(Area.id).where(Area.path.startswith(root.path, autoescape=True))))
    return db.paginate(s, stmt, page)


# --- visits: writing -----------------------------------------------------------------------


def _target(s: Session, actor: Actor, fields: dict) -> tuple[str, Any]:
    """The one target named by the request, in the actor's scope and not ended."""
    named = [(kind, fields[f"{kind}_id"]) for kind in TARGETS
             if fields.get(f"{kind}_id") is not None]
    if len(named) != 1:
        raise Invalid(field_errors("_schema", "Name exactly one of household_id, person_id, "
                                              "organisation_id."))
    kind, target_id = named[0]
    record = scope.get_record(s, actor, TARGETS[kind], target_id)
    if record.ended_at is not None:
        raise Invalid(field_errors(f"{kind}_id", f"This {kind}'s record has ended "
                                                 f"({record.end_reason or 'ended'})."))
    return kind, record


def _check_point(s: Session, actor: Actor, fix: GpsFix) -> None:
    """The visit happened in one of the visitor's grids (422 naming the grid otherwise)."""
    areas.collector_grid(s, actor, fix.lon, fix.lat)


def create_visit(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None
                 ) -> tuple[Visit, bool]:
    """Record a visit; the same client UUID with the same content returns the first one.
    Returns the visit and whether this request created it (False: a replay)."""
    actor.require("visit:write")
    if client_uuid is not None:
        prior = idempotency.claim(s, client_uuid, actor.user_id, "create_visit", data)
        if prior is not None:
            return get_visit(s, actor, int(prior[1])), False
    fields = dict(data)
    fix: GpsFix = fields.pop("location")
    if fields.get("confidential") and not actor.can(KEY_TAGS_PERMISSION):
        raise Forbidden("Only roles that see key-person groups mark visits confidential",
                        required=KEY_TAGS_PERMISSION)
    kind, target = _target(s, actor, fields)
    now = _now()
    visited_at = fields.pop("visited_at", None) or now
    if visited_at > now + CLOCK_SKEW:
        raise Invalid(field_errors("visited_at", "Lies in the future."))
    _check_point(s, actor, fix)
    visit = Visit(area_id=target.area_id, worker_id=actor.user_id, visited_at=visited_at,
                  **fields)
    visit.set_gps(fix)
    s.add(visit)
    s.flush()
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, "visit", visit.id)
    for photo_id in visit.photo_ids or ():
        storage.link(s, actor, photo_id, "visit", visit.id)  # the worker's own uploads only
    audit.record(s, actor, "visit_created", "visit", visit.id, changes={
        "target": {"type": kind, "id": target.id}, "type": visit.type,
        "visited_at": visit.visited_at.isoformat(), "area_id": visit.area_id,
        "photos": len(visit.photo_ids or ()), "follow_up": visit.follow_up is not None,
        "confidential": bool(visit.confidential)})
    return visit, True


def complete_follow_up(s: Session, actor: Actor, visit_id: int, result: str | None,
                       expected_version: int | None) -> Visit:
    """Record that a visit's follow-up was done (once). The only change a visit takes."""
    actor.require("visit:write")
    visit = get_visit(s, actor, visit_id, for_update=True)
    if visit.follow_up is None:
        raise Conflict("This visit has no follow-up to complete", allowed=[])
    if visit.follow_up_done_at is not None:
        if visit.follow_up_result == result:
            return visit  # a phone resending the same completion
        raise Conflict("The follow-up was already completed", allowed=[], current=visit)
    check_version(visit, expected_version)
    visit.follow_up_done_at = _now()
    visit.follow_up_done_by = actor.user_id
    visit.follow_up_result = result
    s.flush()
    s.refresh(visit)
    audit.record(s, actor, "visit_follow_up_done", "visit", visit.id,
                 changes={"follow_up_done_at": visit.follow_up_done_at.isoformat()})
    return visit


# --- policies ------------------------------------------------------------------------------


def visible_tags(actor: Actor) -> dict[str, str]:
    """The groups (tag → label) this actor may know of."""
    if actor.can(KEY_TAGS_PERMISSION):
        return {**CARE_TAGS, **KEY_TAGS}
    return dict(CARE_TAGS)


def _tag_kind(actor: Actor, tag: str) -> str:
    if tag in CARE_TAGS:
        return "care"
    if tag in KEY_TAGS and actor.can(KEY_TAGS_PERMISSION):
        return "key"
    raise NotFound("No such tag")  # key-person groups do not exist for this role


def list_policies(s: Session, actor: Actor, filters: dict, page: Any) -> list[VisitPolicy]:
    """Policy rows set in the areas the actor can see (their subtrees and ancestors)."""
    actor.require("registry:read")
    stmt = (sa.select(VisitPolicy)
            .where(VisitPolicy.area_id.in_(areas.visible_area_ids(actor)),
                   VisitPolicy.tag.in_(list(visible_tags(actor))))
            .order_by(VisitPolicy.area_id, VisitPolicy.tag))
    if filters.get("area_id") is not None:
        stmt = stmt.where(VisitPolicy.area_id == filters["area_id"])
    if filters.get("tag") is not None:
        _tag_kind(actor, filters["tag"])
        stmt = stmt.where(VisitPolicy.tag == filters["tag"])
    return db.paginate(s, stmt, page)


def effective_policies(s: Session, actor: Actor, area_id: int) -> list[dict]:
    """For every group the actor may know of: how often its people in `area_id` are to be
    visited, and where that comes from (the nearest area up the tree with a row, or the
    default; `interval_days` None: not scheduled)."""
    actor.require("registry:read")
    area = areas.get_area(s, actor, area_id)
    chain = areas.ids_on_path(area.path)  # top first
    tags = visible_tags(actor)
    rows = s.execute(
        sa.select(VisitPolicy, Area.code, Area.name).join(Area, Area.id == VisitPolicy.area_id)
        .where(VisitPolicy.area_id.in_(chain), VisitPolicy.tag.in_(list(tags)))
    ).all()
    nearest: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: chain.index(r.VisitPolicy.area_id)):
        nearest[row.VisitPolicy.tag] = row  # deeper rows come later and win
    out = []
    for tag, label in tags.items():
        row = nearest.get(tag)
        item = {"tag": tag, "label": label, "kind": "key" if tag in KEY_TAGS else "care"}
        if row is not None:
            item.update(interval_days=row.VisitPolicy.interval_days, source="area",
                        policy_id=row.VisitPolicy.id, area_id=row.VisitPolicy.area_id,
                        area_code=row.code, area_name=row.name,
                        version=row.VisitPolicy.version)
        else:
            item.update(interval_days=DEFAULT_POLICIES.get(tag),
                        source="default" if tag in DEFAULT_POLICIES else "none")
        out.append(item)
    return out


def _policy_area(s: Session, actor: Actor, area_id: int) -> Area:
    """An area whose policies the actor may change: one of their own subtrees."""
    actor.require("registry:import")
    area = s.scalars(sa.select(Area).where(Area.id == area_id,
                                           areas.in_scope(Area.id, actor))).first()
    if area is None:
        raise NotFound("No such area")
    return area


def _policy_row(s: Session, area_id: int, tag: str) -> VisitPolicy | None:
    return s.scalars(sa.select(VisitPolicy).where(VisitPolicy.area_id == area_id,
                                                  VisitPolicy.tag == tag)
                     .with_for_update()).first()


def set_policy(s: Session, actor: Actor, area_id: int, tag: str, interval_days: int,
               expected_version: int | None) -> tuple[VisitPolicy, bool]:
    """Set how often `tag`'s people in `area_id`'s subtree are visited. Creating needs no
    version; replacing an existing row needs the version it was based on (428/412).
    Returns the row and whether it was created."""
    _tag_kind(actor, tag)
    area = _policy_area(s, actor, area_id)
    row = _policy_row(s, area.id, tag)
    if row is None and expected_version is None:
        # Two consoles creating the same row at once: the second one finds the first's.
        new_id = s.scalar(insert(VisitPolicy).values(
            area_id=area.id, tag=tag, interval_days=interval_days, updated_by=actor.user_id,
            version=1).on_conflict_do_nothing(constraint="uq_visit_policies_area_tag")
            .returning(VisitPolicy.id))
        if new_id is not None:
            row = s.get(VisitPolicy, new_id)
            audit.record(s, actor, "visit_policy_set", "visit_policy", row.id, changes={
                "area_id": area.id, "tag": tag, "interval_days": [None, interval_days]})
            return row, True
        row = _policy_row(s, area.id, tag)
    if row is None:
        raise PreconditionFailed("This policy no longer exists", current=None)
    check_version(row, expected_version)
    if row.interval_days != interval_days:
        old = row.interval_days
        row.interval_days, row.updated_by = interval_days, actor.user_id
        s.flush()
        s.refresh(row)
        audit.record(s, actor, "visit_policy_set", "visit_policy", row.id, changes={
            "area_id": area.id, "tag": tag, "interval_days": [old, interval_days]})
    return row, False


def delete_policy(s: Session, actor: Actor, area_id: int, tag: str,
                  expected_version: int | None) -> None:
    """Remove an area's policy: its people fall back to the next area up (or the default)."""
    _tag_kind(actor, tag)
    area = _policy_area(s, actor, area_id)
    row = _policy_row(s, area.id, tag)
    if row is None:
        raise NotFound("No such policy")
    if expected_version is not None and expected_version != row.version:
        raise Stale(row, "This policy changed since you read it")
    audit.record(s, actor, "visit_policy_removed", "visit_policy", row.id, changes={
        "area_id": area.id, "tag": tag, "interval_days": [row.interval_days, None]})
    s.delete(row)


def policy_interval(tag: Any, area_path: Any) -> sa.ColumnElement:
    """SQL: the interval (days) for `tag` in the area whose materialized path is
    `area_path`: the row of the deepest area on the path, else the default, else NULL."""
    chain = areas.path_ids(area_path)
    override = (sa.select(VisitPolicy.interval_days)
                .where(VisitPolicy.tag == tag, VisitPolicy.area_id == sa.any_(chain))
                .order_by(sa.func.array_position(chain, VisitPolicy.area_id).desc())
                .limit(1).scalar_subquery())
    default = sa.case(DEFAULT_POLICIES, value=tag, else_=sa.null())
    return sa.func.coalesce(override, default)


# --- the worker's to-do list ---------------------------------------------------------------


_GEOGRAPHY = Geography(srid=4326)


def _point(lon_lat: tuple[float, float] | None) -> sa.ColumnElement | None:
    if lon_lat is None:
        return None
    return sa.cast(sa.func.ST_SetSRID(sa.func.ST_MakePoint(*lon_lat), 4326), _GEOGRAPHY)


def _distance(location: Any, here: sa.ColumnElement | None) -> sa.ColumnElement:
    """Metres on the sphere, with geography's KNN operator (`<->`): the value shown is the
    value sorted by. NULL without a point or a location."""
    if here is None:
        return sa.cast(sa.null(), sa.Float)
    return sa.cast(location, _GEOGRAPHY).op("<->", return_type=sa.Float)(here)


def due_visits(s: Session, actor: Actor, lon_lat: tuple[float, float] | None,
               limit: int) -> tuple[list[dict], int]:
    """Tagged people in the actor's grids whose visit is due (one query).

    For each current tag (end_date NULL) the actor may see, with an interval from the
    policies: due on the tag's start date if never visited, else on the local day of the
    last visit (to the person or to their household) + interval, but never before the tag
    started. A person is due on their earliest such day, listed when that day is today or
    past (overdue when past). Nearest first when a point is given, else most overdue first.
    """
    rows = s.execute(_due_statement(actor, lon_lat).limit(limit)).all()
    labels = {**CARE_TAGS, **KEY_TAGS}
    items = [{
        "person": {"id": r.person_id, "name": r.name, "sex": r.sex, "phone": r.phone_masked,
                   "household_id": r.household_id},
        "area_id": r.area_id,
        "due_at": r.due_at, "overdue": r.days_overdue > 0, "days_overdue": r.days_overdue,
        "last_visit_at": r.last_visit_at,
        "tags": [{**tag, "label": labels.get(tag["tag"], tag["tag"]),
                  "due_at": date.fromisoformat(tag["due_at"])} for tag in r.tags],
        "address": r.address, "house_id": r.house_id, "building_id": r.building_id,
        "location": GpsFix(lon=r.lon, lat=r.lat) if r.lon is not None else None,
        "distance_m": round(r.distance_m, 1) if r.distance_m is not None else None,
    } for r in rows]
    return items, rows[0].total if rows else 0


def _due_per_person(actor: Actor) -> sa.CTE:
    """Per person: the earliest due day of their tags, today (in the area's zone), the last
    visit and the due tags."""
    last_own = (sa.select(sa.func.max(Visit.visited_at))
                .where(Visit.person_id == Person.id).scalar_subquery())
    last_household = (sa.select(sa.func.max(Visit.visited_at))
                      .where(Visit.household_id == Person.household_id).scalar_subquery())
    tag_filter = [PersonTag.person_id == Person.id, PersonTag.end_date.is_(None)]
    if not actor.can(KEY_TAGS_PERMISSION):
        tag_filter.append(PersonTag.kind == "care")  # key-person groups: not even counted
    tagged = (
        sa.select(Person.id.label("person_id"), PersonTag.tag, PersonTag.kind,
                  PersonTag.start_date, Area.timezone.label("tz"),
                  policy_interval(PersonTag.tag, Area.path).label("interval_days"),
                  sa.func.greatest(last_own, last_household).label("last_visit_at"))
        .select_from(Person)
        .join(PersonTag, sa.and_(*tag_filter))
        .join(Area, Area.id == Person.area_id)
        .where(Person.ended_at.is_(None), areas.in_scope(Person.area_id, actor))
    ).cte("tagged").prefix_with("MATERIALIZED")  # computed once, not inlined per use
    t = tagged.c
    today = sa.cast(sa.func.timezone(t.tz, sa.func.now()), sa.Date)
    last_day = sa.cast(sa.func.timezone(t.tz, t.last_visit_at), sa.Date)
    due_on = sa.case((t.last_visit_at.is_(None), t.start_date),
                     else_=sa.func.greatest(t.start_date, last_day + t.interval_days))
    per_tag = (sa.select(t.person_id, t.tag, t.kind, t.interval_days, t.last_visit_at,
                         today.label("today"), due_on.label("due_at"))
               .where(t.interval_days.is_not(None))).cte("per_tag")
    p = per_tag.c
    reasons = sa.func.json_agg(aggregate_order_by(
        sa.func.json_build_object("tag", p.tag, "kind", p.kind,
                                  "interval_days", p.interval_days, "due_at", p.due_at),
        p.due_at, p.tag)).filter(p.due_at <= p.today)
    return (sa.select(p.person_id, sa.func.min(p.due_at).label("due_at"),
                      sa.func.max(p.today).label("today"),
                      sa.func.max(p.last_visit_at).label("last_visit_at"),
                      reasons.label("tags"))
            .group_by(p.person_id)
            .having(sa.func.min(p.due_at) <= sa.func.max(p.today))).cte("due")


def _due_statement(actor: Actor, lon_lat: tuple[float, float] | None) -> sa.Select:
    """The due people with their place and distance, nearest or most overdue first."""
    due = _due_per_person(actor)
    d = due.c
    location = sa.func.coalesce(Person.location, Household.location, House.location,
                                Building.location)
    distance = _distance(location, _point(lon_lat)).label("distance_m")
    address = sa.func.nullif(sa.func.concat_ws(" ", Building.address, Building.name,
                                               House.unit, House.room), "")
    stmt = (
        sa.select(d.person_id, d.due_at, d.last_visit_at, d.tags,
                  (d.today - d.due_at).label("days_overdue"),
                  Person.name, Person.sex, Person.phone_masked, Person.household_id,
                  Person.area_id, House.id.label("house_id"),
                  Building.id.label("building_id"), address.label("address"),
                  sa.func.ST_X(location).label("lon"), sa.func.ST_Y(location).label("lat"),
                  distance, sa.func.count().over().label("total"))
        .select_from(due)
        .join(Person, Person.id == d.person_id)
        .outerjoin(Household, Household.id == Person.household_id)
        .outerjoin(House, House.id == Household.house_id)
        .outerjoin(Building, Building.id == House.building_id)
    )
    if lon_lat is not None:
        return stmt.order_by(distance.asc().nulls_last(), d.due_at, d.person_id)
    return stmt.order_by(d.due_at, d.person_id)


_REVIEW_LABELS = {
    "building": lambda: Building.name,
    "house": lambda: sa.func.concat_ws(" ", House.unit, House.room),
    "household": lambda: Household.household_no,
    "person": lambda: Person.name,
    "organisation": lambda: Organisation.name,
}


def review_records(s: Session, actor: Actor, lon_lat: tuple[float, float] | None,
                   limit: int) -> tuple[list[dict], int]:
    """Register records in the actor's grids flagged for review (poor GPS…), one query:
    nearest first with a point, else the longest waiting first."""
    here = _point(lon_lat)
    branches = []
    for kind, label in _REVIEW_LABELS.items():
        model = scope.KINDS[kind]
        branches.append(
            scope.scoped(model, actor).with_only_columns(
                sa.literal(kind, sa.Text).label("type"), model.id.label("id"),
                model.area_id.label("area_id"), sa.cast(label(), sa.Text).label("label"),
                model.review_reasons.label("review_reasons"),
                model.updated_at.label("updated_at"), model.version.label("version"),
                sa.func.ST_X(model.location).label("lon"),
                sa.func.ST_Y(model.location).label("lat"),
                _distance(model.location, here).label("distance_m"))
            .where(model.needs_review.is_(True), model.ended_at.is_(None)))
    u = sa.union_all(*branches).subquery("review")
    stmt = sa.select(*u.c, sa.func.count().over().label("total"))
    if here is not None:
        stmt = stmt.order_by(u.c.distance_m.asc().nulls_last(), u.c.updated_at, u.c.type,
                             u.c.id)
    else:
        stmt = stmt.order_by(u.c.updated_at, u.c.type, u.c.id)
    rows = s.execute(stmt.limit(limit)).all()
    items = [{
        "type": r.type, "id": r.id, "area_id": r.area_id, "label": r.label,
        "review_reasons": r.review_reasons or [], "updated_at": r.updated_at,
        "version": r.version,
        "location": GpsFix(lon=r.lon, lat=r.lat) if r.lon is not None else None,
        "distance_m": round(r.distance_m, 1) if r.distance_m is not None else None,
    } for r in rows]
    return items, rows[0].total if rows else 0


# Checks other contexts add to a worker's list (grid.exchange: review items of feeds,
# residents' declarations), set at wiring: name → function(session, actor, limit) returning
# (items, total); items carry at least type, id, area_id, title and created_at.
task_lists: dict[str, Callable[[Session, Actor, int], tuple[list[dict], int]]] = {}


def my_checks(s: Session, actor: Actor, limit: int) -> tuple[list[dict], int]:
    """Every context's checks, oldest first, at most `limit`, with their total."""
    items: list[dict] = []
    total = 0
    for source in task_lists.values():
        found, count = source(s, actor, limit)
        items += found
        total += count
    items.sort(key=lambda item: (item["created_at"], item["type"], item["id"]))
    return items[:limit], total


def my_tasks(s: Session, actor: Actor, lon_lat: tuple[float, float] | None,
             limit: int = TASKS_MAX) -> dict:
    """GET /me/tasks: due and overdue visits, and records needing review, in the actor's
    grids. `lon_lat` is WGS-84. Each list is capped at `limit` (≤ TASKS_MAX), with its total."""
    actor.require("visit:write")
    actor.require("registry:read")
    limit = max(1, min(limit, TASKS_MAX))
    # One grid's rows are few: starting parallel workers costs more than it saves (measured
    # 60 ms → 10 ms for the review union on 120k people).
    s.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
    visits, visits_total = due_visits(s, actor, lon_lat, limit)
    reviews, reviews_total = review_records(s, actor, lon_lat, limit)
    checks, checks_total = my_checks(s, actor, limit)
    return {"visits": visits, "visits_total": visits_total, "reviews": reviews,
            "reviews_total": reviews_total, "checks": checks, "checks_total": checks_total,
            "limit": limit}

