"""Pure parts of the exchange: what a receiver's answer does to a delivery, which callback
URLs are accepted, the CloudEvents envelope, and the open-data suppression rule."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grid.exchange import delivery, events, open_data
from grid.exchange.subscriptions import UrlRules, check_url
from notifications.worker import DeliverySettings
from server.errors import Invalid

SETTINGS = DeliverySettings(max_attempts=5, backoff_base_s=10, backoff_max_s=3600)


def outcome(status: int | None, retry_after: float | None = None) -> delivery.Outcome:
    return delivery.Outcome(status, None if status == 200 else "x", 1.0, retry_after)


@pytest.mark.parametrize(("status", "attempts", "state"), [
    (200, 1, "sent"), (204, 5, "sent"), (500, 1, "pending"), (503, 4, "pending"),
    (None, 1, "pending"), (429, 1, "pending"), (408, 1, "pending"), (500, 5, "dead"),
    (None, 5, "dead"), (400, 1, "dead"), (404, 1, "dead"), (410, 1, "dead"),
    (301, 1, "dead"),
])
def test_what_an_answer_does(status, attempts, state):
    assert delivery.settle(attempts, outcome(status), SETTINGS)["state"] == state


@given(st.integers(1, 4), st.floats(0, 5000))
def test_a_429_waits_at_least_retry_after(attempts, retry_after):
    result = delivery.settle(attempts, outcome(429, retry_after), SETTINGS)
    assert result["delay_s"] >= retry_after
    ceiling = min(SETTINGS.backoff_max_s, SETTINGS.backoff_base_s * 2 ** (attempts - 1))
    assert result["delay_s"] >= ceiling / 2


def test_retry_after_as_seconds_or_a_date():
    assert delivery._retry_after("120") == 120
    assert delivery._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert delivery._retry_after("soon") is None and delivery._retry_after(None) is None


@pytest.mark.parametrize(("url", "ok"), [
    ("https://example.org/hook", True), ("https://example.org:8443/a?b=1", True),
    ("http://example.org/hook", False), ("https://127.0.0.1/hook", False),
    ("https://192.168.1.5/hook", False), ("https://[::1]/hook", False),
    ("https://localhost/hook", False), ("https://u:p@example.org/", False),
    ("ftp://example.org/", False), ("https:///nohost", False),
    ("https://example.org:99999/", False), ("http://127.0.0.1:8080/hook", None),
])
def test_callback_urls(url, ok):
    rules = UrlRules(frozenset({"127.0.0.1"}))
    if ok is None:  # allow-listed host: plain http accepted
        assert check_url(url, rules) == url
        with pytest.raises(Invalid):
            check_url(url, UrlRules())
    elif ok:
        assert check_url(url, UrlRules()) == url
    else:
        with pytest.raises(Invalid):
            check_url(url, UrlRules())


def test_the_envelope_has_the_cloudevents_attributes():
    event = events.Event(type="case.reported", source="/cases", subject="cases/1",
                         data={"case": {"at": datetime(2026, 3, 1, tzinfo=UTC)}},
                         id=uuid.UUID(int=1), time=datetime(2026, 3, 1, 1, 2, 3, tzinfo=UTC))
    body = json.loads(events.body_of(event, event.data))
    assert body == {"specversion": "1.0", "id": str(uuid.UUID(int=1)), "source": "/cases",
                    "type": "case.reported", "subject": "cases/1",
                    "time": "2026-03-01T01:02:03.000+00:00",
                    "datacontenttype": "application/json",
                    "data": {"case": {"at": "2026-03-01T00:00:00+00:00"}}}


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_no_published_count_is_under_five(reported, closed, on_time):
    closed, on_time = min(closed, reported), min(on_time, closed, reported)
    row = open_data.suppress({"reported": reported, "closed": closed, "on_time": on_time},
                             open_data.CASES)
    for name in ("reported", "closed"):
        assert row[name] is None or row[name] >= open_data.MIN_CELL
    if row["on_time_rate"] is not None:
        assert closed >= open_data.MIN_CELL and row["on_time_rate"] == round(on_time / closed, 3)
    assert "on_time" not in row  # the count behind the rate is not published


def test_csv_cells_are_text_not_formulas():
    snap = open_data.OpenDataSnapshot(dataset="x", rows=[
        {"community_code": "=cmd()", "community_name": "+1", "age_band": "80+",
         "persons": None}], etag="e", generated_at=datetime.now(UTC))
    text = open_data.as_csv(open_data.POPULATION, snap)
    assert text.splitlines()[1] == "'=cmd(),'+1,80+,"
