"""The catalogue of resident services (便民服务) and its guide (办事指南): service
categories, services with their opening hours and place, and search (text, category,
open now, nearest first).

Staff (service:manage) manage the services of the areas in their scope (`areas.in_scope`,
404 outside); residents (service:book) see the active catalogue — by default only what
serves their community — and their own bookings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, time
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from geoalchemy2.shape import from_shape
from shapely.geometry import Point as ShapelyPoint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.calendar import service as calendar
from grid.services.models import Service, ServiceCategory
from server import audit, clock, db
from server.auth import permissions
from server.auth.actor import Actor
from server.errors import Invalid, NotFound, check_version, field_errors


@dataclass(frozen=True)
class ServiceSettings:
    """The settings of resident services (server/config.py), built once at wiring."""

    slot_days_ahead: int = 14  # SERVICE_SLOT_DAYS_AHEAD: slots generated this far ahead
    cancel_cutoff_minutes: int = 120  # SERVICE_CANCEL_CUTOFF_MINUTES before the start
    no_show_limit: int = 3  # SERVICE_NO_SHOW_LIMIT no-shows within the window block booking
    no_show_window_days: int = 30  # SERVICE_NO_SHOW_WINDOW_DAYS

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServiceSettings:
        return cls(**{f.name: config[f"SERVICE_{f.name.upper()}"] for f in fields(cls)})


_settings = ServiceSettings()


def configure(settings: ServiceSettings) -> None:
    """Hand the package its settings (grid/services/wiring.py), as pii.configure does."""
    global _settings
    _settings = settings


def settings() -> ServiceSettings:
    return _settings


def setting(name: str) -> Any:
    """One of the configured ServiceSettings by its setting's name (SERVICE_…)."""
    return getattr(_settings, name.removeprefix("SERVICE_").lower())

def _hhmm(text: str) -> str:
    """"8:30" → "08:30" (zero-padded, so that times compare as text in SQL)."""
    try:
        hour, minute = (int(p) for p in text.split(":"))
        return time(hour, minute).strftime("%H:%M")
    except (ValueError, TypeError) as exc:
        raise Invalid(field_errors("opening_hours", f"{text!r} is not HH:MM.")) from exc


def _check_hours(hours: list[dict]) -> list[dict]:
    out = []
    for h in hours:
        opens, closes = _hhmm(h["open"]), _hhmm(h["close"])
        if opens >= closes:
            raise Invalid(field_errors("opening_hours", f"{opens}–{closes}: open before close."))
        out.append({"days": sorted(set(h["days"])), "open": opens, "close": closes})
    return out


# --- catalogue -----------------------------------------------------------------------------


def list_categories(s: Session) -> list[ServiceCategory]:
    return list(s.scalars(sa.select(ServiceCategory)
                          .order_by(ServiceCategory.sort_order, ServiceCategory.id)))


def _manages(actor: Actor) -> sa.ColumnElement[bool]:
    """Services the actor manages: those of areas in their scope (with service:manage; the
    role table is the one truth: a platform admin without it manages none)."""
    if not actor.can("service:manage"):
        return sa.false()
    return areas.in_scope(Service.area_id, actor)


def get_service(s: Session, actor: Actor, service_id: int) -> Service:
    """An active service (anyone signed in), or an inactive one its managers see."""
    service = s.scalars(sa.select(Service).where(
        Service.id == service_id, sa.or_(Service.active, _manages(actor)))).first()
    if service is None:
        raise NotFound("No such service")
    return service


def managed_service(s: Session, actor: Actor, service_id: int, *,
                    for_update: bool = False) -> Service:
    """A service the actor may change (service:manage, its area in scope), else 403/404."""
    actor.require("service:manage")
    stmt = sa.select(Service).where(Service.id == service_id, _manages(actor))
    service = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if service is None:
        raise NotFound("No such service")
    return service


def _apply(service: Service, data: dict) -> None:
    for key, value in data.items():
        if key == "location":
            service.location = None if value is None else \
                from_shape(ShapelyPoint(value.lon, value.lat), srid=4326)
        elif key == "opening_hours":
            service.opening_hours = _check_hours(value)
        else:
            setattr(service, key, value)


def _audit_changes(data: dict) -> dict:
    return {k: ([v.lon, v.lat] if k == "location" and v is not None else v)
            for k, v in data.items()}


def create_service(s: Session, actor: Actor, data: dict) -> Service:
    """A new service of an area in the actor's scope (a community's or street's staff)."""
    actor.require("service:manage")
    if not areas.area_in_scope(s, actor, data["area_id"]):
        raise NotFound("No such area")
    if s.get(ServiceCategory, data["category_id"]) is None:
        raise Invalid(field_errors("category_id", "No such service category."))
    service = Service()
    _apply(service, data)
    s.add(service)
    s.flush()
    audit.record(s, actor, "service_created", "service", service.id,
                 changes=_audit_changes(data))
    return service


def update_service(s: Session, actor: Actor, service_id: int, data: dict,
                   expected: int | None) -> Service:
    service = managed_service(s, actor, service_id, for_update=True)
    check_version(service, expected)
    if "area_id" in data and not areas.area_in_scope(s, actor, data["area_id"]):
        raise NotFound("No such area")
    if "category_id" in data and s.get(ServiceCategory, data["category_id"]) is None:
        raise Invalid(field_errors("category_id", "No such service category."))
    _apply(service, data)
    s.flush()
    audit.record(s, actor, "service_updated", "service", service.id,
                 changes=_audit_changes(data))
    return service


# --- search --------------------------------------------------------------------------------


def _serves_home(actor: Actor) -> sa.ColumnElement[bool]:
    """Services of an area that contains one of the resident's homes (their community, its
    street, the district…): the ids on their materialized paths. A list of ids, not a join
    on the paths, so that the planner sees how many services match and keeps the KNN."""
    ids = {i for p in actor.area_paths for i in areas.ids_on_path(p)}
    return Service.area_id.in_(sorted(ids))


def _open_now(s: Session, at: datetime) -> sa.ColumnElement[bool]:
    """Open at `at` by the opening hours (local time), holidays closing those that close."""
    local = at.astimezone(clock.local_zone())
    hours = sa.func.jsonb_to_recordset(Service.opening_hours).table_valued(
        sa.column("days", ARRAY(sa.Integer)), sa.column("open", sa.Text),
        sa.column("close", sa.Text)).render_derived(with_types=True)
    now_text = local.strftime("%H:%M")
    is_open = sa.exists(sa.select(1).select_from(hours).where(
        sa.literal(local.isoweekday()) == sa.any_(hours.c.days),
        hours.c.open <= now_text, hours.c.close > now_text))
    if local.date() in calendar.working_time(s, None).holidays:
        return sa.and_(is_open, sa.not_(Service.closed_on_holidays))
    return is_open


def _geography(column: Any) -> sa.ColumnElement:
    """`column::geography` exactly as the index ix_services_location_geography has it (a
    CAST to geography(GEOMETRY,-1) would be another expression, not using the index)."""
    return sa.func.geography(column, type_=Geography)


def search_services(s: Session, actor: Actor, f: dict, page: Any) -> list[Service]:
    """The catalogue: text (pg_trgm), category, mode, open now, nearest first from a point
    (KNN on the service point). A resident sees what serves their community unless they ask
    for `everywhere`; `mine` lists the services the actor manages (inactive ones too)."""
    distance = sa.null()
    point = None
    if f.get("near") is not None:
        lon, lat, _ = f["near"]
        point = sa.func.geography(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), 4326))
        # KNN on geography (the GiST index on location::geography, spelled the same way):
        # nearest first in metres — on geometry a degree of longitude would count as much
        # as one of latitude.
        distance = _geography(Service.location).op("<->", return_type=sa.Float)(point)
    stmt = sa.select(Service, distance.label("distance_m"))
    if f.get("mine"):
        stmt = stmt.where(_manages(actor))
    else:
        stmt = stmt.where(Service.active)
        if permissions.is_resident(actor) and actor.area_paths and not f.get("everywhere"):
            stmt = stmt.where(_serves_home(actor))
    if f.get("q"):
        pattern = "%" + f["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(sa.or_(Service.name.ilike(pattern, escape="\\"),
                                 Service.description.ilike(pattern, escape="\\"),
                                 Service.provider.ilike(pattern, escape="\\")))
    if f.get("category_id") is not None:
        stmt = stmt.where(Service.category_id == f["category_id"])
    if f.get("booking_mode"):
        stmt = stmt.where(Service.booking_mode == f["booking_mode"])
    if f.get("online") is not None:
        stmt = stmt.where(Service.online == f["online"])
    if f.get("area_id") is not None:
        stmt = stmt.where(Service.area_id == f["area_id"])
    if f.get("open_now"):
        stmt = stmt.where(_open_now(s, clock.now()))
    if point is not None:
        radius = f["near"][2]
        if radius is not None:
            stmt = stmt.where(sa.func.ST_DWithin(_geography(Service.location), point, radius))
        stmt = stmt.order_by(distance)  # alone: a second key would forgo the index scan
    elif f.get("q"):
        stmt = stmt.order_by(sa.func.similarity(Service.name, f["q"]).desc(), Service.id)
    else:
        stmt = stmt.order_by(Service.name, Service.id)
    rows = db.paginate(s, stmt, page)
    out = []
    for service, meters in rows:
        service.distance_m = None if meters is None else round(meters, 1)
        out.append(service)
    return out
