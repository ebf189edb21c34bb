"""Break-the-glass (紧急授权): in an emergency (a person in a fire in another grid) an actor
with record:break_glass opens one register record outside their scope, stating why.

- the grant opens that one record, for reading, to that actor, until it expires (setting
  BREAK_GLASS_MINUTES, 60 by default) or an auditor closes it; then it is a 404 again;
- it plugs into the register's one scope filter (grid.registry.scope.openings): there is
  no second way in, and writes never get it;
- opening it is audited with the reason and tells the auditors (grant:review) and the
  record's grid chief at once (urgent notification); every read through it is an audit
  row naming the grant;
- each grant waits in the auditors' review list until one closes it with a finding.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, Membership
from grid.exchange.models import AccessGrant
from grid.registry import scope
from grid.registry.models import RegisterRecord
from notifications.service import NoticeTemplate, notify
from server import actions, audit, clock, db
from server.auth.actor import Actor
from server.auth.models import User, UserRole
from server.auth.permissions import BREAK_GLASS_NOTIFIED_ROLES, roles_with
from server.errors import Conflict, NotFound

BREAK_GLASS = "record:break_glass"
REVIEW = "grant:review"
DEFAULT_MINUTES = 60

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("break_glass_opened",
                   ("紧急授权：{actor}查看了{object_label}",
                    "{area}：{reason}（{minutes}分钟内有效）"),
                   ("Break-the-glass: {actor} opened a {object_type}",
                    "{area}: {reason} (valid {minutes} min)"), urgent=True),
)


def _kind(object_type: str) -> type[RegisterRecord]:
    model = scope.KINDS.get(object_type)
    if model is None:
        raise NotFound("No such record")
    return model


def _active(actor: Actor, object_type: str, object_id: Any) -> sa.Select:
    return sa.select(AccessGrant.id).where(
        AccessGrant.user_id == actor.user_id, AccessGrant.object_type == object_type,
        AccessGrant.object_id == object_id, AccessGrant.closed_at.is_(None),
        AccessGrant.expires_at > clock.now())


def open_grant(s: Session, actor: Actor, object_type: str, object_id: int, reason: str,
               minutes: int = DEFAULT_MINUTES) -> AccessGrant:
    """Open one record outside the actor's scope. A record in their scope needs no grant
    (409); an active grant of theirs on the same record is returned as it is."""
    actor.require("registry:read")
    actor.require(BREAK_GLASS)
    model = _kind(object_type)
    record = s.execute(sa.select(model.id, model.area_id).where(model.id == object_id)).first()
    if record is None:
        raise NotFound(f"No such {object_type}")
    if areas.area_in_scope(s, actor, record.area_id):
        raise Conflict("This record is in your scope: open it directly", allowed=[])
    existing = s.scalar(_active(actor, object_type, object_id))
    if existing is not None:
        return s.get(AccessGrant, existing)
    grant = AccessGrant(user_id=actor.user_id, object_type=object_type, object_id=object_id,
                        area_id=record.area_id, reason=reason, reads=0, state="open",
                        expires_at=clock.now() + timedelta(minutes=minutes))
    s.add(grant)
    s.flush()
    audit.record(s, actor, "break_glass_opened", object_type, object_id, purpose=reason,
                 changes={"grant_id": grant.id, "expires_at": grant.expires_at.isoformat()})
    _tell(s, actor, grant, minutes)
    return grant


def _tell(s: Session, actor: Actor, grant: AccessGrant, minutes: int) -> None:
    """The auditors and the record's grid chief(s), at once (urgent)."""
    auditors = sa.select(UserRole.user_id).join(User, User.id == UserRole.user_id).where(
        UserRole.role.in_(roles_with(REVIEW)), User.is_active)
    chiefs = sa.select(Membership.user_id).join(User, User.id == Membership.user_id).where(
        Membership.area_id == grant.area_id, Membership.role.in_(BREAK_GLASS_NOTIFIED_ROLES),
        User.is_active)
    recipients = set(s.scalars(auditors)) | set(s.scalars(chiefs))
    area = s.get(Area, grant.area_id)
    name = s.scalar(sa.select(User.display_name).where(User.id == actor.user_id))
    notify(s, recipients - {actor.user_id}, "break_glass_opened", {
        "grant_id": grant.id, "actor": name or "", "object_type": grant.object_type,
        "object_label": {"person": "人员", "household": "户", "house": "房屋",
                         "building": "楼栋", "organisation": "单位"}[grant.object_type],
        "object_id": grant.object_id, "area": area.name if area else "",
        "reason": grant.reason, "minutes": minutes}, urgent=True,
        collapse_key=f"grant:{grant.id}")


# --- the opening in the register's scope filter (wired in grid/exchange/wiring.py) ----------


def condition(model: type[RegisterRecord], actor: Actor, record_id: int) -> Any:
    """SQL: the record is opened to the actor by an active grant (None without the
    permission: nothing is opened to them, whatever grants they once had)."""
    if not actor.can(BREAK_GLASS) or actor.user_id is None:
        return None
    kind = model.__tablename__[:-1]
    return sa.exists(_active(actor, kind, model.id))


def on_read(s: Session, actor: Actor, model: type[RegisterRecord], record: Any) -> None:
    """Every read through a grant is an audit row naming it, and is counted on it."""
    kind = model.__tablename__[:-1]
    grant_id = s.scalar(_active(actor, kind, record.id).order_by(AccessGrant.id.desc()))
    if grant_id is None:
        return
    s.execute(sa.update(AccessGrant).where(AccessGrant.id == grant_id)
              .values(reads=AccessGrant.reads + 1)
              .execution_options(synchronize_session=False))
    audit.record(s, actor, "break_glass_read", kind, record.id, changes={"grant_id": grant_id})
    db.commit_read_audit(s)  # a GET's session is never committed otherwise


OPENING = scope.Opening(condition=condition, on_read=on_read)


# --- the auditors' review list ---------------------------------------------------------------


def list_grants(s: Session, actor: Actor, filters: dict, page: Any) -> list[AccessGrant]:
    """Auditors (grant:review) see every grant; anyone else their own. Oldest open first."""
    stmt = sa.select(AccessGrant)
    if not actor.can(REVIEW):
        actor.require(BREAK_GLASS)
        stmt = stmt.where(AccessGrant.user_id == actor.user_id)
    if filters.get("state"):
        stmt = stmt.where(AccessGrant.state == filters["state"])
    return db.paginate(s, stmt.order_by(AccessGrant.state.desc(), AccessGrant.id), page)


def get_grant(s: Session, actor: Actor, grant_id: int, *, for_update: bool = False
              ) -> AccessGrant:
    stmt = sa.select(AccessGrant).where(AccessGrant.id == grant_id)
    if not actor.can(REVIEW):
        stmt = stmt.where(AccessGrant.user_id == actor.user_id)
    grant = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if grant is None:
        raise NotFound("No such grant")
    return grant


def _close(step: actions.Step) -> actions.Result:
    grant: AccessGrant = step.record
    grant.finding, grant.finding_note = step.data["finding"], step.data.get("note")
    grant.closed_by, grant.closed_at = step.actor.user_id, step.at
    return actions.Result(note=grant.finding_note, facts={"finding": grant.finding,
                                                          "reads": grant.reads})


def _load(s: Session, actor: Actor, grant_id: Any) -> AccessGrant:
    return get_grant(s, actor, grant_id, for_update=True)


# The grant's life cycle on the one engine: open (awaiting review; it opens the record until
# it expires) → closed with a finding by an auditor.
LIFECYCLE = actions.Lifecycle(
    kind="access_grant", noun="grant",
    transitions=(actions.Transition("close", "已审查", ("open",), "closed", REVIEW,
                                    requires=("finding",)),),
    handlers={"close": _close}, load=_load, recorded=("finding",))


def close_grant(s: Session, actor: Actor, grant_id: int, finding: str, note: str | None,
                expected_version: int | None) -> AccessGrant:
    """An auditor closes a grant with a finding; it opens nothing any more. Sending the same
    finding again changes nothing."""
    grant = get_grant(s, actor, grant_id)
    if grant.state == "closed" and actor.can(REVIEW) and grant.finding == finding \
            and grant.finding_note == note:
        return grant
    return actions.run(s, actor, LIFECYCLE, grant_id, "close",
                       {"finding": finding, "note": note}, expected_version).record
