"""Request and response shapes of the console's additions (issue 17): bulk actions and the
trends of the dashboard — beside schemas.py, which is near the module size limit."""

from __future__ import annotations

import marshmallow as ma

from grid.cases.models import STATES
from grid.cases.schemas import LIGHTS, ActionSchema, PerformanceRowSchema
from server.api import Schema

# --- consoleapi: bulk actions ---------------------------------------------------------------


class BulkItemSchema(Schema):
    id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**62))
    version = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=2**31),
                                metadata={"description": "The version the queue showed"})


class BulkActionSchema(ActionSchema):
    """One action for several cases: the action's fields apply to every item."""

    class Meta(Schema.Meta):
        exclude = ("version",)  # each item has its own

    client_uuid = ma.fields.UUID(required=True, metadata={
        "description": "The same request again answers the same results (no second act)"})
    action = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["accept", "reject", "dispatch", "sign", "return", "verify", "close", "approve",
         "refuse", "resume"]))
    items = ma.fields.List(ma.fields.Nested(BulkItemSchema), required=True,
                           validate=ma.validate.Length(min=1, max=100),
                           metadata={"description": "At most 100 cases, each once"})

    @ma.validates_schema
    def _each_once(self, data, **kwargs):
        ids = [item["id"] for item in data.get("items") or []]
        if len(ids) != len(set(ids)):
            raise ma.ValidationError("A case may appear once.", "items")


class BulkCaseSchema(Schema):
    id = ma.fields.Integer()
    state = ma.fields.String(metadata={"enum": list(STATES)})
    version = ma.fields.Integer()
    light = ma.fields.String(allow_none=True, metadata={"enum": list(LIGHTS)})


class BulkResultSchema(Schema):
    id = ma.fields.Integer()
    status = ma.fields.Integer(metadata={"description": "200, or the error's status"})
    case = ma.fields.Nested(BulkCaseSchema, metadata={"description": "When it went through"})
    error = ma.fields.Dict(metadata={"description": (
        "The one error shape: 404 not in scope, 403, 409 with `allowed`, 412 with "
        "`current` (the case now), 422 with `errors`")})


class BulkAnswerSchema(Schema):
    action = ma.fields.String()
    succeeded = ma.fields.Integer()
    failed = ma.fields.Integer()
    results = ma.fields.List(ma.fields.Nested(BulkResultSchema))


# --- consoleapi: trends ---------------------------------------------------------------------


class TrendsQuerySchema(Schema):
    area_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**62),
                                metadata={"description": "The area whose subtree is counted"})
    start = ma.fields.Date(data_key="from", required=True,
                           metadata={"description": "First day (UTC date, YYYY-MM-DD)"})
    end = ma.fields.Date(data_key="to", required=True,
                         metadata={"description": "Day after the last (exclusive)"})
    bucket = ma.fields.String(load_default="day", validate=ma.validate.OneOf(
        ["day", "week", "month"]))
    category_level = ma.fields.String(load_default="major", validate=ma.validate.OneOf(
        ["major", "minor"]), metadata={"description": "major: 大类; minor: 小类"})
    department_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))

    @ma.validates_schema
    def _ordered(self, data, **kwargs):
        if data["start"] >= data["end"]:
            raise ma.ValidationError("`from` must be before `to`.", "to")
        if (data["end"] - data["start"]).days > 400:
            raise ma.ValidationError("At most 400 days.", "to")


class TrendCountsSchema(Schema):
    reported = ma.fields.Integer(metadata={"description": "上报"})
    accepted = ma.fields.Integer(metadata={"description": "立案"})
    closed = ma.fields.Integer(metadata={"description": "结案"})
    overdue = ma.fields.Integer(metadata={"description": "超期 (黄牌)"})
    escalated = ma.fields.Integer(metadata={"description": "红牌"})


class _Compared(Schema):
    current = ma.fields.Nested(TrendCountsSchema)
    previous = ma.fields.Nested(TrendCountsSchema, metadata={"description": "The period before"})
    last_year = ma.fields.Nested(TrendCountsSchema, metadata={
        "description": "The same period a year earlier"})


class TrendPointSchema(_Compared):
    period = ma.fields.Date(metadata={"description": "The bucket's first day"})


class TrendGroupSchema(_Compared):
    id = ma.fields.Integer()
    code = ma.fields.String()
    name = ma.fields.String()


class PeriodSchema(Schema):
    start = ma.fields.Date(data_key="from")
    end = ma.fields.Date(data_key="to")


class RankedRowSchema(PerformanceRowSchema):
    rank = ma.fields.Integer(allow_none=True, metadata={"description": "By score, 1 = best"})


class RankingsSchema(Schema):
    departments = ma.fields.List(ma.fields.Nested(RankedRowSchema))
    grids = ma.fields.List(ma.fields.Nested(RankedRowSchema))


class TrendsSchema(Schema):
    area_id = ma.fields.Integer()
    start = ma.fields.Date(data_key="from")
    end = ma.fields.Date(data_key="to")
    bucket = ma.fields.String()
    category_level = ma.fields.String()
    previous = ma.fields.Nested(PeriodSchema)
    last_year = ma.fields.Nested(PeriodSchema)
    totals = ma.fields.Nested(_Compared)
    series = ma.fields.List(ma.fields.Nested(TrendPointSchema))
    by_category = ma.fields.List(ma.fields.Nested(TrendGroupSchema))
    by_department = ma.fields.List(ma.fields.Nested(TrendGroupSchema))
    by_area = ma.fields.List(ma.fields.Nested(TrendGroupSchema), metadata={
        "description": "The area's children, each with its subtree"})
    rates = ma.fields.Nested(PerformanceRowSchema, metadata={
        "description": "/stats/performance's total for the same area and period"})
    rankings = ma.fields.Nested(RankingsSchema)
