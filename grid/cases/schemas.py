"""Case request and response shapes."""

from __future__ import annotations

import marshmallow as ma
from webargs.fields import DelimitedList

from geo import crs as crs_mod
from geo.fields import BBox, GpsFix, Near, Point
from grid.calendar.service import UNITS
from grid.cases.models import CHANNELS, STAGES, STATES
from server.api import Schema, UtcDateTime
from server.validators import validate_mobile

_text = ma.validate.Length(min=1, max=4000)
_photo_ids = ma.fields.List(ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62)),
                            validate=ma.validate.Length(max=9), load_default=list)
LIGHTS = ("green", "yellow", "red")


# --- categories ----------------------------------------------------------------------------


class LimitSchema(Schema):
    amount = ma.fields.Float(required=True, validate=ma.validate.Range(min=0, max=10_000,
                                                                       min_inclusive=False))
    unit = ma.fields.String(required=True, validate=ma.validate.OneOf(list(UNITS)))


class AttributeValueSchema(Schema):
    key = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))


class AttributeSchema(Schema):
    """An extra question (Open311 attribute)."""

    code = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$"))
    datatype = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]))
    required = ma.fields.Boolean(load_default=False)
    description = ma.fields.String(required=True, validate=ma.validate.Length(max=200))
    order = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=1000))
    values = ma.fields.List(ma.fields.Nested(AttributeValueSchema), load_default=list,
                            validate=ma.validate.Length(max=100))

    @ma.validates_schema
    def _lists_have_values(self, data, **kwargs):
        if data["datatype"].endswith("valuelist") and not data.get("values"):
            raise ma.ValidationError("A value list needs values.", "values")


class CategorySchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    code = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[0-9A-Za-z_]{1,16}$"))
    parent_id = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=1, max=2**62))
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    name_en = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=100))
    description = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000))
    default_department_id = ma.fields.Integer(allow_none=True,
                                              validate=ma.validate.Range(min=1, max=2**62))
    priority = ma.fields.Integer(validate=ma.validate.Range(min=1, max=4))
    time_limits = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.OneOf(list(STAGES))),
                                 values=ma.fields.Nested(LimitSchema))
    result_photo_required = ma.fields.Boolean()
    duplicate_radius_m = ma.fields.Float(validate=ma.validate.Range(min=0, max=5000))
    duplicate_days = ma.fields.Integer(validate=ma.validate.Range(min=0, max=365))
    attributes = ma.fields.List(ma.fields.Nested(AttributeSchema),
                                validate=ma.validate.Length(max=50))
    active = ma.fields.Boolean()
    version = ma.fields.Integer(dump_only=True)


class CategoryUpdateSchema(CategorySchema):
    code = ma.fields.String(dump_only=True)
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    version = ma.fields.Integer(load_only=True)


class RouteSchema(Schema):
    area_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**62))
    department_id = ma.fields.Integer(required=True, allow_none=True,
                                      validate=ma.validate.Range(min=1, max=2**62))


# --- cases ---------------------------------------------------------------------------------


class SelfHandleSchema(Schema):
    result = ma.fields.String(required=True, validate=_text)
    photo_ids = _photo_ids


class CaseCreateSchema(Schema):
    client_uuid = ma.fields.UUID()
    category_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**62))
    location = Point(required=True)
    address = ma.fields.String(validate=ma.validate.Length(max=200))
    description = ma.fields.String(required=True, validate=_text)
    attributes = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=32)),
                                load_default=dict)
    photo_ids = _photo_ids
    anonymous = ma.fields.Boolean(load_default=False,
                                  metadata={"description": "Hide the reporter from handlers"})
    public = ma.fields.Boolean(metadata={"description": (
        "公开: publish this report: its description, address, point and progress appear "
        "in Open311's public list (never the reporter, the contact or photos). Residents: "
        "false unless asked; grid workers: true unless refused; not for cases entered "
        "for others")})
    channel = ma.fields.String(validate=ma.validate.OneOf(list(CHANNELS)))
    contact_name = ma.fields.String(validate=ma.validate.Length(max=64))
    contact_phone = ma.fields.String(validate=validate_mobile)
    self_handle = ma.fields.Nested(SelfHandleSchema, metadata={
        "description": "自行处置: the problem is already solved; result and photo"})


class HotlineCaseSchema(Schema):
    ticket_no = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    category_code = ma.fields.String(required=True, validate=ma.validate.Length(max=16))
    description = ma.fields.String(required=True, validate=_text)
    location = Point()
    grid_code = ma.fields.String(validate=ma.validate.Regexp(r"^\d{15}$"))
    address = ma.fields.String(validate=ma.validate.Length(max=200))
    attributes = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=32)),
                                load_default=dict)
    contact_name = ma.fields.String(validate=ma.validate.Length(max=64))
    contact_phone = ma.fields.String(validate=validate_mobile)


class ActionSchema(Schema):
    """One workflow action; which fields it needs is in grid/cases/workflow.py."""

    version = ma.fields.Integer(metadata={"description": "Or If-Match"})
    note = ma.fields.String(validate=ma.validate.Length(max=4000))
    reason = ma.fields.String(validate=_text)
    result = ma.fields.String(validate=_text)
    photo_ids = _photo_ids
    department_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    assignee_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    into_case_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    rating = ma.fields.Integer(validate=ma.validate.Range(min=1, max=5))
    comment = ma.fields.String(validate=ma.validate.Length(max=2000))
    extension_hours = ma.fields.Float(validate=ma.validate.Range(min=0, max=2000,
                                                                 min_inclusive=False))


class _CasePoint(Point):
    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return super()._serialize(GpsFix(lon=value[0], lat=value[1]), attr, obj, **kwargs)


class CaseSchema(Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    category_id = ma.fields.Integer()
    channel = ma.fields.String()
    state = ma.fields.String(metadata={"enum": list(STATES)})
    state_label = ma.fields.Function(lambda c: STATES[c.state])
    area_id = ma.fields.Integer()
    location = _CasePoint(attribute="point")
    address = ma.fields.String(allow_none=True)
    description = ma.fields.String()
    attributes = ma.fields.Dict()
    priority = ma.fields.Integer()
    reporter_id = ma.fields.Integer(allow_none=True)
    anonymous = ma.fields.Boolean(attribute="reporter_anonymous")
    public = ma.fields.Boolean()
    contact_name = ma.fields.String(allow_none=True)
    contact_phone = ma.fields.String(attribute="contact_phone_masked", allow_none=True)
    external_ref = ma.fields.String(allow_none=True)
    department_id = ma.fields.Integer(allow_none=True)
    suggested_department_id = ma.fields.Integer(allow_none=True, metadata={
        "description": "Where `dispatch` sends the case without a department_id (路由)"})
    assignee_id = ma.fields.Integer(allow_none=True)
    merged_into_id = ma.fields.Integer(allow_none=True)
    self_handled = ma.fields.Boolean()
    joined_count = ma.fields.Integer()
    result = ma.fields.String(allow_none=True)
    stage = ma.fields.String(allow_none=True)
    light = ma.fields.String(allow_none=True, metadata={"enum": list(LIGHTS)})
    warn_at = ma.fields.AwareDateTime(allow_none=True)
    due_at = ma.fields.AwareDateTime(allow_none=True)
    hold_kind = ma.fields.String(allow_none=True)
    escalation = ma.fields.Integer()
    overdue = ma.fields.Boolean()
    reported_at = ma.fields.AwareDateTime()
    accepted_at = ma.fields.AwareDateTime(allow_none=True)
    dispatched_at = ma.fields.AwareDateTime(allow_none=True)
    handled_at = ma.fields.AwareDateTime(allow_none=True)
    closed_at = ma.fields.AwareDateTime(allow_none=True)
    rework_count = ma.fields.Integer()
    return_count = ma.fields.Integer()
    rating = ma.fields.Integer(allow_none=True)
    rating_comment = ma.fields.String(allow_none=True)
    actions = ma.fields.List(ma.fields.String(), allow_none=True, metadata={
        "description": "What you may do to this case now"})
    version = ma.fields.Integer()


class ResidentCaseSchema(Schema):
    """The resident view of a case (居民视图): what its reporter, a resident who joined or
    follows it, and the duplicate lookups see — no reporter, contact, assignee or staff
    member, the department by name; the description and typed answers only to their author
    or when the case is public (公开)."""

    id = ma.fields.Integer()
    code = ma.fields.String()
    category_id = ma.fields.Integer()
    state = ma.fields.String(metadata={"enum": list(STATES)})
    state_label = ma.fields.Function(lambda c: STATES[c.state])
    area_id = ma.fields.Integer(metadata={"description": "Its grid (网格公示: /areas/{id}/card)"})
    location = _CasePoint(attribute="point")
    address = ma.fields.String(allow_none=True)
    public = ma.fields.Boolean(metadata={"description": "Published (公开: Open311's list)"})
    description = ma.fields.String(allow_none=True)
    attributes = ma.fields.Dict(allow_none=True)
    relation = ma.fields.String(allow_none=True, metadata={
        "enum": ["reporter", "joined", "follower"],
        "description": "Yours how: you reported, joined (me too) or follow it"})
    joined_count = ma.fields.Integer(metadata={"description": "People who joined (me too)"})
    department_name = ma.fields.String(allow_none=True, metadata={
        "description": "The department handling it"})
    stage = ma.fields.String(allow_none=True)
    light = ma.fields.String(allow_none=True, metadata={"enum": list(LIGHTS)})
    due_at = ma.fields.AwareDateTime(allow_none=True)
    reported_at = ma.fields.AwareDateTime()
    accepted_at = ma.fields.AwareDateTime(allow_none=True)
    dispatched_at = ma.fields.AwareDateTime(allow_none=True)
    handled_at = ma.fields.AwareDateTime(allow_none=True)
    closed_at = ma.fields.AwareDateTime(allow_none=True)
    result = ma.fields.String(allow_none=True)
    rating = ma.fields.Integer(allow_none=True)
    actions = ma.fields.List(ma.fields.String(), allow_none=True, metadata={
        "description": "What you may do to this case now"})
    version = ma.fields.Integer()


class DuplicateSchema(ResidentCaseSchema):
    """A likely duplicate: an open case of the same category nearby, in the resident view."""

    distance_m = ma.fields.Float()


class _ByView:
    """dump() by the view the service chose (grid.cases.resident_view.sees_whole_case): the
    staff's schema (the class itself) for a CaseView, `resident` for a ResidentView. The
    document lists the union of the two (every field optional)."""

    resident: ma.Schema

    def dump(self, obj, *, many=None):
        many = self.many if many is None else many
        if many:
            return [self.dump(o, many=False) for o in obj]
        if getattr(obj, "resident_view", False):
            return self.resident.dump(obj)
        return super().dump(obj, many=False)


class CaseAnswerSchema(_ByView, CaseSchema):
    """A case: the whole of it (CaseSchema) for its staff; the resident view
    (ResidentCaseSchema) for its reporter and residents who joined or follow it."""

    relation = ResidentCaseSchema._declared_fields["relation"]
    department_name = ResidentCaseSchema._declared_fields["department_name"]
    resident = ResidentCaseSchema()


class _ReportedResidentSchema(ResidentCaseSchema):
    likely_duplicates = ma.fields.List(ma.fields.Nested(DuplicateSchema), allow_none=True)


class ReportedCaseSchema(CaseAnswerSchema):
    likely_duplicates = ma.fields.List(ma.fields.Nested(DuplicateSchema), allow_none=True,
                                       metadata={
        "description": "Open cases of the same category nearby: join one instead?"})
    resident = _ReportedResidentSchema()


class DuplicateQuerySchema(Schema):
    category_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**62))
    near = Near(radius_required=False, required=True, metadata={
        "description": "lon,lat[,radius_m] in `crs`: where the resident stands (a radius "
                       "narrows the category's own duplicate radius, never widens it)"})
    crs = ma.fields.String(load_default="wgs84", validate=ma.validate.OneOf(crs_mod.CRS))

    @ma.post_load
    def _drop_crs(self, data, **kwargs):
        data.pop("crs")  # `near` was read in it already
        return data


class CaseQuerySchema(Schema):
    state = DelimitedList(ma.fields.String(validate=ma.validate.OneOf(list(STATES))))
    open = ma.fields.Boolean()
    category_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    area_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    department_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    light = DelimitedList(ma.fields.String(validate=ma.validate.OneOf([*LIGHTS, "none"])),
                          metadata={"description": "Comma list; none: no clock running"})
    overdue = ma.fields.Boolean()
    escalation = ma.fields.Integer(validate=ma.validate.Range(min=0, max=2))
    assigned_to_me = ma.fields.Boolean()
    reported_by_me = ma.fields.Boolean()
    bbox = BBox()
    near = Near()
    crs = ma.fields.String(load_default="wgs84", validate=ma.validate.OneOf(crs_mod.CRS))
    reported_from = UtcDateTime()
    reported_to = UtcDateTime()
    q = ma.fields.String(validate=ma.validate.Length(min=1, max=100), metadata={
        "description": "A case number (prefix), or words all found in the description or "
                       "the address"})
    sort = ma.fields.String(validate=ma.validate.OneOf(
        [f"{d}{k}" for k in ("reported_at", "due_at", "light", "priority", "updated_at")
         for d in ("", "-")]),
        metadata={"description": "A leading '-' reverses (the default: -reported_at, newest "
                                 "first; -light: red first; due_at: soonest first)"})

    @ma.post_load
    def _drop_crs(self, data, **kwargs):
        data.pop("crs")  # `bbox` and `near` were read in it already
        return data


class CaseCountsSchema(Schema):
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    total = ma.fields.Integer()


class EventSchema(Schema):
    id = ma.fields.Integer()
    at = ma.fields.AwareDateTime()
    actor_id = ma.fields.Integer(allow_none=True)
    action = ma.fields.String()
    from_state = ma.fields.String(allow_none=True)
    to_state = ma.fields.String(allow_none=True)
    note = ma.fields.String(allow_none=True)
    data = ma.fields.Dict()
    photo_ids = ma.fields.List(ma.fields.Integer())


class ResidentEventSchema(Schema):
    """A line of the public timeline: the steps that moved the case, by department name
    only, with the public notes (a refusal's reason, the result) and photos (the result's,
    and your own)."""

    id = ma.fields.Integer()
    at = ma.fields.AwareDateTime()
    action = ma.fields.String()
    from_state = ma.fields.String(allow_none=True)
    to_state = ma.fields.String(allow_none=True)
    note = ma.fields.String(allow_none=True)
    department_name = ma.fields.String(allow_none=True)
    photo_ids = ma.fields.List(ma.fields.Integer())


class EventAnswerSchema(_ByView, EventSchema):
    """A timeline line: EventSchema for the case's staff, ResidentEventSchema otherwise."""

    department_name = ResidentEventSchema._declared_fields["department_name"]
    resident = ResidentEventSchema()


class RequestSchema(Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    reason = ma.fields.String()
    extension_hours = ma.fields.Float(allow_none=True)
    state = ma.fields.String()
    requested_by = ma.fields.Integer()
    requested_at = ma.fields.AwareDateTime()
    decided_by = ma.fields.Integer(allow_none=True)
    decided_at = ma.fields.AwareDateTime(allow_none=True)
    decision_note = ma.fields.String(allow_none=True)


class CaseContactSchema(Schema):
    contact_name = ma.fields.String(allow_none=True)
    contact_phone = ma.fields.String(allow_none=True)


class JoinSchema(Schema):
    """Name how the case was offered to you: your own report that lists it as a likely
    duplicate, or the pre-report lookup (`location` + `category_id`) that offered it."""

    report_case_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62),
                                       metadata={"description": "Your report listing it"})
    location = Point(metadata={"description": "Where you stand (the lookup's point)"})
    category_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62),
                                    metadata={"description": "The lookup's category"})

    @ma.validates_schema
    def _one_way(self, data, **kwargs):
        by_report = data.get("report_case_id") is not None
        by_lookup = data.get("location") is not None or data.get("category_id") is not None
        if by_report == by_lookup:
            raise ma.ValidationError("Send report_case_id, or location and category_id.",
                                     "report_case_id")
        for name in ("location", "category_id"):
            if by_lookup and data.get(name) is None:
                raise ma.ValidationError("Required with the lookup's other field.", name)


class FollowSchema(Schema):
    following = ma.fields.Boolean(load_default=True)


# --- statistics ----------------------------------------------------------------------------


class PerformanceQuerySchema(Schema):
    area_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    department_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**62))
    start = UtcDateTime(data_key="from", required=True,
                        metadata={"description": "Start (ISO-8601 with offset), before `to`"})
    end = UtcDateTime(data_key="to", required=True,
                      metadata={"description": "End (exclusive), after `from`"})

    @ma.validates_schema
    def _ordered(self, data, **kwargs):
        if data["start"] >= data["end"]:
            raise ma.ValidationError("`from` must be before `to`.", "to")


class PerformanceRowSchema(Schema):
    id = ma.fields.Integer(allow_none=True)
    code = ma.fields.String(allow_none=True)
    name = ma.fields.String(allow_none=True)
    reported = ma.fields.Integer(metadata={"description": "上报数"})
    accepted = ma.fields.Integer(metadata={"description": "立案数"})
    dispatched = ma.fields.Integer(metadata={"description": "派遣数"})
    correctly_dispatched = ma.fields.Integer(metadata={"description": "准确派遣数"})
    correct_dispatch_rate = ma.fields.Float(allow_none=True, metadata={"description": "准确派遣率"})
    handled = ma.fields.Integer(metadata={"description": "处置数"})
    handled_in_time = ma.fields.Integer(metadata={"description": "按期处置数"})
    handled_late = ma.fields.Integer(metadata={"description": "超期处置数"})
    on_time_handling_rate = ma.fields.Float(allow_none=True, metadata={"description": "按期处置率"})
    due_for_closure = ma.fields.Integer(metadata={"description": "应结案数"})
    closed = ma.fields.Integer(metadata={"description": "结案数"})
    closure_rate = ma.fields.Float(allow_none=True, metadata={"description": "结案率"})
    closed_in_time = ma.fields.Integer(metadata={"description": "按期结案数"})
    on_time_closure_rate = ma.fields.Float(allow_none=True, metadata={"description": "按期结案率"})
    self_handled = ma.fields.Integer(metadata={"description": "自行处置数"})
    reworks = ma.fields.Integer(metadata={"description": "返工数"})
    rework_rate = ma.fields.Float(allow_none=True, metadata={"description": "返工率"})
    mean_handling_hours = ma.fields.Float(allow_none=True, metadata={
        "description": "平均处置时长 (working hours)"})
    evaluable = ma.fields.Integer(metadata={
        "description": "可评价数: closed cases someone may evaluate (a resident reporter, or "
                       "residents who joined); the others close without a rating"})
    rated = ma.fields.Integer(metadata={"description": "已评价数 (满意率 = rated 4–5 ÷ rated)"})
    satisfaction_rate = ma.fields.Float(allow_none=True, metadata={"description": "满意率"})
    score = ma.fields.Float(allow_none=True, metadata={"description": "综合评价分"})
    grade = ma.fields.String(allow_none=True)


class PerformanceSchema(Schema):
    start = ma.fields.AwareDateTime(data_key="from")
    end = ma.fields.AwareDateTime(data_key="to")
    weights = ma.fields.Dict()
    total = ma.fields.Nested(PerformanceRowSchema)
    departments = ma.fields.List(ma.fields.Nested(PerformanceRowSchema))
    grids = ma.fields.List(ma.fields.Nested(PerformanceRowSchema))

