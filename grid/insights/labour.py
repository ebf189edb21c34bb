"""Labour-dispute risk (劳资纠纷预警, the Pingshan "和谐劳动关系" practice): a monthly score
0–100 per organisation with each factor's contribution, so that a community visits an
enterprise before its workers gather.

Factors (defaults of `LabourRiskSettings`, documented in README "Labour-dispute risk"):
- 工资拖欠 wage arrears, consecutive months up to the month assessed: 1 → +20, 2 → +35,
  ≥ 3 → +45; 社保欠缴 social-insurance arrears: +10 / +15 / +20; 欠租 rent arrears:
  +8 / +12 / +15 (a month without figures breaks the run: no evidence is not arrears);
- 用工人数下降 headcount against the mean of the three months before: −20 % → +10,
  −40 % → +15; 用水/用电下降 water or electricity −30 % → +8 each;
- 劳资纠纷 labour disputes (0602) reported at it (within `dispute_radius_m` of its gate) or
  inside its building's footprint in the last 12 months: 1 → +10, ≥ 2 → +20; other
  矛盾纠纷 (06xx): ≥ 1 → +5;
- 前期高风险 earlier months scored orange or red in the 6 before: 1–2 → +5, ≥ 3 → +10.
The score is the sum, capped at 100; level red ≥ 60 (高风险), orange ≥ 40, yellow ≥ 20,
else green. Who is assessed: organisations not ended with indicators for the month.

`risks_for_month` computes (no actor: the worker's and the warnings' entry point);
`store` keeps the month (`organisation_risks`); the reads below are scoped and audited.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.insights.models import RISK_LEVELS, OrganisationRisk
from grid.registry import scope as registry_scope
from grid.registry.models import Organisation, OrganisationIndicator
from server import audit, db
from server.auth.actor import Actor
from server.clock import local_today, local_zone
from server.errors import Invalid, field_errors


@dataclass(frozen=True)
class LabourRiskSettings:
    """Weights and thresholds (tiers are points for 1, 2, ≥ 3…; drops are (fraction,
    points), largest first)."""

    wage_arrears_points: tuple[int, ...] = (20, 35, 45)
    social_insurance_points: tuple[int, ...] = (10, 15, 20)
    rent_points: tuple[int, ...] = (8, 12, 15)
    headcount_drop: tuple[tuple[float, int], ...] = ((0.4, 15), (0.2, 10))
    water_drop: tuple[tuple[float, int], ...] = ((0.3, 8),)
    electricity_drop: tuple[tuple[float, int], ...] = ((0.3, 8),)
    labour_dispute_points: tuple[int, ...] = (10, 20)
    other_dispute_points: tuple[int, ...] = (5,)
    earlier_high_points: tuple[int, ...] = (5, 5, 10)
    dispute_category: str = "06"  # 矛盾纠纷
    labour_dispute_category: str = "0602"  # 劳资纠纷
    dispute_months: int = 12
    dispute_radius_m: float = 50.0
    history_months: int = 6
    levels: tuple[tuple[str, int], ...] = (("red", 60), ("orange", 40), ("yellow", 20))


@dataclass
class Factor:
    factor: str
    label: str  # "工资拖欠 2 个月"
    value: float
    points: int


@dataclass
class RiskAssessment:
    """One organisation's month: what `warnings`' labour_risk indicator reads."""

    organisation_id: int
    area_id: int
    month: date
    score: int
    level: str
    factors: list[Factor] = field(default_factory=list)


def add_months(month: date, n: int) -> date:
    k = month.year * 12 + month.month - 1 + n
    return date(k // 12, k % 12 + 1, 1)


def _tier(points: tuple[int, ...], n: int) -> int:
    return 0 if n <= 0 or not points else points[min(n, len(points)) - 1]


def _drop(series: dict[date, Any], month: date, name: str) -> float | None:
    """How far the month's value fell below the mean of the three months before (0.25 =
    −25 %), or None without figures."""
    now = getattr(series.get(month), name, None)
    before = [getattr(series.get(add_months(month, -i)), name, None) for i in (1, 2, 3)]
    before = [float(v) for v in before if v is not None]
    if now is None or not before or sum(before) <= 0:
        return None
    return 1 - float(now) / (sum(before) / len(before))


def _run_length(series: dict[date, Any], month: date, name: str) -> int:
    n = 0
    while (row := series.get(add_months(month, -n))) is not None and \
            (getattr(row, name) or 0) > 0:
        n += 1
    return n


_ARREARS = (("wage_arrears", "wage_arrears_yuan", "工资拖欠", "wage_arrears_points"),
            ("social_insurance_arrears", "social_insurance_arrears_yuan", "社保欠缴",
             "social_insurance_points"),
            ("rent_arrears", "rent_arrears_yuan", "房租拖欠", "rent_points"))
_DROPS = (("headcount_drop", "employees", "用工人数下降", "headcount_drop"),
          ("water_drop", "water_m3", "用水量下降", "water_drop"),
          ("electricity_drop", "electricity_kwh", "用电量下降", "electricity_drop"))


def score_factors(series: dict[date, Any], month: date, disputes: tuple[int, int],
                  earlier_high: int, settings: LabourRiskSettings) -> list[Factor]:
    """The factors that add points (pure: the hand-computed fixture tests it)."""
    factors = []
    for key, column, label, tiers in _ARREARS:
        n = _run_length(series, month, column)
        if points := _tier(getattr(settings, tiers), n):
            factors.append(Factor(key, f"{label} {n} 个月", n, points))
    for key, column, label, tiers in _DROPS:
        drop = _drop(series, month, column)
        points = next((p for limit, p in getattr(settings, tiers)
                       if drop is not None and drop >= limit), 0)
        if points:
            factors.append(Factor(key, f"{label} {round(drop * 100)}%", round(drop, 4),
                                  points))
    labour, other = disputes
    if points := _tier(settings.labour_dispute_points, labour):
        factors.append(Factor("labour_disputes", f"近{settings.dispute_months}个月劳资纠纷 "
                              f"{labour} 起", labour, points))
    if points := _tier(settings.other_dispute_points, other):
        factors.append(Factor("other_disputes", f"近{settings.dispute_months}个月其他矛盾纠纷 "
                              f"{other} 起", other, points))
    if points := _tier(settings.earlier_high_points, earlier_high):
        factors.append(Factor("earlier_high", f"近{settings.history_months}个月较高风险 "
                              f"{earlier_high} 次", earlier_high, points))
    return factors


def level_of(score: int, settings: LabourRiskSettings) -> str:
    return next((name for name, limit in settings.levels if score >= limit), "green")


# --- the month's assessments ---------------------------------------------------------------

_DISPUTES = sa.text("""
WITH d AS (
    SELECT c.id, c.location, cat.code LIKE :labour_like AS labour
    FROM cases c JOIN case_categories cat ON cat.id = c.category_id
    WHERE cat.code LIKE :dispute_like AND c.reported_at >= :since AND c.reported_at < :until
      AND c.location IS NOT NULL AND c.state NOT IN ('merged', 'voided', 'rejected')
), pairs AS (
    SELECT o.id AS org, d.id AS case_id, d.labour
    FROM d JOIN organisations o ON o.location && ST_Expand(d.location, :deg)
     AND ST_DWithin(CAST(o.location AS geography), CAST(d.location AS geography), :r)
    WHERE o.id = ANY(:ids)
    UNION
    SELECT o.id, d.id, d.labour
    FROM d JOIN buildings b ON b.footprint && d.location AND ST_Intersects(b.footprint, d.location)
    JOIN organisations o ON o.building_id = b.id
    WHERE o.id = ANY(:ids)
)
SELECT org, count(*) FILTER (WHERE labour), count(*) FILTER (WHERE NOT labour)
FROM pairs GROUP BY org
""")


def _local_start(month: date) -> datetime:
    return datetime.combine(month, time(), tzinfo=local_zone())


def risks_for_month(s: Session, month: date,
                    settings: LabourRiskSettings = LabourRiskSettings(), *,
                    area_path: str | None = None,
                    organisation_ids: list[int] | None = None) -> list[RiskAssessment]:
    """Every organisation with indicators for `month` (first day) — in `area_path`'s
    subtree, or of `organisation_ids`, when given — scored (module docstring). No actor:
    callers scope what they show."""
    orgs = sa.select(Organisation.id, Organisation.area_id).join(
        OrganisationIndicator, sa.and_(OrganisationIndicator.organisation_id == Organisation.id,
                                       OrganisationIndicator.month == month)
    ).where(Organisation.ended_at.is_(None))
    if area_path is not None:
        orgs = orgs.where(Organisation.area_id.in_(
            sa.select(Area.id).where(Area.path.startswith(area_path, autoescape=True))))
    if organisation_ids is not None:
        orgs = orgs.where(Organisation.id.in_(organisation_ids))
    area_of = dict(s.execute(orgs).all())
    if not area_of:
        return []
    ids = list(area_of)
    series: dict[int, dict[date, Any]] = defaultdict(dict)
    for row in s.scalars(sa.select(OrganisationIndicator).where(
            OrganisationIndicator.organisation_id.in_(ids),
            OrganisationIndicator.month >= add_months(month, -12),
            OrganisationIndicator.month <= month)):
        series[row.organisation_id][row.month] = row
    disputes = {org: (labour, other) for org, labour, other in s.execute(_DISPUTES, {
        "labour_like": f"{settings.labour_dispute_category}%",
        "dispute_like": f"{settings.dispute_category}%",
        "since": _local_start(add_months(month, 1 - settings.dispute_months)),
        "until": _local_start(add_months(month, 1)), "ids": ids,
        "r": settings.dispute_radius_m, "deg": settings.dispute_radius_m / 50_000})}
    high = settings.levels[:2]  # red and orange
    earlier = dict(s.execute(
        sa.select(OrganisationRisk.organisation_id, sa.func.count())
        .where(OrganisationRisk.organisation_id.in_(ids),
               OrganisationRisk.month >= add_months(month, -settings.history_months),
               OrganisationRisk.month < month,
               OrganisationRisk.level.in_([name for name, _ in high]))
        .group_by(OrganisationRisk.organisation_id)).all())
    out = []
    for org_id in sorted(ids):
        factors = score_factors(series[org_id], month, disputes.get(org_id, (0, 0)),
                                earlier.get(org_id, 0), settings)
        score = min(100, sum(f.points for f in factors))
        out.append(RiskAssessment(org_id, area_of[org_id], month, score,
                                  level_of(score, settings), factors))
    return out


def store(s: Session, assessments: list[RiskAssessment]) -> int:
    """Upsert the month's rows (a recomputation replaces the month's earlier one)."""
    if not assessments:
        return 0
    rows = [{"organisation_id": a.organisation_id, "month": a.month, "area_id": a.area_id,
             "score": a.score, "level": a.level,
             "factors": [vars(f) for f in a.factors], "computed_at": sa.func.now()}
            for a in assessments]
    stmt = pg_insert(OrganisationRisk).values(rows)
    s.execute(stmt.on_conflict_do_update(
        index_elements=["organisation_id", "month"],
        set_={c: stmt.excluded[c] for c in ("area_id", "score", "level", "factors",
                                            "computed_at")}))
    return len(rows)


def score_recent_months(s: Session, settings: LabourRiskSettings = LabourRiskSettings()
                        ) -> dict:
    """The worker's daily task: last month (figures arrive late) then this month."""
    this = local_today().replace(day=1)
    done = {}
    for month in (add_months(this, -1), this):
        done[month.strftime("%Y-%m")] = store(s, risks_for_month(s, month, settings))
    return done


# --- reading (scoped: registry:read and the organisation's grid) ---------------------------


@dataclass
class RiskCard:
    """An organisation's risk series (oldest first) with its indicators, for the API, the
    building profile and the report."""

    organisation: Organisation
    series: list[OrganisationRisk]
    indicators: list[OrganisationIndicator]

    @property
    def latest(self) -> OrganisationRisk | None:
        return self.series[-1] if self.series else None


def list_risks(s: Session, actor: Actor, month: date, filters: dict, page: Any) -> list:
    """The month's scored organisations in scope, riskiest first (rows of risk, name,
    uscc)."""
    actor.require("registry:read")
    stmt = (sa.select(OrganisationRisk, Organisation.name, Organisation.uscc)
            .join(Organisation, Organisation.id == OrganisationRisk.organisation_id)
            .where(OrganisationRisk.month == month,
                   areas.in_scope(OrganisationRisk.area_id, actor))
            .order_by(OrganisationRisk.score.desc(), OrganisationRisk.organisation_id))
    if filters.get("level"):
        stmt = stmt.where(OrganisationRisk.level == filters["level"])
    if filters.get("area_id") is not None:
        root = areas.get_area(s, actor, filters["area_id"])
        stmt = stmt.where(OrganisationRisk.area_id.in_(
            sa.select(Area.id).where(Area.path.startswith(root.path, autoescape=True))))
    return [_row(risk, name, uscc) for risk, name, uscc in db.paginate(s, stmt, page)]


def _row(risk: OrganisationRisk, name: str, uscc: str | None) -> dict:
    return {"organisation_id": risk.organisation_id, "organisation_name": name,
            "uscc": uscc, "area_id": risk.area_id, "month": risk.month, "score": risk.score,
            "level": risk.level, "level_label": RISK_LEVELS[risk.level],
            "factors": risk.factors}


def risk_card(s: Session, actor: Actor, org_id: int, since: date | None = None,
              until: date | None = None, *, action: str = "organisation_risk_read"
              ) -> RiskCard:
    """One organisation's series between two months (default: the last 12 stored), with
    its indicators. Audited like the indicators it shows (wage arrears are sensitive)."""
    org = registry_scope.get_record(s, actor, Organisation, org_id)
    if since is not None and until is not None and until < since:
        raise Invalid(field_errors("to", "Before `from`.", location="query"))
    until = until or local_today().replace(day=1)
    since = since or add_months(until, -11)
    series = list(s.scalars(sa.select(OrganisationRisk).where(
        OrganisationRisk.organisation_id == org.id, OrganisationRisk.month >= since,
        OrganisationRisk.month <= until).order_by(OrganisationRisk.month)))
    indicators = list(s.scalars(sa.select(OrganisationIndicator).where(
        OrganisationIndicator.organisation_id == org.id, OrganisationIndicator.month >= since,
        OrganisationIndicator.month <= until).order_by(OrganisationIndicator.month)))
    audit.record(s, actor, action, "organisation", org.id,
                 changes={"from": since.strftime("%Y-%m"), "to": until.strftime("%Y-%m")})
    return RiskCard(org, series, indicators)


def building_section(s: Session, actor: Actor, building: Any) -> list[dict]:
    """The building profile's "labour_risks": its organisations' latest scores (one
    query). Without registry:read nothing (the profile itself needs it anyway)."""
    if not actor.can("registry:read"):
        return []
    latest = (sa.select(OrganisationRisk, Organisation.name, Organisation.uscc)
              .join(Organisation, Organisation.id == OrganisationRisk.organisation_id)
              .where(Organisation.building_id == building.id, Organisation.ended_at.is_(None),
                     areas.in_scope(Organisation.area_id, actor))
              .ext(distinct_on(OrganisationRisk.organisation_id))
              .order_by(OrganisationRisk.organisation_id, OrganisationRisk.month.desc()))
    rows = [_row(*r) for r in s.execute(latest)]
    return sorted(rows, key=lambda r: (-r["score"], r["organisation_id"]))


AREA_TOP = 10  # organisations listed on an area's profile


def area_section(s: Session, actor: Actor, area: Any) -> dict | None:
    """The area profile's "labour_risks": the latest scored month in the area's subtree
    (and the actor's scope), organisations per level, and the riskiest (orange or red)
    first. None without registry:read or without scores."""
    if not actor.can("registry:read"):
        return None
    where = (OrganisationRisk.area_id.in_(areas.subtree_ids(area)),
             areas.in_scope(OrganisationRisk.area_id, actor))
    month = s.scalar(sa.select(sa.func.max(OrganisationRisk.month)).where(*where))
    if month is None:
        return None
    levels = dict(s.execute(sa.select(OrganisationRisk.level, sa.func.count())
                            .where(*where, OrganisationRisk.month == month)
                            .group_by(OrganisationRisk.level)).all())
    top = s.execute(sa.select(OrganisationRisk, Organisation.name, Organisation.uscc)
                    .join(Organisation, Organisation.id == OrganisationRisk.organisation_id)
                    .where(*where, OrganisationRisk.month == month,
                           OrganisationRisk.level.in_(("red", "orange")))
                    .order_by(OrganisationRisk.score.desc(), OrganisationRisk.organisation_id)
                    .limit(AREA_TOP))
    return {"month": month.strftime("%Y-%m"),
            "levels": {name: levels.get(name, 0) for name in RISK_LEVELS},
            "riskiest": [{**_row(*r), "month": month.strftime("%Y-%m")} for r in top]}
