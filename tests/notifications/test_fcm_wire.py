"""The FCM sender against the stand-in: what notifications.fcm changes in firebase-admin
(FCM_ENDPOINT, no retries inside the SDK, a pool as large as a batch) holds for the pinned
SDK, and the SDK's errors map to the outcomes the outbox acts on."""

from __future__ import annotations

import time

import pytest

from notifications.providers.base import Push
from notifications.providers.fcm import FcmSender
from tests.notifications.fcm_standin import FcmStandIn


@pytest.fixture
def own_standin():
    """A stand-in and a sender of their own: counters start from zero."""
    with FcmStandIn(project_id="grid-wire") as fcm:
        from firebase_admin import credentials

        built = FcmSender(credentials.Certificate(fcm.service_account()),
                          endpoint=fcm.endpoint, timeout_s=5, batch_size=100)
        try:
            yield fcm, built
        finally:
            built.close()


def _pushes(n: int, prefix: str = "tok") -> list[Push]:
    return [Push(token=f"{prefix}-{i}", platform="android", title="标题", body="正文",
                 data={"kind": "test"}, collapse_key="case:1") for i in range(n)]


def test_a_batch_asks_for_one_oauth_token_and_reuses_connections(own_standin):
    fcm, sender = own_standin
    for _ in range(4):
        assert all(o.status == "ok" for o in sender.send(_pushes(100)))
    assert fcm.state.token_grants == 1  # not one per send_each thread
    # The pool keeps up to a batch of connections: a smaller one would drop and reopen the
    # surplus on every batch.
    assert 1 <= fcm.state.connections <= 100
    assert len(fcm.received) == 400


def test_more_than_a_batch_is_sent_in_several_send_each_calls(own_standin):
    fcm, sender = own_standin
    outcomes = sender.send(_pushes(250))
    assert [o.status for o in outcomes] == ["ok"] * 250
    assert {r.token for r in fcm.received} == {f"tok-{i}" for i in range(250)}


def test_the_sdk_does_not_retry_or_sleep_by_itself(own_standin):
    fcm, sender = own_standin
    fcm.fail("tok-0", "UNAVAILABLE", retry_after=30)
    fcm.fail("tok-1", "INTERNAL")
    started = time.monotonic()
    outcomes = sender.send(_pushes(2))
    assert time.monotonic() - started < 5  # the SDK's own Retry would sleep 30 s
    assert [(o.status, o.retry_after_s) for o in outcomes] == [("retry", 30.0), ("retry", None)]
    assert fcm.attempts("tok-0") == fcm.attempts("tok-1") == 1


def test_errors_map_to_outcomes(own_standin):
    fcm, sender = own_standin
    for token, code in (("tok-0", "UNREGISTERED"), ("tok-1", "SENDER_ID_MISMATCH"),
                        ("tok-2", "INVALID_ARGUMENT"), ("tok-3", "QUOTA_EXCEEDED"),
                        ("tok-4", "THIRD_PARTY_AUTH_ERROR")):
        # (on a 401 google-auth refreshes its token and tries again: fail every time)
        fcm.fail(token, code, times=None)
    outcomes = sender.send(_pushes(6))
    assert [o.status for o in outcomes] == ["disable", "disable", "reject", "retry", "retry",
                                            "ok"]
    assert outcomes[0].error == "UNREGISTERED" and outcomes[1].error == "SENDER_ID_MISMATCH"


def test_a_message_the_sdk_refuses_does_not_sink_its_batch(own_standin):
    fcm, sender = own_standin
    pushes = _pushes(3)
    pushes[1] = Push(token="", platform="android", title="t", body="b")  # no target
    outcomes = sender.send(pushes)
    assert [o.status for o in outcomes] == ["ok", "reject", "ok"]
    assert {r.token for r in fcm.received} == {"tok-0", "tok-2"}


def test_wrong_credentials_are_retried_not_lost(own_standin):
    """A service account the token endpoint does not know: every push is retried later."""
    from firebase_admin import credentials

    from tests.notifications.fcm_standin import make_service_account

    fcm, _ = own_standin
    stranger, _ = make_service_account(fcm.token_uri, fcm.project_id)  # not trusted
    sender = FcmSender(credentials.Certificate(stranger), endpoint=fcm.endpoint, timeout_s=5)
    try:
        outcomes = sender.send(_pushes(3))
    finally:
        sender.close()
    assert [o.status for o in outcomes] == ["retry"] * 3
    assert fcm.received == []


def test_requests_reads_the_environment_once_unless_a_proxy_is_set(fcm, monkeypatch):
    """A CA bundle named in the environment is kept (set once); a proxy keeps requests'
    per-request look at the environment on."""
    from firebase_admin import credentials, messaging

    def session_of(sender: FcmSender):
        return messaging._get_messaging_service(sender.app)._client.session

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    plain = FcmSender(credentials.Certificate(fcm.service_account()), endpoint=fcm.endpoint)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    proxied = FcmSender(credentials.Certificate(fcm.service_account()), endpoint=fcm.endpoint)
    try:
        assert session_of(plain).trust_env is False
        assert session_of(plain).verify == "/etc/ssl/certs/ca-certificates.crt"
        assert session_of(proxied).trust_env is True
        assert [o.status for o in plain.send(_pushes(2))] == ["ok", "ok"]
    finally:
        plain.close()
        proxied.close()
