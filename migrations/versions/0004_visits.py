"""visits: visits (走访) to households, persons and organisations with GPS, follow-ups and
photo ids; visit policies (走访频次) per area and group

Generated with autogenerate against a database at 0003 and reviewed by hand: spatial table
and index through GeoAlchemy2's helpers (no spatial_ref_sys), partial indexes for "latest
visit of this person / household / organisation", the one-target CHECK. No seed rows: the
defaults live in code (grid.visits.models.DEFAULT_POLICIES) and apply where no row exists.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa
import geoalchemy2
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('visit_policies',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('tag', sa.String(length=32), nullable=False),
    sa.Column('interval_days', sa.SmallInteger(), nullable=False),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint('interval_days BETWEEN 1 AND 366', name=op.f('ck_visit_policies_interval_days')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_visit_policies_area_id_areas'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_policies')),
    sa.UniqueConstraint('area_id', 'tag', name='uq_visit_policies_area_tag')
    )
    op.create_geospatial_table('visits',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('household_id', sa.BigInteger(), nullable=True),
    sa.Column('person_id', sa.BigInteger(), nullable=True),
    sa.Column('organisation_id', sa.BigInteger(), nullable=True),
    sa.Column('worker_id', sa.BigInteger(), nullable=False),
    sa.Column('visited_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('follow_up', sa.Text(), nullable=True),
    sa.Column('follow_up_due', sa.Date(), nullable=True),
    sa.Column('follow_up_done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('follow_up_done_by', sa.BigInteger(), nullable=True),
    sa.Column('follow_up_result', sa.Text(), nullable=True),
    sa.Column('photo_ids', postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'::bigint[]"), nullable=False),
    sa.Column('confidential', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('gps_crs', sa.String(length=8), nullable=True),
    sa.Column('gps_raw_lon', sa.Float(), nullable=True),
    sa.Column('gps_raw_lat', sa.Float(), nullable=True),
    sa.Column('gps_accuracy_m', sa.Float(), nullable=True),
    sa.Column('gps_captured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('gps_device_id', sa.String(length=128), nullable=True),
    sa.CheckConstraint("type IN ('inspection', 'rectification', 'care')", name=op.f('ck_visits_type')),
    sa.CheckConstraint('cardinality(photo_ids) <= 20', name=op.f('ck_visits_photo_count')),
    sa.CheckConstraint('follow_up_done_at IS NULL OR follow_up IS NOT NULL', name=op.f('ck_visits_follow_up_done')),
    sa.CheckConstraint('follow_up_due IS NULL OR follow_up IS NOT NULL', name=op.f('ck_visits_follow_up_due')),
    sa.CheckConstraint('num_nonnulls(household_id, person_id, organisation_id) = 1', name=op.f('ck_visits_one_target')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_visits_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_visits_household_id_households')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_visits_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_visits_person_id_persons')),
    sa.ForeignKeyConstraint(['worker_id'], ['users.id'], name=op.f('fk_visits_worker_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits'))
    )
    op.create_geospatial_index('idx_visits_location', 'visits', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_visits_area_at', 'visits', ['area_id', 'visited_at'], unique=False)
    op.create_index('ix_visits_household_at', 'visits', ['household_id', 'visited_at'], unique=False, postgresql_where=sa.text('household_id IS NOT NULL'))
    op.create_index('ix_visits_organisation_at', 'visits', ['organisation_id', 'visited_at'], unique=False, postgresql_where=sa.text('organisation_id IS NOT NULL'))
    op.create_index('ix_visits_person_at', 'visits', ['person_id', 'visited_at'], unique=False, postgresql_where=sa.text('person_id IS NOT NULL'))
    op.create_index(op.f('ix_visits_worker_id'), 'visits', ['worker_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_visits_worker_id'), table_name='visits')
    op.drop_index('ix_visits_person_at', table_name='visits', postgresql_where=sa.text('person_id IS NOT NULL'))
    op.drop_index('ix_visits_organisation_at', table_name='visits', postgresql_where=sa.text('organisation_id IS NOT NULL'))
    op.drop_index('ix_visits_household_at', table_name='visits', postgresql_where=sa.text('household_id IS NOT NULL'))
    op.drop_index('ix_visits_area_at', table_name='visits')
    op.drop_geospatial_index('idx_visits_location', table_name='visits', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('visits')
    op.drop_table('visit_policies')
