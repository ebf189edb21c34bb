"""auth: the successor of a used refresh token, for the retry grace window

Written by hand. A refresh token presented again within REFRESH_REUSE_GRACE_S of its use
(a phone retrying after the answer was lost) gets the token issued for it again instead of
ending the session; `successor_jti` names that token. Existing used tokens have none, so
reusing them still revokes their session.

Revision ID: 0011
Revises: 0010
"""

from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('refresh_tokens', sa.Column('successor_jti', sa.UUID(), nullable=True))


def downgrade():
    op.drop_column('refresh_tokens', 'successor_jti')
