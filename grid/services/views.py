"""Resident services API: /service-categories, /services (catalogue, guide, search,
schedules, slots, requests, staff views), /slots, /bookings."""

from __future__ import annotations

from flask.views import MethodView

from grid.services import actions, bookings, catalogue, requests, schedules, schemas
from grid.services import stats as service_stats
from server import db, idempotency
from server.api import Blueprint, etag, expected_version
from server.auth.actor import current_actor, login_required

categories_blp = Blueprint("service_categories", __name__, url_prefix="/service-categories",
                           description="Service categories (家政, 就诊, 养老助餐 …)")
services_blp = Blueprint("services", __name__, url_prefix="/services",
                         description="Resident services (便民服务): guide, search, slots")
slots_blp = Blueprint("service_slots", __name__, url_prefix="/slots",
                      description="Service time slots (staff)")
bookings_blp = Blueprint("service_bookings", __name__, url_prefix="/bookings",
                         description="Bookings and requests of resident services")
blueprints = [categories_blp, services_blp, slots_blp, bookings_blp]


def _shown(s, actor, booking):
    booking.actions = actions.actions_for(s, actor, booking)
    return booking


def current_booking(booking) -> dict:
    """A stale booking as a 412 shows it: as GET /bookings/{id} answers now (registered
    in grid/services/wiring.py)."""
    return schemas.BookingSchema().dump(_shown(db.session(), current_actor(), booking))


@categories_blp.route("")
@categories_blp.response(200, schemas.ServiceCategorySchema(many=True))
@login_required
def list_categories():
    return catalogue.list_categories(db.session())


@services_blp.route("")
class Services(MethodView):
    @services_blp.arguments(schemas.ServiceQuerySchema, location="query")
    @services_blp.response(200, schemas.ServiceSchema(many=True))
    @services_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Search: q (text), category, open_now, near=lon,lat[,radius] (nearest first, any
        crs). Residents see what serves their community unless `everywhere=true`."""
        return catalogue.search_services(db.session(), current_actor(), filters,
                                         pagination_parameters)

    @services_blp.arguments(schemas.ServiceSchema)
    @services_blp.response(201, schemas.ServiceSchema)
    @login_required
    def post(self, data):
        """Add a service of an area in your scope (service:manage)."""
        with db.unit_of_work() as s:
            created = catalogue.create_service(s, current_actor(), data)
        return created, 201, etag(created.version)


@services_blp.route("/<int:service_id>")
class ServiceById(MethodView):
    @services_blp.response(200, schemas.ServiceSchema)
    @login_required
    def get(self, service_id):
        """One service with its guide (办事指南)."""
        found = catalogue.get_service(db.session(), current_actor(), service_id)
        return found, 200, etag(found.version)

    @services_blp.arguments(schemas.ServiceUpdateSchema)
    @services_blp.response(200, schemas.ServiceSchema)
    @login_required
    def patch(self, data, service_id):
        """Change a service you manage (needs the version: If-Match or `version`)."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            changed = catalogue.update_service(s, current_actor(), service_id, data, version)
        return changed, 200, etag(changed.version)


@services_blp.route("/<int:service_id>/schedules")
class Schedules(MethodView):
    @services_blp.response(200, schemas.ServiceScheduleSchema(many=True))
    @login_required
    def get(self, service_id):
        return schedules.list_schedules(db.session(), current_actor(), service_id)

    @services_blp.arguments(schemas.ServiceScheduleSchema)
    @services_blp.response(201, schemas.ServiceScheduleSchema)
    @login_required
    def post(self, data, service_id):
        """A weekly schedule; slots are generated ahead (SERVICE_SLOT_DAYS_AHEAD days),
        skipping public holidays when `working_days_only`."""
        with db.unit_of_work() as s:
            schedule, created = schedules.add_schedule(s, current_actor(), service_id, data)
        schedule.slots_created = created
        return schedule, 201


@services_blp.route("/<int:service_id>/schedules/<int:schedule_id>", methods=["DELETE"])
@services_blp.response(204)
@login_required
def end_schedule(service_id, schedule_id):
    """Stop a schedule; its future slots without bookings go."""
    with db.unit_of_work() as s:
        schedules.end_schedule(s, current_actor(), service_id, schedule_id)


@services_blp.route("/<int:service_id>/slots")
@services_blp.arguments(schemas.SlotRangeQuerySchema, location="query")
@services_blp.response(200, schemas.ServiceSlotSchema(many=True))
@login_required
def list_slots(query, service_id):
    """Slots over local days `from`..`to` (today and the next 6 by default)."""
    return schedules.list_slots(db.session(), current_actor(), service_id,
                                query.get("day_from"), query.get("day_to"))


@services_blp.route("/<int:service_id>/requests", methods=["POST"])
@services_blp.arguments(schemas.RequestCreateSchema)
@services_blp.response(201, schemas.BookingSchema)
@idempotency.document_replay(services_blp, schemas.BookingSchema)
@login_required
def create_request(data, service_id):
    """Ask a request-type service (e.g. 上门维修); idempotent by client_uuid (200 replay)."""
    client_uuid, actor = data.pop("client_uuid", None), current_actor()
    with db.unit_of_work() as s:
        booking, created = requests.create_request(s, actor, service_id, data, client_uuid)
        shown = _shown(s, actor, booking)
    return shown, *idempotency.create_answer(created, etag(booking.version))


@services_blp.route("/<int:service_id>/bookings")
@services_blp.arguments(schemas.ServiceBookingQuerySchema, location="query")
@services_blp.response(200, schemas.BookingSchema(many=True))
@services_blp.paginate()
@login_required
def service_bookings(query, service_id, pagination_parameters):
    """Staff: the service's bookings on a day (and requests), by time."""
    return bookings.service_bookings(db.session(), current_actor(), service_id, query,
                                     pagination_parameters)


@services_blp.route("/<int:service_id>/stats")
@services_blp.arguments(schemas.ServiceStatsQuerySchema, location="query")
@services_blp.response(200, schemas.ServiceStatsSchema)
@login_required
def stats(query, service_id):
    """Staff: per day bookings, attended, no-shows, utilization, no-show rate, ratings."""
    return service_stats.stats(db.session(), current_actor(), service_id, query["day_from"],
                               query["day_to"])


@slots_blp.route("/<int:slot_id>/close", methods=["POST"])
@slots_blp.arguments(schemas.CloseSlotSchema)
@slots_blp.response(200, schemas.ServiceSlotSchema)
@login_required
def close_slot(data, slot_id):
    """Close a slot: its bookings are cancelled and the residents notified."""
    with db.unit_of_work() as s:
        return schedules.close_slot(s, current_actor(), slot_id, data["reason"])


@bookings_blp.route("")
class Bookings(MethodView):
    @bookings_blp.arguments(schemas.BookingQuerySchema, location="query")
    @bookings_blp.response(200, schemas.BookingSchema(many=True))
    @bookings_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Your bookings and requests, latest first."""
        return bookings.list_my_bookings(db.session(), current_actor(), filters,
                                         pagination_parameters)

    @bookings_blp.arguments(schemas.BookingCreateSchema)
    @bookings_blp.response(201, schemas.BookingSchema)
    @idempotency.document_replay(bookings_blp, schemas.BookingSchema)
    @login_required
    def post(self, data):
        """Book a slot (service:book). 409 when full, already yours or over the limit;
        403 while blocked after no-shows; idempotent by client_uuid (200 replay)."""
        actor = current_actor()
        with db.unit_of_work() as s:
            booking, created = bookings.book_slot(s, actor, data["slot_id"], data.get("note"),
                                                  data.get("client_uuid"))
            shown = _shown(s, actor, booking)
        return shown, *idempotency.create_answer(created, etag(booking.version))


@bookings_blp.route("/<int:booking_id>")
@bookings_blp.response(200, schemas.BookingSchema)
@login_required
def get_booking(booking_id):
    s, actor = db.session(), current_actor()
    booking = bookings.get_booking(s, actor, booking_id)
    return _shown(s, actor, booking), 200, etag(booking.version)


@bookings_blp.route("/<int:booking_id>/actions/<string:action>", methods=["POST"])
@bookings_blp.arguments(schemas.BookingActionSchema)
@bookings_blp.response(200, schemas.BookingSchema)
@login_required
def act(data, booking_id, action):
    """cancel, reschedule (until the cut-off), rate; staff: attend, no_show, accept,
    schedule, complete, decline. Checked in the engine's order: 403 the wrong party, 428
    without a version, 412 with the current booking, 409 with `allowed`, 422."""
    version, actor = expected_version(data), current_actor()
    with db.unit_of_work() as s:
        booking = actions.act(s, actor, booking_id, action, data, version)
        shown = _shown(s, actor, booking)
    return shown, 200, etag(booking.version)
