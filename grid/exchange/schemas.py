"""Request and response shapes of the exchange. Each helper's part is one block."""

from __future__ import annotations

from marshmallow import fields, validate

from grid.exchange.events import EVENT_TYPES
from grid.exchange.open_data import DATASETS
from server.api import Schema

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
