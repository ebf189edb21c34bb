"""What `flask worker` does for notifications: send topic tasks (broadcasts, subscriptions:
notifications.topics), walk broadcasts' members (notifications.broadcasts), deliver the
outbox, send SMS (notifications.sms), forget devices of ended logins. Its tasks are wired
in notifications/wiring.py.

Delivery of one batch is three short transactions, none open during the HTTP calls:

1. claim: up to `batch_size` due rows, `FOR UPDATE SKIP LOCKED` (several workers may run),
   each leased until now + `lease_s` under a fresh claim token, its attempt counted; rows
   that need no push (read meanwhile, superseded by a newer push of the same thread, no
   device left) are settled at once; commit;
2. send: one push per active device of each row, rendered in the device's locale, through
   the router to the device's provider (FCM's send_each in batches of ≤ 500, Huawei Push
   Kit, or an off provider: inbox only);
3. record: per row, under its claim token only (a worker that outlived its lease changes
   nothing): sent, retried later (backoff with jitter, at least Retry-After), failed
   (INVALID_ARGUMENT: not retried) or dead (after `max_attempts`); tokens FCM disowned
   are disabled; commit.

A worker that dies between 1 and 3 leaves its rows leased; once the lease has passed
another worker claims them again (at-least-once: the push may then arrive twice, which a
collapse key makes harmless on the phone).
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications import broadcasts, service, sms, topics
from notifications.models import Device
from notifications.providers import router_for, sms_configured, sms_for
from notifications.providers.base import Outcome, Push, Router, push_data
from server import clock
from server.cli import PeriodicTask

log = logging.getLogger("notifications.worker")


@dataclass(frozen=True)
class DeliverySettings:
    batch_size: int = 500
    lease_s: float = 120.0
    max_attempts: int = 8
    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    budget_s: float = 20.0  # one run of the task, so that the worker's other tasks get turns

    @classmethod
    def from_config(cls, config: Any) -> DeliverySettings:
        return cls(batch_size=config["NOTIFY_BATCH_SIZE"], lease_s=config["NOTIFY_LEASE_S"],
                   max_attempts=config["NOTIFY_MAX_ATTEMPTS"],
                   backoff_base_s=config["NOTIFY_BACKOFF_BASE_S"],
                   backoff_max_s=config["NOTIFY_BACKOFF_MAX_S"])


def backoff_s(attempts: int, settings: DeliverySettings, retry_after_s: float | None = None,
              rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempts + 1`: exponential from `backoff_base_s`, capped,
    with jitter (half to all of it, so that rows failed together do not return together),
    and never sooner than FCM's Retry-After."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** max(0, attempts - 1))
    delay = (rng or random).uniform(ceiling / 2, ceiling)
    return max(delay, min(retry_after_s or 0.0, 86400.0))


# --- 1. claim ------------------------------------------------------------------------------

_CLAIM = sa.text("""
WITH due AS (
    SELECT id FROM outbox
    WHERE state = 'pending' AND due_at <= :now
      AND (claimed_until IS NULL OR claimed_until < :now)
    ORDER BY due_at, id
    LIMIT :n
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET claimed_until = :lease_until, claim_token = :token, attempts = o.attempts + 1
FROM due, notifications n
WHERE o.id = due.id AND n.id = o.notification_id
RETURNING o.id, o.user_id, o.attempts, o.done_device_ids, n.id AS notification_id, n.kind,
          n.data, n.urgent, n.collapse_key, n.read_at IS NOT NULL AS read
""")

# Devices that get pushes: not disabled by FCM, and their login (if any) not ended.
_DEVICES = sa.text("""
SELECT d.id, d.user_id, d.token, d.platform, d.provider, d.locale FROM devices d
WHERE d.user_id = ANY(:users) AND d.disabled_at IS NULL
  AND (d.session_id IS NULL OR EXISTS (
      SELECT 1 FROM auth_sessions a WHERE a.id = d.session_id AND a.revoked_at IS NULL))
ORDER BY d.id
""")

_RECORD = sa.text("""
UPDATE outbox o
SET state = v.state,
    due_at = CASE WHEN v.delay_s IS NULL THEN o.due_at
                  ELSE :now + v.delay_s * interval '1 second' END,
    sent_at = CASE WHEN v.state = 'sent' THEN :now ELSE o.sent_at END,
    last_error = coalesce(v.last_error, o.last_error),
    note = v.note,
    done_device_ids = o.done_device_ids || coalesce(v.done, '{}'),
    claimed_until = NULL, claim_token = NULL
FROM jsonb_to_recordset(CAST(:rows AS jsonb))
     AS v(id bigint, state text, delay_s float8, last_error text, note text, done bigint[])
WHERE o.id = v.id AND o.claim_token = :token
""")

# A disabled device leaves its topics (the provider has dropped the dead token already).
_DISABLE = sa.text("""
WITH off AS (
    UPDATE devices d SET disabled_at = :now, disabled_reason = v.reason
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id bigint, reason text)
    WHERE d.id = v.id AND d.disabled_at IS NULL
    RETURNING d.id
)
DELETE FROM device_topics t USING off WHERE t.device_id = off.id
""")


@dataclass
class Claimed:
    """A claimed outbox row and what its pushes need."""

    id: int
    user_id: int
    attempts: int
    done_device_ids: list[int]
    notification_id: int
    kind: str
    data: dict
    urgent: bool
    collapse_key: str | None
    read: bool
    devices: list[Any]


@dataclass
class Claim:
    token: uuid.UUID
    rows: list[Claimed]  # to send
    settled: dict[str, int]  # settled without sending: {"sent"|"dead": count}


def claim(s: Session, settings: DeliverySettings, now: datetime) -> Claim:
    """Claim due rows (step 1) and commit. Rows past their last attempt (their worker kept
    dying) go to the dead letters instead; rows that need no push are settled here."""
    token = uuid.uuid4()
    rows = s.execute(_CLAIM, {"now": now, "lease_until": now + timedelta(seconds=settings.lease_s),
                              "token": token, "n": settings.batch_size}).all()
    devices: dict[int, list[Any]] = defaultdict(list)
    if rows:
        for d in s.execute(_DEVICES, {"users": list({r.user_id for r in rows})}):
            devices[d.user_id].append(d)
    # The newest push of a thread (user, collapse key) in this batch replaces older ones.
    newest: dict[tuple[int, str], int] = {}
    for r in rows:
        if r.collapse_key:
            key = (r.user_id, r.collapse_key)
            newest[key] = max(newest.get(key, 0), r.notification_id)
    to_send, settled = [], []
    for r in rows:
        done = set(r.done_device_ids)
        row = Claimed(r.id, r.user_id, r.attempts, r.done_device_ids, r.notification_id,
                      r.kind, r.data, r.urgent, r.collapse_key, r.read,
                      [d for d in devices[r.user_id] if d.id not in done])
        if r.attempts > settings.max_attempts:
            settled.append(_result(row, "dead", last_error=f"lease expired {settings.max_attempts}"
                                   " times: the worker died while sending"))
        elif r.read:
            settled.append(_result(row, "sent", note="read in the app before it was pushed"))
        elif r.collapse_key and newest[(r.user_id, r.collapse_key)] != r.notification_id:
            settled.append(_result(row, "sent", note="superseded by notification "
                                   f"{newest[(r.user_id, r.collapse_key)]}"))
        elif not row.devices:
            settled.append(_result(row, "sent", note="no active device: inbox only"))
        else:
            to_send.append(row)
    if settled:
        _record(s, token, settled, [], now)
    s.commit()
    return Claim(token, to_send, dict(Counter(r["state"] for r in settled)))


# --- 2. send -------------------------------------------------------------------------------


def pushes_for(row: Claimed) -> list[Push]:
    """One push per device, in the device's language, for the device's provider."""
    data = push_data(row.notification_id, row.kind, row.data, row.collapse_key)
    pushes = []
    for d in row.devices:
        title, body = service.render(row.kind, row.data, d.locale)
        pushes.append(Push(token=d.token, platform=d.platform, title=title[:200],
                           body=body[:1000], data=data, collapse_key=row.collapse_key,
                           urgent=row.urgent, provider=d.provider))
    return pushes


# --- 3. record -----------------------------------------------------------------------------


def _result(row: Claimed, state: str, *, delay_s: float | None = None,
            last_error: str | None = None, note: str | None = None,
            done: list[int] | None = None) -> dict:
    return {"id": row.id, "state": state, "delay_s": delay_s, "last_error": last_error,
            "note": note, "done": done or []}


def _record(s: Session, token: uuid.UUID, results: list[dict], disabled: list[dict],
            now: datetime) -> None:
    if results:
        s.execute(_RECORD, {"rows": json.dumps(results), "token": token, "now": now})
    if disabled:
        s.execute(_DISABLE, {"rows": json.dumps(disabled), "now": now})


def settle(row: Claimed, outcomes: list[Outcome], settings: DeliverySettings,
           sender_note: str | None) -> tuple[dict, list[dict]]:
    """The row's new state from its devices' outcomes, and the devices to disable."""
    done, disabled, errors = [], [], []
    retry, rejected, retry_after = False, False, None
    for device, outcome in zip(row.devices, outcomes, strict=True):
        if outcome.status == "retry":
            retry = True
            retry_after = max(retry_after or 0.0, outcome.retry_after_s or 0.0) or None
            errors.append(outcome.error)
            continue
        done.append(device.id)
        if outcome.status == "disable":
            disabled.append({"id": device.id, "reason": outcome.error})
        elif outcome.status == "reject":
            rejected = True
            errors.append(outcome.error)
    error = errors[0] if errors else None
    delivered = sum(o.status == "ok" for o in outcomes)
    if retry and row.attempts >= settings.max_attempts:
        return _result(row, "dead", last_error=error, done=done,
                       note=f"gave up after {row.attempts} attempts"), disabled
    if retry:
        return _result(row, "pending", delay_s=backoff_s(row.attempts, settings, retry_after),
                       last_error=error, done=done, note=f"retry: {delivered} delivered"
                       ), disabled
    if rejected:
        return _result(row, "failed", last_error=error, done=done), disabled
    note = sender_note or "; ".join(sorted({o.note for o in outcomes if o.note})) or None
    if not delivered:
        note = "no device took it: token(s) disabled"
    return _result(row, "sent", done=done, note=note), disabled


def deliver_batch(s: Session, sender: Router, settings: DeliverySettings,
                  now: datetime | None = None) -> Counter:
    """Claim, send and record one batch; counts by outcome (`claimed` = rows claimed)."""
    fixed, now = now, now or clock.now()
    batch = claim(s, settings, now)
    counts = Counter(batch.settled)
    counts["claimed"] = len(batch.rows) + sum(batch.settled.values())
    if not batch.rows:
        return counts
    pushes = [pushes_for(row) for row in batch.rows]
    flat = [p for group in pushes for p in group]
    outcomes = sender.send(flat)
    results, disabled, i = [], [], 0
    for row, group in zip(batch.rows, pushes, strict=True):
        result, off = settle(row, outcomes[i:i + len(group)], settings, sender.note)
        i += len(group)
        results.append(result)
        disabled += off
        counts[result["state"]] += 1
    counts["pushes"] = len(flat)
    counts["disabled"] = len(disabled)
    # The clock after sending: backoff counts from when FCM answered, not from the claim.
    _record(s, batch.token, results, disabled, fixed or clock.now())
    s.commit()
    return counts


def drain(batch: Callable[[], Counter], settings: DeliverySettings) -> dict:
    """Run `batch` (one claim and its sends) until a claim is not full or `budget_s` has
    passed; the counts added up. Every outbox's worker loop (pushes, webhooks)."""
    started, total = time.monotonic(), Counter()
    while True:
        counts = batch()
        total.update(counts)
        if counts["claimed"] < settings.batch_size or (
                time.monotonic() - started > settings.budget_s):
            break
    return {k: v for k, v in total.items() if v}


def deliver(s: Session, sender: Router, settings: DeliverySettings,
            now: datetime | None = None) -> dict:
    """Deliver batches until none is full or `budget_s` has passed."""
    return drain(lambda: deliver_batch(s, sender, settings, now), settings)


# --- devices of ended logins ------------------------------------------------------------------


def prune_devices(s: Session, now: datetime | None = None, keep_disabled_days: int = 30) -> int:
    """Delete devices whose login ended (logout…), unsubscribed from their topics first,
    and those a provider disowned long ago."""
    from server.auth.models import AuthSession

    now = now or clock.now()
    ended = list(s.scalars(sa.select(Device.id).where(Device.session_id.in_(
        sa.select(AuthSession.id).where(AuthSession.revoked_at.is_not(None))))))
    if ended:
        topics.leave(s, ended)
    result = s.execute(sa.delete(Device).where(sa.or_(
        Device.id.in_(ended),
        Device.disabled_at < now - timedelta(days=keep_disabled_days))))
    return result.rowcount


# --- the periodic tasks ------------------------------------------------------------------------


def sender_for(config: Any) -> Router:
    """Every provider (FCM, Huawei…) behind one router, built once per process and
    configuration; those without credentials are off (inbox only)."""
    return router_for(config)


def _config() -> Any:
    from flask import current_app

    return current_app.config


def _deliver_task(s: Session) -> dict:
    config = _config()
    return deliver(s, sender_for(config), DeliverySettings.from_config(config))


def _topics_task(s: Session) -> dict:
    config = _config()
    return dict(topics.run(s, sender_for(config), DeliverySettings.from_config(config),
                           service.render))


# The walk and the SMS yield every few seconds: a new broadcast's topic messages (the first
# task of each round) never wait long behind a district's walk.
TURN_S = 5.0


def _walk_task(s: Session) -> int:
    config = _config()
    return broadcasts.walk(s, sms_configured(config), config["BROADCAST_BATCH_SIZE"],
                           budget_s=TURN_S)


def _sms_task(s: Session, budget_s: float = TURN_S) -> dict:
    """SMS in claims of ≤ 1,000 (one request each) until none is due or the budget ends."""
    config = _config()
    if not sms_configured(config):
        return {}
    provider, settings = sms_for(config), sms.SmsSettings.from_config(config)
    started, total = time.monotonic(), Counter()
    while time.monotonic() - started < budget_s:
        counts = sms.run(s, provider, settings)
        total.update(counts)
        if sum(counts.values()) < settings.batch_size:
            break
    return dict(total)


# The worker's tasks, handed to the platform by notifications/wiring.py.
PERIODIC_TASKS = (
    PeriodicTask("broadcast_topics", 1, _topics_task),
    PeriodicTask("walk_broadcasts", 1, _walk_task),
    PeriodicTask("deliver_notifications", 1, _deliver_task),
    PeriodicTask("send_sms", 1, _sms_task),
    PeriodicTask("prune_devices", 3600, prune_devices),
)
