"""People (实有人口): collecting and correcting persons (ID number and phone encrypted, indexed
and masked), their moves between households (人进户, each stay kept), moving out or dying,
and revealing their personal data to an actor with person:read_pii who states a purpose
(数据使用留痕: every reveal, and every refused one, is an audit row)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from grid.registry.collecting import (
    Unique,
    _collected_at,
    _created,
    _duplicate,
    _new,
    _now,
    _relocate,
    _replayed,
    _updated,
)
from grid.registry.history import apply_changes
from grid.registry.models import COLLECTED, KEY_TAGS, Household, HouseholdStay, Person
from grid.registry.scope import ID_FIELD, PHONE_FIELD, READ_PII, _referenced, get_record
from grid.registry.tags import add_tag
from grid.registry.validation import id_number_facts, normalize_id_number
from server import audit, pii
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import Conflict, Forbidden, Invalid, NotFound, check_version, field_errors


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


def _person_phone(phone: str | None) -> dict:
    return {"phone_enc": pii.encrypt(phone, PHONE_FIELD),
            "phone_bidx": pii.blind_index(phone, PHONE_FIELD),
            "phone_masked": pii.mask_phone(phone)}


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


def create_person(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                  source: str = COLLECTED) -> tuple[Person, bool]:
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
                  expected_version: int | None) -> Person:
    """Correct a person's details. Moving between households goes through move_person."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version)
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
               expected_version: int | None) -> Person:
    """A person moves out or dies: the status changes, the record ends, nothing is deleted."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    if person.ended_at is not None and person.status == status:
        return person  # a resend (with the version it had before) changes nothing
    check_version(person, expected_version)
    now = _now()
    _leave_household(s, actor, person, now)
    diff = apply_changes(person, {"status": status, "ended_at": now,
                                  "end_reason": reason or status})
    return _updated(s, actor, "person", person, diff)


def move_person(s: Session, actor: Actor, person_id: int, household_id: int,
                relation: str | None, expected_version: int | None) -> Person:
    """Move a person to another household (人进户); the old stay is closed, not erased.
    A person who had moved out and is back is present again; the deceased do not move."""
    actor.require("registry:write")
    person = get_record(s, actor, Person, person_id, for_update=True)
    check_version(person, expected_version)
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
