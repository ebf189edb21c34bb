"""Who is calling: resolved once per request from the JWT, then passed to services.

Views call `current_actor()` and hand the Actor to services explicitly; services never
read `request` or `g`. The Actor also carries the request's IP and id for the audit trail.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from server import db
from server.auth.actor_cache import ActorCache
from server.auth.models import AuthSession, User, UserRole
from server.auth.permissions import ADMIN, permissions_for
from server.errors import Forbidden, Unauthorized
from server.security import view_of


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    session_id: uuid.UUID | None = None
    ip: str | None = None
    request_id: str | None = None
    # Scope, filled by the enrichers domain packages register (grid.areas): materialized
    # paths of the actor's area memberships, and the departments they handle cases for.
    area_paths: tuple[str, ...] = field(default=())
    department_ids: tuple[int, ...] = field(default=())

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def unrestricted(self) -> bool:
        """System administrators act everywhere; everyone else within their memberships."""
        return ADMIN in self.roles

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"This needs the permission {permission!r}", required=permission)


def anonymous_actor() -> Actor:
    return Actor(user_id=None, ip=request.remote_addr, request_id=g.get("request_id"))


def current_actor() -> Actor:
    """The actor set by @login_required (anonymous if the view does not require login)."""
    return g.get("actor") or anonymous_actor()


@dataclass(frozen=True)
class ActorEnricher:
    """What another package adds to the actor (grid.areas adds area scope), so that
    server/ never imports grid/: `columns(user_id)` gives labelled scalar subqueries of the
    user, selected in the same statement as the account and its session, and
    `apply(actor, row)` returns the actor with them."""

    columns: Callable[[Any], list[sa.Label]]
    apply: Callable[[Actor, Any], Actor]


actor_enrichers: list[ActorEnricher] = []


def actor_select(enrichers: tuple[ActorEnricher, ...]) -> sa.Select:
    """The account, its session, its roles and every enricher's columns, in one statement.
    Every table it reads notifies the actor cache of changes (migration 0016)."""
    user_id = sa.bindparam("user_id", type_=sa.BigInteger)
    roles_of_user = (sa.select(sa.func.coalesce(sa.func.array_agg(UserRole.role), sa.text("'{}'")))
                     .where(UserRole.user_id == user_id).scalar_subquery())
    return (sa.select(User.is_active, AuthSession.revoked_at, roles_of_user.label("roles"),
                      *(column for e in enrichers for column in e.columns(user_id)))
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(User.id == user_id, AuthSession.id == sa.bindparam("session_id")))


@functools.lru_cache(maxsize=4)
def _actor_statement(enrichers: tuple[ActorEnricher, ...]) -> db.Prepared:
    """`actor_select`, built once and prepared on each connection (server.db.Prepared):
    ONE round trip when an actor is not in the cache, with no work on it by SQLAlchemy or
    PostgreSQL's parser."""
    return db.Prepared(actor_select(enrichers))


def load_actor() -> Actor:
    claims = _claims()
    try:
        user_id, session_id = int(claims["sub"]), uuid.UUID(claims["sid"])
    except (KeyError, ValueError) as exc:
        raise Unauthorized("Malformed token") from exc
    cache: ActorCache = current_app.extensions["actor_cache"]
    actor, generation = cache.get(user_id, session_id)
    if actor is None:
        actor = _load(user_id, session_id)
        cache.put(user_id, session_id, actor, generation)
    return dataclasses.replace(actor, ip=request.remote_addr, request_id=g.get("request_id"))


def _load(user_id: int, session_id: uuid.UUID) -> Actor:
    enrichers = tuple(actor_enrichers)
    # Core execution on the session's connection (same transaction): no ORM entities here.
    row = _actor_statement(enrichers).execute(
        db.session().connection(), {"user_id": user_id, "session_id": str(session_id)}).first()
    if row is None or not row.is_active or row.revoked_at is not None:
        raise Unauthorized("This session has ended; log in again")
    roles = frozenset(row.roles)
    actor = Actor(user_id=user_id, roles=roles, permissions=permissions_for(roles),
                  session_id=session_id)
    for enricher in enrichers:
        actor = enricher.apply(actor, row)
    return actor


def _claims() -> dict:
    """The verified claims of the request's access token, checked once per request
    (`authenticate_first` checks it before the view runs; the view's actor reuses it)."""
    claims = request.environ.get("grid.token_claims")  # per request (g may outlive one)
    if claims is None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        claims = current_app.extensions["flask-jwt-extended"].access_claims(token) \
            if token else None
        if claims is None:
            verify_jwt_in_request()
            claims = get_jwt()
        request.environ["grid.token_claims"] = claims
    return claims


def login_required(func: Callable) -> Callable:
    """Resolve the actor (401 without a valid token) and document bearer auth.

    Marks the view too (`_check_credentials`): `authenticate_first` checks the token before
    flask-smorest parses the arguments (the mark rides up through the decorators above,
    which copy the function's __dict__ with functools.wraps)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.actor = load_actor()
        return func(*args, **kwargs)

    wrapper._check_credentials = _claims
    apidoc = getattr(wrapper, "_apidoc", {})
    apidoc.setdefault("manual_doc", {})["security"] = [{"bearerAuth": []}]
    wrapper._apidoc = apidoc
    return wrapper


def login_optional(func: Callable) -> Callable:
    """The actor when a token is sent (401 if it is not valid), anonymous without one;
    documented as bearer auth or none. The view decides what an anonymous caller gets."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.actor = load_actor() if "Authorization" in request.headers else anonymous_actor()
        return func(*args, **kwargs)

    apidoc = getattr(wrapper, "_apidoc", {})
    apidoc.setdefault("manual_doc", {})["security"] = [{}, {"bearerAuth": []}]
    wrapper._apidoc = apidoc
    return wrapper


def credential_headers(*names: str) -> Callable[[], None]:
    """The early check (`_check_credentials`) of a view whose caller signs with headers
    instead of a token (API clients): all of them must be there; the view verifies them."""

    def check() -> None:
        if not all(request.headers.get(name) for name in names):
            raise Unauthorized(f"Sign the request: {', '.join(names)}")

    return check


def _credentials_check(endpoint: str | None, method: str) -> Callable[[], None] | None:
    return getattr(view_of(endpoint, method), "_check_credentials", None)


def authenticate_first() -> None:
    """before_request: 401 for a view that needs credentials (marked by @login_required, or
    with `credential_headers`) when the request lacks them, before any other hook or
    flask-smorest validates its path, query or body (ARCHITECTURE §2: a caller without
    credentials learns nothing about what an operation accepts).

    For a token only the token is checked here (signature, expiry, type: no database); the
    session and the account are checked by @login_required inside the view as before, so
    read-only views still load the actor on their read-only connection."""
    if request.method == "OPTIONS" or request.routing_exception is not None:
        return  # CORS preflights; unknown URLs and methods answer their own 404/405
    check = _credentials_check(request.endpoint, request.method)
    if check is not None:
        check()
