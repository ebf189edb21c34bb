"""What grid.insights contributes: see server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.insights import hotspot_runs, labour, models, on_the_map, views  # hotspots
from grid.maps import tiles  # hotspots
from grid.profiles import service as profiles  # hotspots
from server.cli import PeriodicTask  # hotspots

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    _hotspots(registry)


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
