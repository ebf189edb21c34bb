"""Request and response shapes of /sync. The records inside (`data`, `body`) are the
register's own masked shapes (grid.registry.schemas)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from server.api import Schema

# A full grid (~2,000 people, ~3,500 records) in two pages. 2,000 records are ~1.3 MB of
# JSON but ~140 KB gzipped (server/compress.py), less than a page of 500 was before
# compression: the smaller default (500, until 2026-12-01) only added round trips and
# per-page work (bench/README.md, registry_sync). The maximum bounds one page's memory.
PAGE_DEFAULT, PAGE_MAX = 2000, 2000
BATCH_MAX = 200
TYPES = ("person", "building", "house", "household", "organisation")
OPS = ("create", "update", "end")
_BIGINT = validate.Range(min=1, max=2**63 - 1)


class PullQuerySchema(Schema):
    cursor = fields.String(
        load_default=None, validate=validate.Length(max=20_000),
        metadata={"description": "The `next_cursor` of the previous page; empty or absent "
                                 "on the first sync. Opaque: send it back as it came."})
    limit = fields.Integer(
        load_default=PAGE_DEFAULT, validate=validate.Range(1, PAGE_MAX),
        metadata={"description": f"Items per page: default {PAGE_DEFAULT}, at most {PAGE_MAX}."})


class SyncItemSchema(Schema):
    type = fields.String(validate=validate.OneOf(TYPES))
    id = fields.Integer()
    change_seq = fields.Integer(metadata={"description": "Items come in this order."})
    version = fields.Integer(metadata={"description": "Absent on tombstones."})
    data = fields.Dict(metadata={"description": "The record as GET /{type}s/{id} shows it "
                                                "(masked); `ended_at` set when it ended."})
    deleted = fields.Boolean(metadata={"description": "A tombstone: the record left your "
                                                      "grids; drop it."})


class PullSchema(Schema):
    items = fields.List(fields.Nested(SyncItemSchema))
    next_cursor = fields.String(metadata={"description": "Send it with the next pull (also "
                                                         "when has_more is false: later)."})
    has_more = fields.Boolean(metadata={"description": "Pull again at once with next_cursor."})
    reset = fields.Boolean(metadata={
        "description": "This is a full sync (first pull, or your grids or permissions "
                       "changed): drop every record you hold before applying the items."})


class PushItemSchema(Schema):
    op = fields.String(required=True, validate=validate.OneOf(OPS))
    type = fields.String(required=True, validate=validate.OneOf(TYPES))
    client_uuid = fields.UUID(metadata={"description": "Creates (required): the phone's id "
                                                       "for this create; a resend returns "
                                                       "the original record."})
    id = fields.Integer(validate=_BIGINT, metadata={"description": "Updates and ends."})
    version = fields.Integer(validate=validate.Range(1, 2**31 - 1),
                             metadata={"description": "Updates and ends: the version edited."})
    data = fields.Dict(load_default=dict, metadata={
        "description": "What the single-record endpoint takes: POST /{type}s (create), "
                       "PATCH /{type}s/{id} (update), POST /{type}s/{id}/end (end)."})

    @validates_schema
    def _needs(self, data, **kwargs):
        if data["op"] == "create":
            if data.get("client_uuid") is None:
                raise ma.ValidationError("Creates carry a client_uuid.", "client_uuid")
            if data.get("id") is not None:
                raise ma.ValidationError("The server gives a created record its id.", "id")
        elif data.get("id") is None:
            raise ma.ValidationError(f"A {data['op']} names the record's id.", "id")


class _Items(fields.List):
    """The batch's items: documented as PushItem objects, but only checked here to be a
    list of objects (of at most BATCH_MAX). Each item is validated on its own, so that a bad
    one gets its own 422 result instead of failing the batch."""

    def __init__(self, **kwargs):
        super().__init__(fields.Nested(PushItemSchema), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ma.ValidationError("Must be a list of operations.")
        bad = {i: ["Must be an object."] for i, item in enumerate(value)
               if not isinstance(item, dict)}
        if bad:
            raise ma.ValidationError(bad)
        return list(value)


class PushSchema(Schema):
    items = _Items(required=True, validate=validate.Length(max=BATCH_MAX), metadata={
        "description": f"At most {BATCH_MAX} operations, applied in order."})


class PushResultSchema(Schema):
    index = fields.Integer(metadata={"description": "The item's position in the batch."})
    status = fields.Integer(metadata={"description": "As the single-record endpoint would "
                                                     "answer: 201, 200, 403, 404, 409, 412, "
                                                     "422, 428."})
    body = fields.Dict(metadata={"description": "Success: the record (masked)."})
    error = fields.Dict(metadata={"description": "Failure: the one error shape {code, status, "
                                                 "message, errors?, current?, existing?…}."})


class PushResultsSchema(Schema):
    results = fields.List(fields.Nested(PushResultSchema))
