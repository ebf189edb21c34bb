"""case_stats_daily.evaluable: closed cases someone may evaluate (可评价数)

Written by hand. A case is evaluable when it is closed and has someone to evaluate it: a
resident reporter (channel resident_app), or residents who joined it (joined_count > 0);
the others close without a rating, counted neither for nor against 满意率. The column,
filled from the cases already there (one row per key with only `evaluable` set: readers
add up a key's rows), and migration 0009's trigger functions with the column added; the
update trigger also fires when a case gains its first joiner or changes channel.

Must match grid/cases/stats.py `_contributions` / grid/cases/actions.py `evaluable_sql` (a
test compares the roll-up with a scan of the cases).

Revision ID: 0014
Revises: 0013
"""

from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

COUNTS = ("reported, accepted, dispatched, correctly_dispatched, handled, handled_in_time, "
          "closed, closed_in_time, self_handled, reworks, reworked, rated, satisfied, "
          "handling_n")
EVALUABLE = "c.closed_at IS NOT NULL AND (c.channel = 'resident_app' OR c.joined_count > 0)"

# 0009's contribution of rows `c` (sign +1 / −1), with `evaluable` before handling_s
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
       {evaluable}
       coalesce(sum(c.sign * c.handling_working_s), 0)
FROM ({rows}) AS c
WHERE c.state <> 'merged'
GROUP BY 1, 2, 3
"""

COUNTED = ("{t}.state = 'merged'", "{t}.reported_at", "{t}.area_id", "{t}.department_id",
           "{t}.accepted_at IS NULL", "{t}.dispatched_at IS NULL", "{t}.self_handled",
           "{t}.return_count = 0", "{t}.handled_at IS NULL", "{t}.handled_in_time",
           "{t}.closed_at IS NULL", "{t}.closed_in_time", "{t}.rework_count", "{t}.rating",
           "{t}.handling_working_s")
COUNTED_NOW = COUNTED + ("{t}.channel", "{t}.joined_count > 0")


def _functions(with_evaluable: bool) -> None:
    columns = f"day, area_id, department_id, {COUNTS}, " + \
        ("evaluable, " if with_evaluable else "") + "handling_s"
    evaluable = f"sum(CASE WHEN {EVALUABLE} THEN c.sign ELSE 0 END)::int," \
        if with_evaluable else ""

    def insert(rows: str) -> str:
        return f"INSERT INTO case_stats_daily ({columns}) " + CONTRIBUTIONS.format(
            rows=rows, evaluable=evaluable)

    op.execute(f"""
        CREATE OR REPLACE FUNCTION case_stats_daily_track() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {insert("SELECT 1 AS sign, * FROM new_rows")};
            ELSE
                {insert("SELECT -1 AS sign, * FROM old_rows")};
            END IF;
            RETURN NULL;
        END $$
    """)
    op.execute(f"""
        CREATE OR REPLACE FUNCTION case_stats_daily_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            {insert("SELECT -1 AS sign, (OLD).* UNION ALL SELECT 1 AS sign, (NEW).*")};
            RETURN NULL;
        END $$
    """)
    counted = COUNTED_NOW if with_evaluable else COUNTED
    changed = " IS DISTINCT FROM ".join(
        "(" + ", ".join(c.format(t=t) for c in counted) + ")" for t in ("OLD", "NEW"))
    op.execute("DROP TRIGGER case_stats_daily_update ON cases")
    op.execute("CREATE TRIGGER case_stats_daily_update AFTER UPDATE ON cases "
               f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION case_stats_daily_change()")


def upgrade():
    op.add_column('case_stats_daily', sa.Column('evaluable', sa.Integer(), nullable=False,
                                                server_default='0'))
    op.alter_column('case_stats_daily', 'evaluable', server_default=None)
    _functions(with_evaluable=True)
    zeros = ", ".join("0" for _ in COUNTS.split(","))
    op.execute(f"""
        INSERT INTO case_stats_daily (day, area_id, department_id, {COUNTS}, evaluable,
                                      handling_s)
        SELECT (c.reported_at AT TIME ZONE 'UTC')::date, c.area_id, c.department_id, {zeros},
               count(*)::int, 0
        FROM cases AS c
        WHERE c.state <> 'merged' AND {EVALUABLE}
        GROUP BY 1, 2, 3
    """)


def downgrade():
    _functions(with_evaluable=False)
    op.drop_column('case_stats_daily', 'evaluable')
