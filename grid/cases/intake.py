"""Intake (受理前): reports from every channel — the apps, staff entering for others, the
12345 hotline and other systems server to server — the duplicate rule (查重) and the
pre-report lookup, "me too" (joining an open case) and following. The people a merge
counts are joined here too (`_add_joiner`, `_callers`).
"""

from __future__ import annotations

import functools
import math
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.areas.models import Area
from grid.cases.categories import check_attributes, get_category
from grid.cases.clock import _start_stage
from grid.cases.models import (
    CHOOSE_PUBLIC_CHANNELS,
    OPEN_STATES,
    PUBLISHED_CHANNELS,
    Case,
    CaseCategory,
    CaseEvent,
    CaseFollower,
)
from grid.cases.notices import (
    _event,
    _grid_workers,
    _link_photos,
    _members_above,
    _members_above_select,
    _tell,
)
from grid.cases.resident_view import ResidentView, resident_views
from grid.cases.scope import _area_in_scope, _works_in_areas, get_case, private_category_ids
from server import audit, idempotency, pii, ratelimit
from server.auth import permissions
from server.auth.actor import Actor
from server.clock import local_zone, now
from server.errors import Conflict, Forbidden, Invalid, NotFound, field_errors

STAFF_CHANNELS = ("console", "wechat", "visit", "other_system")


def _channel(actor: Actor, asked: str | None) -> str:
    """The channel a report came by: the app the role uses, or what staff entered."""
    staff = permissions.works_in_an_office(actor)
    if asked is not None:
        if asked == "hotline":
            raise Invalid(field_errors("channel", "Hotline cases come through /cases/hotline."))
        if asked in STAFF_CHANNELS and staff or asked == _channel(actor, None):
            return asked
        raise Invalid(field_errors("channel", "You cannot enter cases for this channel."))
    for role, channel in permissions.ROLE_CHANNELS:
        if role in actor.roles:
            return channel
    return "console"


# --- duplicates (查重) -----------------------------------------------------------------------


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


# --- reports -------------------------------------------------------------------------------


# Built once (per-request construction of the expressions costs more than the lookup).
@functools.cache
def _intake_statement() -> sa.Select:
    """One round trip for what a report needs before it is written: the category, the grid
    at the point (:lon, :lat; without its boundary), a case id from the sequence unless
    :client_uuid was claimed already (a replay spends no number, so no case code) and the
    street dispatchers over that grid (who hear of the new case)."""
    grid = sa.orm.aliased(Area, areas.finest_grid(Area).subquery("grid").lateral(), name="grid")
    dispatchers = sa.func.array(
        _members_above_select(grid.path, permissions.STREET_DISPATCHER).scalar_subquery())
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
        _check_self_handle(s, actor, category, grid, self_handle)
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
    _announce_report(s, actor, case, data, channel, found.dispatchers or [])
    audit.record(s, actor, "case_reported", "case", case.id,
                 changes={"category": category.code, "channel": channel,
                          "self_handled": self_handle is not None})
    s.flush()
    return case, duplicates, True


def _check_self_handle(s: Session, actor: Actor, category: CaseCategory, grid: Area,
                       self_handle: dict) -> None:
    """Only a worker of the case's grid handles a problem on the spot, with the result
    photo its category requires."""
    actor.require("case:handle")
    if not permissions.works_a_grid(actor) or \
            not _area_in_scope(s, actor, grid.id):
        raise Forbidden("Only a worker of this grid can handle a problem on the spot")
    if category.result_photo_required and not self_handle.get("photo_ids"):
        raise Invalid({"json": {"self_handle": {"photo_ids": ["A result photo is "
                                                              "required."]}}})


def _announce_report(s: Session, actor: Actor, case: Case, data: dict, channel: str,
                     dispatchers: list[int]) -> None:
    """The report's photos and timeline entries (and those of the fix on the spot), and who
    is told: the street's dispatchers of a new case; the grid's workers too of a fix on the
    spot to verify."""
    self_handle = data.get("self_handle")
    _link_photos(s, actor, case, data.get("photo_ids") or [])
    _event(s, case, actor, "report", None, note=data["description"],
           photo_ids=data.get("photo_ids"), to_state="reported", channel=channel)
    if self_handle is not None:
        _link_photos(s, actor, case, self_handle.get("photo_ids") or [])
        _event(s, case, actor, "self_handle", "reported", note=self_handle["result"],
               photo_ids=self_handle.get("photo_ids"))
        _tell(s, case, "case_changed", _grid_workers(s, case) + dispatchers,
              actor, action="自行处置待核查",
              action_en="self-handled, to verify")
    else:
        _tell(s, case, "case_new", dispatchers, actor)


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
    _tell(s, case, "case_new", _members_above(s, case, permissions.STREET_DISPATCHER), None)
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


# --- "me too", follow ----------------------------------------------------------------------


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
