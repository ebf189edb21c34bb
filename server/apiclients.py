"""Keys of other systems that call us server to server (the 12345 hotline, Open311 apps).

A client has a public key id and a secret, shown once when an admin creates it and kept
encrypted (the secret must be readable to check HMAC signatures). Open311 sends
`api_key=<key_id>.<secret>`; the hotline sends `X-Api-Key: <key_id>` and signs each body:
`X-Signature: hex(HMAC-SHA256(secret, "<X-Timestamp>." + body))`, timestamps within 5 min.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import g, request
from flask.views import MethodView
from marshmallow import fields, validate
from sqlalchemy.orm import Mapped, Session, mapped_column

from server import audit, db, pii, ratelimit
from server.api import Blueprint, Schema
from server.auth.actor import Actor, credential_headers, current_actor, login_required
from server.db import Base
from server.errors import Forbidden, NotFound, Unauthorized

KINDS = {"hotline": "12345热线", "open311": "Open311 应用", "system": "其他系统"}
# What a key of each kind is for, in the answer to a key used at the wrong door.
KIND_USES = {"hotline": "the hotline intake", "open311": "Open311",
             "system": "system intake"}
CLOCK_SKEW_S = 300
# What a client may do, by kind (it acts as a system actor with these permissions).
KIND_PERMISSIONS = {"hotline": frozenset({"case:report"}), "open311": frozenset({"case:report"}),
                    "system": frozenset({"case:report", "registry:feed"})}


class ApiClient(Base):
    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    key_id: Mapped[str] = mapped_column(sa.String(32), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    secret_enc: Mapped[str] = mapped_column(sa.Text, nullable=False)
    requests_per_minute: Mapped[int] = mapped_column(sa.Integer, nullable=False,
                                                     server_default="120")
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)

    __table_args__ = (sa.CheckConstraint("kind IN ('hotline', 'open311', 'system')",
                                         name="kind"),)


def create_client(s: Session, actor: Actor, data: dict) -> tuple[ApiClient, str]:
    actor.require("apiclient:manage")
    secret = secrets.token_urlsafe(32)
    client = ApiClient(key_id=secrets.token_hex(8), name=data["name"], kind=data["kind"],
                       secret_enc=pii.encrypt(secret, "api_client.secret"),
                       requests_per_minute=data.get("requests_per_minute", 120),
                       created_by=actor.user_id)
    s.add(client)
    s.flush()
    audit.record(s, actor, "api_client_created", "api_client", client.id,
                 changes={"name": client.name, "kind": client.kind})
    return client, secret


def set_active(s: Session, actor: Actor, client_id: int, active: bool) -> ApiClient:
    actor.require("apiclient:manage")
    client = s.get(ApiClient, client_id)
    if client is None:
        raise NotFound("No such API client")
    client.active = active
    audit.record(s, actor, "api_client_" + ("enabled" if active else "disabled"),
                 "api_client", client.id)
    s.flush()
    return client


def _client_actor(s: Session, client: ApiClient, ip: str | None, request_id: str | None
                  ) -> Actor:
    ratelimit.hit(s, f"api_client:{client.id}", client.requests_per_minute, 60,
                  "Too many requests for this API key")
    return replace(Actor(user_id=None, ip=ip, request_id=request_id),
                   roles=frozenset({f"api:{client.kind}"}),
                   permissions=KIND_PERMISSIONS[client.kind])


def _active(s: Session, key_id: str, kind: str) -> ApiClient:
    client = s.scalars(sa.select(ApiClient).where(ApiClient.key_id == key_id,
                                                  ApiClient.kind == kind,
                                                  ApiClient.active)).first()
    if client is None:
        raise Unauthorized("Unknown or disabled API key")
    return client


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of what a caller sent (any characters: compare_digest
    refuses non-ASCII str with a TypeError, which would be a 500) with what we expect."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


def by_api_key(s: Session, api_key: str | None, kind: str, ip: str | None = None,
               request_id: str | None = None) -> tuple[ApiClient, Actor]:
    """The client of an `api_key` (key_id.secret), as a rate-limited system actor. A
    genuine key of another kind is a 403 that says what it is for (only once the secret
    matched: a guesser learns nothing)."""
    key_id, _, secret = (api_key or "").partition(".")
    client = s.scalars(sa.select(ApiClient).where(ApiClient.key_id == key_id,
                                                  ApiClient.active)).first()
    if client is None or not _same(secret, pii.decrypt(client.secret_enc,
                                                       "api_client.secret")):
        raise Unauthorized("Unknown or disabled API key")
    if client.kind != kind:
        raise Forbidden(f"This API key is for {KIND_USES[client.kind]}, not "
                        f"{KIND_USES[kind]}")
    return client, _client_actor(s, client, ip, request_id)


@dataclass(frozen=True)
class Signer:
    """The API client that signed the request (`g.api_client` in a `signed` view)."""

    id: int
    name: str


def signed(kind: str, *, what: str = "body") -> Callable:
    """The view's caller is the API client of `kind` that signed the request: `X-Api-Key`,
    `X-Timestamp` and `X-Signature` = hex HMAC-SHA256(secret, timestamp + "." + the body,
    or + the path for a GET, which has none: then a signature is good for one resource).
    401 otherwise, checked before the body is even parsed: an unsigned caller learns
    nothing about what we accept. Sets `g.actor` and `g.api_client` (a Signer)."""
    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            signed_part = request.path.encode() if what == "path" else request.get_data()
            with db.unit_of_work() as s:
                client, g.actor = by_signature(
                    s, request.headers.get("X-Api-Key"), request.headers.get("X-Timestamp"),
                    request.headers.get("X-Signature"), signed_part, kind,
                    request.remote_addr, g.get("request_id"))
                g.api_client = Signer(client.id, client.name)
            return func(*args, **kwargs)
        # unsigned calls are a 401 before any request hook looks at the input
        wrapper._check_credentials = credential_headers("X-Api-Key", "X-Timestamp",
                                                        "X-Signature")
        return wrapper
    return decorator


def by_signature(s: Session, key_id: str | None, timestamp: str | None,
                 signature: str | None, body: bytes, kind: str, ip: str | None = None,
                 request_id: str | None = None, at: float | None = None
                 ) -> tuple[ApiClient, Actor]:
    """The client that signed `body`; 401 for a bad key, signature or stale timestamp."""
    client = _active(s, key_id or "", kind)
    try:
        sent_at = int(timestamp or "")
    except ValueError:
        raise Unauthorized("X-Timestamp must be Unix seconds") from None
    if abs((at or time.time()) - sent_at) > CLOCK_SKEW_S:
        raise Unauthorized("X-Timestamp is more than 5 minutes away from our clock")
    secret = pii.decrypt(client.secret_enc, "api_client.secret").encode()
    expected = hmac.new(secret, f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest()
    if not _same(expected, (signature or "").lower()):
        raise Unauthorized("Bad signature")
    return client, _client_actor(s, client, ip, request_id)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """What a caller puts in X-Signature (for integrators and tests)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


# --- HTTP (admins) ------------------------------------------------------------------------


class ApiClientSchema(Schema):
    id = fields.Integer(dump_only=True)
    key_id = fields.String(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    kind = fields.String(required=True, validate=validate.OneOf(list(KINDS)))
    requests_per_minute = fields.Integer(validate=validate.Range(min=1, max=100_000))
    active = fields.Boolean(dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)


class NewApiClientSchema(ApiClientSchema):
    secret = fields.String(dump_only=True, metadata={"description": "Shown once"})
    api_key = fields.String(dump_only=True, metadata={"description": "key_id.secret"})


blp = Blueprint("api_clients", __name__, url_prefix="/api-clients",
                description="Keys of other systems (12345 hotline, Open311 apps)")


@blp.route("")
class ApiClients(MethodView):
    @blp.response(200, ApiClientSchema(many=True))
    @login_required
    def get(self):
        """Every client key (apiclient:manage: platform administrators, since a key reaches
        every district); secrets are never shown again."""
        current_actor().require("apiclient:manage")
        return list(db.session().scalars(sa.select(ApiClient).order_by(ApiClient.id)))

    @blp.arguments(ApiClientSchema)
    @blp.response(201, NewApiClientSchema)
    @login_required
    def post(self, data):
        """Issue a key: the answer carries the secret, once."""
        with db.unit_of_work() as s:
            client, secret = create_client(s, current_actor(), data)
        client.secret, client.api_key = secret, f"{client.key_id}.{secret}"  # shown once
        return client, 201


@blp.route("/<int:client_id>/disable", methods=["POST"])
@blp.response(200, ApiClientSchema)
@login_required
def disable(client_id):
    with db.unit_of_work() as s:
        return set_active(s, current_actor(), client_id, False)
