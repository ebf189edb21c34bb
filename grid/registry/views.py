"""Register API: buildings, houses, households, persons, organisations."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import ValidationError

from grid.registry import (
    history,
    indicators,
    people,
    records,
    schemas,
    scope,
    tags,
)
from grid.registry.models import Building, House, Household, Organisation, Person
from server import audit, db, idempotency
from server.api import Blueprint, etag, expected_version, link
from server.auth.actor import current_actor, login_required
from server.errors import Invalid, field_errors
from server.security import no_store

buildings_blp = Blueprint("buildings", __name__, url_prefix="/buildings",
                          description="Buildings (楼栋)")
houses_blp = Blueprint("houses", __name__, url_prefix="/houses",
                       description="Houses and rooms (房屋)")
households_blp = Blueprint("households", __name__, url_prefix="/households",
                           description="Households (户)")
persons_blp = Blueprint("persons", __name__, url_prefix="/persons",
                        description="People (实有人口)")
organisations_blp = Blueprint("organisations", __name__, url_prefix="/organisations",
                              description="Organisations (实有单位)")
blueprints = [buildings_blp, houses_blp, households_blp, persons_blp, organisations_blp]


def _create_args(data: dict):
    """(client_uuid, fields) of a create body."""
    client_uuid = data.pop("client_uuid", None)
    data.pop("version", None)
    return client_uuid, data


def _person(record):
    """The person with the tags this caller may see (the response schema dumps it)."""
    return tags.with_tags(db.session(), current_actor(), [record])[0]


def current_person(record):
    """A stale person as a 412 shows it: with the tags this caller may see (registered in
    grid/registry/wiring.py)."""
    return schemas.PersonSchema().dump(_person(record))


@buildings_blp.route("")
class Buildings(MethodView):
    @buildings_blp.arguments(schemas.BuildingQuerySchema, location="query")
    @buildings_blp.response(200, schemas.BuildingSchema(many=True))
    @buildings_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Buildings in the caller's grids."""
        return records.list_records(db.session(), current_actor(), Building, filters,
                                    pagination_parameters)

    @buildings_blp.arguments(schemas.BuildingCreateSchema)
    @buildings_blp.response(201, schemas.BuildingSchema)
    @idempotency.document_replay(buildings_blp, schemas.BuildingSchema)
    @link(201, "GetBuilding", "get", "/buildings/{building_id}", "Read the building recorded",
          building_id="$response.body#/id")
    @link(201, "UpdateBuilding", "patch", "/buildings/{building_id}",
          "Change the building at its version", building_id="$response.body#/id",
          **{"header.If-Match": "$response.header.ETag"})
    @login_required
    def post(self, data):
        """Record a building at its entrance point (GPS); idempotent by client_uuid."""
        client_uuid = data.pop("client_uuid", None)
        data.pop("version", None)
        with db.unit_of_work() as s:
            building, created = records.create_building(s, current_actor(), data, client_uuid)
        return building, *idempotency.create_answer(created, etag(building.version))


@buildings_blp.route("/<int:building_id>")
class BuildingById(MethodView):
    @buildings_blp.response(200, schemas.BuildingSchema)
    @login_required
    def get(self, building_id):
        building = scope.get_record(db.session(), current_actor(), Building, building_id)
        return building, 200, etag(building.version)

    @buildings_blp.arguments(schemas.BuildingWriteSchema)
    @buildings_blp.response(200, schemas.BuildingSchema)
    @login_required
    def patch(self, data, building_id):
        """Correct a building; needs the version edited (412 with the current one if stale)."""
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            building = records.update_building(s, current_actor(), building_id, data, version)
        return building, 200, etag(building.version)


@persons_blp.route("")
class Persons(MethodView):
    @persons_blp.arguments(schemas.PersonQuerySchema, location="query")
    @persons_blp.response(200, schemas.PersonSchema(many=True))
    @persons_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """People in the caller's grids (masked)."""
        s, actor = db.session(), current_actor()
        persons = records.list_records(s, actor, Person, filters, pagination_parameters)
        return tags.with_tags(s, actor, persons)

    @persons_blp.arguments(schemas.PersonCreateSchema)
    @persons_blp.response(201, schemas.PersonSchema)
    @idempotency.document_replay(persons_blp, schemas.PersonSchema)
    @login_required
    def post(self, data):
        """Register a person; the ID number gives sex and birth date. 409 if already
        registered (pointing at the record)."""
        client_uuid = data.pop("client_uuid", None)
        data.pop("version", None)
        with db.unit_of_work() as s:
            person, created = people.create_person(s, current_actor(), data, client_uuid)
        return _person(person), *idempotency.create_answer(created, etag(person.version))


@persons_blp.route("/<int:person_id>")
class PersonById(MethodView):
    @persons_blp.response(200, schemas.PersonSchema)
    @login_required
    def get(self, person_id):
        person = scope.get_record(db.session(), current_actor(), Person, person_id)
        return _person(person), 200, etag(person.version)

    @persons_blp.arguments(schemas.PersonWriteSchema)
    @persons_blp.response(200, schemas.PersonSchema)
    @login_required
    def patch(self, data, person_id):
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            person = people.update_person(s, current_actor(), person_id, data, version)
        return _person(person), 200, etag(person.version)


@persons_blp.route("/<int:person_id>/end", methods=["POST"])
@persons_blp.arguments(schemas.PersonEndSchema)
@persons_blp.response(200, schemas.PersonSchema)
@login_required
def end_person(data, person_id):
    """Moved out or deceased: never deleted."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        person = people.end_person(s, current_actor(), person_id, data["status"],
                                    data.get("reason"), version)
    return _person(person), 200, etag(person.version)


@persons_blp.route("/<int:person_id>/move", methods=["POST"])
@persons_blp.arguments(schemas.PersonMoveSchema)
@persons_blp.response(200, schemas.PersonSchema)
@login_required
def move_person(data, person_id):
    """Move to another household; the previous stay is kept."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        person = people.move_person(s, current_actor(), person_id, data["household_id"],
                                     data.get("relation_to_head"), version)
    return _person(person), 200, etag(person.version)


@persons_blp.route("/<int:person_id>/stays")
@persons_blp.response(200, schemas.StaySchema(many=True))
@login_required
def stays(person_id):
    """The households a person has belonged to, oldest first."""
    return people.household_stays(db.session(), current_actor(), person_id)


@persons_blp.route("/<int:person_id>/pii")
@no_store
@persons_blp.arguments(schemas.RevealQuerySchema, location="query")
@persons_blp.response(200, schemas.RevealSchema)
@login_required
def reveal(args, person_id):
    """The ID number and phone in clear: needs person:read_pii and a purpose (a code and a
    text); audited, and so is a refusal."""
    with db.unit_of_work() as s:
        return people.reveal_person(s, current_actor(), person_id, audit.purpose_of(args))


@persons_blp.route("/<int:person_id>/tags", methods=["POST"])
@persons_blp.arguments(schemas.TagSchema)
@persons_blp.response(201, schemas.TagSchema)
@login_required
def add_tag(data, person_id):
    """Tag a care group (关爱对象) or, with the permission, a key-person group (重点人员)."""
    with db.unit_of_work() as s:
        return tags.add_tag(s, current_actor(), person_id, data)


@persons_blp.route("/<int:person_id>/tags/<int:tag_id>/end", methods=["POST"])
@persons_blp.arguments(schemas.TagEndSchema)
@persons_blp.response(200, schemas.TagSchema)
@login_required
def end_tag(data, person_id, tag_id):
    with db.unit_of_work() as s:
        return tags.end_tag(s, current_actor(), person_id, tag_id, data.get("end_date"))


# --- houses --------------------------------------------------------------------------------


@houses_blp.route("")
class Houses(MethodView):
    @houses_blp.arguments(schemas.HouseQuerySchema, location="query")
    @houses_blp.response(200, schemas.HouseSchema(many=True))
    @houses_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Houses in the caller's grids (owner phones masked)."""
        return records.list_records(db.session(), current_actor(), House, filters,
                                    pagination_parameters)

    @houses_blp.arguments(schemas.HouseCreateSchema)
    @houses_blp.response(201, schemas.HouseSchema)
    @idempotency.document_replay(houses_blp, schemas.HouseSchema)
    @login_required
    def post(self, data):
        """Record a room of a building (in the building's grid); idempotent by client_uuid.
        409 pointing at the house if the room is already registered."""
        client_uuid, data = _create_args(data)
        with db.unit_of_work() as s:
            house, created = records.create_house(s, current_actor(), data, client_uuid)
        return house, *idempotency.create_answer(created, etag(house.version))


@houses_blp.route("/<int:house_id>")
class HouseById(MethodView):
    @houses_blp.response(200, schemas.HouseSchema)
    @login_required
    def get(self, house_id):
        house = scope.get_record(db.session(), current_actor(), House, house_id)
        return house, 200, etag(house.version)

    @houses_blp.arguments(schemas.HouseWriteSchema)
    @houses_blp.response(200, schemas.HouseSchema)
    @login_required
    def patch(self, data, house_id):
        """Correct a house; needs the version edited (412 with the current one if stale)."""
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            house = records.update_house(s, current_actor(), house_id, data, version)
        return house, 200, etag(house.version)


# --- households ----------------------------------------------------------------------------


@households_blp.route("")
class Households(MethodView):
    @households_blp.arguments(schemas.HouseholdQuerySchema, location="query")
    @households_blp.response(200, schemas.HouseholdSchema(many=True))
    @households_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Households in the caller's grids."""
        return records.list_records(db.session(), current_actor(), Household, filters,
                                    pagination_parameters)

    @households_blp.arguments(schemas.HouseholdCreateSchema)
    @households_blp.response(201, schemas.HouseholdSchema)
    @idempotency.document_replay(households_blp, schemas.HouseholdSchema)
    @login_required
    def post(self, data):
        """Record a household in a house, or at a point when the house is not known;
        idempotent by client_uuid. Members join it through POST /persons/{id}/move."""
        client_uuid, data = _create_args(data)
        with db.unit_of_work() as s:
            household, created = records.create_household(s, current_actor(), data, client_uuid)
        return household, *idempotency.create_answer(created,
                                                          etag(household.version))


@households_blp.route("/<int:household_id>")
class HouseholdById(MethodView):
    @households_blp.response(200, schemas.HouseholdSchema)
    @login_required
    def get(self, household_id):
        household = scope.get_record(db.session(), current_actor(), Household, household_id)
        return household, 200, etag(household.version)

    @households_blp.arguments(schemas.HouseholdWriteSchema)
    @households_blp.response(200, schemas.HouseholdSchema)
    @login_required
    def patch(self, data, household_id):
        """Correct a household (the head must be a current member); needs the version."""
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            household = records.update_household(s, current_actor(), household_id, data,
                                                 version)
        return household, 200, etag(household.version)


@households_blp.route("/<int:household_id>/members")
@households_blp.response(200, schemas.PersonSchema(many=True))
@login_required
def household_members(household_id):
    """The current members (the head first), masked, with the tags the caller may see."""
    return records.household_members(db.session(), current_actor(), household_id)


# --- organisations -------------------------------------------------------------------------


@organisations_blp.route("")
class Organisations(MethodView):
    @organisations_blp.arguments(schemas.OrganisationQuerySchema, location="query")
    @organisations_blp.response(200, schemas.OrganisationSchema(many=True))
    @organisations_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Organisations in the caller's grids (filters: kind, industry, risk_flag…)."""
        return records.list_records(db.session(), current_actor(), Organisation, filters,
                                    pagination_parameters)

    @organisations_blp.arguments(schemas.OrganisationCreateSchema)
    @organisations_blp.response(201, schemas.OrganisationSchema)
    @idempotency.document_replay(organisations_blp, schemas.OrganisationSchema)
    @login_required
    def post(self, data):
        """Record an organisation at its main gate; the USCC is checked (GB 32100) and a
        duplicate is a 409 pointing at the existing record. Idempotent by client_uuid."""
        client_uuid, data = _create_args(data)
        with db.unit_of_work() as s:
            org, created = records.create_organisation(s, current_actor(), data, client_uuid)
        return org, *idempotency.create_answer(created, etag(org.version))


@organisations_blp.route("/<int:org_id>")
class OrganisationById(MethodView):
    @organisations_blp.response(200, schemas.OrganisationSchema)
    @login_required
    def get(self, org_id):
        org = scope.get_record(db.session(), current_actor(), Organisation, org_id)
        return org, 200, etag(org.version)

    @organisations_blp.arguments(schemas.OrganisationWriteSchema)
    @organisations_blp.response(200, schemas.OrganisationSchema)
    @login_required
    def patch(self, data, org_id):
        """Correct an organisation; needs the version edited (412 if stale)."""
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            org = records.update_organisation(s, current_actor(), org_id, data, version)
        return org, 200, etag(org.version)


def _month(value: str):
    try:
        return schemas.parse_month(value)
    except ValidationError as exc:
        raise Invalid(field_errors("month", *exc.messages, location="path")) from None


@organisations_blp.route("/<int:org_id>/indicators/<string:month>", methods=["PUT"])
@organisations_blp.doc(parameters=[{
    "in": "path", "name": "month", "required": True, "description": "YYYY-MM, from 1900-01",
    "schema": {"type": "string", "pattern": schemas.MONTH_PATTERN, "example": "2026-03"}}])
@organisations_blp.arguments(schemas.IndicatorWriteSchema)
@organisations_blp.response(200, schemas.IndicatorSchema)
@login_required
def put_indicators(data, org_id, month):
    """Set one month's indicators (YYYY-MM, not in the future): employees, water,
    electricity, wage arrears, social-insurance arrears (社保欠缴), rent arrears (欠租).
    The fields sent are set, the others kept; a resend of the same values changes
    nothing. Audited."""
    with db.unit_of_work() as s:
        return indicators.set_indicators(s, current_actor(), org_id, _month(month), data)


@organisations_blp.route("/<int:org_id>/indicators")
@organisations_blp.arguments(schemas.IndicatorQuerySchema, location="query")
@organisations_blp.response(200, schemas.IndicatorSchema(many=True))
@login_required
def get_indicators(args, org_id):
    """The monthly series from `from` to `to` (inclusive), oldest first. Audited."""
    with db.unit_of_work() as s:
        return indicators.list_indicators(s, current_actor(), org_id, args.get("from_"),
                                       args.get("to"))


# --- what every record has: end (not for persons: they move out or die) and history -------


def _record_routes(blp: Blueprint, kind: str, schema: type, end: bool = True) -> None:
    """POST /<id>/end and GET /<id>/history, the same for every kind of record."""
    if end:
        @blp.route("/<int:record_id>/end", methods=["POST"], endpoint=f"end_{kind}")
        @blp.arguments(schemas.EndSchema)
        @blp.response(200, schema)
        @login_required
        def end_record(data, record_id):
            """End the record (demolished, closed, moved away…): never deleted. A record
            with current children (houses, households, members) must lose them first."""
            version = expected_version(data)
            with db.unit_of_work() as s:
                record = records.end_record(s, current_actor(), kind, record_id,
                                            data["reason"], version)
            return record, 200, etag(record.version)

    @blp.route("/<int:record_id>/history", endpoint=f"{kind}_history")
    @blp.response(200, schemas.HistorySchema(many=True))
    @blp.paginate()
    @login_required
    def record_history(record_id, pagination_parameters):
        """Every change: who, when, which fields, old and new (personal data masked)."""
        return history.history(db.session(), current_actor(), kind, record_id,
                               pagination_parameters)


_record_routes(buildings_blp, "building", schemas.BuildingSchema)
_record_routes(houses_blp, "house", schemas.HouseSchema)
_record_routes(households_blp, "household", schemas.HouseholdSchema)
_record_routes(organisations_blp, "organisation", schemas.OrganisationSchema)
_record_routes(persons_blp, "person", schemas.PersonSchema, end=False)
