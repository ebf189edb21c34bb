"""Calendar request and response shapes."""

from __future__ import annotations

import marshmallow as ma

from grid.calendar.models import DAY_KINDS
from server.api import Schema


class CalendarDaySchema(Schema):
    day = ma.fields.Date(required=True)
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(list(DAY_KINDS)),
                            metadata={"description": "holiday 节假日 | workday 调休上班"})
    name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=64))


class CalendarPutSchema(Schema):
    version = ma.fields.Integer(metadata={"description": "Of the area's own calendar, when "
                                                         "replacing it (or If-Match)"})
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=100))
    timezone = ma.fields.String(load_default="Asia/Shanghai",
                                validate=ma.validate.Length(max=64))
    windows = ma.fields.List(
        ma.fields.List(ma.fields.String(validate=ma.validate.Regexp(r"^\d{2}:\d{2}$")),
                       validate=ma.validate.Length(equal=2)),
        required=True, validate=ma.validate.Length(min=1, max=6),
        metadata={"example": [["08:30", "12:00"], ["13:30", "17:30"]], "description": (
            "Working hours as [start, end] pairs (HH:MM, local time), each start before its "
            "end, in order of the day and not overlapping (else 422)")})
    days = ma.fields.List(ma.fields.Nested(CalendarDaySchema),
                          validate=ma.validate.Length(max=2000))


class CalendarSchema(Schema):
    id = ma.fields.Integer()
    area_id = ma.fields.Integer(allow_none=True)
    name = ma.fields.String()
    timezone = ma.fields.String()
    windows = ma.fields.List(ma.fields.List(ma.fields.String()))
    days = ma.fields.List(ma.fields.Nested(CalendarDaySchema))
    version = ma.fields.Integer()
