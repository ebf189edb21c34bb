"""The claim and record of the worker's queues besides the outbox (topic tasks, SMS): the
same rules as notifications.worker's outbox — due rows claimed with FOR UPDATE SKIP
LOCKED under a lease and a fresh token, the attempt counted at the claim, results recorded
under the claim's token only, backoff from `worker.backoff_s`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

QUEUES = ("topic_tasks", "sms_outbox")  # the tables this module may name in SQL


def claim(s: Session, table: str, limit: int, lease_s: float, now: datetime,
          columns: str = "t.*") -> tuple[uuid.UUID, list[Any]]:
    """Claim up to `limit` due rows of `table`; returns the token and the rows."""
    assert table in QUEUES
    token = uuid.uuid4()
    rows = s.execute(sa.text(f"""
        WITH due AS (
            SELECT id FROM {table}
            WHERE state = 'pending' AND due_at <= :now
              AND (claimed_until IS NULL OR claimed_until < :now)
            ORDER BY due_at, id LIMIT :n FOR UPDATE SKIP LOCKED)
        UPDATE {table} t SET claimed_until = :lease_until, claim_token = :token,
                             attempts = t.attempts + 1
        FROM due WHERE t.id = due.id
        RETURNING {columns}"""), {"now": now, "n": limit, "token": token,
                                   "lease_until": now + timedelta(seconds=lease_s)}).all()
    return token, rows


def result(row_id: int, state: str, *, delay_s: float | None = None,
           last_error: str | None = None, note: str | None = None,
           tokens: list[str] | None = None) -> dict:
    return {"id": row_id, "state": state, "delay_s": delay_s, "last_error": last_error,
            "note": note, "tokens": tokens}


def record(s: Session, table: str, token: uuid.UUID, results: list[dict],
           now: datetime) -> None:
    """Write each row's new state (and, for a topic task retried, the tokens still to do)."""
    assert table in QUEUES
    if not results:
        return
    tokens = ", tokens = coalesce(v.tokens, t.tokens)" if table == "topic_tasks" else ""
    s.execute(sa.text(f"""
        UPDATE {table} t
        SET state = v.state,
            due_at = CASE WHEN v.delay_s IS NULL THEN t.due_at
                          ELSE :now + v.delay_s * interval '1 second' END,
            sent_at = CASE WHEN v.state = 'sent' THEN :now ELSE t.sent_at END,
            last_error = coalesce(v.last_error, t.last_error), note = v.note,
            claimed_until = NULL, claim_token = NULL{tokens}
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
            id bigint, state text, delay_s float8, last_error text, note text, tokens text[])
        WHERE t.id = v.id AND t.claim_token = :token"""),
        {"rows": json.dumps(results), "token": token, "now": now})
