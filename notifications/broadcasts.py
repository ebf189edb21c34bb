"""Broadcasts (通知公告/预警/紧急): an alert or notice to everyone with a membership in an
area subtree of the sender's scope.

The request writes, in its transaction: the broadcast, its area inbox row (in every covered
inbox at once: fan-out on read, notifications.inbox) and one topic message per provider
and language (notifications.topics): a district of a million is a handful of requests.
The worker then walks the members (`walk`) to count them and, for an emergency when SMS is
configured, to queue an SMS to each one who has a phone number but no active device.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications import topics
from notifications.hierarchy import areas
from notifications.models import BROADCAST_LEVELS, PROVIDERS, Broadcast, Notification
from server import audit, clock, db, idempotency, ratelimit
from server.auth.actor import Actor
from server.errors import NotFound


def broadcast_kind(level: str) -> str:
    assert level in BROADCAST_LEVELS
    return f"broadcast.{level}"


def _broadcast_area(s: Session, actor: Actor, area_id: int):
    area = areas().area_in_scope(s, actor, area_id)
    if area is None:
        raise NotFound("No such area")
    return area


# Who hears of a new broadcast, in its transaction: (session, broadcast). Filled at wiring
# (grid/exchange/wiring.py: webhooks' broadcast.sent); notifications never imports grid.
BROADCAST_LISTENERS: list[Callable[[Session, Broadcast], None]] = []


def create_broadcast(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
                     limit: int, window_s: int) -> tuple[Broadcast, bool]:
    """Send an alert or notice to everyone with a membership in an area subtree of one's
    own scope (404 outside it): in their inboxes at once, on their phones through the
    area's topics. Idempotent by client_uuid; at most `limit` per sender per `window_s`
    (429 with Retry-After). Returns the broadcast and whether this request created it."""
    actor.require("notice:broadcast")
    area = _broadcast_area(s, actor, data["area_id"])
    payload = {k: data.get(k) for k in ("area_id", "level", "title", "text", "link")}
    if client_uuid is not None and s.get(idempotency.ClientRequest, client_uuid) is not None:
        original = idempotency.claim(s, client_uuid, actor.user_id, "broadcast", payload)
        return s.get(Broadcast, int(original[1])), False
    # A replay above costs nothing; a new broadcast counts against the sender's limit.
    ratelimit.hit(s, f"broadcast:user:{actor.user_id}", limit, window_s,
                  "Too many broadcasts; try again later")
    if client_uuid is not None:
        original = idempotency.claim(s, client_uuid, actor.user_id, "broadcast", payload)
        if original is not None:  # a concurrent twin won
            return s.get(Broadcast, int(original[1])), False
    broadcast = Broadcast(sender_id=actor.user_id, area_id=area.id, level=data["level"],
                          title=data["title"], text=data["text"], link=data.get("link"))
    s.add(broadcast)
    s.flush()
    row = Notification(area_id=area.id, kind=broadcast_kind(broadcast.level),
                       data={"broadcast_id": broadcast.id, "level": broadcast.level,
                             "title": broadcast.title, "text": broadcast.text,
                             "link": broadcast.link, "area_id": area.id},
                       urgent=broadcast.level == "emergency",
                       collapse_key=f"broadcast:{broadcast.id}")
    s.add(row)
    s.flush()
    broadcast.notification_id = row.id
    topics.queue_broadcast(s, list(PROVIDERS), row.id, area.code, broadcast.level)
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, "broadcast", broadcast.id)
    audit.record(s, actor, "broadcast_sent", "broadcast", broadcast.id,
                 changes={"area_id": area.id, "area_code": area.code, "level": broadcast.level,
                          "title": broadcast.title})
    for listener in BROADCAST_LISTENERS:
        listener(s, broadcast)
    return broadcast, True


def _broadcasts_in_scope(actor: Actor) -> sa.Select:
    actor.require("notice:broadcast")
    return sa.select(Broadcast).where(areas().in_scope(Broadcast.area_id, actor))


def list_broadcasts(s: Session, actor: Actor, filters: dict, page: Any) -> list[Broadcast]:
    """Broadcasts to areas of one's scope, newest first."""
    stmt = _broadcasts_in_scope(actor).order_by(Broadcast.id.desc())
    for name in ("area_id", "level", "state"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Broadcast, name) == filters[name])
    return db.paginate(s, stmt, page)


def get_broadcast(s: Session, actor: Actor, broadcast_id: int) -> Broadcast:
    broadcast = s.scalars(_broadcasts_in_scope(actor).where(Broadcast.id == broadcast_id)
                          ).first()
    if broadcast is None:
        raise NotFound("No such broadcast")
    return broadcast


# --- the worker's walk over the members -------------------------------------------------------

# Members without an active device who have a phone: their SMS, once per broadcast.
_SMS = sa.text("""
INSERT INTO sms_outbox (notification_id, user_id, due_at)
SELECT :notification_id, u.id, :now FROM users u
WHERE u.id = ANY(:users) AND u.phone_enc IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM devices d WHERE d.user_id = u.id AND d.disabled_at IS NULL
        AND (d.session_id IS NULL OR EXISTS (
            SELECT 1 FROM auth_sessions a WHERE a.id = d.session_id AND a.revoked_at IS NULL)))
ON CONFLICT ON CONSTRAINT uq_sms_once DO NOTHING
""")


def walk(s: Session, sms: bool, batch_size: int = 5000, budget_s: float = 20.0,
         now: datetime | None = None) -> int:
    """Walk pending broadcasts' members, `batch_size` users per transaction in user-id
    order, counting them (`recipients`) and, for an emergency when `sms` is on, queueing
    SMS to those without an active device; the cursor moves with its batch, so a crash
    repeats nothing. Returns the users walked."""
    started, reached = time.monotonic(), 0
    while True:
        b = s.scalars(sa.select(Broadcast).where(Broadcast.state == "pending")
                      .order_by(Broadcast.id).limit(1).with_for_update(skip_locked=True)).first()
        if b is None:
            break
        users = areas().members_below(s, b.area_id, b.cursor_user_id, batch_size)
        if users:
            if sms and b.level == "emergency" and b.notification_id is not None:
                s.execute(_SMS, {"notification_id": b.notification_id, "users": users,
                                 "now": now or clock.now()})
            b.cursor_user_id = users[-1]
            b.recipients += len(users)
            reached += len(users)
        if len(users) < batch_size:
            b.state, b.done_at = "done", now or clock.now()
        s.commit()
        if time.monotonic() - started >= budget_s:
            break
    return reached
