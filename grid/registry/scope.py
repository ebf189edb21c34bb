"""Reading the register within scope (在格内): a record exists for an actor only if its grid
is in their scope (404 otherwise); a record a request body names must be in scope and not
ended (422 naming the field). The kinds of record and the names of the personal-data fields
live here, at the bottom of the register's modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Opening:
    """A way one record outside the actor's scope is opened to them for reading (紧急授权,
    grid.exchange.grants, plugged in at wiring): `condition(model, actor, record_id)` is SQL
    OR-ed with the scope filter (None: nothing opened to this actor), `on_read(s, actor,
    model, record)` is told of each read of a record outside the scope (audit)."""

    condition: Callable[[type[RegisterRecord], Actor, int], Any]
    on_read: Callable[[Session, Actor, type[RegisterRecord], Any], None]


openings: list[Opening] = []


def get_record(s: Session, actor: Actor, model: type[RegisterRecord], record_id: int, *,
               for_update: bool = False) -> Any:
    """One record in scope (404 otherwise). For reading, an opening (break-the-glass) may
    add that one record outside the scope; writes never get it."""
    stmt = scoped(model, actor).where(model.id == record_id)
    opened = [] if for_update else [
        (o, c) for o in openings if (c := o.condition(model, actor, record_id)) is not None]
    if opened:
        stmt = (sa.select(model).where(model.id == record_id, sa.or_(
            areas.in_scope(model.area_id, actor), *(c for _, c in opened))))
    record = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if record is None:
        raise NotFound(f"No such {_singular(model)}")
    if opened and not areas.area_in_scope(s, actor, record.area_id):
        for opening, _ in opened:
            opening.on_read(s, actor, model, record)
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
