"""What grid.ledgers contributes: its blueprints and the background job that imports a
ledger file. See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.ledgers import imports, models, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    registry.job_handler(imports.JOB_KIND, imports.run_import_job)
