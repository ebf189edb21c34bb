"""Alembic environment: runs as the owner role (MIGRATION_DATABASE_URL).

GeoAlchemy2's alembic helpers keep autogenerate from touching PostGIS's own tables
(spatial_ref_sys, topology…) and render spatial columns and indexes correctly.
"""

import logging

from alembic import context
from flask import current_app
from geoalchemy2 import alembic_helpers

from server import db

config = context.config
logger = logging.getLogger("alembic.env")
target_metadata = db.Base.metadata

# Tables that belong to extensions, not to us.
_FOREIGN_TABLES = {"spatial_ref_sys", "layer", "topology"}


def include_object(obj, name, type_, reflected, compare_to):
    if type_ == "table" and name in _FOREIGN_TABLES:
        return False
    if type_ == "table" and reflected and obj.schema in ("tiger", "tiger_data", "topology"):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def run_migrations_online() -> None:
    url = current_app.config["MIGRATION_DATABASE_URL"]
    connectable = db.engine_for(url)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            process_revision_directives=alembic_helpers.writer,
            render_item=alembic_helpers.render_item,
            compare_type=True,
            # Server defaults are schema too. Alembic has PostgreSQL compare the two values
            # (`SELECT now() = CURRENT_TIMESTAMP`), so spelling differences are no drift;
            # tests/server/test_migrations.py asserts `alembic check` finds none.
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run against a database.")
run_migrations_online()
