"""areas: levels (seeded), areas with boundaries, memberships, departments

Reviewed by hand: the level rows are reference data the code relies on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 13:27:57.349655
"""

from alembic import op
import sqlalchemy as sa
import geoalchemy2
from geoalchemy2 import Geometry

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('area_levels',
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False),
    sa.Column('code_digits', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_area_levels')),
    sa.UniqueConstraint('rank', name=op.f('uq_area_levels_rank'))
    )
    op.create_geospatial_table('areas',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('level', sa.String(length=32), nullable=False),
    sa.Column('parent_id', sa.BigInteger(), nullable=True),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('boundary', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('area_m2', sa.Float(), nullable=True),
    sa.Column('timezone', sa.String(length=64), server_default='Asia/Shanghai', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("code ~ '^[0-9]+$'", name=op.f('ck_areas_code_digits')),
    sa.ForeignKeyConstraint(['level'], ['area_levels.key'], name=op.f('fk_areas_level_area_levels')),
    sa.ForeignKeyConstraint(['parent_id'], ['areas.id'], name=op.f('fk_areas_parent_id_areas'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_areas')),
    sa.UniqueConstraint('code', name=op.f('uq_areas_code'))
    )
    op.create_geospatial_index('idx_areas_boundary', 'areas', ['boundary'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_areas_parent_id'), 'areas', ['parent_id'], unique=False)
    op.create_index('ix_areas_path', 'areas', ['path'], unique=False, postgresql_ops={'path': 'text_pattern_ops'})
    op.create_table('area_memberships',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_area_memberships_area_id_areas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_area_memberships_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_area_memberships')),
    sa.UniqueConstraint('user_id', 'area_id', 'role', name='uq_membership')
    )
    op.create_index(op.f('ix_area_memberships_area_id'), 'area_memberships', ['area_id'], unique=False)
    op.create_index(op.f('ix_area_memberships_user_id'), 'area_memberships', ['user_id'], unique=False)
    op.create_table('departments',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('service_area_id', sa.BigInteger(), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['service_area_id'], ['areas.id'], name=op.f('fk_departments_service_area_id_areas'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_departments')),
    sa.UniqueConstraint('code', name=op.f('uq_departments_code'))
    )
    op.create_index(op.f('ix_departments_service_area_id'), 'departments', ['service_area_id'], unique=False)
    op.create_table('department_members',
    sa.Column('department_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('is_head', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_department_members_department_id_departments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_department_members_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('department_id', 'user_id', name=op.f('pk_department_members'))
    )
    op.create_index(op.f('ix_department_members_user_id'), 'department_members', ['user_id'], unique=False)
    levels = sa.table("area_levels", sa.column("key"), sa.column("name"), sa.column("rank"),
                      sa.column("code_digits"))
    op.bulk_insert(levels, [
        {"key": "city", "name": "城市", "rank": 10, "code_digits": 6},
        {"key": "district", "name": "区县", "rank": 20, "code_digits": 6},
        {"key": "street", "name": "街道", "rank": 30, "code_digits": 9},
        {"key": "community", "name": "社区", "rank": 40, "code_digits": 12},
        {"key": "grid", "name": "网格", "rank": 50, "code_digits": 15},
        {"key": "micro_grid", "name": "微网格", "rank": 60, "code_digits": 18},
    ])


def downgrade():
    op.drop_index(op.f('ix_department_members_user_id'), table_name='department_members')
    op.drop_table('department_members')
    op.drop_index(op.f('ix_departments_service_area_id'), table_name='departments')
    op.drop_table('departments')
    op.drop_index(op.f('ix_area_memberships_user_id'), table_name='area_memberships')
    op.drop_index(op.f('ix_area_memberships_area_id'), table_name='area_memberships')
    op.drop_table('area_memberships')
    op.drop_index('ix_areas_path', table_name='areas', postgresql_ops={'path': 'text_pattern_ops'})
    op.drop_index(op.f('ix_areas_parent_id'), table_name='areas')
    op.drop_geospatial_index('idx_areas_boundary', table_name='areas', postgresql_using='gist', column_name='boundary')
    op.drop_geospatial_table('areas')
    op.drop_table('area_levels')
