"""The demo district comes with a few service points, the bookable ones with slots."""

from __future__ import annotations

import sqlalchemy as sa

from grid import demo
from grid.services.models import Service, Slot


def test_demo_services_and_their_slots(db_session):
    message = demo.seed(db_session, force=True)
    assert f"{len(demo.DEMO_SERVICES)} services" in message
    services = db_session.scalars(sa.select(Service)).all()
    assert {s.booking_mode for s in services} == {"none", "slots", "request"}
    assert all(s.location is not None for s in services)
    bookable = {s.id for s in services if s.booking_mode == "slots"}
    with_slots = set(db_session.scalars(sa.select(Slot.service_id).distinct()))
    assert with_slots == bookable
