"""Residents' own declarations (自主申报): a resident states facts about their own household
through the app — moving in (迁入), a tenant registering (租户), a newborn (新生儿), a new
phone (联系电话变更), an elderly person living alone (独居老人) — and the grid worker of the
household's grid checks them.

Rules:
- the declaration's point decides its grid, which must lie where the resident lives (422
  otherwise); it reaches the grid's workers at once (their tasks, `checks`, and a notice);
- creates carry a client UUID (a resend returns the first one); a resident may file at
  most DECLARATION_LIMIT a day (429 with Retry-After);
- ID numbers and phones are checked as the register checks them, kept encrypted, shown
  masked; photos of documents are attachments (private, EXIF stripped by the store),
  visible to the resident and the grid's workers only;
- its life cycle goes through the one action engine: submitted → accepted | refused (a
  reason the resident sees) | withdrawn (by the resident); only an accepted declaration
  changes the register, through the register's own services, with `self_declared`
  provenance; those that need a visit (moving in, a tenant, an elderly person alone) are
  accepted with the visit that checked them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Membership
from grid.exchange.merging import record_sources
from grid.exchange.models import DECLARATION_KINDS, Declaration
from grid.registry import people, tags
from grid.registry.models import Person
from grid.registry.scope import ID_FIELD, get_record
from grid.registry.validation import normalize_id_number
from grid.visits import service as visits
from notifications.service import NoticeTemplate, notify
from server import actions, audit, db, idempotency, pii, ratelimit
from server.actions import Result, Step, Transition, relation
from server.auth.actor import Actor
from server.auth.permissions import GRID_ROLES
from server.clock import local_today
from server.errors import Invalid, NotFound, field_errors
from server.storage import service as storage

SUBMIT, DECIDE = "declaration:submit", "declaration:decide"
PII_FIELD = "declaration.pii"
DEFAULT_LIMIT, DEFAULT_WINDOW_S = 10, 86400  # DECLARATION_LIMIT / DECLARATION_WINDOW_S
NEEDS_VISIT = {"moving_in", "tenant", "elderly_alone"}
# Who the declared person is to the household's head, by kind.
RELATIONS = {"tenant": "tenant", "newborn": "child"}

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("declaration_new", ("居民自主申报：{kind_label}", "{address}，请核实"),
                   ("A resident's declaration: {kind}", "{address}: please check it")),
    NoticeTemplate("declaration_decided", ("您的申报{state_label}", "{kind_label}：{reason}"),
                   ("Your declaration was {state}", "{kind}: {reason}")),
)


# --- reading -------------------------------------------------------------------------------


def visible(actor: Actor) -> sa.ColumnElement[bool]:
    """The grid's checkers see their grids' declarations; a resident sees their own."""
    if actor.can(DECIDE):
        return areas.in_scope(Declaration.area_id, actor)
    actor.require(SUBMIT)
    return Declaration.resident_id == actor.user_id


def get_declaration(s: Session, actor: Actor, declaration_id: Any, *,
                    for_update: bool = False) -> Declaration:
    stmt = sa.select(Declaration).where(Declaration.id == declaration_id, visible(actor))
    found = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if found is None:
        raise NotFound("No such declaration")
    return found


def list_declarations(s: Session, actor: Actor, filters: dict, page: Any) -> list[Declaration]:
    stmt = sa.select(Declaration).where(visible(actor)).order_by(Declaration.id.desc())
    for name in ("state", "kind"):
        if filters.get(name):
            stmt = stmt.where(getattr(Declaration, name) == filters[name])
    return db.paginate(s, stmt, page)


def secrets_of(declaration: Declaration) -> dict:
    """The declared ID number and phone, in clear (for the register only)."""
    if not declaration.pii_enc:
        return {}
    return json.loads(pii.decrypt(declaration.pii_enc, PII_FIELD))


# --- submitting ------------------------------------------------------------------------------


def submit(s: Session, actor: Actor, data: dict, client_uuid: uuid.UUID | None,
           limit: tuple[int, int]) -> tuple[Declaration, bool]:
    """File a declaration; returns it and whether this request created it."""
    actor.require(SUBMIT)
    if client_uuid is not None:
        prior = idempotency.claim(s, client_uuid, actor.user_id, "create_declaration",
                                  _payload(data))
        if prior is not None:
            return get_declaration(s, actor, int(prior[1])), False
    ratelimit.hit(s, f"declaration:{actor.user_id}", limit[0], limit[1],
                  "Too many declarations today; the grid worker will contact you")
    fix = data["location"]
    grid = areas.grid_at(s, fix.lon, fix.lat)
    if grid is None or not areas.path_in_scope(actor, grid.path):
        raise Invalid(field_errors("location", "Declare for the place where you live."))
    facts = dict(data.get("facts") or {})
    secret = {k: facts.pop(k) for k in ("id_number", "phone") if facts.get(k)}
    if "id_number" in secret:
        secret["id_number"] = normalize_id_number(secret["id_number"])
    declaration = Declaration(
        area_id=grid.id, resident_id=actor.user_id, kind=data["kind"], state="submitted",
        address=data["address"], facts=_plain(facts), note=data.get("note"),
        pii_enc=pii.encrypt(json.dumps(secret), PII_FIELD) if secret else None,
        photo_ids=data.get("photo_ids") or [], needs_visit=data["kind"] in NEEDS_VISIT,
        version=1)
    declaration.set_gps(fix)
    s.add(declaration)
    s.flush()
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, "declaration", declaration.id)
    for photo_id in declaration.photo_ids:
        storage.link(s, actor, photo_id, "declaration", declaration.id)
    audit.record(s, actor, "declaration_submitted", "declaration", declaration.id,
                 changes={"kind": declaration.kind, "area_id": grid.id})
    workers = s.scalars(sa.select(Membership.user_id).where(
        Membership.area_id == grid.id, Membership.role.in_(GRID_ROLES)))
    notify(s, workers, "declaration_new", {
        "declaration_id": declaration.id, "kind": declaration.kind,
        "kind_label": DECLARATION_KINDS[declaration.kind], "address": declaration.address})
    return declaration, True


def _payload(data: dict) -> dict:
    """The request as idempotency compares it (JSON: the point as numbers)."""
    fix = data["location"]
    return {**{k: v for k, v in data.items() if k != "location"},
            "location": [fix.lon, fix.lat]}


def _plain(facts: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in facts.items()}


# --- the life cycle (the one engine, server/actions.py) ----------------------------------------


@relation
def is_declarant(c: actions.Context, declaration: Declaration) -> bool:
    return declaration.resident_id == c.actor.user_id


def _person(step: Step, secret: dict) -> Person:
    """The person a declaration is about: `person_id`, else the one with its ID number, in
    the checker's grids."""
    if step.data.get("person_id") is not None:
        return get_record(step.s, step.actor, Person, step.data["person_id"])
    bidx = pii.blind_index(secret.get("id_number"), ID_FIELD)
    found = step.s.scalar(sa.select(Person.id).where(Person.id_number_bidx == bidx)) \
        if bidx else None
    if found is None:
        raise Invalid(field_errors("person_id", "Name the person (no one in the register "
                                                "has the declared ID number)."))
    return get_record(step.s, step.actor, Person, found)


def _new_person(step: Step, secret: dict) -> Person:
    d: Declaration = step.record
    if step.data.get("household_id") is None:
        raise Invalid(field_errors("household_id", "Name the household the person joins."))
    facts = d.facts
    fields = {"name": facts["name"], "household_id": step.data["household_id"],
              "relation_to_head": RELATIONS.get(d.kind, facts.get("relation_to_head")),
              "id_number": secret.get("id_number"), "phone": secret.get("phone")}
    if facts.get("population_type"):
        fields["population_type"] = facts["population_type"]
    person, _ = people.create_person(step.s, step.actor, fields, None, source="self_declared")
    return person


def _accept(step: Step) -> Result:
    d: Declaration = step.record
    if d.needs_visit:
        if step.data.get("visit_id") is None:
            raise Invalid(field_errors("visit_id", "This declaration is checked by a visit."))
        visits.get_visit(step.s, step.actor, step.data["visit_id"])
        d.visit_id = step.data["visit_id"]
    secret = secrets_of(d)
    if d.kind in ("moving_in", "tenant", "newborn"):
        person = _new_person(step, secret)
        fields = [k for k in ("name", "id_number", "phone") if k in d.facts or k in secret]
    elif d.kind == "phone_change":
        person = _person(step, secret)
        people.update_person(step.s, step.actor, person.id, {"phone": secret["phone"]},
                             person.version)
        fields = ["phone"]
    else:  # elderly_alone
        person = _person(step, secret)
        tags.add_tag(step.s, step.actor, person.id, {"tag": "elderly_alone",
                                                     "start_date": local_today()})
        fields = ["tags.elderly_alone"]
    record_sources(step.s, "person", person.id, {f: {
        "source": "self_declared", "declaration_id": d.id, "resident_id": d.resident_id,
        "verified_by": step.actor.user_id, "at": step.at.isoformat()} for f in fields})
    d.result = {"type": "person", "id": person.id}
    d.decided_by, d.decided_at = step.actor.user_id, step.at
    return Result(recipients=(d.resident_id,), facts={"person_id": person.id})


def _refuse(step: Step) -> Result:
    d: Declaration = step.record
    d.refusal_reason = step.data["reason"]
    d.decided_by, d.decided_at = step.actor.user_id, step.at
    return Result(note=d.refusal_reason, recipients=(d.resident_id,))


def _withdraw(step: Step) -> Result:
    return Result()


def _load(s: Session, actor: Actor, declaration_id: Any) -> Declaration:
    return get_declaration(s, actor, declaration_id, for_update=True)


def _announce(s: Session, actor: Actor, d: Declaration, transition: Transition,
              result: Result) -> None:
    if d.state in ("accepted", "refused"):
        notify(s, [r for r in result.recipients if r != actor.user_id], "declaration_decided", {
            "declaration_id": d.id, "kind": d.kind, "kind_label": DECLARATION_KINDS[d.kind],
            "state": d.state, "state_label": transition.label,
            "reason": d.refusal_reason or ""})


LIFECYCLE = actions.Lifecycle(
    kind="declaration", noun="declaration",
    transitions=(
        Transition("accept", "已采纳", ("submitted",), "accepted", DECIDE),
        Transition("refuse", "未采纳", ("submitted",), "refused", DECIDE, requires=("reason",)),
        Transition("withdraw", "已撤回", ("submitted",), "withdrawn", SUBMIT,
                   relation=is_declarant),
    ),
    handlers={"accept": _accept, "refuse": _refuse, "withdraw": _withdraw},
    load=_load, announce=_announce, recorded=("reason", "visit_id", "household_id"))


def act(s: Session, actor: Actor, declaration_id: int, action: str, data: dict,
        expected_version: int | None) -> Declaration:
    """Take one step on a declaration; the same step sent again (the state it leads to
    already reached, by this actor) changes nothing."""
    target = LIFECYCLE.by_action.get(action)
    if target is not None:
        current = get_declaration(s, actor, declaration_id)
        mine = current.decided_by == actor.user_id or (
            current.decided_by is None and current.resident_id == actor.user_id)
        if current.state == target.target and mine:
            return current
    return actions.run(s, actor, LIFECYCLE, declaration_id, action, data,
                       expected_version).record


def allowed(s: Session, actor: Actor, declaration: Declaration) -> list[str]:
    return actions.allowed(s, actor, LIFECYCLE, declaration)


# --- what a worker's task list shows (grid.visits, wired in grid/exchange/wiring.py) -------


def task_items(s: Session, actor: Actor, limit: int) -> tuple[list[dict], int]:
    if not actor.can(DECIDE):
        return [], 0
    stmt = sa.select(Declaration).where(areas.in_scope(Declaration.area_id, actor),
                                        Declaration.state == "submitted")
    total = s.scalar(sa.select(sa.func.count()).select_from(stmt.subquery()))
    rows = s.scalars(stmt.order_by(Declaration.created_at, Declaration.id).limit(limit)).all()
    return [{"type": "declaration", "id": d.id, "area_id": d.area_id,
             "title": f"居民自主申报：{DECLARATION_KINDS[d.kind]} {d.address}",
             "kind": d.kind, "needs_visit": d.needs_visit, "proposed": d.facts,
             "proposed_source": {"source": "self_declared", "resident_id": d.resident_id},
             "created_at": d.created_at, "version": d.version} for d in rows], total or 0
