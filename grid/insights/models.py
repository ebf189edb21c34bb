"""Tables of the insights context (研判与预警)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base

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
