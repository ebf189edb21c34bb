"""feeds: feeds in from other systems, review items, declarations, break-the-glass grants

Written by hand (grid/exchange/models.py, feeds block):
- feed_records: a system's own record key (per client and kind) → the register record;
- register_field_sources: provenance per field of a register record (JSONB map);
- register_review_items: 核实任务 where a feed disagrees with a worker's value (one open
  item per record and field: a partial unique index);
- declarations: residents' own declarations (自主申报), personal numbers encrypted;
- access_grants: break-the-glass grants (紧急授权) and their auditor's finding.

Revision ID: 0021
Revises: 0020
"""

from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def _timestamps():
    return [sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
            sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
            sa.Column('version', sa.Integer(), nullable=False)]


def upgrade():
    op.create_table('feed_records',
    sa.Column('client_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('record_key', sa.String(length=64), nullable=False),
    sa.Column('object_id', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('person', 'household', 'house', 'building', 'organisation', 'organisation_indicator')", name=op.f('ck_feed_records_kind')),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], name=op.f('fk_feed_records_client_id_api_clients'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('client_id', 'kind', 'record_key', name=op.f('pk_feed_records'))
    )
    op.create_index('ix_feed_records_object', 'feed_records', ['kind', 'object_id'], unique=False)

    op.create_table('register_field_sources',
    sa.Column('object_type', sa.String(length=24), nullable=False),
    sa.Column('object_id', sa.BigInteger(), nullable=False),
    sa.Column('fields', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.PrimaryKeyConstraint('object_type', 'object_id', name=op.f('pk_register_field_sources'))
    )

    op.create_table('register_review_items',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('object_type', sa.String(length=24), nullable=False),
    sa.Column('object_id', sa.BigInteger(), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('current_value', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('current_source', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('proposed_value', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('proposed_enc', sa.Text(), nullable=True),
    sa.Column('proposed_source', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('resolved_by', sa.BigInteger(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    *_timestamps(),
    sa.CheckConstraint("state IN ('open', 'kept', 'replaced', 'edited')", name=op.f('ck_register_review_items_state')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_register_review_items_area_id_areas'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_register_review_items'))
    )
    op.create_index('uq_register_review_items_open', 'register_review_items', ['object_type', 'object_id', 'field'], unique=True, postgresql_where=sa.text("state = 'open'"))
    op.create_index('ix_register_review_items_area_open', 'register_review_items', ['area_id'], unique=False, postgresql_where=sa.text("state = 'open'"))

    op.create_table('declarations',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('resident_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('facts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('pii_enc', sa.Text(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('photo_ids', postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'::bigint[]"), nullable=False),
    sa.Column('needs_visit', sa.Boolean(), nullable=False),
    sa.Column('decided_by', sa.BigInteger(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refusal_reason', sa.Text(), nullable=True),
    sa.Column('visit_id', sa.BigInteger(), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    *_timestamps(),
    sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('gps_crs', sa.String(length=8), nullable=True),
    sa.Column('gps_raw_lon', sa.Float(), nullable=True),
    sa.Column('gps_raw_lat', sa.Float(), nullable=True),
    sa.Column('gps_accuracy_m', sa.Float(), nullable=True),
    sa.Column('gps_captured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('gps_device_id', sa.String(length=128), nullable=True),
    sa.CheckConstraint("kind IN ('moving_in', 'tenant', 'newborn', 'phone_change', 'elderly_alone')", name=op.f('ck_declarations_kind')),
    sa.CheckConstraint("state IN ('submitted', 'accepted', 'refused', 'withdrawn')", name=op.f('ck_declarations_state')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_declarations_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['resident_id'], ['users.id'], name=op.f('fk_declarations_resident_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_declarations'))
    )
    op.create_geospatial_index('idx_declarations_location', 'declarations', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_declarations_resident_id'), 'declarations', ['resident_id'], unique=False)
    op.create_index('ix_declarations_area_submitted', 'declarations', ['area_id'], unique=False, postgresql_where=sa.text("state = 'submitted'"))

    op.create_table('access_grants',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('object_type', sa.String(length=24), nullable=False),
    sa.Column('object_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reads', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('finding', sa.String(length=16), nullable=True),
    sa.Column('finding_note', sa.Text(), nullable=True),
    sa.Column('closed_by', sa.BigInteger(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    *_timestamps(),
    sa.CheckConstraint("state IN ('open', 'closed')", name=op.f('ck_access_grants_state')),
    sa.CheckConstraint("finding IS NULL OR finding IN ('justified', 'unjustified', 'unclear')", name=op.f('ck_access_grants_finding')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_access_grants_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_access_grants_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_grants'))
    )
    op.create_index('ix_access_grants_user_object', 'access_grants', ['user_id', 'object_type', 'object_id', 'expires_at'], unique=False)
    op.create_index('ix_access_grants_open', 'access_grants', ['id'], unique=False, postgresql_where=sa.text("state = 'open'"))


def downgrade():
    op.drop_table('access_grants')
    op.drop_table('declarations')
    op.drop_table('register_review_items')
    op.drop_table('register_field_sources')
    op.drop_table('feed_records')
