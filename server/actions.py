"""The one action engine: every record with a life cycle (cases, bookings, warnings,
declarations, grants…) moves through its states here, with the same checks in the same
order, the same 409 body, the same timeline entry and the same "after" hooks.

How to put a life cycle on it (see grid/cases/actions.py, grid/services/actions.py):

1. **Predicates** — "who may act" and "may it happen now" are named functions of a
   `Context` (session, actor, a per-call memo) and the record, wrapped in `Relation` so
   that a table composes them with `|`, `&`, `~`::

       @relation
       def is_case_reporter(c: Context, case) -> bool:
           return case.reporter_id == c.actor.user_id

       street = is_platform_admin | is_street_dispatcher

   Role names stay in server/auth/permissions.py: predicates ask it
   (`permissions.dispatches_street(actor)`), never `"street_dispatcher" in actor.roles`.
   `c.once(key, compute)` memoizes a costly fact (a query) for one check of one record.

2. **The table** — one `Transition` per action: its 中文 label, the states it leaves
   (`sources`), the state it enters (`target`; None = the state does not change, e.g. a
   request awaiting approval), the permission, the relation (who among the permitted may
   act on *this* record), the fields it requires (422 naming them when missing), and
   `when` (a condition of the record beyond its state, e.g. "a request is pending"; false =
   409 like a wrong state).

3. **Handlers** — one per action: `handler(step: Step) -> Result | None`. A handler
   changes the record (not its state: the engine sets `target`), may raise domain errors
   for what only it can know, and returns a `Result` (the timeline note, who is told, the
   facts the timeline keeps, e.g. the department chosen). `step.data` is read-only: values
   pass through the Result, never through the request's data.

4. **The life cycle** — `Lifecycle(kind, transitions, handlers, load, …)`: `load` fetches
   the record in the actor's scope under a row lock (NotFound outside it), `entered` runs
   after the table moved the state to `target` (clocks; a handler that changes the state
   itself, e.g. an approval applying a request, does what its new state needs),
   `timeline` writes the one `Entry` where this kind keeps its history, `announce` tells
   people (outbox rows). The constructor checks the table's invariants (one transition
   per action, one handler per transition, labels, sources).

5. **Running** — `run(s, actor, lifecycle, record_id, action, data, expected)`. The checks,
   in this order everywhere (ARCHITECTURE.md §3):

       404  no such action, or the record is out of scope (it does not exist for them)
       403  no permission (`required` names it), or the relation does not hold
       428  no version sent
       412  stale version: `Stale(record)`; the API answers with the record in the
            resource's own response schema (registry.current_schema, server/api.py)
       409  not allowed now (state or `when`): `allowed` lists what this actor may do now
       422  a required field is missing (the fields are named)

   then the handler, the state change, the timeline `Entry`, the audit row
   (`<kind>_<action>`, changes `{"state": [before, after]}`), `announce`, and every
   transition listener, all in the caller's transaction; returns an `Outcome`.

6. **Listeners** — other packages react to any successful transition in the same
   transaction (webhook events, warnings): in their `wiring.contribute`,
   `registry.transition_listeners((on_transition,))` with
   `on_transition(s, kind, record, transition, actor, result) -> None`.

`allowed(s, actor, lifecycle, record)` lists what the actor may do now (a record's
`actions` field and the 409 body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from sqlalchemy.orm import Session

from server import audit
from server.auth.actor import Actor
from server.clock import now
from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionRequired,
    Stale,
)

# --- predicates ----------------------------------------------------------------------------


@dataclass
class Context:
    """What a predicate may look at besides the record: the session, the actor, and facts
    already computed for this check (`once`)."""

    s: Session
    actor: Actor
    memo: dict = field(default_factory=dict)

    def once(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


class Relation:
    """A named predicate `(Context, record) -> bool`; `|`, `&` and `~` compose them (the
    composition's name says how, for messages and the documentation)."""

    __slots__ = ("name", "test")

    def __init__(self, name: str, test: Callable[[Context, Any], bool]) -> None:
        self.name, self.test = name, test

    def __call__(self, c: Context, record: Any) -> bool:
        return bool(self.test(c, record))

    def __or__(self, other: Relation) -> Relation:
        return Relation(f"({self.name} | {other.name})",
                        lambda c, r: self(c, r) or other(c, r))

    def __and__(self, other: Relation) -> Relation:
        return Relation(f"({self.name} & {other.name})",
                        lambda c, r: self(c, r) and other(c, r))

    def __invert__(self) -> Relation:
        return Relation(f"~{self.name}", lambda c, r: not self(c, r))

    def __repr__(self) -> str:
        return f"Relation({self.name})"


def relation(test: Callable[[Context, Any], bool]) -> Relation:
    """Decorator: a named predicate from a function (its name is the relation's)."""
    return Relation(test.__name__, test)


ANYONE = Relation("anyone", lambda c, r: True)  # every holder of the permission
ALWAYS = Relation("always", lambda c, r: True)  # no condition beyond the state


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    action: str
    label: str  # 中文 name on the timeline and in the console
    sources: tuple[str, ...]
    target: str | None  # None: the state does not change (requests, ratings…)
    permission: str
    relation: Relation = ANYONE
    requires: tuple[str, ...] = ()
    when: Relation = ALWAYS  # beyond the state: may it happen now? (false → 409)


@dataclass(frozen=True)
class Result:
    """What a handler hands back to the engine."""

    note: str | None = None  # the timeline's note
    recipients: tuple[int | None, ...] = ()  # who `announce` tells (the actor is skipped)
    facts: Mapping[str, Any] = field(default_factory=dict)  # kept on the timeline entry
    notice: str | None = None  # a notice kind other than the life cycle's default


@dataclass(frozen=True)
class Step:
    """What a handler receives."""

    s: Session
    actor: Actor
    record: Any
    transition: Transition
    data: Mapping[str, Any]  # read-only
    at: datetime


@dataclass(frozen=True)
class Entry:
    """THE timeline entry of every life cycle (流转记录): who did what, from which state to
    which, when, with what note, facts and photos."""

    kind: str
    record_id: Any
    action: str
    label: str
    from_state: str
    to_state: str
    actor_id: int | None
    at: datetime
    note: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    photo_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Outcome:
    record: Any
    transition: Transition
    result: Result
    entry: Entry


Handler = Callable[[Step], Result | None]


class Listener(Protocol):
    def __call__(self, s: Session, kind: str, record: Any, transition: Transition,
                 actor: Actor, result: Result) -> None: ...


@dataclass(frozen=True)
class Lifecycle:
    """One kind of record's life cycle: its table, handlers and the hooks around them."""

    kind: str  # "case", "service_booking"…: audit rows, listeners, messages
    transitions: tuple[Transition, ...]
    handlers: Mapping[str, Handler]
    load: Callable[[Session, Actor, Any], Any]  # in scope, locked; NotFound outside
    noun: str = ""  # for messages ("case"); defaults to kind
    recorded: tuple[str, ...] = ()  # fields of the request kept on the timeline entry
    entered: Callable[[Session, Any, str, datetime], None] | None = None  # (s, rec, before, at)
    timeline: Callable[[Session, Any, Entry], None] | None = None
    announce: Callable[[Session, Actor, Any, Transition, Result], None] | None = None
    state_attr: str = "state"

    def __post_init__(self) -> None:
        actions = [t.action for t in self.transitions]
        problems = []
        if len(set(actions)) != len(actions):
            problems.append("an action appears twice")
        if set(self.handlers) != set(actions):
            problems.append(f"handlers do not match the table: "
                            f"{sorted(set(self.handlers) ^ set(actions))}")
        for t in self.transitions:
            if not t.label or not t.sources or not t.permission:
                problems.append(f"{t.action}: label, sources and permission are required")
            if not isinstance(t.relation, Relation) or not isinstance(t.when, Relation):
                problems.append(f"{t.action}: relation and when must be Relations")
            if t.target is not None and t.target in t.sources and len(t.sources) == 1:
                problems.append(f"{t.action}: goes nowhere (target is its only source)")
        if problems:
            raise ValueError(f"life cycle {self.kind!r}: " + "; ".join(problems))

    @property
    def by_action(self) -> dict[str, Transition]:
        return {t.action: t for t in self.transitions}

    def states(self) -> set[str]:
        return {s for t in self.transitions for s in t.sources} | {
            t.target for t in self.transitions if t.target}


# Contributed at wiring (server/modules.py Registry.transition_listeners).
listeners: list[Listener] = []


# --- running -------------------------------------------------------------------------------


def may(c: Context, transition: Transition, record: Any) -> bool:
    """The actor holds the permission and the relation holds (403 otherwise)."""
    return c.actor.can(transition.permission) and transition.relation(c, record)


def possible(c: Context, transition: Transition, record: Any, state: str) -> bool:
    """The record's state and condition allow the transition now (409 otherwise)."""
    return state in transition.sources and transition.when(c, record)


def allowed(s: Session, actor: Actor, lifecycle: Lifecycle, record: Any,
            known: Mapping[Any, Any] | None = None) -> list[str]:
    """The actions this actor may take on this record now, in table order. `known`: facts
    the caller already has (memo keys of the predicates, e.g. no request is pending)."""
    c = Context(s, actor, dict(known or {}))
    return _allowed(c, lifecycle, record)


def _allowed(c: Context, lifecycle: Lifecycle, record: Any) -> list[str]:
    state = getattr(record, lifecycle.state_attr)
    return [t.action for t in lifecycle.transitions
            if state in t.sources and may(c, t, record) and possible(c, t, record, state)]


def check(c: Context, lifecycle: Lifecycle, transition: Transition, record: Any,
          data: Mapping[str, Any], expected: int | None) -> None:
    """403 → 428 → 412 → 409 → 422, after `load` answered 404 (module docstring)."""
    noun = lifecycle.noun or lifecycle.kind
    action = transition.action
    c.actor.require(transition.permission)
    if not transition.relation(c, record):
        raise Forbidden(f"This {noun} is not yours to {action}")
    if expected is None:
        raise PreconditionRequired("Send the version you edited (If-Match or `version`)")
    if expected != record.version:
        raise Stale(record)
    state = getattr(record, lifecycle.state_attr)
    if state not in transition.sources:
        raise Conflict(f"Cannot {action} a {noun} that is {state}",
                       allowed=_allowed(c, lifecycle, record))
    if not transition.when(c, record):
        raise Conflict(f"Cannot {action} this {noun} now: {transition.when.name} does not "
                       "hold", allowed=_allowed(c, lifecycle, record))
    missing = {name: ["Required for this action."] for name in transition.requires
               if data.get(name) in (None, "", [], ())}
    if missing:
        raise Invalid({"json": missing})


def run(s: Session, actor: Actor, lifecycle: Lifecycle, record_id: Any, action: str,
        data: Mapping[str, Any], expected: int | None, at: datetime | None = None,
        known: Mapping[Any, Any] | None = None) -> Outcome:
    """Take one action on one record, in the caller's transaction (module docstring)."""
    transition = lifecycle.by_action.get(action)
    if transition is None:
        raise NotFound(f"No such action {action!r}")
    record = lifecycle.load(s, actor, record_id)
    c = Context(s, actor, dict(known or {}))
    data = MappingProxyType(dict(data))
    check(c, lifecycle, transition, record, data, expected)
    at = at or now()
    before = getattr(record, lifecycle.state_attr)
    result = lifecycle.handlers[action](Step(s, actor, record, transition, data, at)) \
        or Result()
    if transition.target is not None:
        setattr(record, lifecycle.state_attr, transition.target)
        if lifecycle.entered is not None:
            lifecycle.entered(s, record, before, at)
    entry = _entry(lifecycle, record, transition, actor, before, at, data, result)
    if lifecycle.timeline is not None:
        lifecycle.timeline(s, record, entry)
    audit.record(s, actor, f"{lifecycle.kind}_{action}", lifecycle.kind, record.id,
                 changes={"state": [before, entry.to_state]})
    if lifecycle.announce is not None:
        lifecycle.announce(s, actor, record, transition, result)
    for listener in tuple(listeners):
        listener(s, lifecycle.kind, record, transition, actor, result)
    s.flush()  # the version moves with the change (version_id_col)
    return Outcome(record, transition, result, entry)


def _entry(lifecycle: Lifecycle, record: Any, transition: Transition, actor: Actor,
           before: str, at: datetime, data: Mapping[str, Any], result: Result) -> Entry:
    facts = {k: data[k] for k in lifecycle.recorded if data.get(k) is not None}
    facts.update({k: v for k, v in result.facts.items() if v is not None})
    return Entry(kind=lifecycle.kind, record_id=record.id, action=transition.action,
                 label=transition.label, from_state=before,
                 to_state=getattr(record, lifecycle.state_attr), actor_id=actor.user_id,
                 at=at, note=result.note, facts=facts,
                 photo_ids=tuple(data.get("photo_ids") or ()))


def add_listeners(new: Iterable[Listener]) -> None:
    """Wiring: listeners of every successful transition (kept once each)."""
    for listener in new:
        if listener not in listeners:
            listeners.append(listener)
