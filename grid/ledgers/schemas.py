"""Request and response shapes of ledger import and export."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate
from werkzeug.datastructures import FileStorage

from grid.ledgers.columns import KINDS
from grid.registry.schemas import Id
from server.api import ErrorSchema, Schema

_KIND = {"description": "persons (实有人口), households (户), buildings (楼栋) or "
                        "organisations (实有单位)"}


class LedgerImportQuerySchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata=_KIND)
    area_id = Id(metadata={"description": "The grid of rows without a 网格编码 (one of yours)"})
    skip_invalid = fields.Boolean(load_default=False, metadata={
        "description": "Write the valid rows and report the others (default: all or nothing)"})
    dry_run = fields.Boolean(load_default=False, metadata={
        "description": "Check and report only; nothing is written"})


class FileField(fields.Raw):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, FileStorage):
            raise ValidationError("Send the ledger as a file part of a multipart/form-data body.")
        return value


class LedgerUploadSchema(Schema):
    file = FileField(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "The ledger: .xlsx, or CSV (UTF-8 with or without BOM, GB18030)"})


class LedgerProblemSchema(Schema):
    row = fields.Integer(metadata={"description": "As Excel numbers it (the header is row 1)"})
    column = fields.String(metadata={"description": "The header as the file has it"})
    field = fields.String(metadata={"description": "The register's field"})
    cell = fields.String(metadata={"example": "C5"})
    message = fields.String()


class LedgerImportReportSchema(Schema):
    kind = fields.String()
    dry_run = fields.Boolean()
    skip_invalid = fields.Boolean()
    format = fields.String(allow_none=True, metadata={"description": "xlsx or csv"})
    encoding = fields.String(allow_none=True, metadata={"description": "CSV: as detected"})
    sheet = fields.String(allow_none=True)
    header_row = fields.Integer(allow_none=True)
    columns = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "Header → field, as understood"})
    ignored_columns = fields.List(fields.String(), metadata={
        "description": "Headers that match no field (not stored)"})
    rows = fields.Integer(metadata={"description": "Data rows read (empty rows skipped)"})
    valid = fields.Integer()
    invalid = fields.Integer()
    written = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "Rows written per table (would be written, with dry_run)"})
    errors = fields.List(fields.Nested(LedgerProblemSchema))
    errors_total = fields.Integer()
    errors_truncated = fields.Boolean()
    stopped_at_row = fields.Integer(allow_none=True, metadata={
        "description": "Reading stopped here: too many problems for a file that fails anyway"})


class LedgerImportErrorSchema(ErrorSchema):
    """422 of an import: the one error shape plus the report (nothing was written)."""

    report = fields.Nested(LedgerImportReportSchema)


class LedgerExportQuerySchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata=_KIND)
    area_id = Id(metadata={"description": "The area whose subtree to export (default: all "
                                          "of yours)"})
    include_ended = fields.Boolean(load_default=False)
