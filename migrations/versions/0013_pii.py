"""pii: masks that keep 10,000 candidates, and purpose codes in the audit trail

Written by hand. The stored masked ID numbers showed the region and the last four
(`330183********2970`): next to a birth date that was the whole number. They now show the
region only (server.pii.mask_id_number); the new mask is the old one's first 6 characters,
so no decryption is needed. `audit_log.purpose_code`: the code of an unmasked read's
purpose (server.audit.PURPOSE_CODES), for the auditor's filter.

Revision ID: 0013
Revises: 0012
"""

from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('audit_log', sa.Column('purpose_code', sa.String(length=32), nullable=True))
    op.create_index('ix_audit_log_purpose_code', 'audit_log', ['purpose_code'], unique=False,
                    postgresql_where=sa.text('purpose_code IS NOT NULL'))
    op.execute("UPDATE persons SET id_number_masked = left(id_number_masked, 6)"
               " || repeat('*', length(id_number_masked) - 6)"
               " WHERE length(id_number_masked) > 10")


def downgrade():
    # the last four digits cannot come back without the keys: the masks stay as they are
    op.drop_index('ix_audit_log_purpose_code', table_name='audit_log')
    op.drop_column('audit_log', 'purpose_code')
