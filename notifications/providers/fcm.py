"""FCM through firebase-admin (`messaging.send_each`, topic messages, `subscribe_to_topic`),
or the log when no Firebase credentials are configured (development). The provider
interface is in providers/base.py.

- ok: FCM accepted it;
- disable: the token is gone (UNREGISTERED, SENDER_ID_MISMATCH): the device is disabled;
- reject: FCM refused the message itself (INVALID_ARGUMENT): not retried;
- retry: 429 (QUOTA_EXCEEDED), 5xx, timeouts, no connection, our credentials failing:
  retried later by the outbox with backoff, after `retry_after_s` when FCM sent Retry-After.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import urllib.request
import uuid
import warnings
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import firebase_admin
import requests
from firebase_admin import credentials, exceptions, messaging

from notifications.providers.base import OK, Outcome, Push

log = logging.getLogger("notifications.fcm")

GOOGLE_FCM_ENDPOINT = "https://fcm.googleapis.com"
MAX_BATCH = 500  # send_each's own limit


class LogSender:
    """No Firebase credentials (development): pushes are logged, the inbox has them."""

    name = "fcm"
    note = "FIREBASE_CREDENTIALS not set: logged, not pushed"
    max_tokens = 1000

    def send(self, pushes: list[Push]) -> list[Outcome]:
        for p in pushes:
            log.info("would push", extra={"platform": p.platform, "title": p.title,
                                          "collapse_key": p.collapse_key, "urgent": p.urgent,
                                          "token": p.token[:12] + "…"})
        return [Outcome("ok", note=self.note)] * len(pushes)

    def send_topic(self, topic: str, push: Push) -> Outcome:
        log.info("would push to a topic", extra={"topic": topic, "title": push.title})
        return Outcome("ok", note=self.note)

    def subscribe(self, topic: str, tokens: list[str]) -> list[Outcome]:
        return [Outcome("ok", note=self.note)] * len(tokens)

    unsubscribe = subscribe


# --- collapse keys on the wire ----------------------------------------------------------


def _short(key: str, limit: int, alphabet: str) -> str:
    """`key` if it fits the header's size and alphabet, else a stable digest that does."""
    if len(key.encode()) <= limit and re.fullmatch(alphabet, key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:limit]


def webpush_topic(key: str) -> str:
    # RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet.
    return _short(key.replace(":", "-").replace(".", "-"), 32, r"[A-Za-z0-9_-]+")


def apns_collapse_id(key: str) -> str:
    return _short(key, 64, r"[\x20-\x7e]+")  # apns-collapse-id: at most 64 bytes


def build_message(push: Push) -> messaging.Message:
    """The FCM message of one push, with the platform's collapse key (android collapse_key
    and notification tag, apns-collapse-id, webpush Topic and tag) so that a newer push of a
    thread replaces an older one on the phone, and its priority (urgent: high)."""
    ck = push.collapse_key
    android = apns = webpush = None
    if push.platform == "android":
        android = messaging.AndroidConfig(
            collapse_key=ck, priority="high" if push.urgent else "normal",
            notification=messaging.AndroidNotification(tag=ck) if ck else None)
    elif push.platform == "ios":
        headers = {"apns-priority": "10" if push.urgent else "5", "apns-push-type": "alert"}
        if ck:
            headers["apns-collapse-id"] = apns_collapse_id(ck)
        apns = messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(
            aps=messaging.Aps(thread_id=ck, sound="default" if push.urgent else None)))
    else:
        headers = {"Urgency": "high" if push.urgent else "normal"}
        if ck:
            headers["Topic"] = webpush_topic(ck)
        webpush = messaging.WebpushConfig(
            headers=headers, notification=messaging.WebpushNotification(tag=ck) if ck else None)
    with warnings.catch_warnings():
        # firebase-admin 7.7 deprecates `token` for `fid`; devices register FCM tokens.
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=push.token, data=push.data,
            notification=messaging.Notification(title=push.title, body=push.body),
            android=android, apns=apns, webpush=webpush)


def build_topic_message(topic: str, push: Push) -> messaging.Message:
    """The FCM message of a broadcast to a topic: one message for the Android, iOS and web
    devices on it, each with its platform's collapse key and priority."""
    ck = push.collapse_key
    headers = {"apns-priority": "10" if push.urgent else "5", "apns-push-type": "alert"}
    if ck:
        headers["apns-collapse-id"] = apns_collapse_id(ck)
    web_headers = {"Urgency": "high" if push.urgent else "normal"}
    if ck:
        web_headers["Topic"] = webpush_topic(ck)
    return messaging.Message(
        topic=topic, data=push.data,
        notification=messaging.Notification(title=push.title, body=push.body),
        android=messaging.AndroidConfig(
            collapse_key=ck, priority="high" if push.urgent else "normal",
            notification=messaging.AndroidNotification(tag=ck) if ck else None),
        apns=messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(
            aps=messaging.Aps(thread_id=ck, sound="default" if push.urgent else None))),
        webpush=messaging.WebpushConfig(headers=web_headers))


# --- outcomes ------------------------------------------------------------------------------


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify(exc: BaseException) -> Outcome:
    """The outcome of a failed send, from the SDK's exception."""
    text = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, messaging.UnregisteredError):
        return Outcome("disable", "UNREGISTERED")
    if isinstance(exc, messaging.SenderIdMismatchError):
        return Outcome("disable", "SENDER_ID_MISMATCH")
    if isinstance(exc, exceptions.InvalidArgumentError):
        return Outcome("reject", text)
    response = getattr(exc, "http_response", None)
    retry_after = retry_after_seconds(response.headers.get("Retry-After")) if (
        response is not None) else None
    return Outcome("retry", text, retry_after)


# Per-token topic (un)subscription errors (the SDK's reason strings).
_TOPIC_GONE = {"NOT_FOUND", "UNREGISTERED", "SENDER_ID_MISMATCH",
               "registration-token-not-registered"}
_TOPIC_REJECTED = {"INVALID_ARGUMENT", "invalid-argument", "PERMISSION_DENIED"}


def classify_topic_reason(reason: str) -> Outcome:
    if reason in _TOPIC_GONE:
        return Outcome("disable", reason)
    if reason in _TOPIC_REJECTED:
        return Outcome("reject", reason)
    return Outcome("retry", reason)  # RESOURCE_EXHAUSTED, QUOTA_EXCEEDED, 5xx, UNKNOWN


class FcmSender:
    """FCM HTTP v1 through firebase-admin, as an app of its own named per sender.

    `endpoint` replaces https://fcm.googleapis.com (FCM_ENDPOINT: a proxy, or the local
    stand-in the tests and the benchmark run). firebase-admin 7 has no setting for it, so
    two attributes of its messaging service are set here, and only here: the send URL, and
    the HTTP adapter for that endpoint, mounted with
    - no retries of its own: the SDK's default retries 500/503 up to 4 times inside the
      call and sleeps for Retry-After, which would hold the whole batch (and the worker);
      the outbox retries instead, later, with backoff and jitter;
    - a connection pool as large as a batch: send_each runs one thread per message, and a
      smaller pool would open and drop connections on every batch;
    - requests' per-request look at the environment only when it has something to find.
    tests/notifications/test_fcm_wire.py proves both against the pinned SDK.
    """

    name = "fcm"
    note = None
    max_tokens = 1000  # subscribe_to_topic's limit

    def __init__(self, credential: credentials.Certificate, *,
                 endpoint: str = GOOGLE_FCM_ENDPOINT, timeout_s: float = 10.0,
                 batch_size: int = MAX_BATCH) -> None:
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.credential = credential
        self.app = firebase_admin.initialize_app(
            credential, {"httpTimeout": timeout_s}, name=f"grid-notifications-{uuid.uuid4()}")
        service = messaging._get_messaging_service(self.app)
        endpoint = endpoint.rstrip("/")
        service._fcm_url = f"{endpoint}/v1/projects/{self.app.project_id}/messages:send"
        service._fcm_topic_url = f"{endpoint}/v1/projects/{self.app.project_id}/registrations"
        session = service._client.session
        session.mount(endpoint, requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=self.batch_size, max_retries=0))
        # While trust_env is on, requests re-reads the proxy variables, ~/.netrc and the CA
        # bundle variables on every request: 0.3 ms of CPU per push measured, a quarter of
        # the sender's cost. Keep it only when the environment configures a proxy (from
        # mainland China FCM is usually reached through one); a CA bundle it names is set
        # once instead.
        session.trust_env = bool(urllib.request.getproxies())
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle and not session.trust_env:
            session.verify = bundle
        self._token_lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str, **kwargs) -> FcmSender:
        return cls(credentials.Certificate(path), **kwargs)

    def _ensure_token(self) -> None:
        """Get the OAuth token once before a batch: otherwise each of send_each's threads
        finds it missing and asks the token endpoint itself."""
        google_credential = self.credential.get_credential()
        if not google_credential.valid:
            with self._token_lock:
                if not google_credential.valid:
                    self.credential.get_access_token()

    def send(self, pushes: list[Push]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(pushes), self.batch_size):
            outcomes += self._send_batch(pushes[start:start + self.batch_size])
        return outcomes

    def _send_batch(self, pushes: list[Push]) -> list[Outcome]:
        messages = [build_message(p) for p in pushes]
        try:
            self._ensure_token()
            return self._send_each(messages)
        except ValueError:
            # The SDK encodes the whole batch first: one message it refuses sinks all.
            return self._send_valid_ones(messages)
        except Exception as exc:  # noqa: BLE001 - token endpoint down, thread pool…
            log.warning("FCM batch failed", extra={"error": repr(exc)[:300]})
            return [classify(exc)] * len(messages)

    def _send_each(self, messages: list[messaging.Message]) -> list[Outcome]:
        responses = messaging.send_each(messages, app=self.app).responses
        return [OK if r.success else classify(r.exception) for r in responses]

    def _send_valid_ones(self, messages: list[messaging.Message]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(messages)
        valid = []
        for i, message in enumerate(messages):
            try:
                messaging._MessagingService.encode_message(message)
                valid.append(i)
            except ValueError as exc:  # FCM would refuse it too: INVALID_ARGUMENT
                outcomes[i] = Outcome("reject", f"ValueError: {exc}"[:500])
        if valid:
            try:
                sent = self._send_each([messages[i] for i in valid])
            except Exception as exc:  # noqa: BLE001
                sent = [classify(exc)] * len(valid)
            for i, outcome in zip(valid, sent, strict=True):
                outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def send_topic(self, topic: str, push: Push) -> Outcome:
        try:
            self._ensure_token()
            messaging.send(build_topic_message(topic, push), app=self.app)
        except ValueError as exc:
            return Outcome("reject", f"ValueError: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - FirebaseError, token endpoint down…
            return classify(exc)
        return OK

    def subscribe(self, topic: str, tokens: list[str]) -> list[Outcome]:
        return self._manage(messaging.subscribe_to_topic, topic, tokens)

    def unsubscribe(self, topic: str, tokens: list[str]) -> list[Outcome]:
        return self._manage(messaging.unsubscribe_from_topic, topic, tokens)

    def _manage(self, call, topic: str, tokens: list[str]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(tokens), self.max_tokens):
            chunk = tokens[start:start + self.max_tokens]
            try:
                self._ensure_token()
                response = call(chunk, topic, app=self.app)
            except ValueError as exc:
                outcomes += [Outcome("reject", f"ValueError: {exc}"[:500])] * len(chunk)
                continue
            except Exception as exc:  # noqa: BLE001
                outcomes += [classify(exc)] * len(chunk)
                continue
            errors = {e.index: e.reason for e in response.errors}
            outcomes += [classify_topic_reason(errors[i]) if i in errors else OK
                         for i in range(len(chunk))]
        return outcomes

    def close(self) -> None:
        firebase_admin.delete_app(self.app)
