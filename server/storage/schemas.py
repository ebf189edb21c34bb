"""Request and response shapes of attachments (附件): the upload form, links, the answer."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema
from werkzeug.datastructures import FileStorage

from server.api import Schema
from server.storage.images import ACCEPTED

BIGINT_MAX = 2**63 - 1


class FileField(fields.Raw):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, FileStorage):
            raise ValidationError("Send the photo as a file part of a multipart/form-data body.")
        return value


_object_type = fields.String(validate=validate.Length(1, 64),
                             metadata={"description": "person, building, visit… (the types "
                                                      "the installed modules register)"})
_object_id = fields.Integer(validate=validate.Range(1, BIGINT_MAX))


class UploadSchema(Schema):
    file = FileField(required=True, metadata={"type": "string", "format": "binary",
                                              "description": f"The photo: {ACCEPTED}"})
    object_type = _object_type
    object_id = _object_id
    client_uuid = fields.UUID(metadata={"description": "Idempotency key of the phone"})

    @validates_schema
    def _both_or_neither(self, data, **kwargs):
        if ("object_type" in data) != ("object_id" in data):
            raise ValidationError("Give object_type and object_id together, or neither.",
                                  "object_type" if "object_type" not in data else "object_id")


class LinkSchema(Schema):
    object_type = fields.String(required=True, validate=validate.Length(1, 64))
    object_id = fields.Integer(required=True, validate=validate.Range(1, BIGINT_MAX))


class AttachmentQuerySchema(LinkSchema):
    pass


class AttachmentSchema(Schema):
    id = fields.Integer()
    object_type = fields.String(allow_none=True)
    object_id = fields.Integer(allow_none=True)
    uploaded_by = fields.Integer()
    content_type = fields.String(metadata={"description": "As stored (HEIC is stored as JPEG)"})
    original_format = fields.String(metadata={"description": "JPEG, PNG, WEBP or HEIF"})
    size = fields.Integer(metadata={"description": "Stored bytes"})
    sha256 = fields.String(metadata={"description": "Of the stored bytes; also the ETag"})
    width = fields.Integer()
    height = fields.Integer()
    created_at = fields.AwareDateTime()
    linked_at = fields.AwareDateTime(allow_none=True)
    url = fields.Function(lambda a: f"/attachments/{a.id}")
    thumbnail_url = fields.Function(
        lambda a: f"/attachments/{a.id}/thumbnail" if a.thumbnail_key else None, allow_none=True)

