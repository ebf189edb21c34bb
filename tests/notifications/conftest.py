"""Fixtures of the notification tests: the FCM stand-in (a real HTTP server on 127.0.0.1),
a real firebase-admin sender pointed at it through FCM_ENDPOINT and a service-account file
whose token_uri is the stand-in's, and helpers to make recipients with devices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest

from notifications import service, worker
from notifications.fcm import FcmSender
from server import clock
from server.auth.actor import Actor
from tests.fixtures.users import make_user  # noqa: F401 - fixture
from tests.notifications.fcm_standin import FcmStandIn

# A kind of our own, registered as grid.cases would register its kinds.
service.register_template("test.case_moved",
                          zh=("案件{case_no}已{step}", "您上报的问题：{summary}"),
                          en=("Case {case_no} {step}", "Your report: {summary}"))
service.register_template("test.escalated", zh=("督办：{case_no}", "请尽快处置"),
                          en=("Escalated: {case_no}", "Please act now"), urgent=True)

SETTINGS = worker.DeliverySettings(batch_size=500, lease_s=60, max_attempts=3,
                                   backoff_base_s=10, backoff_max_s=600, budget_s=10)


@pytest.fixture(scope="session")
def fcm() -> Iterator[FcmStandIn]:
    with FcmStandIn(project_id="grid-test") as standin:
        yield standin


@pytest.fixture(scope="session")
def credentials_file(fcm, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("firebase") / "service-account.json"
    path.write_text(json.dumps(fcm.service_account()))
    return str(path)


@pytest.fixture(scope="session")
def fcm_config(fcm, credentials_file) -> dict:
    """The settings a deployment sets to push through FCM (here: the stand-in)."""
    return {"FIREBASE_CREDENTIALS": credentials_file, "FCM_ENDPOINT": fcm.endpoint,
            "FCM_TIMEOUT_S": 5.0, "NOTIFY_BATCH_SIZE": 500}


@pytest.fixture(scope="session")
def sender(fcm_config) -> FcmSender:
    built = worker.sender_for(fcm_config)
    assert isinstance(built, FcmSender)
    return built


@pytest.fixture(autouse=True)
def _fresh_standin(fcm) -> None:
    fcm.reset()


@pytest.fixture
def recipient(make_user, db_session):  # noqa: F811 - the fixture
    """A user with devices registered outside any login (always active):
    `recipient(("tok-a", "android", "zh-CN"), ("tok-b", "ios", "en"))` → user."""

    def _make(*devices: tuple[str, str, str], role: str = "resident"):
        user = make_user(role)
        actor = Actor(user_id=user.id)
        for token, platform, locale in devices:
            service.register_device(db_session, actor, {"token": token, "platform": platform,
                                                        "locale": locale})
        db_session.commit()
        return user

    return _make


def deliver(db_session, sender, now: datetime | None = None, settings=SETTINGS):
    """One run of the worker's delivery at `now` (default: the real clock)."""
    return worker.deliver(db_session, sender, settings, now or clock.now())
