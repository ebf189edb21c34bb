"""Visit tables: visits (走访) and visit policies (走访频次) per group and area.

A visit is to exactly one target (a household, a person or an organisation), belongs to
the target's grid (`area_id`), and is recorded where it happened (GPS, GpsTaggedMixin).
Visits are immutable once recorded; only the follow-up's result is added later.

A policy says how often the people of a group (a person tag: elderly_alone,
community_correction…) are to be visited in an area's subtree. The most specific area's
row wins (a community's over its district's); with no row, DEFAULT_POLICIES applies.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from grid.registry.models import KEY_TAGS
from server.db import Base, GpsTaggedMixin, TimestampMixin, VersionedMixin

VISIT_TYPES = {"inspection": "巡查", "rectification": "整改", "care": "关爱"}
MAX_PHOTOS = 20
MAX_INTERVAL_DAYS = 366

# How often each group is visited when no area has a policy for it (days). Groups missing
# here (veteran, unemployed) are visited on no schedule unless an area sets one.
DEFAULT_POLICIES: dict[str, int] = {
    "elderly_alone": 7,  # 独居老人: weekly
    "empty_nest": 14,  # 空巢老人
    "disabled": 30,  # 残疾人
    "low_income": 30,  # 低保/需救助
    "left_behind_child": 30,  # 留守儿童
    **{tag: 30 for tag in KEY_TAGS},  # 重点人员: monthly
}


def _check_in(column: str, values: dict) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Visit(TimestampMixin, VersionedMixin, GpsTaggedMixin, Base):
    """走访: a worker's visit to one household, person or organisation."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    # The target's grid when the visit was recorded (scope of the visit).
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False)
    household_id: Mapped[int | None] = mapped_column(sa.ForeignKey("households.id"))
    person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("persons.id"))
    organisation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organisations.id"))
    worker_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"),
                                           nullable=False, index=True)
    visited_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    content: Mapped[str] = mapped_column(sa.Text, nullable=False)
    follow_up: Mapped[str | None] = mapped_column(sa.Text)
    follow_up_due: Mapped[date | None] = mapped_column(sa.Date)
    follow_up_done_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    follow_up_done_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    follow_up_result: Mapped[str | None] = mapped_column(sa.Text)
    # Attachment ids (the attachments table comes with its own change; no FK yet).
    photo_ids: Mapped[list[int]] = mapped_column(
        ARRAY(sa.BigInteger), nullable=False, server_default=sa.text("'{}'::bigint[]"))
    # Recorded by someone who may see key-person groups, about key-person work: listed only
    # to actors with person:read_key_tags.
    confidential: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                               server_default=sa.false())

    __table_args__ = (
        sa.CheckConstraint("num_nonnulls(household_id, person_id, organisation_id) = 1",
                           name="one_target"),
        sa.CheckConstraint(_check_in("type", VISIT_TYPES), name="type"),
        sa.CheckConstraint("follow_up_due IS NULL OR follow_up IS NOT NULL",
                           name="follow_up_due"),
        sa.CheckConstraint("follow_up_done_at IS NULL OR follow_up IS NOT NULL",
                           name="follow_up_done"),
        sa.CheckConstraint(f"cardinality(photo_ids) <= {MAX_PHOTOS}", name="photo_count"),
        # The due list asks "latest visit of this person / household" per row: backward
        # scans of these indexes.
        sa.Index("ix_visits_person_at", "person_id", "visited_at",
                 postgresql_where=sa.text("person_id IS NOT NULL")),
        sa.Index("ix_visits_household_at", "household_id", "visited_at",
                 postgresql_where=sa.text("household_id IS NOT NULL")),
        sa.Index("ix_visits_organisation_at", "organisation_id", "visited_at",
                 postgresql_where=sa.text("organisation_id IS NOT NULL")),
        sa.Index("ix_visits_area_at", "area_id", "visited_at"),
        # the grid profile's coverage starts from the period's visits (of any grid: a
        # household counts the visits of its members wherever they were recorded)
        sa.Index("ix_visits_at", "visited_at"),
    )


class VisitPolicy(TimestampMixin, VersionedMixin, Base):
    """走访频次: visit the people of `tag` in `area_id`'s subtree every `interval_days`."""

    __tablename__ = "visit_policies"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         nullable=False)
    tag: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    interval_days: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    updated_by: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.UniqueConstraint("area_id", "tag", name="uq_visit_policies_area_tag"),
        sa.CheckConstraint(f"interval_days BETWEEN 1 AND {MAX_INTERVAL_DAYS}",
                           name="interval_days"),
    )
