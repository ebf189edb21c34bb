"""Liveness and readiness for load balancers and `make run`."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from flask import current_app
from marshmallow import fields

from server.api import Blueprint, Schema

blp = Blueprint("health", __name__, description="Health checks")

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")


class HealthSchema(Schema):
    status = fields.String()


class ReadySchema(Schema):
    status = fields.String()
    database = fields.String()
    postgis = fields.String(allow_none=True)
    migration = fields.String(allow_none=True)
    head = fields.String(allow_none=True)
    reason = fields.String()


def migration_head() -> str | None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    return ScriptDirectory.from_config(cfg).get_current_head()


@blp.route("/healthz")
@blp.response(200, HealthSchema)
def healthz():
    """The process is alive (no database call)."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="Not ready, with the reason")
def readyz():
    """Ready to serve: database reachable, PostGIS installed, migrations at head."""
    head = current_app.config.get("_MIGRATION_HEAD")
    if head is None:  # reading the migration scripts costs milliseconds: once per process
        head = current_app.config["_MIGRATION_HEAD"] = migration_head()
    report = {"status": "ok", "database": "ok", "postgis": None, "migration": None,
              "head": head}
    step = "connect"
    try:
        with current_app.extensions["db_engine"].connect() as conn:
            step = "postgis"
            report["postgis"] = conn.scalar(sa.text("SELECT PostGIS_Lib_Version()"))
            step = "migration"
            report["migration"] = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        if step == "connect":
            report["database"] = "unreachable"
        what = {"connect": "cannot connect to the database",
                "postgis": "cannot read the PostGIS version (is the extension installed?)",
                "migration": "cannot read the migration version (never migrated?)"}[step]
        report.update(status="unavailable", reason=f"{what}: {detail}")
        return report, 503
    if report["migration"] != head:
        report.update(status="unavailable",
                      reason=f"migrations at {report['migration']}, code expects {head}")
        return report, 503
    return report
