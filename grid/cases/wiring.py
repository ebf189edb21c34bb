"""What grid.cases contributes: its blueprints, the case notices' texts, who may see a
case's photos (and which of them a resident sees), and the worker's 督办 sweep and stats
compaction. See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.cases import models, notices, resident_view, scope, stats, sweep, trends, views
from notifications.service import register_templates
from server.cli import PeriodicTask

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def _case_access(s, actor, case_id):
    return scope.get_case(s, actor, case_id)


def _sweep(s):
    return sweep.sweep(s)


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    register_templates(notices.NOTICE_TEMPLATES)
    registry.object_access("case", _case_access)
    registry.attachment_filter("case", resident_view.case_photo_shown)
    registry.periodic_tasks((PeriodicTask("case_sweep", 60, _sweep),
                             PeriodicTask("case_stats_compact", 600, stats.compact_stats),
                             PeriodicTask("case_trends_compact", 600, trends.compact_trends)))
