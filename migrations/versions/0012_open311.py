"""open311: cases.public (公开), and updated_at never before reported_at

Written by hand. `public` says whether a case may be published (Open311): true for the
channels published until now (Open311 apps, grid workers), false for the rest (resident
reports are public only when the resident chooses it when filing; hotline tickets and
cases entered by staff never are).

updated_at came from the database's now() (the start of the transaction) while
reported_at comes from the app's clock, later in the same transaction: rows whose
updated_at is before their reported_at are moved up to it (the model now sets both from
the app's clock).

Revision ID: 0012
Revises: 0011
"""

from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('cases', sa.Column('public', sa.Boolean(), server_default=sa.false(),
                                     nullable=False))
    op.execute("UPDATE cases SET public = true WHERE channel IN ('open311', 'worker_app')")
    op.execute("UPDATE cases SET updated_at = reported_at WHERE updated_at < reported_at")


def downgrade():
    op.drop_column('cases', 'public')
