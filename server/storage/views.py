"""HTTP for attachments (照片/附件): upload, list a record's photos, serve, link."""

from __future__ import annotations

from flask import current_app, send_file
from flask.views import MethodView
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict, FileStorage

from server import db, idempotency
from server.api import Blueprint
from server.auth.actor import current_actor, login_required
from server.errors import NotFound
from server.storage.blobs import blob_store
from server.storage.images import THUMBNAIL_PX
from server.storage.schemas import AttachmentQuerySchema, AttachmentSchema, LinkSchema, UploadSchema
from server.storage.service import get_attachment, link, list_for, upload

CACHE_MAX_AGE_S = 3600


class _FormAndFilesParser(FlaskParser):
    """multipart/form-data: the `form` location sees the file parts beside the fields."""

    def load_form(self, req, schema):
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class _UploadBlueprint(Blueprint):
    ARGUMENTS_PARSER = _FormAndFilesParser()


blp = _UploadBlueprint("attachments", __name__, url_prefix="/attachments",
                       description="Photos and attachments (照片/附件)")

_BINARY = {"type": "string", "format": "binary"}
_SERVED_TYPES = ("image/jpeg", "image/png", "image/webp")
_SERVED = "The stored image (ETag: its sha256; Cache-Control: private)"


@blp.route("")
class Attachments(MethodView):
    # login_required outermost: a caller without a token is turned away before the body
    # (up to MAX_CONTENT_LENGTH) is parsed.
    @login_required
    @blp.arguments(UploadSchema, location="form", content_type="multipart/form-data")
    @blp.response(201, AttachmentSchema, description="Stored (or the replay of a client_uuid)")
    @idempotency.document_replay(blp, AttachmentSchema)
    def post(self, data):
        """Upload a photo (multipart field `file`): checked by content, EXIF/GPS stripped,
        thumbnail made; optionally linked at once to `object_type`/`object_id`.

        413 beyond PHOTO_MAX_BYTES (or MAX_CONTENT_LENGTH for the whole body), 415 for
        anything but JPEG, PNG, WebP or HEIC, 422 for an unreadable image."""
        upload_file: FileStorage = data.pop("file")
        limit = current_app.config["PHOTO_MAX_BYTES"]
        content = upload_file.stream.read(limit + 1)
        with db.unit_of_work() as s:
            attachment, created = upload(s, current_actor(), blob_store(), content,
                                         max_bytes=limit, **data)
        status, headers = idempotency.create_answer(created)
        return attachment, status, headers

    @blp.arguments(AttachmentQuerySchema, location="query")
    @blp.response(200, AttachmentSchema(many=True))
    @blp.paginate()
    @login_required
    def get(self, query, pagination_parameters):
        """The attachments of one record (for those who may see the record)."""
        return list_for(db.session(), current_actor(), query["object_type"],
                        query["object_id"], pagination_parameters)


def _send(key: str, content_type: str, tag: str, name: str):
    response = send_file(blob_store().open(key), mimetype=content_type, etag=tag,
                         conditional=True, download_name=name, max_age=None)
    response.cache_control.no_cache = None
    response.cache_control.private = True
    response.cache_control.max_age = CACHE_MAX_AGE_S
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.route("/<int:attachment_id>")
@blp.response(200, _BINARY, content_type=_SERVED_TYPES[0], description=_SERVED)
@blp.alt_response(200, schema=_BINARY, content_type=_SERVED_TYPES[1], description=_SERVED,
                  success=True)
@blp.alt_response(200, schema=_BINARY, content_type=_SERVED_TYPES[2], description=_SERVED,
                  success=True)
@blp.alt_response(304, description="Not modified (If-None-Match matched)", success=True)
@login_required
def get_file(attachment_id):
    """The photo, to those who may see the record it belongs to (its uploader only while
    it is unlinked)."""
    attachment = get_attachment(db.session(), current_actor(), attachment_id)
    ext = attachment.storage_key.rsplit(".", 1)[-1]
    return _send(attachment.storage_key, attachment.content_type,
                 attachment.sha256, f"{attachment.id}.{ext}")


@blp.route("/<int:attachment_id>/thumbnail")
@blp.response(200, _BINARY, content_type="image/jpeg",
              description=f"A JPEG of at most {THUMBNAIL_PX} px (ETag; Cache-Control: private)")
@blp.alt_response(304, description="Not modified (If-None-Match matched)", success=True)
@login_required
def get_thumbnail(attachment_id):
    attachment = get_attachment(db.session(), current_actor(), attachment_id)
    if attachment.thumbnail_key is None:
        raise NotFound("This attachment has no thumbnail")
    tag = attachment.thumbnail_key.rsplit("/", 1)[-1].split(".")[0]
    return _send(attachment.thumbnail_key, "image/jpeg", tag,
                 f"{attachment.id}-thumbnail.jpg")


@blp.route("/<int:attachment_id>/link", methods=["POST"])
@blp.arguments(LinkSchema)
@blp.response(200, AttachmentSchema)
@login_required
def post_link(data, attachment_id):
    """Link an unlinked upload of the caller's to a record they may see (the same record
    again: no change; another record: 409)."""
    with db.unit_of_work() as s:
        return link(s, current_actor(), attachment_id, data["object_type"], data["object_id"])
