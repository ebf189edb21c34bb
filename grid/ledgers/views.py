"""Ledgers API: import a community's spreadsheet into the register, export a grid's."""

from __future__ import annotations

from flask import send_file
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict

from grid.ledgers import schemas, service
from server import db
from server.api import Blueprint
from server.auth.actor import current_actor, login_required
from server.security import no_store

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class _FormAndFilesParser(FlaskParser):
    """multipart/form-data: the `form` location sees the file parts beside the fields."""

    def load_form(self, req, schema):
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class _LedgerBlueprint(Blueprint):
    ARGUMENTS_PARSER = _FormAndFilesParser()


blp = _LedgerBlueprint("ledgers", __name__, url_prefix="/ledgers",
                       description="Ledgers (台账): import from .xlsx/.csv, export as .xlsx")
blueprints = [blp]


def _filename(name: str | None) -> str | None:
    """The upload's name as the audit trail keeps it (no NUL, bounded)."""
    return (name or "").replace("\x00", "")[:200] or None


@blp.route("/import", methods=["POST"])
@login_required
@blp.arguments(schemas.LedgerImportQuerySchema, location="query")
@blp.arguments(schemas.LedgerUploadSchema, location="form", content_type="multipart/form-data")
@blp.response(201, schemas.LedgerImportReportSchema, description="Imported")
@blp.alt_response(200, schema=schemas.LedgerImportReportSchema, success=True,
                  description="dry_run: what would be written")
@blp.alt_response(422, schema=schemas.LedgerImportErrorSchema,
                  description="Rows with problems (see `report`: row, column, message); "
                              "nothing was written")
def import_ledger(args, form):
    """Import a ledger (multipart field `file`: .xlsx or CSV in UTF-8/GB18030).

    Chinese headers as communities write them (姓名, 身份证号, 联系电话, 户号, 网格编码 …) or
    the API's field names. Rows go to the grid of their 网格编码, else to `area_id`. Every row
    is checked by the register's rules; all or nothing unless `skip_invalid`. Needs
    registry:import; 415 for a file that is neither .xlsx nor CSV text."""
    upload = form["file"]
    with db.unit_of_work() as s:
        report = service.import_ledger(
            s, current_actor(), args["kind"], upload.stream, area_id=args.get("area_id"),
            skip_invalid=args["skip_invalid"], dry_run=args["dry_run"],
            filename=_filename(upload.filename))
    return report, 200 if args["dry_run"] else 201


@blp.route("/export")
@no_store  # personal data, even masked
@blp.arguments(schemas.LedgerExportQuerySchema, location="query")
@blp.response(200, {"type": "string", "format": "binary"}, content_type=XLSX,
              description="The ledger as .xlsx (personal data masked)")
@login_required
def export_ledger(args):
    """A ledger of an area's subtree (default: all of yours) as .xlsx, with the headers an
    import accepts; ID numbers and phones masked as in API responses, key-person groups only
    for roles that may see them. Needs registry:export; audited."""
    with db.unit_of_work() as s:
        out, name, count = service.export_ledger(s, current_actor(), args["kind"],
                                                 args.get("area_id"), args["include_ended"])
    response = send_file(out, mimetype=XLSX, as_attachment=True, download_name=name)
    response.headers["X-Row-Count"] = str(count)
    return response
