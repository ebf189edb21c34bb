"""The register's business rules: collecting and correcting records from phones, ending
them, moving people between households, tags, organisations' indicators, history, and
revealing personal data for a stated purpose.

Rules that hold for every record (ARCHITECTURE §3):
- scope: a record exists for an actor only if its grid is in their scope (404 otherwise);
  a record a request body names (a house's building, a person's household…) must be in
  scope and not ended (422 naming the field otherwise);
- GPS: a collected point must lie in one of the collector's grids (422 naming the grid it
  falls in); poor accuracy is accepted and flagged for review;
- idempotency: creates carry a client UUID (server.idempotency) and return (record,
  created), created False for a replay; updates carry the version they were based on
  (412 with the current record when stale, 428 when missing);
- duplicates (an ID number, a USCC, a room of a building) are a 409 pointing at the existing
  record, also when a concurrent request inserted it between our check and our insert;
- history: every change is an audit row with the fields' old and new values (personal
  data masked in it), read back by `history()`;
- personal data is encrypted at rest and masked; `reveal_person` decrypts for an actor
  with person:read_pii who states a purpose, and audits the read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app
from geoalchemy2.shape import to_shape
from marshmallow import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.areas.models import Area
from grid.registry.models import (
    CARE_TAGS,
    KEY_TAGS,
    ORG_RISK_FLAGS,
    Building,
    BuildingOccupancy,
    House,
    Household,
    HouseholdStay,
    Organisation,
    OrganisationIndicator,
    Person,
    PersonTag,
    RegisterRecord,
    Tombstone,
)
from grid.registry.validation import id_number_facts, normalize_id_number, normalize_uscc
from server import audit, db, idempotency, pii
from server.audit import AuditEntry
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    check_version,
    field_errors,
)

KINDS: dict[str, type[RegisterRecord]] = {
    "building": Building, "house": House, "household": Household, "person": Person,
    "organisation": Organisation,
}
ID_FIELD, PHONE_FIELD = "person.id_number", "person.phone"
READ_PII = "person:read_pii"
# Fields whose values never enter the history in clear (the history and the audit trail are
# read by actors without person:read_pii: a birth date there would unmask the ID number).
_PII_FIELDS = {"id_number", "phone", "leader_phone", "owner_phone", "birth_date"}
INDICATOR_FIELDS = ("employees", "water_m3", "electricity_kwh", "wage_arrears_yuan")


def _now() -> datetime:
    return datetime.now(UTC)



def _singular(model: type[RegisterRecord]) -> str:
    return model.__tablename__[:-1]


# --- reading within scope ------------------------------------------------------------------


def scoped(model: type[RegisterRecord], actor: Actor) -> sa.Select:
    """`SELECT model` limited to the actor's grids: the one way registry reads start."""
    actor.require("registry:read")
    return sa.select(model).where(areas.in_scope(model.area_id, actor))


def get_record(s: Session, actor: Actor, model: type[RegisterRecord], record_id: int, *,
               for_update: bool = False) -> Any:
    stmt = scoped(model, actor).where(model.id == record_id)
    record = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if record is None:
        raise NotFound(f"No such {_singular(model)}")
    return record


def _referenced(s: Session, actor: Actor, model: type[RegisterRecord], record_id: int,
                field: str) -> Any:
    """A record a request body names (`field`): it must be in scope and not ended."""
    record = s.scalars(scoped(model, actor).where(model.id == record_id)).first()
    if record is None:
        raise Invalid(field_errors(field, f"No such {_singular(model)}."))
    if record.ended_at is not None:
        raise Invalid(field_errors(field, f"This {_singular(model)} has ended "
                                          f"({record.end_reason})."))
    return record


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


# --- writing: the rules every record follows -----------------------------------------------


def _collected_at(s: Session, actor: Actor, fix: GpsFix | None, fallback_area_id: int | None,
                  require_point: bool) -> tuple[int, list[str]]:
    """The grid a new record belongs to, and why it needs review (if it does).

    The record's own point decides, and must be in one of the collector's grids; a record
    of a known parent (a house of a building, a person of a household) takes its parent's
    grid, and a point of it outside that grid is flagged for review.
    """
    reasons: list[str] = []
    if fix is None:
        if fallback_area_id is None or require_point:
            raise Invalid(field_errors("location", "A location is required."))
        return fallback_area_id, reasons
    grid = areas.collector_grid(s, actor, fix.lon, fix.lat)
    threshold = current_app.config["GPS_REVIEW_ACCURACY_M"]
    if fix.accuracy_m is not None and fix.accuracy_m > threshold:
        reasons.append(f"gps_accuracy_{fix.accuracy_m:.0f}m")
    if fallback_area_id is not None and grid.id != fallback_area_id:
        reasons.append(f"gps_in_other_grid_{grid.code}")
    return (fallback_area_id if fallback_area_id is not None else grid.id), reasons


def _new(model: type[RegisterRecord], actor: Actor, area_id: int, source: str,
         fix: GpsFix | None, reasons: list[str], fields: dict) -> Any:
    record = model(area_id=area_id, source=source, created_by=actor.user_id,
                   updated_by=actor.user_id, needs_review=bool(reasons),
                   review_reasons=reasons or None, **fields)
    if fix is not None:
        record.set_gps(fix)
    return record


def _history_value(name: str, value: Any) -> Any:
    """A value as the history (JSON) keeps it: personal data never in clear."""
    if name in _PII_FIELDS:
        return "(changed)" if value is not None else None
    if isinstance(value, GpsFix):
        return {"lon": round(value.lon, 7), "lat": round(value.lat, 7),
                "accuracy_m": value.accuracy_m}
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_history_value(name, v) for v in value]
    if isinstance(value, dict):
        return {k: _history_value(k, v) for k, v in value.items()}
    return value


def apply_changes(record: Any, changes: dict) -> dict:
    """Set plain fields; return {field: [old, new]} of what really changed."""
    diff = {}
    for name, new in changes.items():
        old = getattr(record, name)
        if old != new:
            diff[name] = [_history_value(name, old), _history_value(name, new)]
            setattr(record, name, new)
    return diff


# A unique rule of a table: (index name, how to find the record a new one clashes with,
# the message of the 409). The service checks before writing; the index catches a
# concurrent writer that passed the same check, and turns into the same 409.
Unique = tuple[str, Callable[[], Any], str]


def _constraint_of(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def _flush(s: Session, actor: Actor, kind: str, record: Any, unique: Unique | None) -> None:
    """Flush `record` (in a savepoint when a unique rule applies, so that a violation by a
    concurrent writer becomes the 409 our own check would have given)."""
    if unique is None:
        s.add(record)
        s.flush()
        return
    index, find, message = unique
    try:
        with s.begin_nested():
            s.add(record)
            s.flush()
    except IntegrityError as exc:
        existing = find() if _constraint_of(exc) == index else None
        if existing is None:
            raise
        raise _duplicate(s, actor, kind, existing, message) from None


def _created(s: Session, actor: Actor, kind: str, record: Any, client_uuid: uuid.UUID | None,
             summary: dict, unique: Unique | None = None) -> Any:
    _flush(s, actor, kind, record, unique)
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, kind, record.id)
    audit.record(s, actor, f"{kind}_created", kind, record.id,
                 changes={k: _history_value(k, v) for k, v in summary.items()})
    return record


def _replayed(s: Session, actor: Actor, kind: str, client_uuid: uuid.UUID | None,
              payload: dict) -> Any | None:
    """The record an identical earlier create made, or None (new request)."""
    if client_uuid is None:
        return None
    prior = idempotency.claim(s, client_uuid, actor.user_id, f"create_{kind}", payload)
    if prior is None:
        return None
    return get_record(s, actor, KINDS[kind], int(prior[1]))


def _updated(s: Session, actor: Actor, kind: str, record: Any, diff: dict,
             old_area_id: int | None = None, unique: Unique | None = None) -> Any:
    if diff:
        record.updated_by = actor.user_id
        record.updated_at = _now()
        _flush(s, actor, kind, record, unique)
        s.refresh(record)
        audit.record(s, actor, f"{kind}_updated", kind, record.id, changes=diff)
        if old_area_id is not None and old_area_id != record.area_id:
            s.add(Tombstone(object_type=kind, object_id=record.id, area_id=old_area_id,
                            reason="moved"))
    return record


def _point_of(record: Any) -> dict | None:
    if record.location is None:
        return None
    point = to_shape(record.location)
    return {"lon": round(point.x, 7), "lat": round(point.y, 7),
            "accuracy_m": record.gps_accuracy_m}


def _relocate(s: Session, actor: Actor, record: Any, fix: GpsFix,
              parent_area_id: int | None) -> dict:
    """Set a record's new point (the same rules as on create): its grid follows the point
    unless a parent decides it. Returns the history diff."""
    old = _point_of(record)
    record.area_id, reasons = _collected_at(s, actor, fix, parent_area_id, require_point=True)
    record.set_gps(fix)
    diff = {"location": [old, _history_value("location", fix)]}
    if reasons:
        merged = list(dict.fromkeys([*(record.review_reasons or []), *reasons]))
        diff.update(apply_changes(record, {"needs_review": True, "review_reasons": merged}))
    return diff


# What must end (or move) before a record can end: a building's houses, a house's
# households, a household's members.
_CHILDREN: dict[str, tuple[type[RegisterRecord], str]] = {
    "building": (House, "building_id"), "house": (Household, "house_id"),
    "household": (Person, "household_id"),
}


def end_record(s: Session, actor: Actor, kind: str, record_id: int, reason: str,
               expected_version: int | None, as_dict: Any) -> Any:
    """End a record (demolished, closed, moved away…): never deleted, kept in history."""
    actor.require("registry:write")
    record = get_record(s, actor, KINDS[kind], record_id, for_update=True)
    if record.ended_at is not None:
        return record  # ending twice is ending once (a phone may resend with its old version)
    check_version(record, expected_version, as_dict)
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


def _phone_changed(record: Any, prefix: str, phone: str | None) -> bool:
    """Whether `phone` differs from the stored one (compared in clear: masks collide)."""
    stored = pii.decrypt(getattr(record, f"{prefix}_phone_enc"), f"{record.__tablename__}.phone")
    return stored != phone


def _set_phone(record: Any, prefix: str, phone: str | None) -> None:
    setattr(record, f"{prefix}_phone_enc", pii.encrypt(phone, f"{record.__tablename__}.phone"))
    setattr(record, f"{prefix}_phone_masked", pii.mask_phone(phone))


def _follow(s: Session, model: type[RegisterRecord], link: Any, old_area: int,
            new_area: int) -> None:
    """Records linked to a moved parent follow it into its new grid (with tombstones in the
    old one, for phones that hold it)."""
    ids = s.scalars(sa.select(model.id).where(link, model.area_id == old_area)).all()
    if ids:
        s.execute(sa.update(model).where(model.id.in_(ids)).values(area_id=new_area)
                  .execution_options(synchronize_session=False))
        s.add_all(Tombstone(object_type=_singular(model), object_id=i, area_id=old_area,
                            reason="moved") for i in ids)


# --- buildings -----------------------------------------------------------------------------


def create_building(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                    source: str = "grid_worker") -> tuple[Building, bool]:
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
                    expected_version: int | None, as_dict: Any) -> Building:
    actor.require("registry:write")
    building = get_record(s, actor, Building, building_id, for_update=True)
    check_version(building, expected_version, as_dict)
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
                 source: str = "grid_worker") -> tuple[House, bool]:
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
                 expected_version: int | None, as_dict: Any) -> House:
    actor.require("registry:write")
    house = get_record(s, actor, House, house_id, for_update=True)
    check_version(house, expected_version, as_dict)
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
                     source: str = "grid_worker") -> tuple[Household, bool]:
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
                     expected_version: int | None, as_dict: Any) -> Household:
    """Correct a household; a new house_id moves it (and its members) to that house."""
    actor.require("registry:write")
    household = get_record(s, actor, Household, household_id, for_update=True)
    check_version(household, expected_version, as_dict)
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


def _leave_household(s: Session, actor: Actor, person: Person, at: datetime,
                     staying: bool = False) -> None:
    """Close the person's current stay; a household they headed and leave (or die in) no
    longer has that head. `staying`: a new stay in the same household (a new relation)."""
    s.execute(sa.update(HouseholdStay).where(HouseholdStay.person_id == person.id,
                                             HouseholdStay.until.is_(None)).values(until=at))
    if person.household_id is None or staying:
        return
    household = s.scalars(sa.select(Household).where(
        Household.id == person.household_id, Household.head_person_id == person.id)
        .with_for_update()).first()
    if household is not None:
        diff = apply_changes(household, {"head_person_id": None})
        _updated(s, actor, "household", household, diff)


# --- persons -------------------------------------------------------------------------------


def _person_identity(s: Session, actor: Actor, id_number: str | None,
                     exclude_id: int | None = None) -> dict:
    """Encrypted, indexed, masked and derived fields of an ID number; 409 on a duplicate."""
    if id_number is None:
        return {"id_number_enc": None, "id_number_bidx": None, "id_number_masked": None}
    try:
        number = normalize_id_number(id_number, today=local_today())
    except ValidationError as exc:
        raise Invalid(field_errors("id_number", *exc.messages)) from None
    bidx = pii.blind_index(number, ID_FIELD)
    existing = _person_by_bidx(s, bidx, exclude_id)
    if existing is not None:
        raise _duplicate(s, actor, "person", existing, _PERSON_DUPLICATE)
    sex, born = id_number_facts(number)
    return {"id_number_enc": pii.encrypt(number, ID_FIELD), "id_number_bidx": bidx,
            "id_number_masked": pii.mask_id_number(number), "sex": sex, "birth_date": born}


_PERSON_DUPLICATE = "This ID number is already registered"


def _person_by_bidx(s: Session, bidx: str | None, exclude_id: int | None = None
                    ) -> Person | None:
    if bidx is None:
        return None
    return s.scalars(sa.select(Person).where(Person.id_number_bidx == bidx,
                                             Person.id != (exclude_id or -1))).first()


def _person_unique(s: Session, bidx: str | None, exclude_id: int | None = None) -> Unique:
    return ("uq_persons_id_number", lambda: _person_by_bidx(s, bidx, exclude_id),
            _PERSON_DUPLICATE)


def _duplicate(s: Session, actor: Actor, kind: str, existing: Any, message: str) -> Conflict:
    """409 pointing at the existing record when the actor may see it, else at its grid."""
    area = s.get(Area, existing.area_id)
    if areas.area_in_scope(s, actor, existing.area_id):
        return Conflict(f"{message}: update or move the existing record instead",
                        existing={"type": kind, "id": existing.id, "version": existing.version,
                                  "area_id": existing.area_id,
                                  "ended": existing.ended_at is not None})
    return Conflict(f"{message} in {area.name} ({area.code}); ask that grid to move it",
                    existing={"type": kind, "area_code": area.code, "area_name": area.name})


def _person_phone(phone: str | None) -> dict:
    return {"phone_enc": pii.encrypt(phone, PHONE_FIELD),
            "phone_bidx": pii.blind_index(phone, PHONE_FIELD),
            "phone_masked": pii.mask_phone(phone)}


def create_person(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                  source: str = "grid_worker") -> tuple[Person, bool]:
    actor.require("registry:write")
    tags = data.get("tags") or []
    if any(t["tag"] in KEY_TAGS for t in tags):
        actor.require("person:read_key_tags")
    replay = _replayed(s, actor, "person", client_uuid, data)
    if replay is not None:
        return replay, False
    fields = dict(data)
    fix = fields.pop("location", None)
    fields.pop("tags", None)
    household = None
    if fields.get("household_id") is not None:
        household = _referenced(s, actor, Household, fields["household_id"], "household_id")
    area_id, reasons = _collected_at(s, actor, fix, household.area_id if household else None,
                                     require_point=household is None)
    identity = _person_identity(s, actor, fields.pop("id_number", None))
    phone = _person_phone(fields.pop("phone", None))
    person = _new(Person, actor, area_id, source, fix, reasons, {**fields, **identity, **phone})
    # The tags are history rows of their own (key-person ones hidden from who may not see them).
    summary = {k: v for k, v in data.items() if k != "tags"}
    _created(s, actor, "person", person, client_uuid, summary,
             _person_unique(s, identity["id_number_bidx"]))
    if household is not None:
        s.add(HouseholdStay(person_id=person.id, household_id=household.id,
                            relation_to_head=person.relation_to_head))
    for tag in tags:
        add_tag(s, actor, person.id, tag)
    return person, True


def update_person(s: Session, actor: Actor, person_id: int, changes: dict,
                  expected_version: int | None, as_dict: Any) -> Person:
    """Correct a person's details. Moving between households goes through move_person."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version, as_dict)
    changes = dict(changes)
    diff: dict = {}
    unique = None
    old_area = person.area_id
    if "id_number" in changes:
        identity = _person_identity(s, actor, changes.pop("id_number"), exclude_id=person.id)
        if identity["id_number_bidx"] != person.id_number_bidx:
            for name, value in identity.items():
                if name in ("sex", "birth_date"):
                    diff.update(apply_changes(person, {name: value}))
                else:
                    setattr(person, name, value)
            diff["id_number"] = ["(changed)", "(changed)"]
            unique = _person_unique(s, identity["id_number_bidx"], person.id)
    if "phone" in changes:
        phone = _person_phone(changes.pop("phone"))
        if phone["phone_bidx"] != person.phone_bidx:
            for name, value in phone.items():
                setattr(person, name, value)
            diff["phone"] = ["(changed)", "(changed)"]
    if "location" in changes:
        parent_area = person.area_id if person.household_id is not None else None
        diff.update(_relocate(s, actor, person, changes.pop("location"), parent_area))
    diff.update(apply_changes(person, changes))
    return _updated(s, actor, "person", person, diff, old_area, unique)


def end_person(s: Session, actor: Actor, person_id: int, status: str, reason: str | None,
               expected_version: int | None, as_dict: Any) -> Person:
    """A person moves out or dies: the status changes, the record ends, nothing is deleted."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    if person.ended_at is not None and person.status == status:
        return person  # a resend (with the version it had before) changes nothing
    check_version(person, expected_version, as_dict)
    now = _now()
    _leave_household(s, actor, person, now)
    diff = apply_changes(person, {"status": status, "ended_at": now,
                                  "end_reason": reason or status})
    return _updated(s, actor, "person", person, diff)


def move_person(s: Session, actor: Actor, person_id: int, household_id: int,
                relation: str | None, expected_version: int | None, as_dict: Any) -> Person:
    """Move a person to another household (人进户); the old stay is closed, not erased.
    A person who had moved out and is back is present again; the deceased do not move."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version, as_dict)
    if person.status == "deceased":
        raise Conflict("This person is deceased and cannot move")
    household = _referenced(s, actor, Household, household_id, "household_id")
    if (person.household_id == household.id and person.relation_to_head == relation
            and person.ended_at is None):
        return person
    now = _now()
    _leave_household(s, actor, person, now, staying=person.household_id == household.id)
    s.add(HouseholdStay(person_id=person.id, household_id=household.id,
                        relation_to_head=relation, since=now))
    old_area = person.area_id
    changes: dict[str, Any] = {"household_id": household.id, "relation_to_head": relation,
                               "area_id": household.area_id}
    if person.ended_at is not None:
        changes.update(status="present", ended_at=None, end_reason=None)
    diff = apply_changes(person, changes)
    return _updated(s, actor, "person", person, diff, old_area)


def household_stays(s: Session, actor: Actor, person_id: int) -> list[HouseholdStay]:
    get_record(s, actor, Person, person_id)
    return list(s.scalars(sa.select(HouseholdStay).where(HouseholdStay.person_id == person_id)
                          .order_by(HouseholdStay.since, HouseholdStay.id)))


def reveal_person(s: Session, actor: Actor, person_id: int, purpose: audit.Purpose) -> dict:
    """The ID number and phone in clear, for an actor with person:read_pii who states why
    (a code and a text, server.audit.PurposeSchema). Every such read is an audit row
    (数据使用留痕), and so is every refused one (no permission, out of scope)."""
    try:  # 404 out of scope before 403 (ARCHITECTURE §3)
        person = get_record(s, actor, Person, person_id)
        actor.require(READ_PII)
    except (Forbidden, NotFound) as exc:
        raise audit.refused(s, actor, "person_pii_read", "person", person_id, purpose,
                            exc) from None
    audit.record(s, actor, "person_pii_read", "person", person.id, purpose=purpose,
                 changes={"fields": ["id_number", "phone"]})
    return {"id_number": pii.decrypt(person.id_number_enc, ID_FIELD),
            "phone": pii.decrypt(person.phone_enc, PHONE_FIELD)}


# --- tags ----------------------------------------------------------------------------------


def with_tags(s: Session, actor: Actor, persons: list[Person]) -> list[Person]:
    """Attach what each person shows to this actor (one query for the whole page): the
    tags it may see, the age band, and the birth date only with person:read_pii (next to
    the masked ID number it would give the number away: server.pii.mask_id_number)."""
    tags = visible_tags(s, actor, [p.id for p in persons])
    show_birth_date = actor.can(READ_PII)
    year = local_today().year
    for person in persons:
        person.tags = tags.get(person.id, [])
        person.age_band = pii.age_band(person.birth_date, year)
        person.birth_date_shown = person.birth_date if show_birth_date else None
    return persons


def _check_tag_visible(actor: Actor, tag: str) -> None:
    if tag in KEY_TAGS and not actor.can("person:read_key_tags"):
        raise NotFound("No such tag")  # key-person groups do not exist for this role


_CARE_TAGS_ONLY = (PersonTag.__table__.c.kind == "care",)


def tags_visible_to(actor: Actor) -> tuple[sa.ColumnElement[bool], ...]:
    """Which tags the actor may see (key-person groups only with person:read_key_tags).
    Constant expressions: sync caches the SQL built from them."""
    return () if actor.can("person:read_key_tags") else _CARE_TAGS_ONLY


def visible_tags(s: Session, actor: Actor, person_ids: list[int]) -> dict[int, list[PersonTag]]:
    """Current and past tags of these persons that the actor may see, by person."""
    stmt = sa.select(PersonTag).where(PersonTag.person_id.in_(person_ids or [-1]),
                                      *tags_visible_to(actor))
    out: dict[int, list[PersonTag]] = {}
    for tag in s.scalars(stmt.order_by(PersonTag.start_date, PersonTag.id)):
        out.setdefault(tag.person_id, []).append(tag)
    return out


def add_tag(s: Session, actor: Actor, person_id: int, data: dict) -> PersonTag:
    """Tag a person from `start_date` (today by default, never in the future); the tag is
    current until it is ended."""
    actor.require("registry:write")
    tag = data["tag"]
    if tag in KEY_TAGS:
        actor.require("person:read_key_tags")
    elif tag not in CARE_TAGS:
        raise Invalid(field_errors("tag", f"Unknown tag {tag!r}."))
    person = get_record(s, actor, Person, person_id)
    start = data.get("start_date") or local_today()
    if start > local_today():
        raise Invalid(field_errors("start_date", "A tag cannot start in the future."))
    open_same = s.scalars(sa.select(PersonTag).where(
        PersonTag.person_id == person.id, PersonTag.tag == tag,
        PersonTag.end_date.is_(None))).first()
    if open_same is not None:
        return open_same  # already tagged: a resent request changes nothing
    row = PersonTag(person_id=person.id, kind="key" if tag in KEY_TAGS else "care", tag=tag,
                    start_date=start, note=data.get("note"), created_by=actor.user_id)
    s.add(row)
    s.flush()
    audit.record(s, actor, "person_tag_added", "person", person.id,
                 changes={"tag": tag, "start_date": row.start_date.isoformat()})
    return row


def end_tag(s: Session, actor: Actor, person_id: int, tag_id: int, end_date: date | None
            ) -> PersonTag:
    actor.require("registry:write")
    get_record(s, actor, Person, person_id)
    row = s.scalars(sa.select(PersonTag).where(PersonTag.id == tag_id,
                                               PersonTag.person_id == person_id)
                    .with_for_update()).first()
    if row is None or (row.kind == "key" and not actor.can("person:read_key_tags")):
        raise NotFound("No such tag")
    if row.end_date is None:
        end = end_date or local_today()
        if end < row.start_date:
            raise Invalid(field_errors("end_date", "Before the tag's start."))
        if end > local_today():
            raise Invalid(field_errors("end_date", "A tag cannot end in the future."))
        row.end_date = end
        audit.record(s, actor, "person_tag_ended", "person", person_id,
                     changes={"tag": row.tag, "end_date": row.end_date.isoformat()})
    return row


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
                        source: str = "grid_worker") -> tuple[Organisation, bool]:
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
                        expected_version: int | None, as_dict: Any) -> Organisation:
    actor.require("registry:write")
    org = get_record(s, actor, Organisation, org_id, for_update=True)
    check_version(org, expected_version, as_dict)
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
    if name == "wage_arrears_yuan" and value is not None:
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


# --- history -------------------------------------------------------------------------------


def history(s: Session, actor: Actor, kind: str, record_id: int, page: Any) -> list:
    """Who changed what and when, from the audit trail (reads, and refused ones, are in the
    audit trail, not here). Key-person tag events only for roles that may see key-person groups."""
    get_record(s, actor, KINDS[kind], record_id)
    stmt = (sa.select(AuditEntry).where(AuditEntry.object_type == kind,
                                        AuditEntry.object_id == str(record_id),
                                        AuditEntry.action.not_like(r"%\_read"),
                                        AuditEntry.action.not_like(r"%\_refused"))
            .order_by(AuditEntry.id))
    if not actor.can("person:read_key_tags"):
        tag = sa.func.coalesce(AuditEntry.changes["tag"].astext, "")
        stmt = stmt.where(tag.not_in(list(KEY_TAGS)))
    return db.paginate(s, stmt, page)


# --- grid card counts ----------------------------------------------------------------------


def grid_counts(s: Session, area: Area) -> dict:
    """Households and population (present, not ended) in an area's subtree."""
    subtree = areas.subtree_ids(area)
    households = s.scalar(sa.select(sa.func.count()).select_from(Household).where(
        Household.area_id.in_(subtree), Household.ended_at.is_(None)))
    population = s.scalar(sa.select(sa.func.count()).select_from(Person).where(
        Person.area_id.in_(subtree), Person.ended_at.is_(None)))
    return {"households": households, "population": population}


areas.card_counters.append(grid_counts)


# --- building occupancy (kept by triggers, migration 0010) ---------------------------------


def building_counts(building_id: Any) -> tuple[Any, Any, Any]:
    """Households and present persons of the building `building_id` (a column): a LATERAL
    subquery adding up its rows of the trigger-kept roll-up, to join ON true (it has one row
    per building, zeros included), and its two columns. One index lookup a building for
    both numbers (two scalar subqueries cost the benchmark's z14 centre tile, 2,104
    buildings, ~6 ms more: bench/README.md "maps")."""
    t = BuildingOccupancy
    occupancy = (sa.select(sa.func.coalesce(sa.func.sum(t.households), 0).label("households"),
                           sa.func.coalesce(sa.func.sum(t.persons), 0).label("persons"))
                 .where(t.building_id == building_id).lateral("occupancy"))
    return occupancy, occupancy.c.households, occupancy.c.persons


def compact_occupancy(s: Session) -> dict:
    """Fold each building's rows of the occupancy roll-up into one (the triggers append a
    row per change). Rows appended by transactions still running are not seen and are
    folded next time; two runs at once fold disjoint rows. Buildings adding up to nobody
    are dropped."""
    _occupancy_lock(s)
    t = BuildingOccupancy.__table__
    dup = (sa.select(t.c.building_id).group_by(t.c.building_id)
           .having(sa.func.count() > 1).cte("dup"))
    gone = (sa.delete(t).where(t.c.building_id == dup.c.building_id)
            .returning(*t.c).cte("gone"))
    households, persons = sa.func.sum(gone.c.households), sa.func.sum(gone.c.persons)
    folded = s.execute(sa.insert(t).from_select(
        ["building_id", "households", "persons"],
        sa.select(gone.c.building_id, households, persons).group_by(gone.c.building_id)
        .having(sa.or_(households != 0, persons != 0))).returning(t.c.id)).all()
    return {"folded_buildings": len(folded)} if folded else {}


# The whole count from the register. It must count what migration 0010's triggers count
# (and 0010's FULL, which filled the table): a change to the rule needs a new migration for
# the triggers too, or the daily recount "corrects" the triggers every day.
_OCCUPANCY_RECOUNT = """
WITH gone AS (DELETE FROM building_occupancy RETURNING building_id, households, persons),
kept AS (SELECT building_id, sum(households) AS households, sum(persons) AS persons
         FROM gone GROUP BY building_id),
fresh AS (
    SELECT hs.building_id, count(*) AS households, coalesce(sum(p.n), 0) AS persons
    FROM houses hs
    JOIN households h ON h.house_id = hs.id AND h.ended_at IS NULL
    LEFT JOIN (SELECT household_id, count(*) AS n FROM persons
               WHERE ended_at IS NULL AND status = 'present' GROUP BY household_id) p
           ON p.household_id = h.id
    WHERE hs.ended_at IS NULL
    GROUP BY hs.building_id),
put AS (INSERT INTO building_occupancy (building_id, households, persons)
        SELECT building_id, households, persons FROM fresh RETURNING 1)
SELECT (SELECT count(*) FROM put),
       (SELECT count(*) FROM kept FULL JOIN fresh USING (building_id)
        WHERE coalesce(kept.households, 0) <> coalesce(fresh.households, 0)
           OR coalesce(kept.persons, 0) <> coalesce(fresh.persons, 0))
"""


def _occupancy_lock(s: Session) -> None:
    # folding and recounting one after the other: a recount would not see (and so not
    # delete) the row a concurrent fold inserts, and would count its persons twice
    s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('building_occupancy'))"))


def recount_occupancy(s: Session) -> dict:
    """Replace the occupancy roll-up with a count of the register, in one statement (one
    snapshot: a write committed after it keeps its appended row, one before it is in the
    count). The triggers keep the table exact change by change (tests compare both after
    every kind of write); two transactions racing on the same people under READ COMMITTED
    (a member joining a household another ends) could each add what the other's change
    makes wrong (reasoned, not reproduced in a test), and this puts that right."""
    _occupancy_lock(s)
    buildings, drifted = s.execute(sa.text(_OCCUPANCY_RECOUNT)).one()
    return {"recounted_buildings": buildings, "drifted": drifted} if drifted else {}


def register_compaction() -> None:
    from server.cli import PeriodicTask, periodic_tasks

    if not any(t.name == "building_occupancy_compact" for t in periodic_tasks):
        periodic_tasks.append(PeriodicTask("building_occupancy_compact", 600,
                                           compact_occupancy))
    if not any(t.name == "building_occupancy_recount" for t in periodic_tasks):
        periodic_tasks.append(PeriodicTask("building_occupancy_recount", 86400,
                                           recount_occupancy))


register_compaction()
