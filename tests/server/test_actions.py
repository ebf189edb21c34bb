"""The one action engine (server/actions.py): the table's invariants, the order of its
checks for every pair of failing conditions, and what a successful action leaves behind
(timeline entry, audit row, listeners) in the caller's transaction."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from server import actions
from server.actions import ANYONE, Context, Lifecycle, Relation, Result, Transition, relation
from server.audit import AuditEntry
from server.auth.actor import Actor
from server.errors import DomainError, NotFound, Stale


@dataclass
class Thing:
    """A record with a life cycle, as the engine sees one."""

    id: int = 7
    state: str = "open"
    version: int = 3
    owner_id: int = 1
    in_scope: bool = True
    ready: bool = True


@relation
def is_owner(c: Context, thing: Thing) -> bool:
    return thing.owner_id == c.actor.user_id


@relation
def is_ready(c: Context, thing: Thing) -> bool:
    return thing.ready


def _load(things: dict[int, Thing]):
    def load(s, actor, thing_id):
        thing = things.get(thing_id)
        if thing is None or not thing.in_scope:
            raise NotFound("No such thing")
        return thing
    return load


def _lifecycle(things, **hooks) -> Lifecycle:
    return Lifecycle(
        kind="thing", noun="thing", load=_load(things), recorded=("size",),
        transitions=(
            Transition("close", "关闭", ("open",), "closed", "thing:close", is_owner,
                       ("reason",), when=is_ready),
            Transition("note", "备注", ("open", "closed"), None, "thing:close", ANYONE),
        ),
        handlers={"close": lambda step: Result(note=step.data["reason"],
                                               facts={"closed_by": step.actor.user_id}),
                  "note": lambda step: None},
        **hooks)


OWNER = Actor(user_id=1, permissions=frozenset({"thing:close"}))

# Each failing condition, in the order the engine checks them, with its status.
FAILURES = {
    "no_action": 404, "out_of_scope": 404, "no_permission": 403, "no_relation": 403,
    "no_version": 428, "stale": 412, "wrong_state": 409, "not_now": 409, "missing_data": 422,
}


def _attempt(failing: set[str]) -> int:
    thing = Thing(in_scope="out_of_scope" not in failing,
                  owner_id=2 if "no_relation" in failing else 1,
                  state="closed" if "wrong_state" in failing else "open",
                  ready="not_now" not in failing)
    actor = Actor(user_id=1, permissions=frozenset() if "no_permission" in failing
                  else frozenset({"thing:close"}))
    expected = None if "no_version" in failing else (2 if "stale" in failing else 3)
    data = {} if "missing_data" in failing else {"reason": "done"}
    action = "fly" if "no_action" in failing else "close"
    try:
        actions.run(None, actor, _lifecycle({7: thing}), 7, action, data, expected)
    except DomainError as exc:
        return exc.status
    raise AssertionError("every attempt here fails")


@pytest.mark.parametrize("first,second", list(itertools.combinations(FAILURES, 2)))
def test_the_earlier_check_answers_when_two_fail(first, second):
    assert _attempt({first, second}) == FAILURES[first]


@pytest.mark.parametrize("alone", FAILURES)
def test_each_failure_alone_has_its_status(alone):
    assert _attempt({alone}) == FAILURES[alone]


def test_a_stale_answer_carries_the_record_itself():
    thing = Thing()
    with pytest.raises(Stale) as raised:
        actions.run(None, OWNER, _lifecycle({7: thing}), 7, "close", {"reason": "x"}, 2)
    assert raised.value.record is thing and raised.value.status == 412


def test_409_lists_what_this_actor_may_do_now():
    thing = Thing(state="closed")
    with pytest.raises(DomainError) as raised:
        actions.run(None, OWNER, _lifecycle({7: thing}), 7, "close", {"reason": "x"}, 3)
    assert raised.value.status == 409 and raised.value.extra["allowed"] == ["note"]


def test_422_names_the_missing_fields():
    with pytest.raises(DomainError) as raised:
        actions.run(None, OWNER, _lifecycle({7: Thing()}), 7, "close", {"reason": ""}, 3)
    assert raised.value.errors == {"json": {"reason": ["Required for this action."]}}


def test_allowed_follows_permission_relation_state_and_condition():
    life = _lifecycle({})
    assert actions.allowed(None, OWNER, life, Thing()) == ["close", "note"]
    assert actions.allowed(None, OWNER, life, Thing(ready=False)) == ["note"]
    assert actions.allowed(None, OWNER, life, Thing(owner_id=2)) == ["note"]
    assert actions.allowed(None, Actor(user_id=1), life, Thing()) == []


def test_relations_compose_and_say_how():
    either = is_owner | ~is_ready
    both = is_owner & is_ready
    c = Context(None, OWNER)
    assert either.name == "(is_owner | ~is_ready)"
    assert either(c, Thing(owner_id=2, ready=False)) and not either(c, Thing(owner_id=2))
    assert both(c, Thing()) and not both(c, Thing(ready=False))


def test_a_fact_is_computed_once_per_check():
    calls = []
    counted = Relation("counted", lambda c, r: c.once("fact", lambda: calls.append(1) or True))
    c = Context(None, OWNER)
    assert (counted & counted)(c, Thing()) and calls == [1]


@pytest.mark.parametrize("broken", [
    dict(transitions=(Transition("a", "甲", ("x",), "y", "p"),
                      Transition("a", "甲", ("y",), "z", "p")), handlers={"a": None}),
    dict(transitions=(Transition("a", "甲", ("x",), "y", "p"),), handlers={}),
    dict(transitions=(Transition("a", "甲", ("x",), "y", "p"),),
         handlers={"a": None, "b": None}),
    dict(transitions=(Transition("a", "", ("x",), "y", "p"),), handlers={"a": None}),
    dict(transitions=(Transition("a", "甲", (), "y", "p"),), handlers={"a": None}),
    dict(transitions=(Transition("a", "甲", ("x",), "y", ""),), handlers={"a": None}),
    dict(transitions=(Transition("a", "甲", ("x",), "y", "p", relation=lambda c, r: True),),
         handlers={"a": None}),
    dict(transitions=(Transition("a", "甲", ("x",), "x", "p"),), handlers={"a": None}),
])
def test_a_broken_table_is_refused_when_declared(broken):
    with pytest.raises(ValueError):
        Lifecycle(kind="thing", load=_load({}), **broken)


def test_a_transition_writes_one_entry_an_audit_row_and_tells_listeners(db_session):
    entries, told, heard = [], [], []
    thing = Thing()
    life = _lifecycle({7: thing}, timeline=lambda s, r, entry: entries.append(entry),
                      announce=lambda s, a, r, t, result: told.append(result.note),
                      entered=lambda s, r, before, at: told.append(before))

    def listener(s, kind, record, transition, actor, result):
        heard.append((kind, record.state, transition.action, actor.user_id, result.note))

    actions.add_listeners([listener])
    try:
        outcome = actions.run(db_session, OWNER, life, 7, "close",
                              {"reason": "修好了", "size": 3, "photo_ids": [5]}, 3)
    finally:
        actions.listeners.remove(listener)
    entry = outcome.entry
    assert thing.state == "closed" and entries == [entry]
    assert (entry.kind, entry.action, entry.label, entry.from_state, entry.to_state) == (
        "thing", "close", "关闭", "open", "closed")
    assert entry.note == "修好了" and entry.facts == {"size": 3, "closed_by": 1}
    assert entry.photo_ids == (5,) and entry.actor_id == 1
    assert told == ["open", "修好了"]
    assert heard == [("thing", "closed", "close", 1, "修好了")]
    row = db_session.query(AuditEntry).filter_by(action="thing_close").one()
    assert row.changes == {"state": ["open", "closed"]}


def test_a_handler_cannot_write_into_the_request_data():
    def sneaky(step):
        step.data["department_id"] = 1
    life = Lifecycle(kind="thing", load=_load({7: Thing()}), handlers={"note": sneaky},
                     transitions=(Transition("note", "备注", ("open",), None, "thing:close"),))
    with pytest.raises(TypeError):
        actions.run(None, OWNER, life, 7, "note", {}, 3)
