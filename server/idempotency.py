"""Client-UUID idempotency for creates from phones (ARCHITECTURE §3).

A phone on a flaky network may send the same create twice, late, or after a retry. Each
create carries a client UUID; the first one is remembered with a hash of its content and
the object it made. The same UUID with the same content returns that object again; with
different content it is a 409 (the phone reused a UUID for something else).

One answer rule for every create that takes a client UUID (registry records, visits,
cases, bookings, service requests, broadcasts, sync push items): a new record answers 201;
a replay answers 200 with the original record and `Idempotent-Replay: true`
(`create_answer`, documented by `document_replay`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db import Base
from server.errors import Conflict

REPLAY_HEADER = "Idempotent-Replay"


def create_answer(created: bool, headers: dict[str, str] | None = None
                  ) -> tuple[int, dict[str, str]]:
    """Status and headers of a create's answer: 201 for a new record, 200 and
    `Idempotent-Replay: true` for a replay (the body is the original record either way)."""
    headers = dict(headers or {})
    if created:
        return 201, headers
    headers[REPLAY_HEADER] = "true"
    return 200, headers


def document_replay(blp: Any, schema: Any) -> Callable:
    """The OpenAPI entry of a create's replay answer (beside its documented 201)."""
    return blp.alt_response(
        200, schema=schema, success=True,
        description="A replay of the same client_uuid with the same content: the original "
                    "record, with the header Idempotent-Replay: true",
        headers={REPLAY_HEADER: {"description": "true: this answer is a replay",
                                 "schema": {"type": "string", "enum": ["true"]}}})


class ClientRequest(Base):
    __tablename__ = "client_requests"

    client_uuid: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    operation: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    object_type: Mapped[str | None] = mapped_column(sa.String(64))
    object_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def content_hash(payload: Any) -> str:
    """A stable hash of a request's content (key order and number formatting ignored)."""
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def unclaimed(client_uuid: Any) -> sa.ColumnElement[bool]:
    """SQL: no claim of this client UUID is visible (true for NULL: no UUID sent). Lets a
    create draw its id from a sequence only for a UUID not seen yet, in the same statement
    that reads what it needs: a replay then costs no number (only two copies of one request
    racing, both ahead of either's commit, can still spend one)."""
    return ~sa.exists().where(ClientRequest.client_uuid == client_uuid)


def claim(s: Session, client_uuid: uuid.UUID, actor_id: int | None, operation: str,
          payload: Any, result: tuple[str, Any] | None = None) -> tuple[str, str] | None:
    """Claim a client UUID for this request.

    Returns None when the UUID is new (go ahead, then call `complete`), or the
    (object_type, object_id) of the original result when this is a replay of the same
    content. Raises 409 when the UUID was used for different content. Two concurrent
    requests with one UUID serialize on the row: the second sees the first's result.

    `result`, the (object_type, object_id) this request will create when the caller knows
    it already (an id drawn from the sequence), is stored with the claim: no `complete`
    needed. The claim row commits or rolls back with the object, so a stored result always
    names an object that exists.
    """
    digest = content_hash(payload)
    inserted = s.execute(
        insert(ClientRequest)
        .values(client_uuid=client_uuid, actor_id=actor_id, operation=operation,
                content_hash=digest,
                **({"object_type": result[0], "object_id": str(result[1])} if result else {}))
        .on_conflict_do_nothing(index_elements=["client_uuid"])
        .returning(ClientRequest.client_uuid)
    ).first()
    if inserted is not None:
        return None
    prior = s.scalars(
        sa.select(ClientRequest).where(ClientRequest.client_uuid == client_uuid)
        .with_for_update()
    ).one()
    if prior.operation != operation or prior.content_hash != digest or prior.object_id is None:
        raise Conflict(
            "This client_uuid was already used for different content",
            errors={"json": {"client_uuid": ["Already used for a different request."]}},
            existing={"object_type": prior.object_type, "id": prior.object_id},
        )
    return prior.object_type, prior.object_id


def complete(s: Session, client_uuid: uuid.UUID, object_type: str, object_id: Any) -> None:
    s.execute(sa.update(ClientRequest).where(ClientRequest.client_uuid == client_uuid)
              .values(object_type=object_type, object_id=str(object_id)))
