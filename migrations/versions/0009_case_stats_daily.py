"""case_stats_daily: the evaluation's figures per day reported × grid × department

Written by hand. The table (CaseStatsDaily in grid/cases/models.py), filled from the cases
already there, and triggers on `cases` that append the difference a change makes in the
same transaction: INSERT adds and DELETE subtracts (statement-level, grouped per key over
the transition table: a bulk INSERT … SELECT costs one grouped insert, not one per row);
UPDATE appends −old and +new for each row whose counted columns changed (row-level with a
WHEN condition: the sweep's UPDATE of escalation and overdue fires nothing).

The contribution of a case must match grid/cases/stats.py `_contributions` (a test
compares the roll-up with a scan of the cases).

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = ("day, area_id, department_id, reported, accepted, dispatched, correctly_dispatched, "
           "handled, handled_in_time, closed, closed_in_time, self_handled, reworks, reworked, "
           "rated, satisfied, handling_n, handling_s")

# rows `c` with a column `sign` (+1 / −1); merged cases are never counted
CONTRIBUTIONS = """
SELECT (c.reported_at AT TIME ZONE 'UTC')::date, c.area_id, c.department_id,
       sum(c.sign)::int,
       sum(CASE WHEN c.accepted_at IS NOT NULL THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.dispatched_at IS NOT NULL AND NOT c.self_handled THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.dispatched_at IS NOT NULL AND NOT c.self_handled AND c.return_count = 0
                THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.handled_at IS NOT NULL THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.handled_in_time THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.closed_at IS NOT NULL THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.closed_in_time THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.self_handled THEN c.sign ELSE 0 END)::int,
       sum(c.sign * c.rework_count)::int,
       sum(CASE WHEN c.rework_count > 0 THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.rating IS NOT NULL THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.rating >= 4 THEN c.sign ELSE 0 END)::int,
       sum(CASE WHEN c.handling_working_s IS NOT NULL THEN c.sign ELSE 0 END)::int,
       coalesce(sum(c.sign * c.handling_working_s), 0)
FROM ({rows}) AS c
WHERE c.state <> 'merged'
GROUP BY 1, 2, 3
"""

# what a case's contribution depends on (an UPDATE changing none of these adds nothing)
COUNTED = ("{t}.state = 'merged'", "{t}.reported_at", "{t}.area_id", "{t}.department_id",
           "{t}.accepted_at IS NULL", "{t}.dispatched_at IS NULL", "{t}.self_handled",
           "{t}.return_count = 0", "{t}.handled_at IS NULL", "{t}.handled_in_time",
           "{t}.closed_at IS NULL", "{t}.closed_in_time", "{t}.rework_count", "{t}.rating",
           "{t}.handling_working_s")


def _insert(rows: str) -> str:
    return f"INSERT INTO case_stats_daily ({COLUMNS}) " + CONTRIBUTIONS.format(rows=rows)


def upgrade():
    op.create_table('case_stats_daily',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('department_id', sa.BigInteger(), nullable=True),
    *[sa.Column(name, sa.Integer(), nullable=False) for name in (
        'reported', 'accepted', 'dispatched', 'correctly_dispatched', 'handled',
        'handled_in_time', 'closed', 'closed_in_time', 'self_handled', 'reworks', 'reworked',
        'rated', 'satisfied', 'handling_n')],
    sa.Column('handling_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_stats_daily'))
    )
    op.create_index(op.f('ix_case_stats_daily_day'), 'case_stats_daily', ['day'], unique=False)

    op.execute(f"""
        CREATE FUNCTION case_stats_daily_track() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {_insert("SELECT 1 AS sign, * FROM new_rows")};
            ELSE
                {_insert("SELECT -1 AS sign, * FROM old_rows")};
            END IF;
            RETURN NULL;
        END $$
    """)
    op.execute(f"""
        CREATE FUNCTION case_stats_daily_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {_insert("SELECT -1 AS sign, (OLD).* UNION ALL SELECT 1 AS sign, (NEW).*")};
            RETURN NULL;
        END $$
    """)
    op.execute("CREATE TRIGGER case_stats_daily_insert AFTER INSERT ON cases "
               "REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_stats_daily_track()")
    # per row, and only when a counted column changes: the sweep's UPDATE of thousands of
    # rows (escalation, overdue) fires nothing and keeps no transition tables
    changed = " IS DISTINCT FROM ".join(
        "(" + ", ".join(c.format(t=t) for c in COUNTED) + ")" for t in ("OLD", "NEW"))
    op.execute("CREATE TRIGGER case_stats_daily_update AFTER UPDATE ON cases "
               f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION case_stats_daily_change()")
    op.execute("CREATE TRIGGER case_stats_daily_delete AFTER DELETE ON cases "
               "REFERENCING OLD TABLE AS old_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_stats_daily_track()")
    # TRUNCATE cases bypasses the triggers: empty the roll-up with it
    op.execute("""
        CREATE FUNCTION case_stats_daily_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN TRUNCATE case_stats_daily; RETURN NULL; END $$
    """)
    op.execute("CREATE TRIGGER case_stats_daily_truncate AFTER TRUNCATE ON cases "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_stats_daily_truncate()")
    op.execute(_insert("SELECT 1 AS sign, * FROM cases"))


def downgrade():
    for event in ('insert', 'update', 'delete', 'truncate'):
        op.execute(f"DROP TRIGGER case_stats_daily_{event} ON cases")
    op.execute("DROP FUNCTION case_stats_daily_truncate()")
    op.execute("DROP FUNCTION case_stats_daily_change()")
    op.execute("DROP FUNCTION case_stats_daily_track()")
    op.drop_index(op.f('ix_case_stats_daily_day'), table_name='case_stats_daily')
    op.drop_table('case_stats_daily')
