"""What grid.insights contributes. See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.insights import models, reports, schemas, views, warnings
from notifications.service import register_templates
from server.cli import PeriodicTask

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables

# --- warnings: indicators, warnings, leaders' reports ---


def _contribute_warnings(registry: Registry) -> None:
    registry.blueprints(views.warnings_blueprints)
    register_templates(warnings.NOTICE_TEMPLATES + reports.NOTICE_TEMPLATES)
    registry.job_handler(reports.JOB_KIND, reports.run_report_job)
    registry.current_schema(models.EarlyWarning, views.present_current)
    registry.current_schema(models.Indicator, schemas.CityIndicatorSchema())
    registry.periodic_tasks((PeriodicTask("indicator_evaluate", 60, warnings.evaluate_due),
                             PeriodicTask("leader_reports_weekly", 600, reports.weekly_due)))
# --- end warnings ---


def contribute(registry: Registry) -> None:
    _contribute_warnings(registry)
