"""building_occupancy: households and present persons per building, kept by the registry

Written by hand. The table (BuildingOccupancy in grid/registry/models.py), filled from the
register, and triggers on `persons`, `households` and `houses` that append the difference
a change makes in the same transaction, so every write path (API, sync push, ledger COPY,
moves, endings) keeps it exact: INSERT adds and DELETE subtracts (statement-level, grouped
per building over the transition table: a ledger COPY of thousands of persons costs one
grouped insert); UPDATE appends −old and +new for a row whose counted columns changed
(row-level with a WHEN condition: editing a phone or a name fires nothing). A row's
contribution joins the *other* tables as they are after the statement, which a statement
on one table does not change. TRUNCATE of any of the three rebuilds the table.

What counts is what the live counts of grid/maps/tiles.py counted: households not ended in
a house not ended; persons not ended, status 'present', in such a household. Whether the
building itself has ended does not matter (ended buildings are not shown).

Also the indexes the grid profile counts from: a grid's current persons (with the columns
it groups by, for an index-only scan), households and houses; visits by time; and the
open cases' locations, which tiles search among a million closed cases.

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

INSERT = "INSERT INTO building_occupancy (building_id, households, persons) "
NONZERO = " HAVING sum(households) <> 0 OR sum(persons) <> 0"

# each over rows `r` with a column `sign` (+1 / −1); yields (building_id, households, persons)
PERSONS = """
SELECT hs.building_id, 0 AS households, r.sign AS persons
FROM ({rows}) AS r
JOIN households h ON h.id = r.household_id AND h.ended_at IS NULL
JOIN houses hs ON hs.id = h.house_id AND hs.ended_at IS NULL
WHERE r.ended_at IS NULL AND r.status = 'present'
"""
HOUSEHOLDS = """
SELECT hs.building_id, r.sign AS households,
       r.sign * (SELECT count(*) FROM persons p WHERE p.household_id = r.id
                 AND p.ended_at IS NULL AND p.status = 'present') AS persons
FROM ({rows}) AS r
JOIN houses hs ON hs.id = r.house_id AND hs.ended_at IS NULL
WHERE r.ended_at IS NULL
"""
HOUSES = """
SELECT r.building_id,
       r.sign * (SELECT count(*) FROM households h WHERE h.house_id = r.id
                 AND h.ended_at IS NULL) AS households,
       r.sign * (SELECT count(*) FROM persons p JOIN households h ON h.id = p.household_id
                 WHERE h.house_id = r.id AND h.ended_at IS NULL
                 AND p.ended_at IS NULL AND p.status = 'present') AS persons
FROM ({rows}) AS r
WHERE r.ended_at IS NULL
"""
TABLES = {"persons": PERSONS, "households": HOUSEHOLDS, "houses": HOUSES}

# what a row's contribution depends on (an UPDATE changing none of these adds nothing)
COUNTED = {"persons": ("{t}.ended_at IS NULL", "{t}.status = 'present'", "{t}.household_id"),
           "households": ("{t}.ended_at IS NULL", "{t}.house_id"),
           "houses": ("{t}.ended_at IS NULL", "{t}.building_id")}

# the whole count from the register (fill and rebuild): one row per building with people
FULL = """
SELECT hs.building_id, count(*) AS households, coalesce(sum(p.n), 0) AS persons
FROM houses hs
JOIN households h ON h.house_id = hs.id AND h.ended_at IS NULL
LEFT JOIN (SELECT household_id, count(*) AS n FROM persons
           WHERE ended_at IS NULL AND status = 'present' GROUP BY household_id) p
       ON p.household_id = h.id
WHERE hs.ended_at IS NULL
GROUP BY hs.building_id
"""


def _append(table: str, rows: str) -> str:
    return (INSERT + "SELECT building_id, sum(households), sum(persons) FROM ("
            + TABLES[table].format(rows=rows) + ") AS d GROUP BY building_id" + NONZERO)


def upgrade():
    op.create_table('building_occupancy',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('building_id', sa.BigInteger(), nullable=False),
    sa.Column('households', sa.Integer(), nullable=False),
    sa.Column('persons', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_building_occupancy'))
    )
    op.create_index(op.f('ix_building_occupancy_building_id'), 'building_occupancy',
                    ['building_id'], unique=False)

    for table in TABLES:
        op.execute(f"""
            CREATE FUNCTION building_occupancy_{table}_track() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    {_append(table, "SELECT 1 AS sign, * FROM new_rows")};
                ELSE
                    {_append(table, "SELECT -1 AS sign, * FROM old_rows")};
                END IF;
                RETURN NULL;
            END $$
        """)
        op.execute(f"""
            CREATE FUNCTION building_occupancy_{table}_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                {_append(table, "SELECT -1 AS sign, (OLD).* UNION ALL SELECT 1, (NEW).*")};
                RETURN NULL;
            END $$
        """)
        op.execute(f"CREATE TRIGGER building_occupancy_insert AFTER INSERT ON {table} "
                   "REFERENCING NEW TABLE AS new_rows "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION building_occupancy_{table}_track()")
        changed = " IS DISTINCT FROM ".join(
            "(" + ", ".join(c.format(t=t) for c in COUNTED[table]) + ")" for t in ("OLD", "NEW"))
        op.execute(f"CREATE TRIGGER building_occupancy_update AFTER UPDATE ON {table} "
                   f"FOR EACH ROW WHEN ({changed}) "
                   f"EXECUTE FUNCTION building_occupancy_{table}_change()")
        op.execute(f"CREATE TRIGGER building_occupancy_delete AFTER DELETE ON {table} "
                   "REFERENCING OLD TABLE AS old_rows "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION building_occupancy_{table}_track()")
    # TRUNCATE bypasses the row triggers: count again from what is left
    op.execute(f"""
        CREATE FUNCTION building_occupancy_rebuild() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            TRUNCATE building_occupancy;
            {INSERT + FULL};
            RETURN NULL;
        END $$
    """)
    for table in TABLES:
        op.execute(f"CREATE TRIGGER building_occupancy_truncate AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION building_occupancy_rebuild()")
    op.execute(INSERT + FULL)

    op.create_index('ix_persons_area_live', 'persons', ['area_id'], unique=False,
                    postgresql_include=['status', 'population_type', 'sex', 'birth_date'],
                    postgresql_where=sa.text('ended_at IS NULL'))
    op.create_index('ix_households_area_live', 'households', ['area_id'], unique=False,
                    postgresql_where=sa.text('ended_at IS NULL'))
    op.create_index('ix_houses_area_live', 'houses', ['area_id'], unique=False,
                    postgresql_where=sa.text('ended_at IS NULL'))
    op.create_index('ix_visits_at', 'visits', ['visited_at'], unique=False)
    op.create_index('ix_cases_open_location', 'cases', ['location'], unique=False,
                    postgresql_using='gist', postgresql_where=sa.text(
                        "state IN ('reported', 'accepted', 'dispatched', 'returned', "
                        "'in_progress', 'handled', 'verified', 'on_hold')"))


def downgrade():
    op.drop_index('ix_cases_open_location', table_name='cases')
    op.drop_index('ix_visits_at', table_name='visits')
    op.drop_index('ix_houses_area_live', table_name='houses')
    op.drop_index('ix_households_area_live', table_name='households')
    op.drop_index('ix_persons_area_live', table_name='persons')
    for table in TABLES:
        for event in ('insert', 'update', 'delete', 'truncate'):
            op.execute(f"DROP TRIGGER building_occupancy_{event} ON {table}")
        op.execute(f"DROP FUNCTION building_occupancy_{table}_change()")
        op.execute(f"DROP FUNCTION building_occupancy_{table}_track()")
    op.execute("DROP FUNCTION building_occupancy_rebuild()")
    op.drop_index(op.f('ix_building_occupancy_building_id'), table_name='building_occupancy')
    op.drop_table('building_occupancy')
