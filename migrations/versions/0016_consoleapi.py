"""consoleapi: bulk actions' answers (case_bulk_runs) and the trends' roll-up
(case_trends_daily)

Written by hand. `case_bulk_runs` keeps a bulk action's per-case answer for its replay
(server/idempotency.py claims the client UUID and names the run).

`case_trends_monthly` adds the days up per month, kept by triggers on case_trends_daily.

`case_trends_daily` counts events on their own UTC day per grid × department × 小类:
reported, accepted (立案), closed (结案), yellow cards (overdue) and red cards (escalated).
Triggers on `cases` append differences in the same transaction, as 0009's do for
case_stats_daily: INSERT and DELETE statement-level over the transition table; UPDATE
row-level, only when a milestone, a key or the card level changes (an UPDATE raising
`escalation` — the sweep's — appends the card on today's UTC day; lowering it, at a new
stage, takes nothing back). Filled from the cases and their timeline's `escalate` events.

Revision ID: 0016_consoleapi
Revises: 0015
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0016_consoleapi'
down_revision = '0015'
branch_labels = None
depends_on = None

COUNTS = ("reported", "accepted", "closed", "overdue", "escalated")
COLUMNS = "day, area_id, department_id, category_id, reported, accepted, closed, overdue, escalated"

# rows `c` with a column `sign` (+1 / −1): their milestones; merged cases are never counted
EVENTS = """
SELECT (c.reported_at AT TIME ZONE 'UTC')::date AS day, c.area_id, c.department_id,
       c.category_id, c.sign AS reported, 0 AS accepted, 0 AS closed, 0 AS overdue,
       0 AS escalated
FROM c WHERE c.state <> 'merged'
UNION ALL
SELECT (c.accepted_at AT TIME ZONE 'UTC')::date, c.area_id, c.department_id, c.category_id,
       0, c.sign, 0, 0, 0
FROM c WHERE c.state <> 'merged' AND c.accepted_at IS NOT NULL
UNION ALL
SELECT (c.closed_at AT TIME ZONE 'UTC')::date, c.area_id, c.department_id, c.category_id,
       0, 0, c.sign, 0, 0
FROM c WHERE c.state <> 'merged' AND c.closed_at IS NOT NULL
"""


def _insert(rows: str, extra: str = "") -> str:
    return (f"INSERT INTO case_trends_daily ({COLUMNS}) "
            f"WITH c AS ({rows}) "
            "SELECT day, area_id, department_id, category_id, sum(reported), sum(accepted), "
            "sum(closed), sum(overdue), sum(escalated) "
            f"FROM ({EVENTS} {extra}) AS e GROUP BY 1, 2, 3, 4 "
            "HAVING (sum(reported), sum(accepted), sum(closed), sum(overdue), sum(escalated)) "
            "<> (0, 0, 0, 0, 0)")


# a card given by this UPDATE (the sweep raises `escalation` one level per statement)
CARDS = """
UNION ALL
SELECT (now() AT TIME ZONE 'UTC')::date, NEW.area_id, NEW.department_id, NEW.category_id,
       0, 0, 0, (NEW.escalation >= 1 AND OLD.escalation < 1)::int,
       (NEW.escalation >= 2 AND OLD.escalation < 2)::int
WHERE NEW.escalation > OLD.escalation AND NEW.state <> 'merged'
"""

COUNTED = ("{t}.state = 'merged'", "{t}.reported_at", "{t}.area_id", "{t}.department_id",
           "{t}.category_id", "{t}.accepted_at", "{t}.closed_at")


def upgrade():
    op.create_table('case_bulk_runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('actor_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('answer', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_bulk_runs'))
    )
    op.create_table('case_trends_daily',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('department_id', sa.BigInteger(), nullable=True),
    sa.Column('category_id', sa.BigInteger(), nullable=False),
    *[sa.Column(name, sa.Integer(), nullable=False)
      for name in ('reported', 'accepted', 'closed', 'overdue', 'escalated')],
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_trends_daily'))
    )
    op.create_index(op.f('ix_case_trends_daily_day'), 'case_trends_daily', ['day'], unique=False)
    op.create_table('case_trends_monthly',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('department_id', sa.BigInteger(), nullable=True),
    sa.Column('category_id', sa.BigInteger(), nullable=False),
    *[sa.Column(name, sa.Integer(), nullable=False)
      for name in ('reported', 'accepted', 'closed', 'overdue', 'escalated')],
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_trends_monthly'))
    )
    op.create_index(op.f('ix_case_trends_monthly_month'), 'case_trends_monthly', ['month'], unique=False)
    # the month's rows follow the day's: what is appended (+) or deleted (−, the folding
    # deletes a key's rows and appends their sum) there is appended here, grouped per month
    for op_name, rows, sign in (('INSERT', 'new_rows', ''), ('DELETE', 'old_rows', '-')):
        op.execute(f"""
            CREATE FUNCTION case_trends_monthly_{op_name.lower()}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO case_trends_monthly (month, {COLUMNS.removeprefix("day, ")})
                SELECT date_trunc('month', day)::date, area_id, department_id, category_id,
                       {", ".join(f"{sign}sum({n})" for n in COUNTS)}
                FROM {rows} GROUP BY 1, 2, 3, 4;
                RETURN NULL;
            END $$
        """)
        op.execute(f"CREATE TRIGGER case_trends_monthly_{op_name.lower()} AFTER {op_name} "
                   f"ON case_trends_daily REFERENCING {'NEW' if sign == '' else 'OLD'} TABLE "
                   f"AS {rows} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION case_trends_monthly_{op_name.lower()}()")
    op.execute("""
        CREATE FUNCTION case_trends_monthly_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN TRUNCATE case_trends_monthly; RETURN NULL; END $$
    """)
    op.execute("CREATE TRIGGER case_trends_monthly_truncate AFTER TRUNCATE ON case_trends_daily "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_trends_monthly_truncate()")

    op.execute(f"""
        CREATE FUNCTION case_trends_daily_track() RETURNS trigger LANGUAGE plpgsql AS $$
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
        CREATE FUNCTION case_trends_daily_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {_insert("SELECT -1 AS sign, (OLD).* UNION ALL SELECT 1 AS sign, (NEW).*", CARDS)};
            RETURN NULL;
        END $$
    """)
    op.execute("CREATE TRIGGER case_trends_daily_insert AFTER INSERT ON cases "
               "REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_trends_daily_track()")
    changed = " IS DISTINCT FROM ".join(
        "(" + ", ".join(c.format(t=t) for c in COUNTED) + ")" for t in ("OLD", "NEW"))
    op.execute("CREATE TRIGGER case_trends_daily_update AFTER UPDATE ON cases FOR EACH ROW "
               f"WHEN ({changed} OR NEW.escalation > OLD.escalation) "
               "EXECUTE FUNCTION case_trends_daily_change()")
    op.execute("CREATE TRIGGER case_trends_daily_delete AFTER DELETE ON cases "
               "REFERENCING OLD TABLE AS old_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_trends_daily_track()")
    op.execute("""
        CREATE FUNCTION case_trends_daily_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN TRUNCATE case_trends_daily; RETURN NULL; END $$
    """)
    op.execute("CREATE TRIGGER case_trends_daily_truncate AFTER TRUNCATE ON cases "
               "FOR EACH STATEMENT EXECUTE FUNCTION case_trends_daily_truncate()")
    op.execute(_insert("SELECT 1 AS sign, * FROM cases"))
    # the cards of the past, from the timeline (on the keys the cases have now)
    op.execute(f"""
        INSERT INTO case_trends_daily ({COLUMNS})
        SELECT (e.at AT TIME ZONE 'UTC')::date, c.area_id, c.department_id, c.category_id,
               0, 0, 0, count(*) FILTER (WHERE e.data->>'level' = '1'),
               count(*) FILTER (WHERE e.data->>'level' = '2')
        FROM case_events e JOIN cases c ON c.id = e.case_id
        WHERE e.action = 'escalate' AND c.state <> 'merged'
        GROUP BY 1, 2, 3, 4
    """)


def downgrade():
    for event in ('insert', 'delete', 'truncate'):
        op.execute(f"DROP TRIGGER case_trends_monthly_{event} ON case_trends_daily")
        op.execute(f"DROP FUNCTION case_trends_monthly_{event}()")
    op.drop_index(op.f('ix_case_trends_monthly_month'), table_name='case_trends_monthly')
    op.drop_table('case_trends_monthly')
    for event in ('insert', 'update', 'delete', 'truncate'):
        op.execute(f"DROP TRIGGER case_trends_daily_{event} ON cases")
    op.execute("DROP FUNCTION case_trends_daily_truncate()")
    op.execute("DROP FUNCTION case_trends_daily_change()")
    op.execute("DROP FUNCTION case_trends_daily_track()")
    op.drop_index(op.f('ix_case_trends_daily_day'), table_name='case_trends_daily')
    op.drop_table('case_trends_daily')
    op.drop_table('case_bulk_runs')
