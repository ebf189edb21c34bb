"""The register's record types as sync knows them (同步的登记类型): for each, its model, its
masked response schema, and what to load before dumping a list of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from sqlalchemy.orm import Session

from grid.registry import schemas as rs
from grid.registry.models import (
    Building,
    House,
    Household,
    Organisation,
    Person,
    RegisterRecord,
)
from grid.registry.tags import with_tags
from server.auth.actor import Actor


@dataclass(frozen=True)
class SyncType:
    """A register type as sync sends it: its model and its masked response schema, and
    what to load before dumping a list of them (persons: the tags the actor may see)."""

    model: type[RegisterRecord]
    schema: type[ma.Schema]
    prepare: Callable[[Session, Actor, list], list] | None = None

    def dump(self, s: Session, actor: Actor, records: list) -> list[dict]:
        if self.prepare is not None:
            records = self.prepare(s, actor, records)
        return self.schema(many=True).dump(records)


TYPES: dict[str, SyncType] = {
    "building": SyncType(Building, rs.BuildingSchema),
    "house": SyncType(House, rs.HouseSchema),
    "household": SyncType(Household, rs.HouseholdSchema),
    "person": SyncType(Person, rs.PersonSchema, with_tags),
    "organisation": SyncType(Organisation, rs.OrganisationSchema),
}


def _dump_one(s: Session, actor: Actor, kind: str, record: Any) -> dict:
    return TYPES[kind].dump(s, actor, [record])[0]
