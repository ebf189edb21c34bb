"""Register tables. Every record lives in one grid (`area_id`), keeps its source, who
created and changed it, a version, where it was collected (GPS), and a `change_seq` that
`GET /sync/pull` pages by. Records are never deleted: they end (`ended_at`), and a record
that leaves a grid leaves a tombstone there.

Personal data (ID numbers, phones) is stored encrypted with a blind index for lookup and a
masked copy for lists, so that listing a grid never decrypts anything.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from server.db import XID8, Base, GpsTaggedMixin, TimestampMixin, VersionedMixin

CHANGE_SEQ = sa.Sequence("registry_change_seq", metadata=Base.metadata)

# Where a record came from (a data source code, not a role: "grid_worker" is stored).
COLLECTED = "grid_worker"
SOURCES = {COLLECTED: "网格员采集", "self_declared": "居民自主申报", "import": "台账导入",
           "other_system": "其他系统"}
BUILDING_USES = {"residential": "住宅", "commercial": "商业", "mixed": "商住混合",
                 "industrial": "工业", "public": "公共"}
HOUSE_USES = {"owner_occupied": "自住", "rented": "出租", "empty": "空置", "business": "经营"}
HOUSEHOLD_TYPES = {"registered": "户籍户", "non_registered": "流动户"}
POPULATION_TYPES = {"registered": "户籍人口", "floating": "流动人口", "foreign": "境外人员",
                    "unsettled": "未落户人员"}
REGISTRATION_SITUATIONS = {"both_here": "人户同在", "registered_absent": "户在人不在",
                           "present_unregistered": "人在户不在"}
PERSON_STATUSES = {"present": "在册", "moved_out": "迁出", "deceased": "死亡"}
RELATIONS = {"head": "户主", "spouse": "配偶", "child": "子女", "parent": "父母",
             "grandchild": "孙子女", "grandparent": "祖父母", "sibling": "兄弟姐妹",
             "tenant": "租户", "other": "其他"}
CARE_TAGS = {"elderly_alone": "独居老人", "empty_nest": "空巢老人", "disabled": "残疾人",
             "low_income": "低保/需救助", "veteran": "退役军人/优抚对象",
             "left_behind_child": "留守儿童", "unemployed": "失业人员"}
# 重点人员: sensitive personal information; visible only with person:read_key_tags.
KEY_TAGS = {"community_correction": "社区矫正", "released_prisoner": "刑释人员",
            "severe_mental_illness": "严重精神障碍", "drug_user": "吸毒人员",
            "key_petitioner": "重点上访", "at_risk_youth": "重点青少年"}
ORG_KINDS = {"enterprise": "企业", "individual_business": "个体工商户", "institution": "事业单位",
             "government": "机关", "social_org": "社会组织"}
ORG_RISK_FLAGS = {"fire_safety_key": "消防安全重点", "hazardous_chemicals": "危化品",
                  "nine_small_places": "九小场所"}


def _check_in(column: str, values: dict) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class RegisterRecord(TimestampMixin, VersionedMixin, GpsTaggedMixin):
    """What every register table has (see the module docstring)."""

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    updated_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    needs_review: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    review_reasons: Mapped[list[str] | None] = mapped_column(ARRAY(sa.Text))
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(sa.String(64))
    # Set by a trigger on every INSERT/UPDATE: the order of changes (change_seq) and the
    # transaction that made them (change_xid), which sync cursors compare with snapshots.
    change_seq: Mapped[int] = mapped_column(
        sa.BigInteger, CHANGE_SEQ, server_default=CHANGE_SEQ.next_value(), nullable=False
    )
    change_xid = mapped_column(XID8, server_default=sa.text("pg_current_xact_id()"),
                               nullable=False)

    @declared_attr
    def area_id(cls) -> Mapped[int]:
        return mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"), nullable=False)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        name = cls.__tablename__
        return (
            sa.Index(f"ix_{name}_area_seq", "area_id", "change_seq"),
            sa.Index(f"ix_{name}_area_xid", "area_id", "change_xid"),
            # The worker's review list: a handful of rows per grid among thousands.
            sa.Index(f"ix_{name}_needs_review", "area_id",
                     postgresql_where=sa.text("needs_review AND ended_at IS NULL")),
            sa.CheckConstraint(_check_in("source", SOURCES), name="source"),
            *getattr(cls, "__extra_args__", ()),
        )


class Building(RegisterRecord, Base):
    """楼栋: a building in a grid, with its entrance point (GPS) and optional footprint."""

    __tablename__ = "buildings"

    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    address: Mapped[str | None] = mapped_column(sa.String(200))
    use: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="residential")
    floors: Mapped[int | None] = mapped_column(sa.SmallInteger)
    units: Mapped[int | None] = mapped_column(sa.SmallInteger)
    footprint = mapped_column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True))
    is_crowded_rental: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    is_unsafe: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    is_live_work_store: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    leader_name: Mapped[str | None] = mapped_column(sa.String(50))  # 楼栋长
    leader_phone_enc: Mapped[str | None] = mapped_column(sa.Text)
    leader_phone_masked: Mapped[str | None] = mapped_column(sa.String(20))

    __extra_args__ = (
        sa.CheckConstraint(_check_in("use", BUILDING_USES), name="use"),
        sa.CheckConstraint("floors IS NULL OR floors BETWEEN 1 AND 200", name="floors"),
    )


class House(RegisterRecord, Base):
    """房屋: a room/flat in a building (unit, floor, number), its use and owner."""

    __tablename__ = "houses"

    building_id: Mapped[int] = mapped_column(sa.ForeignKey("buildings.id"), nullable=False,
                                             index=True)
    unit: Mapped[str | None] = mapped_column(sa.String(16))
    floor: Mapped[int | None] = mapped_column(sa.SmallInteger)
    room: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    use: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="owner_occupied")
    floor_area_m2: Mapped[float | None] = mapped_column(sa.Float)
    owner_name: Mapped[str | None] = mapped_column(sa.String(50))
    owner_phone_enc: Mapped[str | None] = mapped_column(sa.Text)
    owner_phone_masked: Mapped[str | None] = mapped_column(sa.String(20))
    rental_start: Mapped[date | None] = mapped_column(sa.Date)
    rental_end: Mapped[date | None] = mapped_column(sa.Date)

    __extra_args__ = (
        sa.CheckConstraint(_check_in("use", HOUSE_USES), name="use"),
        sa.Index("uq_houses_room", "building_id", sa.text("coalesce(unit, '')"), "room",
                 unique=True, postgresql_where=sa.text("ended_at IS NULL")),
        # a grid's current houses, counted by the grid profile from the index alone
        sa.Index("ix_houses_area_live", "area_id", postgresql_where=sa.text("ended_at IS NULL")),
    )


class Household(RegisterRecord, Base):
    """户: a household living in a house; its members are persons."""

    __tablename__ = "households"

    house_id: Mapped[int | None] = mapped_column(sa.ForeignKey("houses.id"), index=True)
    household_no: Mapped[str | None] = mapped_column(sa.String(32))  # 户号
    head_person_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="registered")

    __extra_args__ = (
        sa.CheckConstraint(_check_in("type", HOUSEHOLD_TYPES), name="type"),
        # a grid's current households, counted by the grid profile and card from the index
        sa.Index("ix_households_area_live", "area_id",
                 postgresql_where=sa.text("ended_at IS NULL")),
    )


class Person(RegisterRecord, Base):
    """实有人口. The ID number is encrypted; sex and birth date are derived from it."""

    __tablename__ = "persons"

    name: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    id_number_enc: Mapped[str | None] = mapped_column(sa.Text)
    id_number_bidx: Mapped[str | None] = mapped_column(sa.String(64))
    id_number_masked: Mapped[str | None] = mapped_column(sa.String(24))
    sex: Mapped[str | None] = mapped_column(sa.String(1))  # M / F
    birth_date: Mapped[date | None] = mapped_column(sa.Date)
    phone_enc: Mapped[str | None] = mapped_column(sa.Text)
    phone_bidx: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    phone_masked: Mapped[str | None] = mapped_column(sa.String(20))
    ethnicity: Mapped[str | None] = mapped_column(sa.String(16))
    household_id: Mapped[int | None] = mapped_column(sa.ForeignKey("households.id"), index=True)
    relation_to_head: Mapped[str | None] = mapped_column(sa.String(16))
    population_type: Mapped[str] = mapped_column(sa.String(16), nullable=False,
                                                 default="registered")
    registration_situation: Mapped[str] = mapped_column(sa.String(24), nullable=False,
                                                        default="both_here")
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="present")

    __extra_args__ = (
        # One register entry per ID number: the same person twice is a 409 pointing at it.
        sa.Index("uq_persons_id_number", "id_number_bidx", unique=True,
                 postgresql_where=sa.text("id_number_bidx IS NOT NULL")),
        sa.CheckConstraint(_check_in("population_type", POPULATION_TYPES),
                           name="population_type"),
        sa.CheckConstraint(_check_in("registration_situation", REGISTRATION_SITUATIONS),
                           name="registration_situation"),
        sa.CheckConstraint(_check_in("status", PERSON_STATUSES), name="status"),
        sa.CheckConstraint("sex IS NULL OR sex IN ('M', 'F')", name="sex"),
        # a grid's current persons with what the grid profile groups them by: its ~16,000
        # persons at 1M are read from the index alone, not from ~5,000 scattered heap pages
        sa.Index("ix_persons_area_live", "area_id",
                 postgresql_include=["status", "population_type", "sex", "birth_date"],
                 postgresql_where=sa.text("ended_at IS NULL")),
    )


class PersonTag(Base):
    """A care group (关爱对象) or key-person group (重点人员) with the period it applies."""

    __tablename__ = "person_tags"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("persons.id", ondelete="CASCADE"),
                                           nullable=False, index=True)
    kind: Mapped[str] = mapped_column(sa.String(8), nullable=False)  # care | key
    tag: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    start_date: Mapped[date] = mapped_column(sa.Date, nullable=False)
    end_date: Mapped[date | None] = mapped_column(sa.Date)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)

    __table_args__ = (
        sa.CheckConstraint("kind IN ('care', 'key')", name="kind"),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="period"),
        sa.Index("ix_person_tags_tag", "tag", postgresql_where=sa.text("end_date IS NULL")),
    )


class HouseholdStay(Base):
    """A person's membership of a household over time: moving keeps the history."""

    __tablename__ = "household_stays"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("persons.id", ondelete="CASCADE"),
                                           nullable=False, index=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("households.id"), nullable=False,
                                              index=True)
    relation_to_head: Mapped[str | None] = mapped_column(sa.String(16))
    since: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                            server_default=sa.func.now())
    until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Organisation(RegisterRecord, Base):
    """实有单位: an enterprise, shop or social organisation, located at its main gate."""

    __tablename__ = "organisations"

    uscc: Mapped[str | None] = mapped_column(sa.String(18))  # 统一社会信用代码 (public)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(24), nullable=False, default="enterprise")
    industry: Mapped[str | None] = mapped_column(sa.String(64))
    legal_representative: Mapped[str | None] = mapped_column(sa.String(50))
    employees: Mapped[int | None] = mapped_column(sa.Integer)
    building_id: Mapped[int | None] = mapped_column(sa.ForeignKey("buildings.id"), index=True)
    address: Mapped[str | None] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(32))  # the organisation's, not a person's
    risk_flags: Mapped[list[str]] = mapped_column(ARRAY(sa.String(32)), nullable=False,
                                                  default=list)

    __extra_args__ = (
        sa.Index("uq_organisations_uscc", "uscc", unique=True,
                 postgresql_where=sa.text("uscc IS NOT NULL")),
        sa.CheckConstraint(_check_in("kind", ORG_KINDS), name="kind"),
        sa.CheckConstraint("employees IS NULL OR employees >= 0", name="employees"),
    )


class OrganisationIndicator(Base):
    """Monthly indicators that feed early warning of labour disputes (和谐劳动关系)."""

    __tablename__ = "organisation_indicators"

    organisation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)  # first day of the month
    employees: Mapped[int | None] = mapped_column(sa.Integer)
    water_m3: Mapped[float | None] = mapped_column(sa.Float)
    electricity_kwh: Mapped[float | None] = mapped_column(sa.Float)
    wage_arrears_yuan: Mapped[float | None] = mapped_column(sa.Numeric(14, 2))
    # 社保欠缴 and 欠租: unpaid social insurance and rent, yuan (劳资纠纷预警's early signs)
    social_insurance_arrears_yuan: Mapped[float | None] = mapped_column(sa.Numeric(14, 2))
    rent_arrears_yuan: Mapped[float | None] = mapped_column(sa.Numeric(14, 2))
    recorded_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)

    __table_args__ = (sa.CheckConstraint("extract(day from month) = 1", name="month_start"),)


class Tombstone(Base):
    """A record that left a grid (ended, or moved to another grid): phones holding that
    grid learn from `GET /sync/pull` to drop it."""

    __tablename__ = "registry_tombstones"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    change_seq: Mapped[int] = mapped_column(
        sa.BigInteger, CHANGE_SEQ, server_default=CHANGE_SEQ.next_value(), nullable=False)
    change_xid = mapped_column(XID8, server_default=sa.text("pg_current_xact_id()"),
                               nullable=False)
    object_type: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    object_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    area_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now(),
                                         nullable=False)

    __table_args__ = (sa.Index("ix_registry_tombstones_area_seq", "area_id", "change_seq"),
                      sa.Index("ix_registry_tombstones_area_xid", "area_id", "change_xid"))


class BuildingOccupancy(Base):
    """Households living in a building and persons present there (楼栋入住), what maps
    show per building without counting a building's people at every read.

    Kept by triggers on `persons`, `households` and `houses` (migration 0010) in the same
    transaction as the change, whatever wrote it (API, sync push, ledger COPY): each
    change appends rows with the difference it makes per building. Appending never waits
    on another transaction; the worker's `building_occupancy_compact` task folds each
    building's rows into one. Readers add up all rows of a building.
    """

    __tablename__ = "building_occupancy"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    building_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, index=True)
    households: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    persons: Mapped[int] = mapped_column(sa.Integer, nullable=False)
