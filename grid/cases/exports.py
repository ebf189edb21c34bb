"""Exports (导出) of the console: the queue as it is filtered, and the dashboard's tables, as
.xlsx.

The queue: the cases of the actor's areas and departments (the staff's part of the case
scope: a resident's own cases are not an export) under the queue's filters and sort, shown
as the case list shows them — the caller's phone masked (the stored masked copy: no
decryption; the clear number is a purposed reveal per case), the caller's name hidden when
the reporter asked to stay anonymous and the actor cannot accept cases, no reporter —
times in the area's zone. Rows come from a server-side cursor into openpyxl's write-only
workbook in a temporary file, every cell through server.xlsx (text stays text): memory is
bounded whatever the size; beyond MAX_ROWS rows the request is refused (narrow the
filters). Every export is audited with its filters and row count.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from grid.areas.models import Area, Department
from grid.cases import queue, trends
from grid.cases.models import CHANNELS, ESCALATIONS, STATES, Case, CaseCategory, light_sql
from grid.cases.scope import _scope_terms
from server import audit
from server.auth.actor import Actor
from server.clock import local_today, local_zone
from server.errors import Forbidden, Invalid, field_errors

# openpyxl writes ~500 rows/s of this sheet on the shared bench machine (2,000-3,000 on a
# quiet core; its pure-Python XML writer: no lxml installed), so that beyond ~10,000 rows a
# request would outlive a worker's timeout: narrow the filters (a job for larger exports
# needs a result-file download in server/jobs.py, which has none yet)
MAX_ROWS = 10_000
LIGHT_LABELS = {"green": "绿灯", "yellow": "黄灯", "red": "红灯"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _staff_scope(actor: Actor) -> sa.ColumnElement[bool]:
    """The cases the actor sees as staff (areas, departments); 403 for those who have
    none (a resident sees only their own cases: nothing to export)."""
    actor.require("case:read")
    scope, _ = _scope_terms(actor)
    term = scope(Case.area_id, Case.department_id)
    if term.compare(sa.false()):
        raise Forbidden("Exports are for the staff of an area or a department")
    return term


def _columns(actor: Actor) -> tuple[list[tuple[str, Any]], tuple[Any, Any, Any]]:
    """(header, expression) of the queue's sheet, and the aliases its joins need."""
    minor, major, grid = aliased(CaseCategory), aliased(CaseCategory), aliased(Area)
    hidden = sa.and_(Case.reporter_anonymous,
                     sa.func.coalesce(Case.reporter_id != actor.user_id, True)) \
        if not actor.can("case:accept") else sa.false()
    cols = [("编号", Case.code), ("状态", Case.state), ("大类", major.name), ("小类", minor.name),
            ("网格编码", grid.code), ("网格名称", grid.name), ("地址", Case.address),
            ("描述", Case.description), ("渠道", Case.channel), ("处置部门", Department.name),
            ("灯", light_sql()), ("期限", Case.due_at), ("督办", Case.escalation),
            ("上报时间", Case.reported_at), ("立案时间", Case.accepted_at),
            ("派遣时间", Case.dispatched_at), ("处置时间", Case.handled_at),
            ("结案时间", Case.closed_at), ("返工次数", Case.rework_count),
            ("满意度", Case.rating),
            ("联系人", sa.case((hidden, None), else_=Case.contact_name)),
            ("联系电话", Case.contact_phone_masked)]
    return cols, (minor, major, grid)


def _shown(value: Any, header: str) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(local_zone()).replace(tzinfo=None)
    labels = {"状态": STATES, "渠道": CHANNELS, "灯": LIGHT_LABELS, "督办": ESCALATIONS}
    return labels[header].get(value, value) if header in labels and value is not None \
        else value


def export_cases(s: Session, actor: Actor, filters: dict) -> tuple[IO[bytes], str, int]:
    """(the .xlsx as an open temporary file at 0, a file name, the number of rows)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from server import xlsx

    scope = _staff_scope(actor)
    conditions = queue.conditions(s, actor, filters)
    count = s.scalar(sa.select(sa.func.count()).select_from(Case).where(scope, *conditions))
    if count > MAX_ROWS:
        raise Invalid(field_errors("filters", f"{count} cases: at most {MAX_ROWS} in one "
                                   "export; narrow the filters.", location="query"))
    cols, (minor, major, grid) = _columns(actor)
    stmt = queue.ordered(
        sa.select(*(expr for _, expr in cols)).select_from(Case)
        .join(minor, minor.id == Case.category_id)
        .outerjoin(major, major.id == minor.parent_id)
        .join(grid, grid.id == Case.area_id)
        .outerjoin(Department, Department.id == Case.department_id)
        .where(scope, *conditions), filters.get("sort"))
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("事件")
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    sheet.append([xlsx.safe_cell(sheet, title, font=bold) for title, _ in cols])
    written = 0
    headers = [title for title, _ in cols]
    # a server-side cursor: 2,000 rows at a time, however many cases match
    result = s.connection().execute(stmt.execution_options(stream_results=True,
                                                           yield_per=2000))
    for row in result:
        xlsx.append_row(sheet, [_shown(v, h) for v, h in zip(row, headers, strict=True)])
        written += 1
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the response sends and closes it
    workbook.save(out)
    out.seek(0)
    audit.record(s, actor, "cases_exported", "case", None, changes={
        "filters": {k: (v.isoformat() if isinstance(v, datetime) else v)
                    for k, v in filters.items()}, "rows": written})
    return out, f"cases-{local_today():%Y%m%d}.xlsx", written


# --- the dashboard's tables ---------------------------------------------------------------

_COUNTS = (("上报", "reported"), ("立案", "accepted"), ("结案", "closed"), ("超期", "overdue"),
           ("红牌", "escalated"))
_RATES = (("上报数", "reported"), ("立案数", "accepted"), ("结案数", "closed"),
          ("结案率%", "closure_rate"), ("按期处置率%", "on_time_handling_rate"),
          ("按期结案率%", "on_time_closure_rate"), ("返工率%", "rework_rate"),
          ("平均处置时长(h)", "mean_handling_hours"), ("满意率%", "satisfaction_rate"),
          ("综合评价分", "score"), ("等级", "grade"))


def _compared_sheet(workbook: Any, title: str, first: list[str], rows: list[tuple[list,
                                                                                   dict]]) -> None:
    from server import xlsx

    sheet = workbook.create_sheet(title)
    xlsx.append_row(sheet, [*first, *(f"{label}{suffix}" for suffix in ("", "(上期)", "(去年同期)")
                                      for label, _ in _COUNTS)])
    for lead, compared in rows:
        xlsx.append_row(sheet, [*lead, *(compared[tag][key] for tag in trends.TAGS
                                         for _, key in _COUNTS)])


def export_trends(s: Session, actor: Actor, filters: dict, weights: dict
                  ) -> tuple[IO[bytes], str]:
    """The dashboard's tables (GET /stats/trends) as an .xlsx: 趋势, 按类别, 按部门, 按区域,
    部门排名, 网格排名 (audited)."""
    from openpyxl import Workbook

    from server import xlsx

    data = trends.trends(s, actor, filters, weights)
    workbook = Workbook(write_only=True)
    _compared_sheet(workbook, "趋势", ["周期"], [([p["period"]], p) for p in data["series"]])
    for title, key in (("按类别", "by_category"), ("按部门", "by_department"),
                       ("按区域", "by_area")):
        _compared_sheet(workbook, title, ["编码", "名称"],
                        [([g["code"], g["name"]], g) for g in data[key]])
    for title, key in (("部门排名", "departments"), ("网格排名", "grids")):
        sheet = workbook.create_sheet(title)
        xlsx.append_row(sheet, ["名次", "编码", "名称", *(label for label, _ in _RATES)])
        for row in data["rankings"][key]:
            xlsx.append_row(sheet, [row["rank"], row["code"], row["name"],
                                    *(row[k] for _, k in _RATES)])
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the response sends and closes it
    workbook.save(out)
    out.seek(0)
    audit.record(s, actor, "trends_exported", "area", data["area_id"], changes={
        "from": filters["start"].isoformat(), "to": filters["end"].isoformat(),
        "bucket": filters["bucket"], "category_level": filters["category_level"]})
    return out, f"trends-{filters['start']:%Y%m%d}-{filters['end']:%Y%m%d}.xlsx"
