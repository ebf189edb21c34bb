"""The reason the cursor is a snapshot, not a change_seq: transactions commit out of the
order of the sequence numbers they took. Proven with real, separately committed transactions
(so not inside the test's rolled-back one): a grid of its own with a unique code, removed
with everything in it afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.registry.models import Building, Tombstone
from grid.sync import pull as sync
from server.auth.actor import Actor
from server.auth.permissions import permissions_for


@pytest.fixture
def own_grid(engine) -> Iterator[int]:
    """A grid committed for real, and its removal (with its buildings and tombstones)."""
    code = f"9{uuid.uuid4().int % 10**14:014d}"
    with engine.begin() as conn:
        area_id = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, path, version) "
            "VALUES (:code, '提交顺序测试网格', 'grid', '', 1) RETURNING id"), {"code": code})
        conn.execute(sa.text("UPDATE areas SET path = id || '.' WHERE id = :id"),
                     {"id": area_id})
    try:
        yield area_id
    finally:
        with engine.begin() as conn:
            for table in (Tombstone.__table__, Building.__table__):
                conn.execute(sa.delete(table).where(table.c.area_id == area_id))
            conn.execute(sa.text("DELETE FROM areas WHERE id = :id"), {"id": area_id})


def _worker(area_id: int) -> Actor:
    roles = frozenset({"grid_worker"})
    return Actor(user_id=None, roles=roles, permissions=permissions_for(roles),
                 area_paths=(f"{area_id}.",))


def _pull(engine: sa.Engine, actor: Actor, cursor: str | None) -> dict:
    """A pull in a transaction of its own, as a request would make it."""
    with Session(engine, expire_on_commit=False) as s:
        return sync.pull(s, actor, cursor, 500)


def test_a_transaction_that_commits_late_is_not_skipped(engine, own_grid):
    actor = _worker(own_grid)
    with Session(engine, expire_on_commit=False) as s:
        early = Building(area_id=own_grid, source="grid_worker", name="早")
        s.add(early)
        s.commit()
    base = _pull(engine, actor, None)
    assert [i["id"] for i in base["items"]] == [early.id]

    with Session(engine, expire_on_commit=False) as a, Session(engine, expire_on_commit=False) as b:
        # A takes its sequence numbers first (an insert, and an update through the
        # trigger) but does not commit yet.
        late = Building(area_id=own_grid, source="grid_worker", name="A")
        a.add(late)
        a.get(Building, early.id).floors = 9
        a.flush()
        # B takes later numbers and commits first.
        quick = Building(area_id=own_grid, source="grid_worker", name="B")
        b.add(quick)
        b.commit()
        assert late.change_seq < quick.change_seq

        first = _pull(engine, actor, base["next_cursor"])
        assert [i["id"] for i in first["items"]] == [quick.id]  # A's work is not visible yet
        a.commit()

    # A cursor of "the last change_seq seen" would now ask for seq > B's and skip A.
    second = _pull(engine, actor, first["next_cursor"])
    assert sorted((i["id"], i["version"]) for i in second["items"]) == sorted(
        [(late.id, 1), (early.id, 2)])
    assert second["items"][0]["change_seq"] < quick.change_seq
    assert _pull(engine, actor, second["next_cursor"])["items"] == []


def test_a_late_commit_during_paging_comes_in_the_next_pull(engine, own_grid):
    """Pages of one pull keep their pair of snapshots: what commits meanwhile, even with
    lower sequence numbers than the page already sent, comes with the next pull."""
    actor = _worker(own_grid)
    base = _pull(engine, actor, None)
    with Session(engine, expire_on_commit=False) as a, Session(engine, expire_on_commit=False) as b:
        late = Building(area_id=own_grid, source="grid_worker", name="A")
        a.add(late)
        a.flush()
        quick = [Building(area_id=own_grid, source="grid_worker", name=f"B{i}")
                 for i in range(3)]
        b.add_all(quick)
        b.commit()
        with Session(engine, expire_on_commit=False) as s:
            page1 = sync.pull(s, actor, base["next_cursor"], 2)
        a.commit()
    with Session(engine, expire_on_commit=False) as s:
        page2 = sync.pull(s, actor, page1["next_cursor"], 2)
    assert page1["has_more"] and not page2["has_more"]
    assert [i["id"] for i in page1["items"] + page2["items"]] == [q.id for q in quick]
    after = _pull(engine, actor, page2["next_cursor"])
    assert [i["id"] for i in after["items"]] == [late.id]
