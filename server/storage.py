"""Photos and attachments (照片/附件): upload, sanitize, store, link to records, serve.

- Blobs live behind a small interface (`BlobStore`: put / open / delete) whose local
  implementation writes under STORAGE_DIR, sharded by the sha256 of the content
  (`ab/cd/abcd….jpg`): the same bytes are stored once, whoever uploads them. An S3 store can
  replace it later (set `app.extensions["blob_store"]`).
- An upload's type is decided by its content (magic bytes, then a full decode with Pillow),
  never by its name or the client's content type: JPEG, PNG, WebP, and HEIC/HEIF when
  pillow-heif is installed. Everything else is a 415.
- Every image is decoded and re-encoded from its pixels alone (orientation applied first),
  so no EXIF (GPS above all), XMP, comment or other metadata survives; only the ICC colour
  profile is kept. HEIC is stored as JPEG. A JPEG thumbnail of at most 320 px is made too.
- An attachment belongs to one record (`object_type`, `object_id`), linked at upload or
  later. Who may see the record may see its attachments: domain packages register a checker
  per object type in `object_access` (server/ never imports grid/). An unlinked upload is
  visible to its uploader only.
- Uploads are idempotent by client_uuid (server.idempotency) and de-duplicated per uploader
  by the sha256 of the stored image. Uploads and links are audited.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import sqlalchemy as sa
from flask import current_app, send_file
from flask.views import MethodView
from marshmallow import ValidationError, fields, validate, validates_schema
from PIL import Image, ImageOps
from sqlalchemy.orm import Mapped, Session, mapped_column
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict, FileStorage
from werkzeug.exceptions import HTTPException

from server import audit, db, idempotency
from server.api import Blueprint, Schema
from server.auth.actor import Actor, current_actor, login_required
from server.db import Base
from server.errors import Conflict, DomainError, Invalid, NotFound, field_errors

try:  # HEIC/HEIF (iPhones) needs pillow-heif; without it such uploads are a clear 415.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
    HEIF_SUPPORTED = False

log = logging.getLogger("server.storage")

THUMBNAIL_PX = 320
# Decoding cost grows with pixels, not bytes: a small file may unpack into gigabytes. Phone
# cameras stay below 50 MP (48 MP sensors); Pillow's own bomb guard starts at 89 MP.
MAX_PIXELS = 60_000_000
JPEG_QUALITY = 90
THUMBNAIL_QUALITY = 80
CACHE_MAX_AGE_S = 3600
BIGINT_MAX = 2**63 - 1


class PayloadTooLarge(DomainError):
    status = 413


class UnsupportedMediaType(DomainError):
    status = 415


# --- blob stores --------------------------------------------------------------------------

# Images, and the uploads background jobs read (server/jobs.py: ledgers).
_KEY_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.(?:jpg|png|webp|xlsx|csv)$")


def blob_key(sha256: str, ext: str) -> str:
    """Content-addressed key of a blob: sharded by the first two bytes of its sha256."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


class BlobStore(Protocol):
    """Where attachment bytes live. Keys are content-addressed (`blob_key`), so `put` of a
    key that exists may do nothing: the bytes are the same."""

    def put(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary file object; FileNotFoundError when the blob is missing."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; a missing one is not an error."""
        ...


class LocalBlobStore:
    """Blobs as files under a directory (STORAGE_DIR): `<root>/ab/cd/abcd….jpg`.

    Writes go to a temporary file in the target directory, fsynced, then renamed into
    place: a reader never sees half a blob, and two writers of one key both succeed.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")  # noqa: SIM115 - the response closes it

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def blob_store() -> BlobStore:
    """The app's blob store: `app.extensions["blob_store"]` if set (S3 later), else a
    LocalBlobStore on STORAGE_DIR."""
    extensions = current_app.extensions
    if "blob_store" not in extensions:
        extensions["blob_store"] = LocalBlobStore(current_app.config["STORAGE_DIR"])
    return extensions["blob_store"]


# --- the table ----------------------------------------------------------------------------


class Attachment(Base):
    """One uploaded photo: what was stored, by whom, and the record it belongs to."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    # The record it belongs to; both null until it is linked (then linked_at is set).
    object_type: Mapped[str | None] = mapped_column(sa.String(64))
    object_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    uploaded_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"),
                                             nullable=False)
    content_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # as stored
    original_format: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # as sent
    size: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)  # stored bytes
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # of stored bytes
    width: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    height: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    storage_key: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    thumbnail_key: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    linked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_attachments_object", "object_type", "object_id"),
        sa.Index("ix_attachments_uploader_sha256", "uploaded_by", "sha256"),
        sa.CheckConstraint(
            "(object_type IS NULL) = (object_id IS NULL) "
            "AND (object_type IS NULL) = (linked_at IS NULL)",
            name="link_complete",
        ),
    )


# --- who may see what: the hook domain packages fill ---------------------------------------

#: object type → checker(session, actor, object_id) that returns when the actor may see the
#: record and raises (NotFound, as a scoped read does) when not. Domain packages register
#: theirs when imported, e.g. in grid/registry/views.py:
#:     storage.object_access["person"] = lambda s, a, i: service.get_record(s, a, Person, i)
ObjectAccess = Callable[[Session, Actor, int], None]
object_access: dict[str, ObjectAccess] = {}
#: object type → filter(session, actor, attachment) → bool, for records some of whose
#: readers see only some of its attachments (a case's resident view: its public photos).
#: Consulted after the record's checker passed; no filter means every attachment.
attachment_filters: dict[str, Callable[[Session, Actor, Any], bool]] = {}


def check_target(s: Session, actor: Actor, object_type: str, object_id: int,
                 location: str = "json") -> None:
    """The actor may see the record `object_type`/`object_id` (the checker's own error
    otherwise, e.g. 404); an object type nobody registered is a 422."""
    checker = object_access.get(object_type)
    if checker is None:
        known = ", ".join(sorted(object_access)) or "none registered"
        raise Invalid(field_errors("object_type", f"Unknown object type (known: {known}).",
                                   location=location))
    checker(s, actor, object_id)


def _may_see(s: Session, actor: Actor, attachment: Attachment) -> bool:
    if attachment.object_type is None:
        return actor.user_id is not None and attachment.uploaded_by == actor.user_id
    checker = object_access.get(attachment.object_type)
    if checker is None:
        return False
    try:
        checker(s, actor, attachment.object_id)
    except (DomainError, HTTPException) as exc:
        status = getattr(exc, "status", None) or getattr(exc, "code", None)
        if status in (403, 404):
            return False  # the record is hidden from them, and so is the attachment
        raise
    shown = attachment_filters.get(attachment.object_type)
    return shown is None or shown(s, actor, attachment)


# --- images: detect by content, strip metadata, re-encode, thumbnail ------------------------

# ISO BMFF brands of HEIF images coded with HEVC (what pillow-heif's libheif decodes here).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_GENERIC = {b"mif1", b"msf1"}
# Sent format → (stored format, content type, file extension).
_OUTPUT = {
    "JPEG": ("JPEG", "image/jpeg", "jpg"),
    "PNG": ("PNG", "image/png", "png"),
    "WEBP": ("WEBP", "image/webp", "webp"),
    "HEIF": ("JPEG", "image/jpeg", "jpg"),
}
ACCEPTED = "JPEG, PNG, WebP or HEIC"


def sniff(data: bytes) -> str | None:
    """The image format the bytes announce (their magic numbers), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        box_size = int.from_bytes(data[:4], "big")
        major = data[8:12]
        compatible = {data[i:i + 4] for i in range(16, min(box_size, len(data), 64), 4)}
        if major in _HEIF_BRANDS:
            return "HEIF"
        if major in _HEIF_GENERIC and compatible & _HEIF_BRANDS:
            return "HEIF"
    return None


@dataclass(frozen=True)
class Processed:
    """An upload made safe to store: its re-encoded bytes and thumbnail."""

    original_format: str
    data: bytes
    content_type: str
    ext: str
    width: int
    height: int
    thumbnail: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _normalized(img: Image.Image, out_format: str) -> Image.Image:
    """`img` in a mode `out_format` can hold: alpha flattened on white for JPEG."""
    if out_format == "JPEG":
        if _has_alpha(img):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", img.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    keep = ("RGB", "RGBA", "L", "LA") if out_format == "PNG" else ("RGB", "RGBA")
    if img.mode in keep and "transparency" not in img.info:
        return img
    return img.convert("RGBA" if _has_alpha(img) else "RGB")


def _pristine(img: Image.Image) -> Image.Image:
    """The pixels alone: a new image carries no info, EXIF, XMP, comment or palette tricks."""
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    return clean


def _encode(img: Image.Image, out_format: str, icc: bytes | None, quality: int) -> bytes:
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if out_format == "JPEG":
        options.update(quality=quality, optimize=True)
    elif out_format == "WEBP":
        options.update(quality=quality, method=4)
    img.save(out, format=out_format, **options)
    return out.getvalue()


def _colour_family(mode: str) -> str:
    return {"L": "L", "LA": "L", "RGB": "RGB", "RGBA": "RGB"}.get(mode, mode)


def process_image(data: bytes) -> Processed:
    """Check an upload by its content and re-encode it without metadata.

    415 for anything but JPEG/PNG/WebP/HEIC (or HEIC without pillow-heif), 422 for an image
    of such a type that cannot be decoded, 413 for more than MAX_PIXELS pixels.
    """
    if not data:
        raise Invalid(field_errors("file", "The file is empty.", location="form"),
                      message="The file is empty")
    kind = sniff(data)
    if kind is None:
        raise UnsupportedMediaType(
            f"The file is not a {ACCEPTED} image (its content was checked, not its name or "
            "content type)")
    if kind == "HEIF" and not HEIF_SUPPORTED:
        raise UnsupportedMediaType(
            "HEIC/HEIF photos are not supported by this server (pillow-heif is not "
            "installed); send JPEG, PNG or WebP")
    out_format, content_type, ext = _OUTPUT[kind]
    unreadable = f"The file looks like a {kind} image but cannot be decoded (truncated or corrupt)"
    try:
        img = Image.open(io.BytesIO(data), formats=[kind])
        width, height = img.size
    except Exception as exc:  # untrusted input: any decoder failure is the client's
        log.info("undecodable upload", extra={"format": kind, "error": repr(exc)})
        raise Invalid(field_errors("file", unreadable, location="form"),
                      message=unreadable) from None
    if width * height > MAX_PIXELS:
        raise PayloadTooLarge(f"The image is {width}×{height} pixels; the limit is "
                              f"{MAX_PIXELS / 1e6:g} megapixels")
    try:
        img.load()
        icc = img.info.get("icc_profile")
        source_mode = img.mode
        try:
            img = ImageOps.exif_transpose(img)  # keep what the camera meant by "up"
        except Exception:  # malformed EXIF: keep the pixels as stored
            log.info("exif orientation unreadable", extra={"format": kind})
        picture = _pristine(_normalized(img, out_format))
        thumb = _pristine(_normalized(img, "JPEG"))
        thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)

        def profile(mode: str) -> bytes | None:
            # A profile for another colour space (CMYK, grey…) would be wrong: drop it.
            return icc if _colour_family(mode) == _colour_family(source_mode) else None

        stored = _encode(picture, out_format, profile(picture.mode), JPEG_QUALITY)
        thumbnail = _encode(thumb, "JPEG", profile(thumb.mode), THUMBNAIL_QUALITY)
    except Exception as exc:
        log.info("undecodable upload", extra={"format": kind, "error": repr(exc)})
        raise Invalid(field_errors("file", unreadable, location="form"),
                      message=unreadable) from None
    return Processed(kind, stored, content_type, ext, picture.width, picture.height, thumbnail)


# --- service ------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1048576:g} MiB ({n} bytes)" if n >= 1048576 else f"{n} bytes"


def get_attachment(s: Session, actor: Actor, attachment_id: int, *,
                   for_update: bool = False) -> Attachment:
    """The attachment if the actor may see it: the record it is linked to is visible to
    them (its type's checker), or it is unlinked and theirs. 404 otherwise."""
    stmt = sa.select(Attachment).where(Attachment.id == attachment_id)
    attachment = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if attachment is None or not _may_see(s, actor, attachment):
        raise NotFound("No such attachment")
    return attachment


def _link(s: Session, actor: Actor, attachment: Attachment, object_type: str,
          object_id: int) -> None:
    attachment.object_type, attachment.object_id = object_type, object_id
    attachment.linked_at = db.utcnow()
    audit.record(s, actor, "attachment_linked", "attachment", attachment.id,
                 changes={"object_type": [None, object_type], "object_id": [None, object_id]})


def _same_upload(s: Session, actor: Actor, sha256: str,
                 target: tuple[str, int] | None) -> Attachment | None:
    """This uploader's attachment of the same image that this upload may reuse: one linked
    to the same record, else an unlinked one. Serialized per (uploader, image) so that two
    concurrent sends of one photo make one row."""
    s.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
        f"attachment:{actor.user_id}:{sha256}", 0))))
    stmt = sa.select(Attachment).where(Attachment.uploaded_by == actor.user_id,
                                       Attachment.sha256 == sha256)
    unlinked = Attachment.object_type.is_(None)
    if target is None:
        stmt = stmt.where(unlinked)
    else:
        same = sa.and_(Attachment.object_type == target[0], Attachment.object_id == target[1])
        stmt = stmt.where(sa.or_(same, unlinked)).order_by(unlinked.asc())
    return s.scalars(stmt.order_by(Attachment.id).limit(1).with_for_update()).first()


def upload(s: Session, actor: Actor, store: BlobStore, data: bytes, *, max_bytes: int,
           object_type: str | None = None, object_id: int | None = None,
           client_uuid: uuid.UUID | None = None) -> tuple[Attachment, bool]:
    """Store a photo (and link it to a record if one is named). Returns the attachment and
    whether this request created it (False: a replay of its client_uuid, or an identical
    earlier upload reused)."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"A photo may have at most {_size(max_bytes)}; this one has more")
    target = (object_type, object_id) if object_type is not None else None
    if client_uuid is not None:
        payload = {"sha256": hashlib.sha256(data).hexdigest(), "object_type": object_type,
                   "object_id": object_id}
        prior = idempotency.claim(s, client_uuid, actor.user_id, "upload_attachment", payload)
        if prior is not None:
            return get_attachment(s, actor, int(prior[1])), False
    if target is not None:
        check_target(s, actor, *target, location="form")
    image = process_image(data)

    existing = _same_upload(s, actor, image.sha256, target)
    if existing is not None:
        if target is not None and existing.object_type is None:
            _link(s, actor, existing, *target)
        if client_uuid is not None:
            idempotency.complete(s, client_uuid, "attachment", existing.id)
        return existing, False

    key = blob_key(image.sha256, image.ext)
    thumb_key = blob_key(hashlib.sha256(image.thumbnail).hexdigest(), "jpg")
    store.put(key, image.data)
    store.put(thumb_key, image.thumbnail)
    attachment = Attachment(
        uploaded_by=actor.user_id, content_type=image.content_type,
        original_format=image.original_format, size=len(image.data), sha256=image.sha256,
        width=image.width, height=image.height, storage_key=key, thumbnail_key=thumb_key,
    )
    s.add(attachment)
    s.flush()
    audit.record(s, actor, "attachment_uploaded", "attachment", attachment.id, changes={
        "sha256": image.sha256, "content_type": image.content_type, "size": len(image.data),
        "original_format": image.original_format, "sent_bytes": len(data)})
    if target is not None:
        _link(s, actor, attachment, *target)
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, "attachment", attachment.id)
    s.flush()
    return attachment, True


def link(s: Session, actor: Actor, attachment_id: int, object_type: str,
         object_id: int) -> Attachment:
    """Attach an unlinked upload of the actor's to a record they may see. Linking again to
    the same record is harmless; to another one is a 409 (an attachment has one record).

    The target is checked first: a record outside the actor's scope is a 404 whatever the
    attachment, so that nothing about the attachment (its sha256, uploader, size, or the
    record it belongs to) reaches someone who may not see the target. A 409 names the
    attachment's record only because get_attachment established that the actor sees it."""
    check_target(s, actor, object_type, object_id)
    attachment = get_attachment(s, actor, attachment_id, for_update=True)
    if attachment.object_type is not None:
        if (attachment.object_type, attachment.object_id) == (object_type, object_id):
            return attachment
        raise Conflict(
            "This attachment is already linked to another record",
            existing={"object_type": attachment.object_type, "id": attachment.object_id})
    _link(s, actor, attachment, object_type, object_id)
    s.flush()
    return attachment


def list_for(s: Session, actor: Actor, object_type: str, object_id: int,
             page: Any) -> list[Attachment]:
    """The attachments of a record the actor may see, oldest first."""
    check_target(s, actor, object_type, object_id, location="query")
    stmt = (sa.select(Attachment)
            .where(Attachment.object_type == object_type, Attachment.object_id == object_id)
            .order_by(Attachment.id))
    return db.paginate(s, stmt, page)


# --- HTTP ---------------------------------------------------------------------------------


class _FormAndFilesParser(FlaskParser):
    """multipart/form-data: the `form` location sees the file parts beside the fields."""

    def load_form(self, req, schema):
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class _UploadBlueprint(Blueprint):
    ARGUMENTS_PARSER = _FormAndFilesParser()


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
