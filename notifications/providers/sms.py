"""SMS (短信) providers: Aliyun SMS (阿里云短信服务 SendSms) over its signed REST API, and the
log for development.

In China an SMS goes out under an approved signature (签名) and template (模板): the
template id (`SMS_BROADCAST_TEMPLATE`, e.g. SMS_4871xxxx) and the signature are
configuration; our text fills the template's variables (`${title}`, `${text}`).

`send(phones, template, params)` returns one `Outcome` per number, never raises, and never
logs a number. SendSms takes up to 1,000 numbers with the same variables in one request.

Aliyun's request signature V3 (ACS3-HMAC-SHA256; V2/HMAC-SHA1 is discontinued), as its
"Request syntax and signature method V3" page says:

    CanonicalRequest = Method \\n CanonicalURI \\n CanonicalQueryString \\n
                       CanonicalHeaders \\n SignedHeaders \\n HashedRequestPayload
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(AccessKeySecret, StringToSign))
    Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<…>,Signature=<…>

with the RPC parameters form-encoded in the body (numbers stay out of URLs and access
logs), the body's SHA-256 in `x-acs-content-sha256`, and `host`, `content-type` and every
`x-acs-*` header signed (lower-case names, sorted, `name:value\\n` each).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, urlsplit

import requests

from notifications.providers.base import OK, Outcome

log = logging.getLogger("notifications.sms")

ALIYUN_ENDPOINT = "https://dysmsapi.aliyuncs.com"
ALIYUN_VERSION = "2017-05-25"
ALGORITHM = "ACS3-HMAC-SHA256"
MAX_NUMBERS = 1000

# Aliyun's codes: retried later (flow control, balance, our credentials), or not (the
# number, the template). Anything else not OK is retried.
RETRY = {"Throttling", "Throttling.User", "Throttling.Api", "isv.BUSINESS_LIMIT_CONTROL",
         "isv.DAY_LIMIT_CONTROL", "isv.AMOUNT_NOT_ENOUGH", "SignatureDoesNotMatch",
         "InvalidAccessKeyId.NotFound", "ServiceUnavailable", "InternalError"}
BAD_NUMBER = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT",
              "isv.BLACK_KEY_CONTROL_LIMIT"}
REJECT = {"isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL", "isv.INVALID_PARAMETERS",
          "isv.TEMPLATE_MISSING_PARAMETERS", "isv.PARAM_LENGTH_LIMIT", "MissingPhoneNumbers"}


class SmsProvider(Protocol):
    name: str
    max_numbers: int

    def send(self, phones: list[str], template: str, params: dict[str, str]) -> list[Outcome]:
        ...


class LogSms:
    """No SMS credentials: nothing is sent (and no number is logged)."""

    name = "log"
    max_numbers = MAX_NUMBERS

    def send(self, phones: list[str], template: str, params: dict[str, str]) -> list[Outcome]:
        log.info("would send SMS", extra={"template": template, "numbers": len(phones)})
        return [Outcome("ok", note="SMS not configured: not sent")] * len(phones)


def percent_encode(value: str) -> str:
    """RFC 3986: A-Z a-z 0-9 - _ . ~ as they are, everything else %XY of its UTF-8 bytes."""
    return quote(value, safe="-_.~")


def form_body(params: dict[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def sign_v3(method: str, url: str, headers: dict[str, str], body: bytes, key_id: str,
            secret: str, query: str = "") -> str:
    """The Authorization header of ACS3-HMAC-SHA256 for a request whose `headers` already
    hold host, content-type and the x-acs-* ones (x-acs-content-sha256 included)."""
    signed = {k.lower(): v.strip() for k, v in headers.items()
              if k.lower() in ("host", "content-type") or k.lower().startswith("x-acs-")}
    names = sorted(signed)
    canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
    signed_headers = ";".join(names)
    path = urlsplit(url).path or "/"
    canonical = "\n".join([method.upper(), path, query, canonical_headers, signed_headers,
                           hashlib.sha256(body).hexdigest()])
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={key_id},SignedHeaders={signed_headers},Signature={signature}"


class AliyunSms:
    """SendSms of dysmsapi 2017-05-25, paced to `rate_per_s` requests a second (the
    account's flow control; Aliyun answers Throttling.User past it)."""

    name = "aliyun"
    max_numbers = MAX_NUMBERS

    def __init__(self, key_id: str, secret: str, sign_name: str, *,
                 endpoint: str = ALIYUN_ENDPOINT, timeout_s: float = 10.0,
                 rate_per_s: float = 50.0) -> None:
        self.key_id, self._secret, self.sign_name = key_id, secret, sign_name
        self.endpoint = endpoint.rstrip("/") + "/"
        self.timeout_s = timeout_s
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.session.trust_env = False

    def _pace(self) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            time.sleep(wait)

    def request(self, params: dict[str, str]) -> requests.Response:
        body = form_body(params).encode()
        headers = {
            "host": urlsplit(self.endpoint).netloc,
            "content-type": "application/x-www-form-urlencoded",
            "x-acs-action": "SendSms",
            "x-acs-version": ALIYUN_VERSION,
            "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "x-acs-signature-nonce": uuid.uuid4().hex,
            "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        }
        headers["Authorization"] = sign_v3("POST", self.endpoint, headers, body, self.key_id,
                                           self._secret)
        self._pace()
        return self.session.post(self.endpoint, data=body, headers=headers,
                                 timeout=self.timeout_s)

    def send(self, phones: list[str], template: str, params: dict[str, str]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(phones), MAX_NUMBERS):
            outcomes += self._send_chunk(phones[start:start + MAX_NUMBERS], template, params)
        return outcomes

    def _send_chunk(self, phones: list[str], template: str,
                    params: dict[str, str]) -> list[Outcome]:
        try:
            r = self.request({"PhoneNumbers": ",".join(phones), "SignName": self.sign_name,
                              "TemplateCode": template,
                              "TemplateParam": json.dumps(params, ensure_ascii=False)})
            answer = r.json()
        except Exception as exc:  # noqa: BLE001 - connection, timeout, not JSON
            return [Outcome("retry", type(exc).__name__)] * len(phones)
        code = str(answer.get("Code"))
        if code == "OK":
            return [OK] * len(phones)
        if code in BAD_NUMBER and len(phones) > 1:
            # One bad number sinks the request: send the numbers one by one.
            return [o for p in phones for o in self._send_chunk([p], template, params)]
        error = f"Aliyun {r.status_code} {code}"  # not Message: it may quote a number
        if code in BAD_NUMBER:
            return [Outcome("disable", error)]
        if code in REJECT:
            return [Outcome("reject", error)] * len(phones)
        return [Outcome("retry", error, 1.0 if code.startswith("Throttling") else None)
                ] * len(phones)
