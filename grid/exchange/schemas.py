"""Request and response shapes of the exchange. Each helper's part is one block."""

from __future__ import annotations

import json

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from geo.fields import Point
from grid.exchange import models as m
from grid.exchange.events import EVENT_TYPES
from grid.exchange.open_data import DATASETS
from grid.registry import schemas as registry
from grid.registry.models import POPULATION_TYPES, RELATIONS
from grid.registry.validation import normalize_id_number
from server import clock, pii
from server.api import Schema
from server.validators import validate_mobile

# --- webhooks: subscriptions, deliveries, 回单 ticket status, open data ---


class SubscriptionSchema(Schema):
    id = fields.Integer(dump_only=True)
    client_id = fields.Integer(required=True, metadata={
        "description": "An API client of kind system (events) or hotline (回单)"})
    url = fields.String(required=True, validate=validate.Length(min=8, max=500), metadata={
        "description": "Callback URL: https (plain http only for allow-listed hosts)"})
    event_types = fields.List(fields.String(validate=validate.OneOf(list(EVENT_TYPES))),
                              required=True, validate=validate.Length(min=1, max=20))
    area_id = fields.Integer(allow_none=True, metadata={
        "description": "Only events in this area's subtree (none: every area)"})
    category_ids = fields.List(fields.Integer(), validate=validate.Length(max=100), metadata={
        "description": "Only cases of these categories (小类, or a 大类 for all of its "
                       "小类); other events are not filtered by category"})
    personal_data = fields.Boolean(metadata={
        "description": "Grant personal data in clear (audited); masked otherwise"})
    reason = fields.String(load_only=True, validate=validate.Length(max=200), metadata={
        "description": "Why personal data is granted (kept in the audit trail)"})
    description = fields.String(allow_none=True, validate=validate.Length(max=200))
    active = fields.Boolean(dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)


class NewSubscriptionSchema(SubscriptionSchema):
    secret = fields.String(dump_only=True, metadata={
        "description": "The signing secret (whsec_…), shown once"})


class SubscriptionQuerySchema(Schema):
    client_id = fields.Integer()
    active = fields.Boolean()


class DeliveryQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(["pending", "sent", "dead"]))
    event_type = fields.String(validate=validate.OneOf(list(EVENT_TYPES)))


class AttemptSchema(Schema):
    attempt = fields.Integer()
    at = fields.AwareDateTime()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Float(allow_none=True)


class DeliverySchema(Schema):
    id = fields.Integer()
    event_id = fields.UUID()
    event_type = fields.String()
    subject = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "pending, sent or dead (dead letter)"})
    attempts = fields.Integer()
    due_at = fields.AwareDateTime()
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    sent_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()


class DeliveryDetailSchema(DeliverySchema):
    body = fields.String(metadata={"description": "The CloudEvents JSON sent"})
    attempt_log = fields.List(fields.Nested(AttemptSchema))


class EventTypeSchema(Schema):
    type = fields.String()
    label = fields.String()
    client_kind = fields.String()


class ProgressSchema(Schema):
    status = fields.String()
    label = fields.String()
    at = fields.AwareDateTime()
    detail = fields.Dict()


class TicketStatusSchema(Schema):
    ticket_no = fields.String()
    case_code = fields.String()
    state = fields.String()
    status = fields.String(metadata={
        "description": "received, accepted, rejected, dispatched, handled, closed, evaluated"})
    status_label = fields.String()
    department = fields.Dict(allow_none=True)
    result = fields.String(allow_none=True)
    rating = fields.Integer(allow_none=True)
    reported_at = fields.AwareDateTime()
    closed_at = fields.AwareDateTime(allow_none=True)
    progress = fields.List(fields.Nested(ProgressSchema))


class OpenDataPathSchema(Schema):
    dataset = fields.String(required=True, validate=validate.OneOf(list(DATASETS)))


class DictionaryEntrySchema(Schema):
    name = fields.String()
    type = fields.String()
    title = fields.String()
    description = fields.String()
    suppressed_below = fields.Integer()


class OpenDatasetSchema(Schema):
    dataset = fields.String()
    title = fields.String()
    description = fields.String()
    license = fields.Dict()
    modified = fields.String()
    suppression = fields.String()
    dictionary = fields.List(fields.Nested(DictionaryEntrySchema))
    rows = fields.List(fields.Dict())


class CatalogSchema(Schema):
    context = fields.String(data_key="@context")
    type = fields.String(data_key="@type")
    title = fields.String()
    publisher = fields.Dict()
    license = fields.String()
    dataset = fields.List(fields.Dict())

# --- end webhooks ---


# --- feeds: feeds in (1+N 多源), review items (核实任务), declarations, break-the-glass ---

_KEY = fields.String(required=True, validate=validate.Length(1, 64), metadata={
    "description": "The sending system's own key of the record (idempotency)"})


def _parent_key(description: str, required: bool = False) -> fields.String:
    return fields.String(required=required, validate=validate.Length(1, 64),
                         allow_none=not required, metadata={"description": description})


class PersonFeedRow(registry.PersonWriteSchema):
    """ID numbers are checked once, where they are converted (grid.exchange.intake)."""

    record_key = _KEY

    def _id_number(self, value, **kwargs):  # the register's check, run by field_columns
        return None
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

class DeclarationFactsSchema(Schema):
    """What a resident declares (which are required depends on the kind)."""

    name = fields.String(validate=validate.Length(1, 50), metadata={"example": "王小明"})
    id_number = fields.String(metadata={"description": "Kept encrypted, shown masked",
                                        "example": "110101202311012176"})
    phone = fields.String(validate=validate_mobile)
    relation_to_head = fields.String(validate=validate.OneOf(list(RELATIONS)))
    population_type = fields.String(validate=validate.OneOf(list(POPULATION_TYPES)))
    moved_in_on = fields.Date()
    lives_alone_since = fields.Date()

    @validates("id_number")
    def _id_number(self, value, **kwargs):
        normalize_id_number(value)  # raises ValidationError with the reason


# What each kind of declaration must state.
DECLARATION_REQUIRES = {"moving_in": ("name", "id_number"), "tenant": ("name", "id_number"),
                        "newborn": ("name",), "phone_change": ("id_number", "phone"),
                        "elderly_alone": ("id_number",)}


class DeclarationCreateSchema(Schema):
    client_uuid = fields.UUID(load_only=True, metadata={
        "description": "The app's id for this request; a resend returns the original."})
    kind = fields.String(required=True, validate=validate.OneOf(
        list(m.DECLARATION_KINDS), labels=list(m.DECLARATION_KINDS.values())))
    address = fields.String(required=True, validate=validate.Length(1, 200),
                            metadata={"example": "春江路1号3幢2单元301"})
    location = Point(required=True, metadata={"description": "Your home: decides the grid"})
    facts = fields.Nested(DeclarationFactsSchema, required=True)
    note = fields.String(validate=validate.Length(max=1000), allow_none=True)
    photo_ids = fields.List(registry.Id(), load_default=list, validate=validate.Length(max=9),
                            metadata={"description": "Photos of documents (POST /attachments)"})

    @validates_schema
    def _facts(self, data, **kwargs):
        missing = [f for f in DECLARATION_REQUIRES.get(data.get("kind"), ())
                   if not (data.get("facts") or {}).get(f)]
        if missing:
            raise ValidationError({f: ["Required for this kind of declaration."]
                                   for f in missing}, "facts")
        if len(set(data.get("photo_ids") or ())) != len(data.get("photo_ids") or ()):
            raise ValidationError("Each photo once.", "photo_ids")


class DeclarationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    kind_label = fields.Function(lambda d: m.DECLARATION_KINDS[d.kind])
    state = fields.String()
    state_label = fields.Function(lambda d: m.DECLARATION_STATES[d.state])
    area_id = fields.Integer()
    address = fields.String()
    facts = fields.Dict()
    id_number = fields.Method("dump_id_number", allow_none=True,
                              metadata={"description": "Masked"})
    phone = fields.Method("dump_phone", allow_none=True, metadata={"description": "Masked"})
    note = fields.String(allow_none=True)
    photo_ids = fields.List(fields.Integer())
    needs_visit = fields.Boolean(metadata={"description": "Accepted with the visit that "
                                                          "checked it"})
    refusal_reason = fields.String(allow_none=True, metadata={
        "description": "Why it was not accepted (the resident sees it)"})
    decided_at = fields.AwareDateTime(allow_none=True)
    visit_id = fields.Integer(allow_none=True)
    result = fields.Dict(allow_none=True, metadata={"description": "What the register got"})
    actions = fields.List(fields.String(), dump_default=list,
                          metadata={"description": "What you may do now"})
    created_at = fields.AwareDateTime()
    version = fields.Integer()

    def _secret(self, d) -> dict:
        return json.loads(pii.decrypt(d.pii_enc, "declaration.pii")) if d.pii_enc else {}

    def dump_id_number(self, d):
        return pii.mask_id_number(self._secret(d).get("id_number"))

    def dump_phone(self, d):
        return pii.mask_phone(self._secret(d).get("phone"))


class DeclarationQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(list(m.DECLARATION_STATES)))
    kind = fields.String(validate=validate.OneOf(list(m.DECLARATION_KINDS)))


class DeclarationActionSchema(Schema):
    household_id = registry.Id(metadata={"description": "accept (迁入/租户/新生儿): the "
                                                        "household the person joins"})
    person_id = registry.Id(metadata={"description": "accept (电话变更/独居老人): the person, "
                                                     "if not found by the declared ID number"})
    visit_id = registry.Id(metadata={"description": "accept: the visit that checked it "
                                                    "(required when needs_visit)"})
    reason = fields.String(validate=validate.Length(1, 1000), metadata={
        "description": "refuse: why (the resident sees it)"})
    version = fields.Integer(validate=validate.Range(min=1))

# --- end feeds ---
