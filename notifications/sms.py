"""The SMS queue (短信): urgent broadcasts to people without the app, sent by the worker.

Rows name a person and a notification, never a number: the worker reads the person's
encrypted phone, decrypts it here (and only here) just before the request, and never logs
it. Caps: at most `per_number_daily` SMS to one person in 24 hours (the rest fail with a
note: a person is not flooded), and at most `daily_cap` a local day for the account (the
rest wait for midnight). The template (approved in advance, as China requires) is
configuration; the broadcast's title and text fill its `${title}` and `${text}`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications import leases
from notifications.models import Notification, SmsMessage
from notifications.providers import setting
from notifications.providers.sms import SmsProvider
from server import clock, pii
from server.auth.models import User
from server.auth.service import PHONE_FIELD


@dataclass(frozen=True)
class SmsSettings:
    template: str
    per_number_daily: int = 3
    daily_cap: int = 500_000
    variable_max: int = 35  # characters a template variable may hold
    batch_size: int = 1000
    lease_s: float = 120.0
    max_attempts: int = 8
    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    timezone: str = "Asia/Shanghai"

    @classmethod
    def from_config(cls, config: Any) -> SmsSettings:
        return cls(template=setting(config, "SMS_BROADCAST_TEMPLATE", ""),
                   per_number_daily=setting(config, "SMS_PER_NUMBER_DAILY", 3),
                   daily_cap=setting(config, "SMS_DAILY_CAP", 500_000),
                   max_attempts=setting(config, "NOTIFY_MAX_ATTEMPTS", 8),
                   backoff_base_s=setting(config, "NOTIFY_BACKOFF_BASE_S", 10),
                   backoff_max_s=setting(config, "NOTIFY_BACKOFF_MAX_S", 3600),
                   timezone=setting(config, "DEFAULT_TIMEZONE", "Asia/Shanghai"))


def _midnight(now: datetime, zone: str) -> tuple[datetime, datetime]:
    local = now.astimezone(ZoneInfo(zone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=1)).astimezone(ZoneInfo(zone))


def params_of(n: Any, limit: int) -> dict[str, str]:
    return {"title": str(n.data.get("title") or "")[:limit],
            "text": str(n.data.get("text") or "")[:limit]}


def run(s: Session, provider: SmsProvider, settings: SmsSettings,
        now: datetime | None = None) -> Counter:
    """Claim due SMS, apply the caps, send them (≤ provider.max_numbers a request, one
    request per notification), record them; returns counts by outcome."""
    from notifications.worker import backoff_s

    fixed, now = now, now or clock.now()
    token, rows = leases.claim(s, "sms_outbox", settings.batch_size, settings.lease_s, now,
                               "t.id, t.notification_id, t.user_id, t.attempts")
    if not rows:
        s.commit()
        return Counter()
    users = list({r.user_id for r in rows})
    phones = dict(s.execute(sa.select(User.id, User.phone_enc).where(User.id.in_(users))).all())
    recent = dict(s.execute(
        sa.select(SmsMessage.user_id, sa.func.count()).where(
            SmsMessage.user_id.in_(users), SmsMessage.state == "sent",
            SmsMessage.sent_at > now - timedelta(days=1)).group_by(SmsMessage.user_id)).all())
    day_start, tomorrow = _midnight(now, settings.timezone)
    allowance = settings.daily_cap - (s.scalar(sa.select(sa.func.count()).where(
        SmsMessage.state == "sent", SmsMessage.sent_at >= day_start)) or 0)
    notes = {n.id: n for n in s.scalars(sa.select(Notification).where(
        Notification.id.in_({r.notification_id for r in rows})))}
    s.commit()
    results, groups = [], defaultdict(list)
    for r in rows:
        if not phones.get(r.user_id):
            results.append(leases.result(r.id, "failed", note="no phone number"))
        elif recent.get(r.user_id, 0) >= settings.per_number_daily:
            results.append(leases.result(r.id, "failed", note="per-number cap reached"))
        elif allowance <= 0:
            results.append(leases.result(r.id, "pending", note="daily cap reached",
                                         delay_s=(tomorrow - now).total_seconds()))
        else:
            allowance -= 1
            recent[r.user_id] = recent.get(r.user_id, 0) + 1
            groups[r.notification_id].append(r)
    for notification_id, group in groups.items():
        numbers = [pii.decrypt(phones[r.user_id], PHONE_FIELD) for r in group]
        outcomes = provider.send(numbers, settings.template,
                                 params_of(notes[notification_id], settings.variable_max))
        del numbers
        for r, o in zip(group, outcomes, strict=True):
            results.append(_settle(r, o, settings, backoff_s))
    leases.record(s, "sms_outbox", token, results, fixed or clock.now())
    s.commit()
    return Counter(r["state"] for r in results)


def _settle(row: Any, outcome: Any, settings: SmsSettings, backoff: Any) -> dict:
    if outcome.status == "ok":
        return leases.result(row.id, "sent", note=outcome.note)
    if outcome.status == "retry":
        if row.attempts >= settings.max_attempts:
            return leases.result(row.id, "dead", last_error=outcome.error)
        return leases.result(row.id, "pending", last_error=outcome.error,
                             delay_s=backoff(row.attempts, settings, outcome.retry_after_s))
    return leases.result(row.id, "failed", last_error=outcome.error)
