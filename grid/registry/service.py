"""The register's business rules: collecting and correcting records from phones, ending
them, moving people between households, tags, organisations' indicators, history, and
revealing personal data for a stated purpose.

Rules that hold for every record (ARCHITECTURE §3):
- scope: a record exists for an actor only if its grid is in their scope (404 otherwise);
- GPS: a collected point must lie in one of the collector's grids (422 naming the grid it
  falls in); poor accuracy is accepted and flagged for review;
- idempotency: creates carry a client UUID (server.idempotency); updates carry the version
  they were based on (412 with the current record when stale, 428 when missing);
- history: every change is an audit row with the fields' old and new values (personal
  data masked in it), read back by `history()`;
- personal data is encrypted at rest and masked; `reveal_person` decrypts for an actor
  with person:read_pii who states a purpose, and audits the read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.areas.models import Area
from grid.registry.models import (
    CARE_TAGS,
    KEY_TAGS,
    Building,
    House,
    Household,
    HouseholdStay,
    Organisation,
    Person,
    PersonTag,
    RegisterRecord,
    Tombstone,
)
from grid.registry.validation import id_number_facts, normalize_id_number
from server import audit, db, idempotency, pii
from server.audit import AuditEntry
from server.auth.actor import Actor
from server.errors import (
    Conflict,
    Invalid,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    field_errors,
)

KINDS: dict[str, type[RegisterRecord]] = {
    "building": Building, "house": House, "household": Household, "person": Person,
    "organisation": Organisation,
}
ID_FIELD, PHONE_FIELD = "person.id_number", "person.phone"
# Fields whose values never enter the history in clear.
_PII_FIELDS = {"id_number", "phone", "leader_phone", "owner_phone"}


def _now() -> datetime:
    return datetime.now(UTC)


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
        raise NotFound(f"No such {model.__tablename__[:-1]}")
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
        stmt = stmt.where(Person.id_number_bidx == pii.blind_index(
            filters["id_number"].strip().upper(), ID_FIELD))
    if model is Person and filters.get("tag"):
        _check_tag_visible(actor, filters["tag"])
        stmt = stmt.where(Person.id.in_(sa.select(PersonTag.person_id).where(
            PersonTag.tag == filters["tag"], PersonTag.end_date.is_(None))))
    return db.paginate(s, stmt, page)


_EXACT_FILTERS = {
    "buildings": ("use",), "houses": ("building_id", "use"),
    "households": ("house_id", "type"),
    "persons": ("household_id", "population_type", "status", "sex"),
    "organisations": ("building_id", "kind", "industry", "uscc"),
}


# --- writing: the rules every record follows -----------------------------------------------


def _collected_at(s: Session, actor: Actor, fix: GpsFix | None, fallback_area_id: int | None,
                  require_point: bool) -> tuple[int, list[str]]:
    """The grid a new record belongs to, and why it needs review (if it does).

    The record's own point decides, and must be in one of the collector's grids; a record
    without a point (a person in a known household) takes its parent's grid.
    """
    reasons: list[str] = []
    if fix is None:
        if fallback_area_id is None or require_point:
            raise Invalid(field_errors("location", "A location is required."))
        return fallback_area_id, reasons
    grid = areas.grid_at(s, fix.lon, fix.lat)
    if grid is None:
        raise Invalid(field_errors("location", "The point is outside every grid."))
    if not areas.area_in_scope(s, actor, grid.id):
        raise Invalid(
            field_errors("location", f"The point falls in {grid.name} ({grid.code}), which is "
                                     "not one of your grids."),
            message=f"The point falls in {grid.name} ({grid.code}), outside your grids",
            grid={"id": grid.id, "code": grid.code, "name": grid.name},
        )
    threshold = current_app.config["GPS_REVIEW_ACCURACY_M"]
    if fix.accuracy_m is not None and fix.accuracy_m > threshold:
        reasons.append(f"gps_accuracy_{fix.accuracy_m:.0f}m")
    return (fallback_area_id if fallback_area_id is not None else grid.id), reasons


def _new(model: type[RegisterRecord], actor: Actor, area_id: int, source: str,
         fix: GpsFix | None, reasons: list[str], fields: dict) -> Any:
    record = model(area_id=area_id, source=source, created_by=actor.user_id,
                   updated_by=actor.user_id, needs_review=bool(reasons),
                   review_reasons=reasons or None, **fields)
    if fix is not None:
        record.set_gps(fix)
    return record


def check_version(record: Any, expected: int | None, as_dict: Any) -> None:
    if expected is None:
        raise PreconditionRequired("Send the version you edited (If-Match or `version`)")
    if expected != record.version:
        raise PreconditionFailed("This record changed since you read it", current=as_dict(record))


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


def _created(s: Session, actor: Actor, kind: str, record: Any, client_uuid: uuid.UUID | None,
             summary: dict) -> Any:
    s.add(record)
    s.flush()
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
             old_area_id: int | None = None) -> Any:
    if diff:
        record.updated_by = actor.user_id
        record.updated_at = _now()
        s.flush()
        s.refresh(record)
        audit.record(s, actor, f"{kind}_updated", kind, record.id, changes=diff)
        if old_area_id is not None and old_area_id != record.area_id:
            s.add(Tombstone(object_type=kind, object_id=record.id, area_id=old_area_id,
                            reason="moved"))
    return record


def end_record(s: Session, actor: Actor, kind: str, record_id: int, reason: str,
               expected_version: int | None, as_dict: Any) -> Any:
    """End a record (demolished, closed, moved away…): never deleted, kept in history."""
    actor.require("registry:write")
    record = get_record(s, actor, KINDS[kind], record_id, for_update=True)
    check_version(record, expected_version, as_dict)
    if record.ended_at is not None:
        return record  # ending twice is ending once (a phone may resend)
    record.ended_at, record.end_reason = _now(), reason
    return _updated(s, actor, kind, record, {"ended_at": [None, record.ended_at.isoformat()],
                                             "end_reason": [None, reason]})


# --- buildings -----------------------------------------------------------------------------


def create_building(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                    source: str = "grid_worker") -> Building:
    actor.require("registry:write")
    replay = _replayed(s, actor, "building", client_uuid, data)
    if replay is not None:
        return replay
    fields = dict(data)
    fix = fields.pop("location", None)
    phone = fields.pop("leader_phone", None)
    area_id, reasons = _collected_at(s, actor, fix, None, require_point=True)
    building = _new(Building, actor, area_id, source, fix, reasons, fields)
    _set_phone(building, "leader", phone)
    return _created(s, actor, "building", building, client_uuid, data)


def _set_phone(record: Any, prefix: str, phone: str | None) -> None:
    setattr(record, f"{prefix}_phone_enc", pii.encrypt(phone, f"{record.__tablename__}.phone"))
    setattr(record, f"{prefix}_phone_masked", pii.mask_phone(phone))


def update_building(s: Session, actor: Actor, building_id: int, changes: dict,
                    expected_version: int | None, as_dict: Any) -> Building:
    actor.require("registry:write")
    building = get_record(s, actor, Building, building_id, for_update=True)
    check_version(building, expected_version, as_dict)
    changes = dict(changes)
    diff: dict = {}
    old_area = building.area_id
    if "location" in changes:
        fix = changes.pop("location")
        building.area_id, reasons = _collected_at(s, actor, fix, None, require_point=True)
        building.set_gps(fix)
        diff["location"] = ["(moved)", "(moved)"]
        if reasons:
            building.needs_review, building.review_reasons = True, reasons
    if "leader_phone" in changes:
        phone = changes.pop("leader_phone")
        if pii.mask_phone(phone) != building.leader_phone_masked or phone is None:
            _set_phone(building, "leader", phone)
            diff["leader_phone"] = ["(changed)", "(changed)"]
    diff.update(apply_changes(building, changes))
    if building.area_id != old_area:
        _move_children_area(s, building, old_area)
    return _updated(s, actor, "building", building, diff, old_area)


def _move_children_area(s: Session, building: Building, old_area: int) -> None:
    """Houses, households and people follow their building into its new grid."""
    for model, link in ((House, House.building_id == building.id),
                        (Household, Household.house_id.in_(
                            sa.select(House.id).where(House.building_id == building.id))),
                        (Person, Person.household_id.in_(
                            sa.select(Household.id).join(House, House.id == Household.house_id)
                            .where(House.building_id == building.id)))):
        ids = s.scalars(sa.select(model.id).where(link, model.area_id == old_area)).all()
        if ids:
            s.execute(sa.update(model).where(model.id.in_(ids))
                      .values(area_id=building.area_id)
                      .execution_options(synchronize_session=False))
            s.add_all(Tombstone(object_type=model.__tablename__[:-1], object_id=i,
                                area_id=old_area, reason="moved") for i in ids)


# --- persons -------------------------------------------------------------------------------


def _person_identity(s: Session, actor: Actor, id_number: str | None,
                     exclude_id: int | None = None) -> dict:
    """Encrypted, indexed, masked and derived fields of an ID number; 409 on a duplicate."""
    if id_number is None:
        return {"id_number_enc": None, "id_number_bidx": None, "id_number_masked": None}
    try:
        number = normalize_id_number(id_number)
    except ValidationError as exc:
        raise Invalid(field_errors("id_number", *exc.messages)) from None
    bidx = pii.blind_index(number, ID_FIELD)
    existing = s.scalars(sa.select(Person).where(Person.id_number_bidx == bidx,
                                                 Person.id != (exclude_id or -1))).first()
    if existing is not None:
        raise _duplicate(s, actor, "person", existing, "This ID number is already registered")
    sex, born = id_number_facts(number)
    return {"id_number_enc": pii.encrypt(number, ID_FIELD), "id_number_bidx": bidx,
            "id_number_masked": pii.mask_id_number(number), "sex": sex, "birth_date": born}


def _duplicate(s: Session, actor: Actor, kind: str, existing: Any, message: str) -> Conflict:
    """409 pointing at the existing record when the actor may see it, else at its grid."""
    area = s.get(Area, existing.area_id)
    if areas.area_in_scope(s, actor, existing.area_id):
        return Conflict(f"{message}: update or move the existing record instead",
                        existing={"type": kind, "id": existing.id, "version": existing.version,
                                  "area_id": existing.area_id})
    return Conflict(f"{message} in {area.name} ({area.code}); ask that grid to move it",
                    existing={"type": kind, "area_code": area.code, "area_name": area.name})


def _person_phone(phone: str | None) -> dict:
    return {"phone_enc": pii.encrypt(phone, PHONE_FIELD),
            "phone_bidx": pii.blind_index(phone, PHONE_FIELD),
            "phone_masked": pii.mask_phone(phone)}


def create_person(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                  source: str = "grid_worker") -> Person:
    actor.require("registry:write")
    replay = _replayed(s, actor, "person", client_uuid, data)
    if replay is not None:
        return replay
    fields = dict(data)
    fix = fields.pop("location", None)
    tags = fields.pop("tags", [])
    household = None
    if fields.get("household_id") is not None:
        household = get_record(s, actor, Household, fields["household_id"])
    area_id, reasons = _collected_at(s, actor, fix, household.area_id if household else None,
                                     require_point=household is None)
    identity = _person_identity(s, actor, fields.pop("id_number", None))
    phone = _person_phone(fields.pop("phone", None))
    person = _new(Person, actor, area_id, source, fix, reasons, {**fields, **identity, **phone})
    _created(s, actor, "person", person, client_uuid, data)
    if household is not None:
        s.add(HouseholdStay(person_id=person.id, household_id=household.id,
                            relation_to_head=person.relation_to_head))
    for tag in tags:
        add_tag(s, actor, person.id, tag, record_history=False)
    return person


def update_person(s: Session, actor: Actor, person_id: int, changes: dict,
                  expected_version: int | None, as_dict: Any) -> Person:
    """Correct a person's details. Moving between households goes through move_person."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version, as_dict)
    changes = dict(changes)
    diff: dict = {}
    if "id_number" in changes:
        identity = _person_identity(s, actor, changes.pop("id_number"), exclude_id=person.id)
        if identity["id_number_bidx"] != person.id_number_bidx:
            for name, value in identity.items():
                setattr(person, name, value)
            diff["id_number"] = ["(changed)", "(changed)"]
    if "phone" in changes:
        phone = _person_phone(changes.pop("phone"))
        if phone["phone_bidx"] != person.phone_bidx:
            for name, value in phone.items():
                setattr(person, name, value)
            diff["phone"] = ["(changed)", "(changed)"]
    if "location" in changes:
        person.set_gps(changes.pop("location"))
    diff.update(apply_changes(person, changes))
    return _updated(s, actor, "person", person, diff)


def end_person(s: Session, actor: Actor, person_id: int, status: str, reason: str | None,
               expected_version: int | None, as_dict: Any) -> Person:
    """A person moves out or dies: the status changes, the record ends, nothing is deleted."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version, as_dict)
    if person.ended_at is not None and person.status == status:
        return person
    diff = apply_changes(person, {"status": status, "ended_at": _now(),
                                  "end_reason": reason or status})
    s.execute(sa.update(HouseholdStay).where(HouseholdStay.person_id == person.id,
                                             HouseholdStay.until.is_(None)).values(until=_now()))
    return _updated(s, actor, "person", person, diff)


def move_person(s: Session, actor: Actor, person_id: int, household_id: int,
                relation: str | None, expected_version: int | None, as_dict: Any) -> Person:
    """Move a person to another household (人进户); the old stay is closed, not erased."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version, as_dict)
    household = get_record(s, actor, Household, household_id)
    if person.household_id == household.id and person.relation_to_head == relation:
        return person
    now = _now()
    s.execute(sa.update(HouseholdStay).where(HouseholdStay.person_id == person.id,
                                             HouseholdStay.until.is_(None)).values(until=now))
    s.add(HouseholdStay(person_id=person.id, household_id=household.id,
                        relation_to_head=relation, since=now))
    old_area = person.area_id
    diff = apply_changes(person, {"household_id": household.id, "relation_to_head": relation,
                                  "area_id": household.area_id})
    return _updated(s, actor, "person", person, diff, old_area)


def household_stays(s: Session, actor: Actor, person_id: int) -> list[HouseholdStay]:
    get_record(s, actor, Person, person_id)
    return list(s.scalars(sa.select(HouseholdStay).where(HouseholdStay.person_id == person_id)
                          .order_by(HouseholdStay.since)))


def reveal_person(s: Session, actor: Actor, person_id: int, purpose: str) -> dict:
    """The ID number and phone in clear, for an actor with person:read_pii who states why.
    Every such read is an audit row (数据使用留痕)."""
    actor.require("person:read_pii")
    purpose = (purpose or "").strip()
    if len(purpose) < 4:
        raise Invalid(field_errors("purpose", "State why you need the unmasked data.",
                                   location="query"))
    person = get_record(s, actor, Person, person_id)
    audit.record(s, actor, "person_pii_read", "person", person.id, purpose=purpose,
                 changes={"fields": ["id_number", "phone"]})
    return {"id_number": pii.decrypt(person.id_number_enc, ID_FIELD),
            "phone": pii.decrypt(person.phone_enc, PHONE_FIELD)}


# --- tags ----------------------------------------------------------------------------------


def with_tags(s: Session, actor: Actor, persons: list[Person]) -> list[Person]:
    """Attach the tags each person shows to this actor (one query for the whole page)."""
    tags = visible_tags(s, actor, [p.id for p in persons])
    for person in persons:
        person.tags = tags.get(person.id, [])
    return persons


def _check_tag_visible(actor: Actor, tag: str) -> None:
    if tag in KEY_TAGS and not actor.can("person:read_key_tags"):
        raise NotFound("No such tag")  # key-person groups do not exist for this role


def visible_tags(s: Session, actor: Actor, person_ids: list[int]) -> dict[int, list[PersonTag]]:
    """Current and past tags of these persons that the actor may see, by person."""
    stmt = sa.select(PersonTag).where(PersonTag.person_id.in_(person_ids or [-1]))
    if not actor.can("person:read_key_tags"):
        stmt = stmt.where(PersonTag.kind == "care")
    out: dict[int, list[PersonTag]] = {}
    for tag in s.scalars(stmt.order_by(PersonTag.start_date, PersonTag.id)):
        out.setdefault(tag.person_id, []).append(tag)
    return out


def add_tag(s: Session, actor: Actor, person_id: int, data: dict,
            record_history: bool = True) -> PersonTag:
    actor.require("registry:write")
    tag = data["tag"]
    if tag in KEY_TAGS:
        actor.require("person:read_key_tags")
    elif tag not in CARE_TAGS:
        raise Invalid(field_errors("tag", f"Unknown tag {tag!r}."))
    person = get_record(s, actor, Person, person_id)
    open_same = s.scalars(sa.select(PersonTag).where(
        PersonTag.person_id == person.id, PersonTag.tag == tag,
        PersonTag.end_date.is_(None))).first()
    if open_same is not None:
        return open_same  # already tagged: a resent request changes nothing
    row = PersonTag(person_id=person.id, kind="key" if tag in KEY_TAGS else "care", tag=tag,
                    start_date=data.get("start_date") or date.today(), note=data.get("note"),
                    created_by=actor.user_id)
    s.add(row)
    s.flush()
    if record_history:
        audit.record(s, actor, "person_tag_added", "person", person.id,
                     changes={"tag": tag, "start_date": row.start_date.isoformat()})
    return row


def end_tag(s: Session, actor: Actor, person_id: int, tag_id: int, end_date: date | None
            ) -> PersonTag:
    actor.require("registry:write")
    get_record(s, actor, Person, person_id)
    row = s.scalars(sa.select(PersonTag).where(PersonTag.id == tag_id,
                                               PersonTag.person_id == person_id)).first()
    if row is None or (row.kind == "key" and not actor.can("person:read_key_tags")):
        raise NotFound("No such tag")
    if row.end_date is None:
        row.end_date = end_date or date.today()
        if row.end_date < row.start_date:
            raise Invalid(field_errors("end_date", "Before the tag's start."))
        audit.record(s, actor, "person_tag_ended", "person", person_id,
                     changes={"tag": row.tag, "end_date": row.end_date.isoformat()})
    return row


# --- history -------------------------------------------------------------------------------


def history(s: Session, actor: Actor, kind: str, record_id: int, page: Any) -> list:
    """Who changed what and when, from the audit trail. Key-person tag events only for
    roles that may see key-person groups."""
    get_record(s, actor, KINDS[kind], record_id)
    stmt = (sa.select(AuditEntry).where(AuditEntry.object_type == kind,
                                        AuditEntry.object_id == str(record_id))
            .order_by(AuditEntry.id))
    if not actor.can("person:read_key_tags"):
        tag = sa.func.coalesce(AuditEntry.changes["tag"].astext, "")
        stmt = stmt.where(tag.not_in(list(KEY_TAGS)))
    return db.paginate(s, stmt, page)


# --- grid card counts ----------------------------------------------------------------------


def grid_counts(s: Session, area: Area) -> dict:
    """Households and population (present, not ended) in an area's subtree."""
    subtree = sa.select(Area.id).where(Area.path.startswith(area.path, autoescape=True))
    households = s.scalar(sa.select(sa.func.count()).select_from(Household).where(
        Household.area_id.in_(subtree), Household.ended_at.is_(None)))
    population = s.scalar(sa.select(sa.func.count()).select_from(Person).where(
        Person.area_id.in_(subtree), Person.ended_at.is_(None)))
    return {"households": households, "population": population}


areas.card_counters.append(grid_counts)
