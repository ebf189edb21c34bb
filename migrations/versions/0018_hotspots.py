"""hotspots: hot-spot runs and hot spots (热点), organisations' labour-dispute risk per month
(劳资纠纷预警), social-insurance and rent arrears in the monthly indicators

Written by hand. `hotspot_runs` keeps each analysis (category, area, window, baseline,
settings); `hotspots` its significant places (shape in WGS-84 with a GiST index for the
tile layer, counts, z/p/q, class). `organisation_risks` one row per organisation and month
(score 0–100, level, the factors' contributions). Two nullable money columns on
`organisation_indicators`.

Revision ID: 0018
Revises: 0017
"""

from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('organisation_indicators',
                  sa.Column('social_insurance_arrears_yuan', sa.Numeric(14, 2), nullable=True))
    op.add_column('organisation_indicators',
                  sa.Column('rent_arrears_yuan', sa.Numeric(14, 2), nullable=True))
    op.create_table('hotspot_runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('category_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('baseline_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('cells', sa.Integer(), nullable=False),
    sa.Column('window_cases', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_hotspot_runs_area_id_areas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['category_id'], ['case_categories.id'], name=op.f('fk_hotspot_runs_category_id_case_categories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hotspot_runs'))
    )
    op.create_index('ix_hotspot_runs_latest', 'hotspot_runs', ['category_id', 'area_id', 'id'], unique=False)
    op.create_table('hotspots',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('shape', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('cells', postgresql.ARRAY(sa.String(length=24)), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('expected', sa.Float(), nullable=False),
    sa.Column('baseline_expected', sa.Float(), nullable=False),
    sa.Column('z', sa.Float(), nullable=False),
    sa.Column('p', sa.Float(), nullable=False),
    sa.Column('q', sa.Float(), nullable=False),
    sa.Column('hot_slices', sa.SmallInteger(), nullable=False),
    sa.Column('class', sa.String(length=16), nullable=False),
    sa.CheckConstraint("class IN ('new', 'intensifying', 'persistent', 'fading')", name=op.f('ck_hotspots_class')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_hotspots_area_id_areas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['hotspot_runs.id'], name=op.f('fk_hotspots_run_id_hotspot_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hotspots'))
    )
    op.create_geospatial_index('idx_hotspots_shape', 'hotspots', ['shape'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_hotspots_area_id'), 'hotspots', ['area_id'], unique=False)
    op.create_index(op.f('ix_hotspots_run_id'), 'hotspots', ['run_id'], unique=False)
    op.create_table('organisation_risks',
    sa.Column('organisation_id', sa.BigInteger(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('score', sa.SmallInteger(), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('factors', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('score BETWEEN 0 AND 100', name=op.f('ck_organisation_risks_score')),
    sa.CheckConstraint("level IN ('green', 'yellow', 'orange', 'red')", name=op.f('ck_organisation_risks_level')),
    sa.CheckConstraint('extract(day from month) = 1', name=op.f('ck_organisation_risks_month_start')),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_organisation_risks_area_id_areas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_organisation_risks_organisation_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organisation_id', 'month', name=op.f('pk_organisation_risks'))
    )
    op.create_index('ix_organisation_risks_month_area', 'organisation_risks', ['month', 'area_id'], unique=False)


def downgrade():
    op.drop_index('ix_organisation_risks_month_area', table_name='organisation_risks')
    op.drop_table('organisation_risks')
    op.drop_index(op.f('ix_hotspots_run_id'), table_name='hotspots')
    op.drop_index(op.f('ix_hotspots_area_id'), table_name='hotspots')
    op.drop_geospatial_index('idx_hotspots_shape', table_name='hotspots', postgresql_using='gist', column_name='shape')
    op.drop_table('hotspots')
    op.drop_index('ix_hotspot_runs_latest', table_name='hotspot_runs')
    op.drop_table('hotspot_runs')
    op.drop_column('organisation_indicators', 'rent_arrears_yuan')
    op.drop_column('organisation_indicators', 'social_insurance_arrears_yuan')
