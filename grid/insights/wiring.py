"""What grid.insights contributes: see server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.insights import (
    hotspot_runs,
    labour,
    models,
    on_the_map,
    reports,
    schemas,
    views,
    warnings,
)
from grid.maps import tiles
from grid.profiles import service as profiles
from notifications.service import register_templates
from server.cli import PeriodicTask

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    _hotspots(registry)
    _contribute_warnings(registry)


# --- hotspots: hot spots and labour risk ---


def _hotspots(registry: Registry) -> None:
    """The daily hot-spot runs and labour-risk scores, the on-demand run's job, the
    `hotspots` tile layer and the building and area profiles' "labour_risks" sections."""
    registry.periodic_tasks((
        PeriodicTask("hotspot_runs", 86400, lambda s: hotspot_runs.daily_runs(s)),
        PeriodicTask("labour_risk_scores", 86400, lambda s: labour.score_recent_months(s))))
    registry.job_handler(hotspot_runs.JOB_KIND, hotspot_runs.run_job)
    tiles.register(on_the_map.tile_layer())
    for kind, section in (("building", labour.building_section),
                          ("area", labour.area_section)):
        sections = profiles.profile_sections[kind]
        if not any(name == "labour_risks" for name, _ in sections):
            sections.append(("labour_risks", section))
# --- end hotspots ---


# --- warnings: indicators, warnings, leaders' reports ---


def _contribute_warnings(registry: Registry) -> None:
    register_templates(warnings.NOTICE_TEMPLATES + reports.NOTICE_TEMPLATES)
    registry.job_handler(reports.JOB_KIND, reports.run_report_job)
    registry.current_schema(models.EarlyWarning, views.present_current)
    registry.current_schema(models.Indicator, schemas.CityIndicatorSchema())
    registry.periodic_tasks((PeriodicTask("indicator_evaluate", 60, warnings.evaluate_due),
                             PeriodicTask("leader_reports_weekly", 600, reports.weekly_due)))
# --- end warnings ---
