"""Local stand-ins for Huawei Push Kit and Aliyun SMS, spoken to by our real clients
(notifications.providers.hms, notifications.providers.sms) over HTTP on 127.0.0.1, as
fcm_standin.py does for FCM.

Push Kit (`HmsStandIn`): `POST /oauth2/v3/token` (client credentials: client_id and
client_secret must match), `POST /v1/{app_id}/messages:send` (Bearer token; exactly one of
`token` [1…1,000], `topic`, `condition`; `data` a string), `POST /v1/{app_id}/topic:subscribe`
and `topic:unsubscribe` (`{"topic", "tokenArray"}`). Answers as Push Kit does: 80000000,
80100000 with `illegal_tokens` in `msg`, 80300007, 80200001/80200003, HTTP 503 (flow control)
with Retry-After, 81000001. Per token, `fail(token, "invalid"|"rate"|"internal", times)`.

Aliyun SMS (`SmsStandIn`): `POST /` SendSms signed with ACS3-HMAC-SHA256, checked here
from the request as Aliyun's page describes (canonical request from the signed headers,
body hash, HMAC with the secret), nonce not reused, date within 15 minutes; PhoneNumbers
(≤ 1,000 mainland mobiles), SignName, TemplateCode (one of `templates`), TemplateParam
(JSON, each variable ≤ 35 characters). Past `rate_per_s` requests in a second it answers
Throttling.User. `fail(phone, code, times)` scripts an answer for a request with that number.

Both run in-process (`with HmsStandIn() as hms:`) or as a process (`python -m
tests.notifications.standins hms|sms --port 0` prints `READY <base url>`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PHONE = re.compile(r"^1[3-9]\d{9}$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    owner: _StandIn

    def log_message(self, format, *args):  # noqa: A002
        pass

    def reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.owner.lock:
            self.owner.requests += 1
        self.owner.handle(self, raw)


class _StandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.keep = True
        self.scripts: dict[str, list[list]] = defaultdict(list)  # key → [[code, times]]
        handler = type("Handler", (_Base,), {"owner": self})
        self._server = _Server((host, port), handler)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, key: str, code: str, times: int | None = 1) -> None:
        with self.lock:
            self.scripts[key].append([code, times])

    def _scripted(self, key: str) -> str | None:
        queue = self.scripts.get(key)
        if not queue:
            return None
        code, times = queue[0]
        if times is not None:
            queue[0][1] -= 1
            if queue[0][1] <= 0:
                queue.pop(0)
        return code


# --- Huawei Push Kit ----------------------------------------------------------------------


class HmsStandIn(_StandIn):
    def __init__(self, app_id: str = "101234567", secret: str = "hms-secret", **kw) -> None:
        super().__init__(**kw)
        self.app_id, self.secret = app_id, secret
        self.tokens: set[str] = set()
        self.grants = 0
        self.received: list[dict] = []  # accepted messages: {"message", "tokens"|"topic"}
        self.topics: dict[str, set[str]] = defaultdict(set)
        self.expire_next = False  # answer the next send 80200003 (token expired)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.scripts.clear()
            self.topics.clear()

    def handle(self, h: _Base, raw: bytes) -> None:
        path = urlsplit(h.path).path
        if path == "/oauth2/v3/token":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if form.get("grant_type") != "client_credentials" or (
                    form.get("client_id"), form.get("client_secret")) != (self.app_id,
                                                                          self.secret):
                return h.reply(400, {"error": 1101, "error_description": "invalid client"})
            token = f"CF{uuid.uuid4().hex}"
            with self.lock:
                self.tokens.add(token)
                self.grants += 1
            return h.reply(200, {"access_token": token, "expires_in": 3600,
                                 "token_type": "Bearer"})
        auth = h.headers.get("Authorization", "").removeprefix("Bearer ")
        if auth not in self.tokens:
            return h.reply(401, {"code": "80200001", "msg": "Oauth authentication error"})
        with self.lock:
            expired, self.expire_next = self.expire_next, False
        if expired:
            self.tokens.discard(auth)
            return h.reply(401, {"code": "80200003", "msg": "Oauth token expired"})
        try:
            body = json.loads(raw)
        except ValueError:
            return h.reply(400, {"code": "80100001", "msg": "Illegal payload"})
        base = f"/v1/{self.app_id}/"
        if path == base + "messages:send":
            return self._send(h, body.get("message") or {})
        if path in (base + "topic:subscribe", base + "topic:unsubscribe"):
            return self._topic(h, body, path.endswith(":subscribe"))
        return h.reply(404, {"code": "80100000", "msg": "no such path"})

    def _send(self, h: _Base, message: dict) -> None:
        targets = [k for k in ("token", "topic", "condition") if message.get(k)]
        if len(targets) != 1 or not isinstance(message.get("data", ""), str):
            return h.reply(400, {"code": "80100003", "msg": "Illegal payload"})
        if "topic" in message:
            if not re.fullmatch(r"[\w\-.~%]{1,900}", message["topic"]):
                return h.reply(400, {"code": "80100003", "msg": "Illegal topic"})
            with self.lock:
                if self.keep:
                    self.received.append({"message": message, "topic": message["topic"]})
            return h.reply(200, {"code": "80000000", "msg": "Success", "requestId": "1"})
        tokens = message["token"]
        if not isinstance(tokens, list) or not 1 <= len(tokens) <= 1000:
            return h.reply(400, {"code": "80300010", "msg": "token count"})
        with self.lock:
            codes = {t: self._scripted(t) for t in tokens}
        if "rate" in codes.values():
            return h.reply(503, {"code": "80300001", "msg": "flow control"},
                           {"Retry-After": "30"})
        if "internal" in codes.values():
            return h.reply(500, {"code": "81000001", "msg": "System inner error"})
        illegal = [t for t, c in codes.items() if c == "invalid"]
        good = [t for t in tokens if t not in illegal]
        if good:
            with self.lock:
                if self.keep:
                    self.received.append({"message": message, "tokens": good})
        if not good:
            return h.reply(200, {"code": "80300007", "msg": "All the tokens are invalid"})
        if illegal:
            return h.reply(200, {"code": "80100000", "msg": json.dumps(
                {"success": len(good), "failure": len(illegal), "illegal_tokens": illegal})})
        return h.reply(200, {"code": "80000000", "msg": "Success", "requestId": "1"})

    def _topic(self, h: _Base, body: dict, subscribe: bool) -> None:
        topic, tokens = body.get("topic"), body.get("tokenArray")
        if not topic or not isinstance(tokens, list) or not 1 <= len(tokens) <= 1000:
            return h.reply(400, {"code": "80100001", "msg": "Illegal parameter"})
        errors = []
        with self.lock:
            for i, t in enumerate(tokens):
                code = self._scripted(t)
                if code == "rate":
                    return h.reply(503, {"code": "80300001", "msg": "flow control"},
                                   {"Retry-After": "30"})
                if code == "invalid":
                    errors.append({"index": i, "errorCode": "80300007"})
                elif subscribe:
                    self.topics[topic].add(t)
                else:
                    self.topics[topic].discard(t)
        return h.reply(200, {"code": "80000000", "msg": "Success", "requestId": "1",
                             "result": {"successCount": len(tokens) - len(errors),
                                        "failureCount": len(errors), "errors": errors}})

    def config(self) -> dict:
        return {"HMS_APP_ID": self.app_id, "HMS_CLIENT_SECRET": self.secret,
                "HMS_TOKEN_URL": f"{self.endpoint}/oauth2/v3/token",
                "HMS_PUSH_URL": self.endpoint, "HMS_TIMEOUT_S": 5.0}


# --- Aliyun SMS ----------------------------------------------------------------------------


class SmsStandIn(_StandIn):
    def __init__(self, key_id: str = "LTAI-standin", secret: str = "sms-secret",
                 templates: tuple[str, ...] = ("SMS_480000001",), rate_per_s: int = 0,
                 **kw) -> None:
        super().__init__(**kw)
        self.key_id, self.secret, self.templates = key_id, secret, set(templates)
        self.rate_per_s = rate_per_s  # 0: no flow control
        self.nonces: set[str] = set()
        self.window: list[float] = []
        self.sent: list[dict] = []  # accepted: {"phones", "template", "params", "sign"}

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()
            self.scripts.clear()

    def phones(self) -> list[str]:
        return [p for s in self.sent for p in s["phones"]]

    def _check_signature(self, h: _Base, raw: bytes) -> str | None:
        auth = h.headers.get("Authorization", "")
        m = re.fullmatch(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),"
                         r"Signature=([0-9a-f]{64})", auth)
        if not m or m.group(1) != self.key_id:
            return "InvalidAccessKeyId.NotFound"
        names = m.group(2).split(";")
        if names != sorted(names) or not {"host", "x-acs-action", "x-acs-date",
                                           "x-acs-signature-nonce", "x-acs-version",
                                           "x-acs-content-sha256"} <= set(names):
            return "SignatureDoesNotMatch"
        if hashlib.sha256(raw).hexdigest() != h.headers.get("x-acs-content-sha256"):
            return "SignatureDoesNotMatch"
        headers = "".join(f"{n}:{(h.headers.get(n) or '').strip()}\n" for n in names)
        split = urlsplit(h.path)
        query = "&".join(sorted(split.query.split("&"))) if split.query else ""
        canonical = "\n".join(["POST", unquote(split.path) or "/", query, headers, m.group(2),
                               hashlib.sha256(raw).hexdigest()])
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
        expected = hmac.new(self.secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, m.group(3)):
            return "SignatureDoesNotMatch"
        when = datetime.strptime(h.headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ")
        if abs((datetime.now(UTC) - when.replace(tzinfo=UTC)).total_seconds()) > 900:
            return "InvalidTimeStamp.Expired"
        nonce = h.headers.get("x-acs-signature-nonce")
        with self.lock:
            if nonce in self.nonces:
                return "SignatureNonceUsed"
            self.nonces.add(nonce)
        return None

    def handle(self, h: _Base, raw: bytes) -> None:
        problem = self._check_signature(h, raw)
        if problem:
            return h.reply(400, {"Code": problem, "Message": problem, "RequestId": "1"})
        if (h.headers.get("x-acs-action"), h.headers.get("x-acs-version")) != (
                "SendSms", "2017-05-25"):
            return h.reply(400, {"Code": "InvalidAction.NotFound", "RequestId": "1"})
        if self.rate_per_s:
            now = time.monotonic()
            with self.lock:
                self.window = [t for t in self.window if now - t < 1.0]
                limited = len(self.window) >= self.rate_per_s
                if not limited:
                    self.window.append(now)
            if limited:
                return h.reply(400, {"Code": "Throttling.User", "RequestId": "1",
                                     "Message": "Request was denied due to user flow control."})
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        phones = (form.get("PhoneNumbers") or "").split(",")
        code = self._business(form, phones)
        if code != "OK":
            return h.reply(200, {"Code": code, "Message": code, "RequestId": "1"})
        with self.lock:
            if self.keep:
                self.sent.append({"phones": phones, "template": form["TemplateCode"],
                                  "params": json.loads(form["TemplateParam"]),
                                  "sign": form.get("SignName")})
        return h.reply(200, {"Code": "OK", "Message": "OK", "BizId": uuid.uuid4().hex,
                             "RequestId": "1"})

    def _business(self, form: dict, phones: list[str]) -> str:
        if len(phones) > 1000:
            return "isv.MOBILE_COUNT_OVER_LIMIT"
        if not all(PHONE.match(p) for p in phones):
            return "isv.MOBILE_NUMBER_ILLEGAL"
        if form.get("TemplateCode") not in self.templates:
            return "isv.SMS_TEMPLATE_ILLEGAL"
        if not form.get("SignName"):
            return "isv.SMS_SIGNATURE_ILLEGAL"
        try:
            params = json.loads(form.get("TemplateParam") or "")
        except ValueError:
            return "isv.INVALID_JSON_PARAM"
        if not {"title", "text"} <= set(params):
            return "isv.TEMPLATE_MISSING_PARAMETERS"
        if any(len(str(v)) > 35 for v in params.values()):
            return "isv.PARAM_LENGTH_LIMIT"
        with self.lock:
            for p in phones:
                code = self._scripted(p)
                if code:
                    return code
        return "OK"

    def config(self, template: str = "SMS_480000001") -> dict:
        return {"ALIYUN_SMS_ACCESS_KEY_ID": self.key_id,
                "ALIYUN_SMS_ACCESS_KEY_SECRET": self.secret,
                "ALIYUN_SMS_SIGN_NAME": "富阳网格", "ALIYUN_SMS_ENDPOINT": self.endpoint,
                "SMS_BROADCAST_TEMPLATE": template, "SMS_RATE_PER_S": 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("hms", "sms"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=int, default=0, help="SMS requests a second (0: any)")
    args = parser.parse_args(argv)
    standin = HmsStandIn(port=args.port) if args.kind == "hms" else SmsStandIn(
        port=args.port, rate_per_s=args.rate)
    standin.keep = False
    print(f"READY {standin.endpoint}", flush=True)
    print(json.dumps(standin.config()), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        standin._server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
