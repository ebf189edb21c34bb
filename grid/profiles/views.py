"""Profiles API (画像): /persons/{id}/profile, /households/{id}/profile,
/buildings/{id}/profile, /areas/{id}/profile."""

from __future__ import annotations

from grid.profiles import schemas, service
from server import audit, db
from server.api import Blueprint
from server.auth.actor import current_actor, login_required
from server.clock import local_today
from server.security import no_store

blp = Blueprint("profiles", __name__, url_prefix="",
                description="Profiles (画像) of persons, households, buildings and areas")
blueprints = [blp]


@blp.route("/persons/<int:person_id>/profile")
@no_store  # ?reveal=true answers the ID number and phone in clear
@blp.arguments(schemas.RevealQuerySchema, location="query")
@blp.response(200, schemas.PersonProfileSchema)
@login_required
def person_profile(args, person_id: int):
    """人员画像, masked; `?reveal=true&purpose_code=…&purpose=…` shows the ID number and
    phone (person:read_pii; audited, refusals too)."""
    reveal = audit.purpose_of(args) if args["reveal"] else None
    with db.unit_of_work() as s:  # a reveal or a key-person profile writes an audit row
        return service.person_profile(s, current_actor(), person_id, reveal)


@blp.route("/households/<int:household_id>/profile")
@blp.response(200, schemas.HouseholdProfileSchema)
@login_required
def household_profile(household_id: int):
    """户画像: house, building, members, visits, cases nearby."""
    return service.household_profile(db.session(), current_actor(), household_id)


@blp.route("/buildings/<int:building_id>/profile")
@blp.response(200, schemas.BuildingProfileSchema)
@login_required
def building_profile(building_id: int):
    """楼栋画像: rooms and occupancy, households, organisations, visits, cases nearby."""
    return service.building_profile(db.session(), current_actor(), building_id)


@blp.route("/areas/<int:area_id>/profile")
@blp.response(200, schemas.AreaProfileSchema)
@login_required
def area_profile(area_id: int):
    """网格画像, or a community/street/district's numbers rolled up (within your scope)."""
    return service.area_profile(db.session(), current_actor(), area_id, local_today())
