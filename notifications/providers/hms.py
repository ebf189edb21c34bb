"""Huawei Push Kit (华为推送服务) through its server REST API, with `requests`.

Huawei publishes no maintained Python SDK: its "server demo" (HMS-Core/hms-push-serverdemo-
python, 2020, sample code, not on PyPI) and unofficial wrappers (pyhcm) are all there is, so
this speaks the protocol itself:

- `POST {token_url}` (oauth-login.cloud.huawei.com/oauth2/v3/token), form
  `grant_type=client_credentials&client_id&client_secret` → `{"access_token",
  "expires_in", "token_type"}`; the token is kept until a minute before it expires, and
  fetched again at once when a send answers 80200003 (expired);
- `POST {push_url}/v1/{app_id}/messages:send` with `Authorization: Bearer …`, body
  `{"validate_only": false, "message": {"notification", "data" (a string), "android",
  "token": [≤ 1,000] | "topic" | "condition"}}` → `{"code", "msg", "requestId"}`: 80000000
  all sent; 80100000 some tokens refused (`msg` is JSON with `illegal_tokens`); 80300007 all
  tokens invalid; 80200001/80200003 OAuth; 80300008/80100003… a bad message; 81000001 and
  HTTP 5xx (503: flow control) a retry;
- `POST {push_url}/v1/{app_id}/topic:subscribe` and `topic:unsubscribe`, `{"topic",
  "tokenArray": [≤ 1,000]}` → `{"code", "msg", "requestId", "result"?: {"successCount",
  "failureCount", "errors": [{"index", "errorCode"}]}}` (80300007 in errors: token gone).

Pushes with the same content (a broadcast's) share one request of up to 1,000 tokens; a
batch of different ones is sent `concurrency` requests at a time over one keep-alive pool.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from notifications.providers.base import OK, Outcome, Push
from notifications.providers.fcm import retry_after_seconds

log = logging.getLogger("notifications.hms")

TOKEN_URL = "https://oauth-login.cloud.huawei.com/oauth2/v3/token"
PUSH_URL = "https://push-api.cloud.huawei.com"
MAX_TOKENS = 1000

SUCCESS, PARTIAL, ALL_INVALID = "80000000", "80100000", "80300007"
AUTH_EXPIRED = {"80200003"}
RETRY_CODES = {"80200001", "81000001", "80300002"}  # auth, internal, no permission yet


def build_message(push: Push, *, tokens: list[str] | None = None,
                  topic: str | None = None) -> dict:
    """The Push Kit message: a notification message the phone shows itself (click opens
    the app), `tag` so that a newer push of a thread replaces the older, HIGH urgency for
    urgent ones. Push Kit's android.collapse_key is a number (-1…100), so the thread goes in
    the tag; `data` is a string."""
    notification = {"title": push.title, "body": push.body, "click_action": {"type": 3},
                    "importance": "HIGH" if push.urgent else "NORMAL"}
    if push.collapse_key:
        notification["tag"] = push.collapse_key[:100]
    message = {
        "data": json.dumps(push.data, ensure_ascii=False, separators=(",", ":")),
        "notification": {"title": push.title, "body": push.body},
        "android": {"urgency": "HIGH" if push.urgent else "NORMAL",
                    "notification": notification},
    }
    if topic is not None:
        message["topic"] = topic
    else:
        message["token"] = tokens or [push.token]
    return {"validate_only": False, "message": message}


class HmsProvider:
    name = "hms"
    note = None
    max_tokens = MAX_TOKENS

    def __init__(self, app_id: str, client_secret: str, *, client_id: str | None = None,
                 token_url: str = TOKEN_URL, push_url: str = PUSH_URL,
                 timeout_s: float = 10.0, concurrency: int = 64) -> None:
        self.app_id, self.client_id = app_id, client_id or app_id
        self._secret = client_secret
        self.token_url, self.push_url = token_url, push_url.rstrip("/")
        self.timeout_s, self.concurrency = timeout_s, max(1, concurrency)
        self.session = requests.Session()
        self.session.trust_env = False  # proxies are not read per request (see fcm.py)
        adapter = requests.adapters.HTTPAdapter(pool_connections=2,
                                                pool_maxsize=self.concurrency, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="hms")

    # --- OAuth 2.0 client credentials -----------------------------------------------------

    def _access_token(self, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires:
                r = self.session.post(self.token_url, data={
                    "grant_type": "client_credentials", "client_id": self.client_id,
                    "client_secret": self._secret}, timeout=self.timeout_s)
                r.raise_for_status()
                body = r.json()
                self._token = body["access_token"]
                self._expires = time.monotonic() + max(60, int(body.get("expires_in", 3600))
                                                       - 60)
            return self._token

    def _post(self, path: str, body: dict) -> tuple[int, dict, requests.Response]:
        """POST with the app's token; once more with a fresh token if it had expired."""
        url = f"{self.push_url}/v1/{self.app_id}/{path}"
        data = json.dumps(body, ensure_ascii=False).encode()
        for renew in (False, True):
            r = self.session.post(url, data=data, timeout=self.timeout_s, headers={
                "Authorization": f"Bearer {self._access_token(renew)}",
                "Content-Type": "application/json; charset=UTF-8"})
            try:
                answer = r.json()
            except ValueError:
                answer = {}
            if str(answer.get("code")) not in AUTH_EXPIRED and r.status_code != 401:
                break
        return r.status_code, answer, r

    # --- sending --------------------------------------------------------------------------

    def send(self, pushes: list[Push]) -> list[Outcome]:
        """One request per distinct content, ≤ 1,000 tokens each, `concurrency` at once."""
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(pushes):
            key = json.dumps([p.title, p.body, p.data, p.collapse_key, p.urgent],
                             sort_keys=True, ensure_ascii=False)
            groups.setdefault(key, []).append(i)
        jobs = []
        for indexes in groups.values():
            for start in range(0, len(indexes), MAX_TOKENS):
                jobs.append(indexes[start:start + MAX_TOKENS])
        outcomes: list[Outcome | None] = [None] * len(pushes)
        results = self._pool.map(lambda idx: self._send_tokens(
            pushes[idx[0]], [pushes[i].token for i in idx]), jobs)
        for indexes, sent in zip(jobs, results, strict=True):
            for i, outcome in zip(indexes, sent, strict=True):
                outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def _send_tokens(self, push: Push, tokens: list[str]) -> list[Outcome]:
        try:
            status, answer, response = self._post("messages:send",
                                                  build_message(push, tokens=tokens))
        except Exception as exc:  # noqa: BLE001 - connection, timeout, token endpoint
            return [Outcome("retry", f"{type(exc).__name__}: {exc}"[:500])] * len(tokens)
        code = str(answer.get("code"))
        if status == 200 and code == SUCCESS:
            return [OK] * len(tokens)
        if code == PARTIAL:
            illegal = set(_illegal_tokens(answer.get("msg")))
            return [Outcome("disable", f"HMS {PARTIAL} illegal token") if t in illegal else OK
                    for t in tokens]
        return [classify(status, answer, response)] * len(tokens)

    def send_topic(self, topic: str, push: Push) -> Outcome:
        try:
            status, answer, response = self._post("messages:send",
                                                  build_message(push, topic=topic))
        except Exception as exc:  # noqa: BLE001
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:500])
        if status == 200 and str(answer.get("code")) == SUCCESS:
            return OK
        return classify(status, answer, response)

    # --- topics ---------------------------------------------------------------------------

    def subscribe(self, topic: str, tokens: list[str]) -> list[Outcome]:
        return self._manage("topic:subscribe", topic, tokens)

    def unsubscribe(self, topic: str, tokens: list[str]) -> list[Outcome]:
        return self._manage("topic:unsubscribe", topic, tokens)

    def _manage(self, path: str, topic: str, tokens: list[str]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(tokens), MAX_TOKENS):
            chunk = tokens[start:start + MAX_TOKENS]
            try:
                status, answer, response = self._post(path, {"topic": topic,
                                                             "tokenArray": chunk})
            except Exception as exc:  # noqa: BLE001
                outcomes += [Outcome("retry", f"{type(exc).__name__}: {exc}"[:500])] * len(chunk)
                continue
            if status != 200 or str(answer.get("code")) not in (SUCCESS, PARTIAL):
                outcomes += [classify(status, answer, response)] * len(chunk)
                continue
            errors = {e.get("index"): str(e.get("errorCode") or e.get("code"))
                      for e in (answer.get("result") or {}).get("errors") or []}
            outcomes += [(Outcome("disable", f"HMS {errors[i]}") if errors[i] == ALL_INVALID
                          else Outcome("retry", f"HMS {errors[i]}")) if i in errors else OK
                         for i in range(len(chunk))]
        return outcomes

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.session.close()


def _illegal_tokens(msg: object) -> list[str]:
    """The refused tokens of an 80100000 answer: `msg` is a JSON string."""
    try:
        detail = json.loads(msg) if isinstance(msg, str) else (msg or {})
    except ValueError:
        return []
    found = detail.get("illegal_tokens") or detail.get("illegalTokens") or []
    if isinstance(found, dict):  # {"reason": [tokens]} in newer answers
        return [t for tokens in found.values() for t in tokens]
    return list(found)


def classify(status: int, answer: dict, response: requests.Response | None = None) -> Outcome:
    """The outcome of a refused request, from its HTTP status and Push Kit's code."""
    code = str(answer.get("code"))
    text = f"HMS {status} {code} {answer.get('msg')}"[:500]
    if code == ALL_INVALID:
        return Outcome("disable", text)
    retry_after = retry_after_seconds(response.headers.get("Retry-After")) if (
        response is not None) else None
    if status in (429, 500, 502, 503, 504) or code in RETRY_CODES | AUTH_EXPIRED or (
            status == 401):
        return Outcome("retry", text, retry_after)
    return Outcome("reject", text)
