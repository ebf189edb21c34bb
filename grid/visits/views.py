"""Visits API: /visits, /visit-policies and /me/tasks."""

from __future__ import annotations

from flask.views import MethodView

from geo import crs as crs_mod
from grid.visits import schemas, service
from server import db, idempotency
from server.api import Blueprint, etag, expected_version
from server.auth.actor import current_actor, login_required

visits_blp = Blueprint("visits", __name__, url_prefix="/visits", description="Visits (走访)")
policies_blp = Blueprint("visit_policies", __name__, url_prefix="/visit-policies",
                         description="Visit policies per group and area (走访频次)")
tasks_blp = Blueprint("my_tasks", __name__, url_prefix="/me",
                      description="One's to-do list (待办)")
blueprints = [visits_blp, policies_blp, tasks_blp]


@visits_blp.route("")
class Visits(MethodView):
    @visits_blp.arguments(schemas.VisitQuerySchema, location="query")
    @visits_blp.response(200, schemas.VisitSchema(many=True))
    @visits_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Visits in the caller's grids, newest first."""
        return service.list_visits(db.session(), current_actor(), filters,
                                   pagination_parameters)

    @visits_blp.arguments(schemas.VisitCreateSchema)
    @visits_blp.response(201, schemas.VisitSchema)
    @idempotency.document_replay(visits_blp, schemas.VisitSchema)
    @login_required
    def post(self, data):
        """Record a visit to one household, person or organisation, where it happened (GPS
        in one of your grids); idempotent by client_uuid."""
        client_uuid = data.pop("client_uuid", None)
        with db.unit_of_work() as s:
            visit, created = service.create_visit(s, current_actor(), data, client_uuid)
        return visit, *idempotency.create_answer(created, etag(visit.version))


@visits_blp.route("/<int:visit_id>")
class VisitById(MethodView):
    @visits_blp.response(200, schemas.VisitSchema)
    @login_required
    def get(self, visit_id):
        visit = service.get_visit(db.session(), current_actor(), visit_id)
        return visit, 200, etag(visit.version)

    @visits_blp.arguments(schemas.FollowUpDoneSchema)
    @visits_blp.response(200, schemas.VisitSchema)
    @login_required
    def patch(self, data, visit_id):
        """Complete the visit's follow-up (the only change a visit takes); needs the version
        (If-Match or `version`): 412 with the current visit if stale."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            visit = service.complete_follow_up(s, current_actor(), visit_id,
                                               data.get("follow_up_result"), version)
        return visit, 200, etag(visit.version)


@policies_blp.route("")
@policies_blp.arguments(schemas.PolicyQuerySchema, location="query")
@policies_blp.response(200, schemas.PolicySchema(many=True))
@policies_blp.paginate()
@login_required
def list_policies(filters, pagination_parameters):
    """Policy rows set in the areas you can see (your subtrees and their ancestors)."""
    return service.list_policies(db.session(), current_actor(), filters,
                                 pagination_parameters)


@policies_blp.route("/effective")
@policies_blp.arguments(schemas.EffectiveQuerySchema, location="query")
@policies_blp.response(200, schemas.EffectivePolicySchema(many=True))
@login_required
def effective_policies(args):
    """How often each group is visited in an area: its own row, else the nearest area's up
    the tree, else the default."""
    return service.effective_policies(db.session(), current_actor(), args["area_id"])


@policies_blp.route("/<int:area_id>/<string:tag>")
class PolicyByAreaTag(MethodView):
    @policies_blp.arguments(schemas.PolicyPutSchema)
    @policies_blp.response(200, schemas.PolicySchema)
    @policies_blp.alt_response(201, schema=schemas.PolicySchema, success=True,
                               description="Created")
    @login_required
    def put(self, data, area_id, tag):
        """Set an area's policy for a group (registry:import; key-person groups also need
        person:read_key_tags). Replacing one needs its version (If-Match or `version`)."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            row, created = service.set_policy(s, current_actor(), area_id, tag,
                                              data["interval_days"], version)
        return row, 201 if created else 200, etag(row.version)

    @policies_blp.response(204)
    @login_required
    def delete(self, area_id, tag):
        """Remove an area's policy: the area falls back to the next one up (or the default).
        If-Match, when sent, must be the current version."""
        version = expected_version({})
        with db.unit_of_work() as s:
            service.delete_policy(s, current_actor(), area_id, tag, version)


@tasks_blp.route("/tasks")
@tasks_blp.arguments(schemas.TasksQuerySchema, location="query")
@tasks_blp.response(200, schemas.TasksSchema)
@login_required
def my_tasks(args):
    """Your due and overdue visits (people of the care groups — and, if your role sees them,
    key-person groups — in your grids) and register records needing review. With lon/lat
    (in `crs`), nearest first with distances in metres; else most overdue first."""
    lon_lat = None
    if "lon" in args:
        lon_lat = crs_mod.to_wgs84(args["lon"], args["lat"], args["crs"])
    return service.my_tasks(db.session(), current_actor(), lon_lat, args["limit"])


def visit_access(s, actor, visit_id: int) -> None:
    service.get_visit(s, actor, visit_id)

