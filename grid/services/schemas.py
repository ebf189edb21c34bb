"""Resident services request and response shapes."""

from __future__ import annotations

from datetime import date

import marshmallow as ma
from webargs.fields import DelimitedList

from geo import crs as crs_mod
from geo.fields import Near, Point
from grid.services.models import BOOKING_MODES, BOOKING_STATES, SLOT_STATES
from server.api import Schema, UtcDateTime

_id = ma.validate.Range(min=1, max=2**62)
# Days people book and count (far-off dates would overflow the local-day arithmetic).
_day = ma.validate.Range(min=date(2000, 1, 1), max=date(2099, 12, 31))
_hhmm = ma.validate.Regexp(r"^([01]?\d|2[0-3]):[0-5]\d$", error="HH:MM")


class ServiceCategorySchema(Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    name = ma.fields.String()
    name_en = ma.fields.String(allow_none=True)


class OpeningHoursSchema(Schema):
    """Open on these ISO weekdays (1 = Monday) from `open` to `close`, local time."""

    days = ma.fields.List(ma.fields.Integer(validate=ma.validate.Range(min=1, max=7)),
                          required=True, validate=ma.validate.Length(min=1, max=7))
    open = ma.fields.String(required=True, validate=_hhmm)
    close = ma.fields.String(required=True, validate=_hhmm)


class ServiceSchema(Schema):
    """A service and its guide (办事指南)."""

    id = ma.fields.Integer(dump_only=True)
    category_id = ma.fields.Integer(required=True, validate=_id)
    area_id = ma.fields.Integer(required=True, validate=_id, metadata={
        "description": "The community or street that provides it (it serves that area)"})
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    provider = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=100))
    description = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=4000))
    location = Point(allow_none=True, attribute="point", data_key="location",
                     metadata={"description": "The service point (any crs in; ?crs= out)"})
    address = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    phone = ma.fields.String(allow_none=True, validate=ma.validate.Regexp(
        r"^[0-9+\-() ]{3,32}$"))
    opening_hours = ma.fields.List(ma.fields.Nested(OpeningHoursSchema),
                                   validate=ma.validate.Length(max=21))
    closed_on_holidays = ma.fields.Boolean()
    fee = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=100),
                           metadata={"description": "收费标准, e.g. 免费"})
    online = ma.fields.Boolean(metadata={"description": "Can be done online (网上办)"})
    online_url = ma.fields.Url(allow_none=True, schemes={"http", "https"},
                               validate=ma.validate.Length(max=500))
    materials = ma.fields.List(ma.fields.String(validate=ma.validate.Length(min=1, max=200)),
                               validate=ma.validate.Length(max=50),
                               metadata={"description": "所需材料"})
    steps = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=4000),
                             metadata={"description": "办理流程"})
    max_trips = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10),
                                  metadata={"description": "最多跑几次 (1: 最多跑一次)"})
    booking_mode = ma.fields.String(validate=ma.validate.OneOf(list(BOOKING_MODES)))
    max_active_per_resident = ma.fields.Integer(validate=ma.validate.Range(min=1, max=100))
    cancel_cutoff_minutes = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(
        min=0, max=30 * 24 * 60))
    active = ma.fields.Boolean()
    distance_m = ma.fields.Float(dump_only=True, allow_none=True,
                                 metadata={"description": "From `near`, metres"})
    version = ma.fields.Integer(dump_only=True)

    @ma.post_load
    def _location(self, data, **kwargs):
        if "point" in data:
            data["location"] = data.pop("point")
        return data


class ServiceUpdateSchema(ServiceSchema):
    category_id = ma.fields.Integer(validate=_id)
    area_id = ma.fields.Integer(validate=_id)
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=100))
    version = ma.fields.Integer(load_only=True, metadata={"description": "Or If-Match"})


class ServiceQuerySchema(Schema):
    q = ma.fields.String(validate=ma.validate.Length(min=1, max=100),
                         metadata={"description": "Text in the name, description, provider"})
    category_id = ma.fields.Integer(validate=_id)
    booking_mode = ma.fields.String(validate=ma.validate.OneOf(list(BOOKING_MODES)))
    online = ma.fields.Boolean()
    area_id = ma.fields.Integer(validate=_id)
    open_now = ma.fields.Boolean()
    near = Near(radius_required=False)
    crs = ma.fields.String(load_default="wgs84", validate=ma.validate.OneOf(crs_mod.CRS))
    everywhere = ma.fields.Boolean(metadata={
        "description": "Residents: not only what serves your community"})
    mine = ma.fields.Boolean(metadata={"description": "Staff: the services you manage"})

    @ma.post_load
    def _drop_crs(self, data, **kwargs):
        data.pop("crs")  # `near` was read in it already
        return data


class ServiceScheduleSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    service_id = ma.fields.Integer(dump_only=True)
    weekdays = ma.fields.List(ma.fields.Integer(validate=ma.validate.Range(min=1, max=7)),
                              required=True, validate=ma.validate.Length(min=1, max=7),
                              metadata={"description": "ISO weekdays, 1 = Monday"})
    start_time = ma.fields.Time(required=True, format="%H:%M")
    end_time = ma.fields.Time(required=True, format="%H:%M")
    slot_minutes = ma.fields.Integer(required=True, validate=ma.validate.Range(min=5, max=720))
    capacity = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=10_000))
    working_days_only = ma.fields.Boolean(load_default=True, metadata={
        "description": "Skip public holidays; make-up working days (调休) open too"})
    valid_from = ma.fields.Date(allow_none=True, validate=_day)
    valid_until = ma.fields.Date(allow_none=True, validate=_day)
    active = ma.fields.Boolean(dump_only=True)
    slots_created = ma.fields.Integer(dump_only=True)

    @ma.post_load
    def _distinct_days(self, data, **kwargs):
        data["weekdays"] = sorted(set(data["weekdays"]))
        return data


class ServiceSlotSchema(Schema):
    id = ma.fields.Integer()
    service_id = ma.fields.Integer()
    schedule_id = ma.fields.Integer(allow_none=True)
    starts_at = ma.fields.AwareDateTime()
    ends_at = ma.fields.AwareDateTime()
    capacity = ma.fields.Integer()
    booked = ma.fields.Integer()
    available = ma.fields.Function(lambda slot: max(0, slot.capacity - slot.booked)
                                   if slot.state == "open" else 0)
    state = ma.fields.String(metadata={"enum": list(SLOT_STATES)})
    closed_reason = ma.fields.String(allow_none=True)


_FROM = {"description": "First day (2000–2099), not after `to`"}
_TO = {"description": "Last day (2000–2099), not before `from`"}


class SlotRangeQuerySchema(Schema):
    day_from = ma.fields.Date(data_key="from", validate=_day, metadata=_FROM)
    day_to = ma.fields.Date(data_key="to", validate=_day, metadata=_TO)


class ServiceStatsQuerySchema(Schema):
    day_from = ma.fields.Date(data_key="from", required=True, validate=_day, metadata=_FROM)
    day_to = ma.fields.Date(data_key="to", required=True, validate=_day, metadata=_TO)


class CloseSlotSchema(Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))


class BookingCreateSchema(Schema):
    client_uuid = ma.fields.UUID()
    slot_id = ma.fields.Integer(required=True, validate=_id)
    note = ma.fields.String(validate=ma.validate.Length(max=1000))


class RequestCreateSchema(Schema):
    client_uuid = ma.fields.UUID()
    note = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000),
                            metadata={"description": "What is needed"})
    address = ma.fields.String(validate=ma.validate.Length(max=200))
    preferred_at = UtcDateTime()


class BookingActionSchema(Schema):
    """cancel (reason?), reschedule (slot_id), rate (rating, comment?), attend, no_show,
    accept (note?), schedule (scheduled_at), complete (result?), decline (reason)."""

    version = ma.fields.Integer(metadata={"description": "Or If-Match"})
    slot_id = ma.fields.Integer(validate=_id)
    reason = ma.fields.String(validate=ma.validate.Length(min=1, max=1000))
    note = ma.fields.String(validate=ma.validate.Length(max=1000))
    result = ma.fields.String(validate=ma.validate.Length(max=2000))
    rating = ma.fields.Integer(validate=ma.validate.Range(min=1, max=5))
    comment = ma.fields.String(validate=ma.validate.Length(max=1000))
    scheduled_at = UtcDateTime()


class BookingSchema(Schema):
    id = ma.fields.Integer()
    service_id = ma.fields.Integer()
    slot_id = ma.fields.Integer(allow_none=True)
    resident_id = ma.fields.Integer()
    kind = ma.fields.String(metadata={"enum": ["slot", "request"]})
    state = ma.fields.String(metadata={"enum": list(BOOKING_STATES)})
    state_label = ma.fields.Function(lambda b: BOOKING_STATES[b.state])
    starts_at = ma.fields.AwareDateTime(allow_none=True)
    note = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True)
    preferred_at = ma.fields.AwareDateTime(allow_none=True)
    reason = ma.fields.String(allow_none=True)
    result = ma.fields.String(allow_none=True)
    rating = ma.fields.Integer(allow_none=True)
    rating_comment = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime()
    actions = ma.fields.List(ma.fields.String(), allow_none=True, metadata={
        "description": "What you may do to this booking now"})
    version = ma.fields.Integer()


class ProfileBookingSchema(Schema):
    """A booking as the person profile (人员画像) lists it: no note, address or rating."""

    id = ma.fields.Integer()
    service_id = ma.fields.Integer()
    service = ma.fields.String(metadata={"description": "The service's name"})
    category = ma.fields.String(metadata={"description": "Service category code"})
    kind = ma.fields.String(metadata={"enum": ["slot", "request"]})
    state = ma.fields.String(metadata={"enum": list(BOOKING_STATES)})
    state_label = ma.fields.Function(lambda b: BOOKING_STATES[b["state"]])
    starts_at = ma.fields.AwareDateTime(allow_none=True, metadata={
        "description": "The slot's start, or when a request was scheduled"})
    ends_at = ma.fields.AwareDateTime(allow_none=True, metadata={"description": "The slot's end"})
    created_at = ma.fields.AwareDateTime()


class BookingQuerySchema(Schema):
    state = DelimitedList(ma.fields.String(validate=ma.validate.OneOf(list(BOOKING_STATES))))
    service_id = ma.fields.Integer(validate=_id)
    upcoming = ma.fields.Boolean()


class ServiceBookingQuerySchema(Schema):
    day = ma.fields.Date(validate=_day, metadata={"description": "A local day (Asia/Shanghai)"})
    state = DelimitedList(ma.fields.String(validate=ma.validate.OneOf(list(BOOKING_STATES))))


class ServiceStatsRowSchema(Schema):
    day = ma.fields.Date()
    slots = ma.fields.Integer()
    capacity = ma.fields.Integer(metadata={"description": "Places in open slots"})
    bookings = ma.fields.Integer()
    attended = ma.fields.Integer()
    no_shows = ma.fields.Integer()
    cancelled = ma.fields.Integer()
    utilization = ma.fields.Float(allow_none=True, metadata={"description": "bookings ÷ capacity"})
    no_show_rate = ma.fields.Float(allow_none=True, metadata={
        "description": "no-shows ÷ (attended + no-shows)"})
    rated = ma.fields.Integer()
    mean_rating = ma.fields.Float(allow_none=True)


class ServiceStatsSchema(Schema):
    service_id = ma.fields.Integer()
    start = ma.fields.Date(data_key="from")
    end = ma.fields.Date(data_key="to")
    days = ma.fields.List(ma.fields.Nested(ServiceStatsRowSchema))
    total = ma.fields.Nested(ServiceStatsRowSchema)
