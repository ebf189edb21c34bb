"""Categories, cases, their timeline, followers and approval requests.

A case carries the clock of the stage it is in: when the stage started, when its light
turns yellow (80 % of the limit), when it is due (100 %: yellow card 黄牌) and when it
earns a red card (红牌). The times are computed on the district's working calendar when
the stage starts, so that the light and the sweep are plain comparisons in SQL. Time on
hold (缓办/挂账) shifts them when the case resumes; an approved extension (延期) moves them.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.clock import now
from server.db import Base, GpsTaggedMixin, TimestampMixin, VersionedMixin

CHANNELS = {"worker_app": "网格员上报", "resident_app": "居民上报", "console": "坐席录入",
            "hotline": "12345热线", "wechat": "微信", "visit": "走访录入",
            "other_system": "其他系统", "open311": "Open311应用"}
STATES = {"reported": "待受理", "accepted": "已立案", "rejected": "不予立案", "merged": "已合并",
          "dispatched": "已派遣", "returned": "已退回", "in_progress": "处置中",
          "handled": "已处置", "verified": "已核查", "closed": "已结案", "evaluated": "已评价",
          "on_hold": "缓办/挂账", "voided": "已作废"}
OPEN_STATES = ("reported", "accepted", "dispatched", "returned", "in_progress", "handled",
               "verified", "on_hold")
# The open-state predicate of the partial indexes: the same list as OPEN_STATES, so that a
# query filtering on Case.state.in_(OPEN_STATES) can use them.
_OPEN = sa.text("state IN (" + ", ".join(f"'{s}'" for s in OPEN_STATES) + ")")
# The stage whose limit runs while a case is in a state (no clock in the others).
STAGE_OF_STATE = {"reported": "accept", "accepted": "dispatch", "returned": "dispatch",
                  "dispatched": "sign", "in_progress": "handle", "handled": "verify",
                  "verified": "close"}
STAGES = {"accept": "受理立案", "dispatch": "派遣", "sign": "签收", "handle": "处置",
          "verify": "核查", "close": "结案"}
REQUEST_KINDS = {"extension": "延期", "defer": "缓办", "backlog": "挂账", "void": "作废"}
ESCALATIONS = {0: "正常", 1: "黄牌", 2: "红牌"}
# Categories whose cases are never shown to the public or to other residents (disputes
# 矛盾纠纷 and mass incidents 群发性事件): codes of a 大类 (all its 小类) or of a 小类.
PRIVATE_CATEGORIES = ("06", "0406")
# Channels whose cases are public (公开) unless the reporter says otherwise: texts written
# for publication (Open311 apps) or by grid workers. Hotline tickets and cases staff enter
# carry callers' own words: never public. A resident's report is public only by choice.
PUBLISHED_CHANNELS = ("open311", "worker_app")
# Channels whose reporter chooses (`public`): the reporter's own words.
CHOOSE_PUBLIC_CHANNELS = ("resident_app", "worker_app")


class CaseCategory(TimestampMixin, VersionedMixin, Base):
    """大类 (parent_id null) / 小类: time limits per stage, the default department,
    whether a result photo is required, the duplicate radius, and extra questions."""

    __tablename__ = "case_categories"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), nullable=False, unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("case_categories.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    name_en: Mapped[str | None] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    default_department_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("departments.id", ondelete="SET NULL"))
    priority: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="3")
    # {"handle": {"amount": 1, "unit": "working_days"}, "verify": {...}, ...}
    time_limits: Mapped[dict] = mapped_column(JSONB, nullable=False,
                                              server_default=sa.text("'{}'"))
    result_photo_required: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                                        server_default=sa.false())
    duplicate_radius_m: Mapped[float] = mapped_column(sa.Float, nullable=False,
                                                      server_default="50")
    duplicate_days: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False,
                                                server_default="3")
    # Typed questions (Open311 service definition attributes):
    # [{"code", "datatype", "required", "description", "order", "values": [{"key","name"}]}]
    attributes: Mapped[list] = mapped_column(JSONB, nullable=False,
                                             server_default=sa.text("'[]'"))
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())


class CategoryRoute(Base):
    """A street's own department for a category (overrides the category's default)."""

    __tablename__ = "case_category_routes"

    category_id: Mapped[int] = mapped_column(
        sa.ForeignKey("case_categories.id", ondelete="CASCADE"), primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         primary_key=True)
    department_id: Mapped[int] = mapped_column(
        sa.ForeignKey("departments.id", ondelete="CASCADE"), nullable=False)


class Case(TimestampMixin, VersionedMixin, GpsTaggedMixin, Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), nullable=False, unique=True)
    category_id: Mapped[int] = mapped_column(
        sa.ForeignKey("case_categories.id", ondelete="RESTRICT"), nullable=False)
    channel: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False)
    address: Mapped[str | None] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, nullable=False)
    attributes: Mapped[dict] = mapped_column(JSONB, nullable=False,
                                             server_default=sa.text("'{}'"))
    priority: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="3")
    reporter_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # A resident may stay anonymous to handlers (dispatchers still see who reported).
    reporter_anonymous: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                                     server_default=sa.false())
    # Contact given on the hotline or by another system (personal data: encrypted).
    contact_name: Mapped[str | None] = mapped_column(sa.String(64))
    contact_phone_enc: Mapped[str | None] = mapped_column(sa.Text)
    contact_phone_masked: Mapped[str | None] = mapped_column(sa.String(32))
    external_ref: Mapped[str | None] = mapped_column(sa.String(64))  # 12345 工单号…
    department_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("departments.id", ondelete="RESTRICT"))
    assignee_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    merged_into_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("cases.id", ondelete="RESTRICT"))
    self_handled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                               server_default=sa.false())
    joined_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    result: Mapped[str | None] = mapped_column(sa.Text)
    # 公开: listed by Open311 and other public lists (scope.published()).
    public: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())
    # The app's clock, like reported_at and the milestones: the database's now() is the
    # start of the transaction, earlier than a report made in it (the demo seed reports and
    # acts in one transaction), which put updated_at before reported_at.
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), default=now, onupdate=now,
        nullable=False)

    # The clock of the current stage (see module docstring).
    stage: Mapped[str | None] = mapped_column(sa.String(16))
    stage_unit: Mapped[str | None] = mapped_column(sa.String(16))
    stage_started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    warn_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    red_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    held_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    hold_kind: Mapped[str | None] = mapped_column(sa.String(16))
    held_from_state: Mapped[str | None] = mapped_column(sa.String(16))
    held_working_s: Mapped[float] = mapped_column(sa.Float, nullable=False, server_default="0")
    escalation: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="0")
    overdue: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())

    # Milestones, kept for the statistics (综合评价), computed in SQL over these columns.
    reported_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                  server_default=sa.func.now())
    accepted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    handled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    handled_in_time: Mapped[bool | None] = mapped_column(sa.Boolean)
    handling_working_s: Mapped[float | None] = mapped_column(sa.Float)  # dispatch → handled
    closed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    closed_in_time: Mapped[bool | None] = mapped_column(sa.Boolean)
    close_due_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    return_count: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False,
                                              server_default="0")
    rework_count: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False,
                                              server_default="0")
    rating: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")",
                           name="state"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        sa.Index("ix_cases_area_state", "area_id", "state"),
        sa.Index("ix_cases_department_state", "department_id", "state"),
        sa.Index("ix_cases_category_reported", "category_id", "reported_at"),
        sa.Index("ix_cases_reported_at", "reported_at"),
        # Open cases by due time: the queue's first page (?open=true&sort=due_at) and the
        # sweep read a few index entries instead of the whole history.
        sa.Index("ix_cases_open_queue", sa.text("due_at ASC NULLS LAST"), sa.text("id DESC"),
                 postgresql_where=_OPEN),
        # Open cases by place: a tile's cases among a million closed ones (the full GiST
        # index handed the z14 tile ~90,000 cases to AND with the open ones)
        sa.Index("ix_cases_open_location", "location", postgresql_using="gist",
                 postgresql_where=_OPEN),
        sa.Index("uq_cases_channel_external_ref", "channel", "external_ref", unique=True,
                 postgresql_where=sa.text("external_ref IS NOT NULL")),
    )


    @property
    def point(self) -> tuple[float, float] | None:
        """(lon, lat) in WGS-84, for responses."""
        if self.location is None:
            return None
        from geoalchemy2.shape import to_shape

        shape = to_shape(self.location)
        return shape.x, shape.y

    @property
    def light(self) -> str | None:
        return light_of(self)


def light_of(case: Case, at: datetime | None = None) -> str | None:
    """绿灯/黄灯/红灯 of the current stage (frozen while on hold)."""
    if case.due_at is None:
        return None
    at = case.held_at or at or now()
    if at <= case.warn_at:
        return "green"
    return "yellow" if at <= case.due_at else "red"


def light_sql() -> sa.ColumnElement[str]:
    """light_of in SQL (the same thresholds), for filters, maps and tiles."""
    at = sa.func.coalesce(Case.held_at, sa.func.now())
    return sa.case((Case.due_at.is_(None), None), (at <= Case.warn_at, "green"),
                   (at <= Case.due_at, "yellow"), else_="red")


class CaseEvent(Base):
    """One immutable line of a case's timeline (流转记录)."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="CASCADE"),
                                         nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                         server_default=sa.func.now())
    actor_id: Mapped[int | None] = mapped_column(sa.BigInteger)  # None: the system (sweep)
    action: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str | None] = mapped_column(sa.String(16))
    note: Mapped[str | None] = mapped_column(sa.Text)
    data: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=sa.text("'{}'"))
    photo_ids: Mapped[list[int]] = mapped_column(
        ARRAY(sa.BigInteger), nullable=False, server_default=sa.text("'{}'::bigint[]"))

    __table_args__ = (sa.Index("ix_case_events_case_id", "case_id", "id"),)


class CaseFollower(Base):
    """Who hears about a case: its reporter(s), residents who joined it ("me too"), and
    those who asked to follow."""

    __tablename__ = "case_followers"

    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="CASCADE"),
                                         primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # reporter|joined|follower
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                 server_default=sa.func.now())


class CaseRequest(Base):
    """A request that needs a dispatcher's approval: 延期 extension, 缓办 defer, 挂账 backlog,
    作废 void. At most one pending request per case."""

    __tablename__ = "case_requests"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="CASCADE"),
                                         nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    reason: Mapped[str] = mapped_column(sa.Text, nullable=False)
    extension_hours: Mapped[float | None] = mapped_column(sa.Float)  # working hours
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False,
                                       server_default="pending")
    requested_by: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    requested_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                   server_default=sa.func.now())
    decided_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("kind IN ('extension', 'defer', 'backlog', 'void')", name="kind"),
        sa.CheckConstraint("state IN ('pending', 'approved', 'refused')", name="state"),
        sa.Index("uq_case_requests_pending", "case_id", unique=True,
                 postgresql_where=sa.text("state = 'pending'")),
    )


# The figures of a case that the evaluation (综合评价) adds up, in the order of the columns of
# CaseStatsDaily and of migration 0009's trigger.
STAT_COUNTS = ("reported", "accepted", "dispatched", "correctly_dispatched", "handled",
               "handled_in_time", "closed", "closed_in_time", "self_handled", "reworks",
               "reworked", "rated", "satisfied", "handling_n", "evaluable")
# Channels whose reporter is a resident, who evaluates the case (评价); a case without one
# (a worker's, the console's, a hotline ticket) is evaluated by the residents who joined it,
# or closes without a rating, counted neither for nor against 满意率.
RESIDENT_CHANNELS = ("resident_app",)


class CaseStatsDaily(Base):
    """The evaluation's figures added up per day reported (UTC) × grid × department, so that
    a year is read from ~10⁵ rows instead of scanning 10⁶ cases.

    Kept by triggers on `cases` (migration 0009) in the same transaction as the
    change: every insert, update of a counted column or delete appends rows with the
    difference (−old, +new) under the case's *report* day, the day every figure of a case is
    attributed to. Appending never waits on another transaction (no row is updated); the
    worker's `case_stats_compact` task folds each key's rows into one. Readers add up all
    rows of a key, so they are right before and after folding.
    """

    __tablename__ = "case_stats_daily"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, nullable=False, index=True)
    area_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    department_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    reported: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    accepted: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    dispatched: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    correctly_dispatched: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    handled: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    handled_in_time: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    closed: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    closed_in_time: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    self_handled: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    reworks: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    reworked: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    rated: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    satisfied: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    handling_n: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    # closed cases someone may evaluate: a resident reporter, or residents who joined
    evaluable: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    handling_s: Mapped[float] = mapped_column(sa.Float, nullable=False)


# --- consoleapi: bulk actions' answers and the trends' roll-up ------------------------------


class CaseBulkRun(Base):
    """One bulk action's answer (批量操作), kept so that the same request sent again (its
    client UUID, server/idempotency.py) answers the same per-case results without acting
    twice."""

    __tablename__ = "case_bulk_runs"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    actor_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    action: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    answer: Mapped[dict] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


TREND_COUNTS = ("reported", "accepted", "closed", "overdue", "escalated")


class CaseTrendsDaily(Base):
    """Events per UTC day × grid × department × 小类, for the trends (趋势): cases reported,
    accepted (立案) and closed (结案) on that day, yellow cards (超期) and red cards (红牌)
    given that day. Kept by triggers on `cases` (migration 0016_consoleapi) like
    CaseStatsDaily: every change appends its difference (a reopened case's closure is taken
    back; a card never is); the worker's `case_trends_compact` folds each key's rows."""

    __tablename__ = "case_trends_daily"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, nullable=False, index=True)
    area_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    department_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    category_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    reported: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    accepted: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    closed: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    overdue: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    escalated: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class CaseTrendsMonthly(Base):
    """CaseTrendsDaily added up per month (the 1st of the month), so that a year's breakdowns
    read ~10⁴ rows instead of ~10⁵: kept by triggers on case_trends_daily (its appended and
    deleted rows, migration 0016_consoleapi), folded by the same worker task."""

    __tablename__ = "case_trends_monthly"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, nullable=False, index=True)
    area_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    department_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    category_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    reported: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    accepted: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    closed: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    overdue: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    escalated: Mapped[int] = mapped_column(sa.Integer, nullable=False)
