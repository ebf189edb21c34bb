"""Topics (主题): a broadcast to an area is one message per provider and language to the
area's topic, not one push per phone.

A device is on `area-{code}-{level}-{language}` for every area whose broadcasts reach its
user (their memberships' areas and those above: grid, community, street, district…), every
broadcast level the user has not muted (emergencies cannot be muted), in the device's
language. `refresh` brings the subscriptions in line after a device registers, a
membership changes or a user changes mutes; it writes `TopicTask` rows (one per provider,
topic and action, ≤ 1,000 tokens) that the worker sends like any push, retried with
backoff. Subscribing twice is harmless at the providers, so a retried task is too. A device
whose token dies leaves its topics (the provider drops it; our rows go); a device whose
login ends is unsubscribed before it is forgotten.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from notifications import leases
from notifications.hierarchy import areas
from notifications.models import Device, DeviceTopic, Notification, Preference, TopicTask
from notifications.providers.base import Outcome, Push, Router, push_data
from server import clock

LEVELS = ("info", "warning", "emergency")
LANGUAGES = ("zh-CN", "en")
MAX_TOKENS = 1000

# Devices that get pushes: not disabled, and their login (if any) not ended.
ACTIVE = sa.and_(Device.disabled_at.is_(None), sa.or_(
    Device.session_id.is_(None),
    sa.text("EXISTS (SELECT 1 FROM auth_sessions a WHERE a.id = devices.session_id "
            "AND a.revoked_at IS NULL)")))


def language(locale: str | None) -> str:
    """The language of our texts for a device's locale (as service.render picks it)."""
    if locale in LANGUAGES:
        return locale
    return "en" if locale and locale.startswith("en") else "zh-CN"


def topic_name(area_code: str, level: str, lang: str) -> str:
    """FCM and Push Kit both take [A-Za-z0-9-_.~%]{1,900}."""
    return f"area-{area_code}-{level}-{lang}"


def wanted(codes: set[str], muted: set[str], lang: str) -> set[str]:
    levels = [v for v in LEVELS if v == "emergency" or f"broadcast.{v}" not in muted]
    return {topic_name(code, level, lang) for code in codes for level in levels}


def refresh(s: Session, user_ids: list[int]) -> int:
    """Subscribe these users' active devices to the topics that are theirs now and
    unsubscribe them from the others. Returns the subscriptions changed."""
    devices = s.execute(sa.select(Device.id, Device.user_id, Device.token, Device.provider,
                                  Device.locale)
                        .where(Device.user_id.in_(user_ids), ACTIVE)).all()
    if not devices:
        return 0
    codes = areas().area_codes_reaching(s, list({d.user_id for d in devices}))
    muted = dict(s.execute(sa.select(Preference.user_id, Preference.muted_kinds)
                           .where(Preference.user_id.in_(user_ids))).all())
    current: dict[int, set[str]] = defaultdict(set)
    for device_id, topic in s.execute(sa.select(DeviceTopic.device_id, DeviceTopic.topic)
                                      .where(DeviceTopic.device_id.in_([d.id for d in devices]))):
        current[device_id].add(topic)
    tasks: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    added, removed = [], []
    for d in devices:
        want = wanted(codes.get(d.user_id, set()), set(muted.get(d.user_id) or ()),
                      language(d.locale))
        for topic in sorted(want - current[d.id]):
            tasks[(d.provider, topic, "subscribe")].append(d.token)
            added.append({"device_id": d.id, "topic": topic})
        for topic in sorted(current[d.id] - want):
            tasks[(d.provider, topic, "unsubscribe")].append(d.token)
            removed.append((d.id, topic))
    if added:
        s.execute(pg_insert(DeviceTopic).values(added).on_conflict_do_nothing())
    for device_id, topic in removed:
        s.execute(sa.delete(DeviceTopic).where(DeviceTopic.device_id == device_id,
                                               DeviceTopic.topic == topic))
    queue(s, tasks)
    return len(added) + len(removed)


def leave(s: Session, device_ids: list[int]) -> None:
    """Unsubscribe devices from all their topics (their login ended, the app removed them)."""
    rows = s.execute(sa.select(Device.provider, Device.token, DeviceTopic.topic)
                     .join(DeviceTopic, DeviceTopic.device_id == Device.id)
                     .where(Device.id.in_(device_ids))).all()
    tasks: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for provider, token, topic in rows:
        tasks[(provider, topic, "unsubscribe")].append(token)
    queue(s, tasks)
    s.execute(sa.delete(DeviceTopic).where(DeviceTopic.device_id.in_(device_ids)))


def forget(s: Session, device_ids: list[int]) -> None:
    """A dead token leaves its topics: the provider has dropped it already."""
    if device_ids:
        s.execute(sa.delete(DeviceTopic).where(DeviceTopic.device_id.in_(device_ids)))


def queue(s: Session, tasks: dict[tuple[str, str, str], list[str]]) -> None:
    rows = [{"provider": provider, "topic": topic, "action": action,
             "tokens": tokens[i:i + MAX_TOKENS]}
            for (provider, topic, action), tokens in sorted(tasks.items())
            for i in range(0, len(tokens), MAX_TOKENS)]
    if rows:
        s.execute(sa.insert(TopicTask), rows)


def queue_broadcast(s: Session, providers: list[str], notification_id: int, area_code: str,
                    level: str) -> None:
    """One topic message per provider and language: the whole of a broadcast's pushes."""
    s.execute(sa.insert(TopicTask), [
        {"provider": p, "action": "send", "topic": topic_name(area_code, level, lang),
         "notification_id": notification_id, "locale": lang}
        for p in providers for lang in LANGUAGES])


# --- the worker's step ----------------------------------------------------------------------


_COLUMNS = "t.id, t.provider, t.action, t.topic, t.tokens, t.notification_id, t.locale, " \
           "t.attempts"


def run(s: Session, router: Router, settings: Any,
        render: Callable[[str, dict, str | None], tuple[str, str]],
        now: datetime | None = None) -> Counter:
    """Claim due topic tasks, make their requests (no transaction open meanwhile), record
    them: sent, retried with backoff (only the tokens still to do), failed, or dead after
    `max_attempts`. Tokens a provider disowned disable their devices."""
    from notifications.worker import backoff_s

    fixed, now = now, now or clock.now()
    token, rows = leases.claim(s, "topic_tasks", settings.batch_size, settings.lease_s, now,
                               _COLUMNS)
    rows = sorted(rows, key=lambda r: r.id)
    notes = {n.id: n for n in s.scalars(sa.select(Notification).where(
        Notification.id.in_({r.notification_id for r in rows if r.notification_id})))}
    wanted_now = _subscribed(s, rows)
    s.commit()
    counts, results, gone = Counter(), [], defaultdict(list)
    for row in rows:
        provider = router.provider(row.provider)
        if row.action == "send":
            n = notes.get(row.notification_id)
            if n is None:
                results.append(leases.result(row.id, "sent", note="its notification is gone"))
                continue
            title, body = render(n.kind, n.data, row.locale)
            push = Push(token="", platform="android", title=title[:200], body=body[:1000],
                        data=push_data(n.id, n.kind, n.data, n.collapse_key),
                        collapse_key=n.collapse_key, urgent=n.urgent, provider=row.provider)
            outcomes, tokens = [provider.send_topic(row.topic, push)], [None]
        else:
            manage = provider.subscribe if row.action == "subscribe" else provider.unsubscribe
            # What is wanted now decides, not the order tasks run in: a subscription since
            # undone is not made, an unsubscription since undone is not sent.
            wanted_tokens = {t for t in row.tokens if (row.provider, t, row.topic) in wanted_now}
            tokens = [t for t in row.tokens
                      if (t in wanted_tokens) == (row.action == "subscribe")]
            outcomes = manage(row.topic, tokens) if tokens else []
        for t, o in zip(tokens, outcomes, strict=True):
            if o.status == "disable" and t is not None:
                gone[row.provider].append((t, o.error))
        result = _settle(row, tokens, outcomes, settings, backoff_s)
        counts[f"{row.action}:{result['state']}"] += 1
        results.append(result)
    later = fixed or clock.now()
    leases.record(s, "topic_tasks", token, results, later)
    for name, dead in gone.items():
        disable_tokens(s, name, dead, later)
    s.commit()
    return counts


def _subscribed(s: Session, rows: list[Any]) -> set[tuple[str, str, str]]:
    """(provider, token, topic) of the subscriptions wanted now, among the claimed tasks'."""
    tokens = {t for r in rows if r.action != "send" for t in r.tokens}
    if not tokens:
        return set()
    return {tuple(r) for r in s.execute(
        sa.select(Device.provider, Device.token, DeviceTopic.topic)
        .join(DeviceTopic, DeviceTopic.device_id == Device.id)
        .where(Device.token.in_(tokens)))}


def _settle(row: Any, tokens: list, outcomes: list[Outcome], settings: Any,
            backoff: Callable) -> dict:
    retry = [(t, o) for t, o in zip(tokens, outcomes, strict=True) if o.status == "retry"]
    rejected = [o for o in outcomes if o.status == "reject"]
    notes = sorted({o.note for o in outcomes if o.note})
    if retry:
        error = retry[0][1].error
        if row.attempts >= settings.max_attempts:
            return leases.result(row.id, "dead", last_error=error,
                                 note=f"gave up after {row.attempts} attempts")
        after = max((o.retry_after_s or 0.0) for _, o in retry) or None
        left = [t for t, _ in retry] if row.action != "send" else None
        return leases.result(row.id, "pending", delay_s=backoff(row.attempts, settings, after),
                             last_error=error, tokens=left,
                             note=f"retry: {len(outcomes) - len(retry)} done")
    if rejected:
        return leases.result(row.id, "failed", last_error=rejected[0].error)
    return leases.result(row.id, "sent", note="; ".join(notes) or None)


def disable_tokens(s: Session, provider: str, dead: list[tuple[str, str | None]],
                   now: datetime) -> list[int]:
    """Disable the devices of tokens the provider disowned; they leave their topics."""
    ids = []
    for token, reason in dead:
        ids += s.scalars(sa.update(Device).where(
            Device.provider == provider, Device.token == token, Device.disabled_at.is_(None))
            .values(disabled_at=now, disabled_reason=(reason or "token gone")[:64])
            .returning(Device.id)).all()
    forget(s, ids)
    return ids
