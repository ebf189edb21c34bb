"""A local stand-in for Firebase Cloud Messaging, spoken to by the real firebase-admin SDK.

There is no FCM emulator, so tests and the benchmark run a small HTTP server on 127.0.0.1
that speaks the two parts of the FCM HTTP v1 protocol the SDK uses:

- `POST /token`: Google's OAuth 2.0 token endpoint for service accounts (the JWT-bearer
  grant, RFC 7523). The assertion must be an RS256 JWT signed by the service account's key
  (checked against the public keys of the accounts made by `service_account()`), with
  Google's token endpoint as its audience (google-auth always names that one); the answer
  is `{"access_token", "expires_in", "token_type"}`.
- `POST /v1/projects/{project}/messages:send`: `{"message": {...}, "validate_only"?}` with
  `Authorization: Bearer <a token from /token>`; answers `{"name":
  "projects/{project}/messages/{id}"}` or Google's error body, `{"error": {"code", "message",
  "status", "details": [{"@type": "...FcmError", "errorCode"}]}}`, which the SDK turns into
  `UnregisteredError`, `SenderIdMismatchError`, `QuotaExceededError`, `UnavailableError`,
  `InvalidArgumentError`...

What it answers per registration token is scripted with `fail(token, code, times,
retry_after)`; everything it accepted is in `received`. A message without exactly one
target, with non-string data values, or bigger than FCM's 4,096-byte payload limit gets
INVALID_ARGUMENT, as FCM would answer.

Use it in-process (`with FcmStandIn() as fcm:`) or as its own process for load:
`python -m tests.notifications.fcm_standin --port 0` prints `READY <base url>`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
# FCM error code → (HTTP status, google.rpc status, message), as FCM answers them.
ERRORS = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push"),
}
MAX_PAYLOAD_BYTES = 4096
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def make_service_account(token_uri: str, project_id: str = "grid-standin") -> tuple[dict, bytes]:
    """A service-account JSON (as a dict) with a fresh RSA key, and its public key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": private_pem,
        "client_email": f"firebase-adminsdk-{uuid.uuid4().hex[:5]}@{project_id}"
                        ".iam.gserviceaccount.com",
        "client_id": str(uuid.uuid4().int)[:21],
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return info, public_pem


@dataclass
class Received:
    """One message FCM accepted."""

    name: str
    message: dict
    headers: dict
    validate_only: bool = False

    @property
    def token(self) -> str | None:
        return self.message.get("token")


@dataclass
class _Script:
    code: str
    times: int | None  # None: for ever
    retry_after: str | None = None


@dataclass
class _State:
    project_id: str
    public_keys: dict[str, bytes] = field(default_factory=dict)  # client_email → PEM
    access_tokens: set[str] = field(default_factory=set)
    scripts: dict[str, list[_Script]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    topics: dict[str, set[str]] = field(default_factory=dict)  # topic → subscribed tokens
    attempts: dict[str, int] = field(default_factory=dict)  # token → sends tried
    token_grants: int = 0
    requests: int = 0
    connections: int = 0  # TCP connections accepted (keep-alive reuses them)
    keep: bool = True  # keep accepted messages (off for load: memory)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's pool reuses connections
    # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm holds
    # the body until the client's delayed ACK (~40 ms per response on Linux).
    disable_nagle_algorithm = True
    state: _State  # set on the subclass made per server

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.state.lock:
            self.state.connections += 1

    def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: str, detail: str | None = None, headers: dict | None = None,
               fcm: bool = True) -> None:
        status, rpc, message = ERRORS[code]
        error = {"code": status, "message": detail or message, "status": rpc}
        if fcm:
            error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": code}]
        self._reply(status, {"error": error}, headers)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        with self.state.lock:
            self.state.requests += 1
        if self.path == "/token":
            return self._token(raw)
        if "/registrations/" in self.path:
            return self._topic_subscription(subscribe=True)
        prefix = f"/v1/projects/{self.state.project_id}/messages:send"
        if self.path != prefix:
            return self._reply(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                               "message": f"No such path {self.path}"}})
        return self._send(raw)

    def do_DELETE(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.state.lock:
            self.state.requests += 1
        return self._topic_subscription(subscribe=False)

    def _topic_subscription(self, subscribe: bool) -> None:
        """firebase-admin 7.7's topic management: `POST .../registrations/{token}/
        topicSubscriptions?topic_name=T` and `DELETE .../topicSubscriptions/{T}?allow_missing
        =true`, one request per token; a scripted error answers for that token."""
        split = urlsplit(self.path)
        m = re.fullmatch(rf"/v1/projects/{re.escape(self.state.project_id)}/registrations/"
                         r"([^/]+)/topicSubscriptions(?:/([^/]+))?", split.path)
        if self.headers.get("Authorization", "").removeprefix("Bearer ") not in (
                self.state.access_tokens):
            return self._error("THIRD_PARTY_AUTH_ERROR", fcm=False)
        topic = (parse_qs(split.query).get("topic_name") or [None])[0] if subscribe else (
            unquote(m.group(2)) if m and m.group(2) else None)
        if not m or not topic or not re.fullmatch(r"[a-zA-Z0-9\-_.~%]{1,900}", topic):
            return self._error("INVALID_ARGUMENT", "Malformed topic subscription.")
        token = unquote(m.group(1))
        with self.state.lock:
            queue = self.state.scripts.get(token)
            script = queue[0] if queue else None
            if script is not None and script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    queue.pop(0)
            if script is None:
                subscribed = self.state.topics.setdefault(topic, set())
                (subscribed.add if subscribe else subscribed.discard)(token)
        if script is not None:
            return self._error(script.code)
        self._reply(200, {})

    def _token(self, raw: bytes) -> None:
        form = parse_qs(raw.decode())
        grant = (form.get("grant_type") or [""])[0]
        assertion = (form.get("assertion") or [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not assertion:
            return self._reply(400, {"error": "unsupported_grant_type"})
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False})["iss"]
            key = self.state.public_keys[issuer]
            # google-auth always names Google's token endpoint as the audience.
            jwt.decode(assertion, key, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE)
        except (jwt.PyJWTError, KeyError) as exc:
            return self._reply(400, {"error": "invalid_grant", "error_description": str(exc)})
        token = f"ya29.standin-{uuid.uuid4().hex}"
        with self.state.lock:
            self.state.access_tokens.add(token)
            self.state.token_grants += 1
        self._reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _send(self, raw: bytes) -> None:
        auth = self.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.state.access_tokens:
            return self._reply(401, {"error": {
                "code": 401, "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials."}})
        try:
            body = json.loads(raw)
            message = body["message"]
            if not isinstance(message, dict):
                raise TypeError("message")
        except (ValueError, KeyError, TypeError):
            return self._error("INVALID_ARGUMENT", "Invalid JSON payload received.", fcm=False)
        problem = _invalid(message)
        if problem:
            return self._error("INVALID_ARGUMENT", problem)
        target = message.get("token")
        script = None
        with self.state.lock:
            if target is not None:
                self.state.attempts[target] = self.state.attempts.get(target, 0) + 1
                queue = self.state.scripts.get(target)
                if queue:
                    script = queue[0]
                    if script.times is not None:
                        script.times -= 1
                        if script.times <= 0:
                            queue.pop(0)
        if self.state.delay_s:
            time.sleep(self.state.delay_s)
        if script is not None:
            headers = {"Retry-After": script.retry_after} if script.retry_after else None
            return self._error(script.code, headers=headers)
        name = f"projects/{self.state.project_id}/messages/{next(self.state.ids)}"
        if self.state.keep:
            item = Received(name, message, {k.lower(): v for k, v in self.headers.items()},
                            bool(body.get("validate_only")))
            with self.state.lock:
                self.state.received.append(item)
        self._reply(200, {"name": name})


def _invalid(message: dict) -> str | None:
    """What FCM would reject as INVALID_ARGUMENT (the checks that matter to a sender)."""
    targets = [k for k in ("token", "fid", "topic", "condition") if message.get(k)]
    if len(targets) != 1:
        return "Exactly one of token, fid, topic or condition must be set."
    data = message.get("data") or {}
    if not all(isinstance(v, str) for v in data.values()):
        return "Invalid value at 'message.data': values must be strings."
    if len(json.dumps(message).encode()) > MAX_PAYLOAD_BYTES:
        return "Message is too big"
    android = message.get("android") or {}
    if android.get("priority") not in (None, "normal", "high"):
        return "Invalid value at 'message.android.priority'."
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a batch of 500 connects at once; the default backlog is 5


class FcmStandIn:
    """The stand-in server: `with FcmStandIn() as fcm: fcm.endpoint, fcm.service_account()`."""

    def __init__(self, project_id: str = "grid-standin", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = _State(project_id=project_id)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The base URL that replaces https://fcm.googleapis.com (FCM_ENDPOINT)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    @property
    def project_id(self) -> str:
        return self.state.project_id

    def start(self) -> FcmStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FcmStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def service_account(self) -> dict:
        """A service account whose token_uri is this server, trusted by it."""
        info, public_pem = make_service_account(self.token_uri, self.project_id)
        self.trust(info["client_email"], public_pem)
        return info

    def trust(self, client_email: str, public_pem: bytes) -> None:
        self.state.public_keys[client_email] = public_pem

    def fail(self, token: str, code: str, *, times: int | None = 1,
             retry_after: int | str | None = None) -> None:
        """Answer the next `times` sends to `token` (None: all of them) with an FCM error."""
        if code not in ERRORS:
            raise ValueError(code)
        with self.state.lock:
            self.state.scripts.setdefault(token, []).append(
                _Script(code, times, None if retry_after is None else str(retry_after)))

    @property
    def received(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.received)

    def received_for(self, token: str) -> list[Received]:
        return [r for r in self.received if r.token == token]

    def attempts(self, token: str) -> int:
        with self.state.lock:
            return self.state.attempts.get(token, 0)

    def reset(self) -> None:
        with self.state.lock:
            self.state.received.clear()
            self.state.attempts.clear()
            self.state.scripts.clear()
            self.state.topics.clear()

    def subscribed(self, topic: str) -> set[str]:
        with self.state.lock:
            return set(self.state.topics.get(topic, ()))

    def topic_messages(self) -> list[Received]:
        return [r for r in self.received if r.message.get("topic")]


def main(argv: list[str] | None = None) -> int:
    """Run as a process of its own (the benchmark): prints READY and the base URL, then the
    service account's JSON on one line, and serves until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", default="grid-standin")
    parser.add_argument("--keep", action="store_true", help="keep accepted messages")
    args = parser.parse_args(argv)
    standin = FcmStandIn(args.project, port=args.port)
    standin.state.keep = args.keep
    info = standin.service_account()
    print(f"READY {standin.endpoint}", flush=True)
    print(json.dumps(info), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        standin._server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
