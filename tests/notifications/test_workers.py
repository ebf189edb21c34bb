"""Two workers at once, each a thread with its own session and connection, over committed
rows (not inside the test's rolled-back transaction): no row is pushed twice, none is left.
The users (and with them their devices, inbox and outbox rows) are deleted afterwards."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications import service, worker
from notifications.models import Device, Notification, OutboxMessage
from server.auth.models import User

USERS, PER_USER = 6, 50



@pytest.fixture
def committed_outbox(engine) -> Iterator[list[int]]:
    """USERS users with one phone each and PER_USER notifications each, committed."""
    tag = uuid.uuid4().hex[:8]
    with Session(engine, expire_on_commit=False) as s:
        users = [User(username=f"two-workers-{tag}-{i}", display_name="并发测试",
                      password_hash="-", is_active=True, failed_logins=0)
                 for i in range(USERS)]
        s.add_all(users)
        s.flush()
        ids = [u.id for u in users]
        s.add_all(Device(user_id=u, token=f"tok-{tag}-{u}", platform="android") for u in ids)
        for n in range(PER_USER):
            service.notify(s, ids, "test.case_moved", {"case_no": str(n), "step": "派遣"})
        s.commit()
    try:
        yield ids
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(User.__table__).where(User.__table__.c.id.in_(ids)))


def test_two_workers_do_not_send_the_same_row_twice(engine, committed_outbox, fcm, sender):
    settings = worker.DeliverySettings(batch_size=20, lease_s=60, max_attempts=3)
    fcm.state.delay_s = 0.002  # FCM takes a moment: the workers' batches overlap
    claimed: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(name: str) -> None:
        total = 0
        try:
            with Session(engine, expire_on_commit=False) as s:
                start.wait()
                while (counts := worker.deliver_batch(s, sender, settings))["claimed"]:
                    total += counts["claimed"]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        claimed[name] = total

    try:
        threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        fcm.state.delay_s = 0.0
    assert not errors, errors
    assert claimed["a"] > 0 and claimed["b"] > 0, claimed  # both really worked
    assert claimed["a"] + claimed["b"] == USERS * PER_USER

    pushed = Counter(r.message["data"]["notification_id"] for r in fcm.received)
    assert len(pushed) == USERS * PER_USER
    assert set(pushed.values()) == {1}  # each notification pushed exactly once
    with Session(engine) as s:
        states = dict(s.execute(
            sa.select(OutboxMessage.state, sa.func.count())
            .join(Notification, Notification.id == OutboxMessage.notification_id)
            .where(Notification.user_id.in_(committed_outbox))
            .group_by(OutboxMessage.state)).all())
    assert states == {"sent": USERS * PER_USER}
