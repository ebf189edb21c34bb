"""Memberships (网格成员): who works, or lives, in which area with which role.

Granting follows the account rules of server.auth.service: the area must be in the actor's
scope, the role theirs to grant (check_grantable) and the account one they manage
(manageable). ROLE_LEVELS says which level each role attaches to.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area, Membership
from grid.areas.service import in_scope
from notifications import topics
from server import audit, db
from server.auth import permissions
from server.auth import service as accounts
from server.auth.actor import Actor
from server.auth.models import User, UserRole
from server.errors import Invalid, NotFound, field_errors

# Which level a membership role attaches to (levels as data: ranks, not names, decide
# nesting; this only stops obvious mistakes like a dispatcher in a single grid).
ROLE_LEVELS: dict[str, tuple[str, ...]] = permissions.MEMBERSHIP_LEVELS


def list_memberships(s: Session, actor: Actor, filters: dict, page: Any) -> list:
    actor.require("membership:manage")
    stmt = (sa.select(Membership, User.display_name, Area.code, Area.name)
            .join(User, User.id == Membership.user_id).join(Area, Area.id == Membership.area_id)
            .where(in_scope(Membership.area_id, actor)).order_by(Membership.id))
    for name in ("user_id", "area_id", "role"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Membership, name) == filters[name])
    return db.paginate(s, stmt, page)


def member_user(s: Session, actor: Actor, user_id: int, role: str) -> User:
    """The account a membership is given to or taken from: the role must be the actor's to
    grant, and the account one the actor manages (else, for them, no such user)."""
    accounts.check_grantable(actor, {role})
    user = s.scalars(sa.select(User).where(User.id == user_id,
                                           accounts.manageable(actor))).first()
    if user is None:
        raise Invalid(field_errors("user_id", "No such user."))
    return user


def add_membership(s: Session, actor: Actor, data: dict) -> Membership:
    """Put a user in an area with a role they hold. The area must be in the actor's scope,
    the role theirs to grant, and the user one they manage (server.auth.service.manageable):
    a district admin cannot pull a neighbouring district's worker, or a peer, into its own."""
    actor.require("membership:manage")
    area = _manageable_for_membership(s, actor, data["area_id"])
    role = data["role"]
    user = member_user(s, actor, data["user_id"], role)
    has_role = s.scalar(sa.select(UserRole.role).where(UserRole.user_id == user.id,
                                                      UserRole.role == role))
    if has_role is None:
        raise Invalid(field_errors("role", f"The user does not hold the role {role!r}."))
    if area.level not in ROLE_LEVELS.get(role, ()):
        raise Invalid(field_errors(
            "area_id", f"A {role} belongs to a {' or '.join(ROLE_LEVELS.get(role, ('?',)))}, "
                       f"not a {area.level}."))
    existing = s.scalars(sa.select(Membership).where(
        Membership.user_id == user.id, Membership.area_id == area.id, Membership.role == role
    )).first()
    if existing is not None:
        return existing  # idempotent: the same membership twice is one membership
    membership = Membership(user_id=user.id, area_id=area.id, role=role)
    s.add(membership)
    s.flush()
    topics.refresh(s, [user.id])  # the user's phones join the area's broadcast topics
    audit.record(s, actor, "membership_added", "membership", membership.id,
                 changes={"user_id": user.id, "area_id": area.id, "role": role})
    return membership


def _manageable_for_membership(s: Session, actor: Actor, area_id: int) -> Area:
    area = s.scalars(sa.select(Area).where(Area.id == area_id, in_scope(Area.id, actor))).first()
    if area is None:
        raise NotFound("No such area")
    return area


def remove_membership(s: Session, actor: Actor, membership_id: int) -> None:
    actor.require("membership:manage")
    membership = s.scalars(sa.select(Membership).where(
        Membership.id == membership_id, in_scope(Membership.area_id, actor))).first()
    if membership is None:
        raise NotFound("No such membership")
    accounts.check_grantable(actor, {membership.role})
    if s.scalar(sa.select(User.id).where(User.id == membership.user_id,
                                         accounts.manageable(actor))) is None:
        raise NotFound("No such membership")
    audit.record(s, actor, "membership_removed", "membership", membership.id,
                 changes={"user_id": membership.user_id, "area_id": membership.area_id,
                          "role": membership.role})
    s.delete(membership)
    s.flush()
    topics.refresh(s, [membership.user_id])  # and leave those no longer theirs


def area_in_scope(s: Session, actor: Actor, area_id: int) -> Area | None:
    """The area if it lies in the actor's scope (for notifications' broadcasts)."""
    return s.scalars(sa.select(Area).where(Area.id == area_id, in_scope(Area.id, actor))).first()


def areas_reaching(user_id: Any) -> sa.Select:
    """Ids of the areas whose broadcasts reach a user: their memberships' areas and every
    area above them (the ids in the materialized paths, "1.5.23.")."""
    ids = sa.func.unnest(sa.func.string_to_array(sa.func.rtrim(Area.path, "."), "."))
    return (sa.select(sa.cast(ids, sa.BigInteger)).select_from(Membership)
            .join(Area, Area.id == Membership.area_id).where(Membership.user_id == user_id))


def area_codes_reaching(s: Session, user_ids: list[int]) -> dict[int, set[str]]:
    """{user id: codes of areas_reaching(user)}: the areas whose topics their phones are on."""
    above = sa.orm.aliased(Area)
    rows = s.execute(
        sa.select(Membership.user_id, above.code).select_from(Membership)
        .join(Area, Area.id == Membership.area_id)
        .join(above, Area.path.startswith(above.path))
        .where(Membership.user_id.in_(user_ids)).distinct())
    found: dict[int, set[str]] = {}
    for user_id, code in rows:
        found.setdefault(user_id, set()).add(code)
    return found


def members_below(s: Session, area_id: int, after_user_id: int, limit: int) -> list[int]:
    """Active users with a membership in the area's subtree, above `after_user_id`, in id
    order (the broadcast fan-out's batches)."""
    root = s.scalar(sa.select(Area.path).where(Area.id == area_id))
    return list(s.scalars(
        sa.select(Membership.user_id).distinct()
        .join(Area, Area.id == Membership.area_id)
        .join(User, User.id == Membership.user_id)
        # users.id too: otherwise the merge join reads users from the first id on every
        # batch (969 ms a batch at 500,000 of 1,000,000 members, measured)
        .where(Area.path.startswith(root, autoescape=True), User.is_active,
               Membership.user_id > after_user_id, User.id > after_user_id)
        .order_by(Membership.user_id).limit(limit)))
