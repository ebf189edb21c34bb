"""Request and response shapes of visits, visit policies and the worker's to-do list."""

from __future__ import annotations

from geoalchemy2.shape import to_shape
from marshmallow import ValidationError, fields, validate, validates_schema

from geo.crs import CRS
from geo.fields import POINT_REFERENCE, GpsFix, Point
from grid.registry.models import CARE_TAGS, KEY_TAGS
from grid.visits.models import MAX_INTERVAL_DAYS, MAX_PHOTOS, VISIT_TYPES
from server.api import Schema, UtcDateTime

_ID = validate.Range(min=1, max=2**63 - 1)
_TARGETS = ("household_id", "person_id", "organisation_id")


def _one_target(data: dict) -> None:
    named = [name for name in _TARGETS if data.get(name) is not None]
    if len(named) != 1:
        raise ValidationError("Name exactly one of household_id, person_id, organisation_id.",
                              "_schema")


class VisitCreateSchema(Schema):
    client_uuid = fields.UUID(load_only=True, metadata={
        "description": "The phone's id for this request; a resend returns the original."})
    household_id = fields.Integer(validate=_ID, metadata={"description": "One target of three"})
    person_id = fields.Integer(validate=_ID)
    organisation_id = fields.Integer(validate=_ID)
    type = fields.String(required=True, validate=validate.OneOf(
        list(VISIT_TYPES), labels=list(VISIT_TYPES.values())),
        metadata={"description": "巡查 inspection / 整改 rectification / 关爱 care"})
    content = fields.String(required=True, validate=validate.Length(1, 4000),
                            metadata={"example": "老人身体状况良好，家中无安全隐患"})
    visited_at = UtcDateTime(metadata={"description": "When (default: now); not in the future"})
    location = Point(required=True, metadata={
        "description": "Where the visit happened; must lie in one of your grids."})
    follow_up = fields.String(validate=validate.Length(1, 2000), allow_none=True,
                              metadata={"description": "What is to be done next"})
    follow_up_due = fields.Date(allow_none=True)
    photo_ids = fields.List(fields.Integer(validate=_ID), load_default=list,
                            validate=validate.Length(max=MAX_PHOTOS),
                            metadata={"description": "Attachment ids of the photos"})
    confidential = fields.Boolean(load_default=False, metadata={
        "description": "Key-person work: listed only to roles that see key-person groups"})

    @validates_schema
    def _check(self, data, **kwargs):
        _one_target(data)
        if data.get("follow_up_due") is not None and data.get("follow_up") is None:
            raise ValidationError("A due date needs a follow-up.", "follow_up_due")
        if len(set(data.get("photo_ids") or ())) != len(data.get("photo_ids") or ()):
            raise ValidationError("Each photo once.", "photo_ids")


class VisitSchema(Schema):
    id = fields.Integer()
    target = fields.Method("dump_target")
    household_id = fields.Integer(allow_none=True)
    person_id = fields.Integer(allow_none=True)
    organisation_id = fields.Integer(allow_none=True)
    area_id = fields.Integer(metadata={"description": "The target's grid"})
    worker_id = fields.Integer()
    visited_at = fields.AwareDateTime()
    type = fields.String()
    type_label = fields.Method("dump_type_label")
    content = fields.String()
    location = fields.Method("dump_location", allow_none=True,
                             metadata=POINT_REFERENCE)
    gps = fields.Method("dump_gps")
    follow_up = fields.String(allow_none=True)
    follow_up_due = fields.Date(allow_none=True)
    follow_up_done = fields.Method("dump_follow_up_done")
    follow_up_done_at = fields.AwareDateTime(allow_none=True)
    follow_up_done_by = fields.Integer(allow_none=True)
    follow_up_result = fields.String(allow_none=True)
    photo_ids = fields.List(fields.Integer())
    confidential = fields.Boolean()
    created_at = fields.AwareDateTime()
    version = fields.Integer()

    def dump_target(self, visit) -> dict:
        for name in _TARGETS:
            if getattr(visit, name) is not None:
                return {"type": name[:-3], "id": getattr(visit, name)}
        return {}

    def dump_type_label(self, visit) -> str:
        return VISIT_TYPES.get(visit.type, visit.type)

    def dump_follow_up_done(self, visit) -> bool:
        return visit.follow_up_done_at is not None

    def dump_location(self, visit):
        """The WGS-84 point as stored, in the crs the request asked for (?crs=)."""
        if visit.location is None:
            return None
        point = to_shape(visit.location)
        return Point()._serialize(GpsFix(lon=point.x, lat=point.y), "location", visit)

    def dump_gps(self, visit) -> dict:
        return {"crs": visit.gps_crs, "raw_lon": visit.gps_raw_lon,
                "raw_lat": visit.gps_raw_lat, "accuracy_m": visit.gps_accuracy_m,
                "captured_at": visit.gps_captured_at.isoformat() if visit.gps_captured_at
                else None, "device_id": visit.gps_device_id}


class FollowUpDoneSchema(Schema):
    follow_up_done = fields.Boolean(required=True, validate=validate.Equal(True), metadata={
        "description": "Always true: a follow-up is completed once and stays completed"})
    follow_up_result = fields.String(validate=validate.Length(1, 2000), allow_none=True,
                                     metadata={"example": "已协调物业修复楼道照明"})
    version = fields.Integer(validate=validate.Range(min=1),
                             metadata={"description": "The version completed (or If-Match)"})


class VisitQuerySchema(Schema):
    person_id = fields.Integer(validate=_ID)
    household_id = fields.Integer(validate=_ID)
    organisation_id = fields.Integer(validate=_ID)
    worker_id = fields.Integer(validate=_ID)
    type = fields.String(validate=validate.OneOf(list(VISIT_TYPES)))
    since = UtcDateTime(metadata={"description": "visited_at ≥ since (ISO-8601 with offset)"})
    until = UtcDateTime(metadata={"description": "visited_at < until"})
    area_id = fields.Integer(validate=_ID, metadata={"description": "Only this area's subtree"})
    crs = fields.String(validate=validate.OneOf(CRS), metadata={
        "description": "Answer locations in this system"})


_TAG = validate.OneOf([*CARE_TAGS, *KEY_TAGS])


class PolicySchema(Schema):
    id = fields.Integer()
    area_id = fields.Integer()
    tag = fields.String()
    label = fields.Method("dump_label")
    interval_days = fields.Integer()
    updated_by = fields.Integer(allow_none=True)
    updated_at = fields.AwareDateTime()
    version = fields.Integer()

    def dump_label(self, row) -> str:
        return CARE_TAGS.get(row.tag) or KEY_TAGS.get(row.tag, row.tag)


class PolicyPutSchema(Schema):
    interval_days = fields.Integer(required=True,
                                   validate=validate.Range(1, MAX_INTERVAL_DAYS),
                                   metadata={"example": 7})
    version = fields.Integer(validate=validate.Range(min=1), metadata={
        "description": "Replacing a policy: the version replaced (or If-Match)"})


class PolicyQuerySchema(Schema):
    area_id = fields.Integer(validate=_ID)
    tag = fields.String(validate=_TAG)


class EffectiveQuerySchema(Schema):
    area_id = fields.Integer(required=True, validate=_ID)


class EffectivePolicySchema(Schema):
    tag = fields.String()
    label = fields.String()
    kind = fields.String(metadata={"description": "care (关爱对象) or key (重点人员)"})
    interval_days = fields.Integer(allow_none=True,
                                   metadata={"description": "None: not scheduled"})
    source = fields.String(metadata={"description": "area | default | none"})
    policy_id = fields.Integer()
    area_id = fields.Integer(metadata={"description": "The area whose policy applies"})
    area_code = fields.String()
    area_name = fields.String()
    version = fields.Integer()


class TasksQuerySchema(Schema):
    lon = fields.Float(allow_nan=False, validate=validate.Range(-180, 180), metadata={
        "description": "Where you are: with `lat` (both or neither, else 422); nearest first"})
    lat = fields.Float(allow_nan=False, validate=validate.Range(-90, 90), metadata={
        "description": "With `lon` (both or neither)"})
    crs = fields.String(load_default="wgs84", validate=validate.OneOf(CRS), metadata={
        "description": "The system of lon/lat, and of the locations in the answer"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500), metadata={
        "description": "At most this many items in each list (≤ 500); totals tell the rest"})

    @validates_schema
    def _both(self, data, **kwargs):
        if ("lon" in data) != ("lat" in data):
            raise ValidationError("Send both lon and lat, or neither.", "lon")


class TaskPersonSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    sex = fields.String(allow_none=True)
    phone = fields.String(allow_none=True, metadata={"description": "Masked"})
    household_id = fields.Integer(allow_none=True)


class DueTagSchema(Schema):
    tag = fields.String()
    label = fields.String()
    kind = fields.String()
    interval_days = fields.Integer()
    due_at = fields.Date()


class DueVisitSchema(Schema):
    person = fields.Nested(TaskPersonSchema)
    area_id = fields.Integer()
    due_at = fields.Date(metadata={"description": "The local day the visit fell due"})
    overdue = fields.Boolean(metadata={"description": "due_at is before today"})
    days_overdue = fields.Integer()
    last_visit_at = fields.AwareDateTime(allow_none=True,
                                         metadata={"description": "To the person or household"})
    tags = fields.List(fields.Nested(DueTagSchema), metadata={"description": "The groups due"})
    address = fields.String(allow_none=True)
    house_id = fields.Integer(allow_none=True)
    building_id = fields.Integer(allow_none=True)
    location = Point(allow_none=True, dump_only=True)
    distance_m = fields.Float(allow_none=True, metadata={"description": "With lon/lat"})


class ReviewItemSchema(Schema):
    type = fields.String(metadata={"description": "building, house, household, person, "
                                                  "organisation"})
    id = fields.Integer()
    area_id = fields.Integer()
    label = fields.String(allow_none=True)
    review_reasons = fields.List(fields.String())
    updated_at = fields.AwareDateTime()
    version = fields.Integer()
    location = Point(allow_none=True, dump_only=True)
    distance_m = fields.Float(allow_none=True)


class CheckSchema(Schema):
    """Something to check (核实) that another context put on the list: a feed's review item
    (both values and their sources) or a resident's declaration."""

    type = fields.String(metadata={"description": "review_item or declaration"})
    id = fields.Integer()
    area_id = fields.Integer()
    title = fields.String()
    object_type = fields.String(allow_none=True)
    object_id = fields.Integer(allow_none=True)
    field = fields.String(allow_none=True)
    current = fields.Raw(allow_none=True, metadata={"description": "Masked if personal"})
    current_source = fields.Dict(allow_none=True)
    proposed = fields.Raw(allow_none=True, metadata={"description": "Masked if personal"})
    proposed_source = fields.Dict(allow_none=True)
    kind = fields.String(allow_none=True, metadata={"description": "A declaration's kind"})
    needs_visit = fields.Boolean(allow_none=True)
    created_at = fields.AwareDateTime()
    version = fields.Integer()


class TasksSchema(Schema):
    visits = fields.List(fields.Nested(DueVisitSchema))
    visits_total = fields.Integer()
    reviews = fields.List(fields.Nested(ReviewItemSchema))
    reviews_total = fields.Integer()
    checks = fields.List(fields.Nested(CheckSchema), metadata={
        "description": "核实任务: feeds' review items and residents' declarations, oldest first"})
    checks_total = fields.Integer()
    limit = fields.Integer()
