"""Fixtures of the notification tests: the FCM, Huawei Push Kit and Aliyun SMS stand-ins
(real HTTP servers on 127.0.0.1), the worker's router with a real firebase-admin sender
(FCM_ENDPOINT and a service account whose token_uri are the stand-in's) and a real Push Kit
client pointed at theirs, and helpers to make recipients with devices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest

from notifications import service, worker
from notifications.providers.base import Router
from notifications.providers.fcm import FcmSender
from notifications.providers.hms import HmsProvider
from server import clock
from server.auth.actor import Actor
from tests.fixtures.users import make_user  # noqa: F401 - fixture
from tests.notifications.fcm_standin import FcmStandIn
from tests.notifications.standins import HmsStandIn, SmsStandIn

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
def hms() -> Iterator[HmsStandIn]:
    with HmsStandIn() as standin:
        yield standin


@pytest.fixture(scope="session")
def sms_standin() -> Iterator[SmsStandIn]:
    with SmsStandIn() as standin:
        yield standin


@pytest.fixture(scope="session")
def sender(fcm_config, hms) -> Router:
    """The worker's router: FCM and Huawei Push Kit, both at their stand-ins."""
    built = worker.sender_for({**fcm_config, **hms.config()})
    assert isinstance(built.providers["fcm"], FcmSender)
    assert isinstance(built.providers["hms"], HmsProvider)
    return built


@pytest.fixture(autouse=True)
def _fresh_standin(fcm, hms, sms_standin) -> None:
    fcm.reset()
    hms.reset()
    sms_standin.reset()


@pytest.fixture
def recipient(make_user, db_session):  # noqa: F811 - the fixture
    """A user with devices registered outside any login (always active):
    `recipient(("tok-a", "android", "zh-CN"), ("tok-b", "ios", "en"))` → user; a fourth
    item names the provider (`("tok-h", "android", "zh-CN", "hms")`)."""

    def _make(*devices: tuple[str, ...], role: str = "resident"):
        user = make_user(role)
        actor = Actor(user_id=user.id)
        for token, platform, locale, *provider in devices:
            service.register_device(db_session, actor, {
                "token": token, "platform": platform, "locale": locale,
                "provider": provider[0] if provider else "fcm"})
        db_session.commit()
        return user

    return _make


def deliver(db_session, sender, now: datetime | None = None, settings=SETTINGS):
    """One run of the worker's delivery at `now` (default: the real clock)."""
    return worker.deliver(db_session, sender, settings, now or clock.now())
