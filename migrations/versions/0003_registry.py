"""registry: buildings, houses, households, persons (+ tags, stays), organisations
(+ monthly indicators), tombstones, client-UUID idempotency

Reviewed by hand: the change sequence and the trigger that stamps every insert and update
with a new change_seq and the writing transaction's id are added here (autogenerate sees
neither).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 13:53:23.450864
"""

from alembic import op
import sqlalchemy as sa
import geoalchemy2
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


REGISTER_TABLES = ("buildings", "houses", "households", "persons", "organisations")


class XID8(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw):
        return "xid8"


def upgrade():
    op.execute("CREATE SEQUENCE registry_change_seq")
    op.create_table('client_requests',
    sa.Column('client_uuid', sa.UUID(), nullable=False),
    sa.Column('actor_id', sa.BigInteger(), nullable=True),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=64), nullable=True),
    sa.Column('object_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('client_uuid', name=op.f('pk_client_requests'))
    )
    op.create_table('registry_tombstones',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('change_seq', sa.BigInteger(), server_default=sa.text("nextval('registry_change_seq')"), nullable=False),
    sa.Column('change_xid', XID8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_tombstones'))
    )
    op.create_index('ix_registry_tombstones_area_seq', 'registry_tombstones', ['area_id', 'change_seq'], unique=False)
    op.create_index('ix_registry_tombstones_area_xid', 'registry_tombstones', ['area_id', 'change_xid'], unique=False)
    op.create_geospatial_table('buildings',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('use', sa.String(length=16), nullable=False),
    sa.Column('floors', sa.SmallInteger(), nullable=True),
    sa.Column('units', sa.SmallInteger(), nullable=True),
    sa.Column('footprint', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('is_crowded_rental', sa.Boolean(), nullable=False),
    sa.Column('is_unsafe', sa.Boolean(), nullable=False),
    sa.Column('is_live_work_store', sa.Boolean(), nullable=False),
    sa.Column('leader_name', sa.String(length=50), nullable=True),
    sa.Column('leader_phone_enc', sa.Text(), nullable=True),
    sa.Column('leader_phone_masked', sa.String(length=20), nullable=True),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('needs_review', sa.Boolean(), nullable=False),
    sa.Column('review_reasons', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('change_seq', sa.BigInteger(), server_default=sa.text("nextval('registry_change_seq')"), nullable=False),
    sa.Column('change_xid', XID8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
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
    sa.CheckConstraint("source IN ('grid_worker', 'self_declared', 'import', 'other_system')", name=op.f('ck_buildings_source')),
    sa.CheckConstraint("use IN ('residential', 'commercial', 'mixed', 'industrial', 'public')", name=op.f('ck_buildings_use')),
    sa.CheckConstraint('floors IS NULL OR floors BETWEEN 1 AND 200', name=op.f('ck_buildings_floors')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_buildings_area_id_areas'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_buildings'))
    )
    op.create_geospatial_index('idx_buildings_footprint', 'buildings', ['footprint'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('idx_buildings_location', 'buildings', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_buildings_area_seq', 'buildings', ['area_id', 'change_seq'], unique=False)
    op.create_index('ix_buildings_area_xid', 'buildings', ['area_id', 'change_xid'], unique=False)
    op.create_geospatial_table('houses',
    sa.Column('building_id', sa.BigInteger(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=True),
    sa.Column('floor', sa.SmallInteger(), nullable=True),
    sa.Column('room', sa.String(length=32), nullable=False),
    sa.Column('use', sa.String(length=16), nullable=False),
    sa.Column('floor_area_m2', sa.Float(), nullable=True),
    sa.Column('owner_name', sa.String(length=50), nullable=True),
    sa.Column('owner_phone_enc', sa.Text(), nullable=True),
    sa.Column('owner_phone_masked', sa.String(length=20), nullable=True),
    sa.Column('rental_start', sa.Date(), nullable=True),
    sa.Column('rental_end', sa.Date(), nullable=True),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('needs_review', sa.Boolean(), nullable=False),
    sa.Column('review_reasons', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('change_seq', sa.BigInteger(), server_default=sa.text("nextval('registry_change_seq')"), nullable=False),
    sa.Column('change_xid', XID8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
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
    sa.CheckConstraint("source IN ('grid_worker', 'self_declared', 'import', 'other_system')", name=op.f('ck_houses_source')),
    sa.CheckConstraint("use IN ('owner_occupied', 'rented', 'empty', 'business')", name=op.f('ck_houses_use')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_houses_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['building_id'], ['buildings.id'], name=op.f('fk_houses_building_id_buildings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_houses'))
    )
    op.create_geospatial_index('idx_houses_location', 'houses', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_houses_area_seq', 'houses', ['area_id', 'change_seq'], unique=False)
    op.create_index('ix_houses_area_xid', 'houses', ['area_id', 'change_xid'], unique=False)
    op.create_index(op.f('ix_houses_building_id'), 'houses', ['building_id'], unique=False)
    op.create_index('uq_houses_room', 'houses', ['building_id', sa.literal_column("coalesce(unit, '')"), 'room'], unique=True, postgresql_where=sa.text('ended_at IS NULL'))
    op.create_geospatial_table('organisations',
    sa.Column('uscc', sa.String(length=18), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('industry', sa.String(length=64), nullable=True),
    sa.Column('legal_representative', sa.String(length=50), nullable=True),
    sa.Column('employees', sa.Integer(), nullable=True),
    sa.Column('building_id', sa.BigInteger(), nullable=True),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('risk_flags', postgresql.ARRAY(sa.String(length=32)), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('needs_review', sa.Boolean(), nullable=False),
    sa.Column('review_reasons', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('change_seq', sa.BigInteger(), server_default=sa.text("nextval('registry_change_seq')"), nullable=False),
    sa.Column('change_xid', XID8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
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
    sa.CheckConstraint("kind IN ('enterprise', 'individual_business', 'institution', 'government', 'social_org')", name=op.f('ck_organisations_kind')),
    sa.CheckConstraint("source IN ('grid_worker', 'self_declared', 'import', 'other_system')", name=op.f('ck_organisations_source')),
    sa.CheckConstraint('employees IS NULL OR employees >= 0', name=op.f('ck_organisations_employees')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_organisations_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['building_id'], ['buildings.id'], name=op.f('fk_organisations_building_id_buildings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations'))
    )
    op.create_geospatial_index('idx_organisations_location', 'organisations', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_organisations_area_seq', 'organisations', ['area_id', 'change_seq'], unique=False)
    op.create_index('ix_organisations_area_xid', 'organisations', ['area_id', 'change_xid'], unique=False)
    op.create_index(op.f('ix_organisations_building_id'), 'organisations', ['building_id'], unique=False)
    op.create_index('uq_organisations_uscc', 'organisations', ['uscc'], unique=True, postgresql_where=sa.text('uscc IS NOT NULL'))
    op.create_geospatial_table('households',
    sa.Column('house_id', sa.BigInteger(), nullable=True),
    sa.Column('household_no', sa.String(length=32), nullable=True),
    sa.Column('head_person_id', sa.BigInteger(), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('needs_review', sa.Boolean(), nullable=False),
    sa.Column('review_reasons', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('change_seq', sa.BigInteger(), server_default=sa.text("nextval('registry_change_seq')"), nullable=False),
    sa.Column('change_xid', XID8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
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
    sa.CheckConstraint("source IN ('grid_worker', 'self_declared', 'import', 'other_system')", name=op.f('ck_households_source')),
    sa.CheckConstraint("type IN ('registered', 'non_registered')", name=op.f('ck_households_type')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_households_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['house_id'], ['houses.id'], name=op.f('fk_households_house_id_houses')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_households'))
    )
    op.create_geospatial_index('idx_households_location', 'households', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_households_area_seq', 'households', ['area_id', 'change_seq'], unique=False)
    op.create_index('ix_households_area_xid', 'households', ['area_id', 'change_xid'], unique=False)
    op.create_index(op.f('ix_households_house_id'), 'households', ['house_id'], unique=False)
    op.create_table('organisation_indicators',
    sa.Column('organisation_id', sa.BigInteger(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('employees', sa.Integer(), nullable=True),
    sa.Column('water_m3', sa.Float(), nullable=True),
    sa.Column('electricity_kwh', sa.Float(), nullable=True),
    sa.Column('wage_arrears_yuan', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('recorded_by', sa.BigInteger(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('extract(day from month) = 1', name=op.f('ck_organisation_indicators_month_start')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_organisation_indicators_organisation_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organisation_id', 'month', name=op.f('pk_organisation_indicators'))
    )
    op.create_geospatial_table('persons',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('id_number_enc', sa.Text(), nullable=True),
    sa.Column('id_number_bidx', sa.String(length=64), nullable=True),
    sa.Column('id_number_masked', sa.String(length=24), nullable=True),
    sa.Column('sex', sa.String(length=1), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('phone_enc', sa.Text(), nullable=True),
    sa.Column('phone_bidx', sa.String(length=64), nullable=True),
    sa.Column('phone_masked', sa.String(length=20), nullable=True),
    sa.Column('ethnicity', sa.String(length=16), nullable=True),
    sa.Column('household_id', sa.BigInteger(), nullable=True),
    sa.Column('relation_to_head', sa.String(length=16), nullable=True),
    sa.Column('population_type', sa.String(length=16), nullable=False),
    sa.Column('registration_situation', sa.String(length=24), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('needs_review', sa.Boolean(), nullable=False),
    sa.Column('review_reasons', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('change_seq', sa.BigInteger(), server_default=sa.text("nextval('registry_change_seq')"), nullable=False),
    sa.Column('change_xid', XID8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
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
    sa.CheckConstraint("population_type IN ('registered', 'floating', 'foreign', 'unsettled')", name=op.f('ck_persons_population_type')),
    sa.CheckConstraint("registration_situation IN ('both_here', 'registered_absent', 'present_unregistered')", name=op.f('ck_persons_registration_situation')),
    sa.CheckConstraint("sex IS NULL OR sex IN ('M', 'F')", name=op.f('ck_persons_sex')),
    sa.CheckConstraint("source IN ('grid_worker', 'self_declared', 'import', 'other_system')", name=op.f('ck_persons_source')),
    sa.CheckConstraint("status IN ('present', 'moved_out', 'deceased')", name=op.f('ck_persons_status')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_persons_area_id_areas'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_persons_household_id_households')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persons'))
    )
    op.create_geospatial_index('idx_persons_location', 'persons', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_persons_area_seq', 'persons', ['area_id', 'change_seq'], unique=False)
    op.create_index('ix_persons_area_xid', 'persons', ['area_id', 'change_xid'], unique=False)
    op.create_index(op.f('ix_persons_household_id'), 'persons', ['household_id'], unique=False)
    op.create_index(op.f('ix_persons_phone_bidx'), 'persons', ['phone_bidx'], unique=False)
    op.create_index('uq_persons_id_number', 'persons', ['id_number_bidx'], unique=True, postgresql_where=sa.text('id_number_bidx IS NOT NULL'))
    op.create_table('household_stays',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('person_id', sa.BigInteger(), nullable=False),
    sa.Column('household_id', sa.BigInteger(), nullable=False),
    sa.Column('relation_to_head', sa.String(length=16), nullable=True),
    sa.Column('since', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_household_stays_household_id_households')),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_household_stays_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household_stays'))
    )
    op.create_index(op.f('ix_household_stays_household_id'), 'household_stays', ['household_id'], unique=False)
    op.create_index(op.f('ix_household_stays_person_id'), 'household_stays', ['person_id'], unique=False)
    op.create_table('person_tags',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('person_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('tag', sa.String(length=32), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('care', 'key')", name=op.f('ck_person_tags_kind')),
    sa.CheckConstraint('end_date IS NULL OR end_date >= start_date', name=op.f('ck_person_tags_period')),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_person_tags_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_tags'))
    )
    op.create_index(op.f('ix_person_tags_person_id'), 'person_tags', ['person_id'], unique=False)
    op.create_index('ix_person_tags_tag', 'person_tags', ['tag'], unique=False, postgresql_where=sa.text('end_date IS NULL'))
    # Every write to a register row takes a new sequence number and records its
    # transaction: GET /sync/pull orders by the one and compares the other with snapshots.
    op.execute("""
        CREATE FUNCTION registry_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.change_seq := nextval('registry_change_seq');
            NEW.change_xid := pg_current_xact_id();
            RETURN NEW;
        END $$
    """)
    for table in REGISTER_TABLES:
        op.create_index(f"ix_{table}_needs_review", table, ["area_id"], unique=False,
                        postgresql_where=sa.text("needs_review AND ended_at IS NULL"))
        op.execute(f"CREATE TRIGGER {table}_stamp_change BEFORE INSERT OR UPDATE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION registry_stamp_change()")


def downgrade():
    for table in REGISTER_TABLES:
        op.execute(f"DROP TRIGGER {table}_stamp_change ON {table}")
        op.drop_index(f"ix_{table}_needs_review", table_name=table)
    op.execute("DROP FUNCTION registry_stamp_change()")
    op.drop_index('ix_person_tags_tag', table_name='person_tags', postgresql_where=sa.text('end_date IS NULL'))
    op.drop_index(op.f('ix_person_tags_person_id'), table_name='person_tags')
    op.drop_table('person_tags')
    op.drop_index(op.f('ix_household_stays_person_id'), table_name='household_stays')
    op.drop_index(op.f('ix_household_stays_household_id'), table_name='household_stays')
    op.drop_table('household_stays')
    op.drop_index('uq_persons_id_number', table_name='persons', postgresql_where=sa.text('id_number_bidx IS NOT NULL'))
    op.drop_index(op.f('ix_persons_phone_bidx'), table_name='persons')
    op.drop_index(op.f('ix_persons_household_id'), table_name='persons')
    op.drop_index('ix_persons_area_xid', table_name='persons')
    op.drop_index('ix_persons_area_seq', table_name='persons')
    op.drop_geospatial_index('idx_persons_location', table_name='persons', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('persons')
    op.drop_table('organisation_indicators')
    op.drop_index(op.f('ix_households_house_id'), table_name='households')
    op.drop_index('ix_households_area_xid', table_name='households')
    op.drop_index('ix_households_area_seq', table_name='households')
    op.drop_geospatial_index('idx_households_location', table_name='households', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('households')
    op.drop_index('uq_organisations_uscc', table_name='organisations', postgresql_where=sa.text('uscc IS NOT NULL'))
    op.drop_index(op.f('ix_organisations_building_id'), table_name='organisations')
    op.drop_index('ix_organisations_area_xid', table_name='organisations')
    op.drop_index('ix_organisations_area_seq', table_name='organisations')
    op.drop_geospatial_index('idx_organisations_location', table_name='organisations', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('organisations')
    op.drop_index('uq_houses_room', table_name='houses', postgresql_where=sa.text('ended_at IS NULL'))
    op.drop_index(op.f('ix_houses_building_id'), table_name='houses')
    op.drop_index('ix_houses_area_xid', table_name='houses')
    op.drop_index('ix_houses_area_seq', table_name='houses')
    op.drop_geospatial_index('idx_houses_location', table_name='houses', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('houses')
    op.drop_index('ix_buildings_area_xid', table_name='buildings')
    op.drop_index('ix_buildings_area_seq', table_name='buildings')
    op.drop_geospatial_index('idx_buildings_location', table_name='buildings', postgresql_using='gist', column_name='location')
    op.drop_geospatial_index('idx_buildings_footprint', table_name='buildings', postgresql_using='gist', column_name='footprint')
    op.drop_geospatial_table('buildings')
    op.drop_index('ix_registry_tombstones_area_xid', table_name='registry_tombstones')
    op.drop_index('ix_registry_tombstones_area_seq', table_name='registry_tombstones')
    op.drop_table('registry_tombstones')
    op.drop_table('client_requests')
    op.execute("DROP SEQUENCE registry_change_seq")
