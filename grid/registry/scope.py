"""Reading the register within scope (在格内): a record exists for an actor only if its grid
is in their scope (404 otherwise); a record a request body names must be in scope and not
ended (422 naming the field). The kinds of record and the names of the personal-data fields
live here, at the bottom of the register's modules."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.registry.models import Building, House, Household, Organisation, Person, RegisterRecord
from server.auth.actor import Actor
from server.errors import Invalid, NotFound, field_errors

KINDS: dict[str, type[RegisterRecord]] = {
    "building": Building, "house": House, "household": Household, "person": Person,
    "organisation": Organisation,
}
ID_FIELD, PHONE_FIELD = "person.id_number", "person.phone"
READ_PII = "person:read_pii"


def _singular(model: type[RegisterRecord]) -> str:
    return model.__tablename__[:-1]


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
