"""Request and response shapes of ledger import and export."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate
from werkzeug.datastructures import FileStorage

from grid.ledgers.columns import KINDS
from grid.registry.schemas import Id
from server.api import Schema

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


class LedgerExportQuerySchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata=_KIND)
    area_id = Id(metadata={"description": "The area whose subtree to export (default: all "
                                          "of yours)"})
    include_ended = fields.Boolean(load_default=False)
