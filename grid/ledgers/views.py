"""Ledgers API: import a community's spreadsheet into the register, export a grid's."""

from __future__ import annotations

from flask import current_app, send_file
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict

from grid.ledgers import exports, imports, schemas
from server import db, jobs
from server.api import Blueprint, ErrorSchema
from server.auth.actor import current_actor, login_required
from server.security import no_store
from server.storage.blobs import blob_store

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
@blp.response(202, jobs.JobSchema, description="Queued: poll the job (`Location`)")
@blp.alt_response(413, schema=ErrorSchema, description="Beyond the limits of one import "
                  "(rows, unpacked size, compression ratio): nothing was queued")
@blp.alt_response(415, schema=ErrorSchema, description="Neither .xlsx nor CSV text")
def import_ledger(args, form):
    """Import a ledger (multipart field `file`: .xlsx or CSV in UTF-8/GB18030), as a
    background job: 202 with the job (`Location: /jobs/{id}`); poll it for its state and
    progress (rows read of the file's rows); its `result` is the report once it succeeded,
    its `error` the 422 with the report when rows have problems (nothing written).

    Chinese headers as communities write them (姓名, 身份证号, 联系电话, 户号, 网格编码 …) or
    the API's field names. Rows go to the grid of their 网格编码, else to `area_id`. Every row
    is checked by the register's rules; all or nothing unless `skip_invalid`. Needs
    registry:import. At most LEDGER_MAX_ROWS (200,000) rows; an .xlsx is checked for its
    unpacked size and compression ratio before it is opened (413 beyond them); 415 for a
    file that is neither .xlsx nor CSV text."""
    upload = form["file"]
    with db.unit_of_work() as s:
        job = imports.submit_import(
            s, current_actor(), blob_store(), args["kind"], upload.stream,
            area_id=args.get("area_id"), skip_invalid=args["skip_invalid"],
            dry_run=args["dry_run"], filename=_filename(upload.filename),
            limits=imports.ImportLimits.from_config(current_app.config))
    return jobs.accepted(job)


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
        out, name, count = exports.export_ledger(s, current_actor(), args["kind"],
                                                 args.get("area_id"), args["include_ended"])
    response = send_file(out, mimetype=XLSX, as_attachment=True, download_name=name)
    response.headers["X-Row-Count"] = str(count)
    return response
