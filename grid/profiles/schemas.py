"""Response shapes of the profiles: registry and visit records keep their own schemas
(masked by them), so a profile shows a record exactly as its own endpoint does."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validates_schema

from grid.areas.schemas import AreaSchema, ChainItemSchema, ContactSchema, GridCardSchema
from grid.cases.models import STATES
from grid.registry import models as m
from grid.registry import schemas as registry
from grid.visits.schemas import VisitSchema
from server import audit
from server.api import Schema


class RevealQuerySchema(Schema):
    reveal = fields.Boolean(load_default=False, metadata={
        "description": "Show the ID number and phone in clear (person:read_pii; audited)"})
    purpose_code = audit.purpose_code_field(required=False)
    purpose = audit.purpose_text_field(required=False)

    @validates_schema
    def _purpose_with_reveal(self, data, **kwargs):
        """A reveal states its purpose as `/persons/{id}/pii` does (audit.PurposeSchema)."""
        if data.get("reveal"):
            missing = [n for n in ("purpose_code", "purpose") if not data.get(n)]
            if missing:
                raise ValidationError({n: ["Required with reveal=true."] for n in missing})


class CaseRowSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    state = fields.String()
    state_label = fields.Function(lambda c: STATES[c["state"]])
    category = fields.String()
    category_name = fields.String()
    light = fields.String(allow_none=True)
    open = fields.Boolean()
    address = fields.String(allow_none=True)
    reported_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime(allow_none=True)
    relation = fields.String(metadata={"description": "reported (by the person's account) "
                                                     "or nearby (within 50 m)"})


def _labels(description: str) -> fields.Method:
    """A profile's `labels`: for each of its code → count maps, code → Chinese term (the
    maps keep their shape; a client that ignores `labels` sees them as before)."""
    return fields.Method("dump_labels", metadata={"type": "object", "description": description})


_sections = fields.Dict(metadata={"description": "Sections other modules add (bookings…)"})


class PersonProfileSchema(Schema):
    person = fields.Nested(registry.PersonSchema)
    revealed = fields.Nested(registry.RevealSchema, allow_none=True)
    household = fields.Nested(registry.HouseholdSchema, allow_none=True)
    members = fields.List(fields.Nested(registry.PersonSchema))
    house = fields.Nested(registry.HouseSchema, allow_none=True)
    building = fields.Nested(registry.BuildingSchema, allow_none=True)
    grid = fields.Nested(GridCardSchema)
    tags = fields.List(fields.Nested(registry.TagSchema),
                       metadata={"description": "Current and past (end_date) tags"})
    visits = fields.List(fields.Nested(VisitSchema))
    cases = fields.List(fields.Nested(CaseRowSchema))
    bookings = fields.Raw(metadata={
        "description": "From the services module, when installed: the person's bookings "
                       "(service, slot time, state) that the caller manages, newest first"})


class HouseholdProfileSchema(Schema):
    household = fields.Nested(registry.HouseholdSchema)
    house = fields.Nested(registry.HouseSchema, allow_none=True)
    building = fields.Nested(registry.BuildingSchema, allow_none=True)
    members = fields.List(fields.Nested(registry.PersonSchema))
    grid = fields.Nested(GridCardSchema)
    visits = fields.List(fields.Nested(VisitSchema))
    cases = fields.List(fields.Nested(CaseRowSchema))


class RoomSchema(Schema):
    house = fields.Nested(registry.HouseSchema)
    households = fields.Integer()
    persons = fields.Integer()


class OccupancySchema(Schema):
    rooms = fields.Integer()
    occupied = fields.Integer()
    empty = fields.Integer()
    households = fields.Integer()
    persons = fields.Integer()
    by_use = fields.Dict(keys=fields.String(), values=fields.Integer())


class BuildingProfileSchema(Schema):
    building = fields.Nested(registry.BuildingSchema)
    rooms = fields.List(fields.Nested(RoomSchema))
    occupancy = fields.Nested(OccupancySchema)
    households = fields.List(fields.Nested(registry.HouseholdSchema))
    organisations = fields.List(fields.Nested(registry.OrganisationSchema))
    grid = fields.Nested(GridCardSchema)
    visits = fields.List(fields.Nested(VisitSchema))
    cases = fields.List(fields.Nested(CaseRowSchema))
    labour_risks = fields.Raw(metadata={  # hotspots: grid/insights/labour.building_section
        "description": "From the insights module, when installed: the latest labour-dispute "
                       "risk (劳资纠纷风险) of each organisation in the building, riskiest first"})
    labels = _labels("`by_use` (occupancy's) → house use → 自住…")

    def dump_labels(self, profile: dict) -> dict:
        return {"by_use": m.HOUSE_USES}


class PopulationSchema(Schema):
    total = fields.Integer()
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer())
    by_age_sex = fields.Dict(keys=fields.String(), values=fields.Dict(
        keys=fields.String(), values=fields.Integer()), metadata={
        "description": "Age band (0-17, 18-59, 60-79, 80+, unknown) → sex (M, F, ?) → count. "
                       "Ages as on birthdays for callers with person:read_pii; for others, "
                       "this year − birth year (the counts move on 1 January only)"})


class CoverageSchema(Schema):
    days = fields.Integer()
    visits = fields.Integer()
    households_visited = fields.Integer()
    rate = fields.Float(allow_none=True)


class WorkerAreaSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class WorkerSchema(ContactSchema):
    area = fields.Nested(WorkerAreaSchema)


class ChildSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    level = fields.String()
    population = fields.Integer()
    households = fields.Integer()
    open_cases = fields.Integer()


class AreaProfileSchema(Schema):
    area = fields.Nested(AreaSchema)
    chain = fields.List(fields.Nested(ChainItemSchema))
    population = fields.Nested(PopulationSchema)
    care_groups = fields.Dict(keys=fields.String(), values=fields.Integer())
    key_persons = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True,
                              metadata={"description": "Only with person:read_key_tags"})
    households = fields.Integer()
    buildings = fields.Integer()
    houses = fields.Integer()
    organisations = fields.Integer()
    open_cases = fields.Integer()
    overdue_cases = fields.Integer()
    visit_coverage = fields.Nested(CoverageSchema)
    workers = fields.List(fields.Nested(WorkerSchema))
    children = fields.List(fields.Nested(ChildSchema))
    labour_risks = fields.Raw(allow_none=True, metadata={  # hotspots: insights.labour
        "description": "From the insights module, when installed: the latest scored month's "
                       "labour-dispute risk (劳资纠纷风险) — organisations per level and the "
                       "riskiest (orange, red) — or null"})
    labels = _labels("`by_type` (population's) → 户籍人口…, `care_groups` → 独居老人…, "
                     "`key_persons` → 社区矫正… (only with the key-person counts)")

    def dump_labels(self, profile: dict) -> dict:
        labels = {"by_type": m.POPULATION_TYPES, "care_groups": m.CARE_TAGS}
        if profile["key_persons"] is not None:
            labels["key_persons"] = m.KEY_TAGS
        return labels
