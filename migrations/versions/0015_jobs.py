"""jobs: background work with progress and a result (server/jobs.py)

Written by hand. One table for every kind of background job (ledger imports today;
exports and reports later): kind, state, who started it, the area it is about, its
parameters and input blob, progress, result or error, and the worker's claim (lease and
token). A partial index finds the unfinished ones; another lists a user's jobs.

Revision ID: 0015
Revises: 0014
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=True),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('input_key', sa.String(length=200), nullable=True),
    sa.Column('input_name', sa.String(length=200), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('progress_done', sa.Integer(), server_default='0', nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claim_token', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed')", name=op.f('ck_jobs_state')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_jobs_created_by_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index('ix_jobs_unfinished', 'jobs', ['id'], unique=False,
                    postgresql_where=sa.text("state IN ('queued', 'running')"))
    op.create_index('ix_jobs_created_by', 'jobs', ['created_by', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_jobs_created_by', table_name='jobs')
    op.drop_index('ix_jobs_unfinished', table_name='jobs')
    op.drop_table('jobs')
