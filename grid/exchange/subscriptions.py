"""Webhook subscriptions (事件订阅) of API clients, their delivery log (投递记录) and replay
(重发). Administrators (apiclient:manage) manage them, as they manage the clients' keys.

A subscription belongs to a client of kind `system` (events about cases, warnings,
broadcasts and the register) or `hotline` (回单 about its own tickets). Its callback URL
must be https — plain http only to hosts on an allow-list (local receivers in tests and
development) — and may not point at a private or loopback address unless allow-listed.
The signing secret is shown once.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.cases.models import CaseCategory
from grid.exchange.events import EVENT_TYPES
from grid.exchange.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from server import audit, clock, db, pii
from server.apiclients import ApiClient
from server.auth.actor import Actor
from server.errors import Invalid, NotFound, field_errors

SECRET_PREFIX = "whsec_"
SUBSCRIBING_KINDS = ("system", "hotline")
MANAGE = "apiclient:manage"


@dataclass(frozen=True)
class UrlRules:
    """Which callback URLs are accepted: https anywhere public; http and private addresses
    only for the hosts listed (e.g. "127.0.0.1,localhost" for local receivers)."""

    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Any) -> UrlRules:
        hosts = config.get("WEBHOOK_ALLOWED_HOSTS", "") or ""
        return cls(frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()))


def check_url(url: str, rules: UrlRules) -> str:
    """The URL if acceptable, else a 422 on `url` saying why."""
    def bad(message: str) -> Invalid:
        return Invalid(field_errors("url", message))

    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise bad("Not a URL.") from None
    if parts.scheme not in ("https", "http") or not host:
        raise bad("An absolute https URL is required.")
    if parts.username or parts.password:
        raise bad("No credentials in the URL: requests are signed.")
    if parts.fragment:
        raise bad("No fragment in a callback URL.")
    allowed = host in rules.allowed_hosts
    if parts.scheme == "http" and not allowed:
        raise bad("Use https (plain http only for allow-listed hosts).")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not allowed and not address.is_global:
        raise bad("A private, loopback or reserved address is not allowed.")
    if host == "localhost" and not allowed:
        raise bad("localhost is not allowed.")
    return url


def _client(s: Session, client_id: int) -> ApiClient:
    client = s.get(ApiClient, client_id)
    if client is None:
        raise Invalid(field_errors("client_id", "No such API client."))
    if client.kind not in SUBSCRIBING_KINDS:
        raise Invalid(field_errors("client_id", "Only system and hotline clients subscribe "
                                                "to events."))
    return client


def _check_filters(s: Session, client: ApiClient, data: dict) -> None:
    wrong = [t for t in data["event_types"] if EVENT_TYPES[t][1] != client.kind]
    if wrong:
        raise Invalid(field_errors("event_types", f"Not for a {client.kind} client: "
                                                  + ", ".join(wrong)))
    if data.get("area_id") is not None and s.get(Area, data["area_id"]) is None:
        raise Invalid(field_errors("area_id", "No such area."))
    categories = data.get("category_ids") or []
    found = s.scalars(sa.select(CaseCategory.id).where(CaseCategory.id.in_(categories))).all()
    if len(set(found)) != len(set(categories)):
        raise Invalid(field_errors("category_ids", "No such category."))


def create_subscription(s: Session, actor: Actor, data: dict, rules: UrlRules
                        ) -> tuple[WebhookSubscription, str]:
    """A new subscription and its signing secret (shown once). Granting personal data is
    an explicit, audited decision."""
    actor.require(MANAGE)
    client = _client(s, data["client_id"])
    check_url(data["url"], rules)
    _check_filters(s, client, data)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    sub = WebhookSubscription(
        client_id=client.id, url=data["url"], event_types=sorted(set(data["event_types"])),
        area_id=data.get("area_id"), category_ids=sorted(set(data.get("category_ids") or [])),
        personal_data=data.get("personal_data", False), description=data.get("description"),
        secret_enc=pii.encrypt(secret, "webhook.secret"), created_by=actor.user_id)
    s.add(sub)
    s.flush()
    audit.record(s, actor, "webhook_subscription_created", "webhook_subscription", sub.id,
                 changes={"client_id": client.id, "url": sub.url, "types": sub.event_types,
                          "area_id": sub.area_id, "category_ids": sub.category_ids})
    if sub.personal_data:
        audit.record(s, actor, "webhook_personal_data_granted", "webhook_subscription",
                     sub.id, changes={"client_id": client.id, "reason": data.get("reason")})
    return sub, secret


def get_subscription(s: Session, actor: Actor, sub_id: int) -> WebhookSubscription:
    actor.require(MANAGE)
    sub = s.get(WebhookSubscription, sub_id)
    if sub is None:
        raise NotFound("No such subscription")
    return sub


def list_subscriptions(s: Session, actor: Actor, filters: dict, page: Any
                       ) -> list[WebhookSubscription]:
    actor.require(MANAGE)
    stmt = sa.select(WebhookSubscription).order_by(WebhookSubscription.id)
    for name in ("client_id", "active"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(WebhookSubscription, name) == filters[name])
    return db.paginate(s, stmt, page)


def set_active(s: Session, actor: Actor, sub_id: int, active: bool) -> WebhookSubscription:
    """Pause (its pending deliveries wait) or resume a subscription."""
    sub = get_subscription(s, actor, sub_id)
    sub.active = active
    audit.record(s, actor, "webhook_subscription_" + ("enabled" if active else "disabled"),
                 "webhook_subscription", sub.id)
    s.flush()
    return sub


# --- the delivery log and replay ----------------------------------------------------------


def deliveries(s: Session, actor: Actor, sub_id: int, filters: dict, page: Any
               ) -> list[WebhookDelivery]:
    """The subscription's deliveries, newest first (by state, event type)."""
    get_subscription(s, actor, sub_id)
    stmt = sa.select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id)
    for name in ("state", "event_type"):
        if filters.get(name):
            stmt = stmt.where(getattr(WebhookDelivery, name) == filters[name])
    return db.paginate(s, stmt.order_by(WebhookDelivery.id.desc()), page)


def get_delivery(s: Session, actor: Actor, sub_id: int, delivery_id: int) -> WebhookDelivery:
    get_subscription(s, actor, sub_id)
    delivery = s.get(WebhookDelivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.subscription_id != sub_id:
        raise NotFound("No such delivery")
    return delivery


def attempts_of(s: Session, delivery: WebhookDelivery) -> list[WebhookAttempt]:
    return list(s.scalars(sa.select(WebhookAttempt)
                          .where(WebhookAttempt.delivery_id == delivery.id)
                          .order_by(WebhookAttempt.id)))


def replay(s: Session, actor: Actor, sub_id: int, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (a dead letter, or one the receiver lost): due now, attempts
    counted afresh, the same event id (receivers de-duplicate by it). A replayed event may
    arrive after later events of its case: `data.case.version` tells which is newer."""
    delivery = get_delivery(s, actor, sub_id, delivery_id)
    s.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(
        state="pending", attempts=0, due_at=clock.now(), claimed_until=None,
        claim_token=None, last_error=None))
    audit.record(s, actor, "webhook_delivery_replayed", "webhook_subscription", sub_id,
                 changes={"delivery_id": delivery.id, "event_id": str(delivery.event_id),
                          "was": delivery.state})
    s.flush()
    s.refresh(delivery)
    return delivery
