"""Area hierarchy (levels as data), memberships, departments."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, TimestampMixin, VersionedMixin


class AreaLevel(Base):
    """A level of the hierarchy (城市/区县/街道/社区/网格/微网格) and its code length.

    Levels are rows, not tables: a place that adds micro-grids adds a row.
    """

    __tablename__ = "area_levels"

    key: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    rank: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, unique=True)
    code_digits: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)


class Area(TimestampMixin, VersionedMixin, Base):
    """One node of the hierarchy with its boundary.

    `path` is the materialized path of ids with a trailing dot ("1.5.23."), so a subtree is
    one indexed `path LIKE '1.5.%'`; moving an area rewrites its subtree's paths only.
    """

    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(24), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    level: Mapped[str] = mapped_column(sa.ForeignKey("area_levels.key"), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("areas.id", ondelete="RESTRICT"), index=True
    )
    path: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    boundary = mapped_column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True))
    area_m2: Mapped[float | None] = mapped_column(sa.Float)
    timezone: Mapped[str] = mapped_column(
        sa.String(64), nullable=False, server_default="Asia/Shanghai"
    )

    parent: Mapped[Area | None] = relationship(remote_side="Area.id", lazy="raise")

    __table_args__ = (
        sa.Index("ix_areas_path", "path", postgresql_ops={"path": "text_pattern_ops"}),
        sa.CheckConstraint("code ~ '^[0-9]+$'", name="code_digits"),
    )


class Membership(Base):
    """A user's role in an area (a worker in a grid, a dispatcher in a street…).

    An actor's scope is the union of the subtrees of these areas.
    """

    __tablename__ = "area_memberships"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    area_id: Mapped[int] = mapped_column(
        sa.ForeignKey("areas.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )

    area: Mapped[Area] = relationship(lazy="raise")

    __table_args__ = (sa.UniqueConstraint("user_id", "area_id", "role", name="uq_membership"),)


class Department(TimestampMixin, VersionedMixin, Base):
    """A functional department (城管, 市场监管, 住建, 应急, 派出所, 民政…) serving an area
    subtree; its handlers (处置人员) belong to it and act on cases dispatched to it."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    kind: Mapped[str | None] = mapped_column(sa.String(32))
    service_area_id: Mapped[int] = mapped_column(
        sa.ForeignKey("areas.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    phone: Mapped[str | None] = mapped_column(sa.String(32))  # the office line, not personal

    service_area: Mapped[Area] = relationship(lazy="raise")


class DepartmentMember(Base):
    __tablename__ = "department_members"

    department_id: Mapped[int] = mapped_column(
        sa.ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_head: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
