"""Notifications (消息通知): `notify()` for other modules, templates, the inbox, devices,
push preferences, area broadcasts and the dead letters.

Templates are declared by the module that owns the kind (grid.cases declares the case
kinds; its wiring.py registers them), so each message's words live beside the rule that sends it.

`notify()` writes an inbox row and, unless the recipient muted the kind, an outbox row per
recipient in the caller's transaction (a rolled-back change sends nothing); the worker
(notifications.worker) pushes the outbox to the recipients' devices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from notifications import topics
from notifications.models import (
    Device,
    Notification,
    OutboxMessage,
    Preference,
)
from server import audit, clock, db
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, NotFound, field_errors

# --- templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """The words of one kind of notification: {locale: (title, body)} with str.format
    placeholders filled from the notification's data. `urgent` pushes ignore quiet hours."""

    texts: dict[str, tuple[str, str]]
    urgent: bool = False


TEMPLATES: dict[str, Template] = {}
DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")


class NoticeTemplate(NamedTuple):
    """A kind of notice and its texts, as a package declares it; registered at wiring."""

    kind: str
    zh: tuple[str, str]
    en: tuple[str, str]
    urgent: bool = False


def register_template(kind: str, zh: tuple[str, str], en: tuple[str, str], *,
                      urgent: bool = False) -> None:
    TEMPLATES[kind] = Template({"zh-CN": zh, "en": en}, urgent=urgent)


def register_templates(templates: Iterable[NoticeTemplate]) -> None:
    for t in templates:
        register_template(t.kind, t.zh, t.en, urgent=t.urgent)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(kind: str, data: dict, locale: str | None = None) -> tuple[str, str]:
    """(title, body) of a notification in a locale (zh-CN when the locale is unknown)."""
    template = TEMPLATES.get(kind)
    if template is None:
        return kind, ""
    lang = locale if locale in template.texts else (
        "en" if locale and locale.startswith("en") else DEFAULT_LOCALE)
    title, body = template.texts[lang]
    values = _Blank({k: ("" if v is None else v) for k, v in data.items()})
    return title.format_map(values), body.format_map(values)


# Broadcasts are kinds of their own, so a resident can mute notices but not warnings;
# emergencies are urgent (they ignore mutes and quiet hours).
NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("broadcast.info", zh=("【通知】{title}", "{text}"),
                      en=("[Notice] {title}", "{text}")),
    NoticeTemplate("broadcast.warning", zh=("【预警】{title}", "{text}"),
                      en=("[Warning] {title}", "{text}")),
    NoticeTemplate("broadcast.emergency", zh=("【紧急】{title}", "{text}"),
                      en=("[Emergency] {title}", "{text}"), urgent=True),
)


# --- notify --------------------------------------------------------------------------------


def quiet_until(now: datetime, start: time | None, end: time | None,
                zone: ZoneInfo) -> datetime | None:
    """When the quiet hours (local start–end, e.g. 22:00–07:00 across midnight) around `now`
    end, or None when `now` is not in them (or none are set, or start == end)."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if start < end:
        quiet, end_day = start <= t < end, local.date()
    else:  # across midnight: quiet from start to 24:00 and from 00:00 to end
        quiet = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not quiet:
        return None
    # fold/gap safe: build the local wall time, then let zoneinfo place it
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


def _zone(name: str | None) -> ZoneInfo:
    from flask import current_app, has_app_context

    default = current_app.config["DEFAULT_TIMEZONE"] if has_app_context() else "Asia/Shanghai"
    return ZoneInfo(name or default)


# One round trip in the common case: the inbox rows, and the outbox rows of recipients
# without preferences (or of an urgent notification), in one statement; it returns the
# preferences of the others, whose outbox rows Python then writes.
_WRITE = sa.text("""
WITH n AS (
    INSERT INTO notifications (user_id, kind, data, urgent, collapse_key)
    SELECT u, :kind, CAST(:data AS jsonb), :urgent, :collapse_key
    FROM unnest(CAST(:users AS bigint[])) AS u ORDER BY u
    RETURNING id, user_id
), o AS (
    INSERT INTO outbox (notification_id, user_id, due_at)
    SELECT n.id, n.user_id, :now FROM n
    WHERE :urgent OR NOT EXISTS (
        SELECT 1 FROM notification_preferences p WHERE p.user_id = n.user_id)
)
SELECT n.id, n.user_id, p.user_id IS NOT NULL AND NOT :urgent AS has_preferences,
       p.muted_kinds, p.quiet_start, p.quiet_end, p.timezone
FROM n LEFT JOIN notification_preferences p ON p.user_id = n.user_id
ORDER BY n.user_id
""")


def _write(s: Session, users: list[int], kind: str, data: dict, urgent: bool,
           collapse_key: str | None, now: datetime) -> list[int]:
    """Inbox rows for `users` (sorted, distinct) and their outbox rows, preferences applied:
    a muted kind gets no push, quiet hours delay a non-urgent one to their end."""
    rows = s.execute(_WRITE, {"users": users, "kind": kind, "data": json.dumps(data),
                              "urgent": urgent, "collapse_key": collapse_key, "now": now}).all()
    later = []
    for r in rows:
        if not r.has_preferences or kind in r.muted_kinds:
            continue  # queued above, or muted: inbox only
        due = quiet_until(now, r.quiet_start, r.quiet_end, _zone(r.timezone)) or now
        later.append({"notification_id": r.id, "user_id": r.user_id, "due_at": due})
    if later:
        s.execute(sa.insert(OutboxMessage), later)
    return [r.id for r in rows]


def notify(s: Session, recipients: Iterable[int | None], kind: str, data: dict, *,
           urgent: bool | None = None, collapse_key: str | None = None) -> list[int]:
    """Tell each recipient (user ids; None and repeats are skipped) about something: an
    inbox row and an outbox row each, in the caller's transaction. Returns the inbox ids.

    `collapse_key` names a thread (e.g. "case:42"): a newer push of it replaces an older one
    on the phone. Urgent ones (the template's default unless given) ignore mutes and quiet
    hours."""
    users = sorted({r for r in recipients if r is not None})
    if not users:
        return []
    if urgent is None:
        urgent = kind in TEMPLATES and TEMPLATES[kind].urgent
    return _write(s, users, kind, data, urgent, collapse_key, clock.now())


def _write_rows(s: Session, rows: list[dict], now: datetime) -> list[int]:
    """Inbox rows and their outbox rows in two statements, preferences applied: a muted
    kind gets no push, quiet hours delay a non-urgent one to their end."""
    ids = list(s.scalars(
        sa.insert(Notification).returning(Notification.id, sort_by_parameter_order=True),
        rows))
    calm = {r["user_id"] for r in rows if not r["urgent"]}
    prefs = {p.user_id: p for p in s.execute(
        sa.select(Preference.user_id, Preference.muted_kinds, Preference.quiet_start,
                  Preference.quiet_end, Preference.timezone)
        .where(Preference.user_id.in_(calm)))} if calm else {}
    outbox = []
    for notification_id, row in zip(ids, rows, strict=True):
        due = now
        pref = None if row["urgent"] else prefs.get(row["user_id"])
        if pref is not None:
            if row["kind"] in pref.muted_kinds:
                continue  # inbox only
            due = quiet_until(now, pref.quiet_start, pref.quiet_end, _zone(pref.timezone)) or now
        outbox.append({"notification_id": notification_id, "user_id": row["user_id"],
                       "due_at": due})
    if outbox:
        s.execute(sa.insert(OutboxMessage), outbox)
    return ids


def notify_each(s: Session, messages: Iterable[tuple[Iterable[int | None], str, dict,
                                                      str | None]]) -> int:
    """Many notifications at once — (recipients, kind, data, collapse_key) each — in two
    statements (the sweep escalates thousands of cases in one run). Returns the inbox rows."""
    rows = []
    for recipients, kind, data, collapse_key in messages:
        urgent = kind in TEMPLATES and TEMPLATES[kind].urgent
        rows += [{"user_id": u, "kind": kind, "data": data, "urgent": urgent,
                  "collapse_key": collapse_key}
                 for u in sorted({r for r in recipients if r is not None})]
    return len(_write_rows(s, rows, clock.now())) if rows else 0


# --- devices -------------------------------------------------------------------------------


def register_device(s: Session, actor: Actor, data: dict) -> tuple[Device, bool]:
    """Register (or refresh) this phone's push token, with its provider (fcm default, hms),
    for the caller's current login, and subscribe it to the topics of the caller's areas.
    A token known under another account moves to this one (a shared phone changed hands)
    and leaves that account's topics; a token a provider had disabled is enabled again.
    Returns (device, created)."""
    now = clock.now()
    previous = s.scalar(sa.select(Device.user_id).where(Device.token == data["token"]))
    values = {"user_id": actor.user_id, "session_id": actor.session_id,
              "platform": data["platform"], "provider": data.get("provider") or "fcm",
              "app_version": data.get("app_version"),
              "locale": data.get("locale") or DEFAULT_LOCALE, "last_seen_at": now,
              "disabled_at": None, "disabled_reason": None}
    stmt = pg_insert(Device).values(token=data["token"], **values)
    stmt = stmt.on_conflict_do_update(index_elements=[Device.token], set_=values)
    row = s.execute(stmt.returning(Device.id, sa.literal_column("xmax = 0").label("created"))
                    ).one()
    if previous is not None and previous != actor.user_id:
        topics.leave(s, [row.id])  # the old account's areas are not the new one's
    topics.refresh(s, [actor.user_id])
    device = s.get(Device, row.id, populate_existing=True)
    return device, bool(row.created)


def list_devices(s: Session, actor: Actor) -> list[Device]:
    return list(s.scalars(sa.select(Device).where(Device.user_id == actor.user_id)
                          .order_by(Device.id)))


def remove_device(s: Session, actor: Actor, token: str) -> None:
    """Forget one of one's devices (the app calls it at logout; the token of someone else
    is not found). It is unsubscribed from its topics first."""
    device_id = s.scalar(sa.select(Device.id).where(Device.token == token,
                                                    Device.user_id == actor.user_id))
    if device_id is None:
        raise NotFound("No such device")
    topics.leave(s, [device_id])
    s.execute(sa.delete(Device).where(Device.id == device_id))


# --- preferences ---------------------------------------------------------------------------


def get_preferences(s: Session, actor: Actor) -> dict:
    pref = s.get(Preference, actor.user_id)
    return _preferences_dict(pref)


def _preferences_dict(pref: Preference | None) -> dict:
    from flask import current_app

    default_zone = current_app.config["DEFAULT_TIMEZONE"]
    if pref is None:
        return {"muted_kinds": [], "quiet_hours": None, "timezone": default_zone}
    quiet = None
    if pref.quiet_start is not None:
        quiet = {"start": pref.quiet_start.strftime("%H:%M"),
                 "end": pref.quiet_end.strftime("%H:%M")}
    return {"muted_kinds": sorted(pref.muted_kinds), "quiet_hours": quiet,
            "timezone": pref.timezone or default_zone}


def set_preferences(s: Session, actor: Actor, data: dict) -> dict:
    """Replace one's push settings: muted kinds, quiet hours (None: none) and their zone."""
    zone = data.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(zone)
        except Exception:  # noqa: BLE001 - ZoneInfo raises several kinds for odd names
            raise Invalid(field_errors("timezone", "Not a known IANA time zone.")) from None
    quiet = data.get("quiet_hours")
    values = {"muted_kinds": sorted(set(data.get("muted_kinds") or [])),
              "quiet_start": time.fromisoformat(quiet["start"]) if quiet else None,
              "quiet_end": time.fromisoformat(quiet["end"]) if quiet else None,
              "timezone": zone, "updated_at": clock.now()}
    stmt = pg_insert(Preference).values(user_id=actor.user_id, **values)
    s.execute(stmt.on_conflict_do_update(index_elements=[Preference.user_id], set_=values))
    topics.refresh(s, [actor.user_id])  # a muted level's topics are left, an unmuted joined
    return _preferences_dict(s.get(Preference, actor.user_id, populate_existing=True))


# --- the outbox for administrators (死信) ---------------------------------------------------


def list_outbox(s: Session, actor: Actor, filters: dict, page: Any) -> list:
    """Outbox rows with their notification's kind: by default the failed and dead ones."""
    actor.require("notification:admin")
    stmt = (sa.select(OutboxMessage, Notification.kind)
            .join(Notification, Notification.id == OutboxMessage.notification_id)
            .order_by(OutboxMessage.id.desc()))
    states = [filters["state"]] if filters.get("state") else ["failed", "dead"]
    stmt = stmt.where(OutboxMessage.state.in_(states))
    if filters.get("user_id") is not None:
        stmt = stmt.where(OutboxMessage.user_id == filters["user_id"])
    return [_outbox_dict(row, kind) for row, kind in db.paginate(s, stmt, page)]


def _outbox_dict(row: OutboxMessage, kind: str) -> dict:
    return {c: getattr(row, c) for c in (
        "id", "notification_id", "user_id", "state", "attempts", "due_at", "claimed_until",
        "last_error", "note", "created_at", "sent_at")} | {"kind": kind}


def requeue(s: Session, actor: Actor, outbox_id: int) -> dict:
    """Send a failed or dead row again, to every active device, from a fresh count of
    attempts."""
    actor.require("notification:admin")
    row = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.id == outbox_id)
                    .with_for_update()).first()
    if row is None:
        raise NotFound("No such outbox row")
    if row.state not in ("failed", "dead"):
        raise Conflict(f"A {row.state} row cannot be requeued", allowed=[])
    previous = row.state
    row.state, row.attempts, row.due_at = "pending", 0, clock.now()
    row.claimed_until = row.claim_token = None
    # Every active device again, the one that refused it included (a phone that already
    # got it gets the same collapse key: the push replaces itself).
    row.done_device_ids = []
    row.note = f"requeued from {previous}"
    audit.record(s, actor, "outbox_requeued", "outbox", row.id,
                 changes={"state": [previous, "pending"]})
    s.flush()
    kind = s.scalar(sa.select(Notification.kind).where(Notification.id == row.notification_id))
    return _outbox_dict(row, kind)
