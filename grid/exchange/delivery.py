"""What `flask worker` does for webhooks: deliver the outbox (`webhook_deliveries`), the
same way notifications/worker.py delivers pushes (its settings and backoff are reused):

1. claim: up to `batch_size` due rows of active subscriptions, `FOR UPDATE SKIP LOCKED`,
   leased under a fresh token, attempts counted — skipping a row while an earlier row of
   the same ordering key (a case) for the same subscription is still pending, so a case's
   events reach each subscriber in order; commit;
2. send: POST each body, signed, over one pooled HTTP client with at most `concurrency`
   requests in flight (no transaction open meanwhile);
3. record, under the claim token only: 2xx sent; network errors, 408, 429 (at least
   Retry-After) and 5xx retried with backoff and jitter; dead after `max_attempts`, or at
   once for other 4xx answers (the receiver refuses it: replay after fixing); one attempt
   row each; commit.

Headers of every request (README "Integration"):
  Content-Type: application/cloudevents+json; charset=utf-8
  Webhook-Id: the event id (the same on every retry and replay: de-duplicate by it)
  Webhook-Timestamp: Unix seconds when this attempt was signed
  Webhook-Signature: v1=hex(HMAC-SHA256(secret, timestamp + "." + body))
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications.worker import DeliverySettings, backoff_s, drain
from server import clock, pii
from server.apiclients import sign
from server.cli import PeriodicTask

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "grid-webhooks/1"
RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookSettings:
    delivery: DeliverySettings
    concurrency: int = 8
    timeout_s: float = 10.0

    @classmethod
    def from_config(cls, config: Any) -> WebhookSettings:
        return cls(DeliverySettings(batch_size=config.get("WEBHOOK_BATCH_SIZE", 200),
                                    lease_s=config.get("WEBHOOK_LEASE_S", 120.0),
                                    max_attempts=config.get("WEBHOOK_MAX_ATTEMPTS", 10),
                                    backoff_base_s=config.get("WEBHOOK_BACKOFF_BASE_S", 10.0),
                                    backoff_max_s=config.get("WEBHOOK_BACKOFF_MAX_S", 3600.0)),
                   concurrency=config.get("WEBHOOK_CONCURRENCY", 8),
                   timeout_s=config.get("WEBHOOK_TIMEOUT_S", 10.0))


def signature_headers(secret: str, event_id: str, body: bytes,
                      timestamp: int | None = None) -> dict[str, str]:
    """The headers of one signed request (also what a bare sender would send)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT, "Webhook-Id": event_id,
            "Webhook-Timestamp": str(ts), "Webhook-Signature": "v1=" + sign(secret, ts, body)}


@dataclass
class Outcome:
    status: int | None  # the receiver's HTTP status; None: no answer
    error: str | None
    duration_ms: float
    retry_after_s: float | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - clock.now()).total_seconds())
    except (TypeError, ValueError):
        return None


class HttpSender:
    """POSTs over one pooled httpx client, `concurrency` at a time."""

    def __init__(self, concurrency: int = 8, timeout_s: float = 10.0) -> None:
        self.concurrency = concurrency
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency)
        self.client = httpx.Client(limits=limits, timeout=timeout_s, follow_redirects=False)
        self.pool = ThreadPoolExecutor(max_workers=concurrency,
                                       thread_name_prefix="webhook-sender")

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500],
                           (time.perf_counter() - started) * 1000)
        ms = (time.perf_counter() - started) * 1000
        error = None if response.is_success else f"HTTP {response.status_code}: " \
            f"{response.text[:200]}"
        return Outcome(response.status_code, error, ms,
                       _retry_after(response.headers.get("Retry-After")))

    def post_all(self, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[Outcome]:
        return list(self.pool.map(lambda r: self.post(*r), requests))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


# --- 1. claim ------------------------------------------------------------------------------

_CLAIM = sa.text("""
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
    WHERE d.state = 'pending' AND d.due_at <= :now
      AND (d.claimed_until IS NULL OR d.claimed_until < :now)
      AND (d.ordering_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e
          WHERE e.subscription_id = d.subscription_id AND e.ordering_key = d.ordering_key
            AND e.state = 'pending' AND e.id < d.id))
    ORDER BY d.due_at, d.id
    LIMIT :n
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET claimed_until = :lease_until, claim_token = :token, attempts = d.attempts + 1
FROM due, webhook_subscriptions s
WHERE d.id = due.id AND s.id = d.subscription_id
RETURNING d.id, d.subscription_id, d.event_id, d.body, d.attempts, s.url, s.secret_enc
""")

# Per row: its new state and the attempt it made (one statement: the attempt rows are
# written only for rows still under this claim).
_RECORD = sa.text("""
WITH v AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
    AS v(id bigint, state text, delay_s float8, status int, error text, ms float8)
), done AS (
    UPDATE webhook_deliveries d
    SET state = v.state,
        due_at = CASE WHEN v.delay_s IS NULL THEN d.due_at
                      ELSE :now + v.delay_s * interval '1 second' END,
        sent_at = CASE WHEN v.state = 'sent' THEN :now ELSE d.sent_at END,
        last_status = v.status, last_error = v.error,
        claimed_until = NULL, claim_token = NULL
    FROM v
    WHERE d.id = v.id AND d.claim_token = :token
    RETURNING d.id, d.attempts
)
INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms)
SELECT done.id, done.attempts, :now, v.status, v.error, v.ms FROM done JOIN v ON v.id = done.id
""")


def claim(s: Session, settings: DeliverySettings, now: datetime) -> tuple[uuid.UUID, list[Any]]:
    token = uuid.uuid4()
    rows = s.execute(_CLAIM, {"now": now, "lease_until": now + timedelta(seconds=settings.lease_s),
                              "token": token, "n": settings.batch_size}).all()
    s.commit()
    return token, rows


# --- 3. record -----------------------------------------------------------------------------


def settle(attempts: int, outcome: Outcome, settings: DeliverySettings) -> dict:
    """A row's new state from the receiver's answer."""
    result = {"state": "sent", "delay_s": None, "status": outcome.status,
              "error": outcome.error, "ms": round(outcome.duration_ms, 3)}
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return result
    retried = status is None or status >= 500 or status in RETRIED_STATUSES
    if not retried:
        result.update(state="dead", error=f"refused by the receiver, not retried: "
                                          f"{outcome.error}")
    elif attempts >= settings.max_attempts:
        result.update(state="dead", error=f"gave up after {attempts} attempts: "
                                          f"{outcome.error}")
    else:
        result.update(state="pending",
                      delay_s=backoff_s(attempts, settings, outcome.retry_after_s))
    return result


def deliver_batch(s: Session, sender: HttpSender, settings: DeliverySettings,
                  now: datetime | None = None) -> Counter:
    """Claim, send and record one batch; counts by outcome (`claimed` = rows claimed)."""
    token, rows = claim(s, settings, now or clock.now())
    counts = Counter(claimed=len(rows))
    if not rows:
        return counts
    secrets: dict[int, str] = {}
    requests, results = [], []
    for row in rows:
        if row.subscription_id not in secrets:
            secrets[row.subscription_id] = pii.decrypt(row.secret_enc, "webhook.secret")
        body = row.body.encode()
        requests.append((row.url, body, signature_headers(secrets[row.subscription_id],
                                                          str(row.event_id), body)))
    for row, outcome in zip(rows, sender.post_all(requests), strict=True):
        result = {"id": row.id, **settle(row.attempts, outcome, settings)}
        results.append(result)
        counts[result["state"]] += 1
    s.execute(_RECORD, {"rows": json.dumps(results), "token": token, "now": clock.now()})
    s.commit()
    return counts


def deliver(s: Session, sender: HttpSender, settings: DeliverySettings,
            now: datetime | None = None) -> dict:
    """Deliver batches until one is not full or `budget_s` has passed."""
    return drain(lambda: deliver_batch(s, sender, settings, now), settings)


# --- the periodic task -----------------------------------------------------------------------

_senders: dict[tuple, HttpSender] = {}


def sender_for(settings: WebhookSettings) -> HttpSender:
    """One sender (its connection pool and threads) per process and configuration."""
    key = (settings.concurrency, settings.timeout_s)
    if key not in _senders:
        _senders[key] = HttpSender(settings.concurrency, settings.timeout_s)
    return _senders[key]


def _deliver_task(s: Session) -> dict:
    from flask import current_app

    settings = WebhookSettings.from_config(current_app.config)
    return deliver(s, sender_for(settings), settings.delivery)


PERIODIC_TASKS = (PeriodicTask("deliver_webhooks", 1, _deliver_task),)
