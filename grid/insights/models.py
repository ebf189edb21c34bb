"""Tables of the insights context (研判与预警)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, TimestampMixin, VersionedMixin

# --- hotspots: hot-spot runs and their hot spots (热点), monthly labour risk (劳资纠纷预警) ---

HOTSPOT_CLASSES = {"new": "新出现", "intensifying": "加剧", "persistent": "持续",
                   "fading": "减弱"}
RISK_LEVELS = {"green": "低风险", "yellow": "关注", "orange": "较高风险", "red": "高风险"}


class HotspotRun(Base):
    """One hot-spot analysis of a category over an area: its window, baseline and settings,
    and how many cells it tested (the worker's daily run, or a job someone asked for)."""

    __tablename__ = "hotspot_runs"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    category_id: Mapped[int] = mapped_column(
        sa.ForeignKey("case_categories.id", ondelete="CASCADE"), nullable=False)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         nullable=False)
    window_start: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    window_end: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    baseline_start: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True),
                                                     nullable=False)
    settings: Mapped[dict] = mapped_column(JSONB, nullable=False,
                                           server_default=sa.text("'{}'"))
    cells: Mapped[int] = mapped_column(sa.Integer, nullable=False)  # cells tested
    window_cases: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)  # None: the worker
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)

    __table_args__ = (
        sa.Index("ix_hotspot_runs_latest", "category_id", "area_id", "id"),
    )


class Hotspot(Base):
    """A hot spot of a run: adjacent significant cells merged, their shape, counts,
    significance and class. `area_id` is the grid under its centre (its scope)."""

    __tablename__ = "hotspots"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("hotspot_runs.id", ondelete="CASCADE"),
                                        nullable=False, index=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         nullable=False, index=True)
    shape = mapped_column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True),
                          nullable=False)
    cells: Mapped[list[str]] = mapped_column(ARRAY(sa.String(24)), nullable=False)  # "ix:iy"
    count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    expected: Mapped[float] = mapped_column(sa.Float, nullable=False)
    baseline_expected: Mapped[float] = mapped_column(sa.Float, nullable=False)
    z: Mapped[float] = mapped_column(sa.Float, nullable=False)
    p: Mapped[float] = mapped_column(sa.Float, nullable=False)
    q: Mapped[float] = mapped_column(sa.Float, nullable=False)
    hot_slices: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    spot_class: Mapped[str] = mapped_column("class", sa.String(16), nullable=False)

    __table_args__ = (
        sa.CheckConstraint("class IN ('new', 'intensifying', 'persistent', 'fading')",
                           name="class"),
    )


class OrganisationRisk(Base):
    """An organisation's labour-dispute risk for a month (劳资纠纷风险): score 0–100, level
    and each factor's contribution, kept so that profiles and reports show the series."""

    __tablename__ = "organisation_risks"

    organisation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         nullable=False)
    score: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    level: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    # [{"factor": "wage_arrears", "label": "工资拖欠 2 个月", "value": 2, "points": 35}]
    factors: Mapped[list] = mapped_column(JSONB, nullable=False,
                                          server_default=sa.text("'[]'"))
    computed_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)

    __table_args__ = (
        sa.CheckConstraint("score BETWEEN 0 AND 100", name="score"),
        sa.CheckConstraint("level IN ('green', 'yellow', 'orange', 'red')", name="level"),
        sa.CheckConstraint("extract(day from month) = 1", name="month_start"),
        sa.Index("ix_organisation_risks_month_area", "month", "area_id"),
    )

# --- end hotspots ---

# --- warnings: indicators (城市运行体征指标), warnings (预警), leaders' reports (报表) ---

# What an indicator measures (the SQL of each is in grid/insights/indicators.py).
INDICATOR_KINDS = {
    "new_cases": "新增案件数",  # cases of categories reported in the window, per area
    "overdue_rate": "部门超期率",  # % of a department's open cases past due
    "repeated_place": "同一地点重复投诉",  # N cases in M days within R metres
    "repeated_caller": "同一来电人重复投诉",  # the same hotline caller (blind index)
    "unvisited_care": "关爱对象超期未走访",  # care-group persons past their visit policy
    "open_red_cases": "红牌案件",  # open cases with a red card (红牌)
    "labour_risk": "劳资纠纷风险",  # organisations' monthly risk score (grid.insights.labour)
}
LEVELS = ("yellow", "orange", "red")  # 三色预警: 黄 / 橙 / 红
LEVEL_LABELS = {"yellow": "黄色预警", "orange": "橙色预警", "red": "红色预警"}
WARNING_STATES = {"raised": "已预警", "acknowledged": "已签收", "resolved": "已解除",
                  "dismissed": "已排除"}
OPEN_WARNING_STATES = ("raised", "acknowledged")
_OPEN_WARNING = sa.text("state IN ('raised', 'acknowledged')")
RECORD_TYPES = ("case", "person", "organisation")


def _check_in(column: str, values: object) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Indicator(TimestampMixin, VersionedMixin, Base):
    """城市运行体征指标: a named measure of a kind over the areas of a level (or the
    departments) and a window, evaluated every `every_minutes`, with experts' fixed
    thresholds per level and statistical ones (z above the area's own baseline)."""

    __tablename__ = "indicators"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(48), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    # Whose indicator: the subtree it measures (a district's); None: everywhere (admin's).
    area_id: Mapped[int | None] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                                index=True)
    # The level of the areas measured (grid, community, street…); department kinds: None.
    area_level: Mapped[str | None] = mapped_column(sa.ForeignKey("area_levels.key"))
    window_hours: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    every_minutes: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    # Kind-specific: category codes, radius_m, min_count, tags, min_cases…
    params: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=sa.text("'{}'"))
    # {"yellow": 5, "orange": 10, "red": 20}: a level is reached at value >= its threshold
    thresholds: Mapped[dict] = mapped_column(JSONB, nullable=False,
                                             server_default=sa.text("'{}'"))
    # {"yellow": 2.0, "orange": 3.0, "red": 4.0}: z-scores above the area's own baseline
    statistical: Mapped[dict] = mapped_column(JSONB, nullable=False,
                                              server_default=sa.text("'{}'"))
    baseline_runs: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="8")
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())
    next_run_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.CheckConstraint(_check_in("kind", INDICATOR_KINDS), name="kind"),
        sa.CheckConstraint("window_hours > 0 AND every_minutes > 0", name="schedule"),
        sa.Index("ix_indicators_due", "next_run_at", postgresql_where=sa.text("active")),
    )


class IndicatorThreshold(Base):
    """An area's own thresholds for an indicator (the area and its subtree; the deepest
    area's row wins), replacing the indicator's where given."""

    __tablename__ = "indicator_thresholds"

    indicator_id: Mapped[int] = mapped_column(
        sa.ForeignKey("indicators.id", ondelete="CASCADE"), primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         primary_key=True)
    thresholds: Mapped[dict | None] = mapped_column(JSONB)
    statistical: Mapped[dict | None] = mapped_column(JSONB)
    updated_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                 server_default=sa.func.now())


class IndicatorRun(Base):
    """One evaluation of an indicator (the series' time axis: an area absent from a run's
    values measured 0)."""

    __tablename__ = "indicator_runs"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    indicator_id: Mapped[int] = mapped_column(
        sa.ForeignKey("indicators.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    measured: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    breaches: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    duration_ms: Mapped[float] = mapped_column(sa.Float, nullable=False)

    __table_args__ = (sa.Index("ix_indicator_runs_indicator_at", "indicator_id", "at"),)


class IndicatorValue(Base):
    """A non-zero value measured for an area (and department) at a run."""

    __tablename__ = "indicator_values"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("indicator_runs.id", ondelete="CASCADE"),
                                        nullable=False)
    indicator_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    area_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    department_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)

    __table_args__ = (
        sa.Index("ix_indicator_values_series", "indicator_id", "area_id", "at"),
        sa.Index("ix_indicator_values_run", "run_id"),
    )


class EarlyWarning(TimestampMixin, VersionedMixin, Base):
    """预警: an indicator's breach in an area (and department), with its level, value,
    threshold and the records behind it. At most one open warning per indicator, area and
    department (a partial unique index): a worsening raises its level."""

    __tablename__ = "warnings"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    indicator_id: Mapped[int] = mapped_column(
        sa.ForeignKey("indicators.id", ondelete="RESTRICT"), nullable=False)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False)
    department_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("departments.id", ondelete="RESTRICT"))
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    level: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)
    threshold: Mapped[float | None] = mapped_column(sa.Float)
    baseline: Mapped[float | None] = mapped_column(sa.Float)  # the mean, statistical ones
    basis: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # fixed | statistical
    record_type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    record_ids: Mapped[list[int]] = mapped_column(
        ARRAY(sa.BigInteger), nullable=False, server_default=sa.text("'{}'::bigint[]"))
    # People behind the figure (register persons, callers): under 5 it is suppressed for
    # roles without register access.
    people: Mapped[int | None] = mapped_column(sa.Integer)
    raised_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    level_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    seen_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    acknowledged_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    acknowledged_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    closed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    closed_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cases.id", ondelete="SET NULL"))

    indicator: Mapped[Indicator] = relationship(lazy="raise")
    area = relationship("Area", lazy="raise")

    __table_args__ = (
        sa.CheckConstraint(_check_in("state", WARNING_STATES), name="state"),
        sa.CheckConstraint(_check_in("level", LEVELS), name="level"),
        sa.CheckConstraint(_check_in("record_type", RECORD_TYPES), name="record_type"),
        sa.Index("uq_warnings_open", "indicator_id", "area_id",
                 sa.text("coalesce(department_id, 0)"), unique=True,
                 postgresql_where=_OPEN_WARNING),
        sa.Index("ix_warnings_area_state", "area_id", "state"),
        sa.Index("ix_warnings_raised_at", "raised_at"),
    )


class WarningEvent(Base):
    """One line of a warning's timeline (raised, escalated, acknowledged, resolved…)."""

    __tablename__ = "warning_events"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    warning_id: Mapped[int] = mapped_column(sa.ForeignKey("warnings.id", ondelete="CASCADE"),
                                            nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    actor_id: Mapped[int | None] = mapped_column(sa.BigInteger)  # None: the worker
    action: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str | None] = mapped_column(sa.String(16))
    level: Mapped[str | None] = mapped_column(sa.String(8))
    value: Mapped[float | None] = mapped_column(sa.Float)
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_warning_events_warning", "warning_id", "id"),)


class LeaderReport(Base):
    """A leaders' report (领导报表) of an area and period, its .xlsx in the blob store."""

    __tablename__ = "leader_reports"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # weekly | on_demand
    start: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    end: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    blob_key: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    size: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)  # None: the worker
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                 server_default=sa.func.now())

    __table_args__ = (
        sa.CheckConstraint("kind IN ('weekly', 'on_demand')", name="kind"),
        sa.Index("uq_leader_reports_weekly", "area_id", "start", unique=True,
                 postgresql_where=sa.text("kind = 'weekly'")),
    )

# --- end warnings ---
