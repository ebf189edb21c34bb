"""Person tags (人员标签): care groups (关爱对象) for every reader, key-person groups (重点人员)
only for actors with person:read_key_tags (for the others they do not exist: 404); and what
each person shows to an actor (tags, age band, birth date only with person:read_pii)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.registry.models import CARE_TAGS, KEY_TAGS, Person, PersonTag
from grid.registry.scope import READ_PII, get_record
from server import audit, pii
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import Invalid, NotFound, field_errors


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
