"""How a pull reads: a fixed number of statements per page whatever its size, and an
incremental pull as a range scan of the (area_id, change_xid) indexes."""

from __future__ import annotations

from contextlib import contextmanager

import sqlalchemy as sa

from grid.sync import pull as sync
from tests.fixtures.areas import G111, G112
from tests.grid.sync.conftest import actor_of


@contextmanager
def statements(db_session):
    seen: list[tuple[str, dict]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    connection = db_session.get_bind()
    sa.event.listen(connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(connection, "before_cursor_execute", record)


def _persons(db_session, area_id: int, n: int) -> None:
    """n persons in a grid (SQL: thousands of rows quickly), a third of them tagged."""
    db_session.execute(sa.text(
        "INSERT INTO persons (area_id, source, name, population_type, registration_situation,"
        " status, needs_review, version) SELECT :area, 'import', 'p' || g, 'registered',"
        " 'both_here', 'present', false, 1 FROM generate_series(1, :n) g"),
        {"area": area_id, "n": n})
    db_session.execute(sa.text(
        "INSERT INTO person_tags (person_id, kind, tag, start_date) SELECT id, 'care',"
        " 'elderly_alone', '2024-01-01' FROM persons WHERE area_id = :area AND id % 3 = 0"),
        {"area": area_id})


def test_a_page_costs_the_same_statements_whatever_its_size(db_session, member, collect,
                                                             tree, client):
    headers, user = member("grid_worker", G111)
    actor = actor_of(db_session, user)
    collect(headers, "buildings", at=G111)
    _persons(db_session, tree[G111], 3)
    cursor = sync.pull(db_session, actor, None, 500)["next_cursor"]

    def count(n_more: int) -> int:
        nonlocal cursor
        _persons(db_session, tree[G111], n_more)
        collect(headers, "buildings", at=G111)
        with statements(db_session) as seen:
            body = sync.pull(db_session, actor, cursor, 500)
        assert len(body["items"]) == n_more + 1
        cursor = body["next_cursor"]
        return len([sql for sql, _ in seen if not sql.startswith("SAVEPOINT")])  # (tests')

    # the snapshot, the changes (every type and tombstones), the records' JSON (with tags)
    assert count(2) == count(60) == 3


def test_an_incremental_pull_is_an_index_range_on_area_and_xid(db_session, member, tree):
    _, user = member("grid_worker", G111)
    actor = actor_of(db_session, user)
    for code in (G111, G112):
        _persons(db_session, tree[code], 1500)
    cursor = sync.pull(db_session, actor, None, 2000)["next_cursor"]
    _persons(db_session, tree[G111], 5)
    with statements(db_session) as seen:
        assert len(sync.pull(db_session, actor, cursor, 500)["items"]) == 5
    persons_query = next((sql, params) for sql, params in seen if "FROM persons" in sql)
    # What is asserted is that the index *can* serve the predicate; whether the planner
    # prefers it on a given table size depends on statistics earlier tests left behind.
    conn = db_session.connection()
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    plan = "\n".join(conn.exec_driver_sql(
        "EXPLAIN " + persons_query[0], persons_query[1]).scalars())
    lines = plan.splitlines()
    scan = next(i for i, line in enumerate(lines) if "ix_persons_area_xid" in line)
    # The xid range is an index condition (not a filter over the whole table); whether the
    # area is one too or comes from the join depends on the planner's estimates.
    assert "Index Cond" in lines[scan + 1] and "change_xid >=" in lines[scan + 1], plan
