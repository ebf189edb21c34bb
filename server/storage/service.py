"""Attachments as records (附件): upload, link, read, and who may see what.

- An attachment belongs to one record (`object_type`, `object_id`), linked at upload or
  later. Who may see the record may see its attachments: domain packages register a checker
  per object type in `object_access` at wiring (server/ never imports grid/). An unlinked upload is
  visible to its uploader only.
- Uploads are idempotent by client_uuid (server.idempotency) and de-duplicated per uploader
  by the sha256 of the stored image. Uploads and links are audited.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from server import audit, db, idempotency
from server.auth.actor import Actor
from server.errors import Conflict, DomainError, Invalid, NotFound, field_errors
from server.storage.blobs import BlobStore, blob_key
from server.storage.images import PayloadTooLarge, process_image
from server.storage.models import Attachment

#: object type → checker(session, actor, object_id) that returns when the actor may see the
#: record and raises (NotFound, as a scoped read does) when not. Domain packages register
#: theirs at wiring, e.g. grid/registry/wiring.py:
#:     registry.object_access("person", lambda s, a, i: scope.get_record(s, a, Person, i))
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

