"""Request and response shapes of the exchange. Each helper's part is one block."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from geo.fields import Point
from grid.exchange import models as m
from grid.registry import schemas as registry
from server import clock
from server.api import Schema

# --- feeds: feeds in (1+N 多源), review items (核实任务), declarations, break-the-glass ---

_KEY = fields.String(required=True, validate=validate.Length(1, 64), metadata={
    "description": "The sending system's own key of the record (idempotency)"})


def _parent_key(description: str, required: bool = False) -> fields.String:
    return fields.String(required=required, validate=validate.Length(1, 64),
                         allow_none=not required, metadata={"description": description})


class PersonFeedRow(registry.PersonWriteSchema):
    record_key = _KEY
    name = fields.String(required=True, validate=validate.Length(1, 50))
    household_key = _parent_key("record_key of the household (sent earlier by this system)")
    location = Point(metadata={"description": "Decides the grid when no household is named"})


class HouseholdFeedRow(registry.HouseholdCreateSchema):
    record_key = _KEY
    house_key = _parent_key("record_key of the house (sent earlier by this system)")


class HouseFeedRow(registry.HouseWriteSchema):
    record_key = _KEY
    building_key = _parent_key("record_key of the building", required=True)
    room = fields.String(required=True, validate=validate.Length(1, 32))


class BuildingFeedRow(registry.BuildingWriteSchema):
    record_key = _KEY
    name = fields.String(required=True, validate=validate.Length(1, 100))
    location = Point(metadata={"description": "Required for a new building: decides the grid"})


class OrganisationFeedRow(registry.OrganisationWriteSchema):
    record_key = _KEY
    name = fields.String(required=True, validate=validate.Length(1, 200))
    building_key = _parent_key("record_key of the building")


class IndicatorFeedRow(Schema):
    record_key = _KEY
    organisation_key = _parent_key("record_key of the organisation", required=True)
    month = registry.Month(required=True)
    employees = fields.Integer(validate=validate.Range(0, 10_000_000), allow_none=True)
    water_m3 = fields.Float(validate=validate.Range(0, 1e12), allow_none=True)
    electricity_kwh = fields.Float(validate=validate.Range(0, 1e12), allow_none=True)
    wage_arrears_yuan = fields.Decimal(places=2, validate=validate.Range(0, 1e11),
                                       allow_none=True, as_string=True)


for _row in (PersonFeedRow, HouseholdFeedRow, HouseFeedRow, BuildingFeedRow,
             OrganisationFeedRow):
    for _name in ("client_uuid", "version", "house_id", "household_id", "building_id",
                  "head_person_id", "tags"):
        _row._declared_fields.pop(_name, None)

FEED_ROWS: dict[str, type[Schema]] = {
    "person": PersonFeedRow, "household": HouseholdFeedRow, "house": HouseFeedRow,
    "building": BuildingFeedRow, "organisation": OrganisationFeedRow,
    "organisation_indicator": IndicatorFeedRow,
}
MAX_FEED_ROWS = 5000


class FeedBatchSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(
        list(m.FEED_KINDS), labels=list(m.FEED_KINDS.values())))
    rows = fields.List(fields.Dict(), required=True, validate=validate.Length(1, MAX_FEED_ROWS),
                       metadata={"description": f"At most {MAX_FEED_ROWS} rows; each as the "
                                                "kind's row schema (FeedRow…) says"})


class RejectionSchema(Schema):
    row = fields.Integer(metadata={"description": "Index in `rows`, from 0"})
    record_key = fields.String(allow_none=True)
    errors = fields.Dict(metadata={"description": "field → reasons"})


class FeedReportSchema(Schema):
    kind = fields.String()
    received = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    queued_for_review = fields.Integer(metadata={
        "description": "Rows whose values disagree with what a grid worker collected: "
                       "核实任务 for the grid's workers, nothing overwritten"})
    rejected = fields.Integer()
    rejections = fields.List(fields.Nested(RejectionSchema))


class ProvenanceSchema(Schema):
    object_type = fields.String()
    object_id = fields.Integer()
    source = fields.String(metadata={"description": "The record's own source (for fields "
                                                    "without an entry)"})
    fields_ = fields.Dict(data_key="fields", attribute="fields", metadata={
        "description": "field → {source, client_id, client, record_key, user_id, at}"})
    feeds = fields.List(fields.Dict(), metadata={
        "description": "Systems that sent this record: client_id, client, record_key, "
                       "received_at"})


class FeedReviewItemSchema(Schema):
    id = fields.Integer()
    area_id = fields.Integer()
    object_type = fields.String()
    object_id = fields.Integer()
    field = fields.String()
    current_value = fields.Raw(allow_none=True, metadata={"description": "Masked if personal"})
    current_source = fields.Dict(allow_none=True)
    proposed_value = fields.Raw(allow_none=True, metadata={"description": "Masked if personal"})
    proposed_source = fields.Dict()
    state = fields.String()
    note = fields.String(allow_none=True)
    resolved_by = fields.Integer(allow_none=True)
    resolved_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    version = fields.Integer()


class ReviewQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(list(m.REVIEW_STATES)))
    area_id = registry.Id()


class ReviewResolveSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["keep", "replace", "edit"]),
                             metadata={"description": "keep 保留原值 / replace 采用新值 / "
                                                      "edit 核实后修改 (with `value`)"})
    value = fields.Raw(allow_none=True, metadata={"description": "With edit: the checked value"})
    note = fields.String(validate=validate.Length(max=1000), allow_none=True)
    version = fields.Integer(validate=validate.Range(min=1))

    @validates_schema
    def _value(self, data, **kwargs):
        if data["decision"] == "edit" and "value" not in data:
            raise ValidationError("An edit carries the checked value.", "value")

class GrantSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    object_type = fields.String()
    object_id = fields.Integer()
    area_id = fields.Integer()
    reason = fields.String()
    expires_at = fields.AwareDateTime()
    active = fields.Method("dump_active", metadata={"description": "Opens the record now"})
    reads = fields.Integer(metadata={"description": "Reads through this grant (audited)"})
    state = fields.String(metadata={"description": "open: awaiting an auditor; closed"})
    finding = fields.String(allow_none=True)
    finding_note = fields.String(allow_none=True)
    closed_by = fields.Integer(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    version = fields.Integer()

    def dump_active(self, grant) -> bool:
        return grant.closed_at is None and grant.expires_at > clock.now()


class GrantCreateSchema(Schema):
    object_type = fields.String(required=True, validate=validate.OneOf(
        ["person", "household", "house", "building", "organisation"]))
    object_id = registry.Id(required=True)
    reason = fields.String(required=True, validate=validate.Length(5, 1000), metadata={
        "example": "火灾现场需核实被困人员及家属联系方式"})


class GrantQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(list(m.GRANT_STATES)))


class GrantCloseSchema(Schema):
    finding = fields.String(required=True, validate=validate.OneOf(
        list(m.GRANT_FINDINGS), labels=list(m.GRANT_FINDINGS.values())))
    note = fields.String(validate=validate.Length(max=2000), allow_none=True)
    version = fields.Integer(validate=validate.Range(min=1))

# --- end feeds ---
