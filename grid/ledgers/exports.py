"""Exporting a ledger (台账导出).

The records of an area's subtree within the actor's scope as an .xlsx with the headers
imports accept, personal data as masked as in API responses (the stored masked copies: no
decryption), key-person groups only for roles that may see them; every cell written through
server.xlsx (text stays text: no formula from a name like "=HYPERLINK(…)"). Rows are read with a
server-side cursor and written by openpyxl in write-only mode to a temporary file: memory
stays bounded whatever the size of the area. Audited (who, which area, how many rows).
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

import sqlalchemy as sa
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.ledgers import columns as c
from grid.registry import models as m
from server import audit, pii
from server.auth.actor import Actor
from server.clock import local_today
from server.errors import Invalid, field_errors


def _labels(values: dict[str, str]) -> Any:
    return lambda v: values.get(v, v) if v is not None else None


def _tag_labels(v: str | None) -> str | None:
    """"elderly_alone,disabled" → "独居老人、残疾人" (in the catalogue's order)."""
    if not v:
        return None
    tags = set(v.split(","))
    return "、".join(label for catalogue in (m.CARE_TAGS, m.KEY_TAGS)
                    for key, label in catalogue.items() if key in tags)


def _yes(v: bool | None) -> str | None:
    return None if v is None else ("是" if v else "否")


def _persons_query(base: list, key_tags: bool, birth_dates: bool, year: int
                   ) -> tuple[sa.Select, list[tuple[str, Any]]]:
    """The persons' statement and columns (see _export_query)."""
    P, T = m.Person, m.PersonTag
    tags = {}
    for tag_kind in ("care", "key") if key_tags else ("care",):
        tags[tag_kind] = (sa.select(sa.func.string_agg(T.tag, ","))
                          .where(T.person_id == P.id, T.kind == tag_kind,
                                 T.end_date.is_(None))
                          .scalar_subquery().label(f"{tag_kind}_tags"))
    stmt = (sa.select(P.id, P.name, P.id_number_masked, P.sex, P.birth_date, P.phone_masked,
                      P.ethnicity, m.Household.household_no, m.Household.type,
                      P.relation_to_head, P.population_type, P.registration_situation,
                      P.status, *tags.values(), *base, P.source)
            .outerjoin(m.Household, m.Household.id == P.household_id))
    born = (("出生日期", None) if birth_dates
            else ("年龄段", lambda d: pii.age_band(d, year)))
    cols = [("姓名", None), ("身份证号", None), ("性别", _labels({"M": "男", "F": "女"})),
            born, ("联系电话", None), ("民族", None), ("户号", None),
            ("户类型", _labels(m.HOUSEHOLD_TYPES)), ("与户主关系", _labels(m.RELATIONS)),
            ("人口类型", _labels(m.POPULATION_TYPES)),
            ("户籍情况", _labels(m.REGISTRATION_SITUATIONS)),
            ("状态", _labels(m.PERSON_STATUSES)), ("关爱对象", _tag_labels)]
    if key_tags:
        cols.append(("重点人员", _tag_labels))
    return stmt, cols


def _export_query(kind: str, key_tags: bool, birth_dates: bool = True, year: int = 0
                  ) -> tuple[sa.Select, list[tuple[str, Any]]]:
    """The statement and its (header, formatter) columns, for a kind. Without
    `birth_dates` (person:read_pii) persons have 年龄段 (server.pii.age_band of `year`)
    where 出生日期 was: next to the masked ID number a birth date gives the number away."""
    model = {"persons": m.Person, "households": m.Household, "buildings": m.Building,
             "organisations": m.Organisation}[kind]
    grid = sa.orm.aliased(Area)
    base = [grid.code.label("area_code"), grid.name.label("area_name")]
    if kind == "persons":
        stmt, cols = _persons_query(base, key_tags, birth_dates, year)
    elif kind == "households":
        H, P = m.Household, m.Person
        members = (sa.select(sa.func.count()).where(P.household_id == H.id, P.ended_at.is_(None))
                   .scalar_subquery())
        head = sa.select(P.name).where(P.id == H.head_person_id).scalar_subquery()
        stmt = sa.select(H.id, H.household_no, H.type, head.label("head"),
                         members.label("members"), *base, H.source)
        cols = [("户号", None), ("户类型", _labels(m.HOUSEHOLD_TYPES)), ("户主姓名", None),
                ("现有人数", None)]
    elif kind == "buildings":
        B = m.Building
        stmt = sa.select(B.id, B.name, B.address, B.use, B.floors, B.units, B.is_crowded_rental,
                         B.is_unsafe, B.is_live_work_store, B.leader_name, B.leader_phone_masked,
                         sa.func.ST_X(B.location), sa.func.ST_Y(B.location), *base, B.source)
        cols = [("楼栋名称", None), ("地址", None), ("用途", _labels(m.BUILDING_USES)),
                ("层数", None), ("单元数", None), ("群租房", _yes), ("危房", _yes),
                ("三合一场所", _yes), ("楼栋长", None), ("楼栋长电话", None), ("经度", None),
                ("纬度", None)]
    else:
        O = m.Organisation  # noqa: E741 - the model's initial, as the others
        stmt = sa.select(O.id, O.uscc, O.name, O.kind, O.industry, O.legal_representative,
                         O.employees, O.address, O.phone,
                         sa.func.array_to_string(O.risk_flags, ","),
                         sa.func.ST_X(O.location), sa.func.ST_Y(O.location), *base, O.source)
        flags = lambda v: "、".join(m.ORG_RISK_FLAGS.get(f, f) for f in v.split(",")) if v else None  # noqa: E731
        cols = [("统一社会信用代码", None), ("单位名称", None), ("单位类型", _labels(m.ORG_KINDS)),
                ("行业", None), ("法定代表人", None), ("从业人数", None), ("地址", None),
                ("联系电话", None), ("风险标识", flags), ("经度", None), ("纬度", None)]
    cols += [("网格编码", None), ("网格名称", None), ("来源", _labels(m.SOURCES))]
    stmt = stmt.join(grid, grid.id == model.area_id).order_by(grid.code, model.id)
    return stmt, cols


def export_ledger(s: Session, actor: Actor, kind: str, area_id: int | None,
                  include_ended: bool = False) -> tuple[IO[bytes], str, int]:
    """(the .xlsx as an open temporary file at 0, a file name, the number of rows)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from server import xlsx

    actor.require("registry:export")
    if kind not in c.KINDS:
        raise Invalid(field_errors("kind", f"One of {', '.join(c.KINDS)}.", location="query"))
    model = {"persons": m.Person, "households": m.Household, "buildings": m.Building,
             "organisations": m.Organisation}[kind]
    key_tags = actor.can("person:read_key_tags")
    stmt, cols = _export_query(kind, key_tags, actor.can("person:read_pii"), local_today().year)
    stmt = stmt.where(areas.in_scope(model.area_id, actor))
    root = None
    if area_id is not None:
        root = areas.get_area(s, actor, area_id)
        stmt = stmt.where(model.area_id.in_(
            sa.select(Area.id).where(Area.path.startswith(root.path, autoescape=True))))
    if not include_ended:
        stmt = stmt.where(model.ended_at.is_(None))

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(_SHEETS[kind])
    sheet.freeze_panes = "A2"
    for i, (title, _) in enumerate(cols, 1):
        sheet.column_dimensions[get_column_letter(i)].width = max(10, 2.2 * len(title) + 2)
    bold = Font(bold=True)
    sheet.append([xlsx.safe_cell(sheet, title, font=bold) for title, _ in cols])
    count = 0
    # A server-side cursor: rows come 2,000 at a time, however large the area.
    result = s.connection().execute(stmt.execution_options(stream_results=True, yield_per=2000))
    formatters = [f for _, f in cols]
    for record in result:
        values = record[1:]  # the id orders the rows; it is not a ledger column
        # every cell through server.xlsx: a name like "=HYPERLINK(…)" stays text
        xlsx.append_row(sheet, [f(v) if f is not None and v is not None else v
                                for f, v in zip(formatters, values, strict=True)])
        count += 1
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the response sends and closes it
    workbook.save(out)
    out.seek(0)
    audit.record(s, actor, "ledger_exported", "ledger", kind, changes={
        "kind": kind, "area_id": area_id, "area_code": root.code if root else None,
        "rows": count, "include_ended": include_ended, "key_tags": key_tags})
    stamp = local_today().strftime("%Y%m%d")  # the user's day: at 00:30 Beijing, not UTC's
    return out, f"{kind}-{root.code if root else 'all'}-{stamp}.xlsx", count


_SHEETS = {"persons": "实有人口", "households": "户", "buildings": "楼栋",
           "organisations": "实有单位"}
