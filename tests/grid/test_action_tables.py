"""The real transition tables on the engine (cases' TRANSITIONS, bookings' ACTIONS): every
state they name is one the model stores, every permission is in the role table, every
"who" is a named predicate, and each label is the 中文 the timeline and console show."""

from __future__ import annotations

import pytest

from grid.cases import actions as case_actions
from grid.cases.models import STATES
from grid.services import actions as booking_actions
from grid.services.models import BOOKING_STATES
from server.actions import Relation
from server.auth.permissions import PERMISSIONS

TABLES = [(case_actions.LIFECYCLE, STATES), (booking_actions.LIFECYCLE, BOOKING_STATES)]


@pytest.mark.parametrize("lifecycle,states", TABLES, ids=["case", "booking"])
def test_a_table_names_only_stored_states_and_known_permissions(lifecycle, states):
    assert lifecycle.states() <= set(states)
    for t in lifecycle.transitions:
        assert t.permission in PERMISSIONS, t.action
        assert isinstance(t.relation, Relation) and t.relation.name, t.action
        assert any("\u4e00" <= ch <= "\u9fff" for ch in t.label), t.action
        assert set(t.requires) <= {"reason", "into_case_id", "result", "photo_ids", "rating",
                                   "extension_hours", "slot_id", "scheduled_at"}, t.action


@pytest.mark.parametrize("lifecycle,states", TABLES, ids=["case", "booking"])
def test_labels_are_distinct(lifecycle, states):
    labels = [t.label for t in lifecycle.transitions]
    assert len(set(labels)) == len(labels)


def test_the_old_names_of_the_tables_still_import():
    from grid.cases.workflow import TRANSITIONS
    from grid.services.actions import ACTIONS

    assert TRANSITIONS is case_actions.LIFECYCLE.transitions
    assert ACTIONS is booking_actions.LIFECYCLE.transitions


def test_who_may_act_reads_as_named_predicates():
    by_action = case_actions.LIFECYCLE.by_action
    assert "is_street_dispatcher" in by_action["dispatch"].relation.name
    assert "is_department_handler" in by_action["sign"].relation.name
    assert "is_case_reporter" in by_action["verify"].relation.name
    assert booking_actions.LIFECYCLE.by_action["attend"].relation.name == "is_service_manager"
