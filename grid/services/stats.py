"""The staff's figures on a service (服务统计): per local day slots, capacity,
bookings, attendance, no-shows, cancellations, utilization and ratings, with totals."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services.catalogue import managed_service
from grid.services.schedules import _local_range
from server import clock
from server.auth.actor import Actor
from server.errors import Invalid, field_errors

MAX_STATS_DAYS = 366

_STATS = sa.text("""
WITH days AS (
    SELECT d::date AS day FROM generate_series(CAST(:day_from AS date), CAST(:day_to AS date),
                                               interval '1 day') AS d
), slots AS (
    SELECT (starts_at AT TIME ZONE :tz)::date AS day, count(*) AS slots,
           sum(capacity) FILTER (WHERE state = 'open') AS capacity
    FROM service_slots WHERE service_id = :service_id AND starts_at >= :start AND starts_at < :end
    GROUP BY 1
), bookings AS (
    SELECT (starts_at AT TIME ZONE :tz)::date AS day,
           count(*) FILTER (WHERE state IN ('booked', 'attended', 'no_show', 'scheduled',
                                            'completed')) AS bookings,
           count(*) FILTER (WHERE state IN ('attended', 'completed')) AS attended,
           count(*) FILTER (WHERE state = 'no_show') AS no_shows,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
           count(rating) AS rated, avg(rating)::float AS mean_rating
    FROM service_bookings WHERE service_id = :service_id AND starts_at >= :start
                                AND starts_at < :end
    GROUP BY 1
)
SELECT days.day, coalesce(slots.slots, 0) AS slots, coalesce(slots.capacity, 0) AS capacity,
       coalesce(b.bookings, 0) AS bookings, coalesce(b.attended, 0) AS attended,
       coalesce(b.no_shows, 0) AS no_shows, coalesce(b.cancelled, 0) AS cancelled,
       coalesce(b.rated, 0) AS rated, b.mean_rating
FROM days LEFT JOIN slots USING (day) LEFT JOIN bookings b USING (day)
ORDER BY days.day
""")


def _rates(row: dict) -> dict:
    judged = row["attended"] + row["no_shows"]
    row["utilization"] = round(row["bookings"] / row["capacity"], 4) if row["capacity"] else None
    row["no_show_rate"] = round(row["no_shows"] / judged, 4) if judged else None
    if row.get("mean_rating") is not None:
        row["mean_rating"] = round(row["mean_rating"], 2)
    return row


def stats(s: Session, actor: Actor, service_id: int, day_from: date, day_to: date) -> dict:
    """Per local day: slots, capacity, bookings, attended, no-shows, cancelled,
    utilization (bookings ÷ capacity), no-show rate, mean rating; and the totals."""
    service = managed_service(s, actor, service_id)
    if day_to < day_from or (day_to - day_from).days >= MAX_STATS_DAYS:
        raise Invalid(field_errors("to", f"`to` within {MAX_STATS_DAYS} days after `from`.",
                                   location="query"))
    zone = clock.local_zone()
    start, end = _local_range(day_from, day_to, zone)
    rows = [dict(r._mapping) for r in s.execute(_STATS, {
        "day_from": day_from, "day_to": day_to, "tz": zone.key, "service_id": service.id,
        "start": start, "end": end})]
    keys = ("slots", "capacity", "bookings", "attended", "no_shows", "cancelled", "rated")
    total = {k: sum(r[k] for r in rows) for k in keys}
    rated = [(r["mean_rating"], r["rated"]) for r in rows if r["rated"]]
    total["mean_rating"] = sum(m * n for m, n in rated) / total["rated"] if rated else None
    return {"service_id": service.id, "start": day_from, "end": day_to,
            "days": [_rates(r) for r in rows], "total": _rates(total)}
