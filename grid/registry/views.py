"""Register API: buildings, houses, households, persons, organisations."""

from __future__ import annotations

from flask.views import MethodView

from grid.registry import schemas, service
from grid.registry.models import Building, Person
from server import db
from server.api import Blueprint, etag, expected_version
from server.auth.actor import current_actor, login_required

buildings_blp = Blueprint("buildings", __name__, url_prefix="/buildings",
                          description="Buildings (楼栋)")
persons_blp = Blueprint("persons", __name__, url_prefix="/persons",
                        description="People (实有人口)")
blueprints = [buildings_blp, persons_blp]


def _building(record):
    return schemas.BuildingSchema().dump(record)


def _person(record):
    """The person with the tags this caller may see (the response schema dumps it)."""
    return service.with_tags(db.session(), current_actor(), [record])[0]


def _person_dict(record):
    """The person as a 412 body's `current`."""
    return schemas.PersonSchema().dump(_person(record))


@buildings_blp.route("")
class Buildings(MethodView):
    @buildings_blp.arguments(schemas.BuildingQuerySchema, location="query")
    @buildings_blp.response(200, schemas.BuildingSchema(many=True))
    @buildings_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Buildings in the caller's grids."""
        return service.list_records(db.session(), current_actor(), Building, filters,
                                    pagination_parameters)

    @buildings_blp.arguments(schemas.BuildingCreateSchema)
    @buildings_blp.response(201, schemas.BuildingSchema)
    @login_required
    def post(self, data):
        """Record a building at its entrance point (GPS); idempotent by client_uuid."""
        client_uuid = data.pop("client_uuid", None)
        data.pop("version", None)
        with db.unit_of_work() as s:
            building = service.create_building(s, current_actor(), data, client_uuid)
        return building, 201, etag(building.version)


@buildings_blp.route("/<int:building_id>")
class BuildingById(MethodView):
    @buildings_blp.response(200, schemas.BuildingSchema)
    @login_required
    def get(self, building_id):
        building = service.get_record(db.session(), current_actor(), Building, building_id)
        return building, 200, etag(building.version)

    @buildings_blp.arguments(schemas.BuildingWriteSchema)
    @buildings_blp.response(200, schemas.BuildingSchema)
    @login_required
    def patch(self, data, building_id):
        """Correct a building; needs the version edited (412 with the current one if stale)."""
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            building = service.update_building(s, current_actor(), building_id, data, version,
                                               _building)
        return building, 200, etag(building.version)


@buildings_blp.route("/<int:building_id>/end", methods=["POST"])
@buildings_blp.arguments(schemas.EndSchema)
@buildings_blp.response(200, schemas.BuildingSchema)
@login_required
def end_building(data, building_id):
    """End a building (demolished…); it stays in the history."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        return service.end_record(s, current_actor(), "building", building_id, data["reason"],
                                  version, _building)


@buildings_blp.route("/<int:building_id>/history")
@buildings_blp.response(200, schemas.HistorySchema(many=True))
@buildings_blp.paginate()
@login_required
def building_history(building_id, pagination_parameters):
    return service.history(db.session(), current_actor(), "building", building_id,
                           pagination_parameters)


@persons_blp.route("")
class Persons(MethodView):
    @persons_blp.arguments(schemas.PersonQuerySchema, location="query")
    @persons_blp.response(200, schemas.PersonSchema(many=True))
    @persons_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """People in the caller's grids (masked)."""
        s, actor = db.session(), current_actor()
        persons = service.list_records(s, actor, Person, filters, pagination_parameters)
        return service.with_tags(s, actor, persons)

    @persons_blp.arguments(schemas.PersonCreateSchema)
    @persons_blp.response(201, schemas.PersonSchema)
    @login_required
    def post(self, data):
        """Register a person; the ID number gives sex and birth date. 409 if already
        registered (pointing at the record)."""
        client_uuid = data.pop("client_uuid", None)
        data.pop("version", None)
        with db.unit_of_work() as s:
            person = service.create_person(s, current_actor(), data, client_uuid)
        return _person(person), 201, etag(person.version)


@persons_blp.route("/<int:person_id>")
class PersonById(MethodView):
    @persons_blp.response(200, schemas.PersonSchema)
    @login_required
    def get(self, person_id):
        person = service.get_record(db.session(), current_actor(), Person, person_id)
        return _person(person), 200, etag(person.version)

    @persons_blp.arguments(schemas.PersonWriteSchema)
    @persons_blp.response(200, schemas.PersonSchema)
    @login_required
    def patch(self, data, person_id):
        version = expected_version(data)
        data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            person = service.update_person(s, current_actor(), person_id, data, version,
                                           _person_dict)
        return _person(person), 200, etag(person.version)


@persons_blp.route("/<int:person_id>/end", methods=["POST"])
@persons_blp.arguments(schemas.PersonEndSchema)
@persons_blp.response(200, schemas.PersonSchema)
@login_required
def end_person(data, person_id):
    """Moved out or deceased: never deleted."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        person = service.end_person(s, current_actor(), person_id, data["status"],
                                    data.get("reason"), version, _person_dict)
    return _person(person)


@persons_blp.route("/<int:person_id>/move", methods=["POST"])
@persons_blp.arguments(schemas.PersonMoveSchema)
@persons_blp.response(200, schemas.PersonSchema)
@login_required
def move_person(data, person_id):
    """Move to another household; the previous stay is kept."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        person = service.move_person(s, current_actor(), person_id, data["household_id"],
                                     data.get("relation_to_head"), version, _person_dict)
    return _person(person)


@persons_blp.route("/<int:person_id>/stays")
@persons_blp.response(200, schemas.StaySchema(many=True))
@login_required
def stays(person_id):
    """The households a person has belonged to, oldest first."""
    return service.household_stays(db.session(), current_actor(), person_id)


@persons_blp.route("/<int:person_id>/pii")
@persons_blp.arguments(schemas.RevealQuerySchema, location="query")
@persons_blp.response(200, schemas.RevealSchema)
@login_required
def reveal(args, person_id):
    """The ID number and phone in clear: needs person:read_pii and a purpose; audited."""
    with db.unit_of_work() as s:
        return service.reveal_person(s, current_actor(), person_id, args["purpose"])


@persons_blp.route("/<int:person_id>/tags", methods=["POST"])
@persons_blp.arguments(schemas.TagSchema)
@persons_blp.response(201, schemas.TagSchema)
@login_required
def add_tag(data, person_id):
    """Tag a care group (关爱对象) or, with the permission, a key-person group (重点人员)."""
    with db.unit_of_work() as s:
        return service.add_tag(s, current_actor(), person_id, data)


@persons_blp.route("/<int:person_id>/tags/<int:tag_id>/end", methods=["POST"])
@persons_blp.arguments(schemas.TagEndSchema)
@persons_blp.response(200, schemas.TagSchema)
@login_required
def end_tag(data, person_id, tag_id):
    with db.unit_of_work() as s:
        return service.end_tag(s, current_actor(), person_id, tag_id, data.get("end_date"))


@persons_blp.route("/<int:person_id>/history")
@persons_blp.response(200, schemas.HistorySchema(many=True))
@persons_blp.paginate()
@login_required
def person_history(person_id, pagination_parameters):
    """Every change: who, when, which fields, old and new (personal data masked)."""
    return service.history(db.session(), current_actor(), "person", person_id,
                           pagination_parameters)
