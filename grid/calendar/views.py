"""Working calendars API: /calendars/{area_id}."""

from __future__ import annotations

from flask.views import MethodView

from grid.areas import service as areas
from grid.calendar import schemas, service
from server import db
from server.api import Blueprint, etag, expected_version
from server.auth.actor import current_actor, login_required

blp = Blueprint("calendars", __name__, url_prefix="/calendars",
                description="Working calendars (工作日历): windows, holidays, make-up days")
blueprints = [blp]


def _dump(row, days) -> dict:
    return {"id": row.id, "area_id": row.area_id, "name": row.name, "timezone": row.timezone,
            "windows": row.windows, "days": days, "version": row.version}


def current_calendar(row) -> dict:
    """A stale calendar as a 412 shows it: as GET answers it (grid/calendar/wiring.py)."""
    return schemas.CalendarSchema().dump(_dump(row, service.days_of(db.session(), row)))


@blp.route("/<int:area_id>")
class CalendarOfArea(MethodView):
    @blp.response(200, schemas.CalendarSchema)
    @login_required
    def get(self, area_id):
        """The calendar that applies in an area (its own, its district's, or the default)."""
        s = db.session()
        row, days = service.get_calendar(s, areas.get_area(s, current_actor(), area_id))
        return _dump(row, days), 200, etag(row.version)

    @blp.arguments(schemas.CalendarPutSchema)
    @blp.response(200, schemas.CalendarSchema)
    @login_required
    def put(self, data, area_id):
        """Set an area's own calendar (area:manage): windows, zone, and every listed day.
        Replacing an area's own calendar needs its version (If-Match or `version`)."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            area = areas.get_area(s, current_actor(), area_id)
            row = service.set_calendar(s, current_actor(), area, data, version)
            row, days = service.get_calendar(s, area)
        return _dump(row, days), 200, etag(row.version)
