"""warnings: indicators (城市运行体征指标), their thresholds per area, runs and values,
early warnings (预警) with their timeline, leaders' reports (报表); the blind index of a
case's contact phone (重复来电)

Written by hand. One open warning per indicator, area and department: a partial unique
index on (indicator_id, area_id, coalesce(department_id, 0)) WHERE state is open, which
the evaluation's INSERT … ON CONFLICT names. One weekly report per area and week: a
partial unique index. Cases get `contact_phone_bidx` (HMAC blind index of the contact
phone, server/pii.py) with an index by caller and time; existing cases keep NULL (their
phone is encrypted: a backfill would decrypt them in the app, not here).

Revision ID: 0019
Revises: 0018
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

_KINDS = ("new_cases", "overdue_rate", "repeated_place", "repeated_caller", "unvisited_care",
          "open_red_cases", "labour_risk")


def _in(column, values):
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _now():
    return sa.text('now()')


def upgrade():
    op.add_column('cases', sa.Column('contact_phone_bidx', sa.String(length=64), nullable=True))
    op.create_index('ix_cases_contact_phone_bidx', 'cases', ['contact_phone_bidx', 'reported_at'],
                    unique=False, postgresql_where=sa.text('contact_phone_bidx IS NOT NULL'))
    op.create_table('indicators',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.String(length=48), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=True),
    sa.Column('area_level', sa.String(length=32), nullable=True),
    sa.Column('window_hours', sa.Integer(), nullable=False),
    sa.Column('every_minutes', sa.Integer(), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('thresholds', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('statistical', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('baseline_runs', sa.Integer(), server_default='8', nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint(_in('kind', _KINDS), name=op.f('ck_indicators_kind')),
    sa.CheckConstraint('window_hours > 0 AND every_minutes > 0', name=op.f('ck_indicators_schedule')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_indicators_area_id_areas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['area_level'], ['area_levels.key'], name=op.f('fk_indicators_area_level_area_levels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_indicators')),
    sa.UniqueConstraint('code', name=op.f('uq_indicators_code'))
    )
    op.create_index(op.f('ix_indicators_area_id'), 'indicators', ['area_id'], unique=False)
    op.create_index('ix_indicators_due', 'indicators', ['next_run_at'], unique=False,
                    postgresql_where=sa.text('active'))
    op.create_table('indicator_thresholds',
    sa.Column('indicator_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('thresholds', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('statistical', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_indicator_thresholds_area_id_areas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['indicator_id'], ['indicators.id'], name=op.f('fk_indicator_thresholds_indicator_id_indicators'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('indicator_id', 'area_id', name=op.f('pk_indicator_thresholds'))
    )
    op.create_table('indicator_runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('indicator_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('measured', sa.Integer(), nullable=False),
    sa.Column('breaches', sa.Integer(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['indicator_id'], ['indicators.id'], name=op.f('fk_indicator_runs_indicator_id_indicators'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_indicator_runs'))
    )
    op.create_index('ix_indicator_runs_indicator_at', 'indicator_runs', ['indicator_id', 'at'], unique=False)
    op.create_table('indicator_values',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('indicator_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('department_id', sa.BigInteger(), nullable=True),
    sa.Column('value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['indicator_runs.id'], name=op.f('fk_indicator_values_run_id_indicator_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_indicator_values'))
    )
    op.create_index('ix_indicator_values_series', 'indicator_values', ['indicator_id', 'area_id', 'at'], unique=False)
    op.create_index('ix_indicator_values_run', 'indicator_values', ['run_id'], unique=False)
    op.create_table('warnings',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('indicator_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('department_id', sa.BigInteger(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('baseline', sa.Float(), nullable=True),
    sa.Column('basis', sa.String(length=16), nullable=False),
    sa.Column('record_type', sa.String(length=16), nullable=False),
    sa.Column('record_ids', postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'::bigint[]"), nullable=False),
    sa.Column('people', sa.Integer(), nullable=True),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('level_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.BigInteger(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('case_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint(_in('state', ('raised', 'acknowledged', 'resolved', 'dismissed')), name=op.f('ck_warnings_state')),
    sa.CheckConstraint(_in('level', ('yellow', 'orange', 'red')), name=op.f('ck_warnings_level')),
    sa.CheckConstraint(_in('record_type', ('case', 'person', 'organisation')), name=op.f('ck_warnings_record_type')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_warnings_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_warnings_case_id_cases'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_warnings_department_id_departments'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['indicator_id'], ['indicators.id'], name=op.f('fk_warnings_indicator_id_indicators'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_warnings'))
    )
    op.create_index('uq_warnings_open', 'warnings',
                    ['indicator_id', 'area_id', sa.text('coalesce(department_id, 0)')], unique=True,
                    postgresql_where=sa.text("state IN ('raised', 'acknowledged')"))
    op.create_index('ix_warnings_area_state', 'warnings', ['area_id', 'state'], unique=False)
    op.create_index('ix_warnings_raised_at', 'warnings', ['raised_at'], unique=False)
    op.create_table('warning_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('warning_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.BigInteger(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=True),
    sa.Column('level', sa.String(length=8), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['warning_id'], ['warnings.id'], name=op.f('fk_warning_events_warning_id_warnings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_warning_events'))
    )
    op.create_index('ix_warning_events_warning', 'warning_events', ['warning_id', 'id'], unique=False)
    op.create_table('leader_reports',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blob_key', sa.String(length=200), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    sa.CheckConstraint("kind IN ('weekly', 'on_demand')", name=op.f('ck_leader_reports_kind')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_leader_reports_area_id_areas'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_leader_reports'))
    )
    op.create_index('uq_leader_reports_weekly', 'leader_reports', ['area_id', 'start'], unique=True,
                    postgresql_where=sa.text("kind = 'weekly'"))


def downgrade():
    op.drop_table('leader_reports')
    op.drop_table('warning_events')
    op.drop_table('warnings')
    op.drop_table('indicator_values')
    op.drop_table('indicator_runs')
    op.drop_table('indicator_thresholds')
    op.drop_table('indicators')
    op.drop_index('ix_cases_contact_phone_bidx', table_name='cases')
    op.drop_column('cases', 'contact_phone_bidx')
