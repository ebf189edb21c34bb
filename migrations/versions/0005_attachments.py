"""attachments: uploaded photos, content-addressed blobs, linked to one record each

Written and reviewed by hand against server/storage.py's Attachment model (the drift check in
tests/server/test_migrations.py compares the two).

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('attachments',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('object_type', sa.String(length=64), nullable=True),
    sa.Column('object_id', sa.BigInteger(), nullable=True),
    sa.Column('uploaded_by', sa.BigInteger(), nullable=False),
    sa.Column('content_type', sa.String(length=64), nullable=False),
    sa.Column('original_format', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('storage_key', sa.String(length=200), nullable=False),
    sa.Column('thumbnail_key', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('(object_type IS NULL) = (object_id IS NULL) AND (object_type IS NULL) = (linked_at IS NULL)', name=op.f('ck_attachments_link_complete')),
    sa.ForeignKeyConstraint(['uploaded_by'], ['users.id'], name=op.f('fk_attachments_uploaded_by_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    op.create_index('ix_attachments_object', 'attachments', ['object_type', 'object_id'], unique=False)
    op.create_index('ix_attachments_uploader_sha256', 'attachments', ['uploaded_by', 'sha256'], unique=False)


def downgrade():
    op.drop_index('ix_attachments_uploader_sha256', table_name='attachments')
    op.drop_index('ix_attachments_object', table_name='attachments')
    op.drop_table('attachments')
