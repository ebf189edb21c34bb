"""The inbox (站内消息): one's own notifications and the broadcasts to one's areas, in one
list in id order (both kinds of row share the notifications table and its ids).

Broadcasts are fanned out on read: an area's row is shown to everyone whose memberships it
reaches (hierarchy.areas_reaching), from the moment it is written, without a row per
person; reading it writes that person's `NotificationRead` mark. A broadcast older than
one's account is not shown (a new resident does not inherit last year's notices).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from notifications.hierarchy import areas
from notifications.models import Notification, NotificationRead
from notifications.service import render
from server import clock, db
from server.auth.actor import Actor
from server.auth.models import User
from server.errors import NotFound


def item(n: Notification, read_at: datetime | None, locale: str | None) -> dict:
    title, body = render(n.kind, n.data, locale)
    return {"id": n.id, "kind": n.kind, "title": title, "body": body, "data": n.data,
            "urgent": n.urgent, "collapse_key": n.collapse_key, "created_at": n.created_at,
            "read_at": read_at, "read": read_at is not None}


def _area_rows(user_id: int) -> sa.ColumnElement[bool]:
    """The broadcasts that reach the user (rows of their areas, since their account)."""
    since = sa.select(User.created_at).where(User.id == user_id).scalar_subquery()
    return sa.and_(Notification.user_id.is_(None),
                   Notification.area_id.in_(areas().areas_reaching(user_id)),
                   Notification.created_at >= since)


def _mine(user_id: int) -> tuple[sa.Select, Any]:
    read = sa.orm.aliased(NotificationRead)
    read_at = sa.func.coalesce(Notification.read_at, read.read_at)
    stmt = (sa.select(Notification, read_at.label("read_at"))
            .outerjoin(read, sa.and_(read.notification_id == Notification.id,
                                     read.user_id == user_id, Notification.user_id.is_(None)))
            .where(sa.or_(Notification.user_id == user_id, _area_rows(user_id))))
    return stmt, read_at


def list_inbox(s: Session, actor: Actor, filters: dict, page: Any,
               locale: str | None) -> list[dict]:
    """One's notifications and broadcasts, newest first, in `locale`."""
    stmt, read_at = _mine(actor.user_id)
    stmt = stmt.order_by(Notification.id.desc())
    if filters.get("unread"):
        stmt = stmt.where(read_at.is_(None))
    elif filters.get("unread") is False:
        stmt = stmt.where(read_at.is_not(None))
    if filters.get("kind"):
        stmt = stmt.where(Notification.kind == filters["kind"])
    return [item(n, r, locale) for n, r in db.paginate(s, stmt, page)]


def unread_count(s: Session, actor: Actor) -> int:
    own = (sa.select(sa.func.count()).select_from(Notification)
           .where(Notification.user_id == actor.user_id, Notification.read_at.is_(None))
           .scalar_subquery())
    broadcasts = (sa.select(sa.func.count()).select_from(Notification)
                  .where(_area_rows(actor.user_id), ~sa.exists().where(
                      NotificationRead.notification_id == Notification.id,
                      NotificationRead.user_id == actor.user_id))
                  .scalar_subquery())
    return s.scalar(sa.select(own + broadcasts)) or 0


def mark_read(s: Session, actor: Actor, notification_id: int) -> tuple[Notification, datetime]:
    """Mark one of one's notifications or broadcasts read (again is harmless: the first
    time is kept). Returns it and when it was read."""
    stmt, _ = _mine(actor.user_id)
    row = s.execute(stmt.where(Notification.id == notification_id)).first()
    if row is None:
        raise NotFound("No such notification")
    n, read_at = row
    if read_at is not None:
        return n, read_at
    now = clock.now()
    if n.user_id is not None:
        s.execute(sa.update(Notification).where(Notification.id == n.id,
                                                Notification.read_at.is_(None))
                  .values(read_at=now))
    else:
        s.execute(pg_insert(NotificationRead).values(
            user_id=actor.user_id, notification_id=n.id, read_at=now).on_conflict_do_nothing())
    return n, now


def mark_all_read(s: Session, actor: Actor, up_to_id: int | None = None) -> int:
    """Mark every unread notification and broadcast read (or those up to `up_to_id`: what
    the app has shown, so that one arriving meanwhile stays unread). Returns how many."""
    now = clock.now()
    own = sa.update(Notification).where(Notification.user_id == actor.user_id,
                                        Notification.read_at.is_(None))
    unread = (sa.select(sa.literal(actor.user_id), Notification.id, sa.literal(now))
              .where(_area_rows(actor.user_id)))
    if up_to_id is not None:
        own = own.where(Notification.id <= up_to_id)
        unread = unread.where(Notification.id <= up_to_id)
    marked = s.execute(own.values(read_at=now)).rowcount
    marks = pg_insert(NotificationRead).from_select(
        ["user_id", "notification_id", "read_at"], unread).on_conflict_do_nothing()
    return marked + s.execute(marks).rowcount
