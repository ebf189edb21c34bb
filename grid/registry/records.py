"""The register's records (实有房屋、实有单位、户): listing them, and collecting, correcting and
ending buildings (楼栋), houses (房屋), households (户) and organisations (实有单位).
Persons are in grid.registry.people; a record is never deleted, it ends and stays in
history."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.registry.collecting import (
    Unique,
    _collected_at,
    _created,
    _duplicate,
    _follow,
    _new,
    _now,
    _phone_changed,
    _relocate,
    _replayed,
    _set_phone,
    _updated,
)
from grid.registry.history import apply_changes
from grid.registry.models import (
    COLLECTED,
    ORG_RISK_FLAGS,
    Building,
    House,
    Household,
    Organisation,
    Person,
    PersonTag,
    RegisterRecord,
)
from grid.registry.scope import (
    ID_FIELD,
    KINDS,
    READ_PII,
    _referenced,
    _singular,
    get_record,
    scoped,
)
from grid.registry.tags import _check_tag_visible, with_tags
from grid.registry.validation import normalize_uscc
from server import db, pii
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, check_version, field_errors

# --- listing within scope ------------------------------------------------------------------


def list_records(s: Session, actor: Actor, model: type[RegisterRecord], filters: dict,
                 page: Any) -> list:
    stmt = scoped(model, actor).order_by(model.id)
    if filters.get("area_id") is not None:
        root = areas.get_area(s, actor, filters["area_id"])
        stmt = stmt.where(model.area_id.in_(
            sa.select(Area.id).where(Area.path.startswith(root.path, autoescape=True))))
    if not filters.get("include_ended"):
        stmt = stmt.where(model.ended_at.is_(None))
    if filters.get("needs_review") is not None:
        stmt = stmt.where(model.needs_review == filters["needs_review"])
    for name, value in filters.items():
        if name in _EXACT_FILTERS.get(model.__tablename__, ()) and value is not None:
            stmt = stmt.where(getattr(model, name) == value)
    if filters.get("q") and hasattr(model, "name"):
        stmt = stmt.where(model.name.contains(filters["q"], autoescape=True))
    if model is Person and filters.get("id_number"):
        # an exact-match oracle: enough queries would find the number behind a mask
        actor.require(READ_PII)
        stmt = stmt.where(Person.id_number_bidx == pii.blind_index(
            filters["id_number"].strip().upper(), ID_FIELD))
    if model is Person and filters.get("tag"):
        _check_tag_visible(actor, filters["tag"])
        stmt = stmt.where(Person.id.in_(sa.select(PersonTag.person_id).where(
            PersonTag.tag == filters["tag"], PersonTag.end_date.is_(None))))
    if model is Organisation and filters.get("uscc"):
        stmt = stmt.where(Organisation.uscc == filters["uscc"].strip().upper())
    if model is Organisation and filters.get("risk_flag"):
        stmt = stmt.where(Organisation.risk_flags.contains([filters["risk_flag"]]))
    return db.paginate(s, stmt, page)


_EXACT_FILTERS = {
    "buildings": ("use",), "houses": ("building_id", "use"),
    "households": ("house_id", "type"),
    "persons": ("household_id", "population_type", "status", "sex"),
    "organisations": ("building_id", "kind", "industry"),
}


# --- ending --------------------------------------------------------------------------------


# What must end (or move) before a record can end: a building's houses, a house's
# households, a household's members.
_CHILDREN: dict[str, tuple[type[RegisterRecord], str]] = {
    "building": (House, "building_id"), "house": (Household, "house_id"),
    "household": (Person, "household_id"),
}


def end_record(s: Session, actor: Actor, kind: str, record_id: int, reason: str,
               expected_version: int | None) -> Any:
    """End a record (demolished, closed, moved away…): never deleted, kept in history."""
    actor.require("registry:write")
    record = get_record(s, actor, KINDS[kind], record_id, for_update=True)
    if record.ended_at is not None:
        return record  # ending twice is ending once (a phone may resend with its old version)
    check_version(record, expected_version)
    if kind in _CHILDREN:
        child, link = _CHILDREN[kind]
        count = s.scalar(sa.select(sa.func.count()).select_from(child).where(
            getattr(child, link) == record.id, child.ended_at.is_(None)))
        if count:
            raise Conflict(f"This {kind} still has {count} current "
                           f"{child.__tablename__ if count > 1 else _singular(child)}: "
                           "end or move them first")
    record.ended_at, record.end_reason = _now(), reason
    return _updated(s, actor, kind, record, {"ended_at": [None, record.ended_at.isoformat()],
                                             "end_reason": [None, reason]})


# --- buildings -----------------------------------------------------------------------------


def create_building(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                    source: str = COLLECTED) -> tuple[Building, bool]:
    actor.require("registry:write")
    replay = _replayed(s, actor, "building", client_uuid, data)
    if replay is not None:
        return replay, False
    fields = dict(data)
    fix = fields.pop("location", None)
    phone = fields.pop("leader_phone", None)
    area_id, reasons = _collected_at(s, actor, fix, None, require_point=True)
    building = _new(Building, actor, area_id, source, fix, reasons, fields)
    _set_phone(building, "leader", phone)
    return _created(s, actor, "building", building, client_uuid, data), True


def update_building(s: Session, actor: Actor, building_id: int, changes: dict,
                    expected_version: int | None) -> Building:
    actor.require("registry:write")
    building = get_record(s, actor, Building, building_id, for_update=True)
    check_version(building, expected_version)
    changes = dict(changes)
    diff: dict = {}
    old_area = building.area_id
    if "location" in changes:
        diff.update(_relocate(s, actor, building, changes.pop("location"), None))
    if "leader_phone" in changes:
        phone = changes.pop("leader_phone")
        if _phone_changed(building, "leader", phone):
            _set_phone(building, "leader", phone)
            diff["leader_phone"] = ["(changed)", "(changed)"]
    diff.update(apply_changes(building, changes))
    if building.area_id != old_area:
        _move_children_area(s, building, old_area)
    return _updated(s, actor, "building", building, diff, old_area)


def _move_children_area(s: Session, building: Building, old_area: int) -> None:
    """Houses, households and people follow their building into its new grid."""
    houses = sa.select(House.id).where(House.building_id == building.id)
    households = sa.select(Household.id).where(Household.house_id.in_(houses))
    for model, link in ((House, House.building_id == building.id),
                        (Household, Household.house_id.in_(houses)),
                        (Person, Person.household_id.in_(households))):
        _follow(s, model, link, old_area, building.area_id)


# --- houses --------------------------------------------------------------------------------


def _room_key(fields: dict) -> tuple[str | None, str]:
    """Unit and room as the unique index compares them (no unit = "")."""
    unit = (fields.get("unit") or "").strip() or None
    room = (fields.get("room") or "").strip()
    if not room:
        raise Invalid(field_errors("room", "A room number is required."))
    return unit, room


def _existing_house(s: Session, building_id: int, unit: str | None, room: str,
                    exclude_id: int | None = None) -> House | None:
    """The current house with this unit and room in the building (uq_houses_room)."""
    return s.scalars(sa.select(House).where(
        House.building_id == building_id, sa.func.coalesce(House.unit, "") == (unit or ""),
        House.room == room, House.ended_at.is_(None), House.id != (exclude_id or -1))).first()


def _house_unique(s: Session, building_id: int, unit: str | None, room: str,
                  exclude_id: int | None = None) -> Unique:
    return ("uq_houses_room", lambda: _existing_house(s, building_id, unit, room, exclude_id),
            "This room is already registered in the building")


def _check_rental(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise Invalid(field_errors("rental_end", "The rental ends before it starts."))


def create_house(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                 source: str = COLLECTED) -> tuple[House, bool]:
    """房屋: a room of a building, in the building's grid. A point is optional; when sent
    it must be in the collector's grids."""
    actor.require("registry:write")
    replay = _replayed(s, actor, "house", client_uuid, data)
    if replay is not None:
        return replay, False
    fields = dict(data)
    fix = fields.pop("location", None)
    phone = fields.pop("owner_phone", None)
    building = _referenced(s, actor, Building, fields["building_id"], "building_id")
    area_id, reasons = _collected_at(s, actor, fix, building.area_id, require_point=False)
    fields["unit"], fields["room"] = _room_key(fields)
    _check_rental(fields.get("rental_start"), fields.get("rental_end"))
    unique = _house_unique(s, building.id, fields["unit"], fields["room"])
    existing = unique[1]()
    if existing is not None:
        raise _duplicate(s, actor, "house", existing, unique[2])
    house = _new(House, actor, area_id, source, fix, reasons, fields)
    _set_phone(house, "owner", phone)
    return _created(s, actor, "house", house, client_uuid, data, unique), True


def update_house(s: Session, actor: Actor, house_id: int, changes: dict,
                 expected_version: int | None) -> House:
    actor.require("registry:write")
    house = get_record(s, actor, House, house_id, for_update=True)
    check_version(house, expected_version)
    changes = dict(changes)
    diff: dict = {}
    if "location" in changes:
        diff.update(_relocate(s, actor, house, changes.pop("location"), house.area_id))
    if "owner_phone" in changes:
        phone = changes.pop("owner_phone")
        if _phone_changed(house, "owner", phone):
            _set_phone(house, "owner", phone)
            diff["owner_phone"] = ["(changed)", "(changed)"]
    unique = None
    if "unit" in changes or "room" in changes:
        merged = {"unit": changes.get("unit", house.unit), "room": changes.get("room", house.room)}
        changes["unit"], changes["room"] = _room_key(merged)
        unique = _house_unique(s, house.building_id, changes["unit"], changes["room"], house.id)
        if house.ended_at is None:
            existing = unique[1]()
            if existing is not None:
                raise _duplicate(s, actor, "house", existing, unique[2])
    _check_rental(changes.get("rental_start", house.rental_start),
                  changes.get("rental_end", house.rental_end))
    diff.update(apply_changes(house, changes))
    return _updated(s, actor, "house", house, diff, unique=unique)


# --- households ----------------------------------------------------------------------------


def create_household(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                     source: str = COLLECTED) -> tuple[Household, bool]:
    """户: in a house (its grid), or located by its point when the house is not known."""
    actor.require("registry:write")
    replay = _replayed(s, actor, "household", client_uuid, data)
    if replay is not None:
        return replay, False
    fields = dict(data)
    fix = fields.pop("location", None)
    house = None
    if fields.get("house_id") is not None:
        house = _referenced(s, actor, House, fields["house_id"], "house_id")
    area_id, reasons = _collected_at(s, actor, fix, house.area_id if house else None,
                                     require_point=house is None)
    household = _new(Household, actor, area_id, source, fix, reasons, fields)
    return _created(s, actor, "household", household, client_uuid, data), True


def _current_member(s: Session, household: Household, person_id: int) -> bool:
    return s.scalar(sa.select(Person.id).where(
        Person.id == person_id, Person.household_id == household.id,
        Person.ended_at.is_(None))) is not None


def update_household(s: Session, actor: Actor, household_id: int, changes: dict,
                     expected_version: int | None) -> Household:
    """Correct a household; a new house_id moves it (and its members) to that house."""
    actor.require("registry:write")
    household = get_record(s, actor, Household, household_id, for_update=True)
    check_version(household, expected_version)
    changes = dict(changes)
    diff: dict = {}
    old_area = household.area_id
    if changes.get("head_person_id") is not None and not _current_member(
            s, household, changes["head_person_id"]):
        raise Invalid(field_errors("head_person_id",
                                   "Not a current member of this household."))
    house_id = changes.pop("house_id", household.house_id)
    if house_id != household.house_id:
        house = _referenced(s, actor, House, house_id, "house_id")
        diff.update(apply_changes(household, {"house_id": house.id, "area_id": house.area_id}))
    if "location" in changes:
        parent_area = household.area_id if household.house_id is not None else None
        diff.update(_relocate(s, actor, household, changes.pop("location"), parent_area))
    diff.update(apply_changes(household, changes))
    if household.area_id != old_area:
        _follow(s, Person, Person.household_id == household.id, old_area, household.area_id)
    return _updated(s, actor, "household", household, diff, old_area)


def household_members(s: Session, actor: Actor, household_id: int) -> list[Person]:
    """The household's current members (the head first), with the tags the actor may see."""
    household = get_record(s, actor, Household, household_id)
    members = list(s.scalars(
        scoped(Person, actor).where(Person.household_id == household.id,
                                    Person.ended_at.is_(None))
        .order_by(sa.case((Person.id == household.head_person_id, 0), else_=1), Person.id)))
    return with_tags(s, actor, members)


# --- organisations -------------------------------------------------------------------------


_USCC_DUPLICATE = "This USCC is already registered"


def _org_by_uscc(s: Session, code: str | None, exclude_id: int | None = None
                 ) -> Organisation | None:
    if code is None:
        return None
    return s.scalars(sa.select(Organisation).where(
        Organisation.uscc == code, Organisation.id != (exclude_id or -1))).first()


def _org_uscc(s: Session, actor: Actor, value: str | None, exclude_id: int | None = None
              ) -> tuple[str | None, Unique]:
    """The normalized USCC (GB 32100; 422 naming uscc) and its unique rule; 409 on a
    duplicate."""
    code = None
    if value is not None:
        try:
            code = normalize_uscc(value)
        except ValidationError as exc:
            raise Invalid(field_errors("uscc", *exc.messages)) from None
        existing = _org_by_uscc(s, code, exclude_id)
        if existing is not None:
            raise _duplicate(s, actor, "organisation", existing, _USCC_DUPLICATE)
    return code, ("uq_organisations_uscc", lambda: _org_by_uscc(s, code, exclude_id),
                  _USCC_DUPLICATE)


def _risk_flags(flags: list[str]) -> list[str]:
    """Known flags, each once, in their catalogue order."""
    unknown = sorted(set(flags) - set(ORG_RISK_FLAGS))
    if unknown:
        raise Invalid(field_errors("risk_flags", f"Unknown flags: {', '.join(unknown)}."))
    return [f for f in ORG_RISK_FLAGS if f in flags]


def create_organisation(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                        source: str = COLLECTED) -> tuple[Organisation, bool]:
    """实有单位 located at its main gate (the point decides the grid)."""
    actor.require("registry:write")
    replay = _replayed(s, actor, "organisation", client_uuid, data)
    if replay is not None:
        return replay, False
    fields = dict(data)
    fix = fields.pop("location", None)
    area_id, reasons = _collected_at(s, actor, fix, None, require_point=True)
    if fields.get("building_id") is not None:
        _referenced(s, actor, Building, fields["building_id"], "building_id")
    fields["uscc"], unique = _org_uscc(s, actor, fields.get("uscc"))
    fields["risk_flags"] = _risk_flags(fields.get("risk_flags") or [])
    org = _new(Organisation, actor, area_id, source, fix, reasons, fields)
    return _created(s, actor, "organisation", org, client_uuid, data, unique), True


def update_organisation(s: Session, actor: Actor, org_id: int, changes: dict,
                        expected_version: int | None) -> Organisation:
    actor.require("registry:write")
    org = get_record(s, actor, Organisation, org_id, for_update=True)
    check_version(org, expected_version)
    changes = dict(changes)
    diff: dict = {}
    unique = None
    old_area = org.area_id
    if "location" in changes:
        diff.update(_relocate(s, actor, org, changes.pop("location"), None))
    if changes.get("building_id") is not None and changes["building_id"] != org.building_id:
        _referenced(s, actor, Building, changes["building_id"], "building_id")
    if "uscc" in changes:
        changes["uscc"], unique = _org_uscc(s, actor, changes["uscc"], org.id)
    if "risk_flags" in changes:
        changes["risk_flags"] = _risk_flags(changes["risk_flags"] or [])
    diff.update(apply_changes(org, changes))
    return _updated(s, actor, "organisation", org, diff, old_area, unique)
