"""Accounts and tokens: login, refresh rotation with reuse detection, logout, lockout,
password rules, resident self-registration, and user administration."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from server import audit, clock, db, pii, ratelimit
from server.auth.actor import Actor
from server.auth.models import AuthSession, RefreshToken, User, UserRole, VerificationCode
from server.auth.permissions import ADMIN, RESIDENT, ROLES, grantable_by
from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
    check_version,
    field_errors,
)
from server.validators import MOBILE_RE, password_problems

log = logging.getLogger("server.auth")

PHONE_FIELD = "user.phone"


class LoginFailed(Unauthorized):
    """Wrong credentials: keeps the failure counters it recorded."""

    keep_changes = True


class AccountLocked(TooManyRequests):
    keep_changes = True


_hasher: PasswordHasher = PasswordHasher()
# Verified against when the account does not exist, so timing does not reveal accounts.
_dummy_hash: str = ""


def configure_passwords(time_cost: int, memory_kib: int, parallelism: int) -> None:
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _dummy_hash = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _cfg(name: str) -> Any:
    return current_app.config[name]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    token_type: str = "Bearer"


def find_user_by_login(s: Session, identifier: str) -> User | None:
    """A user by phone number (if it looks like one) or by username."""
    identifier = identifier.strip()
    if MOBILE_RE.match(identifier):
        cond = User.phone_bidx == pii.blind_index(identifier, PHONE_FIELD)
    else:
        cond = User.username == identifier.lower()
    return s.scalars(sa.select(User).where(cond).options(selectinload(User.roles))).first()


def _locked_user(s: Session, user_id: int) -> User:
    """The user row locked FOR UPDATE and read afresh (never a stale identity-map copy),
    with its roles loaded: responses serialize them, and the relationship is lazy="raise"."""
    return s.scalars(
        sa.select(User).where(User.id == user_id).options(selectinload(User.roles))
        .with_for_update(of=User).execution_options(populate_existing=True)
    ).one()


def _login_bookkeeping(s: Session, user: User, **values: Any) -> None:
    """Record login counters without bumping the account's version: an administrator
    editing an account must not get a 412 because its owner just logged in."""
    s.execute(sa.update(User).where(User.id == user.id).values(**values)
              .execution_options(synchronize_session=False))
    for name, value in values.items():
        set_committed_value(user, name, value)


def _new_refresh_token(s: Session, session_id: uuid.UUID) -> RefreshToken:
    issued = _now()  # the JWT's own time, not the pinnable clock.now(): PyJWT checks it
    token = RefreshToken(jti=uuid.uuid4(), session_id=session_id, issued_at=issued,
                         expires_at=issued + _cfg("JWT_REFRESH_TOKEN_EXPIRES"))
    s.add(token)
    return token


def _issue_tokens(s: Session, user: User, session_id: uuid.UUID) -> TokenPair:
    return _pair(user, _new_refresh_token(s, session_id))


def _pair(user: User, token: RefreshToken) -> TokenPair:
    """A fresh access token and the refresh JWT of `token`. The refresh JWT is built from
    the row alone (its jti, session and times), so it is the same text each time."""
    access_ttl: timedelta = _cfg("JWT_ACCESS_TOKEN_EXPIRES")
    access = create_access_token(identity=str(user.id),
                                 additional_claims={"sid": str(token.session_id)})
    issued = int(token.issued_at.timestamp())
    # every claim the library would make up per call (times, jti, and a random csrf value,
    # which only cookie transport uses) comes from the row instead
    refresh = create_refresh_token(identity=str(user.id), additional_claims={
        "sid": str(token.session_id), "jti": str(token.jti), "csrf": str(token.jti),
        "iat": issued, "nbf": issued, "exp": int(token.expires_at.timestamp())})
    return TokenPair(access, refresh, int(access_ttl.total_seconds()), user)


def login(
    s: Session, actor: Actor, identifier: str, password: str, user_agent: str | None = None
) -> TokenPair:
    """Log in with a username or phone number and a password.

    Rate-limited per IP and per account name; consecutive failures lock the account for
    LOCKOUT_MINUTES. Failures are counted and audited even though the request fails.
    """
    window = _cfg("LOGIN_LIMIT_WINDOW_S")
    user = find_user_by_login(s, identifier)
    ip_key = f"login:ip:{actor.ip}"
    # Per account, not per spelling: the username and the phone number of one account
    # share one budget. Names that match no account are limited by name.
    account_key = (f"login:user:{user.id}" if user is not None
                   else f"login:name:{identifier.strip().lower()}")
    message = "Too many login attempts; try again later"
    # Check without locking first: the slow password hash must not hold a row lock.
    ratelimit.check(s, ip_key, _cfg("LOGIN_LIMIT_PER_IP"), window, message)
    ratelimit.check(s, account_key, _cfg("LOGIN_LIMIT_PER_ACCOUNT"), window, message)

    ok = _verify_password(user.password_hash if user else _dummy_hash, password)

    ratelimit.hit(s, ip_key, _cfg("LOGIN_LIMIT_PER_IP"), window, message)
    ratelimit.hit(s, account_key, _cfg("LOGIN_LIMIT_PER_ACCOUNT"), window, message)
    if user is None:
        raise LoginFailed("Wrong account name or password")
    user = _locked_user(s, user.id)
    now = _now()
    if user.locked_until and user.locked_until > now:
        retry = int((user.locked_until - now).total_seconds()) + 1
        raise AccountLocked("This account is locked after repeated failures", retry_after=retry)
    if not ok:
        failures = user.failed_logins + 1
        changes: dict[str, Any] = {"failed_logins": failures}
        if failures >= _cfg("LOCKOUT_AFTER_FAILURES"):
            changes = {"failed_logins": 0, "locked_until": now + timedelta(
                minutes=_cfg("LOCKOUT_MINUTES"))}
        _login_bookkeeping(s, user, **changes)
        audit.record(s, actor, "login_failed", "user", user.id,
                     changes={k: v.isoformat() if isinstance(v, datetime) else v
                              for k, v in changes.items()})
        raise LoginFailed("Wrong account name or password")
    if not user.is_active:
        raise LoginFailed("This account is disabled")

    bookkeeping: dict[str, Any] = {"failed_logins": 0, "locked_until": None,
                                   "last_login_at": now}
    if _hasher.check_needs_rehash(user.password_hash):
        bookkeeping["password_hash"] = hash_password(password)
    _login_bookkeeping(s, user, **bookkeeping)
    auth_session = AuthSession(user_id=user.id, ip=actor.ip, user_agent=(user_agent or "")[:256])
    s.add(auth_session)
    s.flush()
    audit.record(s, Actor(user.id, ip=actor.ip, request_id=actor.request_id), "login", "user",
                 user.id)
    return _issue_tokens(s, user, auth_session.id)


def refresh(s: Session, actor: Actor, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. Presenting one that was already used means it leaked (or
    the phone replayed it): the whole session is revoked and must log in again.

    Except a retry: a phone whose answer was lost on the network sends the same token again.
    Within REFRESH_REUSE_GRACE_S of the first use, while the token issued for it (its
    successor) is still unused, the retry gets a fresh access token and that same successor,
    never a second refresh token: the family keeps one live branch."""
    try:
        claims = decode_token(refresh_token)
        jti = uuid.UUID(claims["jti"])
    except Exception as exc:  # expired, bad signature, malformed: all a 401
        raise Unauthorized("Invalid or expired refresh token") from exc
    if claims.get("type") != "refresh":
        raise Unauthorized("Not a refresh token")
    token = s.get(RefreshToken, jti, with_for_update=True)
    if token is None:
        raise Unauthorized("Unknown refresh token")
    auth_session = s.get(AuthSession, token.session_id, with_for_update=True)
    if auth_session.revoked_at is not None:
        raise Unauthorized("This session has ended; log in again")
    successor = None
    if token.used_at is not None:
        successor = _retried_successor(s, token)
        if successor is None:
            _revoke_session(auth_session, "refresh_reuse")
            audit.record(s, Actor(auth_session.user_id, ip=actor.ip,
                                  request_id=actor.request_id),
                         "refresh_token_reused", "auth_session", auth_session.id)
            raise LoginFailed("Refresh token reused; this session has been ended for safety")
    user = s.scalars(
        sa.select(User).where(User.id == auth_session.user_id).options(selectinload(User.roles))
    ).one()
    if not user.is_active:
        raise Unauthorized("This account is disabled")
    if successor is not None:
        audit.record(s, Actor(user.id, ip=actor.ip, request_id=actor.request_id),
                     "refresh_token_retried", "auth_session", auth_session.id)
        return _pair(user, successor)
    successor = _new_refresh_token(s, auth_session.id)
    token.used_at, token.successor_jti = clock.now(), successor.jti
    return _pair(user, successor)


def _retried_successor(s: Session, token: RefreshToken) -> RefreshToken | None:
    """The token issued for `token` if presenting `token` again is a retry: within the
    grace window of its use, and that successor not used yet. None means reuse."""
    grace = timedelta(seconds=_cfg("REFRESH_REUSE_GRACE_S"))
    if token.successor_jti is None or clock.now() - token.used_at >= grace:
        return None
    successor = s.get(RefreshToken, token.successor_jti, with_for_update=True)
    if successor is None or successor.used_at is not None:
        return None
    return successor


def _revoke_session(auth_session: AuthSession, reason: str) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = _now()
        auth_session.revoke_reason = reason


def _revoke_all_sessions(s: Session, user_id: int, reason: str, keep: uuid.UUID | None = None):
    stmt = (
        sa.update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=sa.func.now(), revoke_reason=reason)
    )
    if keep is not None:
        stmt = stmt.where(AuthSession.id != keep)
    s.execute(stmt)


def logout(s: Session, actor: Actor) -> None:
    """End the session the access token belongs to (its refresh tokens die with it)."""
    auth_session = s.get(AuthSession, actor.session_id, with_for_update=True)
    if auth_session is not None:
        _revoke_session(auth_session, "logout")
    audit.record(s, actor, "logout", "auth_session", actor.session_id)


class WrongCurrentPassword(Invalid):
    keep_changes = True  # the guess counter must survive the failure


def change_password(s: Session, actor: Actor, current_password: str, new_password: str) -> None:
    """Change one's own password; other sessions are ended, this one stays.

    Wrong current passwords count against the same per-account limit as logins: a stolen
    access token must not become an unlimited way to guess the password."""
    window, limit = _cfg("LOGIN_LIMIT_WINDOW_S"), _cfg("LOGIN_LIMIT_PER_ACCOUNT")
    key = f"password:user:{actor.user_id}"
    message = "Too many wrong passwords; try again later"
    ratelimit.check(s, key, limit, window, message)
    user = _locked_user(s, actor.user_id)
    if not _verify_password(user.password_hash, current_password):
        ratelimit.hit(s, key, limit, window, message)
        raise WrongCurrentPassword(
            field_errors("current_password", "The current password is wrong.")
        )
    phone = pii.decrypt(user.phone_enc, PHONE_FIELD)
    problems = password_problems(new_password, user.username, phone)
    if problems:
        raise Invalid(field_errors("new_password", *problems))
    user.password_hash = hash_password(new_password)
    user.password_changed_at = _now()
    _revoke_all_sessions(s, user.id, "password_changed", keep=actor.session_id)
    audit.record(s, actor, "password_changed", "user", user.id)


# --- resident self-registration -----------------------------------------------------------


def _code_hash(phone: str, code: str) -> str:
    return hmac.new(pii.blind_index(phone, "code").encode(), code.encode(), hashlib.sha256
                    ).hexdigest()


def send_verification_code(phone: str, code: str) -> None:
    """Deliver a code. "log" (development) writes it to the log; production plugs in an
    SMS gateway by setting VERIFICATION_SENDER to a dotted path of a function(phone, code)."""
    sender = _cfg("VERIFICATION_SENDER")
    if sender == "log":
        log.info("verification code for %s: %s", pii.mask_phone(phone), code,
                 extra={"verification_code": code})
        return
    module, _, name = sender.rpartition(".")
    import importlib

    getattr(importlib.import_module(module), name)(phone, code)


def request_verification_code(s: Session, actor: Actor, phone: str) -> None:
    limit = _cfg("VERIFICATION_CODE_LIMIT_PER_PHONE")
    ratelimit.hit(s, f"code:phone:{pii.blind_index(phone, PHONE_FIELD)}", limit, 3600,
                  "Too many codes requested for this phone; try again later")
    ratelimit.hit(s, f"code:ip:{actor.ip}", limit * 10, 3600,
                  "Too many codes requested from this address; try again later")
    code = f"{secrets.randbelow(10**6):06d}"
    s.add(VerificationCode(
        phone_bidx=pii.blind_index(phone, PHONE_FIELD), code_hash=_code_hash(phone, code),
        purpose="register", expires_at=_now() + timedelta(minutes=10),
    ))
    send_verification_code(phone, code)


class CodeRejected(Invalid):
    keep_changes = True  # the attempt counter must survive the failure


def register_resident(s: Session, actor: Actor, data: dict) -> TokenPair:
    """A resident signs up with a phone number, the code sent to it and a password."""
    phone = data["phone"]
    bidx = pii.blind_index(phone, PHONE_FIELD)
    code = s.scalars(
        sa.select(VerificationCode)
        .where(VerificationCode.phone_bidx == bidx, VerificationCode.used_at.is_(None),
               VerificationCode.expires_at > sa.func.now(), VerificationCode.purpose == "register")
        .order_by(VerificationCode.id.desc()).limit(1).with_for_update()
    ).first()
    if code is None or code.attempts >= 5:
        raise Invalid(field_errors("code", "No valid code for this phone; request a new one."))
    if not hmac.compare_digest(code.code_hash, _code_hash(phone, data["code"])):
        code.attempts += 1
        raise CodeRejected(field_errors("code", "The code is wrong."))
    code.used_at = _now()
    if s.scalar(sa.select(User.id).where(User.phone_bidx == bidx)) is not None:
        raise Conflict("This phone number is already registered; log in instead")
    problems = password_problems(data["password"], phone)
    if problems:
        raise Invalid(field_errors("password", *problems))
    user = _new_user(s, None, data["display_name"], phone, data["password"], [RESIDENT])
    audit.record(s, Actor(user.id, ip=actor.ip, request_id=actor.request_id), "register",
                 "user", user.id)
    auth_session = AuthSession(user_id=user.id, ip=actor.ip)
    s.add(auth_session)
    s.flush()
    return _issue_tokens(s, user, auth_session.id)


# --- administration -----------------------------------------------------------------------


def _new_user(s: Session, username: str | None, display_name: str, phone: str | None,
              password: str, roles: list[str]) -> User:
    user = User(
        username=username.lower() if username else None,
        display_name=display_name,
        phone_enc=pii.encrypt(phone, PHONE_FIELD),
        phone_bidx=pii.blind_index(phone, PHONE_FIELD),
        password_hash=hash_password(password),
        password_changed_at=_now(),
        roles=[UserRole(role=r) for r in sorted(set(roles))],
    )
    s.add(user)
    s.flush()
    return user


# Conditions other packages add on the accounts an actor may manage, so that server/ never
# imports grid/: grid.areas adds at wiring "every area membership and department of the
# account lies in the actor's areas". Each takes the actor and returns a SQL condition on User.
user_scope_rules: list[Callable[[Actor], sa.ColumnElement[bool]]] = []


def manageable(actor: Actor) -> sa.ColumnElement[bool]:
    """SQL: the accounts `actor` may manage. An administrator, any; anyone else, accounts
    holding only roles the actor may grant (permissions.GRANTABLE_BY) and placed only
    inside the actor's areas. Outside that an account does not exist for them (404)."""
    if actor.unrestricted:
        return sa.true()
    beyond = sa.select(UserRole.user_id).where(
        UserRole.user_id == User.id, UserRole.role.not_in(sorted(grantable_by(actor.roles))))
    return sa.and_(~sa.exists(beyond), *(rule(actor) for rule in user_scope_rules))


def check_grantable(actor: Actor, roles: set[str] | frozenset[str]) -> None:
    """403 unless the actor may grant (and revoke) every role of `roles`."""
    beyond = sorted(set(roles) - grantable_by(actor.roles))
    if beyond:
        raise Forbidden(f"You may not grant or revoke the role(s) {', '.join(beyond)}",
                        errors=field_errors("roles", *(f"Not yours to grant: {r}."
                                                       for r in beyond)))


def create_user(s: Session, actor: Actor, data: dict) -> User:
    """An administrator creates an account (workers, staff, dispatchers…) with roles."""
    actor.require("user:manage")
    check_grantable(actor, set(data["roles"]))
    username, phone = data.get("username"), data.get("phone")
    if not username and not phone:
        raise Invalid(field_errors("username", "Give a username or a phone number."))
    if username and s.scalar(sa.select(User.id).where(User.username == username.lower())):
        raise Conflict("This username is taken", errors=field_errors("username", "taken"))
    if phone and s.scalar(
        sa.select(User.id).where(User.phone_bidx == pii.blind_index(phone, PHONE_FIELD))
    ):
        raise Conflict("This phone number belongs to another account",
                       errors=field_errors("phone", "taken"))
    problems = password_problems(data["password"], username, phone)
    if problems:
        raise Invalid(field_errors("password", *problems))
    user = _new_user(s, username, data["display_name"], phone, data["password"], data["roles"])
    audit.record(s, actor, "user_created", "user", user.id,
                 changes={"username": user.username, "roles": user.role_names})
    return user


def get_user(s: Session, actor: Actor, user_id: int) -> User:
    """One's own account, or an account the actor may manage (404 otherwise)."""
    stmt = sa.select(User).where(User.id == user_id).options(selectinload(User.roles))
    if actor.user_id != user_id:
        actor.require("user:manage")
        stmt = stmt.where(manageable(actor))
    user = s.scalars(stmt).first()
    if user is None:
        raise NotFound("No such user")
    return user


def list_users(s: Session, actor: Actor, filters: dict, page: Any) -> list[User]:
    actor.require("user:manage")
    stmt = (sa.select(User).where(manageable(actor)).options(selectinload(User.roles))
            .order_by(User.id))
    if filters.get("role"):
        stmt = stmt.where(User.roles.any(UserRole.role == filters["role"]))
    if filters.get("is_active") is not None:
        stmt = stmt.where(User.is_active == filters["is_active"])
    if filters.get("q"):
        q = filters["q"].strip()
        # autoescape: a searched "_" or "%" is that character, not a wildcard.
        conds = [User.username.icontains(q, autoescape=True),
                 User.display_name.icontains(q, autoescape=True)]
        if MOBILE_RE.match(q):
            conds.append(User.phone_bidx == pii.blind_index(q, PHONE_FIELD))
        stmt = stmt.where(sa.or_(*conds))
    return db.paginate(s, stmt, page)


def _keep_an_active_admin(s: Session, user: User) -> None:
    """409 if `user` is the last active administrator: the platform would be locked out.

    Locks every active administrator's row, in id order (two administrators disabling each
    other at once queue up instead of deadlocking, and the second sees the first's change)."""
    admins = s.scalars(
        sa.select(User.id).join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == ADMIN, User.is_active).order_by(User.id).with_for_update(of=User)
    ).all()
    if not set(admins) - {user.id}:
        raise Conflict("This is the last active administrator: make another one first")


def update_user(s: Session, actor: Actor, user_id: int, changes: dict,
                expected_version: int | None) -> User:
    """Rename, enable/disable or change the roles of an account. Disabling ends every
    session at once: its access tokens stop working on the next request.

    Roles granted or revoked must be the actor's to grant (permissions.GRANTABLE_BY); no
    one disables their own account or removes their own roles; the last active
    administrator stays one."""
    actor.require("user:manage")
    user = get_user(s, actor, user_id)
    check_version(user, expected_version)
    own = actor.user_id == user.id
    have = set(user.role_names)
    wanted = set(changes["roles"]) if "roles" in changes else have
    active = changes.get("is_active", user.is_active)
    if wanted != have:
        check_grantable(actor, wanted ^ have)
        if own and have - wanted:
            raise Forbidden("You cannot remove your own roles; another administrator can")
    if own and not active and user.is_active:
        raise Forbidden("You cannot disable your own account; another administrator can")
    if ADMIN in have and user.is_active and not (ADMIN in wanted and active):
        _keep_an_active_admin(s, user)

    recorded: dict[str, Any] = {}
    if "display_name" in changes and changes["display_name"] != user.display_name:
        recorded["display_name"] = [user.display_name, changes["display_name"]]
        user.display_name = changes["display_name"]
    if wanted != have:
        recorded["roles"] = [user.role_names, sorted(wanted)]
        # Change only the difference: re-adding a kept role would collide on the key.
        for link in [r for r in user.roles if r.role not in wanted]:
            user.roles.remove(link)
        user.roles.extend(UserRole(role=r) for r in sorted(wanted - have))
        user.updated_at = _now()  # a role change is a change of the account: bump version
    if active != user.is_active:
        recorded["is_active"] = [user.is_active, active]
        user.is_active = active
        if not user.is_active:
            _revoke_all_sessions(s, user.id, "disabled")
    if changes.get("unlock") and user.locked_until:
        recorded["locked_until"] = [user.locked_until.isoformat(), None]
        user.locked_until = None
    if recorded:
        s.flush()  # bumps version
        audit.record(s, actor, "user_updated", "user", user.id, changes=recorded)
    return user


def known_role(role: str) -> bool:
    return role in ROLES
